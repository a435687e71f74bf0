"""The table model: quality, confidence-interval, QF-prediction and efficiency tables, their caption and
notes, built from aggregated records (and published rows) and rendered by :mod:`cirbench.report.render`.

Paper layout: one row per model (and setting, when it is not "single"), one column per dataset x QF, cells
"PSNR / SSIM / PSNR-B" (2 / 4 / 2 decimals). Per column and metric the best value is bold and the second
underlined. Ranking compares the numbers as printed (ties share a mark), among our own models only: the
``jpeg`` row is the unrestored input, not a method, and published rows are quoted, never ranked and never
averaged with ours (they sit below a rule, marked "(published [n])", with the sources listed).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ..eval.records import GROUP
from ..jpeg import Degradation
from .aggregate import BASELINE, select_space

DECIMALS = {"psnr": 2, "ssim": 4, "psnrb": 2}
NAMES = {"psnr": "PSNR", "ssim": "SSIM", "psnrb": "PSNR-B"}
DASH = "–"
DAGGER = "†"


def published_rows(published_path, space: str, columns: list[tuple]) -> pd.DataFrame:
    from .published import load_published

    pub = select_space(load_published(published_path), space)
    keys = {c[:3] for c in columns}  # (dataset, degradation, qf); the space already matches
    mask = [k in keys for k in zip(pub["dataset"], pub["degradation"], pub["qf"], strict=True)]
    return pub[mask]


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


def _ranks(values: dict, decimals: int) -> dict:
    """Mark best and second (higher is better) by the printed value."""
    printed = {k: round(v, decimals) for k, v in values.items() if v is not None and np.isfinite(v)}
    distinct = sorted(set(printed.values()), reverse=True)
    style = {}
    for k, v in printed.items():
        if v == distinct[0]:
            style[k] = "best"
        elif len(distinct) > 1 and v == distinct[1]:
            style[k] = "second"
    return style


def quality_table(agg, columns, row_keys, metrics, pub, sources) -> Table:
    groups = [c[0] for c in columns]
    labels = [_column_label(c[1], c[2]) for c in columns]
    title = "Restoration quality: " + " / ".join(NAMES[m] for m in metrics)
    t = Table(title, "Method", groups, labels)
    cells = {(r.model, r.setting, r.dataset, r.degradation, r.qf, r.space): r for r in agg.itertuples()}
    ranked = [k for k in row_keys if k[0] != BASELINE]
    styles = {}
    for col in columns:
        for m in metrics:
            vals = {k: getattr(cells[(*k, *col)], m) for k in ranked if (*k, *col) in cells}
            for k, s in _ranks(vals, DECIMALS[m]).items():
                styles[(k, col, m)] = s
    for key in row_keys:
        row = []
        for col in columns:
            r = cells.get((*key, *col))
            row.append(
                [
                    Part(_fmt(getattr(r, m) if r else None, DECIMALS[m]), styles.get((key, col, m), ""))
                    for m in metrics
                ]
            )
        t.rows.append((_row_label(*key), row))
    if pub is not None and len(pub):
        t.rule_before.add(len(t.rows))
        pcells = {
            (r.model, r.source, r.per_qf_model, r.dataset, r.degradation, r.qf): r for r in pub.itertuples()
        }
        for model, source, per_qf in dict.fromkeys(
            zip(pub["model"], pub["source"], pub["per_qf_model"], strict=True)
        ):
            row = []
            for col in columns:
                r = pcells.get((model, source, per_qf, *col[:3]))
                row.append([Part(_fmt(getattr(r, m) if r else None, DECIMALS[m])) for m in metrics])
            extra = ", per-QF" if per_qf == "yes" else ""
            t.row_class[len(t.rows)] = "published"
            t.rows.append((f"{model} (published [{sources.index(source) + 1}]{extra})", row))
    return t


def ci_table(cmp: pd.DataFrame, columns, row_keys, reference: str) -> Table:
    groups = [c[0] for c in columns]
    labels = [_column_label(c[1], c[2]) for c in columns]
    title = (
        f"PSNR difference to {reference} (dB): mean ±half-width of the paired bootstrap 95 % CI; "
        f"{DAGGER} sign test p < 0.05"
    )
    t = Table(title, "Method", groups, labels)
    by = {tuple(r[: len(GROUP)]): r for r in cmp.itertuples(index=False)}
    for key in row_keys:
        if key[0] == reference:
            continue
        row = []
        for col in columns:
            r = by.get((*key, *col))
            if r is None or not r.n_pairs:
                row.append([Part(DASH)])
                continue
            half = (r.ci_hi - r.ci_lo) / 2
            mark = DAGGER if r.p_sign < 0.05 else ""
            row.append([Part(f"{r.diff_psnr:+.2f} ±{half:.2f}{mark}")])
        t.rows.append((_row_label(*key), row))
    return t


def qf_table(agg: pd.DataFrame, columns, row_keys) -> Table | None:
    have = agg[agg["qf_err"].notna()]
    if have.empty:
        return None
    t = Table(
        "QF-prediction error: mean |predicted − true QF|",
        "Method",
        [c[0] for c in columns],
        [_column_label(c[1], c[2]) for c in columns],
    )
    by = {(r.model, r.setting, r.dataset, r.degradation, r.qf, r.space): r.qf_err for r in have.itertuples()}
    for key in row_keys:
        if any(k[:2] == key for k in by):
            t.rows.append((_row_label(*key), [[Part(_fmt(by.get((*key, *col)), 2))] for col in columns]))
    return t


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


# ------------------------------------------------------------------------------------ provenance


def _space_text(space: str, prov: dict) -> str:
    if space == "y":
        conv = "; ".join(prov["y_convention"]) or "unrecorded convention"
        return f"Y channel ({conv}); gray datasets on their single channel"
    return {"rgb": "RGB", "gray": "gray images"}.get(space, space)


def caption_text(space: str, metrics, prov: dict, published: bool) -> str:
    def join(key, default="unrecorded"):
        return "; ".join(str(v) for v in prov[key]) or default

    units = " / ".join(f"{NAMES[m]}{'' if m == 'ssim' else ' (dB)'}" for m in metrics)
    sha = "; ".join(s[:12] for s in prov["protocol_sha256"])
    commit = "; ".join(c[:12] for c in prov["git_commit"])
    return (
        f"Mean {units} per dataset and JPEG QF, on the {_space_text(space, prov)}. "
        f"Protocol {join('protocol')}" + (f" (sha256 {sha})" if sha else "") + ". "
        f"Encoder {join('encoder')}. cirbench {join('cirbench_version')}"
        + (f" (git {commit})" if commit else "")
        + ". "
        "Best in bold, second underlined, among our models (the JPEG input"
        + (" and published rows are" if published else " is")
        + " not ranked)."
    )


def notes_of(sources: list[str], prov: dict, efficiency: bool) -> list[str]:
    notes = [f"[{i}] {s}" for i, s in enumerate(sources, 1)]
    if sources:
        notes.append("Published rows are quoted from their sources, not re-run; per-QF: one model per QF.")
    if efficiency and prov["device"]:
        threads = "; ".join(str(t) for t in prov["threads"])
        notes.append(
            f"Timings on {'; '.join(prov['device'])}"
            + (f", {threads} thread{'' if str(threads) == '1' else 's'}." if threads else ".")
        )
    return notes


