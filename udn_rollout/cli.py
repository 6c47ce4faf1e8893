"""`udn-rollout`: the command line. Imports stay lazy so `--help` and `render` answer at once
(no Prefect import, no server start); commands that run flows import them when they run."""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

EXIT_OK = 0
EXIT_FAILED = 1  # a step ran and failed (VMs not ready, unreachable pairs, failed migrations)
EXIT_USAGE = 2  # bad command line or spec: nothing was done
EXIT_PREFLIGHT = 3  # preflight failed: nothing was changed on the cluster
EXIT_CLUSTER = 4  # the cluster could not be reached or refused us

DESCRIPTION = """\
Roll out private, cluster-wide VM networks (an OVN-Kubernetes ClusterUserDefinedNetwork, Layer3 or
Layer2, role Primary) for KubeVirt VMs at scale: checks before any change, bounded load on the API
server, a ping matrix as evidence, and IP churn reports for live migration.

Start here:
  udn-rollout demo                                  the whole story on an embedded simulated cluster
  udn-rollout render -f specs/seed-l2.yaml -o out   the manifests, to review and `oc apply -f out`
  udn-rollout preflight -f my.yaml                  check a spec against your cluster (writes nothing)
  udn-rollout rollout -f my.yaml                    preflight → network → VMs → ping matrix → churn
  udn-rollout teardown -f my.yaml                   remove everything the run created

Cluster selection works like oc/kubectl: --kubeconfig, --context, $KUBECONFIG, ~/.kube/config, or the
in-cluster service account; --sim runs the command against a fresh embedded simulated cluster.
Exit codes: 0 ok, 1 a step failed, 2 bad input, 3 preflight failed (nothing changed), 4 cluster error.
"""

EPILOG_SPEC = """\
Spec overrides use Helm's syntax: --set vms.perNamespace=100 --set network.topology=Layer2
--set network.subnets[0].cidr=10.200.0.0/16 --set namespaces.names={a,b}
"""
EPILOG_EXIT = "Exit codes: 0 ok, 1 a step failed, 2 bad input, 3 preflight failed (nothing changed), 4 cluster error."
EXAMPLES = {
    "demo": "udn-rollout demo --nodes 4 --vms-per-namespace 4",
    "preflight": "udn-rollout preflight -f specs/seed-l2.yaml --kubeconfig ~/.kube/config",
    "provision": "udn-rollout provision -f specs/seed-l2.yaml --run-id seed-l2",
    "fanout": "udn-rollout fanout -f specs/seed-l2.yaml --run-id seed-l2 --set api.qps=20",
    "ping": "udn-rollout ping -f specs/seed-l2.yaml --run-id seed-l2 --set connectivity.maxSessions=16",
    "churn": "udn-rollout churn -f specs/seed-l3.yaml --run-id seed-l3 --set churn.fraction=0.5",
    "rollout": "udn-rollout rollout -f specs/seed-l2.yaml --sim   (or --kubeconfig/--context for a real cluster)\n"
    "  udn-rollout rollout -f specs/seed-l2.yaml --context east --context west   (a fleet: both clusters at once)",
    "teardown": "udn-rollout teardown -f specs/seed-l2.yaml --run-id seed-l2 --dry-run",
    "render": "udn-rollout render -f specs/seed-l3.yaml -o out/seed-l3 && oc apply -f out/seed-l3",
    "report": "udn-rollout report seed-l2 --reports-dir reports",
    "serve": "PREFECT_API_URL=http://127.0.0.1:4200/api udn-rollout serve --cron '0 2 * * *'",
    "runs": "udn-rollout runs --reports-dir reports",
    "rbac": "udn-rollout rbac -f specs/seed-l2.yaml --user alice | oc apply -f -",
    "completion": "udn-rollout completion bash > ~/.local/share/bash-completion/completions/udn-rollout",
}


# ---- argument groups -----------------------------------------------------------------------------
def _spec_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("rollout spec")
    g.add_argument("-f", "--filename", dest="spec", metavar="SPEC", help="rollout spec (YAML); see specs/")
    g.add_argument("--run-id", help="run id (names and labels the run's objects; reuse it to resume)")
    g.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a spec value, Helm-style (repeatable)",
    )


def _cluster_args(p: argparse.ArgumentParser, fleet: bool = False) -> None:
    g = p.add_argument_group("cluster")
    g.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)")
    if fleet:
        g.add_argument(
            "--context",
            action="append",
            metavar="NAME",
            help="kubeconfig context (default: the current context); repeat it to roll out to several "
            "clusters at once, a fleet: --context east --context west",
        )
    else:
        g.add_argument("--context", help="kubeconfig context (default: the current context)")
    g.add_argument("--sim", action="store_true", help="run against a fresh embedded simulated cluster")
    g.add_argument("--sim-nodes", type=int, default=4, help="nodes of the simulated cluster (default 4)")
    g.add_argument(
        "--sim-profile",
        choices=["instant", "fast", "realistic"],
        default="fast",
        help="VM start-up latency profile of the simulated cluster (default fast)",
    )
    g.add_argument("--reports-dir", help="where reports/<run-id>/ goes (default ./reports)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="udn-rollout", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--version", action="version", version=f"udn-rollout {_version()}")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    def cmd(
        name: str, help_: str, desc: str, spec: bool = True, cluster: bool = True, fleet: bool = False
    ) -> argparse.ArgumentParser:
        sp = sub.add_parser(
            name,
            help=help_,
            description=desc,
            epilog=f"Example:\n  {EXAMPLES[name]}\n\n" + (EPILOG_SPEC + "\n" if spec else "") + EPILOG_EXIT,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        if spec:
            _spec_args(sp)
        if cluster:
            _cluster_args(sp, fleet=fleet)
        return sp

    d = cmd(
        "demo",
        "the whole story on an embedded simulated cluster",
        "Start the embedded simulated cluster, roll out a small fleet the seed's way (Layer3) and the "
        "recommended way (Layer2) side by side, ping every pair, live-migrate a quarter of the VMs, and "
        "print what changed. Reports go to reports/<run-id>/.",
        spec=False,
        cluster=False,
    )
    d.add_argument("--nodes", type=int, default=4, help="simulated worker nodes (default 4)")
    d.add_argument("--vms-per-namespace", type=int, default=4, help="VMs per namespace (default 4)")
    d.add_argument(
        "--profile",
        choices=["instant", "fast", "realistic"],
        default="fast",
        help="simulated VM start/migration times: fast (default, about 30 s in all) or realistic "
        "(container-disk VMs take 10-25 s to run, migrations seconds: several minutes)",
    )
    d.add_argument("--reports-dir", help="where reports/<run-id>/ goes (default ./reports)")

    cmd(
        "preflight",
        "check a spec against the cluster (writes nothing)",
        "Check APIs, version, permissions (SelfSubjectAccessReview), CIDR overlaps, namespaces, node-subnet "
        "capacity and the l2bridge binding. Prints a table of checks and writes reports/<run-id>/preflight.md. "
        "Exit code 3 when a check fails.",
    )
    cmd(
        "provision",
        "preflight, then namespaces + credentials + the network",
        "Create the namespaces (labelled at creation), the credentials Secret and the "
        "ClusterUserDefinedNetwork, then wait until every namespace has its NetworkAttachmentDefinition.",
    )
    cmd(
        "fanout",
        "create the VMs and wait until they are Ready",
        "Create every VM of the spec (rate-limited, resuming a run that was cut short) and wait by watch "
        "until all are Ready. Writes inventory.csv and provisioning.md.",
    )
    cmd(
        "ping",
        "the connectivity ping matrix and isolation checks",
        "Log in to the VMs' serial consoles and ping a probe plan (full mesh or sampled), plus isolation "
        "probes that must stay silent. Writes connectivity.csv/.html/.md.",
    )
    ch = cmd(
        "churn",
        "live-migrate VMs and report IP churn",
        "Snapshot, migrate a chosen set of VMs within the cluster's migration limits, snapshot again and "
        "report per VM whether node and IP changed, and any stale-IP hazard. Writes churn.csv/.md/.html "
        "and capacity.md.",
    )
    ch.add_argument("--no-reprobe", action="store_true", help="skip re-probing the moved VMs")
    r = cmd(
        "rollout",
        "preflight → provision → fan-out → ping matrix → churn → reports",
        "The whole chain under one run id. Resume a run that was cut short by running it again with the same run id.\n\n"
        "Fleet: with --context given more than once, the spec is rolled out to each of those clusters at once, each "
        "as its own run with its own lock and reports (reports/<run-id>/clusters/<context>/<run-id>/), and "
        "reports/<run-id>/fleet.md (and .html) sums them up. One cluster failing does not stop the others. The "
        "exit code is then 0 when every cluster passed, otherwise the highest of the clusters' codes (4 > 3 > 1).",
        fleet=True,
    )
    r.add_argument("--no-churn", action="store_true", help="skip the churn step")
    r.add_argument("--no-ping", action="store_true", help="skip the connectivity step")
    t = cmd(
        "teardown",
        "delete what a run created (VMs, namespaces, then the network)",
        "Delete only objects carrying this run's labels: VMs, then namespaces, then the "
        "ClusterUserDefinedNetwork (after its finalizers let go). Unlabelled objects are left alone "
        "and named.",
    )
    t.add_argument("--dry-run", action="store_true", help="list what would be deleted, delete nothing")
    rd = cmd(
        "render",
        "write the manifests for review and `oc apply -f`",
        "Render the namespaces, credentials Secret (password placeholder), ClusterUserDefinedNetwork and "
        "VirtualMachines of a spec as YAML. Without -o the YAML goes to stdout.",
        cluster=False,
    )
    rd.add_argument("-o", "--output", help="directory to write numbered YAML files into")
    rp = cmd(
        "report",
        "re-render a run's reports from its saved data",
        "Rebuild the Markdown and HTML reports of reports/<run-id>/ from its CSV and run.json.",
        spec=False,
        cluster=False,
    )
    rp.add_argument("run_id", help="the run id (a directory under the reports directory)")
    rp.add_argument("--reports-dir", help="reports root (default ./reports)")

    sv = cmd(
        "serve",
        "serve the Prefect deployments from this process (no work pool needed)",
        "Serve the rollout, churn-report and teardown deployments with prefect.serve. Needs a Prefect "
        "server (PREFECT_API_URL) so the UI can trigger runs.",
        spec=False,
        cluster=False,
    )
    sv.add_argument("--cron", default="0 2 * * *", help="schedule of rollout-scheduled (default 02:00 daily)")
    sv.add_argument("--spec-file", default="specs/scheduled.yaml", help="spec of the scheduled rollout")

    rn = cmd(
        "runs",
        "list the runs whose reports are in the reports directory",
        "A line per run under the reports directory: run id, started, network, topology, VMs, status and "
        "where its reports are.",
        spec=False,
        cluster=False,
    )
    rn.add_argument("--reports-dir", help="reports root (default ./reports)")
    rb = cmd(
        "rbac",
        "print the ClusterRole and bindings a run needs (exactly what preflight checks)",
        "Print YAML for a ClusterRole with every verb a run needs (the list preflight checks with "
        "SelfSubjectAccessReviews), a Role for the run's lock, and bindings to a user or service account. "
        "Review it, then `oc apply -f` it as a cluster administrator.",
        cluster=False,
    )
    who = rb.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", help="bind to this user (as `oc whoami` prints it)")
    who.add_argument("--group", help="bind to this group")
    who.add_argument("--service-account", metavar="NS/NAME", help="bind to this service account")
    cp = cmd(
        "completion",
        "print a shell completion script (bash or zsh)",
        "Print a completion script for udn-rollout's commands and options. bash: source it, or save it as "
        "~/.local/share/bash-completion/completions/udn-rollout. zsh: `source <(udn-rollout completion zsh)`.",
        spec=False,
        cluster=False,
    )
    cp.add_argument("shell", choices=["bash", "zsh"])

    from udn_rollout.historycmd import add_history_parser
    from udn_rollout.simcmd import add_sim_parser

    add_sim_parser(sub)
    add_history_parser(sub)
    return p


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("udn-rollout")
    except PackageNotFoundError:
        return "0+unknown"


# ---- helpers -------------------------------------------------------------------------------------
def _err(msg: str) -> None:
    print(f"error: {msg}", file=sys.stderr)


def _load_spec(args: argparse.Namespace) -> Any:
    from tasks.spec import load_spec

    spec = load_spec(args.spec, args.overrides, run_id=args.run_id)
    for notice in spec.notices:
        print(f"warning: {notice}", file=sys.stderr)
    return spec


@contextlib.contextmanager
def _cluster(args: argparse.Namespace) -> Iterator[Any]:
    """ClusterParams for the command: the user's cluster, or a fresh simulated one with --sim."""
    from tasks.kube import ClusterParams

    if args.sim:
        from simcluster import ClusterConfig, SimCluster

        with SimCluster(config=ClusterConfig(nodes=args.sim_nodes, profile=args.sim_profile)) as sim:
            print(
                f"simulated cluster: {sim.url} ({args.sim_nodes} nodes, kubeconfig {sim.kubeconfig})", file=sys.stderr
            )
            yield ClusterParams(kubeconfig=str(sim.kubeconfig))
        return
    params = ClusterParams(kubeconfig=args.kubeconfig, context=args.context)
    _reachable(params)  # fail fast, before Prefect starts, when no cluster is configured or reachable
    yield params


def _reachable(params: Any) -> None:
    """One quick authenticated call without retries: an unreachable cluster or refused credentials are
    reported in seconds, with the fix, before any step starts."""
    from tasks.kube import Kube, KubeError

    kube = Kube(params.target(), qps=0, retries=0, timeout=10)
    try:
        kube.check_access()
    except KubeError as e:
        if e.code == 401:
            what = f"the cluster at {kube.server} did not accept the credentials of {kube.source} ({e.message})"
            fix = "log in again (oc login) or pick another --context or --kubeconfig"
        elif e.code == 403:
            what = f"the cluster at {kube.server} refused the account of {kube.source} ({e.message})"
            fix = "use an account that may read the API, or another --context"
        else:
            what = f"cannot reach the cluster at {kube.server} ({kube.source}): {e.message}"
            fix = "check the server address and that the cluster is up (or use --sim)"
        raise KubeError(e.code, e.reason, f"{what}; {fix}") from e
    finally:
        kube.close()


def _run(fn: Callable[[], Any]) -> int:
    """Run a step and map what went wrong to an exit code and a message (no traceback for users)."""
    from tasks.kube import KubeError
    from tasks.outcome import StepFailed

    try:
        fn()
    except StepFailed as e:
        _err(str(e))
        return e.exit_code
    except KubeError as e:
        _err(f"the cluster answered {e.code} {e.reason}: {e.message}")
        return EXIT_CLUSTER
    return EXIT_OK


# ---- commands ------------------------------------------------------------------------------------
def _render(args: argparse.Namespace) -> int:
    from tasks.render import write_manifests

    spec = _load_spec(args)
    out = write_manifests(spec, Path(args.output) if args.output else None)
    if isinstance(out, str):
        sys.stdout.write(out)
    else:
        for path in out:
            print(path)
        print(f"review, set the password in the credentials file, then: oc apply -f {args.output}", file=sys.stderr)
    return EXIT_OK


def _fleet(args: argparse.Namespace, spec: Any, contexts: list[str]) -> int:
    """``rollout --context A --context B …``: every cluster at once, then the fleet's summary and exit code."""
    from flows.fleet import rollout_fleet
    from tasks.fleet import CLI_FLAGS, FleetFailed, FleetInputError, FleetTarget, plan_fleet
    from tasks.reports.publish import reports_root

    targets = [FleetTarget(kubeconfig=args.kubeconfig, context=c) for c in contexts]
    try:  # bad input is refused here, before Prefect starts and before any cluster is contacted
        plan_fleet(
            spec.run_id,
            targets,
            reports_root(args.reports_dir) / spec.run_id,
            labels=[f"--context {c}" for c in contexts],
            flags=CLI_FLAGS,
        )
    except FleetInputError as e:
        _err(str(e))
        return EXIT_USAGE
    try:
        rollout_fleet(spec, targets, ping=not args.no_ping, churn=not args.no_churn, reports_dir=args.reports_dir)
    except FleetFailed as e:
        _err(str(e))
        return e.exit_code
    return EXIT_OK


def _flow_command(args: argparse.Namespace) -> int:
    spec = _load_spec(args)
    out = args.reports_dir
    if args.cmd == "rollout":
        contexts: list[str] = args.context or []
        if contexts and args.sim:
            _err(
                "--context picks clusters from a kubeconfig and --sim makes a fresh simulated one: use one or the "
                "other (for a fleet of simulated clusters, start each with `udn-rollout sim serve --port 0 --kubeconfig FILE`, "
                "merge their contexts into one kubeconfig, then pass it with --kubeconfig and one --context per cluster)"
            )
            return EXIT_USAGE
        if len(contexts) > 1:
            return _fleet(args, spec, contexts)
        args.context = contexts[0] if contexts else None
    with _cluster(args) as cluster:
        if args.cmd == "preflight":
            from flows.preflight import preflight

            return _run(lambda: preflight(spec, cluster, out))
        if args.cmd == "provision":
            from flows.provision import provision

            return _run(lambda: provision(spec, cluster, reports_dir=out))
        if args.cmd == "fanout":
            from flows.fanout import fanout

            return _run(lambda: fanout(spec, cluster, out))
        if args.cmd == "ping":
            from flows.connectivity import connectivity

            return _run(lambda: connectivity(spec, cluster, out))
        if args.cmd == "churn":
            from flows.churn import churn

            return _run(lambda: churn(spec, cluster, reprobe=not args.no_reprobe, reports_dir=out))
        if args.cmd == "rollout":
            from flows.rollout import rollout

            return _run(lambda: rollout(spec, cluster, ping=not args.no_ping, churn=not args.no_churn, reports_dir=out))
        if args.cmd == "teardown":
            from flows.teardown import teardown

            return _run(lambda: teardown(spec, cluster, dry_run=args.dry_run, reports_dir=out))
    return EXIT_USAGE


def _report(args: argparse.Namespace) -> int:
    from tasks.reports.publish import reports_root
    from tasks.reports.rundir import rerender

    root = reports_root(args.reports_dir)
    out = root / args.run_id
    if not (out / "run.json").is_file():
        known = sorted(p.parent.name for p in root.glob("*/run.json")) if root.is_dir() else []
        _err(
            f"no reports for run {args.run_id!r} under {root}/ (run ids there: {', '.join(known) or 'none'}; "
            "`udn-rollout runs` lists them)"
        )
        return EXIT_USAGE
    for path in rerender(out).values():
        print(path)
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tasks.orchestration import tune_gc
    from udn_rollout.prefect_env import configure

    configure()
    tune_gc()
    try:
        if args.cmd == "demo":
            from udn_rollout.demo import run_demo

            return run_demo(
                nodes=args.nodes,
                vms_per_namespace=args.vms_per_namespace,
                reports_dir=args.reports_dir,
                profile=args.profile,
            )
        if args.cmd == "sim":
            from udn_rollout.simcmd import run_sim

            return run_sim(args)
        if args.cmd == "render":
            return _render(args)
        if args.cmd == "report":
            return _report(args)
        if args.cmd == "serve":
            from flows.deployments import serve_all

            return serve_all(cron=args.cron, spec_file=args.spec_file)
        if args.cmd == "history":
            from udn_rollout.historycmd import run_history

            return run_history(args)
        if args.cmd == "runs":
            from udn_rollout.runs import print_runs

            return print_runs(args.reports_dir)
        if args.cmd == "completion":
            from udn_rollout.completion import script

            sys.stdout.write(script(build_parser(), args.shell))
            return EXIT_OK
        if args.cmd == "rbac":
            if not args.spec:
                _err("rbac needs a rollout spec: -f SPEC (the verbs depend on it)")
                return EXIT_USAGE
            from udn_rollout.rbac import rbac_yaml

            try:
                text = rbac_yaml(
                    _load_spec(args), user=args.user, group=args.group, service_account=args.service_account
                )
            except ValueError as e:
                _err(str(e))
                return EXIT_USAGE
            sys.stdout.write(text)
            return EXIT_OK
        if not args.spec:
            _err(f"{args.cmd} needs a rollout spec: -f SPEC (examples in specs/)")
            return EXIT_USAGE
        return _flow_command(args)
    except KeyboardInterrupt:
        _err("interrupted; rerun the same command (same run id) to resume")
        return 130
    except Exception as e:  # spec and cluster-config errors: the message is the help
        from tasks.spec import SpecError

        if isinstance(e, SpecError):
            _err(str(e))
            return EXIT_USAGE
        from tasks.kube import ClusterConfigError, KubeError

        if isinstance(e, (KubeError, ClusterConfigError)):
            _err(str(e))
            return EXIT_CLUSTER
        raise


if __name__ == "__main__":
    sys.exit(main())
