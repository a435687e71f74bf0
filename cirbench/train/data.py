"""Training pairs for blind JPEG-artifact removal: random crops compressed on the fly.

Every sample is a pure function of ``(seed, global_index)``, where ``global_index = step * batch_size + i``
for sample ``i`` of the global batch at optimiser step ``step``. Nothing depends on DataLoader workers, on
how a batch is split across distributed ranks, or on how often a run was stopped and resumed, so resuming at
step ``s`` only needs ``s`` (see :class:`StepBatchSampler`).

Per sample (all choices from the sample's own RNG):

1. the image: images are visited in a fresh random order every epoch (permutation seeded by (seed, epoch));
2. a ``patch_size`` crop at a uniform position;
3. one of the 8 flips/rotations (dihedral group of the square);
4. gray with probability ``gray_fraction``: BT.601 studio-range luma, rounded as the evaluation's gray sets
   (``cirbench.metrics.rgb_to_y``), compressed as a one-channel JPEG, then input and target are both
   replicated to three channels;
5. JPEG at a quality factor from the stage's :class:`QFSampler`, with ``cirbench.jpeg.compress`` (the
   evaluation's encoder: libjpeg defaults, 4:2:0 for colour). The crop is compressed, not the whole image, so
   the 8x8 grid is aligned with the patch.

Images smaller than the patch in either dimension are **skipped with a warning**, not padded: padding would
teach the network artificial borders. Listing fails if no image is large enough.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import ConfigError
from ..images import IMAGE_SUFFIXES, read_image
from ..images import list_images as _folder_images
from ..jpeg import compress
from ..metrics import rgb_to_y

__all__ = [
    "QFSampler",
    "FixedQFs",
    "QFRange",
    "SampleParams",
    "list_images",
    "JpegPatchDataset",
    "StepBatchSampler",
    "seed_worker",
]

# Stream tags keep the epoch-order RNG and the per-sample RNG independent for the same seed.
_ORDER_STREAM, _SAMPLE_STREAM = 1, 2


class QFSampler:
    """Draws a JPEG quality factor from a sample's RNG."""

    def __call__(self, rng: np.random.Generator) -> int:  # pragma: no cover - interface
        raise NotImplementedError


@dataclass(frozen=True)
class FixedQFs(QFSampler):
    """Stage 1: uniform over a fixed set of quality factors."""

    qfs: tuple[int, ...]

    def __post_init__(self):
        if not self.qfs or any(not 1 <= int(q) <= 100 for q in self.qfs):
            raise ValueError(f"quality factors must be a non-empty set of integers in 1..100, got {self.qfs}")

    def __call__(self, rng: np.random.Generator) -> int:
        return int(self.qfs[int(rng.integers(len(self.qfs)))])


@dataclass(frozen=True)
class QFRange(QFSampler):
    """Stage 2 (online): an integer in ``[qf_min, qf_max]``, both included, uniform or log-uniform.

    Log-uniform draws ``round(exp(u))`` for ``u`` uniform in ``[ln(qf_min - 0.5), ln(qf_max + 0.5)]``, so
    every integer is reachable and low QFs, where the artifacts are worst, are drawn more often.
    """

    qf_min: int
    qf_max: int
    log: bool = False

    def __post_init__(self):
        if not 1 <= self.qf_min <= self.qf_max <= 100:
            raise ValueError(f"need 1 <= qf_min <= qf_max <= 100, got {self.qf_min}..{self.qf_max}")

    def __call__(self, rng: np.random.Generator) -> int:
        if not self.log:
            return int(rng.integers(self.qf_min, self.qf_max + 1))
        lo, hi = np.log(self.qf_min - 0.5), np.log(self.qf_max + 0.5)
        return int(min(self.qf_max, max(self.qf_min, round(float(np.exp(rng.uniform(lo, hi)))))))


@dataclass(frozen=True)
class SampleParams:
    """Every random choice behind one sample (exposed for tests and debugging)."""

    image: int  # index into the dataset's image list
    top: int
    left: int
    transform: int  # 0..7: rotate by 90 * (t % 4) degrees, then flip left-right if t >= 4
    gray: bool
    qf: int


def list_images(folders: Sequence[str | Path], min_size: int = 0) -> list[Path]:
    """Image files under ``folders`` (recursive), in a stable order: folder by folder, sorted by path.

    Files whose width or height is below ``min_size`` are left out with one warning per folder.
    """
    found: list[Path] = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            raise ConfigError(f"training image folder not found: {folder}")
        files = _folder_images(folder, recursive=True)
        small = []
        for path in files:
            if min_size:
                with Image.open(path) as im:  # reads the header only
                    if min(im.size) < min_size:
                        small.append(path.name)
                        continue
            found.append(path)
        if small:
            warnings.warn(
                f"{folder}: skipped {len(small)} image(s) smaller than {min_size}px "
                f"(e.g. {', '.join(small[:3])})",
                stacklevel=2,
            )
    if not found:
        raise ConfigError(f"no usable training images (>= {min_size}px, {' '.join(IMAGE_SUFFIXES)}) "
                         f"in {[str(f) for f in folders]}")
    return found


def _load_rgb(path: Path) -> np.ndarray:
    """The evaluation's reader (one policy for odd files); gray images are replicated to RGB."""
    img = read_image(path)
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img


def _transform(img: np.ndarray, t: int) -> np.ndarray:
    out = np.rot90(img, k=t % 4)
    if t >= 4:
        out = out[:, ::-1]
    return np.ascontiguousarray(out)


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 -> float32 3xHxW in [0, 1]."""
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)


class JpegPatchDataset(torch.utils.data.Dataset):
    """Map-style dataset indexed by the global sample index; returns ``(jpeg_input, target)``.

    Both are float32 tensors of shape (3, patch_size, patch_size) in [0, 1]. ``cache=True`` keeps decoded
    images in memory (per DataLoader worker), right for small sets such as BSDS500 + T91; turn it off for
    DF2K/LSDIR-sized sets.
    """

    def __init__(
        self,
        images: Sequence[str | Path],
        patch_size: int,
        qf_sampler: QFSampler,
        gray_fraction: float = 0.0,
        seed: int = 0,
        cache: bool = True,
    ):
        if patch_size < 8:
            raise ValueError(f"patch_size must be at least 8, got {patch_size}")
        if not 0.0 <= gray_fraction <= 1.0:
            raise ValueError(f"gray_fraction must be in [0, 1], got {gray_fraction}")
        if not images:
            raise ValueError("no training images")
        self.images = [Path(p) for p in images]
        self.patch_size = patch_size
        self.qf_sampler = qf_sampler
        self.gray_fraction = gray_fraction
        self.seed = seed
        self.cache = cache
        self._pixels: dict[int, np.ndarray] = {}
        self._order: tuple[int, np.ndarray] | None = None  # (epoch, permutation) of the last epoch used

    def __len__(self) -> int:
        # Indices are unbounded global sample numbers; one "length" is one epoch over the images.
        return len(self.images)

    def _image_index(self, index: int) -> int:
        n = len(self.images)
        epoch, pos = divmod(index, n)
        if self._order is None or self._order[0] != epoch:
            order = np.random.default_rng([self.seed, _ORDER_STREAM, epoch]).permutation(n)
            self._order = (epoch, order)
        return int(self._order[1][pos])

    def _pixels_of(self, i: int) -> np.ndarray:
        img = self._pixels.get(i)
        if img is None:
            img = _load_rgb(self.images[i])
            if self.cache:
                self._pixels[i] = img
        return img

    def sample_params(self, index: int, height: int | None = None, width: int | None = None) -> SampleParams:
        """The random choices for global sample ``index`` (image size read from disk unless given)."""
        if index < 0:
            raise IndexError(f"sample index must be non-negative, got {index}")
        image = self._image_index(index)
        if height is None or width is None:
            with Image.open(self.images[image]) as im:
                width, height = im.size
        p = self.patch_size
        if height < p or width < p:
            raise ValueError(f"{self.images[image]} ({width}x{height}) is smaller than the {p}px patch")
        rng = np.random.default_rng([self.seed, _SAMPLE_STREAM, index])
        # Fixed draw order: changing it changes every sample of every run.
        top = int(rng.integers(height - p + 1))
        left = int(rng.integers(width - p + 1))
        transform = int(rng.integers(8))
        gray = bool(rng.random() < self.gray_fraction)
        qf = self.qf_sampler(rng)
        return SampleParams(image, top, left, transform, gray, qf)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self._image_index(int(index))
        img = self._pixels_of(image)
        sp = self.sample_params(int(index), img.shape[0], img.shape[1])
        p = self.patch_size
        patch = _transform(img[sp.top : sp.top + p, sp.left : sp.left + p], sp.transform)
        if sp.gray:
            y = rgb_to_y(patch)  # rounded uint8 BT.601 luma, HxW
            jpeg = compress(y, sp.qf).pixels
            target, inp = np.repeat(y[..., None], 3, axis=2), np.repeat(jpeg[..., None], 3, axis=2)
        else:
            target, inp = patch, compress(patch, sp.qf).pixels
        return _to_tensor(inp), _to_tensor(target)


class StepBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this rank's share of the global batch for steps ``start_step .. end_step - 1``.

    The global batch at step ``s`` is samples ``s*B .. s*B + B-1``; rank ``r`` of ``N`` takes the contiguous
    slice of ``B/N`` starting at ``s*B + r*B/N``. The sampler's whole state is the step it starts from.
    """

    def __init__(self, start_step: int, end_step: int, batch_size: int, rank: int = 0, world_size: int = 1):
        if batch_size % world_size:
            raise ValueError(f"batch_size {batch_size} is not divisible by the world size {world_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is outside 0..{world_size - 1}")
        self.start_step, self.end_step = start_step, end_step
        self.batch_size, self.rank, self.world_size = batch_size, rank, world_size
        self.local_batch = batch_size // world_size

    def __len__(self) -> int:
        return max(0, self.end_step - self.start_step)

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start_step, self.end_step):
            first = step * self.batch_size + self.rank * self.local_batch
            yield list(range(first, first + self.local_batch))


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: seed each worker's global RNGs from its torch seed, one thread each.

    The samples themselves never use these RNGs (they have their own per-sample generator); this only
    keeps any third-party randomness in workers distinct and reproducible.
    """
    import random

    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)
    torch.set_num_threads(1)
