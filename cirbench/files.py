"""Writing, hashing and fetching files: the one atomic writer, sha256 helper, JSON codec, download (through
pooch: into place only after the hash matches) and safe archive extraction.

JSON has no infinity or NaN, yet a perfect image has an infinite PSNR: the codec writes non-finite floats
as the strings ``"inf"``, ``"-inf"`` and ``"nan"`` and reads them back as floats.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

__all__ = ["atomic_write", "sha256_file", "verified_sha256", "inside", "cache_dir", "to_json", "from_json", "dumps",
           "loads", "offline", "download", "url_exists", "unreachable", "safe_extract", "MAX_MEMBER_BYTES",
           "FolderLock"]


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


def inside(name: str) -> bool:
    """Whether ``name``, a path read from a data file (a card, a protocol, a manifest), stays inside the folder
    it is joined to: relative, without ``..`` or a backslash, and naming something."""
    if not name or "\\" in name or "\0" in name:
        return False
    p = Path(name)
    return not p.is_absolute() and ".." not in p.parts and p.parts not in ((), (".",))


_VERIFIED = "verified.json"
_verified_lock = threading.Lock()


def verified_sha256(path: str | os.PathLike) -> str:
    """sha256 of a large file that is checked again and again (weights): computed once per (path, size,
    mtime) and remembered in ``$CIRBENCH_CACHE/verified.json``; a file that changes is hashed again."""
    path = Path(path)
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    store = cache_dir() / _VERIFIED
    with _verified_lock:
        try:
            known = loads(store.read_text()) if store.is_file() else {}
        except (ValueError, OSError):
            known = {}  # a damaged record only costs a new hash
        if isinstance(known, dict) and isinstance(known.get(key), str):
            return known[key]
        digest = sha256_file(path)
        known = {k: v for k, v in (known if isinstance(known, dict) else {}).items()
                 if not k.startswith(f"{path.resolve()}|")}
        known[key] = digest
        try:
            atomic_write(store, dumps(known))
        except OSError:
            pass  # a read-only cache only costs a new hash next time
        return digest


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
    if isinstance(value, list):
        return [from_json(v) for v in value]
    return value


def dumps(obj: Any, **kwargs) -> str:
    """``json.dumps`` of :func:`to_json` of ``obj`` (strict JSON: no bare Infinity/NaN)."""
    return json.dumps(to_json(obj), allow_nan=False, **kwargs)


def loads(text: str | bytes) -> Any:
    """``json.loads`` with :func:`from_json` applied to every value of every object."""
    return json.loads(text, object_hook=lambda d: {k: from_json(v) for k, v in d.items()})


# --- downloads and archives -------------------------------------------------------------------------------


def offline() -> bool:
    """``$CIRBENCH_OFFLINE`` set to 1/true/yes: never download."""
    return os.environ.get("CIRBENCH_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def download(url: str, dest: str | os.PathLike, sha256: str | None = None, *, size: int | None = None) -> Path:
    """Download ``url`` to ``dest`` through pooch: the bytes go to a temporary file beside ``dest`` and are
    moved into place only when their sha256 (and size, when given) match; otherwise nothing is left behind.
    Returns ``dest``. A progress bar is shown on a terminal. Every failure is a one-line FetchError; a host
    that cannot be reached is an :class:`~cirbench.errors.Unreachable`, so callers can name the manual way."""
    import sys

    import pooch
    import requests

    from .errors import FetchError, Unreachable

    dest = Path(dest)
    pooch.get_logger().setLevel("WARNING")  # our own lines say what is fetched
    known = f"sha256:{sha256.lower()}" if sha256 else None
    try:
        pooch.retrieve(url, known_hash=known, fname=dest.name, path=dest.parent,
                       progressbar=sys.stderr.isatty())
    except ValueError as exc:  # pooch's hash mismatch; it has deleted the temporary file
        got = next(iter(_HEX64.findall(str(exc).replace(sha256 or "", ""))), "unknown")
        raise FetchError(f"{url}: sha256 mismatch, expected {sha256}, got {got}; nothing was kept "
                         "(the file at the URL changed, or the download was corrupted)") from None
    except requests.HTTPError as exc:
        answer = f"HTTP {exc.response.status_code} {exc.response.reason}".strip()
        raise FetchError(f"{url}: the server answered {answer}; nothing was kept; check the URL") from None
    except requests.RequestException as exc:
        host, why = unreachable(exc, url)
        if why:
            raise Unreachable(f"{url}: could not reach {host} ({why}); nothing was kept; check the network and "
                              "retry", host=host, why=why) from None
        raise FetchError(f"{url}: download failed ({_cut_off(exc)}); nothing was kept; retry") from None
    except OSError as exc:
        raise FetchError(f"{dest}: cannot write the download ({exc.strerror or exc}); nothing was kept; free space "
                         "or choose another folder") from None
    if size is not None and dest.stat().st_size != size:
        actual = dest.stat().st_size
        dest.unlink()
        raise FetchError(f"{url}: {actual} bytes, expected {size}; nothing was kept")
    return dest


def url_exists(url: str, *, timeout: float = 30) -> bool:
    """Whether ``url`` is there (a 2xx answer; only the headers are read). 404, 410 and 403 (what some object
    stores answer for a missing key) are False; a host that cannot be reached is an Unreachable."""
    import requests

    from .errors import FetchError, Unreachable

    try:
        with requests.get(url, stream=True, timeout=timeout) as answer:
            if answer.status_code in (403, 404, 410):
                return False
            answer.raise_for_status()
            return True
    except requests.HTTPError as exc:
        raise FetchError(f"{url}: the server answered HTTP {exc.response.status_code} {exc.response.reason}; check "
                         "the URL") from None
    except requests.RequestException as exc:
        host, why = unreachable(exc, url)
        if why:
            raise Unreachable(f"{url}: could not reach {host} ({why}); check the network and retry", host=host,
                              why=why) from None
        raise FetchError(f"{url}: no answer ({_cut_off(exc)}); retry") from None


def unreachable(exc: BaseException, url: str) -> tuple[str, str | None]:
    """``(host, why)`` when ``exc`` (requests', urllib3's or the socket's, however deeply wrapped) means the
    host of ``url`` could not be reached: its name did not resolve, the connection was refused or timed out;
    ``why`` is None for any other failure (the host answered)."""
    import socket
    import ssl
    from urllib.parse import urlsplit

    import requests
    import urllib3

    parts = urlsplit(url)
    host = parts.hostname or url
    if parts.port:
        host += f":{parts.port}"
    if not isinstance(exc, (requests.ConnectionError, requests.ConnectTimeout, ConnectionError, socket.gaierror,
                            TimeoutError)):
        return host, None
    # requests wraps urllib3's MaxRetryError, whose .reason wraps the socket's error: gather every link, then
    # name the most telling (urllib3's NewConnectionError is itself a timeout class, so the socket's error wins).
    chain, todo = [], [exc]
    while todo:
        e = todo.pop()
        if any(e is c for c in chain):
            continue
        chain.append(e)
        todo += [x for x in (e.__cause__, e.__context__, getattr(e, "reason", None), *e.args)
                 if isinstance(x, BaseException)]
    if any(isinstance(e, urllib3.exceptions.ProtocolError) for e in chain):
        return host, None  # connected, then the host hung up: it was reached
    for kinds, why in ((socket.gaierror, "host name not resolved: no network, or a wrong host name"),
                       (ConnectionRefusedError, "connection refused"), (ssl.SSLError, "TLS handshake failed"),
                       ((TimeoutError, requests.Timeout), "connection timed out")):
        if any(isinstance(e, kinds) for e in chain):
            return host, why
    return host, "connection failed"


def _cut_off(exc: BaseException) -> str:
    """A transfer that stopped early, said plainly; other errors by type and their first sentence."""
    import requests

    if isinstance(exc, (requests.exceptions.ChunkedEncodingError, requests.exceptions.ContentDecodingError)):
        return "the connection closed before the whole file came"
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first.split(' (Caused by')[0]}" if first else type(exc).__name__


_HEX64 = re.compile(r"\b[0-9a-f]{64}\b")


# The most one archive member may hold when nothing says how large it should be (a manifest without sizes):
# far above any test image (DIV2K's largest is under 7 MB), far below a disk.
MAX_MEMBER_BYTES = 256 * 2**20
_CHUNK = 2**20


def safe_extract(archive: str | os.PathLike, dest: str | os.PathLike,
                 wanted: Callable[[str], int | None] | None = None) -> Path:
    """Extract a .tar(.gz/.bz2/.xz) or .zip archive into ``dest`` after checking every member: absolute
    paths, ``..``, links and devices are refused (FetchError naming the member) before anything is written.

    ``wanted(name)`` says which regular members to write and the most bytes each may hold (None: skip it);
    without it every file is written, each up to :data:`MAX_MEMBER_BYTES`. A member's declared size is checked
    before it is written, and its bytes are counted as they are streamed (a header can lie), so a small
    archive of zeros cannot fill the disk. On any refusal or write error the files written so far stay in
    ``dest`` for the caller to remove (a staging folder). Returns ``dest``."""
    import stat
    import tarfile
    import zipfile

    from .errors import FetchError

    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    root = dest.resolve()
    limit_of = wanted or (lambda name: MAX_MEMBER_BYTES)

    def check(name: str) -> None:
        target = (root / name).resolve()
        if Path(name).is_absolute() or ".." in Path(name).parts or not target.is_relative_to(root):
            raise FetchError(f"{archive}: refused, member {name!r} would be written outside the target folder")

    def too_big(name: str, size: int, limit: int) -> FetchError:
        return FetchError(f"{archive}: refused, member {name!r} holds {size} bytes or more, above the {limit} it may "
                          "hold (its size in the manifest, or the limit for one file); nothing was kept")

    def write(name: str, declared: int, source) -> None:
        limit = limit_of(name)
        if limit is None:
            return
        if declared > limit:
            raise too_big(name, declared, limit)
        target = root / name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with source() as src, open(target, "wb") as out:
                got = 0
                while chunk := src.read(_CHUNK):
                    got += len(chunk)
                    if got > limit:
                        raise too_big(name, got, limit)
                    out.write(chunk)
        except OSError as exc:
            raise FetchError(f"{archive}: cannot extract {name!r} ({exc.strerror or exc}); nothing was kept; free "
                             "disk space and retry") from None

    if zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for m in members:
                check(m.filename)
                if stat.S_ISLNK(m.external_attr >> 16):
                    raise FetchError(f"{archive}: refused, member {m.filename!r} is a link")
            for m in members:
                if not m.is_dir():
                    write(m.filename, m.file_size, lambda m=m: zf.open(m))
        return dest
    if not tarfile.is_tarfile(archive):
        raise FetchError(f"{archive}: not a zip or tar archive")
    with tarfile.open(archive) as tf:
        members = tf.getmembers()
        for m in members:
            check(m.name)
            if not (m.isfile() or m.isdir()):
                kind = "a link" if (m.issym() or m.islnk()) else "a device or special file"
                raise FetchError(f"{archive}: refused, member {m.name!r} is {kind}")
        for m in members:
            if m.isfile():
                write(m.name, m.size, lambda m=m: tf.extractfile(m))
    return dest


# --- one writer per folder -----------------------------------------------------------------------------------


def _fix(exc: OSError) -> str:
    """What to do about a failed write, in the user's words."""
    import errno

    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "free disk space"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "make the folder writable"
    return "check the disk"

LOCK_NAME = ".cirbench.lock"


class FolderLock:
    """Holds ``folder/.cirbench.lock`` (filelock: an OS lock, so a killed holder's lock is released by the
    kernel and taken over at once) while one process writes the folder; a second one is refused with a
    message naming the holder. Use as a context manager."""

    def __init__(self, folder: str | os.PathLike, what: str):
        self.folder, self.what = Path(folder), what
        self._lock = None

    def __enter__(self):
        import socket
        import sys
        import time

        from filelock import FileLock, Timeout

        from .errors import RunError

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise RunError(f"{self.folder}: cannot create the folder ({exc.strerror or exc}); choose another folder "
                           f"for this {self.what}") from None
        owner = self.folder / (LOCK_NAME + ".owner")
        for p in (self.folder / LOCK_NAME, owner):
            if p.is_symlink():  # filelock opens its file with O_TRUNC: a link would truncate what it points to
                raise RunError(f"{p}: is a symbolic link (to {os.readlink(p)}); cirbench never writes through a link "
                               "in a folder it writes: remove the link")
        lock = FileLock(self.folder / LOCK_NAME)
        try:
            lock.acquire(timeout=0)
        except Timeout:
            try:
                held = owner.read_text().strip() if owner.exists() else "unknown process"
            except OSError:
                held = "unknown process"
            raise RunError(f"{self.folder}: another cirbench process is writing this folder ({held}); wait for it "
                           f"to finish or use another folder for this {self.what}") from None
        except OSError as exc:
            raise RunError(f"{self.folder}: cannot lock the folder ({exc.strerror or exc}); "
                           f"{_fix(exc)} and rerun") from None
        self._lock = lock
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        command = " ".join(["cirbench", *sys.argv[1:]])[:200]
        note = f"pid {os.getpid()} on {socket.gethostname()} since {started}: {command}"
        try:  # who holds the lock, for the message a second process gets: never through a link
            fd = os.open(owner, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o644)
            with os.fdopen(fd, "w") as fh:
                fh.write(note + "\n")
        except OSError:
            pass  # only the note is lost (a full disk): the write that matters says so itself, in one line
        return self

    def __exit__(self, *exc):
        if self._lock is not None:
            self._lock.release()
            self._lock = None
        return False
