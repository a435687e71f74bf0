"""The image-reading policy of cirbench/images.py, one awkward file at a time."""

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from cirbench import images
from cirbench.images import ImageError, read_image

RNG = np.random.default_rng(3)


def _rgb(h=24, w=32):
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_rgb_and_gray_read_as_stored(tmp_path):
    rgb, gray = _rgb(), _rgb()[..., 0].copy()
    Image.fromarray(rgb).save(tmp_path / "c.png")
    Image.fromarray(gray).save(tmp_path / "g.bmp")
    assert np.array_equal(read_image(tmp_path / "c.png"), rgb)
    out = read_image(str(tmp_path / "g.bmp"))
    assert out.dtype == np.uint8 and np.array_equal(out, gray)


def test_16bit_png_refused(tmp_path):
    f = tmp_path / "deep.png"
    Image.fromarray(RNG.integers(0, 65536, (24, 32), dtype=np.uint16)).save(f)
    with pytest.raises(ImageError, match="16-bit") as err:
        read_image(f)
    assert str(f) in str(err.value)


def test_float_tiff_refused(tmp_path):
    f = tmp_path / "float.tif"
    Image.fromarray(RNG.random((24, 32), dtype=np.float32)).save(f)
    with pytest.raises(ImageError, match="not supported") as err:
        read_image(f)
    assert str(f) in str(err.value)


def test_cmyk_refused(tmp_path):
    f = tmp_path / "print.jpg"
    Image.fromarray(_rgb()).convert("CMYK").save(f)
    with pytest.raises(ImageError, match="CMYK") as err:
        read_image(f)
    assert str(f) in str(err.value)


def test_rgba_warns_and_drops_alpha(tmp_path):
    rgba = np.dstack([_rgb(), RNG.integers(0, 256, (24, 32), dtype=np.uint8)])
    f = tmp_path / "alpha.png"
    Image.fromarray(rgba).save(f)
    with pytest.warns(UserWarning, match="alpha channel dropped"):
        out = read_image(f)
    assert out.shape == (24, 32, 3)
    assert np.array_equal(out, rgba[..., :3])  # dropped, not composited


def test_la_warns_and_gives_gray(tmp_path):
    f = tmp_path / "la.png"
    gray = _rgb()[..., 0].copy()
    Image.fromarray(gray).convert("LA").save(f)
    with pytest.warns(UserWarning, match="alpha"):
        out = read_image(f)
    assert out.shape == (24, 32) and np.array_equal(out, gray)


def test_palette_colour_becomes_rgb(tmp_path):
    f = tmp_path / "pal.png"
    im = Image.fromarray(_rgb()).quantize(16)
    im.save(f)
    out = read_image(f)
    assert out.shape == (24, 32, 3)
    assert np.array_equal(out, np.asarray(im.convert("RGB")))


def test_palette_gray_becomes_l(tmp_path):
    f = tmp_path / "palgray.png"
    gray = (RNG.integers(0, 8, (24, 32)) * 32).astype(np.uint8)
    im = Image.fromarray(gray).convert("P")
    pal = []
    for v in range(256):
        pal += [v, v, v]
    im.putpalette(pal)
    im.save(f)
    assert Image.open(f).mode == "P"
    out = read_image(f)
    assert out.shape == (24, 32) and np.array_equal(out, gray)


def test_bilevel_becomes_l(tmp_path):
    f = tmp_path / "bw.png"
    Image.fromarray(_rgb()[..., 0] > 127).save(f)
    out = read_image(f)
    assert out.dtype == np.uint8 and out.ndim == 2 and set(np.unique(out)) <= {0, 255}


def test_exif_orientation_warns_and_keeps_stored_order(tmp_path):
    f = tmp_path / "rotated.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(_rgb(24, 40)).save(f, exif=exif, quality=95)
    with pytest.warns(UserWarning, match="EXIF orientation ignored"):
        out = read_image(f)
    assert out.shape == (24, 40, 3)  # stored order, not rotated to 40x24
    g = tmp_path / "upright.jpg"
    Image.fromarray(_rgb(24, 40)).save(g)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        read_image(g)  # no EXIF: no warning


def test_truncated_jpeg_refused_naming_file(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="JPEG")
    f = tmp_path / "cut.jpg"
    f.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ImageError, match="truncated") as err:
        read_image(f)
    assert str(f) in str(err.value)


def test_non_image_refused(tmp_path):
    f = tmp_path / "notes.png"
    f.write_text("this is not a PNG")
    with pytest.raises(ImageError, match="not an image") as err:
        read_image(f)
    assert str(f) in str(err.value)
    with pytest.raises(ImageError, match="not found"):
        read_image(tmp_path / "absent.png")


def test_tiny_image_refused(tmp_path):
    f = tmp_path / "tiny.png"
    Image.fromarray(_rgb(10, 40)).save(f)
    with pytest.raises(ImageError, match="smaller than 11x11") as err:
        read_image(f)
    assert str(f) in str(err.value)
    Image.fromarray(_rgb(11, 11)).save(f)
    assert read_image(f).shape == (11, 11, 3)
    Image.fromarray(_rgb(4, 4)).save(f)
    assert read_image(f, min_side=1).shape == (4, 4, 3)


# Pillow would warn above 1000 and raise above 700 (twice the limit): the guard refuses both the same way.
@pytest.mark.parametrize("limit", [1000, 700], ids=["warning-range", "error-range"])
def test_decompression_bomb_guard(tmp_path, monkeypatch, limit):
    f = tmp_path / "big.png"
    Image.fromarray(_rgb(40, 40)).save(f)
    before = Image.MAX_IMAGE_PIXELS
    monkeypatch.setattr(images, "MAX_PIXELS", limit)
    with pytest.raises(ImageError, match="decompression-bomb") as err:
        read_image(f)
    assert str(f) in str(err.value)
    assert Image.MAX_IMAGE_PIXELS == before  # restored
    monkeypatch.setattr(images, "MAX_PIXELS", 1600)
    assert read_image(f).shape == (40, 40, 3)


def test_bomb_guard_holds_across_threads(tmp_path):
    """Preflight reads from several threads: every oversized file is refused, none only warned about (the CI
    failure that made the guard ours: another thread's warning filter let a 400 MP header through)."""
    import struct
    import zlib
    from concurrent.futures import ThreadPoolExecutor

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    huge = tmp_path / "huge.png"  # declares 20000x20000 = 400 MP, carries no pixels
    ihdr = struct.pack(">IIBBBBB", 20000, 20000, 8, 2, 0, 0, 0)
    huge.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    small = tmp_path / "small.png"
    Image.fromarray(_rgb(40, 40)).save(small)

    def read(path):
        try:
            return read_image(path).shape
        except ImageError as exc:
            return str(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a bomb warning escaping the guard fails the test
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(read, [huge, small] * 40))
    assert all("decompression-bomb guard" in r for r in results[::2])
    assert all(r == (40, 40, 3) for r in results[1::2])


# --- issue 23: what was once scored as something else -------------------------------------------------------
def _png48(path, width=20, height=16):
    """A 16-bit-per-channel RGB PNG (48-bit), written by hand: Pillow opens it as 8-bit RGB."""
    import struct
    import zlib

    rows = np.random.default_rng(0).integers(0, 65536, (height, width * 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\0" + row.tobytes() for row in rows)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 16, 2, 0, 0, 0))
                     + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


def test_16bit_colour_png_refused_as_16bit_gray_is(tmp_path):
    p = tmp_path / "rgb48.png"
    _png48(p)
    assert Image.open(p).mode == "RGB"  # what Pillow makes of it: the high byte of each sample
    with pytest.raises(ImageError, match=r"rgb48\.png: 16-bit colour .*convert to 8-bit first"):
        read_image(p)


def _frames(n=3):
    return [Image.fromarray(np.full((16, 20, 3), 40 * i, np.uint8)) for i in range(n)]


@pytest.mark.parametrize("name,kwargs", [("anim.png", {}), ("pages.tif", {}), ("anim.webp", {"lossless": True})],
                         ids=["apng", "multi-page-tiff", "animated-webp"])
def test_several_frames_are_refused(tmp_path, name, kwargs):
    first, *rest = _frames()
    first.save(tmp_path / name, save_all=True, append_images=rest, **kwargs)
    with pytest.raises(ImageError, match=rf"{name}: 3 frames \(an animation or a multi-page file\)"):
        read_image(tmp_path / name)


def test_gif_dangling_links_and_unreadable_files_are_named(tmp_path, monkeypatch):
    import builtins
    import errno
    import os

    _frames(1)[0].save(tmp_path / "x.gif")
    with pytest.raises(ImageError, match=r"x\.gif: GIF is not an evaluation format.*convert the image to PNG"):
        read_image(tmp_path / "x.gif")
    (tmp_path / "gone.png").symlink_to(tmp_path / "nowhere.png")
    with pytest.raises(ImageError, match=r"gone\.png: a link to a missing file .*nowhere\.png"):
        read_image(tmp_path / "gone.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "a.png")
    assert images.list_images(tmp_path) == [tmp_path / "a.png"]
    assert images.list_images(tmp_path, refused=True) == [tmp_path / n for n in ("a.png", "gone.png", "x.gif")]
    real = builtins.open

    def denied(file, *a, **k):  # root reads any file: the permission error is simulated
        if str(file).endswith("a.png"):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(file))
        return real(file, *a, **k)

    monkeypatch.setattr(builtins, "open", denied)
    with pytest.raises(ImageError, match=r"a\.png: permission denied; make the file readable") as err:
        read_image(tmp_path / "a.png")
    assert "corrupt" not in str(err.value)
