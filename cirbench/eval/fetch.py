"""``cirbench datasets fetch``: get a standard dataset into the data root, verified, or leave it unchanged.

Files are downloaded (or extracted from an archive, or copied from a local folder given with ``--from``)
into a staging folder inside the data root; every file is checked against the packaged manifest (sha256 and
size; DIV2K, whose checksums are unknown: names), and only then moved into place. On any failure the staging
folder is removed and the data root is as it was. Archives are extracted by :func:`cirbench.files.safe_extract`
(absolute paths, ``..``, links and devices refused).
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from ..errors import ConfigError, FetchError
from ..files import download, offline, safe_extract
from .datasets import REGISTRY, VerifyReport, data_root, expected_files, verify_files

__all__ = ["fetch_dataset"]


def _is_url(text: str) -> bool:
    return urlsplit(text).scheme in ("http", "https", "ftp")


def _locate(tree: Path, member_dir: str, names: list[str]) -> dict[str, Path]:
    """Where each expected file is in an extracted tree: under ``member_dir`` when it exists, else found by
    name anywhere (mirrors lay archives out differently; the checksums decide)."""
    base = tree / member_dir if member_dir and (tree / member_dir).is_dir() else tree
    found = {p.name: p for p in sorted(base.rglob("*"), reverse=True) if p.is_file() and p.name in names}
    return found


def fetch_dataset(name: str, root: str | os.PathLike | None = None, source: str | None = None, *,
                  log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Path:
    """Fetch dataset ``name`` (a gray variant fetches its colour set) into the data root; returns its folder.
    ``source`` overrides where from: a mirror URL (for per-file sets, the folder URL the file names are appended
    to), a local archive or a local folder."""
    if name not in REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(REGISTRY)}")
    spec = REGISTRY[REGISTRY[name].gray_of or name]
    if spec.samples:
        raise ConfigError(f"{name}: read from the installed scikit-image, nothing to fetch")
    if spec.source is None:
        raise ConfigError(f"{name}: no source known")
    root_dir = data_root(root)
    target = root_dir / spec.subdir
    manifest = expected_files(spec)
    names = list(manifest)
    src = source or spec.source.url
    local = None if _is_url(src) else Path(src).expanduser()
    if local is None and offline():
        raise FetchError(f"{name}: downloads are off (--offline / CIRBENCH_OFFLINE=1); fetch from a local copy "
                         f"with `cirbench datasets fetch {spec.name} --from ARCHIVE_OR_FOLDER`")
    if local is not None and not local.exists():
        raise FetchError(f"{local}: not found (--from takes a URL, an archive or a folder)")
    root_dir.mkdir(parents=True, exist_ok=True)
    staging = root_dir / f".staging-{spec.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    try:
        files = _stage(spec, src, local, names, manifest, staging, log)
        rep = _check(spec.name, files, manifest)
        if not rep.ok:
            problems = [f"missing: {', '.join(rep.missing[:5])}" + (" ..." if len(rep.missing) > 5 else "")
                        ] if rep.missing else []
            problems += rep.mismatched[:5]
            raise FetchError(f"{name} from {src}: {len(rep.missing)} files missing, {len(rep.mismatched)} not as "
                             f"in the manifest ({'; '.join(problems)}); nothing was written to {root_dir}")
        try:
            _install(files, target, staging)
        except OSError as exc:
            raise FetchError(f"{target}: cannot move the verified files into place ({exc.strerror or exc}); the data "
                             "root is unchanged: free space and rerun") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log(f"{spec.name}: {len(names)} files verified into {target}")
    return target


def _stage(spec, src: str, local: Path | None, names: list[str], manifest: dict, staging: Path,
           log: Callable[[str], None]) -> dict[str, Path]:
    """Every expected file in ``staging`` (or where it was extracted), by name; not yet verified."""
    if local is not None and local.is_dir():
        found = _locate(local, spec.source.member_dir, names)
        staging.mkdir()
        out = {}
        for n, p in found.items():
            shutil.copyfile(p, staging / n)
            out[n] = staging / n
        return out
    if spec.source.kind == "files" and local is None:
        staging.mkdir()
        base = src if src.endswith("/") else src + "/"
        out = {}
        for i, n in enumerate(names, 1):
            log(f"{spec.name}: {i}/{len(names)} {n}")
            sha = manifest[n].get("sha256") or None
            out[n] = download(base + n, staging / n, sha, size=int(manifest[n]["bytes"]) if sha else None)
        return out
    if local is not None:
        archive = local
    else:
        staging.mkdir()
        archive = download(src, staging / (Path(urlsplit(src).path).name or "archive"))
    tree = safe_extract(archive, staging / "tree")
    return _locate(tree, spec.source.member_dir, names)


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
        sub = verify_files(files[n].parent, {n: row}, VerifyReport(name, files[n].parent))
        rep.mismatched += sub.mismatched
        rep.checked += 1
    return rep
