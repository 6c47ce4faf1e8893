"""Errors of the API door: what the server said (a Status), and what was wrong with the configuration."""

from __future__ import annotations

import contextlib
import email.utils
import time
from collections.abc import Mapping
from typing import Any

import orjson

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
HOW_TO_POINT = (
    "point udn-rollout at a cluster with --kubeconfig PATH (and --context NAME to pick a context), "
    "or set KUBECONFIG, or use the embedded simulated cluster with --sim"
)


class KubeError(Exception):
    """An API error, carrying what the server's Status body said (so callers branch on code/reason)."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        retry_after: float | None = None,
        *,
        status: dict[str, Any] | None = None,
        attempts: int = 1,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.status = status or {}
        self.attempts = attempts

    def __str__(self) -> str:
        return self.message

    def __repr__(self) -> str:
        return f"KubeError({self.code}, {self.reason!r}, {self.message!r})"

    @classmethod
    def from_response(cls, code: int, data: bytes, headers: Mapping[str, str] | None = None) -> KubeError:
        """Build from an HTTP error response: the Status body when there is one, the raw text otherwise."""
        status: dict[str, Any] = {}
        with contextlib.suppress(orjson.JSONDecodeError):
            doc = orjson.loads(data) if data else None
            if isinstance(doc, dict):
                status = doc
        reason = str(status.get("reason") or _REASONS.get(code, "Unknown"))
        message = str(status.get("message") or (data[:500].decode(errors="replace") if data else reason))
        return cls(code, reason, message, _retry_after(headers, status), status=status)

    @classmethod
    def from_status(cls, status: dict[str, Any]) -> KubeError:
        """Build from a Status object delivered inside a watch stream (ERROR event)."""
        code = int(status.get("code") or 500)
        reason = str(status.get("reason") or _REASONS.get(code, "Unknown"))
        return cls(code, reason, str(status.get("message") or reason), _retry_after(None, status), status=status)


class ClusterConfigError(ValueError):
    """No usable cluster configuration; the message says how to point the tool at one."""


_REASONS = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    410: "Expired",
    415: "UnsupportedMediaType",
    422: "Invalid",
    429: "TooManyRequests",
    500: "InternalError",
    502: "BadGateway",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def _retry_after(headers: Mapping[str, str] | None, status: Mapping[str, Any]) -> float | None:
    """Seconds from the Retry-After header (seconds or HTTP date), else from Status details."""
    value = None
    if headers is not None:  # urllib3 keeps the server's case; websocket-client lowercases names
        value = headers.get("Retry-After") or headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            with contextlib.suppress(TypeError, ValueError):
                when = email.utils.parsedate_to_datetime(value)
                return max(0.0, when.timestamp() - time.time())
    details = status.get("details") if isinstance(status, Mapping) else None
    if isinstance(details, Mapping) and details.get("retryAfterSeconds") is not None:
        with contextlib.suppress(TypeError, ValueError):
            return max(0.0, float(details["retryAfterSeconds"]))
    return None


# ---- cluster target -------------------------------------------------------------------------
