"""Writing and hashing files: the one atomic writer, the one sha256 helper and the one JSON codec.

JSON has no infinity or NaN, yet a perfect image has an infinite PSNR: the codec writes non-finite floats
as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` and reads them back as floats.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write", "sha256_file", "cache_dir", "to_json", "from_json", "dumps", "loads"]


def _umask_mode() -> int:
    """The mode a plain open() would give a new file (mkstemp's temp files are 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write(path: str | os.PathLike, data: bytes | str | Callable[[BinaryIO], object]) -> Path:
    """Write ``path`` whole or not at all: the data (bytes, text as UTF-8, or ``fn(fh)`` filling a binary
    file) go to a temp file beside it, which is fsynced and renamed over ``path``.

    A reader, or a process killed mid-write, never sees a partial file; on any error the temp file is
    deleted and the previous ``path`` is left as it was. The result has the permissions a plain ``open()``
    would give it. ``fh.name`` is the temp path (for writers that want a file name).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is an atomic rename on one filesystem; ".<name>.*.tmp" marks stale temps.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        with open(tmp, "wb") as fh:
            if callable(data):
                data(fh)
            else:
                fh.write(data.encode("utf-8") if isinstance(data, str) else data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, _umask_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, streamed (large checkpoints never sit in memory)."""
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


def cache_dir() -> Path:
    """``$CIRBENCH_CACHE``, else ``$XDG_CACHE_HOME/cirbench``, else ``~/.cache/cirbench``."""
    env = os.environ.get("CIRBENCH_CACHE")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cirbench"


def to_json(value: Any) -> Any:
    """``value`` with non-finite floats (and numpy scalars) made JSON-safe, recursively."""
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(v) for v in value]
    if hasattr(value, "item") and callable(value.item) and getattr(value, "ndim", None) == 0:
        value = value.item()  # numpy / torch scalars
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # "inf", "-inf", "nan"
    return value


def from_json(value: Any) -> Any:
    """Inverse of :func:`to_json` for one value (``"inf"`` -> inf); other values pass through."""
    if isinstance(value, str) and value in ("inf", "-inf", "nan"):
        return float(value)
    return value


def dumps(obj: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`to_json` of ``obj`` (strict JSON: no bare Infinity/NaN)."""
    return json.dumps(to_json(obj), allow_nan=False, **kwargs)


def loads(text: str | bytes) -> Any:
    """``json.loads`` with :func:`from_json` applied to every value of every object."""
    return json.loads(text, object_hook=lambda d: {k: from_json(v) for k, v in d.items()})
