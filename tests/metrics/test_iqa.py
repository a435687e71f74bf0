"""pyiqa's metrics through cirbench, in pyiqa's environment (``nox -s iqa``; skipped elsewhere with one reason).

Every test here blocks the network: a socket may connect to 127.0.0.1 (the local test server) and nowhere else.
- Download-free metrics: each record equals pyiqa's own call on the same images (PIL, ``create_metric``
  defaults), per image, to 1e-6 on LIVE1 QF 10; direction and full/no reference come from pyiqa's config.
- Gray data are replicated to three channels; cirbench's PSNR and SSIM agree with pyiqa's on unrounded Y.
- A lower-is-better metric (GMSD) is ranked lowest-first, and its network is built once per run.
- Weights: a card's files come from the local server, verified, into the folders pyiqa and torchvision read, and
  pyiqa builds the network from them without a download; a file no card pins is refused, not fetched.
"""

from __future__ import annotations

import hashlib
import io
import re
import socket
import warnings

import numpy as np
import pytest

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # pyiqa 0.1.16 leaves a YAML file open at import
        import pyiqa
except Exception as exc:  # absent, or torchvision beside a CPU torch: one reason for the whole module
    pytest.skip(f"pyiqa cannot be imported here ({type(exc).__name__}); these tests run in its environment: "
                "nox -s iqa", allow_module_level=True)

import torch
from PIL import Image

from cirbench.cli import main
from cirbench.errors import CheckpointError, ConfigError, WeightsMissing
from cirbench.jpeg import compress
from cirbench.metrics import REGISTRY, get_metric, image_metrics, iqa, rgb_to_y
from cirbench.records import iter_records, read_run_info, recorded_metrics
from cirbench.report import render

FREE = ("ms_ssim", "gmsd", "fsim", "vif", "nlpd", "vsi", "piqe")  # pyiqa metrics that load no file


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Connections anywhere but 127.0.0.1 fail, and are listed: every test ends with none tried."""
    tried = []
    real = socket.socket.connect

    def connect(self, address):
        if isinstance(address, tuple) and address[0] in ("127.0.0.1", "localhost"):
            return real(self, address)
        tried.append(address)
        raise OSError("network blocked in the tests")

    monkeypatch.setattr(socket.socket, "connect", connect)
    yield tried
    assert not tried, f"something tried the network: {tried}"


def _tensor(img: Image.Image) -> torch.Tensor:
    """pyiqa's reading of an image (torchvision's ToTensor): uint8 RGB to float32 / 255, 1x3xHxW."""
    return torch.from_numpy(np.array(img.convert("RGB"), dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255


def _jpeg(img: Image.Image, qf: int) -> Image.Image:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=qf)
    return Image.open(io.BytesIO(buf.getvalue())).convert("RGB")


def test_download_free_metrics_equal_pyiqa_per_image(data_root, tmp_path):
    out = tmp_path / "run"
    assert main(["run", "--models", "jpeg", "--datasets", "live1", "--qf", "10", "--metrics",
                 ",".join(f"pyiqa:{n}" for n in FREE), "--data-root", str(data_root), "--out", str(out),
                 "--no-profile"]) == 0
    records = {r["image"]: r for r in iter_records(out) if r["space"] == "rgb"}
    nets = {n: pyiqa.create_metric(n, device="cpu") for n in FREE}
    files = sorted((data_root / "live1").glob("*.bmp"))
    assert len(files) == len(records) == 29
    worst = 0.0
    for f in files:
        gt = Image.open(f).convert("RGB")
        x, y = _tensor(_jpeg(gt, 10)), _tensor(gt)
        with torch.no_grad():
            for n, net in nets.items():
                want = float(net(x) if net.metric_mode == "NR" else net(x, y))  # the JPEG input alone, for NR
                worst = max(worst, abs(records[f.name][n] - want))
                assert records[f.name][n] == pytest.approx(want, abs=1e-6), f"{f.name} {n}"
    specs = recorded_metrics(read_run_info(out))
    for n, net in nets.items():
        assert specs[n]["higher_is_better"] == (not net.lower_better), n
        assert specs[n]["reference"] == ("none" if net.metric_mode == "NR" else "full"), n
        assert specs[n]["details"]["pyiqa"] == pyiqa.__version__
    assert not specs["gmsd"]["higher_is_better"] and specs["ms_ssim"]["higher_is_better"]
    print(f"largest per-image difference to pyiqa: {worst:.3g}")


def test_our_psnr_and_ssim_agree_with_pyiqas_on_unrounded_y(data_root):
    """The cross-check of cirbench's own metrics: pyiqa's Y (BasicSR's) is ``y-float``. PSNR agrees to float32's
    precision; pyiqa's SSIM is its own implementation, within 1e-3 (LIVE1 QF 10: 2e-4 to 5e-4)."""
    psnr = pyiqa.create_metric("psnr", test_y_channel=True, color_space="ycbcr", device="cpu")
    ssim = pyiqa.create_metric("ssim", test_y_channel=True, color_space="ycbcr", device="cpu")
    for name in ("bikes.bmp", "building2.bmp", "caps.bmp"):
        gt = Image.open(data_root / "live1" / name).convert("RGB")
        jp = _jpeg(gt, 10)
        ours = image_metrics(np.asarray(gt), np.asarray(jp), ["y-float"])["y-float"]
        assert ours["psnr"] == pytest.approx(float(psnr(_tensor(jp), _tensor(gt))), abs=1e-3), name
        assert ours["ssim"] == pytest.approx(float(ssim(_tensor(jp), _tensor(gt))), abs=1e-3), name


def test_gray_is_replicated_to_three_channels(data_root):
    gt = rgb_to_y(np.asarray(Image.open(data_root / "live1" / "bikes.bmp").convert("RGB"))[:200, :240])
    jp = compress(gt, 10).pixels
    got = image_metrics(gt, jp, metrics=["pyiqa:gmsd"])
    assert set(got) == {"gray"}

    def three(a):
        return torch.from_numpy(np.repeat(a[None, None], 3, 1)).float() / 255

    want = float(pyiqa.create_metric("gmsd", device="cpu")(three(jp), three(gt)))
    assert got["gray"]["gmsd"] == pytest.approx(want, abs=1e-6)


def test_lower_is_better_is_ranked_lowest_first_and_built_once(data_root, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for name in ("bikes.bmp", "caps.bmp"):  # crops: quick, and above ms_ssim's 161-pixel minimum
        Image.open(data_root / "live1" / name).convert("RGB").crop((0, 0, 248, 200)).save(folder / f"{name}.png")
    (tmp_path / "blurmod.py").write_text(
        "import torch.nn.functional as F\n"
        "def Blur(x):\n"
        "    return F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode='replicate'), 5, stride=1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(iqa, "_NETS", {})
    built = []
    real = pyiqa.create_metric
    monkeypatch.setattr(pyiqa, "create_metric", lambda name, **kw: built.append(name) or real(name, **kw))
    out = tmp_path / "run"
    assert main(["run", "--models", "jpeg,promptcir-compact,blurmod:Blur", "--datasets", f"folder:{folder}",
                 "--qf", "10", "--metrics", "psnr,pyiqa:gmsd", "--out", str(out), "--no-profile"]) == 0
    assert built == ["gmsd"]  # once for the run: 3 models x 2 images
    md = render([out], "md", space="rgb")
    assert "PSNR / GMSD↓" in md
    quality = md.split("### Efficiency")[0]
    rows = {m.group(1): m.group(2) for m in re.finditer(r"^\| (jpeg|promptcir-compact|Blur) \| (.+) \|$", quality,
                                                          re.M)}
    gmsd = {k: v.split(" / ")[1] for k, v in rows.items()}
    value = {k: float(re.sub(r"[^0-9.]", "", v)) for k, v in gmsd.items()}
    best = min(("promptcir-compact", "Blur"), key=value.get)  # the JPEG input is not ranked
    other = "Blur" if best == "promptcir-compact" else "promptcir-compact"
    assert gmsd[best].startswith("**") and not gmsd[other].startswith("**")
    assert value[best] < value[other]
    assert not gmsd["jpeg"].startswith("**")


# ------------------------------------------------------------------------------------ weights


@pytest.fixture
def cache(tmp_path, monkeypatch):
    root = tmp_path / "cache"
    monkeypatch.setenv("CIRBENCH_CACHE", str(root))
    monkeypatch.delenv("CIRBENCH_OFFLINE", raising=False)  # these fetch from 127.0.0.1
    monkeypatch.setattr(REGISTRY, "entries", dict(REGISTRY.entries))
    monkeypatch.setattr(iqa, "_CARDS", dict(iqa._CARDS))
    monkeypatch.setattr(iqa, "_BY_PYIQA", dict(iqa._BY_PYIQA))
    monkeypatch.setattr(iqa, "_NETS", {})
    return root


def _save(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def test_weights_come_from_the_card_and_pyiqa_never_downloads(tmp_path, cache, http_server):
    """LPIPS from stand-in files (random weights: the values mean nothing) served on 127.0.0.1 under the names pyiqa
    and torchvision open; pyiqa's and torchvision's downloaders are never reached."""
    import torchvision

    torch.manual_seed(0)
    lins = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 192, 384, 256, 256))}
    served = {"LPIPS_v0.1_alex-df73285e.pth": ("pyiqa", _save(lins)),
              "alexnet-owt-7be5be79.pth": ("checkpoints", _save(torchvision.models.alexnet().state_dict()))}
    entries = []
    for name, (folder, data) in served.items():
        (http_server.root / name).write_bytes(data)
        entries.append(f'\n[[files]]\nname = "{name}"\nurl = "{http_server.url}/{name}"\nfolder = "{folder}"\n'
                       f'sha256 = "{hashlib.sha256(data).hexdigest()}"\nbytes = {len(data)}\nlicense = "test"\n')
    card = tmp_path / "cards" / "lpips_standin.toml"
    card.parent.mkdir()
    card.write_text('pyiqa = "lpips"\nlabel = "LPIPS"\nhigher_is_better = false\nreference = "full"\n'
                    + "".join(entries))
    iqa.register_card(iqa.load_card(card))
    m = get_metric("lpips_standin").ready("cpu")
    files = sorted(p.relative_to(cache).as_posix() for p in cache.rglob("*") if p.is_file())
    assert files == ["torch/hub/checkpoints/alexnet-owt-7be5be79.pth",
                     "torch/hub/pyiqa/LPIPS_v0.1_alex-df73285e.pth"]  # what the card pins, and nothing else
    assert m.details["weights_sha256"] == {n: hashlib.sha256(d).hexdigest() for n, (_, d) in served.items()}
    rng = np.random.default_rng(1)
    a = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    b = np.clip(a.astype(int) + rng.integers(-40, 40, a.shape), 0, 255).astype(np.uint8)
    same, other = image_metrics(a, a, ["rgb"], [m])["rgb"]["lpips_standin"], \
        image_metrics(a, b, ["rgb"], [m])["rgb"]["lpips_standin"]
    assert same == 0.0 and np.isfinite(other) and other > 0
    iqa.destination(iqa.card_of("lpips_standin").files[0]).write_bytes(_save({}))  # changed on disk
    iqa._NETS.clear()
    with pytest.raises(CheckpointError, match="the card pins"):  # never built from a file that is not the card's
        get_metric("lpips_standin").ready("cpu")


def test_a_file_no_card_pins_is_refused_not_fetched(cache):
    with pytest.raises(WeightsMissing, match=r"pyiqa:brisque wanted to download https://\S+ .*metric card") as err:
        get_metric("pyiqa:brisque").ready("cpu")
    assert "\n" not in str(err.value)
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_a_card_that_contradicts_pyiqa_is_refused(tmp_path, cache):
    card = tmp_path / "gmsd_up.toml"
    card.write_text('pyiqa = "gmsd"\nlabel = "GMSD"\nhigher_is_better = true\nreference = "full"\n')
    iqa.register_card(iqa.load_card(card))
    with pytest.raises(ConfigError, match="lower is better; the card disagrees"):
        get_metric("gmsd_up").ready("cpu")


def test_a_name_cirbench_has_is_recorded_apart():
    m = get_metric("pyiqa:psnr")
    assert m.name == "pyiqa_psnr" and m.source == "pyiqa:psnr" and get_metric("psnr").source == "builtin"
    with pytest.raises(ConfigError, match="compares image sets"):
        get_metric("pyiqa:fid")
    with pytest.raises(ConfigError, match="has no metric 'gmds'.*did you mean 'gmsd'"):
        get_metric("pyiqa:gmds")
