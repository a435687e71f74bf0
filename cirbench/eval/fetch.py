"""``cirbench datasets fetch``: get standard datasets into the data root, verified, or leave it unchanged.

Where from: each set's official source, or ``--from``

- a mirror root, a URL or a folder laid out as the data root (:func:`mirror_layout`), for any number of sets;
- one set's own folder (a URL or a folder holding its files);
- an archive (a local file, or a URL ending in .zip, .tar, .tgz, .tar.gz, .tar.bz2 or .tar.xz) holding one
  set, such as the official BSR_bsds500.tgz.

A set whose files are all there and match the manifest is skipped; otherwise only its missing or mismatched
files are fetched. They are downloaded (or extracted, or copied) into a staging folder inside the data root,
checked against the packaged manifest (sha256 and size; DIV2K, whose checksums are unknown: names), and only
then moved into place. On any failure the staging folder is removed and the set's folder is as it was.
Archives are extracted by :func:`cirbench.files.safe_extract` (absolute paths, ``..``, links and devices
refused); only the needed files are written, each streamed and stopped at the size its manifest row gives
(or a stated limit for one file, where the manifest has no sizes).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ..config import closest
from ..errors import ConfigError, FetchError, Unreachable
from ..files import MAX_MEMBER_BYTES, download, offline, safe_extract, url_exists
from .datasets import REGISTRY, Source, VerifyReport, data_root, expected_files, file_problem, read_manifest

__all__ = ["fetch_dataset", "fetch_datasets", "mirror_layout", "fetchable"]

ARCHIVE_SUFFIXES = (".zip", ".tar", ".tgz", ".tar.gz", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass(frozen=True)
class _Part:
    """One folder a fetch fills: a colour set, or the paper's own gray copy fetched with it."""

    label: str  # what the lines printed say
    subdir: str  # under the data root, and under a mirror root
    manifest: dict[str, dict]
    source: Source


def fetchable() -> list[str]:
    """The names ``datasets fetch`` takes."""
    return [n for n, s in REGISTRY.items() if REGISTRY[s.gray_of or n].source is not None]


def _parts(name: str) -> list[_Part]:
    spec = REGISTRY[name]
    base = REGISTRY[spec.gray_of or name]
    parts = [_Part(base.name, base.subdir, expected_files(base), base.source)]
    if spec.published:
        pub = spec.published
        parts.append(_Part(f"{name} ({pub.description})", pub.subdir, read_manifest(pub.manifest), pub.source))
    return parts


def mirror_layout() -> list[str]:
    """The folders of a mirror root, as in the data root, one line each: ``live1/  29 files: bikes.bmp ...``."""
    lines, seen = [], set()
    for name in fetchable():
        for part in _parts(name):
            if part.subdir in seen:
                continue
            seen.add(part.subdir)
            names = list(part.manifest)
            lines.append(f"{part.subdir + '/':14s}{len(names):4d} files: {names[0]} ... {names[-1]}  "
                         f"(datasets fetch {name})")
    return lines


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https", "ftp")


def _is_archive_url(url: str) -> bool:
    return urlsplit(url).path.lower().endswith(ARCHIVE_SUFFIXES)


def _locate(tree: Path, subdirs: Iterable[str], names: list[str]) -> dict[str, Path]:
    """Where each wanted file is in a folder or an extracted tree: under the first of ``subdirs`` that exists
    (the data root's layout, an archive's own), else found by name anywhere (mirrors lay files out
    differently; the checksums decide)."""
    base = next((tree / d for d in subdirs if d and (tree / d).is_dir()), tree)
    wanted = set(names)
    return {p.name: p for p in sorted(base.rglob("*"), reverse=True) if p.is_file() and p.name in wanted}


def _needed(folder: Path, manifest: dict[str, dict]) -> list[str]:
    """The manifest's files that are missing from ``folder`` or differ from the manifest."""
    return [n for n, row in manifest.items() if not (folder / n).is_file() or file_problem(folder / n, row)]


def fetch_datasets(names: Iterable[str], root: str | os.PathLike | None = None, source: str | None = None, *,
                   log: Log = _stderr) -> list[Path]:
    """Fetch several sets (see :func:`fetch_dataset`); ``source`` is then a mirror root or one set's folder,
    as an archive holds one set. Each set is all or nothing; a failed one does not stop the others, and the
    error at the end names every one that failed."""
    names = list(dict.fromkeys(names))
    known = fetchable()
    if not names:
        raise ConfigError(f"datasets fetch needs a name: {', '.join(known)}")
    for n in names:  # all checked before anything is fetched
        if n not in known:
            why = "nothing to fetch (read from the installed scikit-image)" if n in REGISTRY else "unknown dataset"
            raise ConfigError(f"{n}: {why}{closest(n, known)}; datasets fetch takes: {', '.join(known)}")
    local = None if not source or _is_url(source) else Path(source).expanduser()
    if local is not None and not local.exists():  # once, not once per set
        raise FetchError(f"{local}: not found (--from takes a mirror root, a dataset's folder or an archive: a URL "
                         "or a local path)")
    if len(names) > 1 and (local.is_file() if local else bool(source) and _is_archive_url(source)):
        raise ConfigError(f"--from {source}: an archive holds one dataset, so name one; for several, give a mirror "
                          "root laid out as the data root (see `cirbench datasets fetch --help`)")
    out, failed, done_parts = [], [], set()
    for n in names:
        try:
            out.append(fetch_dataset(n, root, source, log=log, done=done_parts))
        except FetchError as exc:
            if len(names) == 1:
                raise
            failed.append((n, str(exc)))
    if failed:
        done = [n for n in names if n not in dict(failed)]
        raise FetchError(f"{len(failed)} of {len(names)} datasets not fetched ({', '.join(n for n, _ in failed)}); "
                         + (f"{', '.join(done)} in place; " if done else "")
                         + "rerun the same command once fixed (sets in place are skipped)",
                         details=[msg for _, msg in failed])
    return out


def fetch_dataset(name: str, root: str | os.PathLike | None = None, source: str | None = None, *,
                  log: Log = _stderr, done: set[str] | None = None) -> Path:
    """Fetch dataset ``name`` into the data root (a gray variant fetches its colour set, and live1_gray also
    FBCNN's PNGs); returns the colour set's folder. ``source`` overrides where from: a mirror root laid out as
    the data root, the set's own folder (URL or local) or an archive. ``done``: folders this command has
    already handled (live1 before live1_gray), skipped silently; the ones handled here are added."""
    done = set() if done is None else done
    if name not in REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}{closest(name, REGISTRY)}; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[REGISTRY[name].gray_of or name]
    if spec.samples:
        raise ConfigError(f"{name}: read from the installed scikit-image, nothing to fetch")
    if spec.source is None:
        raise ConfigError(f"{name}: no source known")
    root_dir = data_root(root)
    parts = _parts(name)
    for part in parts:
        if part.subdir not in done:
            _fetch_part(name, part, root_dir, source, log)
            done.add(part.subdir)
    return root_dir / parts[0].subdir


def _fetch_part(name: str, part: _Part, root_dir: Path, source: str | None, log: Log) -> None:
    target = root_dir / part.subdir
    need = _needed(target, part.manifest)
    if not need:
        log(f"{part.label}: present, {len(part.manifest)} files verified in {target}; nothing to fetch")
        return
    src = source or part.source.url
    local = None if _is_url(src) else Path(src).expanduser()
    if local is None and offline():
        raise FetchError(f"{name}: downloads are off (--offline / CIRBENCH_OFFLINE=1); fetch from a local copy "
                         f"with `cirbench datasets fetch {name} --from MIRROR_ARCHIVE_OR_FOLDER`")
    if local is not None and not local.exists():
        raise FetchError(f"{local}: not found (--from takes a mirror root, a dataset's folder or an archive: a URL "
                         "or a local path)")
    root_dir.mkdir(parents=True, exist_ok=True)
    staging = root_dir / f".staging-{part.subdir.replace('/', '-')}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        try:
            files = _stage(part, src, local, official=source is None, need=need, staging=staging, log=log)
        except Unreachable as exc:
            fix = ("check the network and the --from URL, and retry" if source else
                   f"check the network and retry, or fetch from a copy: `cirbench datasets fetch {name} --from "
                   "MIRROR_ARCHIVE_OR_FOLDER` (layout: `cirbench datasets fetch --help`)")
            raise FetchError(f"{part.label}: could not reach {exc.host} ({exc.why}); nothing was kept; {fix}") from None
        except OSError as exc:  # staging or copying: a full disk, a folder that cannot be written
            raise FetchError(f"{part.label}: cannot stage the files in {root_dir} ({exc.strerror or exc}); nothing was "
                             "kept; free disk space (or choose another --data-root) and rerun") from None
        rep = _check(part.label, files, {n: part.manifest[n] for n in need})
        if not rep.ok:
            problems = [f"missing: {', '.join(rep.missing[:5])}" + (" ..." if len(rep.missing) > 5 else "")
                        ] if rep.missing else []
            problems += rep.mismatched[:5]
            raise FetchError(f"{part.label} from {src}: {len(rep.missing)} files missing, {len(rep.mismatched)} not "
                             f"as in the manifest ({'; '.join(problems)}); nothing was written to {root_dir}")
        try:
            _install(files, target, staging)
        except OSError as exc:
            raise FetchError(f"{target}: cannot move the verified files into place ({exc.strerror or exc}); the data "
                             "root is unchanged: free space and rerun") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    kept = len(part.manifest) - len(need)
    log(f"{part.label}: {len(need)} files verified into {target}" + (f" ({kept} already there)" if kept else ""))


def _folder_url(part: _Part, src: str, first: str) -> str:
    """The URL the file names are appended to: ``src`` as a mirror root (``src/SUBDIR/``) or as the set's own
    folder, whichever holds the first file wanted (ftp cannot be asked: its URL is the set's folder)."""
    base = src if src.endswith("/") else src + "/"
    if urlsplit(src).scheme == "ftp":
        return base
    for candidate in (f"{base}{part.subdir}/", base):
        if url_exists(candidate + first):
            return candidate
    raise FetchError(f"{part.label}: {first} is neither at {base}{part.subdir}/{first} nor at {base}{first}; --from "
                     "takes a mirror root laid out as the data root (see `cirbench datasets fetch --help`), one "
                     "set's folder, or an archive")


def _stage(part: _Part, src: str, local: Path | None, *, official: bool, need: list[str], staging: Path,
           log: Log) -> dict[str, Path]:
    """Every needed file in ``staging`` (or where it was extracted), by name; not yet verified."""
    subdirs = (part.subdir, part.source.member_dir)
    if local is not None and local.is_dir():
        found = _locate(local, subdirs, need)
        staging.mkdir()
        out = {}
        for n, p in found.items():
            shutil.copyfile(p, staging / n)
            out[n] = staging / n
        return out
    if local is None and not _is_archive_url(src):
        base = src if official else _folder_url(part, src, need[0])
        base = base if base.endswith("/") else base + "/"
        staging.mkdir()
        out = {}
        for i, n in enumerate(need, 1):
            log(f"{part.label}: {i}/{len(need)} {n}")
            sha = part.manifest[n].get("sha256") or None
            out[n] = download(base + n, staging / n, sha, size=int(part.manifest[n]["bytes"]) if sha else None)
        return out
    if local is not None:
        archive = local
    else:
        staging.mkdir()
        log(f"{part.label}: downloading {src}")
        archive = download(src, staging / (Path(urlsplit(src).path).name or "archive"))
    # Only the files needed are written, each no larger than the manifest says (or the limit for one file
    # when it gives no size): checked before and while the bytes are streamed.
    sizes = {n: int(part.manifest[n]["bytes"]) if part.manifest[n].get("bytes") else MAX_MEMBER_BYTES for n in need}
    tree = safe_extract(archive, staging / "tree", wanted=lambda name: sizes.get(Path(name).name))
    return _locate(tree, subdirs, need)


def _install(files: dict[str, Path], target: Path, staging: Path) -> None:
    """Move the verified files into ``target`` all or nothing: a new folder is renamed into place in one step;
    into an existing folder, files are replaced one by one and, on any error, put back as they were."""
    ready = staging / "ready"
    ready.mkdir()
    for n, p in files.items():
        os.replace(p, ready / n)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(ready, target)  # one rename: the folder appears whole
        return
    backup = staging / "previous"
    backup.mkdir()
    done: list[str] = []
    try:
        for n in files:
            if (target / n).exists():
                os.replace(target / n, backup / n)
            done.append(n)
            os.replace(ready / n, target / n)
    except BaseException:
        for n in reversed(done):  # undo: the data root is left as it was
            if (target / n).exists() and not (ready / n).exists():
                os.replace(target / n, ready / n)
            if (backup / n).exists():
                os.replace(backup / n, target / n)
        raise


def _check(name: str, files: dict[str, Path], manifest: dict) -> VerifyReport:
    """Verify the staged files as ``datasets verify`` would, wherever they lie."""
    rep = VerifyReport(name, Path("."))
    for n, row in manifest.items():
        if n not in files:
            rep.missing.append(n)
            continue
        rep.checked += 1
        problem = file_problem(files[n], row)
        if problem:
            rep.mismatched.append(problem)
    return rep
