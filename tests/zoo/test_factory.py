"""Model zoo: cards, error messages, every checkpoint shape through ``create_model``, ``cirbench run``
end to end on tiny random-weight models, user models (``module:attr`` and entry points), ``models info``."""

from __future__ import annotations

import sys
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import torch
from helpers import official_keys
from PIL import Image

import cirbench.registry as registry_mod
from cirbench import jpeg, metrics
from cirbench.archs import REGISTRY as ARCHS
from cirbench.cli import main
from cirbench.config import ConfigError
from cirbench.errors import WeightsMissing
from cirbench.metrics import spaces_of
from cirbench.records import iter_records
from cirbench.zoo.cards import list_cards, load_card
from cirbench.zoo.checkpoints import save_state_dict
from cirbench.zoo.factory import build_network, create_model

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]

# Reduced configs: same code paths as the official models, a few hundred thousand parameters.
TINY = {
    "promptcir": dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 2, 2], window_size=4,
                      squeeze_factor=4, prompt_dims=[8, 16, 32], prompt_bases=[4, 4, 4]),
    "promptir": dict(dim=8, num_blocks=[1, 1, 1, 1], num_refinement_blocks=1, heads=[1, 1, 1, 1],
                     prompt_dims=[8, 16, 32], prompt_sizes=[8, 4, 2]),
    "fbcnn": dict(nc=[8, 8, 8, 8], nb=1),
}
TINY_CARD_EXTRA = {"promptcir": 'pad_multiple = 8\npad_mode = "reflect"\n',
                   "promptir": 'pad_multiple = 8\npad_mode = "reflect"\n',
                   "fbcnn": 'pad_multiple = 8\npad_mode = "none"\ntakes_qf = true\n'}


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return repr(v) if not isinstance(v, str) else f'"{v}"'


def write_tiny_card(folder: Path, arch: str, weights: str = "", url: str = "") -> str:
    """A card ``tiny-ARCH`` in ``folder`` for the reduced config; returns its name."""
    folder.mkdir(parents=True, exist_ok=True)
    kwargs = "\n".join(f"{k} = {_toml_value(v)}" for k, v in TINY[arch].items())
    weights_table = "".join(f'{k} = "{v}"\n' for k, v in (("path", weights), ("url", url)) if v)
    (folder / f"tiny-{arch}.toml").write_text(
        f'name = "tiny-{arch}"\narch = "{arch}"\ndescription = "reduced {arch} for tests"\n'
        f'{TINY_CARD_EXTRA[arch]}\n[kwargs]\n{kwargs}\n\n[weights]\n{weights_table}')
    return f"tiny-{arch}"


def random_state_dict(arch: str, seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    net = ARCHS.resolve(arch)(**TINY[arch])
    with torch.no_grad():  # make every tensor distinct from a fresh init, so a skipped load shows
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    return {k: v.clone() for k, v in net.state_dict().items()}


def _prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


# Every checkpoint shape the loader accepts: (file name, object stored). safetensors is written by
# cirbench's own saver; the others with torch.save (plain tensors, ints and strings only).
SHAPES = {
    "bare.pth": lambda sd: sd,
    "params.pth": lambda sd: {"params": sd},
    "params_ema.pth": lambda sd: {"params": {k: torch.zeros_like(v) for k, v in sd.items()}, "params_ema": sd},
    "state_dict.pth": lambda sd: {"state_dict": sd, "epoch": 3},
    "module.pth": lambda sd: _prefixed(sd, "module."),
    "net.pth": lambda sd: _prefixed(sd, "net."),
    "compiled.pth": lambda sd: {"params": _prefixed(sd, "module._orig_mod.")},
    "lightning.ckpt": lambda sd: {"state_dict": _prefixed(sd, "net."), "epoch": 7, "global_step": 70,
                                  "pytorch-lightning_version": "2.1.0", "hyper_parameters": {"lr": 2e-4}},
    "weights.safetensors": None,
}


def save_shape(sd, path: Path) -> Path:
    if path.suffix == ".safetensors":
        return save_state_dict(sd, path)
    torch.save(SHAPES[path.name](sd), path)
    return path


@pytest.fixture
def cards_dir(tmp_path, monkeypatch):
    d = tmp_path / "cards"
    d.mkdir()
    monkeypatch.setenv("CIRBENCH_MODELS", str(d))
    monkeypatch.setenv("CIRBENCH_WEIGHTS", str(tmp_path / "no-weights-here"))
    return d


@pytest.fixture
def crops(tmp_path) -> Path:
    """Two 48x40 colour crops of scikit-image's bundled photographs, as a ``folder:`` dataset."""
    import skimage.data

    d = tmp_path / "crops"
    d.mkdir()
    for name, (x, y) in (("astronaut", (200, 120)), ("coffee", (64, 300))):
        im = Image.fromarray(getattr(skimage.data, name)())
        im.crop((x, y, x + 48, y + 40)).save(d / f"{name}.png")
    return d


# --- the packaged cards -----------------------------------------------------------------------------
OFFICIAL = {"promptcir-ntire24": "promptcir.txt", "promptcir-ntire24-single": "promptcir.txt",
            "fbcnn-color": "fbcnn_color.txt", "fbcnn-gray": "fbcnn_gray.txt", "fbcnn-gray-double": "fbcnn_gray.txt",
            "promptir": "promptir.txt"}


def test_packaged_cards_load_and_validate():
    cards = list_cards()
    assert set(OFFICIAL) | {"promptcir-compact"} <= set(cards)
    for name in cards:
        card = load_card(name)
        assert card.name == name, f"{cards[name]}: name does not match the file name"
        assert card.arch in ARCHS
        assert card.license and card.citation and card.description, name
        assert card.weight_names, f"{name}: no weights file named"
        if name in OFFICIAL:
            assert card.urls and all(u.startswith("https://") for u in card.urls), name
        with torch.device("meta"):  # shapes only, no memory: the kwargs must build
            build_network(card)


@pytest.mark.parametrize("name", sorted(OFFICIAL))
def test_official_cards_match_official_state_dicts(name):
    """Each official card's kwargs build exactly the official checkpoint's names and shapes."""
    with torch.device("meta"):
        net = build_network(load_card(name))
    assert [(k, tuple(v.shape)) for k, v in net.state_dict().items()] == official_keys(OFFICIAL[name])


def test_official_card_settings():
    ntire = load_card("promptcir-ntire24")
    assert ntire.setting == "ntire24" and len(ntire.weight_names) == 2
    assert [Path(w).name for w in ntire.weight_names] == ["model_best.pth", "model_best2.pth"]
    assert (ntire.pad_mode, ntire.pad_multiple) == ("official32", 32)
    single = load_card("promptcir-ntire24-single")
    assert single.setting == "single" and single.pad_mode == "official32"
    assert single.weight_names == ntire.weight_names[:1]
    for name, ch in (("fbcnn-color", 3), ("fbcnn-gray", 1), ("fbcnn-gray-double", 1)):
        c = load_card(name)
        assert (c.channels, c.takes_qf, c.pad_mode) == (ch, True, "none")
        assert c.urls[0].startswith("https://github.com/jiaxi-jiang/FBCNN/releases/download/v1.0/")
        assert c.kwargs["in_nc"] == c.kwargs["out_nc"] == ch


# --- error messages --------------------------------------------------------------------------------
def test_unknown_model_suggests_closest():
    with pytest.raises(ConfigError, match="did you mean 'promptcir-ntire24'"):
        create_model("promptcir-ntire2")


def test_unknown_model_through_cli(capsys):
    assert main(["run", "--models", "fbcnn-colour", "--datasets", "classic5", "--qf", "10"]) == 2
    assert "did you mean 'fbcnn-color'" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "key"), [
    ('name = "bad"\narch = "fbcnn"\nlicence = "MIT"\n', "licence"),
    ('name = "bad"\narch = "fbcnn"\n[weights]\npaths = "x.pth"\n', "paths"),
    ('name = "bad"\narch = "fbcnn"\npad_multiple = "8"\n', "pad_multiple"),
    ('arch = "fbcnn"\n', "name"),
])
def test_bad_card_names_file_and_key(cards_dir, text, key):
    (cards_dir / "bad.toml").write_text(text)
    with pytest.raises(ConfigError) as err:
        load_card("bad")
    assert str(cards_dir / "bad.toml") in str(err.value) and key in str(err.value)


def test_bad_card_suggests_the_key(cards_dir):
    (cards_dir / "bad.toml").write_text('name = "bad"\narch = "fbcnn"\nlicence = "MIT"\n')
    with pytest.raises(ConfigError, match="did you mean 'license'"):
        load_card("bad")


@pytest.mark.parametrize("name", ["fbcnn-color", "promptcir-ntire24", "promptir"])
def test_missing_weights_say_where_to_get_them(cards_dir, name):
    card = load_card(name)
    if all(p.exists() for p in card.weight_paths()):
        pytest.skip("the real weights are installed here")
    with pytest.raises(WeightsMissing) as err:
        create_model(name)
    msg = str(err.value)
    assert card.urls[0] in msg and "--weights" in msg and str(card.weight_paths()[-1]) in msg


def test_missing_weights_through_cli(cards_dir, capsys):
    write_tiny_card(cards_dir, "fbcnn", weights="absent.pth", url="https://example.org/tiny.pth")
    assert main(["run", "--models", "tiny-fbcnn", "--datasets", "classic5", "--qf", "10"]) == 2
    assert "https://example.org/tiny.pth" in capsys.readouterr().err


# --- every checkpoint shape through create_model ------------------------------------------------
@pytest.mark.parametrize("arch", sorted(TINY))
@pytest.mark.parametrize("shape", sorted(SHAPES))
def test_checkpoint_shapes_load_through_create_model(cards_dir, tmp_path, arch, shape):
    sd = random_state_dict(arch)
    path = save_shape(sd, tmp_path / shape)
    name = write_tiny_card(cards_dir, arch, weights="unused.pth")
    restorer = create_model(name, weights=path)
    got = restorer.nets[0].state_dict()
    assert list(got) == list(sd)
    for k in sd:
        assert torch.equal(got[k], sd[k]), k
    assert restorer.info.extra["weights"] == [shape]


def test_card_weights_resolve_next_to_card_and_from_env(cards_dir, tmp_path, monkeypatch):
    sd = random_state_dict("fbcnn", seed=1)
    save_state_dict(sd, cards_dir / "tiny.safetensors")
    write_tiny_card(cards_dir, "fbcnn", weights="tiny.safetensors")
    assert torch.equal(create_model("tiny-fbcnn").nets[0].m_head.weight, sd["m_head.weight"])
    other = random_state_dict("fbcnn", seed=2)
    (tmp_path / "env").mkdir()
    save_state_dict(other, tmp_path / "env" / "tiny.safetensors")
    monkeypatch.setenv("CIRBENCH_WEIGHTS", str(tmp_path / "env"))  # $CIRBENCH_WEIGHTS wins over the card folder
    assert torch.equal(create_model("tiny-fbcnn").nets[0].m_head.weight, other["m_head.weight"])


def test_two_checkpoint_card_builds_an_ensemble(cards_dir):
    for i in (1, 2):
        save_state_dict(random_state_dict("fbcnn", seed=i), cards_dir / f"m{i}.safetensors")
    text = write_tiny_card(cards_dir, "fbcnn")
    card_file = cards_dir / f"{text}.toml"
    card_file.write_text(card_file.read_text().replace("[weights]\n", '[weights]\npath = ["m1.safetensors", '
                                                                      '"m2.safetensors"]\n')
                         .replace('takes_qf = true\n', 'takes_qf = true\nsetting = "ntire24"\n'))
    r = create_model("tiny-fbcnn")
    assert len(r.nets) == 2 and r.settings.name == "ntire24"
    assert not torch.equal(r.nets[0].m_head.weight, r.nets[1].m_head.weight)


# --- end to end --------------------------------------------------------------------------------------
@pytest.fixture
def user_module_importable_from_cwd(monkeypatch):
    """``examples.my_model`` resolves from the repository as the working directory, as for the
    ``cirbench`` console script (whose sys.path does not hold the working directory)."""
    monkeypatch.chdir(REPO)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(REPO))])
    for mod in ("examples", "examples.my_model"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    yield


def test_cirbench_run_end_to_end(cards_dir, tmp_path, crops, user_module_importable_from_cwd, monkeypatch):
    """Tiny random-weight PromptCIR, PromptIR and FBCNN saved as a safetensors file, a Lightning
    checkpoint and a DataParallel-prefixed BasicSR EMA checkpoint, plus a user model, all run by
    ``cirbench run`` on two 48x40 crops at QF 10, producing Y and RGB records for each image."""
    w = tmp_path / "weights"
    w.mkdir()
    save_shape(random_state_dict("promptcir"), w / "weights.safetensors")
    save_shape(random_state_dict("promptir"), w / "lightning.ckpt")
    torch.save({"params_ema": _prefixed(random_state_dict("fbcnn"), "module.")}, w / "fbcnn.pth")
    monkeypatch.setenv("CIRBENCH_WEIGHTS", str(w))  # cards name files inside a weights folder, never a path
    names = [write_tiny_card(cards_dir, "promptcir", weights="weights.safetensors"),
             write_tiny_card(cards_dir, "promptir", weights="lightning.ckpt"),
             write_tiny_card(cards_dir, "fbcnn", weights="fbcnn.pth")]
    out = tmp_path / "run"
    argv = ["run", "--models", ",".join([*names, "examples.my_model:TinyNet"]), "--datasets", f"folder:{crops}",
            "--qf", "10", "--out", str(out), "--threads", "1"]
    assert main(argv) == 0
    recs = list(iter_records(out))
    by_model: dict[str, list[dict]] = {}
    for r in recs:
        by_model.setdefault(r["model"], []).append(r)
    assert set(by_model) == {*names, "TinyNet"}
    for model, rs in by_model.items():
        assert sorted((r["image"], r["space"]) for r in rs) == sorted(
            (i, s) for i in ("astronaut.png", "coffee.png") for s in spaces_of(3)), model
        assert all(r["qf"] == 10 and r["setting"] == "single" and np.isfinite(r["psnr"]) for r in rs)
        assert all((r["height"], r["width"]) == (40, 48) for r in rs)
    assert all(0 <= r["qf_pred"] <= 100 for r in by_model["tiny-fbcnn"])
    assert "qf_pred" not in by_model["tiny-promptcir"][0]
    # TinyNet starts as the identity: its output is the JPEG input, so it scores its PSNR.
    psnr = {r["image"]: r["psnr"] for r in by_model["TinyNet"] if r["space"] == "y"}
    assert all(15 < v < 60 for v in psnr.values())
    # A second run resumes: nothing left to do.
    assert main(argv) == 0
    assert len(list(iter_records(out))) == len(recs)


def test_nonblind_run_gives_fbcnn_the_qf(cards_dir, tmp_path, crops):
    save_state_dict(random_state_dict("fbcnn"), cards_dir / "f.safetensors")
    write_tiny_card(cards_dir, "fbcnn", weights="f.safetensors")
    out = tmp_path / "run"
    assert main(["run", "--protocol", "nonblind", "--models", "tiny-fbcnn", "--datasets", f"folder:{crops}",
                 "--qf", "30", "--out", str(out)]) == 0
    recs = list(iter_records(out))
    assert len(recs) == 2 * len(spaces_of(3)) and all(r["qf"] == 30 and "qf_pred" in r for r in recs)


def test_per_qf_checkpoints_are_picked_by_the_protocol_qf(cards_dir, tmp_path, crops):
    """A card with ``[weights.per_qf]``: the non-blind protocol's QF picks the checkpoint; blind refuses."""
    save_state_dict(random_state_dict("promptir", seed=1), cards_dir / "q10.safetensors")
    save_state_dict(random_state_dict("promptir", seed=2), cards_dir / "q40.safetensors")
    name = write_tiny_card(cards_dir, "promptir")
    with open(cards_dir / f"{name}.toml", "a") as fh:
        fh.write('[weights.per_qf]\n10 = "q10.safetensors"\n40 = "q40.safetensors"\n')
    out = tmp_path / "run"
    assert main(["run", "--protocol", "nonblind", "--models", name, "--datasets", f"folder:{crops}",
                 "--qf", "10,40", "--out", str(out)]) == 0
    recs = [r for r in iter_records(out) if r["space"] == "y"]
    assert sorted((r["image"], r["qf"]) for r in recs) == sorted(
        (i, q) for i in ("astronaut.png", "coffee.png") for q in (10, 40))
    # Each QF's numbers are those of its own checkpoint, run on its own.
    for qf in (10, 40):
        alone = create_model(str(cards_dir / f"{name}.toml"), weights=cards_dir / f"q{qf}.safetensors")
        img = np.asarray(Image.open(crops / "astronaut.png"))
        comp = jpeg.compress(img, qf).pixels
        want = metrics.image_metrics(img, alone.restore(comp).image)["y"]["psnr"]
        got = next(r["psnr"] for r in recs if r["image"] == "astronaut.png" and r["qf"] == qf)
        assert got == pytest.approx(want, abs=1e-9)
    assert main(["run", "--protocol", "blind", "--models", name, "--datasets", f"folder:{crops}",
                 "--qf", "10", "--out", str(tmp_path / "blind")]) == 2  # needs the QF


def test_weights_flag_overrides_the_card(cards_dir, tmp_path, crops):
    path = save_shape(random_state_dict("promptir"), tmp_path / "params.pth")
    write_tiny_card(cards_dir, "promptir", weights="absent.pth")
    out = tmp_path / "run"
    assert main(["run", "--models", "tiny-promptir", "--weights", str(path), "--datasets", f"folder:{crops}",
                 "--qf", "10", "--out", str(out)]) == 0
    assert len(list(iter_records(out))) == 2 * len(spaces_of(3))


# --- user models -----------------------------------------------------------------------------------
def test_user_model_from_the_working_directory(user_module_importable_from_cwd):
    r = create_model("examples.my_model:TinyNet")
    assert (r.info.name, r.info.channels, r.info.pad_multiple, r.info.takes_qf) == ("TinyNet", 3, 8, False)
    img = np.random.default_rng(0).integers(0, 256, (20, 28, 3), dtype=np.uint8)
    assert np.array_equal(r.restore(img).image, img)  # zero-initialised tail: the identity


def test_user_model_import_errors_are_clear(user_module_importable_from_cwd):
    with pytest.raises(ConfigError, match="cannot import"):
        create_model("examples.no_such_module:Net")
    with pytest.raises(ConfigError, match="cannot import"):
        create_model("examples.my_model:NoSuchNet")


def test_user_model_callable_and_weights(tmp_path, monkeypatch):
    (tmp_path / "plugin_mod.py").write_text(
        "import torch\n"
        "def halve(x):\n    return x * 0.5\n"
        "class Net(torch.nn.Module):\n"
        "    in_channels = 1\n"
        "    def __init__(self):\n        super().__init__()\n        self.scale = torch.nn.Parameter(torch.ones(1))\n"
        "    def forward(self, x):\n        return x * self.scale\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    img = np.full((8, 8, 3), 200, np.uint8)
    assert np.all(create_model("plugin_mod:halve").restore(img).image == 100)
    torch.save({"scale": torch.tensor([0.25])}, tmp_path / "s.pth")
    r = create_model("plugin_mod:Net", weights=tmp_path / "s.pth")
    assert r.info.channels == 1
    assert np.all(r.restore(np.full((8, 8), 200, np.uint8)).image == 50)


def test_entry_point_model(monkeypatch, user_module_importable_from_cwd):
    ep = EntryPoint(name="tinynet", value="examples.my_model:TinyNet", group="cirbench.models")
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [ep] if group == "cirbench.models" else [])
    r = create_model("tinynet")
    assert r.info.name == "TinyNet" and r.info.extra["user"] == "examples.my_model:TinyNet"


# --- models info ---------------------------------------------------------------------------------------
def test_model_stats_counts_conv_flops(tmp_path, monkeypatch):
    from cirbench.zoo.profile import model_stats

    (tmp_path / "conv_mod.py").write_text(
        "import torch\nclass Conv(torch.nn.Conv2d):\n    def __init__(self):\n"
        "        super().__init__(3, 3, 3, padding=1, bias=False)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    s = model_stats("conv_mod:Conv", size=16, memory=False)
    assert s["params"] == 81 and s["input_shape"] == (1, 3, 16, 16)
    assert s["flops"] == 2 * 81 * 16 * 16  # 2 FLOPs per multiply-add


def test_models_info_without_weights(cards_dir, capsys):
    write_tiny_card(cards_dir, "promptcir", weights="absent.safetensors", url="https://example.org/w")
    assert main(["models", "info", "tiny-promptcir", "--size", "32"]) == 0
    out = capsys.readouterr().out
    for needle in ("architecture: promptcir", "parameters:", "GFLOPs", "network input 1x3x32x32",
                   "peak memory of one CPU forward", "MISSING", "https://example.org/w"):
        assert needle in out, needle


def test_models_info_official_padding_and_weights(cards_dir, tmp_path):
    from cirbench.zoo.profile import model_stats

    write_tiny_card(cards_dir, "fbcnn")
    path = save_shape(random_state_dict("fbcnn"), tmp_path / "module.pth")
    s = model_stats("tiny-fbcnn", size=20, weights=str(path), memory=False)
    assert s["input_shape"] == (1, 3, 20, 20) and "loaded" in s["weights_status"]
    # official32 adds 32 even to a multiple of 32: 64 -> 96, as the network really sees it
    card = cards_dir / "tiny-promptcir.toml"
    write_tiny_card(cards_dir, "promptcir")
    card.write_text(card.read_text().replace('pad_multiple = 8\npad_mode = "reflect"', 'pad_multiple = 32\n'
                                                                                        'pad_mode = "official32"'))
    assert model_stats("tiny-promptcir", size=64, memory=False)["input_shape"] == (1, 3, 96, 96)
