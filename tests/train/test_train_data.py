"""Training data: image listing, per-sample determinism, QF sampling per stage, gray samples, sharding."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from cirbench.errors import ConfigError
from cirbench.jpeg import compress
from cirbench.metrics import rgb_to_y
from cirbench.train.data import (
    FixedQFs,
    JpegPatchDataset,
    QFRange,
    StepBatchSampler,
    list_images,
    seed_worker,
)

torch.set_num_threads(1)
PATCH = 16


def _smooth_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # Low-frequency content, so JPEG at different QFs gives visibly different results.
    small = rng.integers(0, 256, (h // 8 + 2, w // 8 + 2, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize((w, h), Image.BILINEAR))


@pytest.fixture(scope="module")
def image_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_images")
    rng = np.random.default_rng(0)
    (root / "sub" / "deeper").mkdir(parents=True)
    Image.fromarray(_smooth_image(rng, 40, 48)).save(root / "a.png")
    Image.fromarray(_smooth_image(rng, 33, 29)).save(root / "sub" / "b.bmp")
    Image.fromarray(_smooth_image(rng, 48, 40)).save(root / "sub" / "deeper" / "c.JPG", quality=95)
    Image.fromarray(_smooth_image(rng, 24, 20)).convert("L").save(root / "sub" / "d.tif")
    Image.fromarray(_smooth_image(rng, 12, 40)).save(root / "too_small.png")  # below the patch
    (root / "notes.txt").write_text("not an image")
    return root


def _dataset(image_dir, sampler=None, seed=0, gray=0.0, **kw) -> JpegPatchDataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        images = list_images([image_dir], min_size=PATCH)
    return JpegPatchDataset(images, PATCH, sampler or FixedQFs((10, 50)), gray, seed, **kw)


def test_list_images_is_recursive_sorted_and_skips_small(image_dir):
    with pytest.warns(UserWarning, match=r"skipped 1 image\(s\) smaller than 16px"):
        found = list_images([image_dir], min_size=PATCH)
    assert [p.relative_to(image_dir).as_posix() for p in found] == [
        "a.png", "sub/b.bmp", "sub/d.tif", "sub/deeper/c.JPG"
    ]
    with pytest.raises(ValueError, match="no usable training images"), pytest.warns(UserWarning):
        list_images([image_dir], min_size=1000)
    with pytest.raises(ConfigError, match="not found"):
        list_images([image_dir / "missing"])


def test_samples_are_float_pairs_in_unit_range(image_dir):
    ds = _dataset(image_dir)
    inp, target = ds[3]
    assert inp.shape == target.shape == (3, PATCH, PATCH)
    assert inp.dtype == target.dtype == torch.float32
    assert 0 <= float(inp.min()) and float(inp.max()) <= 1
    # The input is the cirbench encoder applied to the target patch at the sampled QF.
    sp = ds.sample_params(3)
    tgt_u8 = (target * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    expected = compress(tgt_u8, sp.qf).pixels
    assert np.array_equal((inp * 255).round().to(torch.uint8).permute(1, 2, 0).numpy(), expected)


def test_same_seed_same_batch_other_seed_other_batch(image_dir):
    a, b, c = _dataset(image_dir, seed=7), _dataset(image_dir, seed=7), _dataset(image_dir, seed=8)
    idx = [5, 0, 17, 3]  # any order: a sample depends on its index only
    batch_a = [a[i] for i in idx]
    batch_b = [b[i] for i in reversed(idx)][::-1]
    for (x1, y1), (x2, y2) in zip(batch_a, batch_b, strict=True):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert any(not torch.equal(a[i][1], c[i][1]) for i in idx)


def test_epochs_visit_every_image_once(image_dir):
    ds = _dataset(image_dir)
    n = len(ds)
    for epoch in range(3):
        seen = sorted(ds.sample_params(epoch * n + k).image for k in range(n))
        assert seen == list(range(n))


def test_qf_sampling_per_stage(image_dir):
    stage1 = _dataset(image_dir, FixedQFs((10, 20, 30, 40, 50, 60, 70)))
    qfs1 = [stage1.sample_params(i, 40, 40).qf for i in range(400)]
    assert set(qfs1) == {10, 20, 30, 40, 50, 60, 70}
    stage2 = _dataset(image_dir, QFRange(5, 95))
    qfs2 = [stage2.sample_params(i, 40, 40).qf for i in range(2000)]
    assert min(qfs2) == 5 and max(qfs2) == 95 and len(set(qfs2)) == 91
    transforms = {stage1.sample_params(i, 40, 40).transform for i in range(200)}
    assert transforms == set(range(8))
    with pytest.raises(ValueError):
        QFRange(50, 10)
    with pytest.raises(ValueError):
        FixedQFs((0, 10))


def test_log_uniform_qfs_reach_every_value_and_favour_low_ones(image_dir):
    qfs = np.array([_dataset(image_dir, QFRange(5, 95, log=True)).sample_params(i, 40, 40).qf
                    for i in range(6000)])
    assert qfs.min() == 5 and qfs.max() == 95
    # P(QF <= 30) = ln(30.5 / 4.5) / ln(95.5 / 4.5) = 0.627 for the continuous draw before rounding.
    assert abs((qfs <= 30).mean() - 0.627) < 0.03
    uniform = [_dataset(image_dir, QFRange(5, 95)).sample_params(i, 40, 40).qf for i in range(50)]
    assert uniform == [_dataset(image_dir, QFRange(5, 95, log=False)).sample_params(i, 40, 40).qf
                       for i in range(50)]


def test_gray_samples_replicate_bt601_luma(image_dir):
    ds = _dataset(image_dir, gray=1.0)
    inp, target = ds[2]
    assert torch.equal(inp[0], inp[1]) and torch.equal(inp[1], inp[2])
    assert torch.equal(target[0], target[2])
    # The target is the rounded studio-range luma of the (colour) patch.
    colour = _dataset(image_dir, gray=0.0)[2][1]
    rgb = (colour * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    assert np.array_equal((target[0] * 255).round().to(torch.uint8).numpy(), rgb_to_y(rgb))
    half = _dataset(image_dir, gray=0.3)
    frac = np.mean([half.sample_params(i, 40, 40).gray for i in range(1000)])
    assert 0.25 < frac < 0.35


def test_step_sampler_shards_the_global_batch():
    full = list(StepBatchSampler(3, 5, batch_size=4))
    assert full == [[12, 13, 14, 15], [16, 17, 18, 19]]
    r0 = list(StepBatchSampler(3, 5, 4, rank=0, world_size=2))
    r1 = list(StepBatchSampler(3, 5, 4, rank=1, world_size=2))
    assert [a + b for a, b in zip(r0, r1, strict=True)] == full
    with pytest.raises(ValueError, match="divisible"):
        StepBatchSampler(0, 1, 3, rank=0, world_size=2)


def test_dataloader_workers_do_not_change_batches(image_dir):
    ds = _dataset(image_dir)

    def batches(workers):
        loader = torch.utils.data.DataLoader(
            ds, batch_sampler=StepBatchSampler(2, 4, 3), num_workers=workers, worker_init_fn=seed_worker
        )
        return [b for b in loader]

    for (x0, y0), (x2, y2) in zip(batches(0), batches(2), strict=True):
        assert torch.equal(x0, x2) and torch.equal(y0, y2)
