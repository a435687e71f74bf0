"""Renderers: ``render(run_dirs, fmt)`` writes one of ``table`` (terminal), ``md``, ``latex``, ``html``
(paper layout, see :mod:`cirbench.report.tables`) or ``csv``, ``json`` (long format, one row per group,
full precision).

Optional sections: ``ci`` (paired bootstrap 95 % interval of each model's per-image PSNR difference to the
reference model, with a sign test), the QF-prediction error of models whose records carry ``qf_pred``,
and ``efficiency`` (parameters, GFLOPs at 256x256 and peak memory from each model's profile in run.json;
seconds per megapixel from the records: total model seconds / total megapixels).

``conventions=True`` is another view of the same records: per colour dataset x QF, every metric space the run
recorded (``y``, ``y-float``, ``y-full``, ``rgb``) side by side with its difference to ``y``; csv and json then
carry every space with ``d_<metric>_to_y`` columns.
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
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..files import to_json
from ..metrics import LUMA_SPACES, SPACES, Metric
from ..records import GROUP
from .aggregate import (
    BASELINE,
    aggregate,
    annotate,
    comparisons,
    load,
    metric_specs,
    missing_values,
    numeric,
    pick_metrics,
    provenance,
)
from .plots import figure_caption
from .tables import (
    CONVENTION_USERS,
    DAGGER,
    DASH,
    Part,
    Table,
    caption_text,
    ci_table,
    column_groups,
    columns_of,
    conventions_caption,
    conventions_table,
    coverage,
    efficiency_table,
    notes_of,
    published_rows,
    qf_table,
    quality_table,
    row_keys_of,
    source_notes,
    with_metrics,
)

__all__ = ["FORMATS", "render"]

FORMATS = ("table", "md", "csv", "json", "latex", "html")
PROFILE_COLUMNS = ("params", "gflops_256", "peak_mem_mb")  # from each model's profile in run.json


def _tex_escape(text: str) -> str:
    out = []
    for i, ch in enumerate(text):
        if ch == "-" and i and text[i - 1] == "-":
            out.append("{}")  # a command-line "--option" must not become an en dash
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
                "Δ": r"$\Delta$",
                "·": r"$\cdot$",
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


# Fits a 1400-px window: compact cells, tabular figures; the header row stays in view while a table scrolls.
_CSS = """body{font-family:system-ui,sans-serif;margin:1.5em;color:#222;max-width:1360px}
table{border-collapse:separate;border-spacing:0;margin:1em 0 2em;font-size:13px;font-variant-numeric:tabular-nums}
th,td{padding:3px 9px;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
thead{position:sticky;top:0;z-index:1;background:#fff}
thead tr:first-child th{border-top:2px solid #222}
thead tr:last-child th{border-bottom:1px solid #222}
tbody tr:last-child td{border-bottom:2px solid #222}
tr.rule td{border-top:1px solid #222}
tr.published td{color:#555;font-style:italic}
tbody tr:hover td{background:#f3f6fa}
caption{caption-side:top;text-align:left;font-weight:600;margin-bottom:.4em}
p.caption,ul.notes{max-width:75em;font-size:13px}
code{white-space:nowrap;font-size:12px}
figure{display:inline-block;margin:1em}figure img{max-width:100%}"""


_OPTION = re.compile(r"--[a-z][a-z-]*(?: [a-z][a-z0-9-]*(?= or |[;:,.)]|$))?")


def _options(text: str) -> str:
    """A note's `command` spans and command-line options as unbreakable code ("--space rgb" must not wrap
    after its dashes); options inside a span stay part of it."""
    parts = re.split(r"`([^`]+)`", text)  # odd items: the insides of backtick spans
    return "".join(f"<code>{s}</code>" if i % 2 else _OPTION.sub(lambda m: f"<code>{m[0]}</code>", s)
                   for i, s in enumerate(parts))


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
        out.append(f"<table><caption>{e(t.title)}</caption><thead>")  # sticky: see _CSS
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
        out.append('<ul class="notes">' + "".join(f"<li>{_options(e(n))}</li>" for n in notes) + "</ul>")
    if plots_dir is not None:
        pngs = sorted(Path(plots_dir).glob("*.png"))
        if pngs:
            out.append("<h2>Figures</h2>")
        for p in pngs:
            data = base64.b64encode(p.read_bytes()).decode("ascii")
            out.append(
                f'<figure><img alt="{e(p.stem)}" src="data:image/png;base64,{data}">'
                f"<figcaption>{e(figure_caption(p.stem))}</figcaption></figure>"
            )
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _long(agg: pd.DataFrame, metrics: list[str], pub: pd.DataFrame | None, cmp: pd.DataFrame | None,
          models_info: dict) -> pd.DataFrame:
    """One row per group: every recorded metric's mean, published rows beside, paired CIs and profiles."""
    columns = (*GROUP, "n_images", "n_expected", *metrics, "seconds_per_mp", "qf_err", "source", "per_qf_model")
    ours = agg.assign(source="", per_qf_model="")
    for col in PROFILE_COLUMNS:
        ours[col] = pd.array([(models_info.get(m, {}).get("profile") or {}).get(col) for m in ours["model"]],
                             dtype="Int64" if col == "params" else "Float64")
    frames = [ours]
    if pub is not None and len(pub):
        frames.append(pub.assign(n_images=pd.NA, n_expected=pd.NA, seconds_per_mp=np.nan, qf_err=np.nan, note="",
                                 **{m: np.nan for m in metrics if m not in pub}))
    # note: "n of m images", skipped files, metrics missing: what the tables' ‡ says, on the row it is about
    out = pd.concat(frames, ignore_index=True)[[*columns, *PROFILE_COLUMNS, "note"]]
    if cmp is not None:
        out = out.merge(cmp, on=list(GROUP), how="left")
        out["n_pairs"] = out["n_pairs"].astype("Int64")  # NaN for unpaired rows would make it float
    return out


def _conventions_long(agg: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Every space's means with each metric's difference to the same model's ``y`` mean."""
    key = [k for k in GROUP if k != "space"]
    ref = agg[agg["space"] == "y"][[*key, *metrics]].rename(columns={m: f"_y_{m}" for m in metrics})
    out = agg.merge(ref, on=key, how="left")
    for m in metrics:
        out[f"d_{m}_to_y"] = out[m] - out.pop(f"_y_{m}")
    return out[[*GROUP, "n_images", "n_expected", *metrics, *(f"d_{m}_to_y" for m in metrics), "note"]]


def _json(long: pd.DataFrame, prov: dict, specs: dict[str, Metric], notes: list[str]) -> str:
    rows = [{k: (None if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)) else v)
             for k, v in r.items()} for r in long.to_dict("records")]
    metrics = {name: m.info() for name, m in specs.items()}  # how to read each column (direction, unit...)
    return json.dumps(to_json({"provenance": prov, "metrics": metrics, "notes": notes, "results": rows}), indent=2,
                      ensure_ascii=False) + "\n"


def _csv(long: pd.DataFrame) -> str:
    buf = io.StringIO()
    long.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


# ------------------------------------------------------------------------------------ entry point


def _write(fmt: str, tables: list[Table], caption: str, notes: list[str], plots_dir) -> str:
    if fmt == "md":
        return _md(tables, caption, notes)
    if fmt == "latex":
        return _latex(tables, caption, notes)
    if fmt == "html":
        return _html(tables, caption, notes, plots_dir)
    return _terminal(tables, caption, notes)


def render(
    run_dirs: str | os.PathLike | Iterable[str | os.PathLike],
    fmt: str,
    *,
    space: str = "y",
    metrics: Sequence[str] | None = None,
    datasets: Sequence[str] | None = None,
    qfs: Sequence[int] | None = None,
    models: Sequence[str] | None = None,
    published: bool = False,
    ci: bool = False,
    reference: str = BASELINE,
    efficiency: bool = True,
    published_path: str | os.PathLike | None = None,
    plots_dir: str | os.PathLike | None = None,
    conventions: bool = False,
) -> str:
    """The report of ``run_dirs`` in ``fmt`` (one of FORMATS).

    ``metrics`` picks the numbers in the paper-layout cells (default: every metric the runs recorded) and the
    first of them is the one ``ci`` compares; csv and json always carry every recorded metric.
    ``plots_dir`` (html only): PNGs found there are embedded. ``conventions``: the metric-convention view
    (``space``, ``ci`` and ``efficiency`` do not apply to it).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    if space not in SPACES:
        raise ConfigError(f"unknown metric space {space!r}; choose from {', '.join(SPACES)}")
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    run_dirs = list(run_dirs)
    if conventions:
        return _render_conventions(run_dirs, fmt, metrics=metrics, datasets=datasets, qfs=qfs, models=models,
                                   published=published, published_path=published_path, plots_dir=plots_dir)
    records = load(run_dirs, space=space, datasets=datasets, qfs=qfs)
    if records.empty:
        raise ConfigError(nothing_matches(run_dirs, space, datasets, qfs))
    specs = metric_specs(run_dirs, records)
    shown_metrics = pick_metrics(specs, metrics)
    records = numeric(records, list(specs))  # "abc" or null: NaN, named below, never a number
    cmp = (
        comparisons(records, shown_metrics[0], reference) if ci else None
    )  # before the model filter: the reference may be hidden
    shown = records[records["model"].isin(models)] if models else records
    if shown.empty:
        raise ConfigError(f"no records of models {list(models)}")
    prov = provenance(run_dirs)
    agg = annotate(aggregate(shown, list(specs)), prov, missing_values(shown, specs))
    columns = columns_of(agg, datasets)
    row_keys = row_keys_of(agg, models)
    placed_metrics = list(specs) if fmt in ("csv", "json") else [m.name for m in shown_metrics]
    pub, pub_notes = published_rows(published_path, columns, placed_metrics) if published else (None, [])
    marked, coverage_notes = coverage(agg, prov)

    if fmt in ("csv", "json"):
        long = _long(agg, list(specs), pub, cmp, prov["models"])
        return _csv(long) if fmt == "csv" else _json(long, prov, specs, coverage_notes)

    sources = list(dict.fromkeys(pub["source"])) if pub is not None else []
    groups = column_groups(columns, len(shown_metrics))
    tables = [quality_table(agg, cols, row_keys, shown_metrics, pub, sources, suffix, marked)
              for suffix, cols in groups]
    if cmp is not None:
        tables += [ci_table(cmp, cols, row_keys, reference, shown_metrics[0], suffix) for suffix, cols in groups]
    tables += [t for suffix, cols in groups if (t := qf_table(agg, cols, row_keys, suffix))]
    eff = efficiency_table(shown, row_keys, prov["models"]) if efficiency else None
    if eff:
        tables.append(eff)
    caption = caption_text(space, shown_metrics, prov, bool(sources))
    notes = (notes_of(sources, prov, efficiency, source_notes(pub)) + pub_notes + coverage_notes
             + _absent_notes(agg, shown_metrics, space))
    return _write(fmt, tables, caption, notes, plots_dir)


def nothing_matches(run_dirs, space: str | None, datasets=None, qfs=None) -> str:
    """Why a report has no records: a folder that does not exist, folders without records, or filters that
    matched nothing, with what the records do hold."""
    from ..records import RECORDS_FILE, read_records

    missing = [str(d) for d in run_dirs if not Path(d).exists()]
    if missing:
        return f"{', '.join(missing)}: no such folder"
    empty = [str(d) for d in run_dirs if not (Path(d) / RECORDS_FILE).is_file() or not read_records(d).size]
    if len(empty) == len(run_dirs):
        return (f"{', '.join(empty)}: no records (not a run folder, or a run that has written none yet); a run "
                "folder holds records.jsonl, written by `cirbench run --out FOLDER`")
    df = read_records(run_dirs)
    have = []
    for key, asked, label in (("space", [space] if space else None, "--space"), ("dataset", datasets, "--datasets"),
                              ("qf", qfs, "--qf")):
        values = sorted({str(v) for v in df[key]}, key=_natural_key)
        matches = set(map(str, asked or ())) | ({"gray"} if key == "space" and space in LUMA_SPACES else set())
        if asked and not matches & set(values):
            have.append(f"{label} {','.join(map(str, asked))}: the records have {', '.join(values)}")
    reason = "; ".join(have) or "no record has all of the filters' values at once"
    return f"no records of {', '.join(map(str, run_dirs))} match: {reason}"


def _natural_key(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", text)]


def _render_conventions(run_dirs, fmt, *, metrics, datasets, qfs, models, published, published_path,
                        plots_dir) -> str:
    records = load(run_dirs, space=None, datasets=datasets, qfs=qfs)
    if models and not records.empty:
        records = records[records["model"].isin(models)]
    colour = records[records["space"] != "gray"] if not records.empty else records
    if colour.empty:
        raise ConfigError(f"no colour records (spaces y, y-float, y-full, rgb) match the filters in "
                          f"{', '.join(map(str, run_dirs))}; gray data have one convention only")
    specs = metric_specs(run_dirs, colour)
    shown_metrics = pick_metrics(specs, metrics)
    prov = provenance(run_dirs)
    agg = annotate(aggregate(colour, list(specs)), prov, missing_values(colour, specs))
    _, coverage_notes = coverage(agg, prov)
    if fmt in ("csv", "json"):
        long = _conventions_long(agg, list(specs))
        return _csv(long) if fmt == "csv" else _json(long, prov, specs, coverage_notes)
    cells = list(dict.fromkeys(c[:3] for c in columns_of(agg, datasets)))
    row_keys = row_keys_of(agg, models)
    pub = None
    if published:
        from .published import load_published

        pub = with_metrics(load_published(published_path), [m.name for m in shown_metrics])
        have = set(zip(agg["dataset"], agg["degradation"], agg["qf"], agg["space"], strict=True))
        pub = pub[[k in have for k in zip(pub["dataset"], pub["degradation"], pub["qf"], pub["space"], strict=True)]]
    sources = list(dict.fromkeys(pub["source"])) if pub is not None else []
    tables = [t for c in cells if (t := conventions_table(agg, c, row_keys, shown_metrics, pub, sources))]
    by = source_notes(pub)
    notes = [CONVENTION_USERS] + [f"[{i}] {src}" + (f". Note: {by[src]}" if by.get(src) else "")
                                  for i, src in enumerate(sources, 1)] + coverage_notes
    if sources:
        notes.append("Published rows are quoted from their sources under their own convention, not re-run.")
    gray = sorted(set(records["dataset"]) - set(colour["dataset"])) if not records.empty else []
    if gray:
        notes.append(f"Gray datasets ({', '.join(gray)}) have one channel and one convention (gray); how their "
                     "ground truth was made from colour is a convention of its own (docs/conventions.md).")
    return _write(fmt, tables, conventions_caption(shown_metrics, prov), notes, plots_dir)


def _absent_notes(agg: pd.DataFrame, metrics: list[Metric], space: str) -> list[str]:
    """A metric with no value in the shown space (it applies to others) is said, not left as silent dashes."""
    return [f"{m.label} is not recorded in space {space!r} (it applies to {', '.join(m.spaces)}): see --space "
            f"{m.spaces[0]}." for m in metrics if m.name not in agg or agg[m.name].isna().all()]
