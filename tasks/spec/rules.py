"""The rules a spec value must follow, each as a function that says what is wrong and how to fix it.

The API server would reject most of these only after the run had started (often only as a status
condition, after the immutable network spec was written), so the spec model checks them up front,
with messages that name the value as the user wrote it and suggest a fix. The simulated cluster keeps
its own implementation of the server's rules on purpose: it is the tool's independent oracle.
"""

from __future__ import annotations

import ipaddress
import json
import re
from typing import Annotated, Any

from kubernetes.utils import parse_quantity
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError

from tasks.capacity import reserved_addresses, usable_addresses

MIN_MEMORY_BYTES = 64 * 1024**2

DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
LABEL_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
PATH_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = re.compile(
    r"^(?:[a-zA-Z0-9]+(?:[.-][a-zA-Z0-9]+)*(?::[0-9]+)?/)?"
    rf"{PATH_COMPONENT}(?:/{PATH_COMPONENT})*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[a-f0-9]{64})?$"
)
SYSTEM_NAMESPACES = ("default", "openshift")
SYSTEM_NAMESPACE_PREFIXES = ("kube-", "openshift-")


def fail(message: str, **extra: Any) -> PydanticCustomError:
    """An error whose text is exactly ``message`` (no "Value error," prefix), for the formatter."""
    return PydanticCustomError("udn_spec", "{message}", {"message": message, **extra})


def show(value: Any) -> str:
    """Render a bad value for a message: short, and quoted when it is text."""
    text = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= 70 else text[:67] + "..."


def suggest_label(value: str, max_len: int = 63) -> str:
    """A DNS-1123 label close to ``value``, offered as the fix."""
    s = re.sub(r"[^a-z0-9-]+", "-", str(value).lower())
    s = re.sub(r"-{2,}", "-", s).strip("-")[:max_len].strip("-")
    return s or "example"


def label_problem(value: str, what: str, max_len: int = 63) -> str | None:
    """Why ``value`` is not a DNS-1123 label (namespace, VM and run names are), or None."""
    if not value:
        return f"{what} must not be empty: use lowercase letters, digits and '-'"
    if len(value) > max_len:
        return (
            f"{what} {show(value)} is {len(value)} characters long: use at most {max_len}, "
            f"e.g. {suggest_label(value, max_len)!r}"
        )
    if not DNS_LABEL.match(value):
        return (
            f"{what} {show(value)} is not a DNS-1123 label: use lowercase letters, digits and '-', "
            f"starting and ending with a letter or digit, e.g. {suggest_label(value, max_len)!r}"
        )
    return None


def subdomain_problem(value: str, what: str, max_len: int) -> str | None:
    """Why ``value`` is not a DNS-1123 subdomain (object names such as the CUDN's), or None."""
    if not value:
        return f"{what} must not be empty"
    if len(value) > max_len:
        return f"{what} {show(value)} is {len(value)} characters long: use at most {max_len}"
    if not DNS_SUBDOMAIN.match(value):
        fixed = ".".join(suggest_label(part) for part in value.split(".") if part)
        return (
            f"{what} {show(value)} is not a valid Kubernetes name: use lowercase letters, digits, "
            f"'-' and '.', starting and ending with a letter or digit, e.g. {fixed!r}"
        )
    return None


def label_key_problem(key: str) -> str | None:
    prefix, _, name = key.rpartition("/")
    if prefix and subdomain_problem(prefix, "prefix", 253):
        return f"label key {show(key)} has an invalid prefix: use a DNS name such as 'example.com/'"
    if not name or len(name) > 63 or not LABEL_NAME.match(name):
        return (
            f"label key {show(key)} is invalid: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit, optionally after a 'dns.prefix/'"
        )
    return None


def label_value_problem(value: str) -> str | None:
    if value and (len(value) > 63 or not LABEL_NAME.match(value)):
        return (
            f"label value {show(value)} is invalid: use at most 63 letters, digits, '-', '_' or '.', "
            "starting and ending with a letter or digit (or leave it empty)"
        )
    return None


def parse_network(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """Parse a CIDR, explaining host bits and missing prefixes, because OVN-K rejects both later."""
    if "/" not in text:
        raise fail(f"{show(text)} has no prefix length: write it as a CIDR, e.g. {text}/16")
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise fail(f"{show(text)} is not a CIDR: write it like 10.200.0.0/16 or fd00:10:200::/48") from None
    if ipaddress.ip_address(text.split("/")[0]) != net.network_address:
        raise fail(f"{show(text)} has host bits set: use the masked network {net.with_prefixlen}")
    return net


def check_cidr(value: str) -> str:
    """Normalise a CIDR string (compressed form) after checking it parses and has no host bits."""
    return parse_network(value.strip()).with_prefixlen


Cidr = Annotated[str, AfterValidator(check_cidr)]


def usable_in(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> int:
    """VM addresses in ``net``: the same arithmetic the preflight's capacity report uses."""
    return usable_addresses(net.prefixlen, net.version)


def memory_bytes(value: str) -> int:
    """Bytes in a Kubernetes memory quantity (the client library's parser); the error shows the accepted forms."""
    try:
        return int(parse_quantity(value))
    except ValueError:
        hint = ""
        lowered = re.match(r"^([0-9.]+)\s*([kmgtpe])i?b?$", value.strip(), re.IGNORECASE)
        if lowered:
            hint = f" (did you mean {lowered.group(1)}{lowered.group(2).upper()}i?)"
        raise fail(
            f"memory {show(value)} is not a Kubernetes quantity{hint}: write it like 1Gi, 512Mi or 2048Mi"
        ) from None


def split_top_level(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside (), [] and {} (label selectors and --set lists both need this)."""
    parts, depth, cur, escaped = [], 0, [], False
    for ch in text:
        if escaped:
            cur.append(ch if ch == sep else "\\" + ch)  # other escapes are for the path parser
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch in "([{":
            depth += 1
            cur.append(ch)
        elif ch in ")]}":
            depth -= 1
            cur.append(ch)
        elif ch == sep and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return parts


SELECTOR_SET = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s+(?P<op>in|notin)\s+\((?P<vals>[^()]*)\)\s*$")
SELECTOR_EQ = re.compile(r"^\s*(?P<key>[^\s!=()]+)\s*(?P<op>==|=|!=)\s*(?P<val>[^\s!=()]*)\s*$")
SELECTOR_EXISTS = re.compile(r"^\s*(?P<neg>!?)\s*(?P<key>[^\s!=()]+)\s*$")


def selector_problem(selector: str) -> str | None:
    """Why a label selector string would be rejected by the API server, or None."""
    if not selector.strip():
        return "selector is empty: write a label selector such as 'app=web' or 'tier in (a,b)'"
    for req in split_top_level(selector):
        m = SELECTOR_SET.match(req) or SELECTOR_EQ.match(req) or SELECTOR_EXISTS.match(req)
        if not m:
            return (
                f"selector part {show(req.strip())} is not a label requirement: use key=value, key!=value, "
                "key in (a,b), key notin (a,b), key or !key, separated by commas"
            )
        problem = label_key_problem(m.group("key"))
        values = []
        if "vals" in m.groupdict():
            values = [v.strip() for v in m.group("vals").split(",")]
        elif "val" in m.groupdict():
            values = [m.group("val")]
        for v in values:
            problem = problem or label_value_problem(v)
        if problem:
            return f"selector {show(selector)}: {problem}"
    return None


def system_namespace_problem(name: str) -> str | None:
    if name in SYSTEM_NAMESPACES or name.startswith(SYSTEM_NAMESPACE_PREFIXES):
        return (
            f"namespace {name!r} is a system namespace (it exists without the primary-network label, "
            "which cannot be added later): choose another name"
        )
    return None


def prefix_for(total: int, version: int) -> int:
    """Longest prefix whose subnet holds ``total`` VMs, for the "use a larger subnet" fix."""
    bits = 32 if version == 4 else 128
    return bits - max(2, (total + reserved_addresses(version) - 1).bit_length())
