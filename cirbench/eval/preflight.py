"""Preflight: before any model runs, every image of the selected datasets (and every released output an
``outputs:`` model will read) is opened and decoded once and checked against the read policy, so all
problems are reported together before the expensive part.

Verdicts are cached by file size and modification time (``$CIRBENCH_CACHE/preflight.json``): a protocol
rerun does not decode its images twice. Warnings (alpha dropped, palette expanded, EXIF orientation) are
collected once per file.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageError
from ..files import atomic_write, cache_dir, dumps, loads
from ..images import read_image

__all__ = ["Verdict", "check_files"]

_CACHE_FILE = "preflight.json"
_cache_lock = threading.Lock()


@dataclass
class Verdict:
    """One file's preflight result: ``error`` (the message names the file and the fix) or its shape."""

    path: Path
    error: str | None = None
    shape: tuple[int, ...] = ()
    warnings: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.error is None


def _key(path: Path) -> str | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"


def _check(path: Path) -> Verdict:
    notes: list[str] = []
    try:
        shape = read_image(path, notes=notes).shape
    except ImageError as exc:
        return Verdict(path, str(exc), warnings=notes)
    return Verdict(path, None, tuple(shape), notes)


def _load_cache() -> dict:
    p = cache_dir() / _CACHE_FILE
    try:
        return loads(p.read_text()) if p.is_file() else {}
    except (ValueError, OSError):
        return {}  # a damaged cache is only slower


def check_files(paths: Iterable[Path], *, workers: int = 2) -> dict[Path, Verdict]:
    """Decode each distinct file once (cached verdicts skip it); returns {path: Verdict}."""
    paths = list(dict.fromkeys(Path(p) for p in paths))
    cache = _load_cache()
    out: dict[Path, Verdict] = {}
    todo = []
    for p in paths:
        k = _key(p)
        hit = cache.get(k) if k else None
        if hit is not None:
            out[p] = Verdict(p, hit["error"], tuple(hit["shape"]), hit["warnings"])
        else:
            todo.append(p)
    if todo:
        # Pillow decodes outside the GIL: threads use the cores the model is not using yet.
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for v in pool.map(_check, todo):
                out[v.path] = v
        fresh = {k: {"error": v.error, "shape": list(v.shape), "warnings": v.warnings}
                 for p in todo if (v := out[p]) and (k := _key(p)) and "not found" not in (v.error or "")}
        with _cache_lock:
            try:
                merged = {**_load_cache(), **fresh}
                atomic_write(cache_dir() / _CACHE_FILE, dumps(merged))
            except OSError:
                pass  # a read-only cache only costs a second decode next time
    return out


def expected_output_shape(gt_shape: tuple[int, ...], shift: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) an output must have: the ground truth's, cropped for shifted double JPEG."""
    return gt_shape[0] - shift[0], gt_shape[1] - shift[1]


def output_problem(path: Path, verdict: Verdict, want_hw: tuple[int, int], gray: bool) -> str | None:
    """Why a released output cannot be scored (None when it can)."""
    if not verdict.ok:
        if not path.exists():
            return f"{path}: output not found; add the file"  # the summary line names --skip-invalid once
        return verdict.error
    if tuple(verdict.shape[:2]) != tuple(want_hw):
        h, w = verdict.shape[:2]
        return f"{path}: {w}x{h} but the input is {want_hw[1]}x{want_hw[0]}; outputs must have the input's size"
    if not gray and len(verdict.shape) == 2:
        return f"{path}: a gray output for a colour image; save the restored colour image"
    return None

