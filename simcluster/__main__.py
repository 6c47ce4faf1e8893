"""`python -m simcluster serve ...`: the simulated cluster as a process (used by `isolated=True`)."""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from simcluster.faults import Faults
from simcluster.seed import ClusterConfig
from simcluster.server import TOKEN_ENV, serve_forever


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m simcluster")
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=0)
    s.add_argument("--kubeconfig", type=Path, required=True)
    s.add_argument("--state", type=Path)
    s.add_argument("--insecure-http", action="store_true")
    s.add_argument("--ready-file", type=Path)
    s.add_argument("--config-json", default="{}")
    s.add_argument("--faults-json", default="{}")
    s.add_argument("--history", type=int, default=100_000)
    s.add_argument("--parent-pid", type=int, help="stop when this process is gone")
    a = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    faults = Faults()
    faults.update({k: v for k, v in json.loads(a.faults_json).items() if k != "counters"})
    serve_forever(
        ClusterConfig(**json.loads(a.config_json)),
        host=a.host,
        port=a.port,
        kubeconfig=a.kubeconfig,
        state_file=a.state,
        tls_enabled=not a.insecure_http,
        faults=faults,
        token=os.environ.pop(TOKEN_ENV, None),
        ready_file=a.ready_file,
        history=a.history,
        announce=a.ready_file is None,
        parent_pid=a.parent_pid,
    )


if __name__ == "__main__":
    main()
