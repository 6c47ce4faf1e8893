"""Server-side printing: the `Table` objects kubectl asks for (`Accept: ...;as=Table`).

Column definitions come from the kind's registry entry; a few core kinds compute cells the way
kube-apiserver's printers do (node status and roles, event object).
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from simcluster.kinds import Column, ResourceType

_FILTER = re.compile(r'\[\?\(@\.([A-Za-z0-9_]+)==["\']([^"\']*)["\']\)\]')


def human_duration(seconds: float) -> str:
    """apimachinery's duration.HumanDuration, which kubectl's AGE column shows."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 0:
        return "0s"
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        return f"{minutes}m" if s % 60 == 0 else f"{minutes}m{s % 60}s"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        return f"{hours}h" if minutes % 60 == 0 else f"{hours}h{minutes % 60}m"
    if hours < 48:
        return f"{hours}h"
    if hours < 24 * 8:
        return f"{hours // 24}d" if hours % 24 == 0 else f"{hours // 24}d{hours % 24}h"
    if hours < 24 * 365 * 2:
        return f"{hours // 24}d"
    if hours < 24 * 365 * 8:
        dy = (hours // 24) % 365
        return f"{hours // 24 // 365}y" if dy == 0 else f"{hours // 24 // 365}y{dy}d"
    return f"{hours // 24 // 365}y"


def age(timestamp: str | None) -> str:
    if not timestamp:
        return "<unknown>"
    try:
        t = dt.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    except ValueError:
        return "<unknown>"
    return human_duration((dt.datetime.now(dt.UTC) - t).total_seconds())


def jsonpath(obj: Any, path: str) -> Any:
    """The JSONPath subset used by printer columns: `.a.b`, `.a[0].b`, `.a[?(@.type=="Ready")].status`."""
    cur = obj
    rest = path
    while rest and cur is not None:
        if rest.startswith("."):
            m = re.match(r"\.([A-Za-z0-9_\-]+)", rest)
            if not m:
                return None
            cur = cur.get(m.group(1)) if isinstance(cur, dict) else None
            rest = rest[m.end() :]
        elif rest.startswith("[?"):
            m = _FILTER.match(rest)
            if not m or not isinstance(cur, list):
                return None
            key, val = m.group(1), m.group(2)
            cur = next((x for x in cur if isinstance(x, dict) and str(x.get(key)) == val), None)
            rest = rest[m.end() :]
        elif rest.startswith("["):
            m = re.match(r"\[(\d+)\]", rest)
            if not m or not isinstance(cur, list):
                return None
            idx = int(m.group(1))
            cur = cur[idx] if idx < len(cur) else None
            rest = rest[m.end() :]
        else:
            return None
    return cur


def _node_status(obj: dict[str, Any]) -> str:
    conds = {c.get("type"): c.get("status") for c in obj.get("status", {}).get("conditions") or []}
    status = "Ready" if conds.get("Ready") == "True" else ("NotReady" if "Ready" in conds else "Unknown")
    if obj.get("spec", {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    return status


def _node_roles(obj: dict[str, Any]) -> str:
    roles = sorted(
        k.split("/", 1)[1] for k in (obj["metadata"].get("labels") or {}) if k.startswith("node-role.kubernetes.io/")
    )
    return ",".join(roles) or "<none>"


def _address(obj: dict[str, Any], kind: str) -> str:
    for a in obj.get("status", {}).get("addresses") or []:
        if a.get("type") == kind:
            return a.get("address", "<none>")
    return "<none>"


def _pod_cell(name: str, obj: dict[str, Any]) -> Any:
    """kubectl's pod printer (pkg/printers/internalversion printPod): READY, STATUS, RESTARTS, gates."""
    st = obj.get("status") or {}
    containers = (obj.get("spec") or {}).get("containers") or []
    statuses = st.get("containerStatuses") or []
    if name == "Ready":
        return f"{sum(1 for c in statuses if c.get('ready'))}/{len(containers)}"
    if name == "Restarts":
        return str(sum(int(c.get("restartCount") or 0) for c in statuses))
    if name == "Readiness Gates":
        gates = (obj.get("spec") or {}).get("readinessGates") or []
        if not gates:
            return "<none>"
        conds = {c.get("type"): c.get("status") for c in st.get("conditions") or []}
        return f"{sum(1 for g in gates if conds.get(g.get('conditionType')) == 'True')}/{len(gates)}"
    reason = st.get("reason") or st.get("phase") or "Unknown"
    for c in statuses:
        state = c.get("state") or {}
        if (state.get("waiting") or {}).get("reason"):
            reason = state["waiting"]["reason"]
        elif (state.get("terminated") or {}).get("reason"):
            reason = state["terminated"]["reason"]
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        reason = "Terminating"
    return reason


def _labels(m: dict[str, Any] | None) -> str:
    """apimachinery labels.FormatLabels: sorted key=value pairs, or <none>."""
    return ",".join(f"{k}={v}" for k, v in sorted((m or {}).items())) or "<none>"


def _daemonset_cell(name: str, obj: dict[str, Any]) -> Any:
    """kube-apiserver's printDaemonSet: NODE SELECTOR, and (wide) CONTAINERS, IMAGES, SELECTOR."""
    pod = ((obj.get("spec") or {}).get("template") or {}).get("spec") or {}
    containers = pod.get("containers") or []
    if name == "Node Selector":
        return _labels(pod.get("nodeSelector"))
    if name == "Containers":
        return ",".join(str(c.get("name", "")) for c in containers)
    if name == "Images":
        return ",".join(str(c.get("image", "")) for c in containers)
    selector = (obj.get("spec") or {}).get("selector") or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for e in selector.get("matchExpressions") or []:
        parts.append(f"{e.get('key')} {str(e.get('operator', '')).lower()} ({','.join(e.get('values') or [])})")
    return ",".join(parts) or "<none>"


def _computed(rt: ResourceType, col: Column, obj: dict[str, Any]) -> Any:
    if rt.kind == "Node":
        return {
            "Status": _node_status,
            "Roles": _node_roles,
            "Internal-IP": lambda o: _address(o, "InternalIP"),
            "External-IP": lambda o: _address(o, "ExternalIP"),
        }[col.name](obj)
    if rt.kind == "Event":
        if col.name == "Last Seen":
            return age(obj.get("lastTimestamp") or obj.get("eventTime") or obj["metadata"].get("creationTimestamp"))
        inv = obj.get("involvedObject") or {}
        return f"{str(inv.get('kind', '')).lower()}/{inv.get('name', '')}"
    if rt.kind == "Pod":
        return _pod_cell(col.name, obj)
    if rt.kind == "DaemonSet":
        return _daemonset_cell(col.name, obj)
    if col.name == "Data":
        return len(obj.get("data") or {}) + len(obj.get("binaryData") or {}) + len(obj.get("stringData") or {})
    return None


def cell(rt: ResourceType, col: Column, obj: dict[str, Any]) -> Any:
    if not col.path:
        return _computed(rt, col, obj)
    value = jsonpath(obj, col.path)
    if col.type == "date" and col.format != "raw":
        return age(value) if isinstance(value, str) else None
    return value


def columns(rt: ResourceType) -> list[Column]:
    cols = [
        Column("Name", "string", ".metadata.name", format="name", description="Name must be unique within a namespace.")
    ]
    if rt.columns is None:
        cols.append(Column("Age", "date", ".metadata.creationTimestamp"))
    else:
        cols.extend(rt.columns)
    return cols


def column_definitions(rt: ResourceType) -> list[dict[str, Any]]:
    return [
        {
            "name": c.name,
            "type": c.type,
            "format": "" if c.format == "raw" else c.format,
            "description": c.description or c.name,
            "priority": c.priority,
        }
        for c in columns(rt)
    ]


def row(rt: ResourceType, obj: dict[str, Any], include: str = "Metadata") -> dict[str, Any]:
    r: dict[str, Any] = {"cells": [cell(rt, c, obj) for c in columns(rt)]}
    if include == "Object":
        r["object"] = obj
    elif include != "None":
        r["object"] = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}
    return r


def table(
    rt: ResourceType,
    objs: list[dict[str, Any]],
    rv: str,
    cont: str = "",
    include: str = "Metadata",
    with_columns: bool = True,
) -> dict[str, Any]:
    md: dict[str, Any] = {"resourceVersion": rv}
    if cont:
        md["continue"] = cont
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": md,
        "columnDefinitions": column_definitions(rt) if with_columns else None,
        "rows": [row(rt, o, include) for o in objs],
    }
