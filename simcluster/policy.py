"""Authorization: which verbs the simulated cluster allows, like RBAC reduced to what tests need.

The same policy answers SelfSubjectAccessReviews and guards real requests, so a restricted policy
both makes preflight report the missing permission and makes the write itself fail with 403.
Allow-all by default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Rule:
    verbs: frozenset[str]
    groups: frozenset[str] = frozenset({"*"})
    resources: frozenset[str] = frozenset({"*"})  # "plural" or "plural/subresource"
    namespaces: frozenset[str] = frozenset({"*"})

    def allows(self, verb: str, group: str, resource: str, namespace: str) -> bool:
        return (
            ("*" in self.verbs or verb in self.verbs)
            and ("*" in self.groups or group in self.groups)
            and ("*" in self.resources or resource in self.resources)
            and ("*" in self.namespaces or namespace in self.namespaces or not namespace)
        )

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Rule:
        def s(key: str) -> frozenset[str]:
            return frozenset(d.get(key) or ["*"])

        return cls(s("verbs"), s("apiGroups"), s("resources"), s("namespaces"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "verbs": sorted(self.verbs),
            "apiGroups": sorted(self.groups),
            "resources": sorted(self.resources),
            "namespaces": sorted(self.namespaces),
        }


@dataclass
class Policy:
    user: str = "kube:admin"
    allow_all: bool = True
    rules: list[Rule] = field(default_factory=list)

    def allows(self, verb: str, group: str, resource: str, namespace: str = "") -> bool:
        if self.allow_all:
            return True
        return any(r.allows(verb, group, resource, namespace) for r in self.rules)

    def forbidden_message(self, verb: str, group: str, resource: str, namespace: str, name: str = "") -> str:
        target = f"{resource}.{group}" if group else resource
        if name:
            target += f' "{name}"'
        where = f' in the namespace "{namespace}"' if namespace else " at the cluster scope"
        plural, _, sub = resource.partition("/")
        res = f'resource "{plural}"' + (f' with subresource "{sub}"' if sub else "")
        return f'{target} is forbidden: User "{self.user}" cannot {verb} {res} in API group "{group}"{where}'

    def to_dict(self) -> dict[str, Any]:
        return {"user": self.user, "allowAll": self.allow_all, "rules": [r.to_dict() for r in self.rules]}

    def update(self, d: dict[str, Any]) -> None:
        if "user" in d:
            self.user = str(d["user"])
        if "rules" in d:
            self.rules = [Rule.from_dict(r) for r in d["rules"] or []]
            self.allow_all = bool(d.get("allowAll", False))
        elif "allowAll" in d:
            self.allow_all = bool(d["allowAll"])
