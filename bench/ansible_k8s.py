"""VM fan-out the Ansible way: a playbook on localhost that creates the run's VirtualMachines with
`kubernetes.core.k8s` and waits for them with `kubernetes.core.k8s_info`, so its wall time reads
side by side with udn-rollout and the kubectl runbook (`bench/fanout.py`).

    uv run python -m bench.ansible_k8s [--quick] [--vms N]    # or: uv run python -m bench ansible

Ansible is not a dependency of the project (it is large and CI does not need it): the scenario
installs `ansible` (which bundles the `kubernetes.core` collection) and `kubernetes` into a virtualenv
of its own under `~/.cache/udn-rollout-bench/ansible` (`$UDN_ROLLOUT_BENCH_CACHE` overrides the
folder) with `uv`, once, and reuses it afterwards. When that cannot be done, the result is
`{"skipped": "<why>"}` instead of a failure.

Two variants on one isolated simulated cluster, each with its own run (namespaces of 50 VMs and a
Layer3 network provisioned by udn-rollout beforehand, not timed) and torn down before the next:

- per VM: one `kubernetes.core.k8s` task (`state: present`, `src: FILE`) looped over one file per VM,
  as the kubectl runbook applies one file per VM;
- one file: one `kubernetes.core.k8s` task whose `src` is a single multi-document file with every VM.

Both then wait with a `kubernetes.core.k8s_info` task per namespace (`wait: true`,
`wait_condition: {type: Ready, status: "True"}`, `wait_sleep: 1`), the counterpart of
`kubectl wait --for=condition=Ready vm --all -n NS`. `wait: true` on the create task itself is not
used: it waits for each VM before the next one is created, which serialises every VM's start.
The objects are exactly those udn-rollout creates (`tasks.render.render_vms`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.common import (
    children_cpu,
    figure,
    load_average,
    make_kube,
    make_spec,
    metered,
    provision_run,
    rnd,
    server_pid,
    start_cluster,
    teardown_namespaces,
)
from simcluster import SimCluster
from tasks.kube.resources import VM
from tasks.render import render_vms
from tasks.spec import RolloutSpec

NODES = 20
PER_NS = 50
CACHE = Path(os.environ.get("UDN_ROLLOUT_BENCH_CACHE") or Path.home() / ".cache" / "udn-rollout-bench")
VENV = CACHE / "ansible"
PACKAGES = ["ansible", "kubernetes"]
INSTALL_TIMEOUT = 900

CREATE_TASK = "Create the VMs"
WAIT_TASK = "Wait until every VM is Ready"

# what an Ansible user writes; vm_src is a fileglob (per VM) or one multi-document file
PLAYBOOK = """\
- name: Roll out the run's VirtualMachines
  hosts: localhost
  connection: local
  gather_facts: false
  module_defaults:
    group/kubernetes.core.k8s:
      kubeconfig: "{{ kubeconfig }}"
  tasks:
    - name: %(create)s
      kubernetes.core.k8s:
        state: present
        src: "{{ item }}"
      loop: %(loop)s

    - name: %(wait)s
      kubernetes.core.k8s_info:
        api_version: kubevirt.io/v1
        kind: VirtualMachine
        namespace: "{{ item }}"
        label_selectors:
          - "{{ run_label }}"
        wait: true
        wait_condition:
          type: Ready
          status: "True"
        wait_sleep: 1
        wait_timeout: 900
      loop: "{{ namespaces }}"
"""
PER_VM_LOOP = "\"{{ query('ansible.builtin.fileglob', vm_dir ~ '/*.yaml') | sort }}\""
ONE_FILE_LOOP = '["{{ all_file }}"]'


# ---- the Ansible virtualenv ---------------------------------------------------------------------
def _versions(python: Path) -> dict[str, str] | None:
    """Versions of ansible, ansible-core, the bundled kubernetes.core and the kubernetes client, or
    None when the venv cannot import them (then it is (re)installed)."""
    code = (
        "import json, importlib.metadata as m, pathlib, ansible_collections.kubernetes.core as c;"
        "man = json.loads((pathlib.Path(c.__path__[0]) / 'MANIFEST.json').read_text());"
        "print(json.dumps({'ansible': m.version('ansible'), 'ansibleCore': m.version('ansible-core'),"
        "'kubernetesCore': man['collection_info']['version'], 'kubernetesClient': m.version('kubernetes')}))"
    )
    try:
        p = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return json.loads(p.stdout) if p.returncode == 0 else None


def ensure_ansible() -> dict[str, Any]:
    """The venv's paths and versions plus how long installing took (0 when it was there already);
    `{"skipped": why}` when it cannot be had (no uv, no registry, a failed install)."""
    python, playbook = VENV / "bin" / "python", VENV / "bin" / "ansible-playbook"
    t0 = time.perf_counter()
    versions = _versions(python) if playbook.exists() else None
    installed = False
    if versions is None:
        uv = shutil.which("uv")
        if uv is None:
            return {"skipped": "uv is not on PATH, so Ansible cannot be installed into its own virtualenv"}
        print(f"  installing {' '.join(PACKAGES)} into {VENV} (once) ...", flush=True)
        shutil.rmtree(VENV, ignore_errors=True)
        VENV.parent.mkdir(parents=True, exist_ok=True)
        for cmd in (
            [uv, "venv", "--quiet", str(VENV)],
            [uv, "pip", "install", "--quiet", "--python", str(python), *PACKAGES],
        ):
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, timeout=INSTALL_TIMEOUT)
            except subprocess.TimeoutExpired:
                return {"skipped": f"`{' '.join(cmd[:3])} ...` took over {INSTALL_TIMEOUT} s"}
            if p.returncode != 0:
                return {"skipped": f"`{' '.join(cmd[:3])} ...` failed: {(p.stderr or p.stdout).strip()[-400:]}"}
        versions = _versions(python)
        if versions is None or not playbook.exists():
            return {"skipped": f"installed {PACKAGES} but {VENV} has no ansible-playbook or kubernetes.core"}
        installed = True
    return {
        "python": python,
        "playbook": playbook,
        "versions": versions,
        "installSeconds": rnd(time.perf_counter() - t0, 1) if installed else 0.0,
        "checkSeconds": rnd(time.perf_counter() - t0, 2),
    }


# ---- one variant ---------------------------------------------------------------------------------
def _spec(index: int, name: str, total: int) -> RolloutSpec:
    per_ns = min(PER_NS, total)
    return make_spec(
        name,
        namespaces=max(1, total // per_ns),
        per_namespace=per_ns,
        cidr=f"10.{150 + index}.0.0/16",
        host_subnet=22,
    )


def _task_seconds(log: str) -> dict[str, float]:
    """Seconds per task from the profile_tasks recap (`NAME ----- 12.34s`)."""
    out = {}
    for line in log.splitlines():
        m = re.match(r"^(.+?) -+ +([\d.]+)s\s*$", line)
        if m:
            out[m.group(1).strip()] = float(m.group(2))
    return out


def playbook_run(
    cluster: SimCluster, ansible: dict[str, Any], workdir: Path, index: int, total: int, one_file: bool
) -> dict[str, Any]:
    """Provision a run, write its VM files and playbook, time `ansible-playbook`, verify, tear down."""
    how = "one-file" if one_file else "per-vm"
    spec = _spec(index, f"ans-{how}-{total}", total)
    provision_run(cluster, spec)
    d = workdir / spec.run_id
    d.mkdir()
    objs = render_vms(spec)
    play_vars: dict[str, Any] = {
        "kubeconfig": str(cluster.kubeconfig),
        "namespaces": spec.namespace_names(),
        "run_label": f"udn-rollout.io/run={spec.run_id}",
    }
    if one_file:
        play_vars["all_file"] = str(d / "vms.yaml")
        (d / "vms.yaml").write_text(yaml.safe_dump_all(objs, sort_keys=False))
    else:
        play_vars["vm_dir"] = str(d / "vms")
        (d / "vms").mkdir()
        for obj in objs:
            md = obj["metadata"]
            (d / "vms" / f"{md['namespace']}--{md['name']}.yaml").write_text(yaml.safe_dump(obj, sort_keys=False))
    play = d / "rollout.yml"
    play.write_text(
        PLAYBOOK % {"create": CREATE_TASK, "wait": WAIT_TASK, "loop": ONE_FILE_LOOP if one_file else PER_VM_LOOP}
    )
    extra = d / "vars.json"
    extra.write_text(json.dumps(play_vars))
    tmp = workdir / "tmp"
    tmp.mkdir(exist_ok=True)
    env = {
        **os.environ,
        "K8S_AUTH_KUBECONFIG": str(cluster.kubeconfig),
        "ANSIBLE_PYTHON_INTERPRETER": str(ansible["python"]),
        "ANSIBLE_CALLBACKS_ENABLED": "ansible.posix.profile_tasks",
        "ANSIBLE_COLLECTIONS_PATH": str(workdir / "collections"),  # only the bundled collections
        "ANSIBLE_HOME": str(workdir / "ansible-home"),
        "ANSIBLE_LOCAL_TEMP": str(workdir / "ansible-tmp"),
        "TMPDIR": str(tmp),  # the modules' discovery cache (k8srcp-*.json) goes with the run
        "ANSIBLE_RETRY_FILES_ENABLED": "false",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_FORCE_COLOR": "0",
    }
    cmd = [str(ansible["playbook"]), "-i", "localhost,", "-c", "local", "-e", f"@{extra}", str(play)]
    requests0 = cluster.stats()["requestsServed"]
    c0 = children_cpu()
    with metered(server_pid(cluster)) as m:
        p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=7200, cwd=d)
    cpu = children_cpu() - c0
    requests = cluster.stats()["requestsServed"] - requests0
    if p.returncode != 0:
        tail = "\n".join((p.stdout + p.stderr).strip().splitlines()[-25:])
        raise RuntimeError(f"ansible-playbook ({how}, {total} VMs) failed ({p.returncode}):\n{tail}")
    with make_kube(cluster) as kube:
        vms, _ = kube.list(VM, label_selector=spec.scope().selector)
    ready = sum(1 for v in vms if (v.get("status") or {}).get("ready"))
    assert ready == total, f"ansible {how}: {ready}/{total} VMs Ready"
    tasks = _task_seconds(p.stdout)
    warnings = [ln.strip() for ln in (p.stdout + p.stderr).splitlines() if "WARNING]" in ln]
    create_s, wait_s = tasks.get(CREATE_TASK), tasks.get(WAIT_TASK)
    out = {
        "vms": total,
        "how": "kubernetes.core.k8s src=FILE looped per VM, then k8s_info wait per namespace"
        if not one_file
        else "one kubernetes.core.k8s task, src=one multi-document file, then k8s_info wait per namespace",
        "wallSeconds": rnd(m.wall, 3),
        "createTaskSeconds": create_s,
        "waitTaskSeconds": wait_s,
        "createPerSecond": rnd(total / create_s, 1) if create_s else None,
        "moduleRuns": (total if not one_file else 1) + len(spec.namespace_names()),
        "apiRequests": requests,
        "apiRequestsPerVm": rnd(requests / total, 2),
        "ansibleCpuSeconds": rnd(cpu, 2),
        "ansibleCpuSecondsPer1000VMs": rnd(cpu / (total / 1000), 1),
        "serverCpuSeconds": rnd(m.server_cpu, 2),
        "ansibleWarnings": warnings[:5],
    }
    out["teardownSeconds"] = rnd(teardown_namespaces(cluster, spec), 2)
    print(
        f"  ansible {how:<8} {total:>5} VMs wall {m.wall:7.2f} s  (create task {create_s} s, wait task {wait_s} s, "
        f"{requests} API requests, ansible cpu {cpu:.1f} s)",
        flush=True,
    )
    return out


def run(quick: bool = False, vms: int | None = None) -> dict[str, Any]:
    total = vms or (50 if quick else 1000)
    print(
        f"ansible: kubernetes.core.k8s per VM and from one file, {total} VMs, then k8s_info wait; "
        f"one isolated cluster of {NODES} nodes",
        flush=True,
    )
    started = time.perf_counter()
    ansible = ensure_ansible()
    if "skipped" in ansible:
        print(f"  skipped: {ansible['skipped']}", flush=True)
        return {"scenario": "ansible", "skipped": ansible["skipped"], "figures": []}
    print(
        f"  ansible {ansible['versions']['ansible']} (core {ansible['versions']['ansibleCore']}, "
        f"kubernetes.core {ansible['versions']['kubernetesCore']}); "
        + (f"installed in {ansible['installSeconds']} s" if ansible["installSeconds"] else f"cached in {VENV}"),
        flush=True,
    )
    load0 = load_average()
    cluster = start_cluster(NODES, vms_per_node=400)
    workdir = Path(tempfile.mkdtemp(prefix="bench-ansible-"))
    results: dict[str, Any] = {
        "scenario": "ansible",
        "ansible": {
            "venv": str(VENV),
            "versions": ansible["versions"],
            "installSeconds": ansible["installSeconds"],
            "checkSeconds": ansible["checkSeconds"],
        },
    }
    try:
        results["perVm"] = playbook_run(cluster, ansible, workdir, 0, total, one_file=False)
        results["oneFile"] = playbook_run(cluster, ansible, workdir, 1, total, one_file=True)
    finally:
        cluster.stop()
        shutil.rmtree(workdir, ignore_errors=True)
    results["figures"] = [
        figure(
            f"ansible: {total} VMs, k8s task per VM + k8s_info wait",
            results["perVm"]["wallSeconds"],
            "s",
            f"{results['perVm']['createPerSecond']} creates/s; ansible {results['perVm']['ansibleCpuSeconds']} cpu-s; "
            f"ansible {ansible['versions']['ansible']}, kubernetes.core {ansible['versions']['kubernetesCore']}",
        ),
        figure(
            f"ansible: {total} VMs, one k8s task src=multi-doc file + k8s_info wait",
            results["oneFile"]["wallSeconds"],
            "s",
            f"{results['oneFile']['createPerSecond']} creates/s; ansible {results['oneFile']['ansibleCpuSeconds']} cpu-s",
        ),
    ]
    results["parameters"] = {"vms": total, "nodes": NODES, "vmsPerNamespace": PER_NS, "topology": "Layer3"}
    results["totalSeconds"] = rnd(time.perf_counter() - started, 1)
    results["loadAverage1m"] = {"before": load0, "after": load_average()}
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.ansible_k8s", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="50 VMs instead of 1,000")
    ap.add_argument("--vms", type=int, help="this many VMs (a multiple of 50 above 50)")
    args = ap.parse_args(argv)
    print(json.dumps(run(args.quick, args.vms), indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
