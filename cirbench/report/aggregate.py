"""Means and paired comparisons from records: the numbers every table, plot and regression check shows.

Metric spaces (:data:`cirbench.metrics.SPACES`): a luma space (``y``, ``y-float``, ``y-full``) selects its own
records and those of space "gray": a gray dataset's image is its own luma, so both answer "PSNR on the
luminance". ``"rgb"`` and ``"gray"`` select just that space; ``None`` keeps every space.

Which fields of a record are metrics, and how each is read (direction, decimals, unit), comes from the specs
the runs wrote into run.json (:func:`metric_specs`); runs older than those specs recorded the default metrics.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError
from ..metrics import DEFAULT_METRICS, LUMA_SPACES, REGISTRY, Metric, get_metric
from ..records import GROUP, KEY, RECORDS_FILE, read_records, read_run_info, recorded_metrics
from .stats import compare_paired

__all__ = ["BASELINE", "metric_specs", "pick_metrics", "select_space", "aggregate", "load", "comparisons",
           "provenance", "ci_columns"]

BASELINE = "jpeg"  # the unrestored JPEG input: shown, never ranked


def ci_columns(metric: str) -> tuple[str, ...]:
    return ("reference", "n_pairs", f"diff_{metric}", "ci_lo", "ci_hi", "p_sign")


def metric_specs(run_dirs, df: pd.DataFrame | None = None) -> dict[str, Metric]:
    """The metrics the runs recorded, name -> spec, in the order first recorded: the specs in run.json (a user
    metric's direction travels with its records), else the registry's for a registered name. With ``df``,
    only metrics that are columns of it."""
    specs: dict[str, Metric] = {}
    for d in run_dirs:
        for name, info in recorded_metrics(read_run_info(d), DEFAULT_METRICS).items():
            if name in specs:
                continue
            if info:
                specs[name] = Metric.from_info(name, info)
            elif name in REGISTRY:
                specs[name] = get_metric(name, allow_code=False)
            else:
                specs[name] = Metric(name=name, source="unknown")
    if df is not None:
        specs = {k: v for k, v in specs.items() if k in df.columns}
    return specs


def pick_metrics(specs: dict[str, Metric], names: Sequence[str] | None) -> list[Metric]:
    """The specs of ``names`` (all recorded ones for None), each checked: an unknown name names what exists."""
    if not names:
        return list(specs.values())
    bad = [n for n in names if n not in specs]
    if bad:
        raise ConfigError(f"metrics {', '.join(bad)} are not in the records; they hold {', '.join(specs) or 'none'}")
    return [specs[n] for n in names]


def select_space(df: pd.DataFrame, space: str | None) -> pd.DataFrame:
    """Rows of a metric space; a luma space also takes ``gray`` rows (a gray image is its own luma)."""
    if space is None:
        return df
    spaces = (space, "gray") if space in LUMA_SPACES else (space,)
    return df[df["space"].isin(spaces)]


def aggregate(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Means of ``metrics`` per GROUP with ``n_images``; ``seconds_per_mp`` (total seconds / total megapixels)
    and ``qf_err`` (mean |qf_pred - qf|) where the records carry what they need, else NaN."""
    df = df.copy()
    metrics = list(metrics)
    for m in metrics:  # a metric some records lack (another space's) is NaN there
        df[m] = pd.to_numeric(df[m], errors="coerce") if m in df else np.nan
    has_size = {"seconds", "height", "width"} <= set(df.columns)
    df["_mp"] = df["height"] * df["width"] / 1e6 if has_size else np.nan
    df["_sec"] = df["seconds"] if has_size else np.nan
    df["_qf_err"] = (pd.to_numeric(df["qf_pred"]) - df["qf"]).abs() if "qf_pred" in df else np.nan
    g = df.groupby(list(GROUP), sort=False, dropna=False)
    out = g[metrics].mean()
    out.insert(0, "n_images", g.size())
    sec, mp = g["_sec"].sum(min_count=1), g["_mp"].sum(min_count=1)
    out["seconds_per_mp"] = (sec / mp).where(mp > 0)
    out["qf_err"] = g["_qf_err"].mean()
    return out.reset_index()[[*GROUP, "n_images", *metrics, "seconds_per_mp", "qf_err"]]


_LAST_READ: tuple = ((), None)  # (the files' identities, their records): a site renders many views of the same runs


def _read(run_dirs) -> pd.DataFrame:
    """read_records, reusing the last result while the records files are the same files (path, size and
    modification time: a run appends and a merge replaces, so both change them); parsing the JSON lines is
    what takes seconds."""
    global _LAST_READ
    key = []
    for d in [run_dirs] if isinstance(run_dirs, (str, Path)) else run_dirs:
        p = Path(d) if Path(d).is_file() else Path(d) / RECORDS_FILE
        try:
            st = p.stat()
            key.append((str(p.resolve()), st.st_size, st.st_mtime_ns, st.st_ino))
        except OSError:
            key.append((str(p), None))
    key = tuple(key)
    if _LAST_READ[0] != key or _LAST_READ[1] is None:
        _LAST_READ = (key, read_records(run_dirs))
    return _LAST_READ[1]


def load(
    run_dirs,
    *,
    space: str | None = "y",
    datasets: Sequence[str] | None = None,
    qfs: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Records of the runs in one metric space (None: all), filtered; a key present in several runs keeps
    the last."""
    df = _read(run_dirs)
    if df.empty:
        return df.copy()
    df = df.drop_duplicates(subset=list(KEY), keep="last")  # a new frame: the cached one is never changed
    df = select_space(df, space)
    if datasets:
        df = df[df["dataset"].isin(datasets)]
    if qfs:
        df = df[df["qf"].isin([int(q) for q in qfs])]
    return df


def comparisons(df: pd.DataFrame, metric: Metric, reference: str = BASELINE) -> pd.DataFrame:
    """Paired per-image difference (model - reference) of ``metric`` for every (model, setting) per column.

    Pairs on (dataset, image, degradation, qf, space). The reference's "single" setting is used when it
    has several. Returns the group keys plus :func:`ci_columns` (``p_sign``: the two-sided sign test; which
    sign is better is the metric's ``higher_is_better``, which the tables state).
    """
    name = metric.name
    cols = ci_columns(name)
    pair = ["dataset", "image", "degradation", "qf", "space"]
    ref = df[df["model"] == reference]
    if ref.empty:
        return pd.DataFrame(columns=[*GROUP, *cols])
    if (ref["setting"] == "single").any():
        ref = ref[ref["setting"] == "single"]
    ref = ref[[*pair, name]].rename(columns={name: "_ref"})
    merged = df[df["model"] != reference].merge(ref, on=pair, how="inner")
    rows = []
    for key, grp in merged.groupby(list(GROUP), sort=False):
        c = compare_paired(pd.to_numeric(grp[name]).to_numpy(float) - grp["_ref"].to_numpy(float))
        rows.append((*key, reference, c.n, c.mean, c.lo, c.hi, c.p_sign))
    return pd.DataFrame(rows, columns=[*GROUP, *cols])


def provenance(run_dirs) -> dict:
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
    skipped: dict = {}
    images: dict = {}
    for i in infos:
        for name, m in (i.get("models") or {}).items():
            models.setdefault(name, {}).update({k: v for k, v in (m or {}).items() if v is not None})
        for ds, files in (i.get("skipped_images") or {}).items():
            skipped.setdefault(ds, {}).update(files)
        for ds, d in (i.get("datasets") or {}).items():
            images[ds] = max(images.get(ds, 0), (d or {}).get("images") or 0)
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
        "skipped_images": skipped,
        "dataset_images": images,
        "runs": [str(d) for d in run_dirs],
    }


