"""The simulated API server through the official Python client: REST semantics as kube-apiserver has them."""

from __future__ import annotations

import json
import threading
import time
import urllib.error

import pytest
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

from simcluster import SimCluster


def cm(name: str, labels: dict[str, str] | None = None, data: dict[str, str] | None = None) -> client.V1ConfigMap:
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels or {}), data=data or {"k": "v"})


def status_of(exc: ApiException) -> dict:
    return json.loads(exc.body)


# ---- discovery ------------------------------------------------------------------------------
def test_version_and_discovery(api_client: client.ApiClient, dyn: dynamic.DynamicClient) -> None:
    v = client.VersionApi(api_client).get_code()
    assert (v.major, v.minor) == ("1", "32")
    groups = {g.name: g for g in client.ApisApi(api_client).get_api_versions().groups}
    for g in (
        "k8s.ovn.org",
        "kubevirt.io",
        "k8s.cni.cncf.io",
        "config.openshift.io",
        "authorization.k8s.io",
        "apiextensions.k8s.io",
        "subresources.kubevirt.io",
    ):
        assert g in groups
    vm = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    assert (vm.name, vm.namespaced, set(vm.short_names)) == ("virtualmachines", True, {"vm", "vms"})
    cudn = dyn.resources.get(api_version="k8s.ovn.org/v1", kind="ClusterUserDefinedNetwork")
    assert (cudn.name, cudn.namespaced, cudn.short_names) == ("clusteruserdefinednetworks", False, ["cudn"])
    nad = dyn.resources.get(api_version="k8s.cni.cncf.io/v1", kind="NetworkAttachmentDefinition")
    assert nad.name == "network-attachment-definitions" and nad.short_names == ["net-attach-def"]
    claim = dyn.resources.get(api_version="k8s.cni.cncf.io/v1alpha1", kind="IPAMClaim")
    assert claim.namespaced
    assert (
        "create" not in dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition").verbs
    )


def test_seeded_cluster(core: client.CoreV1Api, dyn: dynamic.DynamicClient) -> None:
    nodes = core.list_node().items
    assert [n.metadata.name for n in nodes] == ["worker-0", "worker-1", "worker-2"]
    assert all(next(c for c in n.status.conditions if c.type == "Ready").status == "True" for n in nodes)
    net = dyn.resources.get(api_version="config.openshift.io/v1", kind="Network").get(name="cluster")
    assert net.spec.clusterNetwork[0].cidr == "10.128.0.0/14" and net.spec.clusterNetwork[0].hostPrefix == 23
    assert list(net.spec.serviceNetwork) == ["172.30.0.0/16"]
    cv = dyn.resources.get(api_version="config.openshift.io/v1", kind="ClusterVersion").get(name="version")
    assert cv.status.desired.version.startswith("4.19.")
    kv = dyn.resources.get(api_version="kubevirt.io/v1", kind="KubeVirt").get(namespace="openshift-cnv").items[0]
    assert kv.spec.configuration.migrations.parallelMigrationsPerCluster == 5
    assert kv.spec.configuration.migrations.parallelOutboundMigrationsPerNode == 1
    assert kv.spec.configuration.network.binding.l2bridge.domainAttachmentType == "managedTap"
    crds = dyn.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition").get()
    names = {c.metadata.name for c in crds.items}
    assert {
        "clusteruserdefinednetworks.k8s.ovn.org",
        "virtualmachines.kubevirt.io",
        "network-attachment-definitions.k8s.cni.cncf.io",
        "ipamclaims.k8s.cni.cncf.io",
    } <= names


# ---- create / get / errors ------------------------------------------------------------------
def test_create_get_and_already_exists(core: client.CoreV1Api, namespace: str) -> None:
    created = core.create_namespaced_config_map(namespace, cm("a"))
    md = created.metadata
    assert md.uid and md.resource_version and md.creation_timestamp
    assert core.read_namespaced_config_map("a", namespace).data == {"k": "v"}
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(namespace, cm("a"))
    assert e.value.status == 409
    st = status_of(e.value)
    assert (st["kind"], st["reason"], st["message"]) == ("Status", "AlreadyExists", 'configmaps "a" already exists')
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("missing", namespace)
    assert e.value.status == 404 and status_of(e.value)["reason"] == "NotFound"
    assert status_of(e.value)["details"] == {"name": "missing", "kind": "configmaps"}


def test_generate_name(core: client.CoreV1Api, namespace: str) -> None:
    names = {
        core.create_namespaced_config_map(
            namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(generate_name="gen-"))
        ).metadata.name
        for _ in range(20)
    }
    assert len(names) == 20 and all(n.startswith("gen-") and len(n) == 9 for n in names)


def test_create_in_missing_namespace_is_404(core: client.CoreV1Api) -> None:
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map("no-such-ns", cm("x"))
    assert e.value.status == 404 and status_of(e.value)["message"] == 'namespaces "no-such-ns" not found'


def test_kind_mismatch_is_400(http, namespace: str) -> None:
    code, st = http.call(
        "POST",
        f"/api/v1/namespaces/{namespace}/configmaps",
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}},
    )
    assert code == 400 and st["reason"] == "BadRequest"


# ---- update / conflict / generation / status ------------------------------------------------
def test_update_conflict_on_stale_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    obj = core.create_namespaced_config_map(namespace, cm("c"))
    obj.data = {"k": "v2"}
    updated = core.replace_namespaced_config_map("c", namespace, obj)
    assert int(updated.metadata.resource_version) > int(obj.metadata.resource_version)
    obj.data = {"k": "v3"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as e:
        core.replace_namespaced_config_map("c", namespace, obj)
    assert e.value.status == 409
    assert status_of(e.value)["message"] == (
        'Operation cannot be fulfilled on configmaps "c": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def _vm(name: str) -> dict:
    return {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": name},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {
                        "devices": {"interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}]},
                        "resources": {"requests": {"memory": "1Gi"}},
                    },
                    "networks": [{"name": "primary", "pod": {}}],
                }
            },
        },
    }


def _claim(name: str) -> dict:
    return {
        "apiVersion": "k8s.cni.cncf.io/v1alpha1",
        "kind": "IPAMClaim",
        "metadata": {"name": name},
        "spec": {"network": "cluster_udn_x", "interface": "ovn-udn1"},
    }


def test_generation_and_status_subresource(dyn: dynamic.DynamicClient, namespace: str) -> None:
    claims = dyn.resources.get(api_version="k8s.cni.cncf.io/v1alpha1", kind="IPAMClaim")
    claim = claims.create(body=_claim("g"), namespace=namespace)
    assert claim.metadata.generation == 1
    # status written through the main resource is ignored, and metadata changes keep the generation
    body = claim.to_dict()
    body["status"] = {"ips": ["10.0.0.3/24"]}
    body["metadata"]["labels"] = {"x": "y"}
    after = claims.replace(body=body, namespace=namespace)
    assert after.metadata.generation == 1 and not (after.status or {}).get("ips")
    assert after.to_dict()["metadata"]["labels"] == {"x": "y"}
    # the status subresource changes status only, and not the generation
    st = after.to_dict()
    st["status"] = {"ips": ["10.0.0.3/24"]}
    st["spec"]["interface"] = "changed"
    after2 = claims.status.replace(body=st, namespace=namespace)
    assert list(after2.status.ips) == ["10.0.0.3/24"] and after2.spec.interface == "ovn-udn1"
    assert after2.metadata.generation == 1
    spec_change = claims.patch(
        name="g", namespace=namespace, body={"spec": {"interface": "eth1"}}, content_type="application/merge-patch+json"
    )
    assert spec_change.metadata.generation == 2 and list(spec_change.status.ips) == ["10.0.0.3/24"]


# ---- patch ---------------------------------------------------------------------------------
def test_patch_flavours(core: client.CoreV1Api, http, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, cm("p", data={"a": "1", "b": "2"}))
    merged = core.patch_namespaced_config_map("p", namespace, {"data": {"a": None, "c": "3"}})  # strategic
    assert merged.data == {"b": "2", "c": "3"}

    def raw_patch(body: object, ctype: str) -> dict:
        code, out = http.call("PATCH", f"/api/v1/namespaces/{namespace}/configmaps/p", body, ctype)
        if code >= 400:
            raise ApiException(status=code, reason=out["message"])
        return out

    assert raw_patch({"data": {"d": "4"}}, "application/merge-patch+json")["data"] == {"b": "2", "c": "3", "d": "4"}
    ops = [{"op": "remove", "path": "/data/b"}, {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}}]
    out = raw_patch(ops, "application/json-patch+json")
    assert out["data"] == {"c": "3", "d": "4"} and out["metadata"]["labels"] == {"x": "y"}
    with pytest.raises(ApiException) as e:
        raw_patch([{"op": "test", "path": "/data/c", "value": "nope"}], "application/json-patch+json")
    assert e.value.status == 422
    # finalizers merge as a set under strategic merge
    core.patch_namespaced_config_map("p", namespace, {"metadata": {"finalizers": ["a/one"]}})
    both = core.patch_namespaced_config_map("p", namespace, {"metadata": {"finalizers": ["a/two"]}})
    assert both.metadata.finalizers == ["a/one", "a/two"]
    core.patch_namespaced_config_map(
        "p", namespace, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["a/one", "a/two"]}}
    )


def test_strategic_merge_is_refused_for_custom_resources(dyn: dynamic.DynamicClient, namespace: str) -> None:
    vms = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    vms.create(body=_vm("smp"), namespace=namespace)
    with pytest.raises(ApiException) as e:
        vms.patch(
            name="smp",
            namespace=namespace,
            body={"spec": {"runStrategy": "Always"}},
            content_type="application/strategic-merge-patch+json",
        )
    assert e.value.status == 415


def test_server_side_apply_creates_then_updates(http, core: client.CoreV1Api, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/ssa?fieldManager=test"
    body = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: '1'\n"
    codes = [
        http.call("PATCH", path, data, "application/apply-patch+yaml")[0] for data in (body, body.replace("'1'", "'2'"))
    ]
    assert codes == [201, 200]
    assert core.read_namespaced_config_map("ssa", namespace).data == {"a": "2"}


# ---- list: selectors and pagination ---------------------------------------------------------
def test_label_and_field_selectors(core: client.CoreV1Api, namespace: str) -> None:
    for i, (tier, zone) in enumerate([("web", "a"), ("web", "b"), ("db", "a"), ("cache", None)]):
        labels = {"tier": tier, "n": str(i)}
        if zone:
            labels["zone"] = zone
        core.create_namespaced_config_map(namespace, cm(f"s{i}", labels))

    def names(**kw: str) -> list[str]:
        return [o.metadata.name for o in core.list_namespaced_config_map(namespace, **kw).items]

    assert names(label_selector="tier=web") == ["s0", "s1"]
    assert names(label_selector="tier==web,zone=b") == ["s1"]
    assert names(label_selector="tier!=web") == ["s2", "s3"]
    assert names(label_selector="tier in (db, cache)") == ["s2", "s3"]
    assert names(label_selector="tier notin (web)") == ["s2", "s3"]
    assert names(label_selector="zone") == ["s0", "s1", "s2"]
    assert names(label_selector="!zone") == ["s3"]
    assert names(label_selector="n>1") == ["s2", "s3"]
    assert names(field_selector="metadata.name=s2") == ["s2"]
    assert names(field_selector="metadata.name!=s2", label_selector="tier=web") == ["s0", "s1"]
    assert [
        o.metadata.name
        for o in core.list_config_map_for_all_namespaces(
            field_selector=f"metadata.namespace={namespace}", label_selector="tier=db"
        ).items
    ] == ["s2"]
    with pytest.raises(ApiException) as e:
        names(field_selector="spec.nodeName=x")
    assert e.value.status == 400 and "field label not supported: spec.nodeName" in status_of(e.value)["message"]
    with pytest.raises(ApiException) as e:
        names(label_selector="tier in web")
    assert e.value.status == 400


def test_pagination_with_limit_and_continue(core: client.CoreV1Api, namespace: str) -> None:
    for i in range(25):
        core.create_namespaced_config_map(namespace, cm(f"p{i:02d}"))
    seen, token, pages = [], None, 0
    while True:
        page = core.list_namespaced_config_map(namespace, limit=10, _continue=token)
        pages += 1
        seen += [o.metadata.name for o in page.items]
        token = page.metadata._continue
        if not token:
            break
        assert page.metadata.remaining_item_count == 25 - len(seen)
    assert pages == 3 and seen == [f"p{i:02d}" for i in range(25)]


# ---- delete: finalizers, GC, namespaces -----------------------------------------------------
def test_delete_waits_for_finalizers(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="f", finalizers=["example.com/hold"]))
    )
    core.delete_namespaced_config_map("f", namespace)
    held = core.read_namespaced_config_map("f", namespace)
    assert held.metadata.deletion_timestamp is not None
    with pytest.raises(ApiException) as e:  # no new finalizers once deleting
        core.patch_namespaced_config_map("f", namespace, {"metadata": {"finalizers": ["example.com/hold", "x/y"]}})
    assert e.value.status == 422
    core.patch_namespaced_config_map(
        "f", namespace, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["example.com/hold"]}}
    )
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("f", namespace)
    assert e.value.status == 404


def _wait_gone(fn, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fn()
        except ApiException as e:
            if e.status == 404:
                return
            raise
        time.sleep(0.05)
    raise AssertionError("object still present")


def test_owner_reference_garbage_collection(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, cm("owner"))
    ref = client.V1OwnerReference(
        api_version="v1",
        kind="ConfigMap",
        name="owner",
        uid=owner.metadata.uid,
        controller=True,
        block_owner_deletion=True,
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dep", owner_references=[ref]))
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="orphan-me", owner_references=[ref]))
    )
    core.delete_namespaced_config_map("owner", namespace)
    _wait_gone(lambda: core.read_namespaced_config_map("dep", namespace))
    _wait_gone(lambda: core.read_namespaced_config_map("orphan-me", namespace))

    owner2 = core.create_namespaced_config_map(namespace, cm("owner2"))
    ref2 = client.V1OwnerReference(api_version="v1", kind="ConfigMap", name="owner2", uid=owner2.metadata.uid)
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="kept", owner_references=[ref2]))
    )
    core.delete_namespaced_config_map("owner2", namespace, propagation_policy="Orphan")
    _wait_gone(lambda: core.read_namespaced_config_map("owner2", namespace))
    assert not core.read_namespaced_config_map("kept", namespace).metadata.owner_references


def test_foreground_deletion_waits_for_dependents(core: client.CoreV1Api, namespace: str) -> None:
    owner = core.create_namespaced_config_map(namespace, cm("fg"))
    ref = client.V1OwnerReference(
        api_version="v1", kind="ConfigMap", name="fg", uid=owner.metadata.uid, block_owner_deletion=True
    )
    core.create_namespaced_config_map(
        namespace,
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="fg-dep", owner_references=[ref], finalizers=["x/hold"])),
    )
    core.delete_namespaced_config_map("fg", namespace, propagation_policy="Foreground")
    time.sleep(0.2)
    assert "foregroundDeletion" in core.read_namespaced_config_map("fg", namespace).metadata.finalizers
    core.patch_namespaced_config_map(
        "fg-dep", namespace, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/hold"]}}
    )
    _wait_gone(lambda: core.read_namespaced_config_map("fg", namespace))


def test_namespace_deletion_removes_content_and_waits_for_finalizers(core: client.CoreV1Api) -> None:
    ns = "t-nsdel"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=ns)))
    core.create_namespaced_config_map(ns, cm("plain"))
    core.create_namespaced_config_map(
        ns, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="held", finalizers=["x/hold"]))
    )
    core.delete_namespace(ns)
    time.sleep(0.3)
    nso = core.read_namespace(ns)
    assert nso.status.phase == "Terminating"
    assert any(c.type == "NamespaceFinalizersRemaining" for c in nso.status.conditions or [])
    with pytest.raises(ApiException) as e:
        core.read_namespaced_config_map("plain", ns)
    assert e.value.status == 404
    with pytest.raises(ApiException) as e:
        core.create_namespaced_config_map(ns, cm("late"))
    assert e.value.status == 403 and "because it is being terminated" in status_of(e.value)["message"]
    core.patch_namespaced_config_map("held", ns, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x/hold"]}})
    _wait_gone(lambda: core.read_namespace(ns))


# ---- watch ---------------------------------------------------------------------------------
def test_watch_from_resource_version_sees_every_change_in_order(core: client.CoreV1Api, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, cm("w1"))
    core.patch_namespaced_config_map("w1", namespace, {"data": {"k": "v2"}})
    core.create_namespaced_config_map(namespace, cm("w2"))
    core.delete_namespaced_config_map("w1", namespace)
    events = []
    w = watch.Watch()
    for ev in w.stream(core.list_namespaced_config_map, namespace, resource_version=start, timeout_seconds=2):
        events.append((ev["type"], ev["object"].metadata.name, int(ev["object"].metadata.resource_version)))
        if len(events) == 4:
            w.stop()
    assert [(t, n) for t, n, _ in events] == [("ADDED", "w1"), ("MODIFIED", "w1"), ("ADDED", "w2"), ("DELETED", "w1")]
    rvs = [rv for _, _, rv in events]
    assert rvs == sorted(rvs) and len(set(rvs)) == 4


def test_watch_label_selector_sees_objects_enter_and_leave(core: client.CoreV1Api, namespace: str) -> None:
    start = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, cm("sel", {"pick": "no"}))
    core.patch_namespaced_config_map("sel", namespace, {"metadata": {"labels": {"pick": "yes"}}})
    core.patch_namespaced_config_map("sel", namespace, {"metadata": {"labels": {"pick": "no"}}})
    got = [
        ev["type"]
        for ev in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            label_selector="pick=yes",
            resource_version=start,
            timeout_seconds=1,
        )
    ]
    assert got == ["ADDED", "DELETED"]


def test_watch_live_events_and_bookmarks(sim: SimCluster, http, core: client.CoreV1Api, namespace: str) -> None:
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    got: list[str] = []
    sim.runtime.api.options.bookmark_interval = 0.5

    def consume() -> None:
        with http.open(
            "GET",
            f"/api/v1/namespaces/{namespace}/configmaps?watch=true&resourceVersion={rv}"
            "&allowWatchBookmarks=true&timeoutSeconds=2",
        ) as resp:
            for line in resp:
                if line.strip():
                    got.append(json.loads(line)["type"])

    t = threading.Thread(target=consume)
    t.start()
    time.sleep(0.3)
    core.create_namespaced_config_map(namespace, cm("live"))
    t.join(10)
    sim.runtime.api.options.bookmark_interval = 5.0
    assert got[0] == "ADDED" and "BOOKMARK" in got[1:]


def test_too_old_resource_version_gets_410_then_relist_recovers(
    sim: SimCluster, core: client.CoreV1Api, namespace: str
) -> None:
    old = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.create_namespaced_config_map(namespace, cm("before-compaction"))
    sim.admin("POST", "/simcluster/v1/compact")
    with pytest.raises(ApiException) as e:
        for _ in watch.Watch().stream(
            core.list_namespaced_config_map, namespace, resource_version=old, timeout_seconds=2
        ):
            pass
    assert e.value.status == 410
    relist = core.list_namespaced_config_map(namespace)
    assert [o.metadata.name for o in relist.items] == ["before-compaction"]
    core.create_namespaced_config_map(namespace, cm("after"))
    names = [
        ev["object"].metadata.name
        for ev in watch.Watch().stream(
            core.list_namespaced_config_map,
            namespace,
            resource_version=relist.metadata.resource_version,
            timeout_seconds=1,
        )
    ]
    assert names == ["after"]


# ---- tables, auth, policy, faults -----------------------------------------------------------
def test_server_side_printing(http) -> None:
    _, table = http.call("GET", "/api/v1/nodes", accept="application/json;as=Table;v=v1;g=meta.k8s.io,application/json")
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]][:5] == ["Name", "Status", "Roles", "Age", "Version"]
    assert table["rows"][0]["cells"][:3] == ["worker-0", "Ready", "worker"]


def test_requests_without_the_token_are_401(http) -> None:
    with pytest.raises(urllib.error.HTTPError) as e:
        http.open("GET", "/api/v1/nodes", token="wrong")
    assert e.value.code == 401 and json.loads(e.value.read())["reason"] == "Unauthorized"
    with http.open("GET", "/version", token="wrong") as resp:  # /version is public, as on a real cluster
        assert resp.status == 200


def test_policy_drives_access_reviews_and_requests(
    sim: SimCluster, api_client: client.ApiClient, namespace: str
) -> None:
    authz = client.AuthorizationV1Api(api_client)

    def can(verb: str, group: str, resource: str, ns: str = "") -> bool:
        review = client.V1SelfSubjectAccessReview(
            spec=client.V1SelfSubjectAccessReviewSpec(
                resource_attributes=client.V1ResourceAttributes(verb=verb, group=group, resource=resource, namespace=ns)
            )
        )
        return authz.create_self_subject_access_review(review).status.allowed

    assert can("create", "k8s.ovn.org", "clusteruserdefinednetworks")
    sim.set_policy(
        rules=[
            {"verbs": ["get", "list", "watch", "create"], "apiGroups": ["", "authorization.k8s.io"], "resources": ["*"]}
        ]
    )
    try:
        assert not can("create", "k8s.ovn.org", "clusteruserdefinednetworks")
        assert can("create", "", "configmaps", namespace)
        with pytest.raises(ApiException) as e:
            client.CoreV1Api(api_client).delete_namespace(namespace)
        assert e.value.status == 403
        assert status_of(e.value)["message"] == (
            f'namespaces "{namespace}" is forbidden: User "kube:admin" cannot delete resource "namespaces" '
            'in API group "" at the cluster scope'
        )
    finally:
        sim.set_policy(allow_all=True)


def test_fault_knobs_429_and_5xx(sim: SimCluster, http, core: client.CoreV1Api, namespace: str) -> None:
    sim.set_faults(rate_429=1.0, retry_after_seconds=7)
    try:
        with pytest.raises(urllib.error.HTTPError) as he:
            http.open("GET", f"/api/v1/namespaces/{namespace}/configmaps")
        assert he.value.code == 429 and he.value.headers["Retry-After"] == "7"
        body = json.loads(he.value.read())
        assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 7
    finally:
        sim.set_faults(rate_429=0.0)
    sim.set_faults(rate_5xx=1.0)
    try:
        code, st = http.call("GET", f"/api/v1/namespaces/{namespace}/configmaps")
        assert code in (500, 503) and st["reason"] in ("InternalError", "ServiceUnavailable")
        assert http.call("GET", "/version")[0] == 200  # discovery is not throttled
    finally:
        sim.set_faults(rate_5xx=0.0)
    with pytest.raises(urllib.error.HTTPError) as he:
        sim.set_faults(no_such_knob=1)
    assert he.value.code == 400
    assert core.list_namespaced_config_map(namespace).items == []


def test_bad_bodies_get_4xx_and_the_server_keeps_serving(http, core: client.CoreV1Api, namespace: str) -> None:
    url = f"/api/v1/namespaces/{namespace}/configmaps"
    for body, ctype, code in [
        ("{not json", "application/json", 400),
        ("a: [unclosed", "application/yaml", 400),
        ('{"kind": "ConfigMap"}', "text/plain", 415),
        ("x" * (3 * 1024 * 1024 + 10), "application/json", 413),
    ]:
        got, st = http.call("POST", url, body, ctype)
        assert got == code and st["kind"] == "Status", (ctype, st)
    assert core.list_namespaced_config_map(namespace).items == []


# ---- scale and persistence ------------------------------------------------------------------
def test_32_threads_create_5000_objects_nothing_lost_or_duplicated(sim: SimCluster, namespace: str) -> None:
    cfg = client.Configuration()
    config.load_kube_config(str(sim.kubeconfig), client_configuration=cfg)
    cfg.connection_pool_maxsize = 32
    shared = client.ApiClient(cfg)
    core = client.CoreV1Api(shared)
    results: list[tuple[str, int]] = []
    lock = threading.Lock()
    errors: list[Exception] = []

    def worker(t: int) -> None:
        mine = []
        try:
            for i in range(t, 5000, 32):
                obj = core.create_namespaced_config_map(namespace, cm(f"c{i:05d}"))
                mine.append((obj.metadata.name, int(obj.metadata.resource_version)))
        except Exception as e:
            errors.append(e)
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(32)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    assert len(results) == 5000 and len({n for n, _ in results}) == 5000
    rvs = [rv for _, rv in results]
    assert len(set(rvs)) == 5000  # every write got its own resourceVersion
    per_thread_order_ok = all(
        [rv for n, rv in results if int(n[1:]) % 32 == t] == sorted(rv for n, rv in results if int(n[1:]) % 32 == t)
        for t in range(32)
    )
    assert per_thread_order_ok  # later writes of one client always get higher versions
    listed = core.list_namespaced_config_map(namespace, limit=1000)
    total = len(listed.items) + (listed.metadata.remaining_item_count or 0)
    assert total == 5000


def test_state_file_survives_restart(tmp_path) -> None:
    state = tmp_path / "state.json"
    with SimCluster(nodes=2, state_file=state) as first:
        core = client.CoreV1Api(config.new_client_from_config(str(first.kubeconfig)))
        core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="kept")))
        core.create_namespaced_config_map("kept", cm("persisted"))
        rv = int(core.read_namespaced_config_map("persisted", "kept").metadata.resource_version)
    assert state.exists()
    with SimCluster(nodes=2, state_file=state) as second:
        core = client.CoreV1Api(config.new_client_from_config(str(second.kubeconfig)))
        assert core.read_namespaced_config_map("persisted", "kept").data == {"k": "v"}
        fresh = core.create_namespaced_config_map("kept", cm("new"))
        assert int(fresh.metadata.resource_version) > rv
        assert [n.metadata.name for n in core.list_node().items] == ["worker-0", "worker-1"]


def test_isolated_process_mode(tmp_path) -> None:
    with SimCluster(nodes=2, isolated=True, workdir=tmp_path) as c:
        core = client.CoreV1Api(config.new_client_from_config(str(c.kubeconfig)))
        assert len(core.list_node().items) == 2
        assert c.stats()["objects"]["nodes"] == 2


def test_latency_knob_slows_resource_requests_only(sim: SimCluster, http, namespace: str) -> None:
    sim.set_faults(latency_ms=300)
    try:
        started = time.monotonic()
        assert http.call("GET", f"/api/v1/namespaces/{namespace}/configmaps")[0] == 200
        slow = time.monotonic() - started
        started = time.monotonic()
        assert http.call("GET", "/version")[0] == 200
        fast = time.monotonic() - started
    finally:
        sim.set_faults(latency_ms=0)
    assert slow >= 0.3 > fast


def test_watch_of_a_client_that_hung_up_is_dropped(sim: SimCluster, http, namespace: str) -> None:
    """A watch whose selector matches nothing never writes; it must still end when its client leaves
    (kube-apiserver cancels the request's context), or it filters every event until its timeout."""
    before = sim.stats()["openWatches"]
    resp = http.open(
        "GET",
        f"/api/v1/namespaces/{namespace}/configmaps?watch=true&labelSelector=nothing%3Dmatches&timeoutSeconds=600",
    )
    deadline = time.monotonic() + 5
    while sim.stats()["openWatches"] <= before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.stats()["openWatches"] == before + 1
    resp.close()
    deadline = time.monotonic() + 5
    while sim.stats()["openWatches"] > before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.stats()["openWatches"] == before
