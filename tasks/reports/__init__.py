"""A run's reports: pandas builds the tables, Jinja2 renders Markdown and HTML, one function publishes.

* :mod:`.common` — formatting, the Jinja2 environment, atomic writes that refuse secrets, the JSON sanitiser;
* :mod:`.provisioning`, :mod:`.connectivity`, :mod:`.churn`, :mod:`.capacity` — each report's tables and views;
* :mod:`.state` — ``run.json`` as a pydantic model, and the parts a step contributes;
* :mod:`.rundir` — writing a run's directory and re-rendering it;
* :mod:`.terminal` — tables for the terminal (rich);
* :mod:`.publish` — :func:`report`: a step's result to files, Prefect artifacts, terminal lines, exit decision.

The names below load their module on first use (PEP 562), so a command that never writes a
report never imports pandas.

Pure functions over the plain records of :mod:`tasks.model`, except :mod:`.publish`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

#: public name → the submodule that defines it
_HOME: dict[str, str] = {
    "ERROR_COLOUR": "connectivity",
    "FILE_DESCRIPTIONS": "rundir",
    "INCONCLUSIVE": "connectivity",
    "INVENTORY_COLUMNS": "provisioning",
    "LATENCY_METRICS": "provisioning",
    "LEAK": "connectivity",
    "QUANTILE_COLUMNS": "provisioning",
    "SILENT": "connectivity",
    "RunParts": "state",
    "RunState": "state",
    "SecretLeakError": "common",
    "capacity_markdown": "capacity",
    "checks_table_text": "terminal",
    "churn_frame": "churn",
    "churn_html": "churn",
    "churn_markdown": "churn",
    "churn_summary": "churn",
    "connectivity_html": "connectivity",
    "connectivity_markdown": "connectivity",
    "connectivity_summary": "connectivity",
    "failing_pairs": "connectivity",
    "inventory_frame": "provisioning",
    "iso_utc": "common",
    "isolation_verdicts": "connectivity",
    "latency_quantiles": "provisioning",
    "loss_colour": "connectivity",
    "matrix": "connectivity",
    "md_table": "common",
    "parse_iso_utc": "common",
    "preflight_markdown": "capacity",
    "probes_frame": "connectivity",
    "provisioning_markdown": "provisioning",
    "read_churn_csv": "churn",
    "read_inventory_csv": "provisioning",
    "read_probes_csv": "connectivity",
    "rerender": "rundir",
    "write_inventory_csv": "provisioning",
    "write_run_reports": "rundir",
}

if TYPE_CHECKING:
    from tasks.reports.capacity import capacity_markdown, preflight_markdown
    from tasks.reports.churn import churn_frame, churn_html, churn_markdown, churn_summary, read_churn_csv
    from tasks.reports.common import SecretLeakError, iso_utc, md_table, parse_iso_utc
    from tasks.reports.connectivity import (
        ERROR_COLOUR,
        INCONCLUSIVE,
        LEAK,
        SILENT,
        connectivity_html,
        connectivity_markdown,
        connectivity_summary,
        failing_pairs,
        isolation_verdicts,
        loss_colour,
        matrix,
        probes_frame,
        read_probes_csv,
    )
    from tasks.reports.provisioning import (
        INVENTORY_COLUMNS,
        LATENCY_METRICS,
        QUANTILE_COLUMNS,
        inventory_frame,
        latency_quantiles,
        provisioning_markdown,
        read_inventory_csv,
        write_inventory_csv,
    )
    from tasks.reports.rundir import FILE_DESCRIPTIONS, rerender, write_run_reports
    from tasks.reports.state import RunParts, RunState
    from tasks.reports.terminal import checks_table_text


def __getattr__(name: str) -> Any:
    module = _HOME.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


__all__ = [
    "ERROR_COLOUR",
    "FILE_DESCRIPTIONS",
    "INCONCLUSIVE",
    "INVENTORY_COLUMNS",
    "LATENCY_METRICS",
    "LEAK",
    "QUANTILE_COLUMNS",
    "SILENT",
    "RunParts",
    "RunState",
    "SecretLeakError",
    "capacity_markdown",
    "checks_table_text",
    "churn_frame",
    "churn_html",
    "churn_markdown",
    "churn_summary",
    "connectivity_html",
    "connectivity_markdown",
    "connectivity_summary",
    "failing_pairs",
    "inventory_frame",
    "iso_utc",
    "isolation_verdicts",
    "latency_quantiles",
    "loss_colour",
    "matrix",
    "md_table",
    "parse_iso_utc",
    "preflight_markdown",
    "probes_frame",
    "provisioning_markdown",
    "read_churn_csv",
    "read_inventory_csv",
    "read_probes_csv",
    "rerender",
    "write_inventory_csv",
    "write_run_reports",
]
