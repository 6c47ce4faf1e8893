"""`udn-rollout sim ...`: the embedded simulated cluster as a long-lived server."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from simcluster.options import OPTIONS


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
        help="turn on a fault (repeatable; also at run time with PUT /simcluster/v1/faults). Knobs: "
        + "; ".join(f"{name} ({what})" for name, what in FAULT_KNOBS),
    )
    s.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a named cluster option where upstream leaves an outcome open (simcluster/FIDELITY.md): "
        + "; ".join(f"{o.name}={'|'.join(o.choices)} (default {o.default})" for o in OPTIONS.values()),
    )


#: The fault knobs, as `sim serve --help` explains them (simcluster.faults.Faults).
FAULT_KNOBS = (
    ("rate_429", "fraction of requests answered 429 with Retry-After"),
    ("retry_after_seconds", "the Retry-After of those answers"),
    ("rate_5xx", "fraction of requests answered 500/503"),
    ("latency_ms", "added to every request"),
    ("latency_jitter_ms", "random extra latency"),
    ("watch_cut_seconds", "end every watch stream after this long"),
    ("vmi_start_failure_rate", "fraction of VMIs that fail to start"),
    ("migration_failure_rate", "fraction of migrations that fail"),
    ("seed", "random seed of the faults"),
)


def run_sim(args: argparse.Namespace) -> int:
    from simcluster.faults import Faults
    from simcluster.options import parse_assignments
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
    try:
        options = parse_assignments(args.option)
    except ValueError as e:
        print(f"error: --option: {e}", file=sys.stderr)
        return 2
    config = ClusterConfig(nodes=args.nodes, vms_per_node=args.vms_per_node, profile=args.profile, options=options)
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
