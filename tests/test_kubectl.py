"""The simulated cluster through a real kubectl binary: what an administrator types, answered as a real cluster would.

The cluster is shared by the whole session, so every test makes its own uniquely named objects and
asserts only on those (plus the seeded nodes, which nothing changes). Each test gets its own kubectl
discovery cache, so a test never depends on what an earlier one cached.
"""

from __future__ import annotations

import json
import queue
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, dynamic

from simcluster import SimCluster

pytestmark = pytest.mark.kubectl

LABEL_POLICY_MESSAGE = (
    "ValidatingAdmissionPolicy 'user-defined-networks-namespace-label' with binding "
    "'user-defined-networks-namespace-label-binding' denied request: The 'k8s.ovn.org/primary-user-defined-network' "
    "label cannot be added/removed after the namespace was created"
)


@pytest.fixture
def kc(kubectl: Any, sim: SimCluster, tmp_path: Path) -> Any:
    """The session's kubectl, with a discovery cache of this test's own (KUBECACHEDIR)."""
    return type(kubectl)(sim.kubeconfig, tmp_path / "kube-cache")


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:6]


def rows(output: str) -> list[list[str]]:
    """kubectl's column output as lists of cells (cells never contain spaces in these tests)."""
    return [line.split() for line in output.splitlines() if line.strip()]


def header_and_rows(output: str) -> tuple[list[str], dict[str, list[str]]]:
    """The header line and the rows keyed by their NAME cell (NAME may follow NAMESPACE)."""
    lines = rows(output)
    header = lines[0]
    at = header.index("NAME")
    return header, {r[at]: r for r in lines[1:]}


def sections(output: str) -> list[str]:
    """`kubectl get a,b,c` prints one table per kind, separated by blank lines."""
    return [s for s in output.split("\n\n") if s.strip()]


def manifest(ns: str, cudn: str, vm: str, *, memory: str = "1Gi") -> str:
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": ns, "labels": {"k8s.ovn.org/primary-user-defined-network": "", "team": "kubectl"}},
        },
        {
            "apiVersion": "k8s.ovn.org/v1",
            "kind": "ClusterUserDefinedNetwork",
            "metadata": {"name": cudn},
            "spec": {
                "namespaceSelector": {
                    "matchExpressions": [{"key": "kubernetes.io/metadata.name", "operator": "In", "values": [ns]}]
                },
                "network": {
                    "topology": "Layer3",
                    "layer3": {"role": "Primary", "subnets": [{"cidr": "192.168.0.0/16", "hostSubnet": 24}]},
                },
            },
        },
        {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": vm, "namespace": ns, "labels": {"app": "kubectl-test"}},
            "spec": {
                "runStrategy": "Halted",
                "template": {
                    "metadata": {"labels": {"kubevirt.io/vm": vm}},
                    "spec": {
                        "domain": {
                            "resources": {"requests": {"memory": memory}},
                            "devices": {"interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}]},
                        },
                        "networks": [{"name": "primary", "pod": {}}],
                    },
                },
            },
        },
    ]
    return yaml.safe_dump_all(docs, sort_keys=False)


@pytest.fixture
def applied(kc: Any, tmp_path: Path, suffix: str) -> Iterator[dict[str, Any]]:
    """A labelled namespace, a Layer3 CUDN selecting it and a VM in it, applied with `kubectl apply -f`."""
    names = {"ns": f"kt-{suffix}", "cudn": f"kt-l3-{suffix}", "vm": f"rhel8-vm-{suffix}"}
    path = tmp_path / "rollout.yaml"
    path.write_text(manifest(names["ns"], names["cudn"], names["vm"]))
    first = kc.run("apply", "-f", str(path))
    yield {**names, "path": path, "first": first.stdout}
    kc.run("delete", "ns", names["ns"], "--wait=false", check=False)
    kc.run("delete", "cudn", names["cudn"], "--wait=false", check=False)


class LineReader:
    """Lines of a running process's stdout, read on a thread so the test can wait with a timeout."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def until(self, pred: Any, timeout: float = 10) -> list[str]:
        """Lines read until one satisfies `pred` (inclusive); fails on timeout or end of stream."""
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for a watch line; got {got!r}")
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                err = self.proc.stderr.read() if self.proc.stderr else ""
                raise AssertionError(f"watch ended early; got {got!r}; stderr: {err}")
            got.append(line)
            if pred(line):
                return got

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def wait_for(pred: Any, timeout: float = 10, interval: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(interval)


# ---- nodes and discovery --------------------------------------------------------------------
def test_get_nodes(kc: Any) -> None:
    out = kc.run("get", "nodes").stdout
    header, by_name = header_and_rows(out)
    assert header == ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    assert sorted(by_name) == ["worker-0", "worker-1", "worker-2"]
    for row in by_name.values():
        assert row[1:3] == ["Ready", "worker"]
        assert row[4].startswith("v1.32.")
    wide_header = rows(kc.run("get", "nodes", "-o", "wide").stdout)[0]
    assert wide_header[:7] == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP"]


def test_describe_node(kc: Any) -> None:
    out = kc.run("describe", "node", "worker-1").stdout
    lines = [line.split() for line in out.splitlines()]
    assert ["Name:", "worker-1"] in lines
    assert ["Roles:", "worker"] in lines
    ready = next(line for line in lines if line[:1] == ["Ready"])
    assert ready[1] == "True" and "KubeletReady" in ready
    assert "Kubelet Version:            v1.32." in out
    assert "Non-terminated Pods:" in out and "Allocated resources:" in out


def test_api_resources_lists_short_names(kc: Any) -> None:
    out = kc.run("api-resources").stdout
    lines = out.splitlines()
    header = lines[0]
    assert header.split() == ["NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND"]
    starts = [header.index(h) for h in ("NAME", "SHORTNAMES", "APIVERSION", "NAMESPACED", "KIND")]
    table: dict[str, tuple[str, ...]] = {}
    for line in lines[1:]:
        cells = tuple(
            line[a:b].strip() for a, b in zip(starts, [*starts[1:], len(line) + 1], strict=True)
        )  # SHORTNAMES may be empty, so cut by column position
        table[cells[0]] = cells[1:]
    assert table["clusteruserdefinednetworks"] == ("cudn", "k8s.ovn.org/v1", "false", "ClusterUserDefinedNetwork")
    assert table["userdefinednetworks"] == ("udn", "k8s.ovn.org/v1", "true", "UserDefinedNetwork")
    assert table["virtualmachines"] == ("vm,vms", "kubevirt.io/v1", "true", "VirtualMachine")
    assert table["virtualmachineinstances"] == ("vmi,vmis", "kubevirt.io/v1", "true", "VirtualMachineInstance")
    assert table["virtualmachineinstancemigrations"] == (
        "vmim,vmims",
        "kubevirt.io/v1",
        "true",
        "VirtualMachineInstanceMigration",
    )
    assert table["network-attachment-definitions"][0] == "net-attach-def"
    assert table["namespaces"][:3] == ("ns", "v1", "false")
    kubevirt_only = rows(kc.run("api-resources", "--api-group=kubevirt.io", "-o", "name").stdout)
    assert ["virtualmachines.kubevirt.io"] in kubevirt_only and ["clusteruserdefinednetworks.k8s.ovn.org"] not in (
        kubevirt_only
    )


def test_explain_cudn(kc: Any) -> None:
    out = kc.run("explain", "clusteruserdefinednetworks").stdout
    assert "KIND:       ClusterUserDefinedNetwork" in out and "VERSION:    v1" in out


# ---- apply ----------------------------------------------------------------------------------
def test_apply_created_unchanged_configured(kc: Any, applied: dict[str, Any]) -> None:
    ns, cudn, vm, path = applied["ns"], applied["cudn"], applied["vm"], applied["path"]
    assert applied["first"].splitlines() == [
        f"namespace/{ns} created",
        f"clusteruserdefinednetwork.k8s.ovn.org/{cudn} created",
        f"virtualmachine.kubevirt.io/{vm} created",
    ]
    again = kc.run("apply", "-f", str(path)).stdout
    assert again.splitlines() == [
        f"namespace/{ns} unchanged",
        f"clusteruserdefinednetwork.k8s.ovn.org/{cudn} unchanged",
        f"virtualmachine.kubevirt.io/{vm} unchanged",
    ]
    path.write_text(manifest(ns, cudn, vm, memory="2Gi"))
    changed = kc.run("apply", "-f", str(path)).stdout
    assert changed.splitlines() == [
        f"namespace/{ns} unchanged",
        f"clusteruserdefinednetwork.k8s.ovn.org/{cudn} unchanged",
        f"virtualmachine.kubevirt.io/{vm} configured",
    ]
    got = kc.run(
        "get", "vm", vm, "-n", ns, "-o", "jsonpath={.spec.template.spec.domain.resources.requests.memory}"
    ).stdout
    assert got == "2Gi"
    # the namespace was labelled at creation, which the admission policy allows
    labels = json.loads(kc.run("get", "ns", ns, "-o", "jsonpath={.metadata.labels}").stdout)
    assert labels["k8s.ovn.org/primary-user-defined-network"] == ""


def test_apply_rejects_invalid_vm_with_server_message(kc: Any, tmp_path: Path, suffix: str) -> None:
    ns = f"kt-bad-{suffix}"
    kc.run("create", "ns", ns)
    try:
        bad = {
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": "no-strategy", "namespace": ns},
            "spec": {"template": {"spec": {"domain": {"devices": {}, "resources": {"requests": {"memory": "1Gi"}}}}}},
        }
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(bad))
        proc = kc.run("apply", "-f", str(path), check=False)
        assert proc.returncode == 1
        # KubeVirt's webhook answers Invalid with causes but no kind or name, which kubectl prints so
        assert proc.stderr.strip() == "The request is invalid: spec.running: RunStrategy must be specified"
    finally:
        kc.run("delete", "ns", ns, "--wait=false")


def test_get_cudn_vm_vmi_all_namespaces(kc: Any, applied: dict[str, Any], dyn: dynamic.DynamicClient) -> None:
    ns, cudn, vm = applied["ns"], applied["cudn"], applied["vm"]
    # a VMI, so the VMI table has a row to print
    vmi_api = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachineInstance")
    vmi_api.create(
        namespace=ns,
        body={
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachineInstance",
            "metadata": {"name": vm},
            "spec": {
                "domain": {
                    "resources": {"requests": {"memory": "1Gi"}},
                    "devices": {"interfaces": [{"name": "primary", "binding": {"name": "l2bridge"}}]},
                },
                "networks": [{"name": "primary", "pod": {}}],
            },
        },
    )
    # the simulated KubeVirt starts it and writes its status, as virt-handler would: wait for that, then
    # kubectl's columns must be exactly what the status holds
    deadline = time.monotonic() + 30
    while True:
        status = vmi_api.get(namespace=ns, name=vm).to_dict().get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        ifaces = status.get("interfaces") or []
        if status.get("phase") == "Running" and ready and ifaces and ifaces[0].get("ipAddress"):
            break
        assert time.monotonic() < deadline, f"the VMI never ran: {status}"
        time.sleep(0.2)
    expected = ["Running", ifaces[0]["ipAddress"], status["nodeName"], "True"]
    out = kc.run("get", "cudn,vm,vmi", "-A").stdout
    tables = {}
    for section in sections(out):
        header, by_name = header_and_rows(section)
        tables[next(iter(by_name)).split("/")[0]] = section  # rows are named <kind>.<group>/<name>
    cudn_header, cudn_rows = header_and_rows(tables["clusteruserdefinednetwork.k8s.ovn.org"])
    assert cudn_header == ["NAME", "AGE"]  # cluster-scoped: no NAMESPACE column even with -A
    assert f"clusteruserdefinednetwork.k8s.ovn.org/{cudn}" in cudn_rows
    vm_header, vm_rows = header_and_rows(tables["virtualmachine.kubevirt.io"])
    assert vm_header == ["NAMESPACE", "NAME", "AGE", "STATUS", "READY"]
    assert vm_rows[f"virtualmachine.kubevirt.io/{vm}"][0] == ns
    vmi_header, vmi_rows = header_and_rows(tables["virtualmachineinstance.kubevirt.io"])
    assert vmi_header == ["NAMESPACE", "NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"]
    row = vmi_rows[f"virtualmachineinstance.kubevirt.io/{vm}"]
    assert row[0] == ns and row[3:] == expected
    # one kind in one namespace: no kind prefix, no NAMESPACE column
    header, by_name = header_and_rows(kc.run("get", "vmi", "-n", ns).stdout)
    assert header == ["NAME", "AGE", "PHASE", "IP", "NODENAME", "READY"]
    assert by_name[vm][2:] == expected
    wide = rows(kc.run("get", "vmi", "-n", ns, "-o", "wide").stdout)[0]
    assert wide[-1] == "LIVE-MIGRATABLE"


# ---- watch ----------------------------------------------------------------------------------
def test_get_watch_receives_events(kc: Any, core: client.CoreV1Api, namespace: str) -> None:
    proc = kc.popen("get", "configmaps", "-n", namespace, "--watch", "--output-watch-events")
    reader = LineReader(proc)
    try:
        time.sleep(0.3)  # let the initial list happen before the changes, as a watcher started earlier would
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="a")))
        kc.run("create", "configmap", "b", "-n", namespace, "--from-literal=k=v")
        kc.run("label", "configmap", "a", "-n", namespace, "seen=yes")
        core.delete_namespaced_config_map("b", namespace)
        got = reader.until(lambda line: line.startswith("DELETED"))
    finally:
        reader.stop()
    events = [r[:2] for r in rows("\n".join(got))]
    assert events[0] == ["EVENT", "NAME"]
    assert [e for e in events[1:] if e[1] in ("a", "b")] == [
        ["ADDED", "a"],
        ["ADDED", "b"],
        ["MODIFIED", "a"],
        ["DELETED", "b"],
    ]


def test_get_watch_only_custom_kind(kc: Any, dyn: dynamic.DynamicClient, namespace: str) -> None:
    proc = kc.popen("get", "vm", "-n", namespace, "--watch-only")
    reader = LineReader(proc)
    vms = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    try:
        time.sleep(0.3)
        for name in ("w-0", "w-1"):
            vms.create(
                namespace=namespace,
                body={
                    "apiVersion": "kubevirt.io/v1",
                    "kind": "VirtualMachine",
                    "metadata": {"name": name},
                    "spec": {
                        "runStrategy": "Halted",
                        "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "64Mi"}}}},
                    },
                },
            )
        got = reader.until(lambda line: line.split()[:1] == ["w-1"])
    finally:
        reader.stop()
    assert rows("\n".join(got))[0] == ["NAME", "AGE", "STATUS", "READY"]
    seen = [r[0] for r in rows("\n".join(got))[1:]]  # a controller may update a VM: later lines repeat it
    assert list(dict.fromkeys(seen)) == ["w-0", "w-1"]


# ---- delete ---------------------------------------------------------------------------------
def test_delete_namespace_cascades(kc: Any, core: client.CoreV1Api, dyn: dynamic.DynamicClient, suffix: str) -> None:
    ns = f"kt-del-{suffix}"
    kc.run("create", "ns", ns)
    kc.run("create", "configmap", "settings", "-n", ns, "--from-literal=a=b")
    kc.run("create", "secret", "generic", "creds", "-n", ns, "--from-literal=password=x")
    vms = dyn.resources.get(api_version="kubevirt.io/v1", kind="VirtualMachine")
    vms.create(
        namespace=ns,
        body={
            "apiVersion": "kubevirt.io/v1",
            "kind": "VirtualMachine",
            "metadata": {"name": "doomed"},
            "spec": {
                "runStrategy": "Halted",
                "template": {"spec": {"domain": {"devices": {}, "memory": {"guest": "64Mi"}}}},
            },
        },
    )
    out = kc.run("delete", "ns", ns, timeout=30).stdout  # waits until the namespace is gone
    assert out.strip() == f'namespace "{ns}" deleted'
    gone = kc.run("get", "ns", ns, check=False)
    assert gone.returncode == 1
    assert f'Error from server (NotFound): namespaces "{ns}" not found' in gone.stderr
    assert core.list_namespaced_config_map(ns).items == []
    assert core.list_namespaced_secret(ns).items == []
    assert vms.get(namespace=ns).items == []


def test_delete_namespace_waits_for_finalizers(kc: Any, tmp_path: Path, suffix: str) -> None:
    ns = f"kt-fin-{suffix}"
    held = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "held", "namespace": ns, "finalizers": ["example.com/hold"]},
        "data": {"k": "v"},
    }
    kc.run("create", "ns", ns)
    path = tmp_path / "held.yaml"
    path.write_text(yaml.safe_dump(held))
    kc.run("apply", "-f", str(path))
    kc.run("create", "configmap", "free", "-n", ns)

    out = kc.run("delete", "ns", ns, "--wait=false").stdout
    assert out.strip() == f'namespace "{ns}" deleted'
    assert kc.run("get", "ns", ns, "-o", "jsonpath={.status.phase}").stdout == "Terminating"
    header, by_name = header_and_rows(kc.run("get", "ns", ns).stdout)
    assert header == ["NAME", "STATUS", "AGE"] and by_name[ns][1] == "Terminating"

    def content() -> list[str]:
        return kc.run("get", "configmaps", "-n", ns, "-o", "name").stdout.split()

    wait_for(lambda: content() == ["configmap/held"])  # the free one went, the held one waits
    assert kc.run("get", "configmap", "held", "-n", ns, "-o", "jsonpath={.metadata.deletionTimestamp}").stdout
    conditions = json.loads(kc.run("get", "ns", ns, "-o", "jsonpath={.status.conditions}").stdout)
    assert {c["type"] for c in conditions} >= {"NamespaceContentRemaining", "NamespaceFinalizersRemaining"}
    # nothing new may be created in a terminating namespace
    refused = kc.run("create", "configmap", "late", "-n", ns, check=False)
    assert refused.returncode == 1 and "because it is being terminated" in refused.stderr

    # a waiting delete times out while the finalizer holds...
    timed_out = kc.run("delete", "ns", ns, "--timeout=1s", check=False)
    assert timed_out.returncode == 1 and "timed out waiting" in timed_out.stderr
    # ...and a waiter started now returns once the finalizer is released
    waiter = kc.popen("wait", "--for=delete", f"namespace/{ns}", "--timeout=20s")
    try:
        time.sleep(0.3)
        assert waiter.poll() is None
        release = '[{"op": "remove", "path": "/metadata/finalizers"}]'
        kc.run("patch", "configmap", "held", "-n", ns, "--type=json", "-p", release)
        assert waiter.wait(20) == 0
    finally:
        if waiter.poll() is None:
            waiter.kill()
        waiter.communicate()
    gone = kc.run("get", "ns", ns, check=False)
    assert gone.returncode == 1 and "(NotFound)" in gone.stderr


# ---- authorization --------------------------------------------------------------------------
def test_auth_can_i(kc: Any, sim: SimCluster) -> None:
    yes = kc.run("auth", "can-i", "create", "clusteruserdefinednetworks.k8s.ovn.org")
    assert (yes.returncode, yes.stdout.strip()) == (0, "yes")
    sim.set_policy(rules=[{"verbs": ["get", "list", "watch"], "apiGroups": ["", "k8s.ovn.org"]}])
    try:
        no = kc.run("auth", "can-i", "create", "clusteruserdefinednetworks.k8s.ovn.org", check=False)
        assert (no.returncode, no.stdout.strip()) == (1, "no")
        still = kc.run("auth", "can-i", "list", "clusteruserdefinednetworks.k8s.ovn.org")
        assert still.stdout.strip() == "yes"
        vm = kc.run("auth", "can-i", "create", "virtualmachines.kubevirt.io", "-n", "default", check=False)
        assert (vm.returncode, vm.stdout.strip()) == (1, "no")
        # the same policy guards the request itself
        denied = kc.run("create", "ns", f"kt-denied-{uuid.uuid4().hex[:6]}", check=False)
        assert denied.returncode == 1 and "Error from server (Forbidden)" in denied.stderr
        assert 'cannot create resource "namespaces" in API group ""' in denied.stderr
    finally:
        sim.set_policy(allow_all=True)
    assert kc.run("auth", "can-i", "create", "virtualmachines.kubevirt.io").stdout.strip() == "yes"


# ---- everyday commands ----------------------------------------------------------------------
def test_create_label_and_output_formats(kc: Any, suffix: str) -> None:
    ns = f"kt-fmt-{suffix}"
    assert kc.run("create", "ns", ns).stdout.strip() == f"namespace/{ns} created"
    try:
        assert kc.run("label", "ns", ns, "team=blue").stdout.strip() == f"namespace/{ns} labeled"
        clash = kc.run("label", "ns", ns, "team=red", check=False)
        assert clash.returncode == 1 and "already has a value (blue)" in clash.stderr
        kc.run("label", "ns", ns, "team=red", "--overwrite")

        as_json = json.loads(kc.run("get", "ns", ns, "-o", "json").stdout)
        assert as_json["kind"] == "Namespace" and as_json["metadata"]["labels"] == {
            "kubernetes.io/metadata.name": ns,
            "team": "red",
        }
        assert as_json["status"]["phase"] == "Active"
        as_yaml = yaml.safe_load(kc.run("get", "ns", ns, "-o", "yaml").stdout)
        assert as_yaml["metadata"]["uid"] == as_json["metadata"]["uid"]
        assert "generateName" not in as_yaml["metadata"] and "selfLink" not in as_yaml["metadata"]
        assert kc.run("get", "ns", ns, "-o", "jsonpath={.metadata.labels.team}").stdout == "red"
        assert kc.run("get", "ns", "-l", "team=red", "-o", "name").stdout.split() == [f"namespace/{ns}"]
        listed = json.loads(kc.run("get", "ns", "-l", "team in (red,green)", "-o", "json").stdout)
        assert listed["kind"] == "List" and [i["metadata"]["name"] for i in listed["items"]] == [ns]
        custom = kc.run("get", "nodes", "-o", "custom-columns=NAME:.metadata.name,CPU:.status.capacity.cpu").stdout
        assert rows(custom)[0] == ["NAME", "CPU"] and len(rows(custom)) == 4

        kc.run("label", "ns", ns, "team-")
        assert kc.run("get", "ns", ns, "-o", "jsonpath={.metadata.labels.team}").stdout == ""
    finally:
        kc.run("delete", "ns", ns, "--wait=false")


def test_primary_udn_label_cannot_be_added_later(kc: Any, suffix: str) -> None:
    plain, labelled = f"kt-plain-{suffix}", f"kt-udn-{suffix}"
    kc.run("create", "ns", plain)
    kc.run("apply", "-f", "-", input=manifest(labelled, f"unused-{suffix}", "vm").split("---")[0])
    try:
        added = kc.run("label", "ns", plain, "k8s.ovn.org/primary-user-defined-network=", check=False)
        assert added.returncode == 1
        assert added.stderr.strip().splitlines()[-1] == f'The namespaces "{plain}" is invalid: : {LABEL_POLICY_MESSAGE}'
        removed = kc.run("label", "ns", labelled, "k8s.ovn.org/primary-user-defined-network-", check=False)
        assert removed.returncode == 1 and LABEL_POLICY_MESSAGE in removed.stderr
        # nothing changed; other labels stay editable
        assert "k8s.ovn.org/primary-user-defined-network" not in json.loads(
            kc.run("get", "ns", plain, "-o", "jsonpath={.metadata.labels}").stdout
        )
        kc.run("label", "ns", labelled, "other=fine")
        labels = json.loads(kc.run("get", "ns", labelled, "-o", "jsonpath={.metadata.labels}").stdout)
        assert labels["k8s.ovn.org/primary-user-defined-network"] == "" and labels["other"] == "fine"
    finally:
        kc.run("delete", "ns", plain, labelled, "--wait=false")
