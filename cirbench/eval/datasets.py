"""Evaluation datasets: a registry of named sets, their manifests, where their files are and how to get them.

The data root comes from ``--data-root``, else ``$CIRBENCH_DATA``, else the user cache
(``$XDG_CACHE_HOME/cirbench/datasets``, default ``~/.cache/cirbench/datasets``). Its layout:
``classic5/``, ``live1/``, ``bsds500/test/``, ``div2k/valid/``; ``cirbench datasets fetch NAME`` fills it
(:mod:`cirbench.eval.fetch`). No third-party image ships with cirbench.

Gray variants (``live1_gray``, ``bsds500_gray``, ``div2k_gray``) are computed by cirbench as the rounded
BT.601 luma of the colour originals, which is how the FBCNN/KAIR family of papers made their gray sets.
``cirbench datasets fetch live1_gray`` also puts FBCNN's own LIVE1_gray PNGs in ``live1_gray/`` (checked
against ``live1_gray_fbcnn.tsv``): runs never read them, the tests check cirbench's luma against them.

``samples`` and ``samples_gray`` are natural photographs that scikit-image ships inside its wheel, read from
the installed package (never copied): the offline default when no standard set is present. Colour:
astronaut (NASA, no known copyright restrictions), chelsea and coffee (CC0); gray: camera, brick, grass and
gravel (CC0) and coins (Brooklyn Museum, no known copyright restrictions), as scikit-image's data module
states. They were picked as photographs with a stated licence, stored losslessly (PNG), with texture and
edges where JPEG artifacts show; moon and the Middlebury motorcycle pair state no licence, rocket, retina and
hubble_deep_field are JPEGs already.
"""

from __future__ import annotations

import csv
import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..config import closest
from ..errors import ConfigError, DatasetMissing
from ..files import inside, sha256_file

if TYPE_CHECKING:
    import numpy as np

# The image readers and the luma (numpy, torch) are imported where used: `cirbench datasets fetch --help`
# builds its text from this registry and must answer at once.

__all__ = ["DatasetSpec", "Source", "Published", "Dataset", "DatasetMissing", "REGISTRY", "SAMPLES", "data_root",
           "get_dataset", "verify", "verify_published", "read_manifest", "expected_files", "present", "fetched",
           "folder_label"]

_DATA = resources.files("cirbench") / "data"


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: one URL per file (``files``: the file name is appended to ``url``),
    or an ``archive`` whose ``member_dir`` holds them."""

    kind: Literal["files", "archive"]
    url: str
    member_dir: str = ""
    where: str = ""  # the repository, commit and path the URL points into (provenance)


@dataclass(frozen=True)
class Published:
    """A paper's own copy of a gray set, fetched beside the colour set it is computed from so that cirbench's
    luma can be checked against it; runs never read it."""

    subdir: str
    manifest: str
    source: Source
    description: str


@dataclass(frozen=True)
class DatasetSpec:
    """A named dataset: where it lives under the data root, how to check it and how to get it."""

    name: str
    subdir: str
    color: bool
    description: str
    manifest: str | None = None  # package manifest (filename, width, height, mode, bytes, sha256)
    gray_of: str | None = None  # computed as the luma of this colour dataset
    expected: tuple[str, ...] = ()  # file names, for sets with no checksummed manifest
    source: Source | None = None
    samples: tuple[str, ...] = ()  # scikit-image's bundled files (the samples sets)
    published: Published | None = None  # fetched with the set, never evaluated

    @property
    def fetch_command(self) -> str:
        return f"cirbench datasets fetch {self.gray_of or self.name}"


_DIV2K_FILES = tuple(f"{i:04d}.png" for i in range(801, 901))
SAMPLES = ("samples", "samples_gray")

REGISTRY: dict[str, DatasetSpec] = {
    s.name: s
    for s in [
        DatasetSpec("classic5", "classic5", False, "Classic5: 5 gray 512x512 images", manifest="classic5.tsv",
                    source=Source("files", "https://raw.githubusercontent.com/JingyunLiang/SwinIR/"
                                  "6545850fbf8df298df73d81f3e8cba638787c8bd/testsets/classic5/",
                                  where="github.com/JingyunLiang/SwinIR@6545850 testsets/classic5")),
        DatasetSpec("live1", "live1", True, "LIVE1: 29 colour reference images", manifest="live1.tsv",
                    source=Source("files", "https://raw.githubusercontent.com/jiaxi-jiang/FBCNN/"
                                  "54d1831927506b3247e2d4d245abb4f4dab1a1cd/testsets/LIVE1_color/",
                                  where="github.com/jiaxi-jiang/FBCNN@54d1831 testsets/LIVE1_color")),
        DatasetSpec("live1_gray", "live1", False, "LIVE1 gray: rounded BT.601 luma of live1",
                    manifest="live1.tsv", gray_of="live1",
                    published=Published("live1_gray", "live1_gray_fbcnn.tsv",
                                        Source("files", "https://raw.githubusercontent.com/jiaxi-jiang/FBCNN/"
                                               "54d1831927506b3247e2d4d245abb4f4dab1a1cd/testsets/LIVE1_gray/",
                                               where="github.com/jiaxi-jiang/FBCNN@54d1831 testsets/LIVE1_gray"),
                                        "FBCNN's LIVE1_gray PNGs")),
        DatasetSpec("bsds500", "bsds500/test", True, "BSDS500 test split: 200 colour images",
                    manifest="bsds500.tsv",
                    source=Source("archive", "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/"
                                  "BSR/BSR_bsds500.tgz", member_dir="BSR/BSDS500/data/images/test",
                                  where="the official BSR_bsds500 archive (Berkeley)")),
        DatasetSpec("bsds500_gray", "bsds500/test", False, "BSDS500 test gray: rounded BT.601 luma",
                    manifest="bsds500.tsv", gray_of="bsds500"),
        DatasetSpec("div2k", "div2k/valid", True, "DIV2K validation HR 0801-0900 (no checksums known)",
                    expected=_DIV2K_FILES,
                    source=Source("archive", "http://data.vision.ee.ethz.ch/cvl/DIV2K/DIV2K_valid_HR.zip",
                                  member_dir="DIV2K_valid_HR", where="the DIV2K site (ETH Zurich)")),
        DatasetSpec("div2k_gray", "div2k/valid", False, "DIV2K validation gray: rounded BT.601 luma",
                    gray_of="div2k", expected=_DIV2K_FILES),
        DatasetSpec("samples", "", True, "3 colour photographs bundled with scikit-image (offline default)",
                    samples=("astronaut.png", "chelsea.png", "coffee.png")),
        DatasetSpec("samples_gray", "", False, "5 gray photographs bundled with scikit-image (offline default)",
                    samples=("camera.png", "coins.png", "brick.png", "grass.png", "gravel.png")),
    ]
}


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: the argument, else ``$CIRBENCH_DATA``, else the user cache folder."""
    if explicit:
        return Path(explicit).expanduser()
    env = os.environ.get("CIRBENCH_DATA")
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "cirbench" / "datasets"


def read_manifest(name: str) -> dict[str, dict]:
    """A packaged manifest as {filename: {width, height, mode, bytes, sha256}}. A manifest is data: each file
    name must be a plain name inside the set's folder (fetch writes it there), else the manifest is refused."""
    path = _DATA / "manifests" / name
    rows = csv.DictReader(path.read_text().splitlines(), delimiter="\t")
    out = {}
    for n, r in enumerate(rows, 2):
        fname = r.get("filename") or ""
        if not inside(fname) or "/" in fname:
            raise ConfigError(f"{path}:{n}: key 'filename' is {fname!r}, not a file name inside the dataset's folder "
                              "(paths, '..' and absolute names are refused); fix the manifest")
        out[fname] = r
    return out


def expected_files(spec: DatasetSpec) -> dict[str, dict]:
    """{file name: manifest row} ({} rows when only the names are known)."""
    if spec.manifest:
        return read_manifest(spec.manifest)
    return {n: {} for n in (spec.expected or spec.samples)}


def _skimage_dir() -> Path:
    import skimage.data

    return Path(skimage.data.__file__).parent


@dataclass
class Dataset:
    """A resolved dataset: its files and how to read them."""

    name: str
    root: Path
    files: list[Path]
    gray: bool  # convert colour files to luma
    source: str  # "data-root", "scikit-image" or "folder"
    manifest_sha256: str | None = None
    spec: DatasetSpec | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, path: Path, notes: list[str] | None = None) -> np.ndarray:
        """Read one file as the uint8 image the protocol evaluates (the read policy's warnings go to ``notes``
        when given, else they are warned)."""
        from ..images import read_image
        from ..metrics import rgb_to_y

        img = read_image(path, notes=notes)
        if self.gray and img.ndim == 3:
            img = rgb_to_y(img)
        return img

    def __iter__(self) -> Iterator[tuple[str, Path]]:
        for p in self.files:
            yield p.name, p


def _manifest_hash(spec: DatasetSpec) -> str | None:
    if spec.manifest:
        return hashlib.sha256((_DATA / "manifests" / spec.manifest).read_bytes()).hexdigest()
    if spec.expected or spec.samples:
        return hashlib.sha256("\n".join(spec.expected or spec.samples).encode()).hexdigest()
    return None


def get_dataset(name: str, root: str | os.PathLike | None = None) -> Dataset:
    """Resolve a dataset name (or ``folder:PATH``) to its files. Raises ``DatasetMissing`` naming the fetch
    command when its files are absent, and ``ConfigError`` for unknown names."""
    from ..images import IMAGE_SUFFIXES, list_images

    if name.startswith("folder:"):
        folder = Path(name[len("folder:"):]).expanduser()
        if not folder.is_dir():
            raise DatasetMissing(f"{folder}: folder not found")
        files = list_images(folder, refused=True)  # refused formats and dangling links: named by the preflight
        if not files:
            raise DatasetMissing(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
        _refuse_shared_stems(folder, [f for f in files if f.suffix.lower() in IMAGE_SUFFIXES])
        digest = hashlib.sha256("\n".join(p.name for p in files).encode()).hexdigest()
        return Dataset(folder_label(folder), folder, files, gray=False, source="folder", manifest_sha256=digest)
    if name not in REGISTRY:
        raise ConfigError(f"unknown dataset {name!r}{closest(name, REGISTRY)}; known: {', '.join(REGISTRY)}, "
                          "or folder:PATH")
    spec = REGISTRY[name]
    if spec.samples:
        folder = _skimage_dir()
        return Dataset(name, folder, [folder / n for n in spec.samples], gray=not spec.color,
                       source="scikit-image", manifest_sha256=_manifest_hash(spec), spec=spec)
    names = list(expected_files(spec))
    folder = data_root(root) / REGISTRY[spec.gray_of or name].subdir
    have = sum((folder / n).is_file() for n in names)
    if have < len(names):
        raise DatasetMissing(f"dataset {name!r}: {have} of {len(names)} files found in {folder}; get it with "
                             f"`{spec.fetch_command}`" + (f" --data-root {root}" if root else ""))
    return Dataset(name, folder, [folder / n for n in names], gray=not spec.color, source="data-root",
                   manifest_sha256=_manifest_hash(spec), spec=spec)


def _refuse_shared_stems(folder: Path, files: list[Path]) -> None:
    """Saved outputs and ``outputs:{stem}`` templates name an image by its stem: two files of one stem (a.jpg,
    a.png) would be mixed, so a folder holding them is refused."""
    by_stem: dict[str, list[str]] = {}
    for f in files:
        by_stem.setdefault(f.stem, []).append(f.name)
    shared = {stem: names for stem, names in by_stem.items() if len(names) > 1}
    if shared:
        stem, names = next(iter(shared.items()))
        more = f" (and {len(shared) - 1} more stem(s))" if len(shared) > 1 else ""
        raise ConfigError(f"{folder}: {' and '.join(names)} share the stem {stem!r}{more}; saved images and "
                          "outputs:{stem} name images by stem, so they would be mixed: rename or move one of them")


def folder_label(folder: Path) -> str:
    """A ``folder:PATH`` dataset's name in records and tables: the folder's own name (``folder-`` prefixed
    when it is a registry name, so it never passes for the standard set); the full path is in run.json."""
    label = folder.resolve().name or "folder"
    return f"folder-{label}" if label in REGISTRY else label


def present(name: str, root: str | os.PathLike | None = None) -> bool:
    try:
        get_dataset(name, root)
        return True
    except DatasetMissing:
        return False


def fetched(name: str, root: str | os.PathLike | None = None) -> bool:
    """Whether every file ``cirbench datasets fetch NAME`` puts in the data root is there (by name; ``verify``
    checks the bytes): the colour set and, for live1_gray, FBCNN's PNGs."""
    spec = REGISTRY[name]
    if not present(name, root):
        return False
    pub = spec.published
    return pub is None or all((data_root(root) / pub.subdir / n).is_file() for n in read_manifest(pub.manifest))


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


def file_problem(path: Path, row: dict) -> str | None:
    """How a present file differs from its manifest row (size, then sha256, where the row has them); None if
    it matches."""
    if row.get("bytes") and path.stat().st_size != int(row["bytes"]):
        return f"{path.name}: {path.stat().st_size} bytes, expected {row['bytes']}"
    if row.get("sha256") and sha256_file(path) != row["sha256"]:
        return f"{path.name}: sha256 differs from the manifest"
    return None


def verify_files(folder: Path, manifest: dict[str, dict], rep: VerifyReport) -> VerifyReport:
    """Check the files of ``folder`` against manifest rows (size and sha256 where the row has them)."""
    from ..images import list_images

    present_names = {p.name for p in list_images(folder)} if folder.is_dir() else set()
    rep.extra = sorted(present_names - set(manifest))
    for fname, row in manifest.items():
        p = folder / fname
        if not p.is_file():
            rep.missing.append(fname)
            continue
        rep.checked += 1
        problem = file_problem(p, row)
        if problem:
            rep.mismatched.append(problem)
    return rep


def verify(name: str, root: str | os.PathLike | None = None) -> VerifyReport:
    """Check a dataset's files under the data root against its manifest (sha256 and size)."""
    spec = REGISTRY[name]
    if spec.samples:
        return verify_files(_skimage_dir(), expected_files(spec), VerifyReport(name, _skimage_dir(),
                                                                                note="scikit-image's files"))
    folder = data_root(root) / REGISTRY[spec.gray_of or name].subdir
    rep = VerifyReport(name, folder, note="" if spec.manifest else "no checksums known: names only")
    return verify_files(folder, expected_files(spec), rep)


def verify_published(name: str, root: str | os.PathLike | None = None) -> VerifyReport | None:
    """Check the paper's own copy fetched with ``name`` (FBCNN's LIVE1_gray PNGs); None when it has none."""
    pub = REGISTRY[name].published
    if pub is None:
        return None
    folder = data_root(root) / pub.subdir
    return verify_files(folder, read_manifest(pub.manifest), VerifyReport(name, folder, note=pub.description))
