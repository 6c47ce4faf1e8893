"""tasks.kube against a simulated cluster: routing, paging, patches, RBAC checks, the token bucket,
retries under injected 429/5xx, Retry-After, and list+watch surviving stream cuts and compaction."""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from simcluster import ClusterConfig, SimCluster
from tasks.kube import (
    ClusterConfigError,
    ClusterTarget,
    Kube,
    KubeError,
    RateLimiter,
    WatchCounters,
    WatchEvent,
    object_key,
)
from tasks.kube import client as kube_module
from tasks.kube.resources import CONFIGMAP, KNOWN, KUBEVIRT, NETWORK_CONFIG, NODE, VM_ACTIONS

NO_FAULTS: dict[str, Any] = {
    "rate_429": 0.0,
    "rate_5xx": 0.0,
    "retry_after_seconds": 1,
    "latency_ms": 0.0,
    "watch_cut_seconds": 0.0,
}


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimCluster]:
    with SimCluster(config=ClusterConfig(nodes=3, profile="fast")) as c:
        yield c


@pytest.fixture(scope="module")
def kube(cluster: SimCluster) -> Iterator[Kube]:
    """Unlimited QPS: the limiter's own behaviour is tested on its own, not through every test's runtime."""
    with Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0, max_in_flight=32) as k:
        yield k


@pytest.fixture
def ns(kube: Kube) -> str:
    name = f"k-{uuid.uuid4().hex[:8]}"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


@pytest.fixture
def faults(cluster: SimCluster) -> Iterator[SimCluster]:
    """Faults switched on by the test are switched off again whatever happens."""
    try:
        yield cluster
    finally:
        cluster.set_faults(**NO_FAULTS)


def cm(name: str, ns: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": ns, "labels": labels or {}},
        "data": data or {"k": "v"},
    }


# ---- routing --------------------------------------------------------------------------------
def test_declared_kinds_match_discovery(kube: Kube) -> None:
    for route in KNOWN:
        assert kube.discover(route.api_version, route.kind) == route, route.kind
    assert len(KNOWN) == 19


def test_every_declared_kind_is_reachable(kube: Kube, ns: str) -> None:
    for route in KNOWN:
        if route.kind == "SelfSubjectAccessReview":
            continue  # create-only; exercised by can_i
        items, rv = kube.list(route, ns if route.namespaced else None)
        assert rv.isdigit(), route.kind
        assert all(o["kind"] == route.kind and o["apiVersion"] == route.api_version for o in items)
    assert kube.get(NETWORK_CONFIG, "cluster")["spec"]["serviceNetwork"] == ["172.30.0.0/16"]
    assert kube.get(NODE, "worker-1")["metadata"]["name"] == "worker-1"
    kv, _ = kube.list(KUBEVIRT, "openshift-cnv")
    assert len(kv) == 1


def test_discovery_fallback_and_unknown_kind(kube: Kube, ns: str) -> None:
    pod = kube.resource("v1", "Pod")  # not in the table
    assert (pod.plural, pod.namespaced) == ("pods", True)
    assert pod.path(ns, "p") == f"/api/v1/namespaces/{ns}/pods/p"
    with pytest.raises(KubeError) as e:
        kube.resource("kubevirt.io/v1", "NoSuchKind")
    assert e.value.code == 404
    with pytest.raises(KubeError) as e:
        kube.resource("nosuch.example.com/v1", "Thing")
    assert e.value.code == 404


# ---- verbs ----------------------------------------------------------------------------------
def test_get_create_create_or_get_delete(kube: Kube, ns: str) -> None:
    assert kube.get(CONFIGMAP, "missing", ns) is None
    made = kube.create(cm("a", ns, x="1"))
    assert made["metadata"]["uid"] and made["data"] == {"x": "1"}
    with pytest.raises(KubeError) as e:
        kube.create(cm("a", ns))
    assert (e.value.code, e.value.reason, str(e.value)) == (409, "AlreadyExists", 'configmaps "a" already exists')
    assert e.value.attempts == 1
    again, created = kube.create_or_get(cm("a", ns, x="other"))
    assert not created and again["metadata"]["uid"] == made["metadata"]["uid"] and again["data"] == {"x": "1"}
    fresh, created = kube.create_or_get(cm("b", ns))
    assert created and fresh["metadata"]["name"] == "b"
    assert kube.delete(CONFIGMAP, "a", ns) is True
    assert kube.delete(CONFIGMAP, "a", ns) is False
    assert kube.get(CONFIGMAP, "a", ns) is None
    v = kube.version()
    assert (v["major"], v["minor"]) == ("1", "32")


def test_errors_are_not_retried_except_transient(kube: Kube) -> None:
    before = kube.stats.retries
    with pytest.raises(KubeError) as e:
        kube.create(cm("x", "no-such-namespace"))
    assert e.value.code == 404 and e.value.attempts == 1 and "not found" in str(e.value)
    with pytest.raises(KubeError) as e:
        kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "Bad_Name", "namespace": "default"}})
    assert e.value.code == 422 and e.value.reason == "Invalid"
    assert kube.stats.retries == before


def test_retried_create_meeting_409_adopts_own_object(kube: Kube, ns: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A POST retried after a broken connection may find the object its first attempt created."""
    kube.create(cm("mine", ns, labels={"udn-rollout.io/run": "r1"}))
    kube.create(cm("theirs", ns, labels={"udn-rollout.io/run": "someone-else"}))
    real = kube._json

    def post_conflicts_after_retry(method: str, path: str, **kw: Any) -> Any:
        if method == "POST":
            raise KubeError(409, "AlreadyExists", "exists", attempts=2)
        return real(method, path, **kw)

    monkeypatch.setattr(kube, "_json", post_conflicts_after_retry)
    got = kube.create(cm("mine", ns, labels={"udn-rollout.io/run": "r1"}))
    assert got["metadata"]["labels"] == {"udn-rollout.io/run": "r1"}
    with pytest.raises(KubeError):
        kube.create(cm("theirs", ns, labels={"udn-rollout.io/run": "r1"}))


def test_list_paginates(kube: Kube, ns: str) -> None:
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: kube.create(cm(f"cm-{i:04d}", ns, labels={"half": str(i % 2)})), range(1200)))
    lists_before = kube.stats.by_verb.get("list", 0)
    items, rv = kube.list(CONFIGMAP, ns, page_size=500)
    assert len(items) == 1200 and len({o["metadata"]["name"] for o in items}) == 1200
    assert kube.stats.by_verb["list"] - lists_before == 3  # 500 + 500 + 200
    assert int(rv) >= max(int(o["metadata"]["resourceVersion"]) for o in items)
    odd, _ = kube.list(CONFIGMAP, ns, label_selector="half=1", page_size=100)
    assert len(odd) == 600
    one, _ = kube.list(CONFIGMAP, ns, field_selector="metadata.name=cm-0007")
    assert [o["metadata"]["name"] for o in one] == ["cm-0007"]
    everywhere, _ = kube.list(CONFIGMAP, label_selector="half=0")  # all namespaces
    assert len(everywhere) >= 600


def test_list_restarts_when_continue_token_expires(kube: Kube, ns: str, faults: SimCluster) -> None:
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: kube.create(cm(f"c-{i:03d}", ns)), range(300)))
    faults.set_faults(latency_ms=40)
    other = f"{ns}-side"

    def compact_mid_list() -> None:
        time.sleep(0.15)
        kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
        faults.admin("POST", "/simcluster/v1/compact")

    restarts = kube.stats.list_restarts
    t = threading.Thread(target=compact_mid_list)
    t.start()
    items, _ = kube.list(CONFIGMAP, ns, page_size=25)
    t.join()
    assert kube.stats.list_restarts > restarts
    assert sorted(o["metadata"]["name"] for o in items) == [f"c-{i:03d}" for i in range(300)]


def test_patch_types(kube: Kube, ns: str) -> None:
    kube.create(cm("p", ns, a="1"))
    assert kube.patch(CONFIGMAP, "p", {"data": {"b": "2"}}, ns)["data"] == {"a": "1", "b": "2"}
    out = kube.patch(CONFIGMAP, "p", [{"op": "remove", "path": "/data/a"}], ns, patch_type="json")
    assert out["data"] == {"b": "2"}
    out = kube.patch(CONFIGMAP, "p", {"metadata": {"labels": {"l": "x"}}}, ns, patch_type="strategic")
    assert out["metadata"]["labels"] == {"l": "x"}
    applied = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "p", "namespace": ns}, "data": {"c": "3"}}
    assert kube.patch(CONFIGMAP, "p", applied, ns, patch_type="apply")["data"]["c"] == "3"
    with pytest.raises(ValueError):
        kube.patch(CONFIGMAP, "p", {"op": "remove"}, ns, patch_type="json")
    with pytest.raises(KubeError) as e:
        kube.patch(CONFIGMAP, "nope", {"data": {}}, ns)
    assert e.value.code == 404


def test_can_i_with_restricted_policy(kube: Kube, cluster: SimCluster, ns: str) -> None:
    assert kube.can_i("create", "kubevirt.io", "virtualmachines", ns)
    try:
        cluster.set_policy(
            rules=[
                {"verbs": ["get", "list", "watch"], "apiGroups": ["*"], "resources": ["*"]},
                {"verbs": ["create"], "apiGroups": ["authorization.k8s.io"], "resources": ["selfsubjectaccessreviews"]},
                {
                    "verbs": ["create"],
                    "apiGroups": ["kubevirt.io"],
                    "resources": ["virtualmachines"],
                    "namespaces": [ns],
                },
            ]
        )
        assert kube.can_i("list", "", "nodes")
        assert kube.can_i("create", "kubevirt.io", "virtualmachines", ns)
        assert not kube.can_i("create", "kubevirt.io", "virtualmachines", "elsewhere")
        assert not kube.can_i("create", "k8s.ovn.org", "clusteruserdefinednetworks")
        assert not kube.can_i("update", "subresources.kubevirt.io", "virtualmachines", ns, subresource="migrate")
        with pytest.raises(KubeError) as e:
            kube.create(cm("denied", ns))
        assert e.value.code == 403 and e.value.reason == "Forbidden"
    finally:
        cluster.set_policy(allow_all=True)
    assert kube.can_i("create", "k8s.ovn.org", "clusteruserdefinednetworks")


def test_action_subresource(kube: Kube, ns: str) -> None:
    vm = {
        "apiVersion": "kubevirt.io/v1",
        "kind": "VirtualMachine",
        "metadata": {"name": "halted", "namespace": ns},
        "spec": {
            "runStrategy": "Halted",
            "template": {
                "spec": {
                    "domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}},
                    "volumes": [{"name": "d", "containerDisk": {"image": "quay.io/containerdisks/fedora:41"}}],
                }
            },
        },
    }
    kube.create(vm)
    with pytest.raises(KubeError) as e:
        kube.action(VM_ACTIONS, "halted", ns, "migrate")
    assert e.value.code == 409 and "not running" in str(e.value)
    with pytest.raises(KubeError) as e:
        kube.action(VM_ACTIONS, "absent", ns, "migrate", {})
    assert e.value.code == 404


def test_credential_refresh_hook_is_throttled(kube: Kube, monkeypatch: pytest.MonkeyPatch) -> None:
    """The kubeconfig loader's refresh hook (which re-installs itself) runs at most once per interval."""
    hook = kube._cfg.refresh_api_key_hook
    assert hook is not None and hook.__name__ == "throttled"
    calls = []

    def inner(c: Any) -> None:
        calls.append(1)
        c.refresh_api_key_hook = inner  # as the loader does on every refresh

    cfg = SimpleNamespace(refresh_api_key_hook=inner)
    kube_module._throttle_refresh_hook(cfg)  # type: ignore[arg-type]
    for _ in range(100):
        cfg.refresh_api_key_hook(cfg)
    assert len(calls) == 1 and cfg.refresh_api_key_hook.__name__ == "throttled"
    monkeypatch.setattr(kube_module, "TOKEN_REFRESH_INTERVAL", 0.0)
    for _ in range(3):
        cfg.refresh_api_key_hook(cfg)
    assert len(calls) == 4
    for _ in range(20):
        kube.get(NODE, "worker-0")
    assert kube._cfg.refresh_api_key_hook.__name__ == "throttled"


# ---- limiter and retries ----------------------------------------------------------------------
def test_rate_limiter_qps_and_burst() -> None:
    lim = RateLimiter(qps=20, burst=5)
    t0 = time.monotonic()
    for _ in range(5):
        lim.acquire()
    assert time.monotonic() - t0 < 0.1  # the burst is free
    for _ in range(55):
        lim.acquire()
    elapsed = time.monotonic() - t0
    assert 2.4 <= elapsed <= 4.0, elapsed  # (60 - 5) / 20 = 2.75 s
    assert lim.acquired == 60 and lim.waits == 55 and lim.wait_seconds > 2


def test_rate_limiter_threads_and_unlimited() -> None:
    lim = RateLimiter(qps=100, burst=10)
    t0 = time.monotonic()
    with ThreadPoolExecutor(8) as ex:
        list(ex.map(lambda _: lim.acquire(), range(60)))
    assert 0.4 <= time.monotonic() - t0 <= 1.5  # (60 - 10) / 100 = 0.5 s, shared by all threads
    free = RateLimiter(qps=0, burst=1)
    t0 = time.monotonic()
    for _ in range(10_000):
        free.acquire()
    assert time.monotonic() - t0 < 0.5 and free.waits == 0 and free.unlimited


def test_creates_survive_429_and_5xx(cluster: SimCluster, faults: SimCluster, ns: str) -> None:
    k = Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0, retries=12)
    faults.set_faults(rate_429=0.3, rate_5xx=0.1, retry_after_seconds=0)
    with ThreadPoolExecutor(16) as ex:
        made = list(ex.map(lambda i: k.create(cm(f"r-{i:03d}", ns, labels={"batch": "r"})), range(200)))
    faults.set_faults(**NO_FAULTS)
    assert len({o["metadata"]["uid"] for o in made}) == 200
    items, _ = k.list(CONFIGMAP, ns, label_selector="batch=r")
    assert sorted(o["metadata"]["name"] for o in items) == [f"r-{i:03d}" for i in range(200)]
    s = k.stats.snapshot()
    assert s["retries"] > 0 and s["throttled"] > 0 and s["server_errors"] > 0
    assert s["retries"] == s["throttled"] + s["server_errors"]
    assert s["by_verb"]["create"] == 200 + s["retries"]
    assert s["in_flight"] == 0 and s["in_flight_peak"] <= 64


def test_retry_after_is_honoured(cluster: SimCluster, faults: SimCluster, ns: str) -> None:
    k = Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0)
    faults.set_faults(rate_429=1.0, retry_after_seconds=1)
    threading.Timer(0.3, lambda: faults.set_faults(rate_429=0.0)).start()
    t0 = time.monotonic()
    assert k.get(CONFIGMAP, "nothing", ns) is None
    elapsed = time.monotonic() - t0
    assert 1.0 <= elapsed < 2.5, elapsed
    assert k.stats.throttled >= 1 and k.stats.retries == k.stats.throttled


def test_in_flight_cap(cluster: SimCluster, faults: SimCluster, ns: str) -> None:
    k = Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0, max_in_flight=4)
    faults.set_faults(latency_ms=30)
    with ThreadPoolExecutor(16) as ex:
        list(ex.map(lambda i: k.get(CONFIGMAP, f"x{i}", ns), range(48)))
    assert k.stats.in_flight_peak == 4
    assert k.stats.requests == 48


# ---- watch ----------------------------------------------------------------------------------
def test_watch_resumes_after_cuts_without_loss(kube: Kube, faults: SimCluster, ns: str) -> None:
    faults.set_faults(watch_cut_seconds=1)
    _, rv = kube.list(CONFIGMAP, ns)
    expected: list[tuple[str, str]] = []

    def produce() -> None:
        for step in range(300):
            i = step % 100
            if step < 100:
                kube.create(cm(f"w-{i:03d}", ns))
                expected.append(("ADDED", f"w-{i:03d}"))
            elif step < 200:
                kube.patch(CONFIGMAP, f"w-{i:03d}", {"data": {"n": str(step)}}, ns)
                expected.append(("MODIFIED", f"w-{i:03d}"))
            else:
                kube.delete(CONFIGMAP, f"w-{i:03d}", ns)
                expected.append(("DELETED", f"w-{i:03d}"))
            time.sleep(4.0 / 300)

    producer = threading.Thread(target=produce)
    counters = WatchCounters()
    seen: list[WatchEvent] = []
    producer.start()
    for ev in kube.watch(CONFIGMAP, ns, resource_version=rv, timeout=20, counters=counters):
        seen.append(ev)
        if len(seen) == 300:
            break
    producer.join()
    assert [(e.type, e.object["metadata"]["name"]) for e in seen] == expected
    rvs = [int(e.object["metadata"]["resourceVersion"]) for e in seen]
    assert rvs == sorted(rvs) and len(set(rvs)) == 300
    assert counters.resumes >= 3 and counters.relists == 0


def test_watch_relists_on_410_and_emits_the_diff(kube: Kube, faults: SimCluster, ns: str) -> None:
    for i in range(20):
        kube.create(cm(f"g-{i:02d}", ns))
    faults.set_faults(watch_cut_seconds=1)
    counters = WatchCounters()
    w = kube.watch(CONFIGMAP, ns, counters=counters, timeout=30)
    cache: dict[str, dict[str, Any]] = {}

    def apply(ev: WatchEvent) -> None:
        if ev.type == "DELETED":
            cache.pop(object_key(ev.object))
        elif ev.type != "RELISTED":
            cache[object_key(ev.object)] = ev.object

    for _ in range(20):  # the initial list, as ADDED
        apply(next(w))
    assert len(cache) == 20
    kube.create(cm("g-opens-stream", ns))
    ev = next(w)  # now a stream is open
    assert (ev.type, ev.object["metadata"]["name"]) == ("ADDED", "g-opens-stream")
    apply(ev)
    time.sleep(1.3)  # we stop consuming; the server cuts the stream meanwhile
    for i in range(5):
        kube.patch(CONFIGMAP, f"g-{i:02d}", {"data": {"changed": "yes"}}, ns)
        kube.delete(CONFIGMAP, f"g-{i + 5:02d}", ns)
        kube.create(cm(f"n-{i}", ns))
    faults.admin("POST", "/simcluster/v1/compact")
    diff: list[WatchEvent] = []
    for ev in w:
        apply(ev)
        if ev.type == "RELISTED":
            break
        diff.append(ev)
    w.close()
    got = sorted((e.type, e.object["metadata"]["name"]) for e in diff)
    want = sorted(
        [("MODIFIED", f"g-{i:02d}") for i in range(5)]
        + [("DELETED", f"g-{i + 5:02d}") for i in range(5)]
        + [("ADDED", f"n-{i}") for i in range(5)]
    )
    assert got == want
    assert counters.relists == 1
    fresh, _ = kube.list(CONFIGMAP, ns)
    assert {k: o["metadata"]["resourceVersion"] for k, o in cache.items()} == {
        object_key(o): o["metadata"]["resourceVersion"] for o in fresh
    }


def test_watch_from_compacted_version_relists(kube: Kube, cluster: SimCluster, ns: str) -> None:
    kube.create(cm("old", ns))
    cluster.admin("POST", "/simcluster/v1/compact")
    evs = []
    for ev in kube.watch(CONFIGMAP, ns, resource_version="1", timeout=10):
        evs.append(ev)
        if ev.type == "RELISTED":
            break
    assert [(e.type, e.object.get("metadata", {}).get("name")) for e in evs] == [("ADDED", "old"), ("RELISTED", None)]


def test_watch_stop_event_ends_an_idle_stream(kube: Kube, ns: str) -> None:
    stop = threading.Event()
    threading.Timer(0.5, stop.set).start()
    t0 = time.monotonic()
    assert list(kube.watch(CONFIGMAP, ns, stop=stop)) == []
    assert time.monotonic() - t0 < 3


def test_wait_for_uses_watch_events(kube: Kube, ns: str) -> None:
    kube.create(cm("ready", ns))
    threading.Timer(0.3, lambda: kube.patch(CONFIGMAP, "ready", {"data": {"phase": "Running"}}, ns)).start()
    lists = kube.stats.by_verb.get("list", 0)
    obj = kube.wait_for(
        CONFIGMAP, "ready", ns, condition=lambda o: bool(o and o["data"].get("phase") == "Running"), timeout=10
    )
    assert obj is not None and obj["data"]["phase"] == "Running"
    assert kube.stats.by_verb["list"] - lists == 1  # one read, then events
    threading.Timer(0.3, lambda: kube.delete(CONFIGMAP, "ready", ns)).start()
    assert kube.wait_for(CONFIGMAP, "ready", ns, condition=lambda o: o is None, timeout=10) is None
    t0 = time.monotonic()
    with pytest.raises(TimeoutError) as e:
        kube.wait_for(CONFIGMAP, "never", ns, condition=lambda o: o is not None, timeout=0.5)
    assert e.value.last is None and time.monotonic() - t0 < 3  # type: ignore[attr-defined]


def test_informer_cache_and_wait_for(kube: Kube, ns: str) -> None:
    kube.create(cm("pre", ns, labels={"app": "inf"}))
    kube.create(cm("unrelated", ns))
    events: list[WatchEvent] = []
    with kube.informer(CONFIGMAP, ns, label_selector="app=inf", on_event=events.append) as inf:
        assert inf.synced.wait(5)
        assert set(inf.cache) == {f"{ns}/pre"}

        def produce() -> None:
            for i in range(10):
                kube.create(cm(f"i-{i}", ns, labels={"app": "inf"}))
            kube.patch(CONFIGMAP, "pre", {"data": {"done": "1"}}, ns)

        threading.Thread(target=produce).start()
        assert inf.wait_for(lambda cache: len(cache) == 11, timeout=10)
        assert inf.wait_for(lambda o: o is not None and o["data"].get("done") == "1", timeout=10, key=f"{ns}/pre")
        assert not inf.wait_for(lambda cache: len(cache) > 50, timeout=0.3)
        assert inf.events_seen == 11 and inf.relists == 0
        assert inf.get("i-3", ns) is not None
    assert [e.type for e in events].count("ADDED") == 11  # the listed one and ten from the watch
    assert not inf._thread.is_alive()


# ---- websocket and targets ------------------------------------------------------------------
def test_websocket_through_the_door(kube: Kube, cluster: SimCluster) -> None:
    """The console's WebSocket goes through the client: TLS and auth from the kubeconfig, counted and
    limited like every request, refusals as KubeError with the server's Status."""
    header, sslopt = kube._ws_auth()
    assert kube._ws_base() == cluster.url.replace("https://", "wss://")
    assert header == [f"Authorization: Bearer {cluster.token}"]
    assert Path(sslopt["ca_certs"]).is_file()
    path = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/no-such-vm/console"
    before = kube.stats.by_verb.get("connect", 0)
    with pytest.raises(KubeError) as e:  # TLS and auth pass; the VMI does not exist
        kube.websocket(path, subprotocols=["plain.kubevirt.io"], timeout=5)
    assert e.value.code == 404
    assert kube.stats.by_verb["connect"] == before + 1


def test_websocket_honours_retry_after(cluster: SimCluster, faults: SimCluster) -> None:
    """A 429 on the handshake is retried after the server's Retry-After, as every other request."""
    k = Kube(ClusterTarget(kubeconfig=str(cluster.kubeconfig)), qps=0, retries=3)
    faults.set_faults(rate_429=1.0, retry_after_seconds=1)
    path = "/apis/subresources.kubevirt.io/v1/namespaces/default/virtualmachineinstances/no-such-vm/console"
    t0 = time.monotonic()
    with pytest.raises(KubeError) as e:
        k.websocket(path, subprotocols=["plain.kubevirt.io"], timeout=5)
    assert e.value.code == 429 and e.value.attempts == 4
    assert time.monotonic() - t0 >= 3.0  # three waits of Retry-After: 1
    assert k.stats.throttled == 4 and k.stats.retries == 3


def test_missing_kubeconfig_says_how_to_point_at_a_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ClusterConfigError) as e:
        Kube(ClusterTarget(kubeconfig=str(tmp_path / "nope")))
    for hint in ("--kubeconfig", "--context", "KUBECONFIG", "--sim"):
        assert hint in str(e.value)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ValueError, match="--sim"):
        ClusterTarget().resolve()
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "a") + os.pathsep + str(tmp_path / "b"))
    with pytest.raises(ClusterConfigError, match="KUBECONFIG"):
        ClusterTarget().resolve()


def _two_context_kubeconfig(cluster: SimCluster, path: Path) -> Path:
    kc = yaml.safe_load(cluster.kubeconfig.read_text())
    sim_cluster, sim_user = kc["clusters"][0], kc["users"][0]
    doc = {
        "apiVersion": "v1",
        "kind": "Config",
        "current-context": "elsewhere",
        "clusters": [sim_cluster, {"name": "dead", "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [sim_user, {"name": "nobody", "user": {"token": "x"}}],
        "contexts": [
            {"name": "elsewhere", "context": {"cluster": "dead", "user": "nobody", "namespace": "nowhere"}},
            {
                "name": "sim",
                "context": {"cluster": sim_cluster["name"], "user": sim_user["name"], "namespace": "team-a"},
            },
        ],
    }
    path.write_text(yaml.safe_dump(doc))
    return path


def test_context_selection(cluster: SimCluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _two_context_kubeconfig(cluster, tmp_path / "kc")
    k = Kube(ClusterTarget(kubeconfig=str(path), context="sim"))
    assert (k.server, k.namespace) == (cluster.url, "team-a")
    assert k.get(NODE, "worker-0") is not None
    default = Kube(ClusterTarget(kubeconfig=str(path)))
    assert (default.server, default.namespace) == ("https://127.0.0.1:1", "nowhere")
    with pytest.raises(ClusterConfigError, match="no-such-context"):
        Kube(ClusterTarget(kubeconfig=str(path), context="no-such-context"))
    # KUBECONFIG lists are merged: a context from the second file is usable.
    # and, as with kubectl, the first file that sets current-context decides it.
    other = tmp_path / "other"
    doc = {"apiVersion": "v1", "kind": "Config", "current-context": "sim", "clusters": [], "users": [], "contexts": []}
    other.write_text(yaml.safe_dump(doc))
    monkeypatch.setenv("KUBECONFIG", f"{other}{os.pathsep}{path}")
    merged = Kube(ClusterTarget())
    assert merged.server == cluster.url and merged.version()["major"] == "1"
    monkeypatch.setenv("KUBECONFIG", f"{path}{os.pathsep}{other}")
    assert Kube(ClusterTarget()).server == "https://127.0.0.1:1"
    assert Kube(ClusterTarget(context="sim")).server == cluster.url
