"""The metric spec and registry: plug-in functions, decorator registration, entry points, ``module:attr`` only
where code is allowed, specs that travel through run.json, and no metric name spelled outside the wing."""

from __future__ import annotations

import ast
import re
from importlib.metadata import EntryPoint
from pathlib import Path

import numpy as np
import pytest
import skimage.data

import cirbench.registry as registry_mod
from cirbench import metrics
from cirbench.errors import ConfigError
from cirbench.jpeg import compress
from cirbench.metrics import Metric, get_metric, image_metrics, register, resolve_metrics

PKG = Path(__file__).resolve().parents[2] / "cirbench"


@pytest.fixture
def plugin_module(tmp_path, monkeypatch):
    (tmp_path / "my_iqa.py").write_text(
        "import numpy as np\n"
        "def mae(restored, target):\n"
        "    return float(np.abs(restored.astype(np.float64) - target.astype(np.float64)).mean())\n"
        "mae.higher_is_better = False\n"
        "mae.decimals = 3\n"
        "def brightness(restored):\n"
        "    return float(restored.mean())\n"
        "brightness.reference = 'none'\n"
        "brightness.spaces = ('rgb', 'gray')\n"
        "def kinds(restored, target):\n"
        "    return float(restored.dtype == np.float64)\n"
        "kinds.spaces = ('y', 'y-float')\n"
        "def psnr(restored, target):\n"
        "    return 0.0\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "my_iqa"


def _pair():
    gt = skimage.data.chelsea()[:64, :80]
    return gt, compress(gt, 10).pixels


def test_builtin_specs():
    psnr, ssim, psnrb = (get_metric(m) for m in metrics.DEFAULT_METRICS)
    assert (psnr.label, psnr.unit, psnr.decimals, psnr.higher_is_better, psnr.tol) == ("PSNR", "dB", 2, True, 0.005)
    assert (ssim.label, ssim.unit, ssim.decimals, ssim.tol) == ("SSIM", "", 4, 1e-4)
    assert (psnrb.label, psnrb.tol) == ("PSNR-B", 0.005)
    assert set(psnr.spaces) == set(metrics.SPACES) and psnr.batched and psnr.reference == "full"


def test_plugin_function_contract(plugin_module):
    gt, jp = _pair()
    mae = get_metric(f"{plugin_module}:mae")
    assert (mae.name, mae.higher_is_better, mae.decimals, mae.source) == ("mae", False, 3, "my_iqa:mae")
    assert mae.spaces == metrics.PLUGIN_SPACES and not mae.batched
    got = image_metrics(gt, jp, metrics=["psnr", mae])
    want = np.abs(gt.astype(float) - jp.astype(float)).mean()  # rgb: HxWx3 uint8, as the contract says
    assert got["rgb"]["mae"] == pytest.approx(want, abs=1e-12)
    y = metrics.rgb_to_y(gt).astype(float) - metrics.rgb_to_y(jp).astype(float)
    assert got["y"]["mae"] == pytest.approx(np.abs(y).mean(), abs=1e-12)
    assert "mae" not in got["y-float"] and "psnr" in got["y-float"]  # y-float is opt-in for plug-ins


def test_no_reference_and_space_choice(plugin_module):
    gt, jp = _pair()
    got = image_metrics(gt, jp, metrics=[f"{plugin_module}:brightness", f"{plugin_module}:kinds"])
    assert got["rgb"]["brightness"] == pytest.approx(jp.mean()) and "brightness" not in got["y"]
    assert got["y"]["kinds"] == 0.0 and got["y-float"]["kinds"] == 1.0  # uint8 for y, float64 for y-float


def test_import_paths_only_where_code_is_allowed(plugin_module):
    with pytest.raises(ConfigError, match="import path; a data file may name only registered metric"):
        get_metric(f"{plugin_module}:mae", allow_code=False, where="protocols/x.toml metrics")
    with pytest.raises(ConfigError, match="unknown metric 'pnsr'.*did you mean 'psnr'"):
        get_metric("pnsr")
    with pytest.raises(ConfigError, match="already has"):
        get_metric(f"{plugin_module}:psnr")  # would overwrite the built-in's records
    with pytest.raises(ConfigError, match="asked for twice"):
        resolve_metrics(["psnr", "psnr"])


def test_decorator_registration(monkeypatch):
    monkeypatch.setattr(metrics.REGISTRY, "entries", dict(metrics.REGISTRY.entries))

    @register(higher_is_better=False, unit="", decimals=3, spaces=("gray",))
    def max_error(restored, target):
        return float(np.abs(restored.astype(int) - target.astype(int)).max())

    m = get_metric("max_error", allow_code=False)  # registered: a data file may name it
    assert m.fn is max_error and not m.higher_is_better
    g = np.zeros((16, 16), np.uint8)
    assert image_metrics(g, g + 3, metrics=["max_error"]) == {"gray": {"max_error": 3.0}}


def test_entry_point_metric(plugin_module, monkeypatch):
    ep = EntryPoint(name="mae", value=f"{plugin_module}:mae", group="cirbench.metrics")
    monkeypatch.setattr(registry_mod, "entry_points", lambda group: [ep] if group == "cirbench.metrics" else [])
    assert "mae" in metrics.metric_names()
    assert get_metric("mae", allow_code=False).source == "my_iqa:mae"


def test_spec_round_trips_through_run_json():
    m = Metric(name="lpips", label="LPIPS", decimals=4, higher_is_better=False, spaces=("rgb",), tolerance=2e-4)
    back = Metric.from_info("lpips", m.info())
    assert back == m and back.fn is None
    with pytest.raises(ConfigError, match="not importable here"):
        back.compute(None)
    with pytest.raises(ConfigError, match="spaces"):
        Metric(name="x", spaces=("ycbcr",))


def _spelled(tree: ast.AST, names: set[str]) -> list[tuple[int, str]]:
    docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                  if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
                  and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    pat = re.compile(r"(?<![\w-])(" + "|".join(map(re.escape, sorted(names))) + r")(?![\w-])")
    return [(n.lineno, n.value) for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str) and id(n) not in docstrings and pat.search(n.value)]


# The training config's loss vocabulary: "psnr" names the -PSNR *loss* (HINet's), a loss, not the metric.
LOSS_VOCABULARY = {("train/config.py", '"psnr"'), ("train/loop.py", '"psnr"')}


def test_no_metric_name_is_spelled_outside_the_metrics_wing():
    """Direction, decimals, unit and label come from the spec; a name written into a consumer would drift. Every
    registered name counts: cirbench's own and those of the metric cards (cirbench/data/metrics/)."""
    names = set(metrics.metric_names())
    found = []
    for f in sorted(PKG.rglob("*.py")):
        rel = f.relative_to(PKG).as_posix()
        if rel.startswith("metrics/"):
            continue
        for line, text in _spelled(ast.parse(f.read_text(encoding="utf-8")), names):
            if (rel, repr(text).replace("'", '"')) not in LOSS_VOCABULARY:
                found.append(f"cirbench/{rel}:{line}: {text[:60]!r}")
    assert not found, "metric names spelled outside cirbench/metrics:\n" + "\n".join(found)


def test_the_spelling_check_bites():
    tree = ast.parse('"""psnr in a docstring is prose."""\nx = {"psnr": 2}\ny = "val_psnr"\n')
    assert _spelled(tree, {"psnr"}) == [(2, "psnr")]


def test_a_metric_with_a_setup_is_built_once_per_run_and_its_details_recorded(tmp_path, monkeypatch, capsys):
    """A network metric (pyiqa's) builds in setup(device), once a run; run.json records what it was built from,
    and a resume built from something else is refused."""
    from PIL import Image

    from cirbench.cli import main
    from cirbench.records import read_run_info, recorded_metrics

    monkeypatch.setattr(metrics.REGISTRY, "entries", dict(metrics.REGISTRY.entries))
    folder = tmp_path / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    built, lib = [], {"version": "1"}

    def setup(device):
        built.append(device)
        return (lambda pair: pair.out.flatten(1).mean(1)), dict(lib)

    metrics.REGISTRY.register("brightness", Metric(name="brightness", reference="none", batched=True, device="any",
                                                   spaces=("rgb",), setup=setup))
    out = tmp_path / "run"
    args = ["run", "--models", "jpeg", "--datasets", f"folder:{folder}", "--qf", "10", "--metrics",
            "psnr,brightness", "--out", str(out), "--no-profile", "--device", "cpu"]
    assert main(args) == 0
    assert built == ["cpu"]  # once for 3 images
    specs = recorded_metrics(read_run_info(out))
    assert specs["brightness"]["details"] == {"version": "1"} and "details" not in specs["psnr"]
    capsys.readouterr()
    lib["version"] = "2"
    assert main(args) == 2
    assert "brightness records were made with another version (1 then, 2 now)" in capsys.readouterr().err
