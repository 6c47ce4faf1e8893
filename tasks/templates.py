"""Where the Jinja2 templates live: in the ``manifests`` and ``reports`` packages, found through
``importlib.resources`` so a checkout, an editable install and an installed wheel all resolve them."""

from __future__ import annotations

from functools import cache
from importlib.resources import files
from pathlib import Path


@cache
def manifests_dir() -> Path:
    """The directory of the object templates (``manifests/*.yaml.j2``)."""
    return Path(str(files("manifests")))


@cache
def report_templates_dir() -> Path:
    """The directory of the report templates (``reports/templates/*.j2``)."""
    return Path(str(files("reports") / "templates"))
