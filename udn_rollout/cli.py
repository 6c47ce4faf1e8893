"""`udn-rollout`: the command line. Imports stay lazy so `--help` and `render` answer at once
(no Prefect import, no server start)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

DESCRIPTION = """\
Roll out private, cluster-wide VM networks (OVN-Kubernetes ClusterUserDefinedNetwork, Layer3 or
Layer2, role Primary) for KubeVirt VMs at scale, with checks before any change and evidence after.

Start here:
  udn-rollout demo                 run the whole story on an embedded simulated cluster
  udn-rollout sim serve            run the simulated cluster and print its kubeconfig
"""


def _add_sim_serve(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    sim = sub.add_parser(
        "sim",
        help="the embedded simulated OpenShift cluster",
        description="The embedded simulated cluster: a Kubernetes API server on loopback with "
        "OVN-Kubernetes and KubeVirt behaviour, for demos, tests and what-if runs.",
    )
    simsub = sim.add_subparsers(dest="sim_cmd", required=True)
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
    s.add_argument(
        "--insecure-http", action="store_true", help="serve plain HTTP instead of HTTPS (only for debugging)"
    )
    s.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="KNOB=VALUE",
        help="turn on a fault, e.g. --fault rate_429=0.1 --fault watch_cut_seconds=5 (repeatable)",
    )


def _sim_serve(args: argparse.Namespace) -> int:
    from simcluster.faults import Faults
    from simcluster.seed import ClusterConfig
    from simcluster.server import serve_forever

    if args.nodes < 1:
        print("error: --nodes must be at least 1", file=sys.stderr)
        return EXIT_USAGE
    faults = Faults()
    knobs = {}
    for item in args.fault:
        key, sep, value = item.partition("=")
        if not sep:
            print(f"error: --fault {item!r}: write KNOB=VALUE, e.g. rate_429=0.1", file=sys.stderr)
            return EXIT_USAGE
        knobs[key] = value
    try:
        faults.update(knobs)
    except Exception as e:
        print(f"error: --fault: {e}", file=sys.stderr)
        return EXIT_USAGE
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
        return EXIT_FAILED
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    from udn_rollout.demo import run_demo

    return run_demo(nodes=args.nodes, keep=args.keep)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="udn-rollout", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    d = sub.add_parser(
        "demo",
        help="run the demo on an embedded simulated cluster",
        description="Start the embedded simulated cluster and show what it serves.",
    )
    d.add_argument("--nodes", type=int, default=3, help="simulated worker nodes (default 3)")
    d.add_argument("--keep", action="store_true", help="keep the cluster running until Ctrl-C")
    _add_sim_serve(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.cmd == "demo":
        return _demo(args)
    if args.cmd == "sim" and args.sim_cmd == "serve":
        return _sim_serve(args)
    return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
