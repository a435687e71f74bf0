"""Evaluation datasets: a registry of named sets, their manifests, and where their files are.

The data root comes from ``--data-root``, else ``$CIRBENCH_DATA``, else the user cache directory
(``$XDG_CACHE_HOME/cirbench/datasets``, default ``~/.cache/cirbench/datasets``). Its layout is the
one of ``shared/datasets``: ``classic5/``, ``live1/``, ``bsds500/test/``, ``div2k/valid/``.

Classic5 and LIVE1 are also embedded in the package (see ``cirbench/data/*/SOURCE.md``), so the
blind protocol runs on a fresh machine with no network. Gray variants (``live1_gray``,
``bsds500_gray``) are computed by cirbench as the rounded BT.601 luma of the colour originals,
which is how the FBCNN/KAIR family of papers made their gray sets.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from ..config import closest
from ..errors import ConfigError, DatasetMissing
from ..files import sha256_file
from ..images import IMAGE_SUFFIXES, list_images, read_image
from ..metrics import rgb_to_y

__all__ = [
    "DatasetSpec",
    "Dataset",
    "DatasetMissing",
    "REGISTRY",
    "data_root",
    "get_dataset",
    "verify",
]

_DATA = resources.files("cirbench") / "data"


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: where it lives under the data root and how to check it."""

    name: str
    subdir: str
    color: bool
    description: str
    how_to_get: str
    manifest: str | None = None  # package manifest (filename, width, height, mode, bytes, sha256)
    gray_of: str | None = None  # computed as the luma of this colour dataset
    embedded: bool = False
    expected: tuple[str, ...] = ()  # file names, for sets with no checksummed manifest


_DIV2K_FILES = tuple(f"{i:04d}.png" for i in range(801, 901))

REGISTRY: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("classic5", "classic5", False, "Classic5: 5 gray 512x512 images",
                    "embedded in cirbench; original in the SwinIR/DnCNN/FBCNN repositories' testsets",
                    manifest="classic5.tsv", embedded=True),
        DatasetSpec("live1", "live1", True, "LIVE1: 29 colour reference images",
                    "embedded in cirbench; original in FBCNN's testsets/LIVE1_color",
                    manifest="live1.tsv", embedded=True),
        DatasetSpec("live1_gray", "live1", False, "LIVE1 gray: rounded BT.601 luma of live1",
                    "computed from live1", manifest="live1.tsv", gray_of="live1", embedded=True),
        DatasetSpec("bsds500", "bsds500/test", True, "BSDS500 test split: 200 colour images",
                    "download the BSR_bsds500 archive (Berkeley) and copy BSDS500/data/images/test/*.jpg "
                    "to DATA_ROOT/bsds500/test/", manifest="bsds500.tsv"),
        DatasetSpec("bsds500_gray", "bsds500/test", False, "BSDS500 test gray: rounded BT.601 luma",
                    "computed from bsds500 (see its instructions)", manifest="bsds500.tsv", gray_of="bsds500"),
        DatasetSpec("div2k", "div2k/valid", True, "DIV2K validation HR 0801-0900 (no checksums known)",
                    "download DIV2K_valid_HR.zip from the DIV2K site and unpack its PNGs to "
                    "DATA_ROOT/div2k/valid/", expected=_DIV2K_FILES),
        DatasetSpec("div2k_gray", "div2k/valid", False, "DIV2K validation gray: rounded BT.601 luma",
                    "computed from div2k (see its instructions)", gray_of="div2k", expected=_DIV2K_FILES),
    ]
}


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else ``$CIRBENCH_DATA``, else the user cache directory."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("CIRBENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "cirbench" / "datasets"


def read_manifest(name: str) -> dict[str, dict]:
    """A packaged manifest as {filename: {width, height, mode, bytes, sha256}}."""
    text = (_DATA / "manifests" / name).read_text()
    rows = csv.DictReader(text.splitlines(), delimiter="\t")
    return {r["filename"]: r for r in rows}


@dataclass
class Dataset:
    """A resolved dataset: its files and how to read them."""

    name: str
    root: Path
    files: list[Path]
    gray: bool  # convert colour files to luma
    source: str  # "embedded", "data-root" or "folder"
    manifest_sha256: str | None = None
    spec: DatasetSpec | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, path: Path) -> np.ndarray:
        """Read one file as the uint8 image the protocol evaluates."""
        img = read_image(path)
        if self.gray and img.ndim == 3:
            img = rgb_to_y(img)
        return img

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        for p in self.files:
            yield p.name, p


def _manifest_hash(spec: DatasetSpec) -> str | None:
    if spec.manifest:
        return hashlib.sha256((_DATA / "manifests" / spec.manifest).read_bytes()).hexdigest()
    if spec.expected:
        return hashlib.sha256("\n".join(spec.expected).encode()).hexdigest()
    return None


def get_dataset(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """Resolve a dataset name (or ``folder:PATH``) to its files.

    Files under the data root win; embedded sets are the fallback. Raises ``DatasetMissing``
    with instructions when neither has it, and ``ConfigError`` for unknown names.
    """
    if name.startswith("folder:"):
        folder = Path(name[len("folder:"):]).expanduser()
        if not folder.is_dir():
            raise DatasetMissing(f"{folder}: folder not found")
        files = list_images(folder)
        if not files:
            raise DatasetMissing(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        digest = hashlib.sha256("\n".join(p.name for p in files).encode()).hexdigest()
        return Dataset(name, folder, files, gray=False, source="folder", manifest_sha256=digest)
    if name not in REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}{closest(name, REGISTRY)}; known: {', '.join(REGISTRY)}, "
                          "or folder:PATH")
    spec = REGISTRY[name]
    base = spec.gray_of or name
    base_spec = REGISTRY[base]
    names = list(read_manifest(spec.manifest)) if spec.manifest else list(spec.expected)
    folder = data_root(root) / base_spec.subdir
    source = "data-root"
    if not all((folder / n).is_file() for n in names):
        embedded = _DATA / base
        if spec.embedded and embedded.is_dir():
            folder, source = Path(str(embedded)), "embedded"
        else:
            have = sum((folder / n).is_file() for n in names)
            raise DatasetMissing(
                f"dataset {name!r}: {have} of {len(names)} files found in {folder}; {spec.how_to_get}"
                .replace("DATA_ROOT", str(data_root(root)))
            )
    files = [folder / n for n in names]
    return Dataset(name, folder, files, gray=not spec.color, source=source,
                   manifest_sha256=_manifest_hash(spec), spec=spec)


@dataclass
class VerifyReport:
    name: str
    folder: Path
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)  # "file: reason"
    checked: int = 0
    note: str = ""

    @property
    def ok(self) -> bool:
        return not (self.missing or self.mismatched)


def verify(name: str, root: str | os.PathLike | None = None) -> VerifyReport:
    """Check a dataset's files under the data root against its manifest (sha256 and size)."""
    spec = REGISTRY[name]
    base = REGISTRY[spec.gray_of or name]
    folder = data_root(root) / base.subdir
    rep = VerifyReport(name, folder)
    if spec.manifest:
        manifest = read_manifest(spec.manifest)
    else:
        manifest = {n: {} for n in spec.expected}
        rep.note = "no checksums known: names only"
    present = {p.name for p in list_images(folder)} if folder.is_dir() else set()
    rep.extra = sorted(present - set(manifest))
    for fname, row in manifest.items():
        p = folder / fname
        if not p.is_file():
            rep.missing.append(fname)
            continue
        rep.checked += 1
        if row.get("bytes") and p.stat().st_size != int(row["bytes"]):
            rep.mismatched.append(f"{fname}: {p.stat().st_size} bytes, expected {row['bytes']}")
        elif row.get("sha256") and sha256_file(p) != row["sha256"]:
            rep.mismatched.append(f"{fname}: sha256 differs from the manifest")
    return rep
