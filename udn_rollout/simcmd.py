"""`udn-rollout sim ...`: the embedded simulated cluster as a long-lived server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_sim_parser(sub: Any) -> None:
    sim = sub.add_parser(
        "sim",
        help="the embedded simulated OpenShift cluster",
        description="The embedded simulated cluster: a Kubernetes API server on loopback with "
        "OVN-Kubernetes and KubeVirt behaviour, for demos, tests and what-if runs.",
    )
    simsub = sim.add_subparsers(dest="sim_cmd", required=True, metavar="COMMAND")
    s = simsub.add_parser(
        "serve",
        help="run the simulated cluster until interrupted",
        description="Run the simulated cluster until Ctrl-C, writing a kubeconfig that kubectl, oc and "
        "udn-rollout accept. Example: udn-rollout sim serve --nodes 10 --kubeconfig ./sim.kubeconfig",
    )
    s.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback)")
    s.add_argument("--port", type=int, default=6443, help="port to listen on (0: any free port; default 6443)")
    s.add_argument(
        "--kubeconfig",
        type=Path,
        default=Path("simcluster.kubeconfig"),
        help="where to write the kubeconfig (default: ./simcluster.kubeconfig)",
    )
    s.add_argument("--nodes", type=int, default=3, help="number of worker nodes (default 3)")
    s.add_argument("--vms-per-node", type=int, default=250, help="VM slots per node (default 250)")
    s.add_argument("--state", type=Path, help="persist the cluster in this file and reload it on the next start")
    s.add_argument(
        "--profile",
        choices=["instant", "fast", "realistic"],
        default="realistic",
        help="VM start-up latency profile (default: realistic)",
    )
    s.add_argument("--insecure-http", action="store_true", help="serve plain HTTP instead of HTTPS (debugging only)")
    s.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="turn on a fault, e.g. --fault rate_429=0.1 --fault watch_cut_seconds=5 (repeatable)",
    )


def run_sim(args: argparse.Namespace) -> int:
    from simcluster.faults import Faults
    from simcluster.seed import ClusterConfig
    from simcluster.server import serve_forever

    if args.sim_cmd != "serve":
        return 2
    if args.nodes < 1:
        print("error: --nodes must be at least 1", file=sys.stderr)
        return 2
    knobs: dict[str, str] = {}
    for item in args.fault:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --fault {item!r}: write KNOB=VALUE, e.g. rate_429=0.1", file=sys.stderr)
            return 2
        knobs[key] = value
    faults = Faults()
    try:
        faults.update({k: _number(v) for k, v in knobs.items()})
    except Exception as e:
        print(f"error: --fault: {e}", file=sys.stderr)
        return 2
    config = ClusterConfig(nodes=args.nodes, vms_per_node=args.vms_per_node, profile=args.profile)
    try:
        serve_forever(
            config,
            host=args.host,
            port=args.port,
            kubeconfig=args.kubeconfig.resolve(),
            state_file=args.state.resolve() if args.state else None,
            tls_enabled=not args.insecure_http,
            faults=faults,
        )
    except OSError as e:
        print(
            f"error: cannot serve on {args.host}:{args.port}: {e.strerror or e}. "
            "Pick another port with --port (0 picks a free one).",
            file=sys.stderr,
        )
        return 1
    return 0


def _number(value: str) -> Any:
    for cast in (int, float):
        try:
            return cast(value)
        except ValueError:
            pass
    return value
