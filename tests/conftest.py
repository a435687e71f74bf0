"""Shared test set-up: one torch thread (the machine is shared) and the evaluation data root.

``$CIRBENCH_DATA`` names the standard datasets; when it is unset, a ``shared/datasets`` folder beside the
repository is used, else the data root ``cirbench datasets fetch`` fills by default (so fetching and then
running the tests needs nothing set). Only tests that need a standard dataset read it (through the
``data_root`` fixture), and they skip with one reason when a set is absent: the reason names the
``cirbench datasets fetch`` command that fills the data root as the tests read it.
"""

import os
import tempfile
from pathlib import Path

import pytest

from cirbench.eval.datasets import data_root as _default_data_root

_SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
if not os.environ.get("CIRBENCH_DATA"):
    for _root in (_SHARED_DATA, _default_data_root()):
        if _root.is_dir():
            os.environ["CIRBENCH_DATA"] = str(_root)  # set before test modules read it at import
            break
# Tests never download (the fetch tests serve their files from 127.0.0.1 and lift this themselves) and never
# touch the user's cache.
os.environ["CIRBENCH_OFFLINE"] = "1"
os.environ["CIRBENCH_CACHE"] = tempfile.mkdtemp(prefix="cirbench-test-cache-")


@pytest.fixture(autouse=True, scope="session")
def _single_thread():
    import torch

    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def data_root():
    """The standard datasets' root; tests that need them skip when a set is absent."""
    from helpers import standard_data_problem

    root = os.environ.get("CIRBENCH_DATA")
    problem = standard_data_problem(root)
    if problem:
        pytest.skip(problem)
    return Path(root)


@pytest.fixture
def http_server(tmp_path):
    """A local HTTP server on 127.0.0.1 serving ``root`` (a folder the test fills); a path starting with
    ``/truncated/`` sends the named file's full Content-Length but only half its bytes, then closes; one starting
    with ``/nolength/`` sends half the bytes with no Content-Length and closes (a body that looks whole)."""
    import http.server
    import threading

    root = tmp_path / "served"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **k):
            super().__init__(*a, directory=str(root), **k)

        def log_message(self, *args):  # keep test output clean
            pass

        def do_GET(self):  # noqa: N802 - http.server's naming
            if self.path.startswith("/truncated/"):
                data = (root / self.path[len("/truncated/"):]).read_bytes()
                self.send_response(200)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            if self.path.startswith("/nolength/"):
                data = (root / self.path[len("/nolength/"):]).read_bytes()
                self.send_response(200)
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                self.close_connection = True
                return
            super().do_GET()

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.root = root
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def closed_url():
    """``http://127.0.0.1:PORT`` with nothing listening (the port was bound, then released): a host that cannot
    be reached, without any network."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def no_dns(monkeypatch):
    """Host names other than 127.0.0.1 and localhost do not resolve, as on a machine without a network."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host not in ("127.0.0.1", "localhost"):
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)


@pytest.fixture
def full_disk(monkeypatch):
    """``fill(folder)``: from then on, as on a full disk, nothing can be created or written under ``folder``
    (ENOSPC from every open for writing, os.open with a write flag, and mkdir); reads still work."""
    import builtins
    import errno
    import io

    full: list[Path] = []

    def blocked(path) -> bool:
        try:
            p = Path(os.fsdecode(path)).absolute()
        except TypeError:  # a file descriptor
            return False
        return any(p == f or f in p.parents for f in full)

    def enospc(path):
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    real_open, real_os_open, real_mkdir = builtins.open, os.open, os.mkdir

    def fake_open(file, mode="r", *args, **kwargs):
        if isinstance(file, (str, bytes, os.PathLike)) and any(c in mode for c in "wax+") and blocked(file):
            raise enospc(file)
        return real_open(file, mode, *args, **kwargs)

    def fake_os_open(path, flags, *args, **kwargs):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT) and blocked(path):
            raise enospc(path)
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if blocked(path) and not os.path.isdir(path):
            raise enospc(path)
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)
    return lambda folder: full.append(Path(folder).absolute())
