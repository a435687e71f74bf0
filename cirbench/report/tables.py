"""The table model: quality, confidence-interval, QF-prediction, efficiency and metric-convention tables,
their caption and notes, built from aggregated records (and published rows) and rendered by
:mod:`cirbench.report.render`.

Paper layout: one row per model (and setting, when it is not "single"), one column per dataset x QF, cells
"PSNR / SSIM / PSNR-B" (each metric with its spec's decimals). Per column and metric the best value (by the
metric's direction: ``higher_is_better``) is bold and the second underlined. Ranking compares the numbers as
printed (ties share a mark), among our own models only: the
``jpeg`` row is the unrestored input, not a method, and published rows are quoted, never ranked and never
averaged with ours (they sit below a rule, marked "(published [n])", with the sources listed).

A table stays narrow enough to read at a glance (a page, a 1400-px window): when the columns would hold more
than ``MAX_PARTS`` numbers per row (or ``MAX_COLUMNS`` columns), there is one table per dataset, a dataset
with many QFs split into runs of QFs. A row with no value in a table is left out of it, so a published row
appears only where it has a number. Published rows are placed only beside numbers in their own metric space
(the CSV's ``space``; ``y`` and ``gray`` are one thing on gray data).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..jpeg import Degradation
from ..metrics import COLOUR_SPACES, Metric
from ..records import GROUP
from .aggregate import BASELINE

DASH = "–"
DAGGER = "†"
PARTIAL = "‡"


MAX_COLUMNS = 8
MAX_PARTS = 12  # printed numbers per row: 4 columns of "PSNR / SSIM / PSNR-B", 8 of one metric

# Who computes each convention, for the notes: only what their code shows (docs/conventions.md has the detail).
CONVENTION_USERS = (
    "Conventions: y — rounded studio-range Y, as KAIR/FBCNN/SwinIR's test scripts (rgb2ycbcr on uint8) and GRL's "
    "Y metrics; y-float — unrounded studio-range Y, as BasicSR's calculate_psnr and calculate_ssim with test_y_channel "
    "(e.g. HAT, Restormer); y-full — full-range luma, as OpenCV's cvtColor RGB2GRAY or Pillow's convert('L') "
    "(e.g. a ground truth read as gray); rgb — all three channels, as FBCNN's and SwinIR's colour tables, GRL's "
    "Table 7 and PromptIR's compute_psnr_ssim (whose SSIM uses scikit-image's defaults, not reproduced here)."
)
SPACE_TEXT = {
    "y": "rounded studio-range BT.601 Y",
    "y-float": "unrounded studio-range BT.601 Y (float64)",
    "y-full": "full-range BT.601 luma, rounded as OpenCV's RGB2GRAY",
    "rgb": "RGB (PSNR-B with the BEF of the rounded Y)",
    "gray": "the single channel of gray data",
}


def _same_space(a: str, b: str) -> bool:
    return a == b or {a, b} == {"y", "gray"}  # a gray image is its own luma


def published_rows(published_path, columns: list[tuple], metrics: Sequence[str]) -> tuple[pd.DataFrame, list[str]]:
    """Published rows that sit beside ``columns`` (dataset, degradation, qf, space): same cell, same metric
    space, with a number for at least one of ``metrics``. Also notes naming the datasets whose columns got none,
    the spaces the literature has for them, and the option that shows them."""
    from .published import load_published

    pub = with_metrics(load_published(published_path), metrics)
    spaces = {}
    for d, g, q, sp in columns:
        spaces.setdefault((d, g, q), set()).add(sp)
    mask = [any(_same_space(s, c) for c in spaces.get((d, g, q), ()))
            for d, g, q, s in zip(pub["dataset"], pub["degradation"], pub["qf"], pub["space"], strict=True)]
    placed = pub[mask]
    missing: dict[tuple, list[str]] = {}  # (spaces shown, spaces the literature has) -> datasets
    for ds in dict.fromkeys(c[0] for c in columns):
        if ds in set(placed["dataset"]):
            continue
        cells = {c[:3] for c in columns if c[0] == ds}
        shown = tuple(sorted({c[3] for c in columns if c[0] == ds}))
        other = tuple(sorted({s for d, g, q, s in zip(pub["dataset"], pub["degradation"], pub["qf"], pub["space"],
                                                       strict=True) if (d, g, q) in cells}))
        missing.setdefault((shown, other), []).append(ds)
    notes = []
    for (shown, other), names in missing.items():
        text = (f"No published rows for {', '.join(names)} in {', '.join(shown)} (published rows sit only beside "
                "numbers of their own metric space)")
        if other:
            text += (f"; the literature has {'it' if len(names) == 1 else 'them'} in {', '.join(other)}; to see "
                     f"them beside ours, add --space {other[0]}: `cirbench report RUN --published --space {other[0]} "
                     f"--datasets {','.join(names)}` (or --conventions, every space at once)")
        notes.append(text + ".")
    return placed, notes


def with_metrics(pub: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """The published rows with a number for one of ``metrics`` at least (a row of other metrics sits nowhere)."""
    have = [m for m in metrics if m in pub.columns]
    return pub[pub[have].notna().any(axis=1)] if have else pub.iloc[0:0]


def source_notes(pub: pd.DataFrame | None) -> dict[str, str]:
    """Each source's notes (how its numbers were made, where that differs from cirbench's), once each."""
    if pub is None or "note" not in pub:
        return {}
    out: dict[str, list[str]] = {}
    for src, note in zip(pub["source"], pub["note"], strict=True):
        if note and note not in out.setdefault(src, []):
            out[src].append(note)
    return {s: " ".join(n) for s, n in out.items() if n}


def column_groups(columns: list[tuple], n_metrics: int) -> list[tuple[str, list[tuple]]]:
    """``[(title suffix, columns)]``: all columns in one table when they fit, else one table per dataset
    (runs of at most the width that fits, for a dataset with many QFs)."""
    width = max(1, min(MAX_COLUMNS, MAX_PARTS // max(1, n_metrics)))
    if len(columns) <= width:
        return [("", columns)]
    by_ds: dict[str, list[tuple]] = {}
    for c in columns:
        by_ds.setdefault(c[0], []).append(c)
    out = []
    for ds, cols in by_ds.items():
        runs = [cols[i : i + width] for i in range(0, len(cols), width)]
        for run in runs:
            span = "" if len(runs) == 1 else f", {_column_label(*run[0][1:3])} to {_column_label(*run[-1][1:3])}"
            out.append((ds + span, run))
    return out


# ------------------------------------------------------------------------------------ table model


@dataclass
class Part:
    """One printed number; ``style`` is "", "best" or "second"."""

    text: str
    style: str = ""


@dataclass
class Table:
    title: str
    stub: str  # header of the row-label column
    groups: list[str]  # spanning header per column ("" for none)
    labels: list[str]
    rows: list[tuple[str, list[list[Part]]]] = field(default_factory=list)
    rule_before: set[int] = field(default_factory=set)  # row indices that start a new block
    row_class: dict[int, str] = field(default_factory=dict)  # e.g. "published" (HTML styling)


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def _column_label(degradation: str, qf: int) -> str:
    return Degradation.from_name(degradation, qf).label


def columns_of(agg: pd.DataFrame, datasets: Sequence[str] | None) -> list[tuple]:
    """Column keys (dataset, degradation, qf, space): datasets as asked or as first seen, then
    single JPEG before double, QFs ascending."""
    order = list(datasets) if datasets else list(dict.fromkeys(agg["dataset"]))
    keys = set(zip(agg["dataset"], agg["degradation"], agg["qf"], agg["space"], strict=True))
    return sorted(
        keys,
        key=lambda k: (
            order.index(k[0]) if k[0] in order else len(order),
            k[1] != "jpeg",
            _natural(k[1]),
            int(k[2]),
            k[3],
        ),
    )


def row_keys_of(agg: pd.DataFrame, models: Sequence[str] | None) -> list[tuple[str, str]]:
    seen = list(dict.fromkeys(zip(agg["model"], agg["setting"], strict=True)))
    names = list(models) if models else sorted(dict.fromkeys(m for m, _ in seen), key=lambda m: m != BASELINE)
    return sorted(seen, key=lambda k: (names.index(k[0]), k[1] != "single"))


def _row_label(model: str, setting: str) -> str:
    return model if setting == "single" else f"{model} ({setting})"


def _fmt(value, decimals: int) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return DASH
    return f"{value:.{decimals}f}"


def _ranks(values: dict, metric: Metric) -> dict:
    """Mark best and second, in the metric's direction, by the printed value."""
    printed = {k: round(v, metric.decimals) for k, v in values.items() if v is not None and np.isfinite(v)}
    distinct = sorted(set(printed.values()), reverse=metric.higher_is_better)
    style = {}
    for k, v in printed.items():
        if v == distinct[0]:
            style[k] = "best"
        elif len(distinct) > 1 and v == distinct[1]:
            style[k] = "second"
    return style


def _heads(columns, title: str, suffix: str, marked=frozenset()) -> tuple[str, list[str], list[str]]:
    """Title, spanning groups and labels: a one-dataset table names its dataset in the title instead.
    ``marked`` columns (means over fewer images than announced, or over different image sets) carry ‡. Two
    columns of one cell in different spaces (gray and colour images of one folder) name their space."""
    cells = [c[:3] for c in columns]
    labels = [_column_label(c[1], c[2]) + (f" ({c[3]})" if cells.count(c[:3]) > 1 else "")
              + (f" {PARTIAL}" if c in marked else "") for c in columns]
    if suffix:
        return f"{title} — {suffix}", [""] * len(columns), labels
    return title, [c[0] for c in columns], labels


def _empty(cells: list[list[Part]]) -> bool:
    return all(p.text == DASH for cell in cells for p in cell)


def _by(df: pd.DataFrame, keys: Sequence[str]) -> dict[tuple, dict]:
    """Rows of ``df`` as dicts, by the values of ``keys`` (metric names need not be identifiers)."""
    return {tuple(r[k] for k in keys): r for r in df.to_dict("records")}


def _label(metric: Metric) -> str:
    """A lower-is-better metric carries ↓ wherever it is named (PSNR, SSIM: higher is better, unmarked)."""
    return metric.label if metric.higher_is_better else f"{metric.label}↓"


def _value(row: dict | None, metric: Metric):
    return row.get(metric.name) if row else None


def quality_table(agg, columns, row_keys, metrics: list[Metric], pub, sources, suffix: str = "",
                  marked=frozenset()) -> Table:
    title = "Restoration quality: " + " / ".join(_label(m) for m in metrics)
    title, groups, labels = _heads(columns, title, suffix, marked)
    t = Table(title, "Method", groups, labels)
    cells = _by(agg, GROUP)
    ranked = [k for k in row_keys if k[0] != BASELINE]
    styles = {}
    for col in columns:
        for m in metrics:
            vals = {k: _value(cells[(*k, *col)], m) for k in ranked if (*k, *col) in cells}
            for k, s in _ranks(vals, m).items():
                styles[(k, col, m.name)] = s
    for key in row_keys:
        row = []
        for col in columns:
            r = cells.get((*key, *col))
            row.append([Part(_fmt(_value(r, m), m.decimals), styles.get((key, col, m.name), "")) for m in metrics])
        if not _empty(row):
            t.rows.append((_row_label(*key), row))
    if pub is not None and len(pub):
        # (dataset, degradation, qf) -> row; the space already matches the column's (published_rows)
        pcells = _by(pub, ("model", "source", "per_qf_model", "dataset", "degradation", "qf"))
        first = len(t.rows)
        for model, source, per_qf in dict.fromkeys(
            zip(pub["model"], pub["source"], pub["per_qf_model"], strict=True)
        ):
            row = []
            for col in columns:
                r = pcells.get((model, source, per_qf, *col[:3]))
                row.append([Part(_fmt(_value(r, m), m.decimals)) for m in metrics])
            if _empty(row):
                continue
            extra = ", per-QF" if per_qf == "yes" else ""
            t.row_class[len(t.rows)] = "published"
            t.rows.append((f"{model} (published [{sources.index(source) + 1}]{extra})", row))
        if len(t.rows) > first:
            t.rule_before.add(first)
    return t


def ci_table(cmp: pd.DataFrame, columns, row_keys, reference: str, metric: Metric, suffix: str = "") -> Table:
    unit = f" ({metric.unit})" if metric.unit else ""
    better = "higher" if metric.higher_is_better else "lower"
    title = (
        f"{metric.label} difference to {reference}{unit}, {better} is better: mean ±half-width of the paired "
        f"bootstrap 95 % CI; {DAGGER} sign test p < 0.05"
    )
    title, groups, labels = _heads(columns, title, suffix)
    t = Table(title, "Method", groups, labels)
    by = _by(cmp, GROUP)
    for key in row_keys:
        if key[0] == reference:
            continue
        row = []
        for col in columns:
            r = by.get((*key, *col))
            if r is None or not r["n_pairs"]:
                row.append([Part(DASH)])
                continue
            half = (r["ci_hi"] - r["ci_lo"]) / 2
            mark = DAGGER if r["p_sign"] < 0.05 else ""
            diff = r[f"diff_{metric.name}"]
            row.append([Part(f"{diff:+.{metric.decimals}f} ±{half:.{metric.decimals}f}{mark}")])
        if not _empty(row):
            t.rows.append((_row_label(*key), row))
    return t


def qf_table(agg: pd.DataFrame, columns, row_keys, suffix: str = "") -> Table | None:
    have = agg[agg["qf_err"].notna()]
    if have.empty:
        return None
    title, groups, labels = _heads(columns, "QF-prediction error: mean |predicted − true QF|", suffix)
    t = Table(title, "Method", groups, labels)
    by = {(r.model, r.setting, r.dataset, r.degradation, r.qf, r.space): r.qf_err for r in have.itertuples()}
    for key in row_keys:
        row = [[Part(_fmt(by.get((*key, *col)), 2))] for col in columns]
        if not _empty(row):
            t.rows.append((_row_label(*key), row))
    return t if t.rows else None


def efficiency_table(df: pd.DataFrame, row_keys, models_info: dict) -> Table | None:
    heads = ["Params (M)", "GFLOPs@256", "s/MP", "Peak mem (MB)"]
    t = Table("Efficiency", "Method", [""] * len(heads), heads)
    for model, setting in row_keys:
        info = models_info.get(model, {})
        sub = df[(df["model"] == model) & (df["setting"] == setting)]
        spmp = None
        if {"seconds", "height", "width"} <= set(sub.columns) and len(sub):
            mp = float((sub["height"] * sub["width"]).sum()) / 1e6
            sec = float(sub["seconds"].sum())
            spmp = sec / mp if mp > 0 and sec > 0 else None  # 0 s: the JPEG input, nothing was timed
        prof = info.get("profile") or {}
        params = prof.get("params", info.get("params"))
        vals = [
            _fmt(params / 1e6 if params is not None else None, 2),
            _fmt(prof.get("gflops_256"), 1),
            _fmt(spmp, 3),
            _fmt(prof.get("peak_mem_mb"), 0),
        ]
        if any(v != DASH for v in vals):
            t.rows.append((_row_label(model, setting), [[Part(v)] for v in vals]))
    return t if t.rows else None


def conventions_table(agg: pd.DataFrame, cell: tuple, row_keys, metrics, pub, sources) -> Table | None:
    """One dataset x degradation x QF (``cell``): each model's means under every colour convention in the
    run, and their difference to ``y``; published rows of that cell under their own convention."""
    here = agg[(agg["dataset"] == cell[0]) & (agg["degradation"] == cell[1]) & (agg["qf"] == cell[2])]
    spaces = [s for s in COLOUR_SPACES if s in set(here["space"])]
    if not spaces:
        return None
    labels = [_label(m) for m in metrics] + [f"Δ {_label(m)} to y" for m in metrics]
    title = f"{cell[0]} {_column_label(cell[1], cell[2])}: the same outputs under each metric convention"
    t = Table(title, "Method · space", [""] * len(labels), labels)
    vals = _by(here, ("model", "setting", "space"))
    for key in row_keys:
        first = len(t.rows)
        ref = vals.get((*key, "y"))
        for space in spaces:
            r = vals.get((*key, space))
            if r is None:
                continue
            row = [[Part(_fmt(_value(r, m), m.decimals))] for m in metrics]
            for m in metrics:
                if ref is None or space == "y":
                    row.append([Part(DASH)])
                else:
                    d = _value(r, m) - _value(ref, m)
                    row.append([Part(f"{d:+.{m.decimals}f}" if np.isfinite(d) else DASH)])
            t.rows.append((f"{_row_label(*key)} · {space}", row))
        if first and len(t.rows) > first:
            t.rule_before.add(first)
    if pub is not None and len(pub):
        p = pub[(pub["dataset"] == cell[0]) & (pub["degradation"] == cell[1]) & (pub["qf"] == cell[2])
                & pub["space"].isin(spaces)]
        first = len(t.rows)
        for r in p.to_dict("records"):
            row = [[Part(_fmt(_value(r, m), m.decimals))] for m in metrics] + [[Part(DASH)] for _ in metrics]
            if all(_fmt(_value(r, m), m.decimals) == DASH for m in metrics):
                continue
            t.row_class[len(t.rows)] = "published"
            t.rows.append((f"{r['model']} (published [{sources.index(r['source']) + 1}]) · {r['space']}", row))
        if len(t.rows) > first:
            t.rule_before.add(first)
    return t if t.rows else None


# ------------------------------------------------------------------------------------ provenance


def _space_text(space: str, prov: dict) -> str:
    if space == "y":
        conv = "; ".join(prov["y_convention"]) or "unrecorded convention"
        return f"Y channel ({conv}); gray datasets on their single channel"
    if space in ("y-float", "y-full"):
        return f"{SPACE_TEXT[space]} ({space}); gray datasets on their single channel"
    return {"rgb": "RGB", "gray": "gray images"}.get(space, space)


def _provenance_text(prov: dict) -> str:
    def join(key, default="unrecorded"):
        return "; ".join(str(v) for v in prov[key]) or default

    sha = "; ".join(s[:12] for s in prov["protocol_sha256"])
    commit = "; ".join(c[:12] for c in prov["git_commit"])
    return (
        f"Protocol {join('protocol')}" + (f" (sha256 {sha})" if sha else "") + ". "
        f"Encoder {join('encoder')}. cirbench {join('cirbench_version')}"
        + (f" (git {commit})" if commit else "")
        + ". "
    )


def _units(metrics: list[Metric]) -> str:
    return " / ".join(f"{_label(m)} ({m.unit})" if m.unit else _label(m) for m in metrics)


def caption_text(space: str, metrics: list[Metric], prov: dict, published: bool) -> str:
    units = _units(metrics)
    best = "Best" if all(m.higher_is_better for m in metrics) else "Best (highest; lowest for ↓ metrics)"
    return (
        f"Mean {units} per dataset and JPEG QF, on the {_space_text(space, prov)}. "
        + _provenance_text(prov)
        + f"{best} in bold, second underlined, among our models (the JPEG input"
        + (" and published rows are" if published else " is")
        + " not ranked)."
    )


def conventions_caption(metrics: list[Metric], prov: dict) -> str:
    units = _units(metrics)
    return (
        f"Mean {units} of the same outputs under each metric convention the run recorded, per colour dataset "
        "and JPEG QF, and the difference to y (cirbench's default). " + _provenance_text(prov)
        + "y: " + SPACE_TEXT["y"] + "; y-float: " + SPACE_TEXT["y-float"] + "; y-full: " + SPACE_TEXT["y-full"]
        + "; rgb: " + SPACE_TEXT["rgb"] + "."
    )


def coverage(agg: pd.DataFrame, prov: dict) -> tuple[set[tuple], list[str]]:
    """Columns whose means do not cover what they should, each marked ‡ with a note: images skipped as invalid
    (``--skip-invalid``: "n of m images (k skipped)", once per dataset), and, from
    :func:`~cirbench.report.aggregate.annotate`'s ``_why``, fewer images than run.json announces, a dataset it
    does not list, a metric missing or not a number (naming the models); and columns whose models' means cover
    different image sets (never compared silently: also a warning)."""
    marked, notes = set(), []
    announced = prov.get("dataset_images", {})
    cols_of = {}
    for r in agg.itertuples():
        cols_of.setdefault(r.dataset, set()).add((r.dataset, r.degradation, r.qf, r.space))
    for ds, files in prov.get("skipped_images", {}).items():
        if not cols_of.get(ds) or not files:
            continue
        marked.update(cols_of[ds])
        m = announced.get(ds)
        names = ", ".join(sorted(files)[:5]) + (" ..." if len(files) > 5 else "")
        total = f"{m - len(files)} of {m} images" if m else "fewer images"
        notes.append(f"{PARTIAL} {ds}: {total} ({len(files)} skipped as invalid: {names}; reasons in run.json).")
    for col, grp in agg.groupby(["dataset", "degradation", "qf", "space"], sort=False):
        rows = grp.to_dict("records")
        label = {id(r): r["model"] + ("" if r["setting"] == "single" else f" ({r['setting']})") for r in rows}
        by_why: dict[str, list[str]] = {}
        for r in rows:
            if r.get("_why"):
                by_why.setdefault(r["_why"], []).append(label[id(r)])
        where = f"{col[0]} {_column_label(col[1], col[2])} ({col[3]})"
        if by_why:
            marked.add(col)
            notes.append(f"{PARTIAL} {where}: " + "; ".join(f"{', '.join(m)}: {w}" for w, m in by_why.items()) + ".")
        ns = {label[id(r)]: r["n_images"] for r in rows}
        if len(set(ns.values())) > 1:
            marked.add(col)
            text = (f"{where}: the means cover different image sets "
                    f"({', '.join(f'{k} {v}' for k, v in ns.items())} images); compare them with care")
            notes.append(f"{PARTIAL} {text}.")
            warnings.warn(text, stacklevel=2)
    return marked, notes


def notes_of(sources: list[str], prov: dict, efficiency: bool, notes_by_source: dict[str, str] | None = None
             ) -> list[str]:
    by = notes_by_source or {}
    notes = [f"[{i}] {s}" + (f". Note: {by[s]}" if by.get(s) else "") for i, s in enumerate(sources, 1)]
    if sources:
        notes.append("Published rows are quoted from their sources, not re-run; per-QF: one model per QF.")
    if efficiency and prov["device"]:
        threads = "; ".join(str(t) for t in prov["threads"])
        notes.append(
            f"Timings on {'; '.join(prov['device'])}"
            + (f", {threads} thread{'' if str(threads) == '1' else 's'}." if threads else ".")
        )
    return notes
