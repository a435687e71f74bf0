"""Fetching a card's weights into the cache (``cirbench models fetch``, and on first use).

Plain URLs go through :func:`cirbench.files.download` (pooch: temporary name, moved into place only after the
sha256 and size match). Google Drive folder links, such as PromptCIR's, need the optional ``gdown``
(``pip install 'cirbench[gdrive]'``); the folder is downloaded into a temporary folder and only the card's
files, checked, are moved into the cache. A card without a known digest downloads anyway, prints the digest
it got, and every run records it in ``run.json`` (``weights_sha256``); such a download is kept only when the
file is whole by its own format (a safetensors header that covers the file, a zip checkpoint with its end
record), since a body cut short without a Content-Length looks complete to HTTP.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from ..errors import FetchError, Unreachable, WeightsMissing
from ..files import download, offline, sha256_file, unreachable
from .cards import ModelCard, WeightFile

__all__ = ["fetch_card", "missing_files"]


def missing_files(card: ModelCard) -> list[WeightFile]:
    """The card's weight files that are nowhere on disk with the card's digest."""
    return [f for f in card.files if not card.resolve(f.name, f.sha256).exists()]


def _is_drive(url: str) -> bool:
    return "drive.google.com" in url


def _verify(path: Path, f: WeightFile) -> str:
    """sha256 of a fetched file; a mismatch deletes it."""
    digest = sha256_file(path)
    if f.sha256 and digest != f.sha256.lower():
        path.unlink()
        raise FetchError(f"{f.url}: {f.name}: sha256 mismatch, expected {f.sha256}, got {digest}; nothing was kept")
    return digest


def _from_drive(card: ModelCard, files: list[WeightFile], log: Callable[[str], None]) -> None:
    try:
        import gdown
    except ImportError:
        raise WeightsMissing(
            f"model {card.name!r}: its weights are in a Google Drive folder ({files[0].url}); install the optional "
            f"downloader with `pip install 'cirbench[gdrive]'`, or download {', '.join(f.name for f in files)} "
            f"by hand into {card.cache_path('')}") from None
    target = card.cache_path(files[0].name, files[0].sha256).parent
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target, prefix=".drive-") as tmp:
        try:
            gdown.download_folder(files[0].url, output=tmp, quiet=not sys.stderr.isatty())
        except Exception as exc:  # gdown raises its own types and requests' errors
            host, why = unreachable(exc, files[0].url)
            if why:
                raise _unreachable(card, files, host, why) from None
            first = (str(exc).strip().splitlines() or [""])[0]
            raise FetchError(f"{files[0].url}: Google Drive download failed ({type(exc).__name__}: {first}); "
                             f"nothing was kept; {_by_hand(card, files)}") from None
        got = {p.name: p for p in Path(tmp).rglob("*") if p.is_file()}
        staged = []
        for f in files:
            src = got.get(Path(f.name).name)
            if src is None:
                raise FetchError(f"{files[0].url}: the folder has no {Path(f.name).name}; nothing was kept")
            staged.append((src, _verify(src, f), f))
        for src, digest, f in staged:
            dest = card.cache_path(f.name, f.sha256)
            dest.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dest)
            _report(card, f, digest, dest, log)


def _report(card: ModelCard, f: WeightFile, digest: str, dest: Path, log: Callable[[str], None]) -> None:
    known = "matches the card" if f.sha256 else "no digest on the card: recorded in run.json"
    log(f"{card.name}: {dest} sha256 {digest} ({known})")


def _by_hand(card: ModelCard, files: list[WeightFile]) -> str:
    """How to get ``files`` without cirbench downloading them (and which file of that name is not the card's)."""
    where = "; ".join(f"{f.url or 'no URL known'} -> {card.cache_path(f.name, f.sha256)}" for f in files)
    other = [str(p) for f in files for p in card.mismatched(f.name)]
    note = f"; {', '.join(other)} has another sha256 than the card's and is not used" if other else ""
    return f"put them in place by hand: {where} (or pass --weights PATH){note}"


def _unreachable(card: ModelCard, files: list[WeightFile], host: str, why: str) -> WeightsMissing:
    return WeightsMissing(f"model {card.name!r}: could not reach {host} ({why}); nothing was kept; check the network "
                          f"and retry, or {_by_hand(card, files)}")


def _refuse_incomplete(path: Path, f: WeightFile) -> None:
    """No digest to check a download against: keep it only when its format says it is whole."""
    from .checkpoints import incomplete

    why = incomplete(path)
    if why:
        path.unlink()
        raise FetchError(f"{f.url}: the download is incomplete ({why}) and the card gives no sha256 to check it; "
                         "nothing was kept; retry, and add the file's sha256 to the card once you have a good copy")


def fetch_card(card: ModelCard, *, log: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> list[Path]:
    """Download every missing weight file of ``card`` into the cache; returns the card's weight paths."""
    todo = missing_files(card)
    if todo and offline():
        raise WeightsMissing(f"model {card.name!r}: weights not found and downloads are off (--offline / "
                             f"CIRBENCH_OFFLINE=1); {_by_hand(card, todo)}")
    no_url = [f.name for f in todo if not f.url]
    if no_url:
        raise WeightsMissing(f"model {card.name!r}: {', '.join(no_url)} not found and the card names no URL; "
                             f"put the file beside {card.path} or in {card.cache_path('')}")
    drive = [f for f in todo if _is_drive(f.url)]
    if drive:
        _from_drive(card, drive, log)
    for f in todo:
        if _is_drive(f.url):
            continue
        try:
            dest = download(f.url, card.cache_path(f.name, f.sha256), f.sha256 or None, size=f.size or None)
        except Unreachable as exc:
            left = [g for g in missing_files(card) if not _is_drive(g.url)]  # those fetched before are kept
            raise _unreachable(card, left, exc.host, exc.why) from None
        if not f.sha256:
            _refuse_incomplete(dest, f)
        _report(card, f, sha256_file(dest), dest, log)
    return card.weight_paths()
