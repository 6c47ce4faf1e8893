"""The simulated cluster at VM scale (issue 3): N VMs on 20 nodes reach Running with unique addresses
from the right node subnets, and S console sessions at once (login, ping, hostname).

    uv run python -m bench.sim_vms [--quick]          # or as part of: uv run python -m bench sim

VMs are created through the tool's API module (`tasks.kube.Kube`, QPS unlimited, 64 in flight) on a
Layer3 network (`hostSubnet` /24: 252 addresses per node); one VMI informer stamps the moment each VMI
is first seen Running. Then every VMI is checked against the cluster's own record of the node
subnets (the `k8s.ovn.org/node-subnets` annotation of its node): the address lies in that subnet, is
not one of the reserved ones (.0, .1 gateway, .2 management, broadcast), and no two VMs share one.
A bench that finds a wrong address stops with an assertion: figures are only printed for correct runs.

Console sessions: S threads, released together, each opens the serial console of a different VM
(`tasks.console.ConsoleSession`), logs in with the run's cloud-init credentials, runs `ping -c 3` to
another VM's address and `hostname`; every ping must exit 0 and every hostname be the VM's name.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from bench.common import (
    fanout,
    figure,
    load_average,
    make_kube,
    make_spec,
    metered,
    provision_run,
    rnd,
    server_pid,
    start_cluster,
)
from tasks.connectivity import credentials_from_secret
from tasks.console import ConsoleSession
from tasks.kube import Kube, WatchEvent
from tasks.kube.resources import NODE, VMI

NODES = 20


def verify_addresses(kube: Kube, network: str, vmis: list[dict[str, Any]]) -> dict[str, Any]:
    """Every VMI Running, its address unique, in its node's subnet of `network`, not a reserved one."""
    nodes, _ = kube.list(NODE)
    subnets: dict[str, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
    for n in nodes:
        ann = json.loads((n["metadata"].get("annotations") or {}).get("k8s.ovn.org/node-subnets") or "{}")
        value = ann.get(network) or []
        subnets[n["metadata"]["name"]] = [
            ipaddress.ip_network(s) for s in ([value] if isinstance(value, str) else value)
        ]
    seen: dict[str, str] = {}
    per_node: dict[str, int] = {}
    problems: list[str] = []
    for v in vmis:
        key = f"{v['metadata']['namespace']}/{v['metadata']['name']}"
        st = v.get("status") or {}
        node = st.get("nodeName", "")
        ip_text = ((st.get("interfaces") or [{}])[0]).get("ipAddress", "")
        if st.get("phase") != "Running" or not ip_text:
            problems.append(f"{key}: phase {st.get('phase')!r}, address {ip_text!r}")
            continue
        ip = ipaddress.ip_address(ip_text)
        nets = [n for n in subnets.get(node, []) if ip in n]
        if not nets:
            problems.append(f"{key}: {ip} is not in the subnet(s) {subnets.get(node)} of its node {node}")
            continue
        net = nets[0]
        reserved = {net.network_address, net.network_address + 1, net.network_address + 2, net.broadcast_address}
        if ip in reserved:
            problems.append(f"{key}: {ip} is a reserved address of {net}")
        if ip_text in seen:
            problems.append(f"{key}: {ip} is also held by {seen[ip_text]}")
        seen[ip_text] = key
        per_node[node] = per_node.get(node, 0) + 1
    assert not problems, f"{len(problems)} VMs with a wrong address, e.g. {problems[:5]}"
    distinct_subnets = {str(n) for nets in subnets.values() for n in nets}
    assert len(distinct_subnets) == sum(len(v) for v in subnets.values()), "two nodes share a node subnet"
    return {
        "vmsChecked": len(vmis),
        "uniqueAddresses": len(seen),
        "nodesUsed": len(per_node),
        "vmsPerNodeMin": min(per_node.values()),
        "vmsPerNodeMax": max(per_node.values()),
    }


def console_round(
    kube: Kube, vms: list[tuple[str, str, str]], peers: list[str], credentials: tuple[str, str]
) -> dict[str, Any]:
    """len(vms) sessions released together: login, `ping -c 3 <peer>`, `hostname`; all must succeed."""
    n = len(vms)
    gate = threading.Barrier(n)
    user, password = credentials

    def one(i: int) -> tuple[float, float]:
        ns, name, _ip = vms[i]
        gate.wait()
        t0 = time.perf_counter()
        with ConsoleSession(kube, ns, name) as s:
            s.login(user, password)
            t_login = time.perf_counter() - t0
            out, rc = s.run(f"ping -c 3 {peers[i]}", timeout=30)
            assert rc == 0 and " 0% packet loss" in out, f"ping from {ns}/{name} to {peers[i]}: rc {rc}: {out!r}"
            host, rc = s.run("hostname", timeout=10)
            assert rc == 0 and host.strip() == name, f"hostname of {ns}/{name}: {host!r}"
        return time.perf_counter() - t0, t_login

    t0 = time.perf_counter()
    with ThreadPoolExecutor(n, thread_name_prefix="console") as pool:
        times = list(pool.map(one, range(n)))
    wall = time.perf_counter() - t0
    per = [t for t, _ in times]
    logins = [t for _, t in times]
    return {
        "sessions": n,
        "seconds": rnd(wall, 3),
        "sessionsPerSecond": rnd(n / wall, 1),
        "sessionSecondsP50": rnd(statistics.median(per), 3),
        "sessionSecondsMax": rnd(max(per), 3),
        "loginSecondsP50": rnd(statistics.median(logins), 3),
        "pingsOk": n,
        "hostnamesOk": n,
    }


def run(quick: bool = False, vms: int | None = None, sessions: int | None = None) -> dict[str, Any]:
    total = vms or (100 if quick else 1000)
    sessions = sessions or (16 if quick else 64)
    nodes = 5 if quick else NODES
    per_ns = 50 if total >= 50 else total
    namespaces = max(1, total // per_ns)
    total = namespaces * per_ns
    print(f"sim: {total} VMs on {nodes} nodes (fast profile), then {sessions} console sessions at once", flush=True)
    load0 = load_average()
    # Layer3 guests get no DHCP (as upstream): the console round pings between them, so their guests
    # configure the VMI's address statically (the simulated cluster's named option for that case).
    cluster = start_cluster(nodes, vms_per_node=250, options={"layer3GuestAddressing": "static"})
    try:
        spec = make_spec(
            "sim", namespaces=namespaces, per_namespace=per_ns, cidr="10.100.0.0/16", host_subnet=24, qps=0
        )
        provision_run(cluster, spec)
        kube = make_kube(cluster, qps=0, max_in_flight=64)
        first_running: dict[str, float] = {}
        lock = threading.Lock()

        def on_vmi(ev: WatchEvent) -> None:
            if ev.type in ("ADDED", "MODIFIED") and (ev.object.get("status") or {}).get("phase") == "Running":
                key = f"{ev.object['metadata']['namespace']}/{ev.object['metadata']['name']}"
                with lock:
                    first_running.setdefault(key, time.perf_counter())

        inf = kube.informer(VMI, label_selector=spec.scope().selector, on_event=on_vmi)
        inf.synced.wait(60)
        t0 = time.perf_counter()
        with metered(server_pid(cluster)) as m:
            res = fanout(kube, spec)
            ok = inf.wait_for(lambda cache: len(first_running) >= total, 600)
        inf.stop()
        assert ok and res.ready == total, f"only {len(first_running)} of {total} VMIs Running, {res.ready} Ready"
        all_running_s = max(first_running.values()) - t0
        vmis, _ = kube.list(VMI, label_selector=spec.scope().selector)
        check = verify_addresses(kube, f"cluster_udn_{spec.network.name}", vmis)
        print(
            f"  {total} VMs Running in {all_running_s:.2f} s (all Ready {res.wall_s:.2f} s); "
            f"{check['uniqueAddresses']} unique addresses, all in their node's subnet, on {check['nodesUsed']} nodes",
            flush=True,
        )
        # console sessions: distinct source VMs spread over the fleet, each pinging another VM
        eps = sorted(
            (v["metadata"]["namespace"], v["metadata"]["name"], v["status"]["interfaces"][0]["ipAddress"]) for v in vmis
        )
        step = max(1, len(eps) // sessions)
        sources = eps[::step][:sessions]
        peers = [eps[(eps.index(s) + len(eps) // 2) % len(eps)][2] for s in sources]
        creds = credentials_from_secret(kube, spec.namespace_names()[0], spec.credentials_secret_name())
        with metered(server_pid(cluster)) as cm:
            console = console_round(kube, sources, peers, creds)
        print(
            f"  {console['sessions']} console sessions at once in {console['seconds']:.2f} s: "
            f"{console['sessionsPerSecond']:.1f} sessions/s (login p50 {console['loginSecondsP50']:.2f} s)",
            flush=True,
        )
    finally:
        cluster.stop()
    result: dict[str, Any] = {
        "scenario": "sim",
        "parameters": {
            "vms": total,
            "nodes": nodes,
            "profile": "fast",
            "sessions": sessions,
            "topology": "Layer3",
            "hostSubnet": 24,
        },
        "vms": {
            "allRunningSeconds": rnd(all_running_s, 3),
            "allReadySeconds": rnd(res.wall_s, 3),
            "createSeconds": rnd(res.create_s, 3),
            "createPerSecond": rnd(res.create_rate_per_s, 1),
            "clientCpuSeconds": rnd(m.client_cpu),
            "serverCpuSeconds": rnd(m.server_cpu),
            **check,
        },
        "console": {**console, "clientCpuSeconds": rnd(cm.client_cpu), "serverCpuSeconds": rnd(cm.server_cpu)},
        "loadAverage1m": {"before": load0, "after": load_average()},
    }
    result["figures"] = [
        figure(
            f"sim: {total} VMs on {nodes} nodes to all Running",
            rnd(all_running_s),
            "s",
            f"{check['uniqueAddresses']} unique addresses verified in node subnets",
        ),
        figure(
            f"sim: {sessions} console sessions at once",
            console["sessionsPerSecond"],
            "sessions/s",
            f"login + ping -c 3 + hostname; {console['seconds']} s in all",
        ),
    ]
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.sim_vms", description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="100 VMs on 5 nodes, 16 sessions")
    ap.add_argument("--vms", type=int)
    ap.add_argument("--sessions", type=int)
    args = ap.parse_args(argv)
    print(json.dumps(run(args.quick, args.vms, args.sessions), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
