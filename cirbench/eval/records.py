"""Per-image result records: one JSON object per line, appended and synced as they are made.

The run directory holds ``records.jsonl`` (the results) and ``run.json`` (provenance). Every
report, plot and regression check is computed from these two files alone.

A record has the fields in ``FIELDS`` (and may carry extra ones, e.g. FBCNN's ``qf_pred``).
Records are keyed by ``KEY`` (one record per image, degradation, metric space, model setting);
a run that is restarted skips every key already present. A final line cut short by a crash is
ignored on read and truncated away before the next append, so nothing partial survives.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..files import dumps, from_json, loads

__all__ = ["FIELDS", "KEY", "GROUP", "RecordWriter", "iter_records", "read_records", "read_run_info",
           "output_image_path", "gt_image_path"]

RECORDS_FILE = "records.jsonl"
RUN_FILE = "run.json"
IMAGES_DIR = "images"  # ``cirbench run --save-images``: outputs and ground truths, as lossless PNG

FIELDS = (
    "model",  # model name as run (card name, or a user label)
    "setting",  # inference setting: "single", "ntire24", ... (never mixed in one mean)
    "dataset",
    "image",  # file name inside the dataset
    "degradation",  # "jpeg", or "double-q{QF1}-s{dy}x{dx}" for double JPEG
    "qf",  # the (last) JPEG quality factor
    "space",  # "y", "rgb" or "gray"
    "psnr",
    "ssim",
    "psnrb",
    "seconds",  # wall time of the model on this image (0 for the jpeg baseline)
    "height",
    "width",
    "sha256",  # of the compressed JPEG bytes the model saw
    "nonfinite",  # the model output held NaN or Inf (they are zeroed before rounding)
)
KEY = ("model", "setting", "dataset", "image", "degradation", "qf", "space")
GROUP = ("model", "setting", "dataset", "degradation", "qf", "space")


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_.+@" else "_" for c in str(text))


def output_image_path(run_dir: str | os.PathLike, model: str, setting: str, dataset: str, degradation: str,
                      qf: int, image: str) -> Path:
    """Where ``--save-images`` puts a model's output: ``images/MODEL[@SETTING]/DATASET/DEG-qQF/STEM.png``."""
    label = model if setting == "single" else f"{model}@{setting}"
    return (Path(run_dir) / IMAGES_DIR / _safe(label) / _safe(dataset) / f"{_safe(degradation)}-q{int(qf)}"
            / (Path(image).stem + ".png"))


def gt_image_path(run_dir: str | os.PathLike, dataset: str, degradation: str, image: str) -> Path:
    """The ground truth an output was scored against (cropped for shifted double JPEG)."""
    return Path(run_dir) / IMAGES_DIR / "_gt" / _safe(dataset) / _safe(degradation) / (Path(image).stem + ".png")


def _key(rec: dict) -> tuple:
    return tuple(rec[k] for k in KEY)


def iter_records(path: str | os.PathLike) -> Iterator[dict]:
    """Yield complete records of a records file; a torn final line is skipped."""
    path = Path(path)
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.exists():
        return
    with open(path, "rb") as fh:
        for raw in fh:
            if not raw.endswith(b"\n"):
                break  # the write of this line never finished
            try:
                rec = json.loads(raw)
            except json.JSONDecodeError:
                continue
            yield {k: from_json(v) for k, v in rec.items()}


def read_records(run_dirs: str | os.PathLike | Iterable[str | os.PathLike]):
    """All records of one or more run directories as a pandas DataFrame (one row per record)."""
    import pandas as pd

    if isinstance(run_dirs, (str, os.PathLike)):
        run_dirs = [run_dirs]
    rows = []
    for d in run_dirs:
        for rec in iter_records(d):
            rec.setdefault("run", str(d))
            rows.append(rec)
    return pd.DataFrame(rows, columns=None if rows else list(FIELDS))


def read_run_info(run_dir: str | os.PathLike) -> dict:
    """The provenance of a run (``run.json``), or {} if it has none yet."""
    p = Path(run_dir) / RUN_FILE
    return loads(p.read_text()) if p.exists() else {}


class RecordWriter:
    """Append-only record file that survives ``kill -9``: each batch is flushed and fsynced."""

    def __init__(self, run_dir: str | os.PathLike):
        self.path = Path(run_dir) / RECORDS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._repair()
        self.done = {_key(r) for r in iter_records(self.path)}
        self._fh = open(self.path, "a", encoding="utf-8")

    def _repair(self) -> None:
        # Cut a torn last line so the next append starts on a fresh line.
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            keep = data.rfind(b"\n") + 1
            with open(self.path, "r+b") as fh:
                fh.truncate(keep)
                fh.flush()
                os.fsync(fh.fileno())

    def has(self, **key) -> bool:
        return tuple(key[k] for k in KEY) in self.done

    def write(self, records: Iterable[dict]) -> None:
        """Append records whose key is not yet on disk, then flush and fsync."""
        lines, keys = [], set()
        for rec in records:
            if _key(rec) in self.done or _key(rec) in keys:
                continue  # already on disk (a resumed image whose batch was half written)
            missing = [f for f in FIELDS if f not in rec]
            if missing:
                raise ValueError(f"record lacks fields {missing}")
            lines.append(dumps(rec) + "\n")
            keys.add(_key(rec))
        self._fh.write("".join(lines))
        self._fh.flush()
        os.fsync(self._fh.fileno())
        self.done |= keys  # only once on disk: a batch refused half-way marks nothing done

    def close(self) -> None:
        self._fh.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
