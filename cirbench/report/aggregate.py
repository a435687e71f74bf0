"""Means and paired comparisons from records: the numbers every table, plot and regression check shows.

Metric spaces (:data:`cirbench.metrics.SPACES`): a luma space (``y``, ``y-float``, ``y-full``) selects its own
records and those of space "gray": a gray dataset's image is its own luma, so both answer "PSNR on the
luminance". ``"rgb"`` and ``"gray"`` select just that space; ``None`` keeps every space.

Which fields of a record are metrics, and how each is read (direction, decimals, unit), comes from the specs
the runs wrote into run.json (:func:`metric_specs`); runs older than those specs recorded the default metrics.

No mean is silently wrong: a metric value that is missing, NaN or not a number makes its group's mean NaN
(never a mean over the others) and is named (:func:`missing_values`); :func:`annotate` gives each mean the
number of images it should cover (``n_expected``, from run.json) and a ``note`` when it covers fewer. One
model name run with other weights (or inference inputs) in two runs is shown as two rows, labelled with a
short digest (:func:`model_labels`), never deduplicated into one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import ConfigError, RunError
from ..jpeg import Degradation
from ..metrics import DEFAULT_METRICS, LUMA_SPACES, REGISTRY, Metric, get_metric
from ..records import GROUP, KEY, RECORDS_FILE, input_changes, read_records, read_run_info, recorded_metrics
from .stats import compare_paired

__all__ = ["BASELINE", "metric_specs", "pick_metrics", "select_space", "aggregate", "load", "comparisons",
           "provenance", "ci_columns", "numeric", "missing_values", "annotate", "model_labels"]

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


def numeric(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """``df`` with each metric column as floats: a value that is not a number (null, "abc") becomes NaN, which
    :func:`missing_values` names and :func:`aggregate` never averages over."""
    df = df.copy()
    for m in metrics:  # a metric some records lack (another space's) is NaN there
        df[m] = pd.to_numeric(df[m], errors="coerce").astype(float) if m in df else np.nan
    return df


def missing_values(df: pd.DataFrame, specs: dict[str, Metric]) -> dict[tuple, dict[str, list[str]]]:
    """{GROUP values: {metric: images}} for every record whose metric, which applies to its space, is missing,
    NaN or not a number: such a group has no mean (NaN), and the report names the images."""
    out: dict[tuple, dict[str, list[str]]] = {}
    if df.empty:
        return out
    for name, spec in specs.items():
        values = pd.to_numeric(df[name], errors="coerce") if name in df else pd.Series(np.nan, index=df.index)
        bad = df[values.isna() & df["space"].isin(spec.spaces)]
        for key, grp in bad.groupby(list(GROUP), sort=False, dropna=False):
            out.setdefault(tuple(key), {})[name] = sorted(map(str, grp["image"]))
    return out


def aggregate(df: pd.DataFrame, metrics: Sequence[str]) -> pd.DataFrame:
    """Means of ``metrics`` per GROUP with ``n_images``; ``seconds_per_mp`` (total seconds / total megapixels)
    and ``qf_err`` (mean |qf_pred - qf|) where the records carry what they need, else NaN. A group where some
    record lacks a metric's value (or holds NaN) has NaN for that mean, not the mean of the others."""
    metrics = list(metrics)
    df = numeric(df, metrics)
    has_size = {"seconds", "height", "width"} <= set(df.columns)
    df["_mp"] = df["height"] * df["width"] / 1e6 if has_size else np.nan
    df["_sec"] = df["seconds"] if has_size else np.nan
    df["_qf_err"] = (pd.to_numeric(df["qf_pred"]) - df["qf"]).abs() if "qf_pred" in df else np.nan
    g = df.groupby(list(GROUP), sort=False, dropna=False)
    size = g.size()
    out = g[metrics].mean().where(g[metrics].count().eq(size, axis=0))  # one value missing: no mean
    out.insert(0, "n_images", size)
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


def model_labels(run_dirs) -> dict[tuple[str, str], str]:
    """{(run folder, model name): label} for the models whose runs used other weights or inference inputs under
    one name (:func:`~cirbench.records.input_changes`): ``NAME @SHA8`` (the weights' short digest), or
    ``NAME @RUN`` (the run folder's name) when only the setting or padding differs. Models run alike everywhere
    keep their name (absent here)."""
    entries: dict[str, list[tuple[str, dict]]] = {}
    for d in run_dirs:
        for name, entry in (read_run_info(d).get("models") or {}).items():
            entries.setdefault(name, []).append((str(d), entry or {}))
    labels = {}
    for name, runs in entries.items():
        if not any(input_changes(a, b) for (_, a) in runs for (_, b) in runs):
            continue
        shas = {str((e.get("weights_sha256") or [""])[0]) for _, e in runs}
        for d, e in runs:
            sha = e.get("weights_sha256")
            labels[(d, name)] = f"{name} @{str(sha[0])[:8] if len(shas) > 1 and sha else Path(d).name}"
    return labels


def load(
    run_dirs,
    *,
    space: str | None = "y",
    datasets: Sequence[str] | None = None,
    qfs: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Records of the runs in one metric space (None: all), filtered. A model run with other weights (or
    inference inputs) in another run is relabelled per run (:func:`model_labels`); a key then present in
    several runs (a rerun of the same thing) keeps the last."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
    df = _read(run_dirs)
    if df.empty:
        return df.copy()
    for deg in set(df["degradation"]):
        try:
            Degradation.from_name(deg, 0)
        except ValueError:  # a hand-edited or foreign record: said, never a column nobody can label
            runs = sorted(set(df.loc[df["degradation"] == deg, "run"]))
            raise RunError(f"{runs[0]}/{RECORDS_FILE}: records of degradation {deg!r}, which cirbench does not write "
                           "('jpeg' or 'double-q<QF1>-s<dy>x<dx>'); delete them or restore the file") from None
    labels = model_labels(run_dirs)
    if labels:  # on a copy: the frame _read keeps is never changed
        df = df.assign(model=[labels.get((r, m), m) for r, m in zip(df["run"], df["model"], strict=True)])
    df = df.drop_duplicates(subset=list(KEY), keep="last")  # a new frame
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
        diff = pd.to_numeric(grp[name], errors="coerce") - pd.to_numeric(grp["_ref"], errors="coerce")
        if diff.isna().any():  # a missing value (named by the tables' notes) leaves no interval, never a smaller one
            rows.append((*key, reference, len(grp), np.nan, np.nan, np.nan, np.nan))
            continue
        c = compare_paired(diff.to_numpy(float))
        rows.append((*key, reference, c.n, c.mean, c.lo, c.hi, c.p_sign))
    return pd.DataFrame(rows, columns=[*GROUP, *cols])


def annotate(agg: pd.DataFrame, prov: dict, missing: dict[tuple, dict[str, list[str]]] | None = None) -> pd.DataFrame:
    """``agg`` with ``n_expected`` (the images a mean should cover: the dataset's gray or colour images as
    run.json announced them, files skipped as invalid left out; NA when run.json does not say) and ``note``
    ("" when the mean is whole): "3 of 5 images", files skipped as invalid, a dataset run.json does not list,
    a metric missing or not a number for some images (from :func:`missing_values`). ``_why`` is the note
    without the skipped files (which the tables say once per dataset)."""
    images, kinds = prov.get("dataset_images") or {}, prov.get("dataset_kinds") or {}
    skipped = prov.get("skipped_images") or {}
    expected, notes, whys = [], [], []
    for r in agg.to_dict("records"):
        n, ds = int(r["n_images"]), r["dataset"]
        why, want = [], None
        if ds in kinds:
            want = kinds[ds]["gray" if r["space"] == "gray" else "colour"]
        elif ds in images:
            want = images[ds] - len(skipped.get(ds, {}))
        elif images:  # run.json lists its datasets, and this is not one of them
            why.append(f"{n} of ? images ({ds} is not among the datasets run.json announces)")
        if want is not None and n < want:
            why.append(f"{n} of {want} images (an unfinished run: rerun it to complete)")
        for metric, names in (missing or {}).get(tuple(r[k] for k in GROUP), {}).items():
            shown = ", ".join(names[:3]) + (" ..." if len(names) > 3 else "")
            why.append(f"{metric} missing or not a number for {len(names)} image(s) ({shown}): no mean")
        skip = (f"{len(skipped[ds])} file(s) of {ds} skipped as invalid (reasons in run.json)"
                if skipped.get(ds) else "")
        expected.append(want)
        whys.append("; ".join(why))
        notes.append("; ".join([*why, skip] if skip else why))
    out = agg.copy()
    out.insert(list(out.columns).index("n_images") + 1, "n_expected", pd.array(expected, dtype="Int64"))
    out["note"], out["_why"] = notes, whys
    return out


def provenance(run_dirs) -> dict:
    """Provenance merged over runs: each field's distinct values, in run order."""
    run_dirs = [run_dirs] if isinstance(run_dirs, (str, os.PathLike)) else list(run_dirs)
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
    kinds: dict = {}
    labels = model_labels(run_dirs)
    for d, i in zip(run_dirs, infos, strict=True):
        for name, m in (i.get("models") or {}).items():
            label = labels.get((str(d), name), name)
            models.setdefault(label, {}).update({k: v for k, v in (m or {}).items() if v is not None})
        for ds, files in (i.get("skipped_images") or {}).items():
            skipped.setdefault(ds, {}).update(files)
        for ds, entry in (i.get("datasets") or {}).items():
            entry = entry if isinstance(entry, dict) else {}
            images[ds] = max(images.get(ds, 0), entry.get("images") or 0)
            if "gray_images" in entry and "colour_images" in entry:
                kinds[ds] = {"gray": entry["gray_images"], "colour": entry["colour_images"]}
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
        "dataset_kinds": kinds,
        "runs": [str(d) for d in run_dirs],
    }


