"""``cirbench datasets fetch`` against a local HTTP server and local archives: verified into the data root,
or refused with the data root unchanged."""

from __future__ import annotations

import io
import shutil
import tarfile
import zipfile

import numpy as np
import pytest
from PIL import Image

from cirbench.cli import main
from cirbench.errors import FetchError
from cirbench.eval.datasets import get_dataset, read_manifest, verify
from cirbench.eval.fetch import fetch_dataset


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
    with tarfile.open(path, "w:gz") as tf:
        for p in sorted((data_root / "bsds500" / "test").glob("*.jpg")):
            tf.add(p, arcname=f"BSR/BSDS500/data/images/test/{p.name}")
        tf.add(data_root / "bsds500" / "test" / "SOURCE.md" if (data_root / "bsds500" / "test" / "SOURCE.md").exists()
               else data_root / "bsds500" / "SOURCE.md", arcname="BSR/README")
        for name, data in (extra or {}).items():
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
