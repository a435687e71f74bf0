"""Published results from the literature, mapped onto the records' vocabulary.

The CSV has ``source,dataset,degradation,method,per_qf_model,space`` and one column per metric (named as the
metric: the literature's rows have ``psnr,ssim,psnrb``). Degradations are
written ``jpeg:10`` (single JPEG at QF 10) or ``double:30,10,shift4`` (QF 30 then QF 10, the second
compression on a grid shifted by 4, 4 pixels, as in FBCNN's non-aligned double-JPEG table); they map to
the records' ``degradation`` and ``qf`` ("jpeg", 10) and ("double-q30-s4x4", 10). The first QF of a
``double:`` entry is taken to be the first compression.

Where the CSV is looked for, first match wins: the ``CIRBENCH_PUBLISHED`` environment variable,
``cirbench/data/published/literature.csv`` as package data (when it is packaged), then
``<repo>/results/published/literature.csv``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..jpeg import Degradation

__all__ = ["default_path", "load_published"]

_REPO_CSV = Path(__file__).resolve().parents[2] / "results" / "published" / "literature.csv"
COLUMNS = ("source", "model", "setting", "dataset", "degradation", "qf", "space", "per_qf_model")
_RAW_COLUMNS = ("source", "dataset", "degradation", "method", "per_qf_model", "space")  # then the metrics


def default_path() -> Path | None:
    """The literature CSV to use when none is named, or None if there is none."""
    env = os.environ.get("CIRBENCH_PUBLISHED")
    if env:
        return Path(env)
    try:
        packaged = resources.files("cirbench") / "data" / "published" / "literature.csv"
        if packaged.is_file():
            return Path(str(packaged))
    except (ModuleNotFoundError, FileNotFoundError):
        pass
    return _REPO_CSV if _REPO_CSV.is_file() else None


def load_published(paths: str | os.PathLike | Iterable[str | os.PathLike] | None = None):
    """Published rows as a DataFrame with the record columns (``model`` = the paper's method name,
    ``setting`` = "published") plus ``source``, ``per_qf_model`` and one column per metric. Missing values
    are NaN."""
    import pandas as pd

    if paths is None:
        found = default_path()
        if found is None:
            raise ConfigError(
                "no published results found: set CIRBENCH_PUBLISHED or add results/published/literature.csv"
            )
        paths = [found]
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = [
        pd.read_csv(p, dtype={"per_qf_model": str}, keep_default_na=False, na_values=[""]) for p in paths
    ]
    raw = pd.concat(frames, ignore_index=True)
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
        }
    )
    metrics = [c for c in raw.columns if c not in _RAW_COLUMNS]
    for metric in metrics:
        out[metric] = pd.to_numeric(raw[metric], errors="coerce")
    return out[[*COLUMNS, *metrics]]
