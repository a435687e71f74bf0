"""Reports computed from records alone: paper-layout tables and data exports.

``render(run_dirs, fmt)`` writes one of: ``table`` (terminal), ``md``, ``latex``, ``html`` (paper layout)
or ``csv``, ``json`` (long format, one row per group, full precision).

Paper layout: one row per model (and setting, when it is not "single"), one column per dataset x QF,
cells "PSNR / SSIM / PSNR-B" (2 / 4 / 2 decimals). Per column and metric the best value is bold and the
second underlined. Ranking compares the numbers as printed (ties share a mark), among our own models only:
the ``jpeg`` row is the unrestored input, not a method, and published rows are quoted, never ranked and
never averaged with ours (they sit below a rule, marked "(published [n])", with the sources listed).

Metric spaces: ``space="y"`` selects the records of space "y" and of space "gray": a gray dataset's image
is its own luma, so both answer "PSNR on the luminance". ``"rgb"`` and ``"gray"`` select just that space.
Published rows are matched the same way ("gray" rows for ``y``) on dataset, degradation and QF.

Optional sections: ``ci`` (paired bootstrap 95 % interval of each model's per-image PSNR difference to the
reference model, with a sign test), the QF-prediction error of models whose records carry ``qf_pred``,
and ``efficiency`` (parameters, GFLOPs at 256x256, peak memory from run.json; seconds per megapixel from
the records: total model seconds / total megapixels).
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from .records import GROUP, KEY, read_records, read_run_info
from .stats import compare_paired

__all__ = ["FORMATS", "aggregate", "select_space", "load", "comparisons", "render"]

FORMATS = ("table", "md", "csv", "json", "latex", "html")
METRICS = ("psnr", "ssim", "psnrb")
DECIMALS = {"psnr": 2, "ssim": 4, "psnrb": 2}
NAMES = {"psnr": "PSNR", "ssim": "SSIM", "psnrb": "PSNR-B"}
BASELINE = "jpeg"  # the unrestored JPEG input: shown, never ranked
DASH = "–"
DAGGER = "†"
CSV_COLUMNS = (*GROUP, "n_images", *METRICS, "seconds_per_mp", "qf_err", "source", "per_qf_model")
CI_COLUMNS = ("reference", "n_pairs", "diff_psnr", "ci_lo", "ci_hi", "p_sign")


# --------------------------------------------------------------------------------------------- data


def select_space(df: pd.DataFrame, space: str) -> pd.DataFrame:
    """Rows of a metric space; ``y`` also takes ``gray`` rows (a gray image is its own luma)."""
    spaces = {"y": ("y", "gray")}.get(space, (space,))
    return df[df["space"].isin(spaces)]


def aggregate(df: pd.DataFrame) -> pd.DataFrame:
    """Means per GROUP with ``n_images``; ``seconds_per_mp`` (total seconds / total megapixels) and
    ``qf_err`` (mean |qf_pred - qf|) where the records carry what they need, else NaN."""
    df = df.copy()
    has_size = {"seconds", "height", "width"} <= set(df.columns)
    df["_mp"] = df["height"] * df["width"] / 1e6 if has_size else np.nan
    df["_sec"] = df["seconds"] if has_size else np.nan
    df["_qf_err"] = (pd.to_numeric(df["qf_pred"]) - df["qf"]).abs() if "qf_pred" in df else np.nan
    g = df.groupby(list(GROUP), sort=False, dropna=False)
    out = g[list(METRICS)].mean()
    out.insert(0, "n_images", g.size())
    sec, mp = g["_sec"].sum(min_count=1), g["_mp"].sum(min_count=1)
    out["seconds_per_mp"] = (sec / mp).where(mp > 0)
    out["qf_err"] = g["_qf_err"].mean()
    return out.reset_index()[[*GROUP, "n_images", *METRICS, "seconds_per_mp", "qf_err"]]


def load(
    run_dirs,
    *,
    space: str = "y",
    datasets: Sequence[str] | None = None,
    qfs: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Records of the runs in one metric space, filtered; a key present in several runs keeps the last."""
    df = read_records(run_dirs)
    if df.empty:
        return df
    df = df.drop_duplicates(subset=list(KEY), keep="last")
    df = select_space(df, space)
    if datasets:
        df = df[df["dataset"].isin(datasets)]
    if qfs:
        df = df[df["qf"].isin([int(q) for q in qfs])]
    return df


def comparisons(df: pd.DataFrame, reference: str = BASELINE, metric: str = "psnr") -> pd.DataFrame:
    """Paired per-image ``metric`` difference of every (model, setting) to ``reference`` per column.

    Pairs on (dataset, image, degradation, qf, space). The reference's "single" setting is used when it
    has several. Returns the group keys plus CI_COLUMNS.
    """
    pair = ["dataset", "image", "degradation", "qf", "space"]
    ref = df[df["model"] == reference]
    if ref.empty:
        return pd.DataFrame(columns=[*GROUP, *CI_COLUMNS])
    if (ref["setting"] == "single").any():
        ref = ref[ref["setting"] == "single"]
    ref = ref[[*pair, metric]].rename(columns={metric: "_ref"})
    merged = df[df["model"] != reference].merge(ref, on=pair, how="inner")
    rows = []
    for key, grp in merged.groupby(list(GROUP), sort=False):
        c = compare_paired(grp[metric].to_numpy(float) - grp["_ref"].to_numpy(float))
        rows.append((*key, reference, c.n, c.mean, c.lo, c.hi, c.p_sign))
    return pd.DataFrame(rows, columns=[*GROUP, *CI_COLUMNS])


def _published_rows(published_path, space: str, columns: list[tuple]) -> pd.DataFrame:
    from .published import load_published

    pub = select_space(load_published(published_path), space)
    keys = {c[:3] for c in columns}  # (dataset, degradation, qf); the space already matches
    mask = [k in keys for k in zip(pub["dataset"], pub["degradation"], pub["qf"], strict=True)]
    return pub[mask]


def _provenance(run_dirs) -> dict:
    """Provenance merged over runs: each field's distinct values, in run order."""
    infos = [read_run_info(d) for d in run_dirs]

    def distinct(values):
        out = []
        for v in values:
            if v not in (None, "") and v not in out:
                out.append(v)
        return out

    def get(info, *path):
        for p in path:
            info = info.get(p) if isinstance(info, dict) else None
        return info

    def proto(i):
        if not get(i, "protocol", "name"):
            return None
        return f"{get(i, 'protocol', 'name')} v{get(i, 'protocol', 'version')}"

    def encoder(i):
        enc = get(i, "encoder") or {}
        parts = [
            f"{enc.get('encoder', '')} {enc.get(enc.get('encoder', ''), '')}".strip(),
            enc.get("libjpeg"),
        ]
        return ", ".join(p for p in parts if p) or None

    models: dict = {}
    for i in infos:
        for name, m in (i.get("models") or {}).items():
            models.setdefault(name, {}).update({k: v for k, v in (m or {}).items() if v is not None})
    return {
        "protocol": distinct(proto(i) for i in infos),
        "protocol_sha256": distinct(get(i, "protocol", "sha256") for i in infos),
        "encoder": distinct(encoder(i) for i in infos),
        "y_convention": distinct(get(i, "metric_conventions", "y") for i in infos),
        "cirbench_version": distinct(i.get("cirbench_version") for i in infos),
        "git_commit": distinct(i.get("git_commit") for i in infos),
        "device": distinct(i.get("device") for i in infos),
        "threads": distinct(i.get("threads") for i in infos),
        "models": models,
        "runs": [str(d) for d in run_dirs],
    }


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
    if degradation == "jpeg":
        return f"QF {qf}"
    m = re.fullmatch(r"double-q(\d+)-s(\d+)x(\d+)", degradation)
    if m:
        shift = "" if m[2] == m[3] == "0" else f" s{m[2]},{m[3]}"
        return f"QF {m[1]}→{qf}{shift}"
    return f"{degradation} QF {qf}"


def _columns(agg: pd.DataFrame, datasets: Sequence[str] | None) -> list[tuple]:
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


def _row_keys(agg: pd.DataFrame, models: Sequence[str] | None) -> list[tuple[str, str]]:
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


def _quality_table(agg, columns, row_keys, metrics, pub, sources) -> Table:
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


def _ci_table(cmp: pd.DataFrame, columns, row_keys, reference: str) -> Table:
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


def _qf_table(agg: pd.DataFrame, columns, row_keys) -> Table | None:
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


def _efficiency_table(df: pd.DataFrame, row_keys, models_info: dict) -> Table | None:
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
        params = info.get("params")
        vals = [
            _fmt(params / 1e6 if params is not None else None, 2),
            _fmt(info.get("gflops_256"), 1),
            _fmt(spmp, 3),
            _fmt(info.get("peak_mem_mb"), 0),
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


def _caption(space: str, metrics, prov: dict, published: bool) -> str:
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


def _notes(sources: list[str], prov: dict, efficiency: bool) -> list[str]:
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


# ------------------------------------------------------------------------------------ renderers


def _tex_escape(text: str) -> str:
    out = []
    for ch in text:
        out.append(
            {
                "\\": r"\textbackslash{}",
                "&": r"\&",
                "%": r"\%",
                "$": r"\$",
                "#": r"\#",
                "_": r"\_",
                "{": r"\{",
                "}": r"\}",
                "~": r"\textasciitilde{}",
                "^": r"\textasciicircum{}",
                "±": r"$\pm$",
                DAGGER: r"$^\dagger$",
                "→": r"$\to$",
                "−": "$-$",
                DASH: "--",
                "|": r"$|$",
                "×": r"$\times$",
                "<": r"$<$",
                ">": r"$>$",
            }.get(ch, ch)
        )
    return "".join(out)


def _cell_text(cell: list[Part], fmt: str) -> str:
    def one(p: Part) -> str:
        if fmt == "md":
            return {"best": f"**{p.text}**", "second": f"<u>{p.text}</u>"}.get(p.style, p.text)
        if fmt == "latex":
            t = _tex_escape(p.text)
            return {"best": rf"\textbf{{{t}}}", "second": rf"\underline{{{t}}}"}.get(p.style, t)
        if fmt == "html":
            t = html.escape(p.text)
            return {"best": f"<b>{t}</b>", "second": f"<u>{t}</u>"}.get(p.style, t)
        return {"best": f"{p.text}*", "second": f"{p.text}'"}.get(p.style, p.text)

    return " / ".join(one(p) for p in cell)


def _flat_headers(t: Table) -> list[str]:
    return [t.stub] + [f"{g} {lab}".strip() for g, lab in zip(t.groups, t.labels, strict=True)]


def _md(tables: list[Table], caption: str, notes: list[str]) -> str:
    out = []
    for t in tables:
        out += [f"### {t.title}", ""]
        out.append("| " + " | ".join(h.replace("|", "\\|") for h in _flat_headers(t)) + " |")
        out.append("|:---|" + "---:|" * len(t.labels))
        for label, cells in t.rows:
            out.append(
                "| " + " | ".join([label] + [_cell_text(c, "md").replace("|", "\\|") for c in cells]) + " |"
            )
        out.append("")
    out.append(caption)
    out += [""] + notes if notes else []
    return "\n".join(out) + "\n"


def _terminal(tables: list[Table], caption: str, notes: list[str]) -> str:
    from tabulate import tabulate

    out = []
    for t in tables:
        rows = [[label] + [_cell_text(c, "table") for c in cells] for label, cells in t.rows]
        out += [
            t.title,
            tabulate(rows, headers=_flat_headers(t), tablefmt="simple", disable_numparse=True),
            "",
        ]
    out.append(caption.replace("Best in bold, second underlined", "Best marked *, second '"))
    out += notes
    return "\n".join(out) + "\n"


def _latex(tables: list[Table], caption: str, notes: list[str]) -> str:
    out = ["% cirbench report: needs \\usepackage{booktabs} in the preamble."]
    for n, t in enumerate(tables):
        ncol = len(t.labels)
        cap = caption if n == 0 else t.title
        out += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            rf"\caption{{{_tex_escape(cap)}}}",
            rf"\label{{tab:cirbench-{n}}}",
            rf"\begin{{tabular}}{{l{'c' * ncol}}}",
            r"\toprule",
        ]
        if any(t.groups):
            spans, rules, start = [], [], 2
            for g in dict.fromkeys(t.groups):
                width = t.groups.count(g)
                spans.append(rf"\multicolumn{{{width}}}{{c}}{{{_tex_escape(g)}}}")
                rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
                start += width
            out += [" & " + " & ".join(spans) + r" \\", " ".join(rules)]
            heads = [t.stub, *t.labels]
        else:
            heads = _flat_headers(t)
        out += [" & ".join(_tex_escape(h) for h in heads) + r" \\", r"\midrule"]
        for i, (label, cells) in enumerate(t.rows):
            if i in t.rule_before:
                out.append(r"\midrule")
            out.append(" & ".join([_tex_escape(label)] + [_cell_text(c, "latex") for c in cells]) + r" \\")
        out += [r"\bottomrule", r"\end{tabular}"]
        if n == 0 and notes:  # sources and timing conditions, under the main table
            out += [r"\par\smallskip\footnotesize", "\n\\par ".join(_tex_escape(x) for x in notes)]
        out += [r"\end{table}", ""]
    return "\n".join(out)


_CSS = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0;font-size:14px}
th,td{padding:4px 10px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead tr:first-child th{border-top:2px solid #222}
thead tr:last-child th{border-bottom:1px solid #222}
tbody tr:last-child td{border-bottom:2px solid #222}
tr.rule td{border-top:1px solid #222}
tr.published td{color:#555;font-style:italic}
caption{caption-side:top;text-align:left;font-weight:600;margin-bottom:.4em}
p.caption,ul.notes{max-width:60em;font-size:13px}
figure{display:inline-block;margin:1em}figure img{max-width:100%}"""


def _html(tables: list[Table], caption: str, notes: list[str], plots_dir) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8"><title>cirbench report</title>',
        f"<style>{_CSS}</style></head><body>",
        "<h1>cirbench report</h1>",
        f'<p class="caption">{e(caption)}</p>',
    ]
    for t in tables:
        out.append(f"<table><caption>{e(t.title)}</caption><thead>")
        if any(t.groups):
            out.append(
                "<tr><th></th>"
                + "".join(
                    f'<th colspan="{t.groups.count(g)}" style="text-align:center">{e(g)}</th>'
                    for g in dict.fromkeys(t.groups)
                )
                + "</tr>"
            )
            heads = [t.stub, *t.labels]
        else:
            heads = _flat_headers(t)
        out.append("<tr>" + "".join(f"<th>{e(h)}</th>" for h in heads) + "</tr></thead><tbody>")
        for i, (label, cells) in enumerate(t.rows):
            cls = " ".join(c for c in (t.row_class.get(i, ""), "rule" if i in t.rule_before else "") if c)
            attr = f' class="{cls}"' if cls else ""
            out.append(
                f"<tr{attr}><td>{e(label)}</td>"
                + "".join(f"<td>{_cell_text(c, 'html')}</td>" for c in cells)
                + "</tr>"
            )
        out.append("</tbody></table>")
    if notes:
        out.append('<ul class="notes">' + "".join(f"<li>{e(n)}</li>" for n in notes) + "</ul>")
    if plots_dir is not None:
        pngs = sorted(Path(plots_dir).glob("*.png"))
        if pngs:
            out.append("<h2>Figures</h2>")
        for p in pngs:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{e(p.stem)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(p.stem)}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _long(agg: pd.DataFrame, pub: pd.DataFrame | None, cmp: pd.DataFrame | None) -> pd.DataFrame:
    ours = agg.assign(source="", per_qf_model="")
    frames = [ours]
    if pub is not None and len(pub):
        frames.append(pub.assign(n_images=pd.NA, seconds_per_mp=np.nan, qf_err=np.nan))
    out = pd.concat(frames, ignore_index=True)[list(CSV_COLUMNS)]
    if cmp is not None:
        out = out.merge(cmp, on=list(GROUP), how="left")
        out["n_pairs"] = out["n_pairs"].astype("Int64")  # NaN for unpaired rows would make it float
    return out


def _json(long: pd.DataFrame, prov: dict) -> str:
    def clean(v):
        if v is None or v is pd.NA:
            return None
        if isinstance(v, (np.integer,)):
            return int(v)
        if isinstance(v, (float, np.floating)):
            return None if math.isnan(v) else (float(v) if math.isfinite(v) else str(float(v)))
        return v

    rows = [{k: clean(v) for k, v in r.items()} for r in long.to_dict("records")]
    return json.dumps({"provenance": prov, "results": rows}, indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------------------------ entry point


def render(
    run_dirs: str | os.PathLike | Iterable[str | os.PathLike],
    fmt: str,
    *,
    space: str = "y",
    metrics: Sequence[str] = METRICS,
    datasets: Sequence[str] | None = None,
    qfs: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    published: bool = False,
    ci: bool = False,
    reference: str = BASELINE,
    efficiency: bool = True,
    published_path: str | os.PathLike | None = None,
    plots_dir: str | os.PathLike | None = None,
) -> str:
    """The report of ``run_dirs`` in ``fmt`` (one of FORMATS).

    ``metrics`` picks the numbers in the paper-layout cells; csv and json always carry all three.
    ``plots_dir`` (html only): PNGs found there are embedded.
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise ValueError(f"unknown metrics {bad}; choose from {', '.join(METRICS)}")
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    records = load(run_dirs, space=space, datasets=datasets, qfs=qfs)
    if records.empty:
        raise ValueError(
            f"no records in space {space!r} match the filters in {', '.join(map(str, run_dirs))}"
        )
    cmp = (
        comparisons(records, reference) if ci else None
    )  # before the model filter: the reference may be hidden
    shown = records[records["model"].isin(models)] if models else records
    if shown.empty:
        raise ValueError(f"no records of models {list(models)}")
    agg = aggregate(shown)
    columns = _columns(agg, datasets)
    row_keys = _row_keys(agg, models)
    pub = _published_rows(published_path, space, columns) if published else None
    prov = _provenance(run_dirs)

    if fmt in ("csv", "json"):
        long = _long(agg, pub, cmp)
        if fmt == "csv":
            buf = io.StringIO()
            long.to_csv(buf, index=False, lineterminator="\n")
            return buf.getvalue()
        return _json(long, prov)

    sources = list(dict.fromkeys(pub["source"])) if pub is not None else []
    tables = [_quality_table(agg, columns, row_keys, list(metrics), pub, sources)]
    if cmp is not None:
        tables.append(_ci_table(cmp, columns, row_keys, reference))
    qf_table = _qf_table(agg, columns, row_keys)
    if qf_table:
        tables.append(qf_table)
    eff = _efficiency_table(shown, row_keys, prov["models"]) if efficiency else None
    if eff:
        tables.append(eff)
    caption = _caption(space, metrics, prov, bool(sources))
    notes = _notes(sources, prov, efficiency)
    if fmt == "md":
        return _md(tables, caption, notes)
    if fmt == "latex":
        return _latex(tables, caption, notes)
    if fmt == "html":
        return _html(tables, caption, notes, plots_dir)
    return _terminal(tables, caption, notes)
