"""Name, label and annotation rules of k8s.io/apimachinery (ObjectMeta validation).

Messages are the apimachinery ones (RFC 1123 wording of Kubernetes >= 1.26), including the double
space that ``RegexError`` leaves between examples.
"""

from __future__ import annotations

import functools
import re

from .fielderrors import FieldError, forbidden, invalid, required, too_long

DNS1123_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN_FMT = DNS1123_LABEL_FMT + "(\\." + DNS1123_LABEL_FMT + ")*"
QUALIFIED_NAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
LABEL_VALUE_FMT = "(" + QUALIFIED_NAME_FMT + ")?"

_LABEL_RE = re.compile(f"^{DNS1123_LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(f"^{DNS1123_SUBDOMAIN_FMT}$")
_QNAME_RE = re.compile(f"^{QUALIFIED_NAME_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{LABEL_VALUE_FMT}$")

TOTAL_ANNOTATION_SIZE_LIMIT = 256 * 1024


def regex_error(msg: str, fmt: str, *examples: str) -> str:
    """apimachinery's RegexError, byte for byte (note the ``',  or '`` double space)."""
    if not examples:
        return f"{msg} (regex used for validation is '{fmt}')"
    msg += " (e.g. "
    for i, ex in enumerate(examples):
        if i > 0:
            msg += " or "
        msg += f"'{ex}', "
    return msg + f"regex used for validation is '{fmt}')"


def max_len_error(n: int) -> str:
    return f"must be no more than {n} characters"


_LABEL_MSG = regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must "
    "start and end with an alphanumeric character",
    DNS1123_LABEL_FMT,
    "my-name",
    "123-abc",
)
_SUBDOMAIN_MSG = regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', "
    "and must start and end with an alphanumeric character",
    DNS1123_SUBDOMAIN_FMT,
    "example.com",
)
_QNAME_MSG = regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character",
    QUALIFIED_NAME_FMT,
    "MyName",
    "my.name",
    "123-abc",
)
_LABEL_VALUE_MSG = regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and "
    "must start and end with an alphanumeric character",
    LABEL_VALUE_FMT,
    "MyValue",
    "my_value",
    "12345",
)


def is_dns1123_label(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_RE.match(value):
        errs.append(_LABEL_MSG)
    return errs


def is_dns1123_subdomain(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append(max_len_error(253))
    if not _SUBDOMAIN_RE.match(value):
        errs.append(_SUBDOMAIN_MSG)
    return errs


def is_qualified_name(value: str) -> list[str]:
    """Label and annotation keys: ``[prefix/]name``."""
    return list(_qualified_name_errors(value))


@functools.lru_cache(maxsize=4096)
def _qualified_name_errors(value: str) -> tuple[str, ...]:
    """Cached: every object carries the same few label keys, checked on each write."""
    errs: list[str] = []
    parts = value.split("/")
    if len(parts) == 1:
        name = parts[0]
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs.extend("prefix part " + m for m in is_dns1123_subdomain(prefix))
    else:
        return (
            "a qualified name "
            + _QNAME_MSG
            + " with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
        )
    if not name:
        errs.append("name part must be non-empty")
    elif len(name) > 63:
        errs.append("name part " + max_len_error(63))
    if not _QNAME_RE.match(name):
        errs.append("name part " + _QNAME_MSG)
    return tuple(errs)


def is_valid_label_value(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append(max_len_error(63))
    if not _LABEL_VALUE_RE.match(value):
        errs.append(_LABEL_VALUE_MSG)
    return errs


def _name_fn(dns_label: bool):
    return is_dns1123_label if dns_label else is_dns1123_subdomain


def validate_labels(labels: object, path: str = "metadata.labels") -> list[FieldError]:
    if not isinstance(labels, dict):
        return []
    errs: list[FieldError] = []
    for k, v in labels.items():
        errs.extend(invalid(path, k, m) for m in is_qualified_name(str(k)))
        if not isinstance(v, str):
            continue
        errs.extend(invalid(path, v, m) for m in is_valid_label_value(v))
    return errs


def validate_annotations(annotations: object, path: str = "metadata.annotations") -> list[FieldError]:
    if not isinstance(annotations, dict):
        return []
    errs: list[FieldError] = []
    total = 0
    for k, v in annotations.items():
        errs.extend(invalid(path, k, m) for m in is_qualified_name(str(k).lower()))
        total += len(str(k)) + len(str(v) if v is not None else "")
    if total > TOTAL_ANNOTATION_SIZE_LIMIT:
        errs.append(too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT))
    return errs


def validate_object_meta(obj: dict, *, namespaced: bool | None, dns_label: bool = False) -> list[FieldError]:
    """ValidateObjectMeta: generateName, name, namespace, labels, annotations.

    ``namespaced`` None means the scope is unknown (any resource we do not model): skip that check.
    """
    meta = obj.get("metadata")
    if not isinstance(meta, dict):
        meta = {}
    errs: list[FieldError] = []
    name_fn = _name_fn(dns_label)
    gen = meta.get("generateName") or ""
    if gen:
        masked = gen[:-1] if gen.endswith("-") else gen
        errs.extend(invalid("metadata.generateName", gen, m) for m in name_fn(masked))
    name = meta.get("name") or ""
    if not name:
        errs.append(required("metadata.name", "name or generateName is required"))
    else:
        errs.extend(invalid("metadata.name", name, m) for m in name_fn(name))
    ns = meta.get("namespace") or ""
    if namespaced is True and not ns:
        errs.append(required("metadata.namespace"))
    elif namespaced is True:
        errs.extend(invalid("metadata.namespace", ns, m) for m in is_dns1123_label(ns))
    elif namespaced is False and ns:
        errs.append(forbidden("metadata.namespace", "not allowed on this type"))
    errs.extend(validate_labels(meta.get("labels")))
    errs.extend(validate_annotations(meta.get("annotations")))
    return errs
