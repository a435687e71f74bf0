"""``cirbench regress``: compare a run's mean metrics with a committed baseline of golden numbers.

A baseline (``results/baselines/*.json``) holds expected means per (model, setting, dataset, degradation, qf, space,
metric), each with a tolerance (by default the metric spec's ``tol``). ``regress`` runs the baseline's protocol
restricted to its models, datasets and QFs (or reads a finished RUN_DIR), prints the deltas and exits 0 when every
number is within tolerance, 1 on any regression (a number moved, or a baseline row is absent from the run), 2 on
usage or data errors. ``--update`` writes a baseline from a run for a human to review; with several RUN_DIRs it also
measures their spread (run-to-run, thread count) and widens the tolerances to cover it.

Baseline schema (version 1)::

    {"schema": 1, "protocol": "blind", "protocol_version": "1.0", "protocol_sha256": "...",
     "models": [...], "datasets": [...], "qfs": [...], "created": "...", "note": "...",
     "tolerance": {METRIC: X, ...},
     "provenance": {...run.json excerpts...},
     "entries": [{"model", "setting", "dataset", "degradation", "qf", "space", "metric",
                  "value", "tol", "n_images"}, ...]}
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

from ..errors import ConfigError
from ..files import atomic_write, to_json
from ..records import GROUP, json_problem, read_records, read_run_info
from .aggregate import aggregate, metric_specs

__all__ = ["SCHEMA", "NEW", "BaselineError", "Row", "load_baseline", "make_baseline", "write_baseline", "compare",
           "render_rows"]

SCHEMA = 1
# --update with several runs: tolerance = max(default, SPREAD_FACTOR x measured spread).
SPREAD_FACTOR = 4.0
ENTRY_KEYS = (*GROUP, "metric")

OK, REGRESSION, MISSING, NEW = "ok", "REGRESSION", "missing", "new"


class BaselineError(ConfigError):
    """A baseline file is absent or malformed (exit 2)."""


@dataclass
class Row:
    """One compared number."""

    key: dict  # ENTRY_KEYS -> value
    expected: float | None
    got: float | None
    tol: float | None
    status: str
    n_expected: int | None = None
    n_got: int | None = None

    @property
    def delta(self) -> float | None:
        if self.expected is None or self.got is None:
            return None
        if self.expected == self.got:  # also +inf == +inf (a perfect image)
            return 0.0
        return self.got - self.expected

    @property
    def failing(self) -> bool:
        return self.status in (REGRESSION, MISSING)

    def label(self) -> str:
        k = self.key
        parts = [k["model"], k["dataset"], f"qf{k['qf']}", k["space"], k["metric"]]
        if k["degradation"] != "jpeg":
            parts.insert(2, k["degradation"])
        if k["setting"] != "single":
            parts.insert(1, k["setting"])
        return "/".join(str(p) for p in parts)

    def describe(self) -> str:
        if self.status == MISSING:
            return f"{self.label()}: expected {_fmt(self.expected)}, absent from the run"
        text = (f"{self.label()}: expected {_fmt(self.expected)}, got {_fmt(self.got)}, "
                f"delta {_fmt(self.delta, signed=True)}, tol {_fmt(self.tol)}")
        if self.n_expected is not None and self.n_got != self.n_expected:
            text += f" (images: expected {self.n_expected}, got {self.n_got})"
        return text


def _fmt(v, signed: bool = False) -> str:
    if v is None:
        return "-"
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    text = f"{v:+.6f}" if signed else f"{v:.6f}"
    return "+0.000000" if text == "-0.000000" else text  # a rounding residue, not a direction


def _ceil2(x: float) -> float:
    """``x`` rounded up to two significant digits (a readable tolerance that still covers ``x``)."""
    if x <= 0:
        return 0.0
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return round(math.ceil(x / scale - 1e-9) * scale, 12)


# --------------------------------------------------------------------------------------- baselines


def load_baseline(path: str | os.PathLike) -> dict:
    """Read and check a baseline file; raises :class:`BaselineError` with the reason."""
    p = Path(path)
    if not p.is_file():
        raise BaselineError(f"{p}: baseline file not found (write one with `cirbench regress --update`)")
    try:
        data = json.loads(p.read_bytes())
    except ValueError as exc:  # not JSON, or not UTF-8 text
        raise BaselineError(f"{p}: not valid JSON ({json_problem(exc)}); restore the file or write it again with "
                            "`cirbench regress --update`") from None
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:
        raise BaselineError(f"{p}: not a cirbench baseline of schema {SCHEMA}")
    for k in ("protocol", "entries"):
        if k not in data:
            raise BaselineError(f"{p}: lacks {k!r}")
    if not isinstance(data["entries"], list) or not isinstance(data.get("tolerance", {}), dict):
        raise BaselineError(f"{p}: 'entries' must be a list and 'tolerance' an object; write the baseline again "
                            "with `cirbench regress --update`")
    tol = dict(data.get("tolerance", {}))
    entries = []
    for i, e in enumerate(data["entries"]):
        if not isinstance(e, dict):
            raise BaselineError(f"{p}: entry #{i} is not an object")
        missing = [k for k in (*ENTRY_KEYS, "value") if k not in e]
        if missing:
            raise BaselineError(f"{p}: entry #{i} lacks {missing}")
        if "tol" not in e and e["metric"] not in tol:
            raise BaselineError(f"{p}: entry #{i} ({e['metric']}) has no tolerance: give it a 'tol' or put "
                                f"the metric in 'tolerance'")
        try:
            value, tolerance = float(e["value"]), float(e.get("tol", tol.get(e["metric"], 0.0)))
        except (TypeError, ValueError):  # null, "abc": a baseline number that is not one
            raise BaselineError(f"{p}: entry #{i} ({e['metric']} of {e['model']} {e['dataset']} QF {e['qf']}): value "
                                f"{e['value']!r} and tol {e.get('tol')!r} must be numbers; fix the entry or write the "
                                "baseline again with `cirbench regress --update`") from None
        entries.append({**e, "value": value, "tol": tolerance})
    return {**data, "tolerance": tol, "entries": entries}


def _means(run_dirs) -> dict:
    """Means per GROUP (the report's aggregation) of every recorded metric, in long form:
    {(GROUP..., metric): (mean, n)}, for the spaces each metric applies to."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    df = read_records(run_dirs)
    out = {}
    if df.empty:
        return out
    specs = metric_specs(run_dirs, df)
    for row in aggregate(df, list(specs)).to_dict("records"):
        for m, spec in specs.items():
            if row["space"] in spec.spaces:
                out[(*(row[k] for k in GROUP), m)] = (float(row[m]), int(row["n_images"]))
    return out


def make_baseline(run_dirs: list[Path], *, tolerance: dict | None = None, note: str = "",
                  models: list[str] | None = None, datasets: list[str] | None = None, qfs: list[int] | None = None,
                  spread_factor: float = SPREAD_FACTOR) -> dict:
    """A baseline from the means of the first run (optionally only some models, datasets, QFs); further
    runs of the same work measure the spread (e.g. another thread count), and each metric's tolerance
    becomes max(tolerance, factor x spread). Tolerances default to each metric spec's ``tol``."""
    if not run_dirs:
        raise ConfigError("no run to make a baseline from")
    specs = metric_specs(run_dirs[:1])
    tol = {**{m: s.tol for m, s in specs.items()}, **(tolerance or {})}

    def wanted(key) -> bool:
        k = dict(zip(ENTRY_KEYS, key, strict=True))
        return ((not models or k["model"] in models) and (not datasets or k["dataset"] in datasets)
                and (not qfs or k["qf"] in qfs))

    runs = [{k: v for k, v in _means(d).items() if wanted(k)} for d in run_dirs]
    first = runs[0]
    if not first:
        raise ConfigError(f"{run_dirs[0]}: holds no records (of the selected models, datasets and QFs)")
    metrics = list(dict.fromkeys(k[-1] for k in first))
    tol = {m: tol[m] for m in metrics}
    spread = {m: 0.0 for m in metrics}
    for other, d in zip(runs[1:], run_dirs[1:], strict=True):
        if set(other) != set(first):
            raise ConfigError(f"{d}: does not hold the same groups as {run_dirs[0]}; cannot measure spread")
        for key, (v, _) in first.items():
            w = other[key][0]
            if v != w:
                spread[key[-1]] = max(spread[key[-1]], abs(w - v))
    if len(runs) > 1:
        tol = {m: max(tol[m], _ceil2(spread_factor * spread[m])) for m in metrics}
    info = read_run_info(run_dirs[0])
    proto = info.get("protocol", {})
    if not proto.get("name"):
        raise ConfigError(f"{run_dirs[0]}: run.json does not name the protocol; cannot make a baseline")
    entries = [dict(zip(ENTRY_KEYS, key, strict=True), value=to_json(round(float(v), 6)), tol=tol[key[-1]], n_images=n)
               for key, (v, n) in sorted(first.items(), key=lambda kv: tuple(str(x) for x in kv[0]))]
    base = {
        "schema": SCHEMA,
        "protocol": proto.get("name"),
        "protocol_version": proto.get("version"),
        "protocol_sha256": proto.get("sha256"),
        "models": sorted({e["model"] for e in entries}),
        "datasets": sorted({e["dataset"] for e in entries}),
        "qfs": sorted({e["qf"] for e in entries}),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "note": note,
        "tolerance": tol,
        "provenance": {k: info.get(k) for k in ("cirbench_version", "git_commit", "encoder", "metric_conventions",
                                                 "libraries", "device", "threads")},
        "entries": entries,
    }
    if len(runs) > 1:
        base["measured_spread"] = {"runs": [str(d) for d in run_dirs], "threads": [read_run_info(d).get("threads")
                                                                                   for d in run_dirs],
                                   "max_abs_delta": {m: float(f"{spread[m]:.3g}") for m in metrics},
                                   "factor": spread_factor}
    return base


def write_baseline(base: dict, path: str | os.PathLike) -> Path:
    """Write a baseline as indented JSON, one entry per line (readable diffs), atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    head = {k: v for k, v in base.items() if k != "entries"}
    text = json.dumps(head, indent=2)[:-2]  # reopen the object to append the entries list
    lines = ",\n".join("    " + json.dumps(e) for e in base["entries"])
    text += ',\n  "entries": [\n' + lines + "\n  ]\n}\n"
    json.loads(text)  # never write a file that does not read back
    return atomic_write(p, text)


# --------------------------------------------------------------------------------------- comparing


def compare(base: dict, run_dirs: list[Path] | Path, *, tol_override: dict | None = None,
            datasets: list[str] | None = None, qfs: list[int] | None = None) -> list[Row]:
    """Rows for every baseline entry (ok / REGRESSION / missing) and every run group the baseline
    lacks (new), restricted to ``datasets`` and ``qfs`` when given."""
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [Path(run_dirs)]
    got = _means(run_dirs)
    tol_override = tol_override or {}

    def keep(dataset, qf) -> bool:
        return (not datasets or dataset in datasets) and (not qfs or qf in qfs)

    rows, seen = [], set()
    for e in base["entries"]:
        if not keep(e["dataset"], e["qf"]):
            continue
        key = tuple(e[k] for k in ENTRY_KEYS)
        seen.add(key)
        tol = tol_override.get(e["metric"], e["tol"])
        kd = dict(zip(ENTRY_KEYS, key, strict=True))
        if key not in got:
            rows.append(Row(kd, e["value"], None, tol, MISSING, e.get("n_images")))
            continue
        v, n = got[key]
        row = Row(kd, e["value"], v, tol, OK, e.get("n_images"), n)
        d = row.delta
        moved = d is None or math.isnan(d) or abs(d) > tol + 1e-12  # slack for float rounding of tol itself
        fewer = row.n_expected is not None and n != row.n_expected
        row.status = REGRESSION if moved or fewer else OK
        rows.append(row)
    for key, (v, n) in got.items():
        kd = dict(zip(ENTRY_KEYS, key, strict=True))
        if key not in seen and kd["model"] in base.get("models", [kd["model"]]) and keep(kd["dataset"], kd["qf"]):
            rows.append(Row(kd, None, v, None, NEW, None, n))
    _warn_unequal_image_sets(got)
    return rows


def _warn_unequal_image_sets(got: dict) -> None:
    """Means over different image sets are never compared silently: warn when models' n differ for a cell."""
    cells: dict[tuple, dict[str, int]] = {}
    for key, (_, n) in got.items():
        k = dict(zip(ENTRY_KEYS, key, strict=True))
        cells.setdefault((k["dataset"], k["degradation"], k["qf"], k["space"]), {})[k["model"]] = n
    for (dataset, degradation, qf, space), ns in cells.items():
        if len(set(ns.values())) > 1:
            warnings.warn(f"{dataset} {degradation} QF {qf} ({space}): the models' means cover different image sets "
                          f"({', '.join(f'{m} {n}' for m, n in ns.items())} images)", stacklevel=3)


def render_rows(rows: list[Row], fmt: str = "simple") -> str:
    from tabulate import tabulate

    table = [[r.key["model"], r.key["setting"], r.key["dataset"], r.key["degradation"], r.key["qf"],
              r.key["space"], r.key["metric"], _fmt(r.expected), _fmt(r.got), _fmt(r.delta, signed=True),
              _fmt(r.tol), r.status] for r in rows]
    headers = ["model", "setting", "dataset", "degradation", "qf", "space", "metric", "expected", "got", "delta",
               "tol", "status"]
    return tabulate(table, headers=headers, tablefmt=fmt, disable_numparse=True)
