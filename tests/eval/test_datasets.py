"""Dataset registry, data-root precedence, samples, folder:PATH, gray variants and verify().

Tests that read a standard set take it from the ``data_root`` fixture ($CIRBENCH_DATA) and skip without it."""

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cirbench.errors import ConfigError
from cirbench.eval import datasets
from cirbench.eval.datasets import REGISTRY, DatasetMissing, data_root, get_dataset, verify
from cirbench.images import read_image

REPO = Path(__file__).resolve().parents[2]


def test_registry_names():
    assert set(REGISTRY) == {"live1", "live1_gray", "classic5", "bsds500", "bsds500_gray", "div2k", "div2k_gray",
                             "samples", "samples_gray"}
    assert {n for n, s in REGISTRY.items() if not s.color} == {"live1_gray", "classic5", "bsds500_gray",
                                                               "div2k_gray", "samples_gray"}
    for name in ("live1_gray", "bsds500_gray", "div2k_gray"):
        assert REGISTRY[name].gray_of == name.removesuffix("_gray")
    assert len(datasets.read_manifest("classic5.tsv")) == 5
    assert len(datasets.read_manifest("live1.tsv")) == 29
    assert len(datasets.read_manifest("bsds500.tsv")) == 200
    assert REGISTRY["div2k"].expected == tuple(f"{i:04d}.png" for i in range(801, 901))


def test_manifests_match_shared(data_root):
    """The packaged manifests are the ones of the data root's sets (sha256 per file)."""
    for name, sub in (("classic5.tsv", "classic5"), ("live1.tsv", "live1"), ("bsds500.tsv", "bsds500/test")):
        shared = data_root / sub / "MANIFEST.tsv"
        if not shared.is_file():
            continue
        ours = {k: v["sha256"] for k, v in datasets.read_manifest(name).items()}
        theirs = dict(line.split("\t")[0:6:5] for line in shared.read_text().splitlines()[1:] if line)
        assert ours == theirs


def test_no_third_party_images_ship_with_cirbench():
    """Only manifests and sources (facts) are packaged; the offline default reads scikit-image's files."""
    shipped = [p for p in (REPO / "cirbench").rglob("*") if p.suffix.lower() in
               (".bmp", ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".ppm", ".pgm", ".webp")]
    assert shipped == []


def test_samples_read_scikit_image_files(tmp_path):
    import skimage.data

    colour, gray = get_dataset("samples", tmp_path), get_dataset("samples_gray", tmp_path)
    assert colour.source == gray.source == "scikit-image"
    assert [p.name for p in colour.files] == ["astronaut.png", "chelsea.png", "coffee.png"]
    assert np.array_equal(colour.load(colour.files[0]), skimage.data.astronaut())
    assert all(gray.load(p).ndim == 2 for p in gray.files) and len(gray) == 5
    assert np.array_equal(gray.load(gray.files[0]), skimage.data.camera())
    assert verify("samples").ok


def test_data_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("CIRBENCH_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert data_root(tmp_path / "arg") == tmp_path / "arg"
    assert data_root(str(tmp_path / "arg")) == tmp_path / "arg"
    assert data_root() == tmp_path / "env"
    assert data_root(None) == tmp_path / "env"
    monkeypatch.delenv("CIRBENCH_DATA")
    assert data_root() == tmp_path / "xdg" / "cirbench" / "datasets"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert data_root() == tmp_path / "home" / ".cache" / "cirbench" / "datasets"


def test_data_root_from_env_is_used(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("CIRBENCH_DATA", str(data_root))
    ds = get_dataset("classic5")
    assert ds.source == "data-root" and ds.root == data_root / "classic5"
    # the explicit argument beats the environment
    with pytest.raises(DatasetMissing):
        get_dataset("classic5", tmp_path)


def test_absent_sets_name_the_fetch_command(tmp_path):
    for name, cmd in (("classic5", "classic5"), ("live1_gray", "live1"), ("bsds500", "bsds500"),
                      ("div2k_gray", "div2k")):
        with pytest.raises(DatasetMissing) as err:
            get_dataset(name, tmp_path)
        msg = str(err.value)
        assert name in msg and str(tmp_path) in msg and f"cirbench datasets fetch {cmd}" in msg


def test_the_tests_skip_reason_names_the_command_that_fills_the_data_root(tmp_path):
    from helpers import standard_data_problem

    fix = "cirbench datasets fetch classic5 live1 live1_gray bsds500"
    unset = standard_data_problem(None)
    assert "CIRBENCH_DATA is unset" in unset and f"`{fix}`" in unset and "set CIRBENCH_DATA=DIR" in unset
    assert f"`{fix} --data-root {tmp_path / 'nope'}`" in standard_data_problem(tmp_path / "nope")
    for sub, manifest in (("classic5", "classic5.tsv"), ("live1", "live1.tsv")):  # names are what is checked
        (tmp_path / sub).mkdir()
        for name in datasets.read_manifest(manifest):
            (tmp_path / sub / name).touch()
    reason = standard_data_problem(tmp_path)
    assert f"lacks live1_gray, bsds500; get them with `cirbench datasets fetch live1_gray bsds500 --data-root " \
           f"{tmp_path}`" in reason
    (tmp_path / "live1_gray").mkdir()
    for name in datasets.read_manifest("live1_gray_fbcnn.tsv"):
        (tmp_path / "live1_gray" / name).touch()
    (tmp_path / "bsds500" / "test").mkdir(parents=True)
    for name in datasets.read_manifest("bsds500.tsv"):
        (tmp_path / "bsds500" / "test" / name).touch()
    assert standard_data_problem(tmp_path) is None


def test_unknown_dataset_suggests():
    with pytest.raises(ConfigError, match="did you mean 'classic5'"):
        get_dataset("clasic5")


def test_folder_dataset(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("b.png", "a.bmp", "c.jpg"):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "sub").mkdir()
    ds = get_dataset(f"folder:{tmp_path}")
    assert [p.name for p in ds.files] == ["a.bmp", "b.png", "c.jpg"]
    assert ds.source == "folder" and not ds.gray
    assert [n for n, _ in ds] == ["a.bmp", "b.png", "c.jpg"]
    assert ds.load(ds.files[1]).shape == (20, 24, 3)
    with pytest.raises(DatasetMissing, match="not found"):
        get_dataset(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(DatasetMissing, match="no images"):
        get_dataset(f"folder:{tmp_path / 'sub'}")


def _plain_y(rgb):
    r, g, b = (rgb[..., i].astype(np.float64) for i in range(3))
    return np.round(16 + (65.481 * r + 128.553 * g + 24.966 * b) / 255).astype(np.uint8)


def test_gray_variants_are_rounded_luma(data_root):
    colour, gray = get_dataset("live1", data_root), get_dataset("live1_gray", data_root)
    assert [p.name for p in colour.files] == [p.name for p in gray.files]
    for p in colour.files[:3]:
        rgb = colour.load(p)
        y = gray.load(p)
        assert rgb.ndim == 3 and y.ndim == 2 and y.dtype == np.uint8
        assert np.array_equal(y, _plain_y(rgb))
    if (data_root / "bsds500" / "test").is_dir():
        c, g = get_dataset("bsds500", data_root), get_dataset("bsds500_gray", data_root)
        assert len(c) == len(g) == 200
        assert np.array_equal(g.load(g.files[0]), _plain_y(c.load(c.files[0])))
    # Classic5 is gray as stored
    c5 = get_dataset("classic5", data_root)
    assert c5.load(c5.files[0]).ndim == 2


def test_verify_reports_missing_extra_mismatched(tmp_path, data_root):
    src = get_dataset("classic5", data_root)
    folder = tmp_path / "root" / "classic5"
    folder.mkdir(parents=True)
    for p in src.files:
        shutil.copy(p, folder / p.name)
    rep = verify("classic5", tmp_path / "root")
    assert rep.ok and rep.checked == 5 and not (rep.missing or rep.extra or rep.mismatched)
    (folder / "peppers.bmp").unlink()
    shutil.copy(src.files[0], folder / "extra.png")
    data = bytearray((folder / "lena.bmp").read_bytes())
    data[5000] ^= 0xFF
    (folder / "lena.bmp").write_bytes(bytes(data))
    rep = verify("classic5", tmp_path / "root")
    assert not rep.ok
    assert rep.missing == ["peppers.bmp"]
    assert rep.extra == ["extra.png"]
    assert len(rep.mismatched) == 1 and rep.mismatched[0].startswith("lena.bmp") and "sha256" in rep.mismatched[0]
    assert rep.checked == 4
    # a truncated file is reported by its size
    (folder / "boats.bmp").write_bytes((folder / "boats.bmp").read_bytes()[:-10])
    rep = verify("classic5", tmp_path / "root")
    assert any(m.startswith("boats.bmp") and "bytes" in m for m in rep.mismatched)
    # the incomplete folder is not used
    with pytest.raises(DatasetMissing, match="4 of 5"):
        get_dataset("classic5", tmp_path / "root")


def test_verify_shared_ok(data_root):
    for name in ("classic5", "live1", "bsds500"):
        rep = verify(name, data_root)
        assert rep.ok and not rep.extra, (name, rep)
    rep = verify("live1_gray", data_root)  # checks the colour originals it is computed from
    assert rep.ok and rep.folder == data_root / "live1"


def test_div2k_synthetic_stand_in(tmp_path):
    folder = tmp_path / "div2k" / "valid"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(2)
    for i in range(801, 901):
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(folder / f"{i:04d}.png")
    ds = get_dataset("div2k", tmp_path)
    assert len(ds) == 100 and ds.source == "data-root"
    assert ds.files[0].name == "0801.png" and ds.files[-1].name == "0900.png"
    assert ds.load(ds.files[0]).shape == (12, 16, 3)
    gray = get_dataset("div2k_gray", tmp_path)
    assert gray.load(gray.files[0]).shape == (12, 16)
    rep = verify("div2k", tmp_path)
    assert rep.ok and rep.checked == 100 and "no checksums" in rep.note
    (folder / "0850.png").unlink()
    (folder / "0901.png").write_bytes((folder / "0801.png").read_bytes())
    rep = verify("div2k", tmp_path)
    assert rep.missing == ["0850.png"] and rep.extra == ["0901.png"] and not rep.ok
    with pytest.raises(DatasetMissing, match="99 of 100"):
        get_dataset("div2k", tmp_path)


def test_cli_datasets_verify(tmp_path, capsys, data_root):
    from cirbench.cli import main

    src = get_dataset("classic5", data_root)
    folder = tmp_path / "root" / "classic5"
    folder.mkdir(parents=True)
    for p in src.files:
        shutil.copy(p, folder / p.name)
    data = bytearray((folder / "barbara.bmp").read_bytes())
    data[-1] ^= 1
    (folder / "barbara.bmp").write_bytes(bytes(data))
    assert main(["datasets", "verify", "classic5", "--data-root", str(tmp_path / "root")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "barbara.bmp" in out
    assert read_image(src.files[0]).shape == (512, 512)


def test_two_files_of_one_stem_in_a_folder_are_refused(tmp_path):
    """Issue 23: good.jpg and good.png would both be saved as good.png (and outputs:{stem} would read one file
    for both), so crops and scores would pair the wrong images."""
    pixels = np.zeros((16, 16, 3), np.uint8)
    Image.fromarray(pixels).save(tmp_path / "good.png")
    Image.fromarray(pixels).save(tmp_path / "good.jpg")
    Image.fromarray(pixels).save(tmp_path / "other.png")
    with pytest.raises(ConfigError, match=r"good\.jpg and good\.png share the stem 'good'.*rename or move one"):
        get_dataset(f"folder:{tmp_path}")
    (tmp_path / "good.jpg").unlink()
    assert [p.name for p in get_dataset(f"folder:{tmp_path}").files] == ["good.png", "other.png"]
