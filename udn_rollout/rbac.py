"""`udn-rollout rbac`: the ClusterRole, Role and bindings that grant exactly what preflight checks.

One source of truth: the verbs come from :func:`tasks.preflight.required_permissions`, the list
preflight checks with SelfSubjectAccessReviews; cluster-wide ones go into a ClusterRole, the run
lock's (a Lease in ``lock.namespace``) into a Role there.
"""

from __future__ import annotations

from typing import Any

import yaml

from tasks.preflight import Permission, required_permissions
from tasks.spec import RolloutSpec

NAME = "udn-rollout"


def _rules(perms: list[Permission]) -> list[dict[str, Any]]:
    by: dict[tuple[str, str], set[str]] = {}
    for p in perms:
        res = f"{p.resource.plural}/{p.subresource}" if p.subresource else p.resource.plural
        by.setdefault((p.group, res), set()).add(p.verb)
    return [
        {"apiGroups": [group], "resources": [res], "verbs": sorted(verbs)} for (group, res), verbs in sorted(by.items())
    ]


def _subject(user: str | None, group: str | None, service_account: str | None) -> dict[str, Any]:
    if service_account:
        ns, _, name = service_account.partition("/")
        if not name:
            raise ValueError(f"--service-account {service_account!r}: write NAMESPACE/NAME, e.g. udn-rollout/runner")
        return {"kind": "ServiceAccount", "name": name, "namespace": ns}
    if group:
        return {"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": group}
    return {"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": user}


def rbac_objects(
    spec: RolloutSpec, *, user: str | None = None, group: str | None = None, service_account: str | None = None
) -> list[dict[str, Any]]:
    perms = required_permissions(spec)
    cluster = [p for p in perms if not p.namespace]
    local = [p for p in perms if p.namespace]
    subject = _subject(user, group, service_account)
    labels = {"app.kubernetes.io/managed-by": "udn-rollout"}
    objs: list[dict[str, Any]] = [
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": NAME, "labels": labels},
            "rules": _rules(cluster),
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": f"{NAME}-{subject['name']}", "labels": labels},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": NAME},
            "subjects": [subject],
        },
    ]
    if local:
        ns = local[0].namespace
        objs += [
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": {"name": f"{NAME}-lock", "namespace": ns, "labels": labels},
                "rules": _rules(local),
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{NAME}-lock-{subject['name']}", "namespace": ns, "labels": labels},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": f"{NAME}-lock"},
                "subjects": [subject],
            },
        ]
    return objs


def rbac_yaml(
    spec: RolloutSpec, *, user: str | None = None, group: str | None = None, service_account: str | None = None
) -> str:
    """The objects as one YAML stream, with a header saying where the verbs come from."""
    objs = rbac_objects(spec, user=user, group=group, service_account=service_account)
    head = (
        f"# What a udn-rollout run of spec {spec.run_id!r} needs: exactly the verbs preflight checks\n"
        "# (tasks/preflight.py required_permissions). Review, then as a cluster administrator: oc apply -f -\n"
    )
    return head + "---\n".join(yaml.safe_dump(o, sort_keys=False) for o in objs)
