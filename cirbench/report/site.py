"""``cirbench site``: a static leaderboard (HTML + CSS + JS, no network) built from records alone.

The site is one leaderboard page (``index.html``) and one per-image page per dataset x degradation x QF
(``pages/DATASET/DEGRADATION-qQF.html``). Every number is computed here, in Python, by the same code as
``cirbench report`` (:func:`~cirbench.report.aggregate.load`, :func:`~cirbench.report.aggregate.aggregate`),
and inlined into the page as JSON; the scripts in ``assets/`` only sort, filter and draw. Exports are the
report's own renderers (CSV, JSON, LaTeX) written beside the pages. Crops and thumbnails of the images a run
saved (``cirbench run --save-images``) are made at build time with Pillow.

The build is deterministic: nothing depends on the clock, the machine or dictionary order, so the same
records (and saved images) give the same bytes. It is written into a temporary folder beside ``out`` and
swapped in at the end, so a failed build leaves the previous site as it was.
"""

from __future__ import annotations

import html
import io
import json
import math
import os
import re
import shutil
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..jpeg import Degradation
from ..metrics import SPACES, Metric
from ..records import GROUP, KEY, RECORDS_FILE, gt_image_path, output_image_path, read_records, read_run_info
from .aggregate import BASELINE, aggregate, comparisons, metric_specs, select_space
from .plots import _window
from .tables import SPACE_TEXT, Part, Table, columns_of, published_rows, row_keys_of

__all__ = ["build_site", "SiteSummary", "MARKER"]

MARKER = ".cirbench-site"  # names a folder this command may replace
ASSETS = ("site.css", "common.js", "leaderboard.js", "images.js")
THUMB_HEIGHT = 48
EFFICIENCY = (  # key, header, unit, decimals; all lower-is-better
    ("params", "Params", "M", 2),
    ("gflops", "GFLOPs@256", "", 1),
    ("s_per_mp", "s/MP", "s", 3),
    ("peak_mem_mb", "Peak mem", "MB", 0),
)


def _metric_data(spec: Metric) -> dict:
    """What the pages need of a metric's spec (cirbench.metrics): label, unit, decimals and direction."""
    return {"name": spec.name, "label": spec.label, "unit": spec.unit, "decimals": int(spec.decimals),
            "higher_is_better": bool(spec.higher_is_better)}


@dataclass(frozen=True)
class SiteSummary:
    """What a build wrote: the folder, its page and file counts, bytes, and whether any image was saved."""

    out: Path
    pages: int
    files: int
    bytes: int
    images: int


# ------------------------------------------------------------------------------------ small helpers


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@+-]+", "_", str(text)) or "_"


def _num(value):
    """A JSON-safe float at full precision: NaN becomes null, infinities the strings "inf" / "-inf"."""
    if value is None or value is pd.NA:
        return None
    value = float(value)
    if math.isnan(value):
        return None
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return value


def _json_script(data, element_id: str) -> str:
    # "<" escaped so no string in the data can close the script element.
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False).replace("<", "\\u003c")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _row_id(model: str, setting: str) -> str:
    return model if setting == "single" else f"{model}@{setting}"


def _row_label(model: str, setting: str) -> str:
    return model if setting == "single" else f"{model} ({setting})"


def _qf_token(degradation: str, qf: int) -> str:
    """The QF part of a column key: the QF for single JPEG, ``DEGRADATION:QF`` otherwise."""
    return str(int(qf)) if degradation == "jpeg" else f"{degradation}:{int(qf)}"


def _page_path(dataset: str, degradation: str, qf: int) -> str:
    return f"pages/{_slug(dataset)}/{_slug(degradation)}-q{int(qf)}.html"


def _protocol_label(info: dict) -> str:
    p = info.get("protocol") or {}
    if not p.get("name"):
        return "unrecorded"
    return f"{p['name']} v{p.get('version', '?')}"


def _run_provenance(run: str, info: dict) -> dict:
    """The run-level fields a row's drawer shows (one entry per run that gave the row numbers)."""
    enc = info.get("encoder") or {}
    proto = info.get("protocol") or {}
    name = enc.get("encoder", "")
    return {
        "run": run,
        "protocol": _protocol_label(info),
        "protocol_sha256": proto.get("sha256"),
        "encoder": f"{name} {enc.get(name, '')}".strip() or None,
        "libjpeg": enc.get("libjpeg"),
        "git_commit": info.get("git_commit"),
        "cirbench": info.get("cirbench_version"),
        "date": info.get("finished") or info.get("started"),
        "device": info.get("device"),
        "threads": info.get("threads"),
        "command": info.get("command"),
    }


# ------------------------------------------------------------------------------------ the data model


def _load(run_dirs: list[str]) -> tuple[pd.DataFrame, dict[str, dict]]:
    for d in run_dirs:
        if not (Path(d) / RECORDS_FILE).is_file():
            raise ConfigError(f"{d}: no {RECORDS_FILE} (not a run folder); pass folders written by cirbench run")
    df = read_records(run_dirs)
    if df.empty:
        raise ConfigError(f"no records in {', '.join(run_dirs)}; run cirbench run first")
    # As cirbench report does: a key present in several runs keeps the last.
    df = df.drop_duplicates(subset=list(KEY), keep="last").reset_index(drop=True)
    return df, {d: read_run_info(d) for d in run_dirs}


def _views(df: pd.DataFrame) -> list[str]:
    """The metric spaces to offer, in SPACES order; ``y`` whenever there are gray records (their luma)."""
    present = set(df["space"])
    return [s for s in SPACES if s in present or (s == "y" and "gray" in present)]


def _efficiency(df: pd.DataFrame, models_info: dict, model: str, setting: str) -> dict:
    info = models_info.get(model) or {}
    prof = info.get("profile") or {}
    # One record per image whatever the number of metric spaces: the seconds are the model's, per image.
    sub = df[(df["model"] == model) & (df["setting"] == setting)].drop_duplicates(
        subset=[k for k in KEY if k != "space"])
    mp = float((sub["height"] * sub["width"]).sum()) / 1e6 if len(sub) else 0.0
    sec = float(sub["seconds"].sum()) if len(sub) else 0.0
    params = prof.get("params", info.get("params"))
    return {
        "params": _num(params / 1e6) if params is not None else None,
        "gflops": _num(prof.get("gflops_256")),
        "s_per_mp": _num(sec / mp) if mp > 0 and sec > 0 else None,  # 0 s: the JPEG input, nothing was timed
        "peak_mem_mb": _num(prof.get("peak_mem_mb")),
    }


def _merged(infos: dict[str, dict]) -> tuple[dict, dict]:
    """Each model's run.json entry merged over the runs, and each dataset's announced number of images."""
    models: dict = {}
    announced: dict[str, int] = {}
    for info in infos.values():
        for name, m in (info.get("models") or {}).items():
            models.setdefault(name, {}).update({k: v for k, v in (m or {}).items() if v is not None})
        for ds, d in (info.get("datasets") or {}).items():
            announced[ds] = max(announced.get(ds, 0), (d or {}).get("images") or 0)
    return models, announced


def _our_row(df: pd.DataFrame, model: str, setting: str, models_info: dict, infos: dict[str, dict]) -> dict:
    """A row of ours: its label, kind, efficiency and provenance (one entry per run that gave it numbers)."""
    runs = list(infos)
    used = sorted(set(df.loc[(df["model"] == model) & (df["setting"] == setting), "run"]), key=runs.index)
    entry = models_info.get(model) or {}
    return {
        "id": _row_id(model, setting), "model": model, "setting": setting, "label": _row_label(model, setting),
        "kind": "baseline" if model == BASELINE else "ours",
        "efficiency": _efficiency(df, models_info, model, setting),
        "model_info": {k: entry.get(k) for k in ("description", "weights", "weights_sha256", "setting", "card")},
        "runs": [_run_provenance(r, infos[r]) for r in used],
    }


def _our_cells(sel: pd.DataFrame, agg: pd.DataFrame, specs: list[Metric], proto_of_run: dict,
               reference: str) -> dict:
    """row id -> column id -> {v: means, n: images, p: protocols, ci: per metric (mean, lo, hi, p, n)}."""
    protos: dict[tuple, set] = {}  # which protocols' runs gave each mean (a filter on the page)
    for key, run in zip(zip(*(sel[k] for k in GROUP), strict=True), sel["run"], strict=True):
        protos.setdefault(key, set()).add(proto_of_run[run])
    names = [m.name for m in specs]
    cis = {m.name: {tuple(r[: len(GROUP)]): r for r in comparisons(sel, m, reference).itertuples(index=False)}
           for m in specs}
    out: dict[str, dict] = {}
    for r in agg.itertuples(index=False):
        key = (r.model, r.setting, r.dataset, r.degradation, r.qf, r.space)
        ci = {m: [_num(getattr(c, f"diff_{m}")), _num(c.ci_lo), _num(c.ci_hi), _num(c.p_sign), int(c.n_pairs)]
              for m in names if (c := cis[m].get(key)) is not None and c.n_pairs}
        out.setdefault(_row_id(r.model, r.setting), {})[f"{r.dataset}/{_qf_token(r.degradation, r.qf)}"] = {
            "v": [_num(getattr(r, m)) for m in names],
            "n": int(r.n_images),
            "p": sorted(protos.get(key, ())),
            **({"ci": ci} if ci else {}),
        }
    return out


def _published_cells(pub: pd.DataFrame, names: list[str], rows: dict, sources: list[str], cells: dict) -> None:
    """Add the published rows placed beside a view's columns to ``rows`` and ``cells`` (sources numbered in
    the order first met)."""
    for r in pub.itertuples(index=False):
        if r.source not in sources:
            sources.append(r.source)
        n = sources.index(r.source) + 1
        per_qf = r.per_qf_model == "yes"
        rid = f"{r.model} [{n}]" + (" per-QF" if per_qf else "")
        row = rows.setdefault(rid, {
            "id": rid, "model": r.model, "setting": "published",
            "label": f"{r.model} (published [{n}]{', per-QF' if per_qf else ''})",
            "kind": "published", "source": n, "per_qf": per_qf, "spaces": [],
        })
        if r.space not in row["spaces"]:
            row["spaces"].append(r.space)
        vals = [_num(getattr(r, m)) if m in pub.columns else None for m in names]
        if any(v is not None for v in vals):
            cells.setdefault(rid, {})[f"{r.dataset}/{_qf_token(r.degradation, r.qf)}"] = {"v": vals, "space": r.space}


def _leaderboard(df: pd.DataFrame, infos: dict[str, dict], specs: list[Metric], *, published: bool,
                 published_path, reference: str) -> dict:
    """The leaderboard's data: per metric space (a view), every row's means per column, with published rows."""
    names = [m.name for m in specs]
    protocols = list(dict.fromkeys(_protocol_label(i) for i in infos.values()))
    proto_of_run = {r: protocols.index(_protocol_label(i)) for r, i in infos.items()}
    models_info, announced = _merged(infos)
    columns: dict[str, dict] = {}
    rows: dict[str, dict] = {}
    cells: dict[str, dict] = {}
    sources: list[str] = []
    notes: dict[str, list[str]] = {}
    views = _views(df)
    for space in views:
        sel = select_space(df, space)
        agg = aggregate(sel, names)
        cols = columns_of(agg, None)
        for d, g, q, _ in cols:
            cid = f"{d}/{_qf_token(g, q)}"
            columns.setdefault(cid, {
                "id": cid, "dataset": d, "degradation": g, "qf": int(q),
                "label": Degradation.from_name(g, int(q)).label, "page": _page_path(d, g, q),
                "images": announced.get(d) or None,
            })
        for model, setting in row_keys_of(agg, None):
            if _row_id(model, setting) not in rows:
                rows[_row_id(model, setting)] = _our_row(df, model, setting, models_info, infos)
        cells[space] = _our_cells(sel, agg, specs, proto_of_run, reference)
        if published:
            pub, notes[space] = published_rows(published_path, cols, names)
            _published_cells(pub, names, rows, sources, cells[space])
    return {
        "metrics": [_metric_data(m) for m in specs],
        "efficiency": [{"key": k, "label": lab, "unit": u, "decimals": d} for k, lab, u, d in EFFICIENCY],
        "spaces": [{"name": s, "text": SPACE_TEXT.get(s, s)} for s in views],
        "default_space": "y" if "y" in views else views[0],
        "protocols": protocols,
        "columns": sorted(columns.values(), key=lambda c: _column_order(c, columns)),
        "rows": list(rows.values()),
        "cells": cells,
        "sources": sources,
        "notes": notes,
        "reference": reference,
        "exports": {s: {fmt: f"tables/leaderboard-{_slug(s)}.{ext}" for fmt, ext in
                        (("csv", "csv"), ("json", "json"), ("latex", "tex"))} for s in views},
    }


def _column_order(col: dict, columns: dict) -> tuple:
    datasets = list(dict.fromkeys(c["dataset"] for c in columns.values()))
    return (datasets.index(col["dataset"]), col["degradation"] != "jpeg", col["degradation"], col["qf"])


# ------------------------------------------------------------------------------------ per-image pages


class _Images:
    """Crops and thumbnails of the saved images, written once each (the ground truth is shared by QFs)."""

    def __init__(self, root: Path, runs: list[str], crop: int):
        self.root, self.runs, self.crop = root, runs, crop
        self.windows: dict[tuple, tuple[int, int, int, int]] = {}
        self.count = 0

    def _find(self, paths: Iterable[Path]) -> Path | None:
        return next((p for p in paths if p.is_file()), None)

    def gt(self, dataset: str, degradation: str, image: str) -> Path | None:
        return self._find(gt_image_path(r, dataset, degradation, image) for r in self.runs)

    def output(self, model: str, setting: str, dataset: str, degradation: str, qf: int, image: str) -> Path | None:
        return self._find(output_image_path(r, model, setting, dataset, degradation, qf, image) for r in self.runs)

    def _write(self, rel: str, arr: np.ndarray) -> str:
        from PIL import Image

        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="PNG")  # no timestamps: the same pixels give the same bytes
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(buf.getvalue())
        self.count += 1
        return rel

    def window(self, dataset: str, degradation: str, image: str, gt: np.ndarray) -> tuple[int, int, int, int]:
        key = (dataset, degradation, image)
        if key not in self.windows:
            h, w = gt.shape[:2]
            if self.crop <= 0 or (h <= self.crop and w <= self.crop):
                self.windows[key] = (0, 0, h, w)
            else:
                size = min(self.crop, h, w)
                y, x = _window(gt, size)
                self.windows[key] = (y, x, size, size)
        return self.windows[key]

    def gt_files(self, dataset: str, degradation: str, image: str) -> tuple[str, str, tuple] | None:
        """(crop path, thumbnail path, window) of the ground truth, relative to the site root."""
        from PIL import Image

        base = f"img/{_slug(dataset)}/{_slug(degradation)}"
        stem = _slug(Path(image).stem)
        crop = f"{base}/gt/{stem}.png"
        thumb = f"{base}/thumb/{stem}.png"
        key = (dataset, degradation, image)
        if key in self.windows:  # made for another QF of the same degradation: one ground truth for all
            return crop, thumb, self.windows[key]
        src = self.gt(dataset, degradation, image)
        if src is None:
            return None
        with Image.open(src) as im:
            gt = np.asarray(im).copy()
        y, x, h, w = self.window(dataset, degradation, image, gt)
        if not (self.root / crop).exists():
            self._write(crop, gt[y : y + h, x : x + w])
            th = max(1, round(gt.shape[1] * THUMB_HEIGHT / gt.shape[0]))
            small = Image.fromarray(gt).resize((th, THUMB_HEIGHT), Image.Resampling.LANCZOS)
            self._write(thumb, np.asarray(small))
        return crop, thumb, (y, x, h, w)

    def output_file(self, rid: str, model: str, setting: str, dataset: str, degradation: str, qf: int,
                    image: str, window: tuple) -> str | None:
        from PIL import Image

        src = self.output(model, setting, dataset, degradation, qf, image)
        if src is None:
            return None
        with Image.open(src) as im:
            arr = np.asarray(im)
            y, x, h, w = window
            rel = f"img/{_slug(dataset)}/{_slug(degradation)}/q{int(qf)}/{_slug(rid)}/{_slug(Path(image).stem)}.png"
            return self._write(rel, arr[y : y + h, x : x + w])


def _natural(text: str):
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(text))]


def _image_pages(df: pd.DataFrame, board: dict, specs: list[Metric], images: _Images, out: Path,
                 title: str) -> list[str]:
    """One page per leaderboard column (dataset x degradation x QF): every image's numbers for every model of
    ours, the crops of the images the runs saved, and the page's exports. Returns the pages written."""
    metrics = board["metrics"]
    names = [m["name"] for m in metrics]
    our_rows = [r for r in board["rows"] if r["kind"] != "published"]
    cols = board["columns"]
    written = []
    for col in cols:
        d, g, q = col["dataset"], col["degradation"], col["qf"]
        here = df[(df["dataset"] == d) & (df["degradation"] == g) & (df["qf"] == q)]
        if here.empty:
            continue
        stems = sorted(dict.fromkeys(here["image"]), key=_natural)
        # The spaces the records have (a gray dataset: gray only), each image's numbers by (space, row, image).
        spaces = [s for s in SPACES if s in set(here["space"])]
        by = {(r.space, _row_id(r.model, r.setting), r.image): [_num(getattr(r, m)) for m in names]
              for r in here.itertuples(index=False)}
        present = {k[1] for k in by}
        rows = [r for r in our_rows if r["id"] in present]
        values = {s: {r["id"]: [by.get((s, r["id"], i)) for i in stems]
                      for r in rows if any((s, r["id"], i) in by for i in stems)} for s in spaces}
        image_entries = []
        for stem in stems:
            entry = {"name": stem, "versions": {}}
            gt = images.gt_files(d, g, stem)
            if gt is not None:
                crop, thumb, window = gt
                entry.update(thumb=_relative(thumb, col["page"]), window=list(window))
                entry["versions"]["gt"] = _relative(crop, col["page"])
                for r in rows:
                    p = images.output_file(r["id"], r["model"], r["setting"], d, g, q, stem, window)
                    if p:
                        entry["versions"][r["id"]] = _relative(p, col["page"])
            image_entries.append(entry)
        rel = col["page"]
        siblings = [{"label": c["label"], "href": _relative(c["page"], rel), "current": c["page"] == rel}
                    for c in cols if c["dataset"] == d]
        page_exports = _image_exports(by, rows, stems, specs, spaces, rel, d, col["label"], out)
        data = {
            "dataset": d, "degradation": g, "qf": q, "label": col["label"],
            "metrics": metrics,
            "spaces": [{"name": s, "text": SPACE_TEXT.get(s, s)} for s in spaces],
            "default_space": "y" if "y" in spaces else spaces[0],
            "rows": [{"id": r["id"], "label": r["label"], "kind": r["kind"]} for r in rows],
            "baseline": BASELINE if any(r["model"] == BASELINE for r in rows) else None,
            "images": image_entries,
            "values": values,
            "saved": any(e["versions"] for e in image_entries),
            "siblings": siblings,
            "exports": page_exports,
            "root": _relative("index.html", rel),
        }
        _write_text(out / rel, _page_html(f"{d} {col['label']} — {title}", data, "images.js", rel,
                                          f"{d} · {col['label']}: every image"))
        written.append(rel)
    return written


def _relative(target: str, page: str) -> str:
    return os.path.relpath(target, os.path.dirname(page) or ".").replace(os.sep, "/")


def _image_exports(by: dict, rows, stems, specs: list[Metric], spaces, rel, dataset, label, out: Path) -> dict:
    """CSV and JSON (every space, full precision, with the difference to the JPEG input) and LaTeX (the first
    space, the paper layout) of a page."""
    names = [m.name for m in specs]
    base = f"tables/images-{_slug(dataset)}-{Path(rel).stem}"
    long = []
    for space in spaces:
        for r in rows:
            for stem in stems:
                vals = by.get((space, r["id"], stem))
                if vals is None:
                    continue
                ref = by.get((space, BASELINE, stem))
                rec = {"image": stem, "model": r["model"], "setting": r["setting"], "space": space}
                rec.update(zip(names, vals, strict=True))
                for m, v, w in zip(names, vals, ref or [None] * len(names), strict=True):
                    ok = isinstance(v, float) and isinstance(w, float)
                    rec[f"d_{m}_to_{BASELINE}"] = _num(v - w) if ok else None
                long.append(rec)
    frame = pd.DataFrame(long)
    buf = io.StringIO()
    frame.to_csv(buf, index=False, lineterminator="\n")
    _write_text(out / f"{base}.csv", buf.getvalue())
    head = json.dumps({"dataset": dataset, "degradation": label}, ensure_ascii=False)[:-1]
    lines = ",\n".join(json.dumps(r, ensure_ascii=False, allow_nan=False) for r in long)
    _write_text(out / f"{base}.json", f'{head}, "results": [\n{lines}\n]}}\n')  # one image per line
    _write_text(out / f"{base}.tex", _image_latex(by, rows, stems, specs, spaces[0], dataset, label))
    return {"csv": _relative(f"{base}.csv", rel), "json": _relative(f"{base}.json", rel),
            "latex": _relative(f"{base}.tex", rel)}


def _float(v):
    return None if v is None else float(v)  # "inf" from _num back to a float


def _image_latex(by: dict, rows, stems, specs: list[Metric], space, dataset, label) -> str:
    """Per-image table in the paper layout (one column per model, best and second marked among our models in
    each metric's direction), through the report's LaTeX renderer."""
    from .render import _latex
    from .tables import _fmt, _ranks

    heads = " / ".join(m.label for m in specs)
    t = Table(f"{dataset} {label}: per-image {heads} ({space})", "Image", [""] * len(rows), [r["label"] for r in rows])
    for stem in stems:
        styles = {}
        for i, m in enumerate(specs):
            vals = {r["id"]: _float(v[i]) for r in rows if r["kind"] == "ours"
                    and (v := by.get((space, r["id"], stem))) is not None and v[i] is not None}
            for k, style in _ranks(vals, m).items():
                styles[(k, i)] = style
        cells = []
        for r in rows:
            v = by.get((space, r["id"], stem))
            cells.append([Part(_fmt(_float(v[i]) if v else None, m.decimals), styles.get((r["id"], i), ""))
                          for i, m in enumerate(specs)])
        t.rows.append((stem, cells))
    caption = (f"Per-image {heads} on {dataset} {label} ({space}); best in bold, second underlined, among our "
               "models (the JPEG input is not ranked).")
    return _latex([t], caption, [])


# ------------------------------------------------------------------------------------ HTML


def _page_html(title: str, data: dict, script: str, rel: str, heading: str) -> str:
    """A page shell: the data inline, the shared stylesheet and scripts beside it (relative, so the site
    works from file:// and under any path of a static host)."""
    e = html.escape
    assets = _relative("assets", rel)
    return "\n".join([
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # No network: every resource is a relative file of the site; the policy makes that a browser rule.
        '<meta http-equiv="Content-Security-Policy" content="default-src \'self\' data: blob:; '
        "img-src 'self' data: blob:; style-src 'self' 'unsafe-inline'; script-src 'self'; connect-src 'none'\">",
        f"<title>{e(title)}</title>",
        f'<link rel="stylesheet" href="{assets}/site.css">',
        f'<script src="{assets}/common.js" defer></script>',
        f'<script src="{assets}/{script}" defer></script>',
        "</head><body>",
        '<a class="skip" href="#main">Skip to the table</a>',
        f'<header class="top"><h1>{e(heading)}</h1><div class="top-actions" id="top-actions"></div></header>',
        '<noscript><p class="note">This page draws its tables with JavaScript; the numbers are also in the '
        "CSV, JSON and LaTeX files under tables/.</p></noscript>",
        '<main id="main" tabindex="-1"></main>',
        _json_script(data, "site-data"),
        "</body></html>",
        "",
    ])


def _write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8"))


def _exports(run_dirs: list[str], views: list[str], out: Path, *, published: bool, published_path) -> None:
    from .render import render

    for space in views:
        for fmt, ext in (("csv", "csv"), ("json", "json"), ("latex", "tex")):
            text = render(run_dirs, fmt, space=space, published=published, published_path=published_path)
            _write_text(out / "tables" / f"leaderboard-{_slug(space)}.{ext}", text)


def _copy_assets(out: Path) -> None:
    src = resources.files("cirbench.report") / "assets"
    for name in ASSETS:
        _write_text(out / "assets" / name, (src / name).read_text(encoding="utf-8"))


def _prepare(out: Path) -> Path:
    """A fresh temporary folder beside ``out``; refuses an ``out`` that holds something other than a site."""
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not (out / MARKER).is_file())):
        raise ConfigError(f"{out}: exists and is not a cirbench site; choose an empty or new --out folder")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.building-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    return tmp


def _swap(tmp: Path, out: Path) -> None:
    old = out.parent / f".{out.name}.old-{os.getpid()}"
    if out.exists():
        out.rename(old)
    tmp.rename(out)
    if old.exists():
        shutil.rmtree(old)


def build_site(
    run_dirs: str | os.PathLike | Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    *,
    published: bool = False,
    published_path: str | os.PathLike | None = None,
    reference: str = BASELINE,
    crop: int = 256,
    title: str = "cirbench leaderboard",
) -> SiteSummary:
    """Write the site of ``run_dirs`` into ``out_dir`` (replacing a site built there before).

    ``crop``: side of the square window (the most textured one of the ground truth) that the compare widget
    shows of every image; 0 keeps whole images. ``reference``: the model the bootstrap CIs are taken against.
    """
    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    runs = [str(d) for d in run_dirs]
    if crop < 0:
        raise ConfigError(f"--crop {crop}: must be 0 (whole images) or a positive size in pixels")
    df, infos = _load(runs)
    specs = list(metric_specs(runs, df).values())  # each metric's direction, decimals and label, from run.json
    board = _leaderboard(df, infos, specs, published=published, published_path=published_path,
                         reference=reference)
    out = Path(out_dir)
    tmp = _prepare(out)
    try:
        _copy_assets(tmp)
        _exports(runs, [s["name"] for s in board["spaces"]], tmp, published=published,
                 published_path=published_path)
        images = _Images(tmp, runs, crop)
        pages = _image_pages(df, board, specs, images, tmp, title)
        board["title"] = title
        board["saved_images"] = images.count > 0
        _write_text(tmp / "index.html", _page_html(title, board, "leaderboard.js", "index.html", title))
        _write_text(tmp / MARKER, "built by cirbench site; this folder is replaced by the next build\n")
        files = [p for p in tmp.rglob("*") if p.is_file()]
        size = sum(p.stat().st_size for p in files)
        _swap(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SiteSummary(out=out, pages=1 + len(pages), files=len(files), bytes=size, images=images.count)
