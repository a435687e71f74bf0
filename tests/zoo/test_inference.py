"""Inference engine: padding modes, tile origins, tiled vs whole-image output, the exact NTIRE-24
protocol, gray data through RGB models, FBCNN's QF in and out, NaN flagging, out-of-memory retry."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cirbench.archs import FBCNN, PromptCIR
from cirbench.zoo.factory import ModelInfo
from cirbench.zoo.inference import InferenceSettings, TorchRestorer, pad_image, tile_origins

torch.set_num_threads(1)

# Reduced PromptCIR: window 4, so inputs must be multiples of 8.
PROMPTCIR_TINY = dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2], window_size=4,
                      squeeze_factor=4, prompt_dims=[8, 16, 32], prompt_bases=[4, 4, 4])


def restorer(nets, settings=None, **info) -> TorchRestorer:
    nets = nets if isinstance(nets, list) else [nets]
    return TorchRestorer(nets, ModelInfo(name="t", **info), settings or InferenceSettings())


def rand_image(h: int, w: int, c: int = 3, seed: int = 0) -> torch.Tensor:
    """A smooth-ish random NCHW image in [0, 1] (plain noise would make every model's output noise)."""
    x = torch.rand(1, c, h + 4, w + 4, generator=torch.Generator().manual_seed(seed))
    return nn.functional.avg_pool2d(x, 5, 1)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    return (x[0].permute(1, 2, 0) * 255).round().clamp(0, 255).to(torch.uint8).numpy()


class Pointwise(nn.Module):
    """A 1x1-conv network: its output at a pixel depends on that pixel only."""

    def __init__(self, seed: int = 0, out: int = 3):
        super().__init__()
        torch.manual_seed(seed)
        self.a = nn.Conv2d(3, 8, 1)
        self.b = nn.Conv2d(8, out, 1)

    def forward(self, x):
        return x + 0.1 * self.b(torch.tanh(self.a(x)))


class Conv3(nn.Module):
    """One 3x3 convolution (zero padding): receptive radius 1."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.c = nn.Conv2d(3, 3, 3, padding=1)

    def forward(self, x):
        return x + 0.1 * self.c(x)


# --- padding --------------------------------------------------------------------------------------------
NUMPY_MODE = {"reflect": "reflect", "replicate": "edge", "symmetric": "symmetric"}


@pytest.mark.parametrize("mode", sorted(NUMPY_MODE))
@pytest.mark.parametrize(("h", "w", "multiple"), [(13, 10, 8), (16, 9, 8), (30, 50, 32), (40, 40, 16)])
def test_pad_modes_match_numpy(mode, h, w, multiple):
    x = torch.rand(1, 3, h, w)
    got = pad_image(x, multiple, mode)
    ph, pw = -h % multiple, -w % multiple
    want = np.pad(x.numpy(), ((0, 0), (0, 0), (0, ph), (0, pw)), mode=NUMPY_MODE[mode])
    assert got.shape[-2:] == (h + ph, w + pw)
    np.testing.assert_array_equal(got.numpy(), want)


def test_reflect_on_tiny_images_falls_back_to_replicate():
    x = torch.rand(1, 3, 3, 5)
    np.testing.assert_array_equal(pad_image(x, 8, "reflect").numpy(),
                                  np.pad(x.numpy(), ((0, 0), (0, 0), (0, 5), (0, 3)), mode="edge"))


def test_pad_none_and_already_a_multiple():
    x = torch.rand(1, 3, 13, 10)
    assert pad_image(x, 8, "none") is x
    y = torch.rand(1, 3, 16, 24)
    assert pad_image(y, 8, "reflect") is y


def official_pad(img: torch.Tensor) -> torch.Tensor:
    """The official PromptCIR test script's ``test()`` padding, verbatim in effect."""
    _, _, h_old, w_old = img.size()
    padding = 16 * 2
    h_pad = (h_old // padding + 1) * padding - h_old
    w_pad = (w_old // padding + 1) * padding - w_old
    img = torch.cat([img, torch.flip(img, [2])], 2)[:, :, : h_old + h_pad, :]
    return torch.cat([img, torch.flip(img, [3])], 3)[:, :, :, : w_old + w_pad]


@pytest.mark.parametrize(("h", "w"), [(20, 45), (32, 64), (33, 31), (100, 140), (481, 321), (17, 17)])
def test_official32_reproduces_the_official_padding(h, w):
    x = torch.rand(1, 3, h, w)
    got = pad_image(x, 32, "official32")
    assert got.shape[-2:] == ((h // 32 + 1) * 32, (w // 32 + 1) * 32)  # a multiple of 32 still gets +32
    assert torch.equal(got, official_pad(x))


def test_official32_beyond_one_flip_keeps_mirroring():
    """Below 16 px the pad exceeds the image (10 -> 32): the official single flip cannot fill it
    (its output is too small); cirbench keeps mirroring, as numpy's symmetric mode does."""
    x = torch.rand(1, 3, 10, 7)
    got = pad_image(x, 32, "official32")
    want = np.pad(x.numpy(), ((0, 0), (0, 0), (0, 22), (0, 25)), mode="symmetric")
    np.testing.assert_array_equal(got.numpy(), want)
    assert official_pad(x).shape[-2:] == (20, 14)


# --- tile origins -------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("size", "tile", "overlap", "align"), [
    (100, 32, 8, 8), (100, 32, 16, 8), (481, 128, 32, 8), (513, 256, 64, 16), (70, 64, 32, 8), (64, 64, 16, 8),
    (448, 128, 96, 32), (1024, 384, 96, 32), (321, 48, 40, 8), (200, 40, 8, 40),
])
def test_tile_origins_aligned_and_covering(size, tile, overlap, align):
    starts = tile_origins(size, tile, overlap, align)
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert all(s % align == 0 for s in starts), starts  # the JPEG 8x8 grid keeps its phase in every tile
    assert all(s < size for s in starts)
    covered = np.zeros(size, bool)
    for s in starts:
        covered[s:s + tile] = True
    assert covered.all(), starts
    stride = max(align, (tile - overlap) // align * align)
    assert all(b - a <= stride for a, b in zip(starts, starts[1:], strict=False))


def test_tile_origins_official_case_is_flush():
    """When size - tile is aligned (always so in the NTIRE protocol) the list is the official one:
    range(0, size - tile, tile - overlap) plus a tile flush with the far edge."""
    assert tile_origins(448, 128, 96, 32) == [*range(0, 320, 32), 320]
    assert tile_origins(1024, 384, 96, 32) == [0, 288, 576, 640]
    assert tile_origins(384, 384, 96, 32) == [0]


def test_unaligned_image_tiles_keep_the_grid():
    """A model that pads internally (FBCNN, pad_mode none) on an unaligned size: every tile starts on
    the 8x8 grid, the last one is cut short by the edge, and a pointwise model's output is unchanged."""
    seen = []

    class Record(Pointwise):
        def forward(self, x):
            seen.append(tuple(x.shape[-2:]))
            return super().forward(x)

    x = rand_image(45, 77)
    r = restorer(Record(), InferenceSettings(tile=32, overlap=8), pad_multiple=8, pad_mode="none")
    with torch.inference_mode():
        whole, _ = r._run(x, None, None)
        seen.clear()
        tiled, _ = r._run(x, None, 32)
    assert {s[0] for s in seen} == {32, 45 - 16} and {s[1] for s in seen} == {32, 77 - 48}  # last starts: 16, 48
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


# --- tiled vs whole image ------------------------------------------------------------------------------------
def test_tiled_equals_whole_for_a_pointwise_model():
    """Uniform averaging of tiles reproduces the whole-image output exactly (1e-6) when the output at
    a pixel depends on that pixel only."""
    x = rand_image(80, 72)
    r = restorer(Pointwise(), InferenceSettings(tile=32, overlap=16), pad_multiple=8, pad_mode="reflect")
    with torch.inference_mode():
        whole, _ = r._run(x, None, None)
        tiled, _ = r._run(x, None, 32)
    torch.testing.assert_close(tiled, whole, rtol=0, atol=1e-6)


def test_tiled_vs_whole_for_a_3x3_conv():
    """Receptive radius 1 < overlap: exact (1e-6) everywhere except within 1 px of an interior tile
    edge. Uniform averaging (the official rule) mixes each tile's own border pixel, which saw the
    tile's zero padding, so those rows/columns differ; the error stays below the model's own change."""
    h, w, tile, overlap = 80, 72, 32, 16
    x = rand_image(h, w)
    r = restorer(Conv3(), InferenceSettings(tile=tile, overlap=overlap), pad_multiple=8, pad_mode="reflect")
    with torch.inference_mode():
        whole, _ = r._run(x, None, None)
        tiled, _ = r._run(x, None, tile)
    near = np.zeros((h, w), bool)
    for axis, size in ((0, h), (1, w)):
        for s in tile_origins(size, tile, overlap, 8):
            for edge in (s, s + tile):
                if 0 < edge < size:
                    sl = slice(edge - 1, edge + 1)
                    if axis == 0:
                        near[sl, :] = True
                    else:
                        near[:, sl] = True
    diff = (tiled - whole).abs()[0].amax(0).numpy()
    assert diff[~near].max() <= 1e-6
    assert diff[near].max() < (whole - x).abs().max()


def test_tiled_vs_whole_for_a_reduced_promptcir():
    """PromptCIR's channel attention (RHAG CAB) and transposed attention (Restormer) pool over the
    whole input, so tiles see other statistics: tiling is an approximation. Stated tolerance, with
    random weights: the mean |tiled - whole| is at most 10 % of the mean |output - input| (the
    model's own change; measured 5.6 %), and no pixel moves by more than 0.25."""
    torch.manual_seed(0)
    net = PromptCIR(**PROMPTCIR_TINY).eval()
    x = rand_image(64, 96)
    r = restorer(net, InferenceSettings(tile=48, overlap=24), pad_multiple=8, pad_mode="reflect")
    with torch.inference_mode():
        whole, _ = r._run(x, None, None)
        tiled, _ = r._run(x, None, 48)
    d = (tiled - whole).abs()
    assert float(d.mean()) <= 0.10 * float((whole - x).abs().mean())
    assert float(d.max()) < 0.25


# --- the NTIRE-24 protocol ---------------------------------------------------------------------------------
def official_tile_eval(model, input_, tile=384, tile_overlap=96):
    """The official ``tile_eval``: square tiles, uniform averaging, clamp."""
    b, c, h, w = input_.shape
    tile = min(tile, h, w)
    assert tile % 8 == 0
    stride = tile - tile_overlap
    h_idx_list = list(range(0, h - tile, stride)) + [h - tile]
    w_idx_list = list(range(0, w - tile, stride)) + [w - tile]
    E = torch.zeros(b, c, h, w)  # noqa: N806 (official names)
    W = torch.zeros_like(E)  # noqa: N806
    for h_idx in h_idx_list:
        for w_idx in w_idx_list:
            out_patch = model(input_[..., h_idx:h_idx + tile, w_idx:w_idx + tile])
            E[..., h_idx:h_idx + tile, w_idx:w_idx + tile].add_(out_patch)
            W[..., h_idx:h_idx + tile, w_idx:w_idx + tile].add_(torch.ones_like(out_patch))
    return torch.clamp(E.div_(W), 0, 1)


def official_ntire24(model, model2, img):
    """The official script's per-image procedure: pad (+32 rule) -> tiles -> crop, for two
    checkpoints x (image, transposed image); the 4 clamped outputs averaged."""

    def test(m, x):
        h_old, w_old = x.shape[-2:]
        return official_tile_eval(m, official_pad(x))[..., :h_old, :w_old]

    lt = img.transpose(-2, -1)
    e0, e1 = test(model, img), test(model2, img)
    e2, e3 = test(model, lt).transpose(-2, -1), test(model2, lt).transpose(-2, -1)
    return (e0.clamp_(0, 1) + e1.clamp_(0, 1) + e2.clamp_(0, 1) + e3.clamp_(0, 1)) / 4.0


def ntire_restorer(nets):
    return restorer(nets, InferenceSettings.named("ntire24"), pad_multiple=32, pad_mode="official32")


def test_ntire24_setting_is_the_official_procedure_on_promptcir():
    """Reduced PromptCIR, two different random checkpoints; 100x140 pads to 128x160, so tiles are
    min(384, 128, 160) = 128 with stride 32 (the official rule needs a padded side >= 128: below,
    its stride tile - 96 is 0 or negative and the script fails or leaves pixels uncovered)."""
    nets = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        nets.append(PromptCIR(**PROMPTCIR_TINY).eval())
    img = to_uint8(rand_image(100, 140))
    x = torch.from_numpy(img).permute(2, 0, 1)[None].float() / 255.0  # what restore() feeds the model
    r = ntire_restorer(nets)
    with torch.inference_mode():
        ours, _ = r._run(x, None, r.settings.tile)
        ref = official_ntire24(nets[0], nets[1], x)
        restored = r.restore(img).image
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)
    diff = np.abs(restored.astype(int) - to_uint8(ref))
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # only float ties at .5 may round apart


def test_ntire24_setting_with_384_tiles():
    """The 384/96 tiling proper (padded 448x544: tiles at 0/64 and 0/160), with cheap conv nets."""
    nets = [Conv3(seed=1), Conv3(seed=2)]
    x = rand_image(420, 520)
    r = ntire_restorer(nets)
    with torch.inference_mode():
        ours, _ = r._run(x, None, r.settings.tile)
        ref = official_ntire24(nets[0], nets[1], x)
    torch.testing.assert_close(ours, ref, rtol=0, atol=1e-6)


def test_ntire24_setting_is_recorded_and_never_single():
    s = InferenceSettings.named("ntire24")
    assert (s.label, s.tile, s.overlap, s.ensemble) == ("ntire24", 384, 96, "transpose")
    assert InferenceSettings.named("single").label == "single"
    assert InferenceSettings.named("ntire24", precision="bf16").label == "ntire24+bf16"
    with pytest.raises(ValueError, match="unknown inference setting"):
        InferenceSettings.named("ntire")


# --- colour handling ---------------------------------------------------------------------------------------
def test_gray_through_an_rgb_model_is_the_channel_mean():
    net = Pointwise(seed=3)
    img = to_uint8(rand_image(24, 40, c=1))[..., 0]
    r = restorer(net)
    out = r.restore(img)
    assert out.image.shape == img.shape and out.image.dtype == np.uint8
    x3 = torch.from_numpy(img).float().div(255)[None, None].expand(1, 3, -1, -1)
    with torch.inference_mode():
        want = net(x3).mean(1, keepdim=True)
    np.testing.assert_array_equal(out.image, to_uint8(want)[..., 0])
    assert not np.array_equal(out.image, to_uint8(net(x3).detach()[:, :1])[..., 0])  # channels do differ


def test_colour_into_a_gray_model_is_refused():
    with pytest.raises(ValueError, match="gray"):
        restorer(Pointwise(), channels=1).restore(np.zeros((8, 8, 3), np.uint8))


# --- FBCNN: the QF in, the predicted QF out -------------------------------------------------------------------
class Spy(nn.Module):
    """A reduced FBCNN that records the qf_input it is given."""

    def __init__(self, in_nc=3):
        super().__init__()
        torch.manual_seed(0)
        self.net = FBCNN(in_nc=in_nc, out_nc=in_nc, nc=[8, 8, 8, 8], nb=1).eval()
        self.seen = []

    def forward(self, x, qf_input=None):
        self.seen.append(None if qf_input is None else qf_input.clone())
        return self.net(x, qf_input)


@pytest.mark.parametrize("channels", [3, 1])
def test_fbcnn_non_blind_gets_one_minus_qf(channels):
    spy = Spy(channels)
    r = restorer(spy, channels=channels, pad_multiple=8, pad_mode="none", takes_qf=True)
    img = to_uint8(rand_image(36, 44, c=channels))
    img = img[..., 0] if channels == 1 else img
    out = r.restore(img, qf=30)
    assert torch.equal(spy.seen[-1], torch.full((1, 1), 0.7))
    x = torch.from_numpy(img).float().div(255)
    x = x[None, None] if channels == 1 else x.permute(2, 0, 1)[None]
    with torch.inference_mode():
        _, q = spy.net(x)
    assert out.extras["qf_pred"] == pytest.approx(100 * (1 - float(q)), abs=1e-3)
    r.restore(img, qf=None)  # blind: FBCNN predicts the QF itself
    assert spy.seen[-1] is None


def test_qf_is_not_passed_to_models_that_do_not_take_it():
    spy = Spy()
    restorer(spy, pad_multiple=8, pad_mode="none", takes_qf=False).restore(np.zeros((16, 16, 3), np.uint8), qf=10)
    assert spy.seen == [None]


# --- failures --------------------------------------------------------------------------------------------------
class NaNNet(nn.Module):
    def forward(self, x):
        return x * float("nan")


def test_nonfinite_output_is_flagged():
    out = restorer(NaNNet()).restore(np.full((16, 16, 3), 128, np.uint8))
    assert out.nonfinite and out.image.dtype == np.uint8 and (out.image == 0).all()
    assert not restorer(Pointwise()).restore(np.full((16, 16, 3), 128, np.uint8)).nonfinite


class OOMAbove(nn.Module):
    """Raises the CPU allocator's out-of-memory error for inputs with a side above ``limit``."""

    def __init__(self, limit: int):
        super().__init__()
        self.limit, self.calls = limit, []

    def forward(self, x):
        self.calls.append(tuple(x.shape[-2:]))
        if max(x.shape[-2:]) > self.limit:
            raise RuntimeError(f"DefaultCPUAllocator: not enough memory: you tried to allocate {10**12} bytes. "
                               "Buy new RAM! (out of memory)")
        return x * 0.5


def test_out_of_memory_retries_with_halved_tiles():
    net = OOMAbove(limit=32)
    img = np.full((64, 64, 3), 200, np.uint8)
    out = restorer(net, InferenceSettings(min_tile=16)).restore(img)
    assert out.extras["tile"] == 32  # 64 (whole image) failed, halved once
    assert net.calls[0] == (64, 64) and all(c == (32, 32) for c in net.calls[1:])
    assert (out.image == 100).all()
    net = OOMAbove(limit=32)
    out = restorer(net, InferenceSettings(tile=128, min_tile=16)).restore(np.full((100, 100, 3), 200, np.uint8))
    assert out.extras["tile"] == 32  # 128 -> 64 -> 32


def test_out_of_memory_below_min_tile_is_raised():
    with pytest.raises(RuntimeError, match="out of memory"):
        restorer(OOMAbove(limit=8), InferenceSettings(min_tile=32)).restore(np.zeros((64, 64, 3), np.uint8))


def test_other_runtime_errors_are_not_retried():
    class Broken(nn.Module):
        calls = 0

        def forward(self, x):
            Broken.calls += 1
            raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        restorer(Broken()).restore(np.zeros((64, 64, 3), np.uint8))
    assert Broken.calls == 1
