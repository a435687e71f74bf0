"""The ground floor's file helpers: atomic writes under injected faults, the folder lock, the JSON codec,
downloads and safe extraction (the last two are exercised end to end in tests/zoo and tests/eval)."""

from __future__ import annotations

import errno
import math
import os
import signal
import subprocess
import sys
import time

import pytest

from cirbench import files
from cirbench.errors import FetchError, RunError, Unreachable
from cirbench.files import FolderLock, atomic_write, dumps, loads


def _enospc(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_a_fault_leaves_the_previous_file_intact_and_no_temp(tmp_path, monkeypatch, where):
    path = tmp_path / "report.md"
    path.write_text("previous\n")
    if where == "write":
        data = lambda fh: (fh.write(b"half"), _enospc())  # noqa: E731 - dies after writing part of the file
    else:
        data = "new\n"
        monkeypatch.setattr(files.os, where, _enospc)
    with pytest.raises(OSError, match="No space left"):
        atomic_write(path, data)
    monkeypatch.undo()
    assert path.read_text() == "previous\n" and [p.name for p in tmp_path.iterdir()] == ["report.md"]
    atomic_write(path, "new\n")  # the rerun completes
    assert path.read_text() == "new\n"


def test_json_codec_keeps_infinities_strict():
    text = dumps({"psnr": math.inf, "lo": -math.inf, "x": [math.nan, 1.5]})
    assert "Infinity" not in text and "NaN" not in text
    back = loads(text)
    assert back["psnr"] == math.inf and back["lo"] == -math.inf and math.isnan(back["x"][0]) and back["x"][1] == 1.5


def test_second_writer_is_refused_with_the_holder_named(tmp_path):
    with FolderLock(tmp_path, "run"):
        with pytest.raises(RunError, match=rf"another cirbench process is writing this folder \(pid {os.getpid()}"):
            with FolderLock(tmp_path, "run"):
                pass
    with FolderLock(tmp_path, "run"):  # released: the next one gets it
        pass


def test_a_killed_holder_s_lock_is_taken_over(tmp_path):
    code = ("import sys, time; from cirbench.files import FolderLock; "
            "l = FolderLock(sys.argv[1], 'run').__enter__(); print('held', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(RunError):
        with FolderLock(tmp_path, "run"):
            pass
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    start = time.perf_counter()
    with FolderLock(tmp_path, "run"):  # the kernel released the dead process's lock: taken over at once
        assert time.perf_counter() - start < 5


# --- downloads: every failure is one line that says what happened ------------------------------------------


def test_a_closed_port_is_an_unreachable_host(tmp_path, closed_url):
    with pytest.raises(Unreachable) as err:
        files.download(f"{closed_url}/w.pth", tmp_path / "w.pth")
    host = closed_url.removeprefix("http://")
    assert str(err.value) == (f"{closed_url}/w.pth: could not reach {host} (connection refused); nothing was kept; "
                              "check the network and retry")
    assert (err.value.host, err.value.why) == (host, "connection refused") and list(tmp_path.iterdir()) == []


def test_no_network_is_a_host_name_not_resolved(tmp_path, no_dns):
    """What an offline machine gets: urllib3's NameResolutionError, said in words, not cut mid-string."""
    with pytest.raises(Unreachable) as err:
        files.download("https://github.com/jiaxi-jiang/FBCNN/releases/download/v1.0/fbcnn_color.pth", tmp_path / "w")
    msg = str(err.value)
    assert "could not reach github.com (host name not resolved: no network, or a wrong host name)" in msg
    assert "\n" not in msg and "Caused by" not in msg and "HTTPSConnection" not in msg


def test_a_missing_file_says_what_the_server_answered(tmp_path, http_server):
    with pytest.raises(FetchError) as err:
        files.download(f"{http_server.url}/absent.pth", tmp_path / "w.pth")
    assert str(err.value) == (f"{http_server.url}/absent.pth: the server answered HTTP 404 File not found; nothing "
                              "was kept; check the URL")
    assert not isinstance(err.value, Unreachable)
    assert not files.url_exists(f"{http_server.url}/absent.pth")
    (http_server.root / "here.pth").write_bytes(b"x")
    assert files.url_exists(f"{http_server.url}/here.pth")
