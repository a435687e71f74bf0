"""The preflight's cache (issue 23): good verdicts only, keyed on the file's content, so neither a file rewritten
in place nor a refusal that was fixed is judged by a stale verdict."""

from __future__ import annotations

import builtins
import errno
import os

import numpy as np
import pytest
from PIL import Image

from cirbench.eval.preflight import check_files


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRBENCH_CACHE", str(tmp_path / "cache"))


def _png(path, seed=0):
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(path)


def test_a_file_rewritten_with_the_same_size_and_mtime_is_checked_again(tmp_path):
    p = tmp_path / "a.png"
    _png(p)
    assert check_files([p])[p].ok
    st = p.stat()
    data = bytearray(p.read_bytes())
    data[len(data) // 2:] = bytes(len(data) - len(data) // 2)  # same size, the second half zeroed
    p.write_bytes(bytes(data))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))  # and the same modification time
    assert (p.stat().st_size, p.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    v = check_files([p])[p]
    assert not v.ok and "corrupt or truncated" in v.error  # caught here, not midway through a run


def test_a_refusal_is_not_cached_and_a_permission_error_says_so(tmp_path, monkeypatch):
    p = tmp_path / "a.png"
    _png(p)
    real = builtins.open

    def denied(file, *args, **kwargs):  # root reads any file: the permission error is simulated
        if str(file) == str(p):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denied)
    v = check_files([p])[p]
    assert not v.ok and "permission denied" in v.error and "corrupt" not in v.error
    monkeypatch.setattr(builtins, "open", real)  # chmod 644
    assert check_files([p])[p].ok


def test_warnings_cached_by_content_name_their_own_file(tmp_path):
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(np.dstack([np.zeros((16, 16, 3), np.uint8), np.full((16, 16), 9, np.uint8)])).save(a)
    b.write_bytes(a.read_bytes())  # the same bytes under another name: one cached verdict
    first = check_files([a])[a]
    second = check_files([b])[b]
    assert first.warnings == [f"{a}: alpha channel dropped"] and second.warnings == [f"{b}: alpha channel dropped"]
    assert first.sha256 == second.sha256
