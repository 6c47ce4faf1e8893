"""Invalid objects sent to the simulated cluster over HTTP are rejected as a real OpenShift 4.19 would:
422 Invalid with the upstream messages (the same cases as the unit tests, now through the API), and
the KubeVirt webhook denials, and the namespace-label admission policy."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import pytest
from test_validation import INVALID_CASES, SKIPPED, WEBHOOK_CASES

from simcluster.validation import KINDS

PLURAL_PATHS = {
    "clusteruserdefinednetworks.k8s.ovn.org": ("/apis/k8s.ovn.org/v1", "clusteruserdefinednetworks", False),
    "userdefinednetworks.k8s.ovn.org": ("/apis/k8s.ovn.org/v1", "userdefinednetworks", True),
    "virtualmachines.kubevirt.io": ("/apis/kubevirt.io/v1", "virtualmachines", True),
    "virtualmachineinstances.kubevirt.io": ("/apis/kubevirt.io/v1", "virtualmachineinstances", True),
    "virtualmachineinstancemigrations.kubevirt.io": ("/apis/kubevirt.io/v1", "virtualmachineinstancemigrations", True),
    "namespaces": ("/api/v1", "namespaces", False),
}


def _url(resource: str, namespace: str, name: str = "") -> str:
    base, plural, namespaced = PLURAL_PATHS[resource]
    url = f"{base}/namespaces/{namespace}/{plural}" if namespaced else f"{base}/{plural}"
    return f"{url}/{name}" if name else url


def _send(
    http: Any, resource: str, obj: dict[str, Any], old: dict[str, Any] | None, namespace: str
) -> tuple[int, dict]:
    obj = copy.deepcopy(obj)
    if PLURAL_PATHS[resource][2]:
        obj.setdefault("metadata", {})["namespace"] = namespace
    if old is None:
        return http.call("POST", _url(resource, namespace), obj)
    old = copy.deepcopy(old)
    if PLURAL_PATHS[resource][2]:
        old.setdefault("metadata", {})["namespace"] = namespace
    code, created = http.call("POST", _url(resource, namespace), old)
    assert code == 201, created
    # controllers may have touched the object since (finalizers, status): replace the spec as a JSON patch
    ops = [{"op": "replace", "path": "/spec", "value": obj["spec"]}]
    return http.call(
        "PATCH", _url(resource, namespace, created["metadata"]["name"]), ops, "application/json-patch+json"
    )


@pytest.mark.parametrize(("resource", "obj", "old", "expected"), INVALID_CASES)
def test_invalid_objects_through_the_api(
    http: Any, namespace: str, resource: str, obj: dict, old: dict | None, expected: list[str]
) -> None:
    if resource not in PLURAL_PATHS:
        pytest.skip(f"{resource} has no URL mapping here")
    if any("metadata.namespace: Required value" in e for e in expected):
        pytest.skip("a namespaced URL always supplies the namespace")
    if old is not None and not PLURAL_PATHS[resource][2]:
        # updates of cluster-scoped objects need a fresh name so parallel cases don't collide
        suffix = uuid.uuid4().hex[:6]
        old = copy.deepcopy(old)
        obj = copy.deepcopy(obj)
        old["metadata"]["name"] = obj["metadata"]["name"] = f"{old['metadata']['name']}-{suffix}"
        expected = [e.replace('"udn-cluster-primary-l3"', f'"udn-cluster-primary-l3-{suffix}"') for e in expected]
    code, status = _send(http, resource, obj, old, namespace)
    assert code == 422, status
    assert status["kind"] == "Status" and status["reason"] == "Invalid"
    kind, group = KINDS.get(resource, ("", ""))
    assert (
        status["details"].get("kind") in (kind, PLURAL_PATHS[resource][1])
        and status["details"].get("group", "") == group
    )
    for line in expected:
        if line == SKIPPED:
            continue
        assert line in status["message"], (line, status["message"])
    assert status["details"]["causes"], status
    if old is None and code == 422:  # nothing was stored
        name = (obj.get("metadata") or {}).get("name")
        if name:
            got, _ = http.call("GET", _url(resource, namespace, name))
            assert got == 404 or resource == "namespaces"


@pytest.mark.parametrize(("resource", "obj", "operation", "webhook", "causes"), WEBHOOK_CASES)
def test_kubevirt_webhook_denials_through_the_api(
    http: Any, namespace: str, resource: str, obj: dict, operation: str, webhook: str, causes: list
) -> None:
    if operation != "CREATE" or resource not in PLURAL_PATHS:
        pytest.skip("update-only webhook case (covered by the unit tests)")
    code, status = _send(http, resource, obj, None, namespace)
    assert code in (400, 422), status
    assert f'admission webhook "{webhook}" denied the request' in status["message"]
    for _reason, message, _field in causes:
        assert message in status["message"]


def test_primary_udn_label_cannot_be_added_or_removed_later(http: Any) -> None:
    name = f"t-label-{uuid.uuid4().hex[:6]}"
    code, _ = http.call(
        "POST", "/api/v1/namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    )
    assert code == 201
    code, status = http.call(
        "PATCH",
        f"/api/v1/namespaces/{name}",
        {"metadata": {"labels": {"k8s.ovn.org/primary-user-defined-network": ""}}},
        "application/merge-patch+json",
    )
    assert code == 422, status
    assert status["message"] == (
        f"namespaces \"{name}\" is forbidden: ValidatingAdmissionPolicy 'user-defined-networks-namespace-label' "
        "with binding 'user-defined-networks-namespace-label-binding' denied request: The "
        "'k8s.ovn.org/primary-user-defined-network' label cannot be added/removed after the namespace was created"
    )
    labelled = f"t-label-{uuid.uuid4().hex[:6]}"
    http.call(
        "POST",
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": labelled, "labels": {"k8s.ovn.org/primary-user-defined-network": ""}},
        },
    )
    code, status = http.call(
        "PATCH",
        f"/api/v1/namespaces/{labelled}",
        {"metadata": {"labels": {"k8s.ovn.org/primary-user-defined-network": None}}},
        "application/merge-patch+json",
    )
    assert code == 422 and "cannot be added/removed" in status["message"]
    code, _ = http.call(
        "PATCH",
        f"/api/v1/namespaces/{labelled}",
        {"metadata": {"labels": {"team": "a"}}},
        "application/merge-patch+json",
    )
    assert code == 200
