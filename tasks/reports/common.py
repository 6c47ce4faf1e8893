"""What every report shares: number formatting, Markdown tables, the Jinja2 environment (templates
loaded through the package, so an installed wheel finds them), atomic writes that refuse secrets, and
the one JSON sanitiser for run.json and Prefect artifacts."""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2

from tasks.templates import report_templates_dir

#: Markdown/HTML tables longer than this are cut (the CSV keeps every row).
MAX_TABLE_ROWS = 200
#: Matrices wider than this go to the HTML heatmap only; the Markdown lists the worst cells.
MAX_MARKDOWN_MATRIX = 20


class SecretLeakError(ValueError):
    """A report text contained a value from the secrets list; nothing was written for it."""


def iso_utc(ts: float | None) -> str:
    """Seconds since the epoch → ISO-8601 UTC, rounded to milliseconds (``2025-01-31T12:00:00.250Z``); "" for None."""
    if ts is None or (isinstance(ts, float) and math.isnan(ts)):
        return ""
    return datetime.fromtimestamp(round(ts, 3), tz=UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_iso_utc(text: str | None) -> float | None:
    """The inverse of ``iso_utc`` (any ISO-8601 with an offset or Z; naive means UTC); None for ""."""
    if not text:
        return None
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return dt.timestamp()


def plain(x: Any) -> Any:
    """A numpy scalar as the Python value it holds (pandas hands them out); anything else unchanged.
    Checked by module name so that formatting a number never has to import numpy."""
    return x.item() if type(x).__module__ == "numpy" and hasattr(x, "item") else x


def isnan(x: Any) -> bool:
    x = plain(x)
    return x is None or (isinstance(x, float) and math.isnan(x))


def fmt(x: Any, nd: int = 1) -> str:
    """A number for a table: "—" when missing, ints as they are, floats with ``nd`` decimals."""
    x = plain(x)
    if isnan(x):
        return "—"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, int):
        return str(x)
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def natural_key(s: str) -> list[Any]:
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s)]


def natsorted(items: Iterable[str]) -> list[str]:
    return sorted(items, key=natural_key)


def md_cell(x: Any) -> str:
    s = x if isinstance(x, str) else fmt(x)
    return s.replace("|", "\\|").replace("\r", "").replace("\n", "<br>") or " "


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` is one of l/r/c per column (default: left)."""
    align = align or "l" * len(header)
    marks = {"l": "---", "r": "--:", "c": ":-:"}
    lines = [
        "| " + " | ".join(md_cell(h) for h in header) + " |",
        "|" + "|".join(marks[a] for a in align) + "|",
    ]
    lines.extend("| " + " | ".join(md_cell(c) for c in r) + " |" for r in rows)
    return "\n".join(lines)


def percentiles(values: Sequence[float], qs: Sequence[float]) -> list[float]:
    """Percentiles ``qs`` (0–100) of ``values`` by linear interpolation between closest ranks, the
    definition numpy's ``percentile`` uses by default (the tests hold the two equal)."""
    ordered = sorted(float(v) for v in values)
    if not ordered:
        return [math.nan] * len(qs)
    out = []
    for q in qs:
        rank = (len(ordered) - 1) * float(q) / 100.0
        low = math.floor(rank)
        high = min(low + 1, len(ordered) - 1)
        out.append(ordered[low] + (ordered[high] - ordered[low]) * (rank - low))
    return out


@lru_cache(maxsize=1)
def jinja_env() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(report_templates_dir())),
        undefined=jinja2.StrictUndefined,
        autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default_for_string=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.globals["md_table"] = md_table
    env.filters["fmt"] = fmt
    env.filters["md"] = md_cell
    return env


def render(template: str, **ctx: Any) -> str:
    return jinja_env().get_template(template).render(**ctx)


def check_secrets(text: str, secrets: Iterable[str], what: str) -> None:
    for s in secrets:
        if s and s in text:
            raise SecretLeakError(f"refusing to write {what}: it contains a secret value (it was not written)")


def write_text(path: Path, text: str, secrets: Iterable[str] = ()) -> Path:
    """Write atomically (temp file + rename) after the secrets check."""
    check_secrets(text, secrets, path.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8", newline="")
    os.replace(tmp, path)
    return path


def flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.extend(flatten(v, key + "."))
        elif isinstance(v, (list, tuple)):
            out.append((key, ", ".join(str(x) for x in v)))
        else:
            out.append((key, v))
    return out


def frame_csv(frame: Any) -> str:
    """A DataFrame as CSV text (no index, LF line ends): the data files of a run."""
    text: str = frame.to_csv(index=False, lineterminator="\n")
    return text


def read_records(path: Path | str, cls: type[Any]) -> list[Any]:
    """Dataclass records back from a CSV written by :func:`frame_csv` (pandas reads, types from the fields).

    Columns the dataclass does not have are ignored and fields the file lacks take their defaults, so
    a newer tool reads an older run's files.
    """
    import pandas as pd

    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    hints = typing.get_type_hints(cls)
    fields = [f.name for f in dataclasses.fields(cls) if f.name in frame.columns and f.init]
    convert = {name: _converter(hints[name]) for name in fields}
    out = []
    for row in frame[fields].itertuples(index=False, name=None):
        out.append(cls(**{name: convert[name](value) for name, value in zip(fields, row, strict=True)}))
    return out


def _converter(annotation: Any) -> Any:
    args = set(typing.get_args(annotation)) - {type(None)}
    optional = type(None) in typing.get_args(annotation)
    base = next(iter(args)) if len(args) == 1 else annotation
    if base is bool:
        return lambda s: s.strip().lower() in ("true", "1", "yes")
    if base in (int, float):

        def number(s: str) -> Any:
            if s in ("", "nan", "NaN", "None"):
                return None if optional else base(0)
            return base(float(s))

        return number
    if typing.get_origin(base) is tuple or base is tuple:
        return lambda s: tuple(x for x in s.split(" ") if x)
    return str


def jsonable(value: Any) -> Any:
    """A JSON-safe value (the one sanitiser): dataclasses and models to dicts, DataFrames to records,
    timestamps to ISO strings, NaN/NaT/±inf to None, numpy scalars to Python."""
    value = plain(value)
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else float(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        to_dict = getattr(value, "to_dict", None)
        return jsonable(to_dict() if callable(to_dict) else dataclasses.asdict(value))
    if hasattr(value, "model_dump"):
        return jsonable(value.model_dump(mode="json", by_alias=True))
    if hasattr(value, "columns") and hasattr(value, "to_dict"):  # a DataFrame: a named index is a column
        frame = value.reset_index() if any(n is not None for n in value.index.names) else value
        return jsonable(frame.to_dict(orient="records"))
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if type(value).__name__ in ("NaTType", "NAType"):
        return None
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Path):
        return str(value)
    return str(value)
