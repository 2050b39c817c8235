"""Request tensors from files: PNG (as libpng writes it, all filter types), PPM/PGM and .npy; bad files."""

import zlib

import matplotlib.image
import numpy as np
import pytest

from edgeoffload.engine.images import decode_png, fit_image, load_tensor
from edgeoffload.errors import RequestError


def test_png_written_by_libpng_decodes_exactly(tmp_path):
    rng = np.random.default_rng(0)
    # A smooth gradient plus noise makes libpng pick different filters for different rows.
    img = (np.add.outer(np.arange(37), np.arange(53))[..., None] * [1, 2, 3] % 256).astype(np.uint8)
    img[::3] = rng.integers(0, 256, img[::3].shape, dtype=np.uint8)
    matplotlib.image.imsave(tmp_path / "x.png", img)
    decoded = decode_png((tmp_path / "x.png").read_bytes(), "x.png")
    assert decoded.shape == (37, 53, 4)  # matplotlib writes RGBA
    np.testing.assert_array_equal(decoded[..., :3], img)


def test_load_tensor_resizes_and_converts(tmp_path):
    img = np.zeros((64, 32, 3), np.uint8)
    img[:32] = 255
    matplotlib.image.imsave(tmp_path / "half.png", img)
    x = load_tensor(tmp_path / "half.png", (1, 16, 16, 3), np.uint8)
    assert x.shape == (1, 16, 16, 3) and x.dtype == np.uint8
    assert (x[0, :8] == 255).all() and (x[0, 8:] == 0).all()
    (tmp_path / "g.pgm").write_bytes(b"P5\n4 2\n255\n" + bytes(range(8)))
    g = load_tensor(tmp_path / "g.pgm", (1, 2, 4, 3), np.uint8)
    np.testing.assert_array_equal(g[0, :, :, 0], [[0, 1, 2, 3], [4, 5, 6, 7]])
    assert (g[..., 0] == g[..., 2]).all()
    np.save(tmp_path / "a.npy", np.arange(12, dtype=np.uint8).reshape(2, 2, 3))
    assert load_tensor(tmp_path / "a.npy", (1, 2, 2, 3), np.uint8).shape == (1, 2, 2, 3)


def test_fit_image_drops_alpha():
    rgba = np.zeros((4, 4, 4), np.uint8)
    assert fit_image(rgba, (1, 2, 2, 3)).shape == (1, 2, 2, 3)


@pytest.mark.parametrize("name, data, message", [
    ("x.png", b"GIF89a....", "x.png: not a PNG file"),
    ("t.png", b"\x89PNG\r\n\x1a\n", "t.png: PNG without IHDR"),
    ("p.ppm", b"P6\n2 2\n255\n\x00\x00", "p.ppm: truncated pixel data"),
    ("h.ppm", b"P6\n99999 99999\n255\n\x00", "only 8-bit images up to 50000000 pixels"),
    ("q.ppm", b"P3\n1 1\n255\n0 0 0", "q.ppm: not a binary PGM/PPM (P5/P6) file"),
])
def test_bad_files_are_request_errors_naming_the_file(tmp_path, name, data, message):
    (tmp_path / name).write_bytes(data)
    with pytest.raises(RequestError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_tensor(tmp_path / name, (1, 2, 2, 3), np.uint8)


def test_png_with_corrupt_or_short_data(tmp_path):
    import struct

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0))
    short = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\x00" * 5)) + chunk(b"IEND", b"")
    with pytest.raises(RequestError, match="truncated PNG data"):
        decode_png(short, "s.png")
    bad = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", b"not zlib") + chunk(b"IEND", b"")
    with pytest.raises(RequestError, match="corrupt PNG data"):
        decode_png(bad, "b.png")
    bad_filter = b"\x89PNG\r\n\x1a\n" + ihdr + chunk(b"IDAT", zlib.compress(b"\x07" + b"\x00" * 6 + b"\x00" * 7)) \
        + chunk(b"IEND", b"")
    with pytest.raises(RequestError, match="bad PNG filter type 7 in row 0"):
        decode_png(bad_filter, "f.png")
