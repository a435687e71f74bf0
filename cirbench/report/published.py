"""Published results from the literature, mapped onto the records' vocabulary.

A published CSV is wide or long. Wide (``literature.csv``): ``source,dataset,degradation,method,per_qf_model,space``
and one column per metric (named as the metric: the literature's rows have ``psnr,ssim,psnrb``). Long
(``perceptual.csv``): ``source,dataset,degradation,method,space,metric,value``, one number per row, with optional
``better`` ("higher"/"lower", checked against the metric's spec when the metric is registered) and
``per_qf_model``. Either may have a ``note`` column (how the source's numbers were made, where it differs from
cirbench's; reports print it beside the source). Long rows are gathered into one row per method and cell, so any
metric can have published rows, and reports place a number only beside our numbers of the same metric and space.

Degradations are written ``jpeg:10`` (single JPEG at QF 10) or ``double:30,10,shift4`` (QF 30 then QF 10, the
second compression on a grid shifted by 4, 4 pixels, as in FBCNN's non-aligned double-JPEG table); they map to
the records' ``degradation`` and ``qf`` ("jpeg", 10) and ("double-q30-s4x4", 10). The first QF of a
``double:`` entry is taken to be the first compression.

Which CSVs are read, first match wins: the ``CIRBENCH_PUBLISHED`` environment variable (files or folders,
separated by ``os.pathsep``), every CSV of ``cirbench/data/published/`` as package data (when it is packaged),
then every CSV of ``<repo>/results/published/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..jpeg import Degradation

__all__ = ["default_paths", "load_published"]

_REPO_DIR = Path(__file__).resolve().parents[2] / "results" / "published"
COLUMNS = ("source", "model", "setting", "dataset", "degradation", "qf", "space", "per_qf_model", "note")
_RAW_COLUMNS = ("source", "dataset", "degradation", "method", "per_qf_model", "space", "note")  # then the metrics
_LONG = ("metric", "value", "better")


def _csvs(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.csv")) if folder.is_dir() else []


def default_paths() -> list[Path]:
    """The published CSVs to use when none is named (none: an empty list)."""
    env = os.environ.get("CIRBENCH_PUBLISHED")
    if env:
        return [q for p in env.split(os.pathsep) if p for q in (_csvs(Path(p)) if Path(p).is_dir() else [Path(p)])]
    try:
        packaged = _csvs(Path(str(resources.files("cirbench") / "data" / "published")))
        if packaged:
            return packaged
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return _csvs(_REPO_DIR)


def _read(path: Path):
    """One CSV as wide rows (the raw columns, then one column per metric)."""
    import pandas as pd

    raw = pd.read_csv(path, dtype={"per_qf_model": str, "note": str}, keep_default_na=False, na_values=[""])
    if "per_qf_model" not in raw:
        raw["per_qf_model"] = ""
    if "note" not in raw:
        raw["note"] = ""
    raw["per_qf_model"] = raw["per_qf_model"].fillna("").astype(str)
    raw["note"] = raw["note"].fillna("").astype(str)
    if "metric" not in raw:
        return raw
    missing = [c for c in ("source", "dataset", "degradation", "method", "space", "metric", "value") if c not in raw]
    if missing:
        raise ConfigError(f"{path}: a long published CSV needs the columns {', '.join(missing)}")
    _check_direction(raw, path)
    key = list(_RAW_COLUMNS)
    twice = raw[raw.duplicated([*key, "metric"], keep=False)]
    if len(twice):
        r = twice.iloc[0]
        raise ConfigError(f"{path}: {r['method']} {r['dataset']} {r['degradation']} {r['space']} has two "
                          f"{r['metric']} values")
    values = pd.to_numeric(raw["value"], errors="coerce")
    wide = raw.assign(value=values).pivot(index=key, columns="metric", values="value")
    wide = wide[list(dict.fromkeys(raw["metric"]))]  # the file's metric order, not the alphabet's
    wide.columns.name = None
    order = list(dict.fromkeys(map(tuple, raw[key].itertuples(index=False))))  # the file's row order
    return wide.reindex(order).reset_index()


def _check_direction(raw, path: Path) -> None:
    """A ``better`` column that contradicts a registered metric's direction is an error (a mis-typed metric)."""
    if "better" not in raw:
        return
    from ..metrics import REGISTRY

    for i, (metric, better) in enumerate(zip(raw["metric"], raw["better"], strict=True), 2):
        if better not in ("higher", "lower"):
            raise ConfigError(f"{path} line {i}: better must be 'higher' or 'lower', got {better!r}")
        spec = REGISTRY.entries.get(str(metric).lower())
        if spec is not None and spec.higher_is_better != (better == "higher"):
            raise ConfigError(f"{path} line {i}: {metric} is {'higher' if spec.higher_is_better else 'lower'}-is-"
                              f"better in cirbench, the row says {better}")


def load_published(paths: str | os.PathLike | Iterable[str | os.PathLike] | None = None):
    """Published rows as a DataFrame with the record columns (``model`` = the paper's method name,
    ``setting`` = "published") plus ``source``, ``per_qf_model``, ``note`` and one column per metric. Missing
    values are NaN."""
    import pandas as pd

    if paths is None:
        paths = default_paths()
        if not paths:
            raise ConfigError(
                "no published results found: set CIRBENCH_PUBLISHED or add results/published/literature.csv"
            )
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    paths = [Path(p) for p in paths]
    raw = pd.concat([_read(p) for p in paths], ignore_index=True)
    try:
        parsed = [Degradation.from_published(d) for d in raw["degradation"]]
    except ValueError as exc:
        raise ConfigError(f"{', '.join(map(str, paths))}: {exc}") from None
    out = pd.DataFrame(
        {
            "source": raw["source"].astype(str),
            "model": raw["method"].astype(str),
            "setting": "published",
            "dataset": raw["dataset"].astype(str),
            "degradation": [d.name for d in parsed],
            "qf": [d.qf for d in parsed],
            "space": raw["space"].astype(str).str.lower(),
            "per_qf_model": raw["per_qf_model"].fillna("").astype(str),
            "note": raw["note"].fillna("").astype(str),
        }
    )
    metrics = [c for c in raw.columns if c not in (*_RAW_COLUMNS, *_LONG)]
    for metric in metrics:
        out[metric] = pd.to_numeric(raw[metric], errors="coerce")
    return out[[*COLUMNS, *metrics]]
