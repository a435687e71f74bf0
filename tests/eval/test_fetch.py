"""``cirbench datasets fetch`` against a local HTTP server and local archives: verified into the data root,
or refused with the data root unchanged."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from helpers import STANDARD_SETS, standard_data_problem
from PIL import Image

from cirbench.cli import main
from cirbench.errors import ConfigError, FetchError
from cirbench.eval.datasets import fetched, get_dataset, read_manifest, verify, verify_published
from cirbench.eval.fetch import fetch_dataset, fetch_datasets


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")) if root.exists() else []


@pytest.fixture
def no_network(monkeypatch):
    monkeypatch.delenv("CIRBENCH_OFFLINE", raising=False)


def test_classic5_file_by_file_from_a_mirror(tmp_path, http_server, data_root, no_network):
    mirror = http_server.root / "classic5"
    shutil.copytree(data_root / "classic5", mirror)
    root = tmp_path / "root"
    args = ["datasets", "fetch", "classic5", "--data-root", str(root), "--from", f"{http_server.url}/classic5/"]
    assert main(args) == 0
    assert _tree(root) == ["classic5"] + [f"classic5/{n}" for n in sorted(read_manifest("classic5.tsv"))]
    assert verify("classic5", root).ok and get_dataset("classic5", root).source == "data-root"


def test_a_corrupt_file_leaves_the_data_root_unchanged(tmp_path, http_server, data_root, no_network, capsys):
    mirror = http_server.root / "classic5"
    shutil.copytree(data_root / "classic5", mirror)
    data = bytearray((mirror / "lena.bmp").read_bytes())
    data[4000] ^= 0xFF
    (mirror / "lena.bmp").write_bytes(bytes(data))
    root = tmp_path / "root"
    root.mkdir()
    (root / "keep.txt").write_text("mine")
    args = ["datasets", "fetch", "classic5", "--data-root", str(root), "--from", f"{http_server.url}/classic5/"]
    assert main(args) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]  # after one progress line per file
    assert last.startswith("cirbench: error:") and "lena.bmp" in last and "sha256 mismatch" in last
    assert _tree(root) == ["keep.txt"]


def _bsds_archive(data_root, path, extra: dict | None = None):
    """The official archive's layout, from the data root's bsds500/test (only what `datasets fetch` puts there)."""
    readme = b"BSR: a file beside the images, as in the official archive\n"
    with tarfile.open(path, "w:gz") as tf:
        for p in sorted((data_root / "bsds500" / "test").glob("*.jpg")):
            tf.add(p, arcname=f"BSR/BSDS500/data/images/test/{p.name}")
        for name, data in {"BSR/README": readme, **(extra or {})}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_bsds500_from_the_official_archive_layout(tmp_path, http_server, data_root, no_network):
    _bsds_archive(data_root, http_server.root / "BSR_bsds500.tgz")
    root = tmp_path / "root"
    fetch_dataset("bsds500", root, f"{http_server.url}/BSR_bsds500.tgz", log=lambda m: None)
    assert len(_tree(root / "bsds500" / "test")) == 200 and verify("bsds500", root).ok
    assert _tree(root) == ["bsds500", "bsds500/test"] + [f"bsds500/test/{n}" for n in
                                                         sorted(read_manifest("bsds500.tsv"))]


def test_truncated_archive_transfer_leaves_nothing(tmp_path, http_server, data_root, no_network):
    _bsds_archive(data_root, http_server.root / "BSR_bsds500.tgz")
    root = tmp_path / "root"
    with pytest.raises(FetchError, match="download failed"):
        fetch_dataset("bsds500", root, f"{http_server.url}/truncated/BSR_bsds500.tgz", log=lambda m: None)
    assert _tree(root) == []


def _evil_tar(path, member: tarfile.TarInfo, data: bytes = b"x"):
    with tarfile.open(path, "w") as tf:
        tf.addfile(member, io.BytesIO(data) if member.isfile() else None)


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink", "hardlink", "device"])
def test_traversal_and_special_members_are_refused(tmp_path, http_server, no_network, kind):
    member = tarfile.TarInfo({"dotdot": "../../evil.txt", "absolute": "/tmp/evil.txt"}.get(kind, "DIV2K_valid_HR/x"))
    if kind in ("dotdot", "absolute"):
        member.size = 1
    elif kind == "symlink":
        member.type, member.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif kind == "hardlink":
        member.type, member.linkname = tarfile.LNKTYPE, "/etc/passwd"
    else:
        member.type = tarfile.CHRTYPE
    _evil_tar(http_server.root / "DIV2K_valid_HR.tar", member)
    root = tmp_path / "root"
    with pytest.raises(FetchError, match="refused") as err:
        fetch_dataset("div2k", root, f"{http_server.url}/DIV2K_valid_HR.tar", log=lambda m: None)
    assert "\n" not in str(err.value)
    assert _tree(root) == [] and not (tmp_path / "evil.txt").exists()


def _div2k_pngs(folder, n=100):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for i in range(801, 801 + n):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
        (folder / f"{i:04d}.png").write_bytes(buf.getvalue())


def test_div2k_from_a_local_zip_checks_names(tmp_path, no_network):
    src = tmp_path / "src"
    _div2k_pngs(src / "DIV2K_valid_HR")
    archive = tmp_path / "DIV2K_valid_HR.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted((src / "DIV2K_valid_HR").iterdir()):
            zf.write(p, f"DIV2K_valid_HR/{p.name}")
    root = tmp_path / "root"
    assert main(["datasets", "fetch", "div2k", "--data-root", str(root), "--from", str(archive)]) == 0
    assert len(get_dataset("div2k_gray", root)) == 100
    # one name short: refused, nothing added to the data root
    root2 = tmp_path / "root2"
    (src / "DIV2K_valid_HR" / "0900.png").unlink()
    assert main(["datasets", "fetch", "div2k", "--data-root", str(root2), "--from", str(src)]) == 2
    assert _tree(root2) == []


def test_zip_with_a_dotdot_member_is_refused(tmp_path, no_network):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    root = tmp_path / "root"
    with pytest.raises(FetchError, match="outside the target"):
        fetch_dataset("div2k", root, str(archive), log=lambda m: None)
    assert _tree(root) == [] and not (tmp_path / "evil.txt").exists()


def test_offline_refuses_urls_but_takes_local_copies(tmp_path, monkeypatch, data_root):
    monkeypatch.setenv("CIRBENCH_OFFLINE", "1")
    with pytest.raises(FetchError, match="downloads are off"):
        fetch_dataset("classic5", tmp_path / "root", log=lambda m: None)
    fetch_dataset("classic5", tmp_path / "root", str(data_root / "classic5"), log=lambda m: None)
    assert verify("classic5", tmp_path / "root").ok


def test_list_names_the_command_for_each_absent_set(tmp_path, capsys):
    assert main(["datasets", "list", "--data-root", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    for name in ("classic5", "live1", "bsds500", "div2k"):
        assert f"cirbench datasets fetch {name}" in out
    assert "scikit-image" in out  # the samples are always there


# --- mirrors: a root laid out as the data root, for several sets in one command ----------------------------

LAYOUT = {"classic5": "classic5", "live1": "live1", "live1_gray": "live1_gray", "bsds500": "bsds500/test"}


def _mirror(data_root, served, names=LAYOUT):
    """``served`` laid out as the data root (links to the data root's folders: nothing is copied)."""
    for name in names:
        (served / LAYOUT[name]).parent.mkdir(parents=True, exist_ok=True)
        (served / LAYOUT[name]).symlink_to(data_root / LAYOUT[name], target_is_directory=True)


def _unmirror(served):
    for sub in LAYOUT.values():
        if (served / sub).is_symlink():
            (served / sub).unlink()


def test_several_sets_from_a_mirror_root_url_then_skipped(tmp_path, http_server, data_root, no_network, capsys):
    _mirror(data_root, http_server.root)
    root = tmp_path / "root"
    args = ["datasets", "fetch", *STANDARD_SETS, "--data-root", str(root), "--from", f"{http_server.url}/"]
    assert main(args) == 0
    for name in ("classic5", "live1", "bsds500", "live1_gray"):
        assert verify(name, root).ok
    assert verify_published("live1_gray", root).ok and len(list((root / "live1_gray").glob("*.png"))) == 29
    assert standard_data_problem(root) is None  # what the tests read is what fetch lays out
    capsys.readouterr()
    _unmirror(http_server.root)  # the mirror is gone: a second fetch must download nothing
    assert main(args) == 0
    err = capsys.readouterr().err
    assert err.count("nothing to fetch") == 4, err  # classic5, live1 (once), FBCNN's gray PNGs, bsds500


def test_a_local_mirror_root_serves_several_sets_and_a_partial_set_is_completed(tmp_path, data_root, capsys):
    root = tmp_path / "root"
    assert main(["datasets", "fetch", "classic5,live1", "--data-root", str(root), "--from", str(data_root)]) == 0
    assert verify("classic5", root).ok and verify("live1", root).ok and not fetched("live1_gray", root)
    (root / "live1" / "bikes.bmp").unlink()
    (root / "live1" / "parrots.bmp").write_bytes(b"damaged")
    capsys.readouterr()
    assert main(["datasets", "fetch", "live1", "--data-root", str(root), "--from", str(data_root)]) == 0
    assert "live1: 2 files verified into" in capsys.readouterr().err and verify("live1", root).ok


def test_an_archive_set_from_a_folder_url(tmp_path, http_server, data_root, no_network):
    _mirror(data_root, http_server.root, ["bsds500"])
    for n, src in enumerate((f"{http_server.url}/bsds500/test", f"{http_server.url}")):  # its folder; the root
        root = tmp_path / f"root{n}"
        fetch_dataset("bsds500", root, src, log=lambda m: None)
        assert verify("bsds500", root).ok


def test_an_archive_holds_one_set(tmp_path, data_root):
    _bsds_archive(data_root, tmp_path / "BSR_bsds500.tgz")
    with pytest.raises(ConfigError, match="an archive holds one dataset"):
        fetch_datasets(["bsds500", "live1"], tmp_path / "root", str(tmp_path / "BSR_bsds500.tgz"))
    with pytest.raises(FetchError, match="nope: not found"):  # said once, before any set
        fetch_datasets(["bsds500", "live1"], tmp_path / "root", str(tmp_path / "nope"))
    assert not (tmp_path / "root").exists()


def test_a_set_absent_from_the_mirror_is_named_and_the_others_kept(tmp_path, http_server, data_root, no_network,
                                                                   capsys):
    _mirror(data_root, http_server.root, ["classic5"])
    root = tmp_path / "root"
    assert main(["datasets", "fetch", "classic5", "live1", "--data-root", str(root), "--from", http_server.url]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert f"{http_server.url}/live1/bikes.bmp" in err[-2] and f"nor at {http_server.url}/bikes.bmp" in err[-2]
    assert err[-1].startswith("cirbench: error: 1 of 2 datasets not fetched (live1); classic5 in place")
    assert verify("classic5", root).ok and not (root / "live1").exists()


# --- network failures: one line saying which host could not be reached and what to do instead ---------------


def test_an_unreachable_mirror_is_one_clean_line(tmp_path, closed_url, no_network, capsys):
    root = tmp_path / "root"
    assert main(["datasets", "fetch", "classic5", "--data-root", str(root), "--from", closed_url]) == 2
    err = capsys.readouterr().err.strip()
    host = closed_url.removeprefix("http://")
    assert err == (f"cirbench: error: classic5: could not reach {host} (connection refused); nothing was kept; "
                   "check the network and the --from URL, and retry")
    assert _tree(root) == []


def test_no_network_names_the_manual_way(tmp_path, no_dns, no_network, capsys):
    root = tmp_path / "root"
    assert main(["datasets", "fetch", "live1", "--data-root", str(root)]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("cirbench: error: live1: could not reach raw.githubusercontent.com (host name not resolved")
    assert last.endswith("`cirbench datasets fetch live1 --from MIRROR_ARCHIVE_OR_FOLDER` (layout: `cirbench "
                         "datasets fetch --help`)")
    assert "Caused by" not in last and "Connection(" not in last
    assert _tree(root) == []


# --- issue 23: an archive cannot fill the disk ----------------------------------------------------------------
def _tgz(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))


def test_an_archive_member_larger_than_the_manifest_says_is_refused_before_it_is_written(tmp_path, no_network,
                                                                                         monkeypatch):
    """A 20 MB member of zeros in a tgz of a few KB was extracted whole before the manifest was checked."""
    written = []
    real_open = open

    def spy(file, mode="r", *a, **k):  # every file the extraction opens for writing
        if "w" in mode and ".staging-" in str(file):
            written.append(str(file))
        return real_open(file, mode, *a, **k)

    monkeypatch.setattr("builtins.open", spy)
    archive = tmp_path / "classic5.tgz"
    _tgz(archive, {"classic5/lena.bmp": bytes(20 * 2**20)})
    assert archive.stat().st_size < 100_000
    root = tmp_path / "root"
    want = read_manifest("classic5.tsv")["lena.bmp"]["bytes"]
    with pytest.raises(FetchError, match=rf"refused, member 'classic5/lena.bmp' holds {20 * 2**20} bytes or more, "
                                         rf"above the {want} it may hold") as err:
        fetch_dataset("classic5", root, str(archive), log=lambda m: None)
    assert "\n" not in str(err.value) and not written and _tree(root) == []


def test_a_set_without_sizes_has_a_stated_limit_and_unneeded_members_are_skipped(tmp_path, no_network, monkeypatch):
    from cirbench.eval import fetch as fetch_mod

    src = tmp_path / "src"
    _div2k_pngs(src)
    members = {f"DIV2K_valid_HR/{p.name}": p.read_bytes() for p in sorted(src.iterdir())}
    archive = tmp_path / "div2k.tgz"
    _tgz(archive, {**members, "DIV2K_valid_HR/junk.bin": bytes(5 * 2**20)})  # not wanted: never written
    monkeypatch.setattr(fetch_mod, "MAX_MEMBER_BYTES", 4096)
    fetch_dataset("div2k", tmp_path / "root", str(archive), log=lambda m: None)
    assert len(get_dataset("div2k", tmp_path / "root")) == 100 and not list(tmp_path.rglob("junk.bin"))
    _tgz(archive, {**members, "DIV2K_valid_HR/0801.png": bytes(8192)})  # a needed file over the stated limit
    with pytest.raises(FetchError, match="'DIV2K_valid_HR/0801.png' holds 8192 bytes or more, above the 4096"):
        fetch_dataset("div2k", tmp_path / "root2", str(archive), log=lambda m: None)
    assert _tree(tmp_path / "root2") == []


def test_a_full_disk_while_extracting_is_one_line(tmp_path, no_network, full_disk, capsys):
    src = tmp_path / "src"
    _div2k_pngs(src)
    archive = tmp_path / "div2k.tgz"
    _tgz(archive, {f"DIV2K_valid_HR/{p.name}": p.read_bytes() for p in sorted(src.iterdir())})
    root = tmp_path / "root"
    root.mkdir()
    full_disk(root)
    assert main(["datasets", "fetch", "div2k", "--data-root", str(root), "--from", str(archive)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "nothing was kept" in err
    assert _tree(root) == []
