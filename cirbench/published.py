"""Published results from the literature, mapped onto the records' vocabulary.

The CSV has ``source,dataset,degradation,method,per_qf_model,space,psnr,ssim,psnrb``. Degradations are
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
import re
from collections.abc import Iterable
from importlib import resources
from pathlib import Path

__all__ = ["default_path", "parse_degradation", "load_published"]

_REPO_CSV = Path(__file__).resolve().parents[1] / "results" / "published" / "literature.csv"
COLUMNS = (
    "source",
    "model",
    "setting",
    "dataset",
    "degradation",
    "qf",
    "space",
    "per_qf_model",
    "psnr",
    "ssim",
    "psnrb",
)


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


def parse_degradation(text: str) -> tuple[str, int]:
    """``jpeg:10`` -> ("jpeg", 10); ``double:30,10,shift4`` -> ("double-q30-s4x4", 10)."""
    text = text.strip()
    m = re.fullmatch(r"jpeg:(\d+)", text)
    if m:
        return "jpeg", int(m[1])
    m = re.fullmatch(r"double:(\d+),(\d+)(?:,shift(\d+))?", text)
    if m:
        shift = int(m[3] or 0)
        return f"double-q{int(m[1])}-s{shift}x{shift}", int(m[2])
    raise ValueError(f"unknown published degradation {text!r}")


def load_published(paths: str | os.PathLike | Iterable[str | os.PathLike] | None = None):
    """Published rows as a DataFrame with the record columns (``model`` = the paper's method name,
    ``setting`` = "published") plus ``source`` and ``per_qf_model``. Missing metrics are NaN."""
    import pandas as pd

    if paths is None:
        found = default_path()
        if found is None:
            raise FileNotFoundError(
                "no published results found: set CIRBENCH_PUBLISHED or add results/published/literature.csv"
            )
        paths = [found]
    elif isinstance(paths, (str, os.PathLike)):
        paths = [paths]
    frames = [
        pd.read_csv(p, dtype={"per_qf_model": str}, keep_default_na=False, na_values=[""]) for p in paths
    ]
    raw = pd.concat(frames, ignore_index=True)
    parsed = [parse_degradation(d) for d in raw["degradation"]]
    out = pd.DataFrame(
        {
            "source": raw["source"].astype(str),
            "model": raw["method"].astype(str),
            "setting": "published",
            "dataset": raw["dataset"].astype(str),
            "degradation": [p[0] for p in parsed],
            "qf": [p[1] for p in parsed],
            "space": raw["space"].astype(str).str.lower(),
            "per_qf_model": raw["per_qf_model"].fillna("").astype(str),
        }
    )
    for metric in ("psnr", "ssim", "psnrb"):
        out[metric] = pd.to_numeric(raw[metric], errors="coerce")
    return out[list(COLUMNS)]
