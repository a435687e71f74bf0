"""Preflight: before any model runs, every image of the selected datasets (and every released output an
``outputs:`` model will read) is opened and decoded once and checked against the read policy, so all
problems are reported together before the expensive part.

Each file is hashed (sha256, streamed: far cheaper than a decode) and good verdicts are cached by that
content hash (``$CIRBENCH_CACHE/preflight.json``): a protocol rerun does not decode its images twice, a file
rewritten in place (even with the same size and modification time) is decoded again, and a refusal is never
cached, so a file that was fixed (e.g. made readable) is checked afresh. The hash is also what a standard
set's file is compared with its packaged manifest by. Warnings (alpha dropped, palette expanded, EXIF
orientation) are collected once per file.
"""

from __future__ import annotations

import errno
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ImageError
from ..files import atomic_write, cache_dir, dumps, loads, sha256_file
from ..images import read_image

__all__ = ["Verdict", "check_files"]

_CACHE_FILE = "preflight.json"
_CACHE_VERSION = 2  # 1 keyed verdicts by path, size and mtime, and kept refusals
_cache_lock = threading.Lock()


@dataclass
class Verdict:
    """One file's preflight result: ``error`` (the message names the file and the fix) or its shape, and the
    sha256 of its bytes (None when it could not be read)."""

    path: Path
    error: str | None = None
    shape: tuple[int, ...] = ()
    warnings: list[str] = field(default_factory=list)
    sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def _digest(path: Path) -> tuple[str | None, str | None]:
    """(sha256, None), or (None, why the file cannot be read)."""
    try:
        return sha256_file(path), None
    except OSError:
        pass
    try:
        read_image(path)  # the reader's own words: not found, a dangling link, permission denied...
    except ImageError as exc:
        return None, str(exc)
    return None, f"{path}: cannot be read"


def _check(path: Path, digest: str) -> Verdict:
    notes: list[str] = []
    try:
        shape = read_image(path, notes=notes).shape
    except ImageError as exc:
        return Verdict(path, str(exc), warnings=notes, sha256=digest)
    except OSError as exc:  # e.g. EIO from a failing disk: said as such, and not cached
        why = "permission denied" if exc.errno in (errno.EACCES, errno.EPERM) else exc.strerror or str(exc)
        return Verdict(path, f"{path}: cannot be read ({why})", warnings=notes, sha256=digest)
    return Verdict(path, None, tuple(shape), notes, digest)


def _load_cache() -> dict:
    p = cache_dir() / _CACHE_FILE
    try:
        data = loads(p.read_text()) if p.is_file() else {}
    except (ValueError, OSError):
        return {}  # a damaged cache is only slower
    if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
        return {}  # an older layout (path-keyed verdicts, refusals kept) is dropped, not trusted
    return data.get("verdicts", {}) if isinstance(data.get("verdicts"), dict) else {}


def check_files(paths: Iterable[Path], *, workers: int = 2) -> dict[Path, Verdict]:
    """Hash each distinct file, and decode those whose content has no good verdict cached; returns
    {path: Verdict}."""
    paths = list(dict.fromkeys(Path(p) for p in paths))
    # Pillow decodes and hashlib hashes outside the GIL: threads use the cores the model is not using yet.
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        digests = dict(zip(paths, pool.map(_digest, paths), strict=True))
    cache = _load_cache()
    out: dict[Path, Verdict] = {}
    todo = []
    for p, (digest, why) in digests.items():
        hit = cache.get(digest) if digest else None
        if why is not None:
            out[p] = Verdict(p, why)
        elif isinstance(hit, dict) and "shape" in hit:
            # Warnings are cached without the file's name: the same bytes may lie under another name.
            out[p] = Verdict(p, None, tuple(hit["shape"]), [f"{p}: {w}" for w in hit.get("warnings", [])], digest)
        else:
            todo.append(p)
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for v in pool.map(lambda p: _check(p, digests[p][0]), todo):
                out[v.path] = v
        fresh = {v.sha256: {"shape": list(v.shape), "warnings": [w.removeprefix(f"{v.path}: ") for w in v.warnings]}
                 for p in todo if (v := out[p]).ok and v.sha256}
        if fresh:
            with _cache_lock:
                try:
                    merged = {**_load_cache(), **fresh}
                    atomic_write(cache_dir() / _CACHE_FILE, dumps({"version": _CACHE_VERSION, "verdicts": merged}))
                except OSError:
                    pass  # a read-only cache only costs a second decode next time
    return out


def expected_output_shape(gt_shape: tuple[int, ...], shift: tuple[int, int]) -> tuple[int, int]:
    """The (height, width) an output must have: the ground truth's, cropped for shifted double JPEG."""
    return gt_shape[0] - shift[0], gt_shape[1] - shift[1]


def output_problem(path: Path, verdict: Verdict, want_hw: tuple[int, int], gray: bool) -> str | None:
    """Why a released output cannot be scored (None when it can)."""
    if not verdict.ok:
        if not path.exists() and not path.is_symlink():
            return f"{path}: output not found; add the file"  # the summary line names --skip-invalid once
        return verdict.error
    if tuple(verdict.shape[:2]) != tuple(want_hw):
        h, w = verdict.shape[:2]
        return f"{path}: {w}x{h} but the input is {want_hw[1]}x{want_hw[0]}; outputs must have the input's size"
    if not gray and len(verdict.shape) == 2:
        return f"{path}: a gray output for a colour image; save the restored colour image"
    return None
