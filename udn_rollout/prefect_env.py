"""Prefect settings that suit a command-line run, applied before Prefect is imported.

Without `PREFECT_API_URL` each process starts an ephemeral Prefect server; its 20 s default start-up
timeout is too short on a 2-core machine with a new PREFECT_HOME (see the Prefect reference), and
the server's analytics heartbeat fails noisily offline. Values the user set are never overridden.
"""

from __future__ import annotations

import os

DEFAULTS = {
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    # flow-run logs (INFO) reach the Prefect UI; the terminal shows only what the CLI prints itself
    "PREFECT_LOGGING_LEVEL": "INFO",
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "CRITICAL",
    "PREFECT_TASKS_RUNNER_THREAD_POOL_MAX_WORKERS": "16",
}


def configure() -> None:
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
