"""Request tensors from files: .npy arrays and 8-bit PNG / PPM / PGM images, with the standard library only.

Images are resized (nearest neighbour) to the model's input and turned into uint8 RGB.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from edgeoffload.errors import RequestError

MAX_IMAGE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 50_000_000
SUFFIXES = (".npy", ".png", ".ppm", ".pgm")
_PNG_SIG = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}


def load_tensor(path: Path, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """Read `path` and fit it to the model input `shape` ([1,H,W,C]) as `dtype`."""
    path = Path(path)
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise RequestError(f"{path}: larger than {MAX_IMAGE_BYTES} bytes")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise RequestError(f"{path}: not a .npy array numpy can read without pickle ({exc})") from None
        if arr.size != int(np.prod(shape)):
            raise RequestError(f"{path}: array of shape {list(arr.shape)} does not fit input {list(shape)}")
        cast = arr.reshape(shape).astype(dtype, copy=False)
        if arr.dtype != dtype and not np.array_equal(cast.reshape(arr.shape), arr):
            raise RequestError(f"{path}: {arr.dtype.name} values that {np.dtype(dtype).name} cannot hold exactly; "
                               "nothing is cast silently: convert the array first")
        return cast
    if suffix == ".png":
        img = decode_png(path.read_bytes(), str(path))
    elif suffix in (".ppm", ".pgm"):
        img = decode_pnm(path.read_bytes(), str(path))
    else:
        raise RequestError(f"{path}: unsupported input type (use {', '.join(SUFFIXES)})")
    return fit_image(img, shape).astype(dtype, copy=False)


def fit_image(img: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Nearest-neighbour resize of an HxWxC uint8 image to shape [1,H,W,C] (gray→RGB, alpha dropped)."""
    _, h, w, c = shape
    if img.shape[2] in (2, 4):
        img = img[:, :, :-1]
    if img.shape[2] == 1 and c == 3:
        img = np.repeat(img, 3, axis=2)
    rows = (np.arange(h) * img.shape[0] // h).clip(0, img.shape[0] - 1)
    cols = (np.arange(w) * img.shape[1] // w).clip(0, img.shape[1] - 1)
    return img[rows][:, cols][None, ...]


def decode_pnm(data: bytes, where: str) -> np.ndarray:
    """Binary PGM (P5) and PPM (P6), maxval 255."""
    fields = data.split(maxsplit=4)
    if len(fields) < 5 or fields[0] not in (b"P5", b"P6"):
        raise RequestError(f"{where}: not a binary PGM/PPM (P5/P6) file")
    try:
        w, h, maxval = int(fields[1]), int(fields[2]), int(fields[3])
    except ValueError:
        raise RequestError(f"{where}: bad PNM header") from None
    channels = 3 if fields[0] == b"P6" else 1
    if maxval != 255 or not (0 < w * h <= MAX_PIXELS):
        raise RequestError(f"{where}: only 8-bit images up to {MAX_PIXELS} pixels are supported")
    pixels = fields[4][: w * h * channels]
    if len(pixels) != w * h * channels:
        raise RequestError(f"{where}: truncated pixel data")
    return np.frombuffer(pixels, np.uint8).reshape(h, w, channels)


def decode_png(data: bytes, where: str) -> np.ndarray:
    """8-bit, non-interlaced gray / RGB / gray+alpha / RGBA PNG."""
    if not data.startswith(_PNG_SIG):
        raise RequestError(f"{where}: not a PNG file")
    pos, header, idat = 8, None, []
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            header = struct.unpack(">IIBBBBB", body[:13])
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if header is None:
        raise RequestError(f"{where}: PNG without IHDR")
    w, h, depth, ctype, _, _, interlace = header
    if depth != 8 or ctype not in _PNG_CHANNELS or interlace or not (0 < w * h <= MAX_PIXELS):
        raise RequestError(f"{where}: only 8-bit non-interlaced gray/RGB(A) PNG up to {MAX_PIXELS} pixels")
    channels = _PNG_CHANNELS[ctype]
    try:
        raw = zlib.decompressobj().decompress(b"".join(idat), h * (w * channels + 1))
    except zlib.error as exc:
        raise RequestError(f"{where}: corrupt PNG data ({exc})") from None
    if len(raw) != h * (w * channels + 1):
        raise RequestError(f"{where}: truncated PNG data")
    return _unfilter(np.frombuffer(raw, np.uint8).reshape(h, w * channels + 1), channels, where).reshape(
        h, w, channels)


def _unfilter(rows: np.ndarray, bpp: int, where: str) -> np.ndarray:
    out = np.zeros((rows.shape[0], rows.shape[1] - 1), np.int32)
    prev = np.zeros(rows.shape[1] - 1, np.int32)
    for y, row in enumerate(rows):
        kind, line = row[0], row[1:].astype(np.int32)
        if kind == 0:
            cur = line
        elif kind == 2:
            cur = (line + prev) & 0xFF
        elif kind in (1, 3, 4):
            cur = _unfilter_sequential(line, prev, bpp, kind)
        else:
            raise RequestError(f"{where}: bad PNG filter type {kind} in row {y}")
        out[y] = cur
        prev = cur
    return out.astype(np.uint8)


def _unfilter_sequential(line: np.ndarray, prev: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    cur = np.zeros_like(line)
    for i in range(len(line)):
        a = cur[i - bpp] if i >= bpp else 0
        b = prev[i]
        if kind == 1:
            pred = a
        elif kind == 3:
            pred = (a + b) // 2
        else:
            c = prev[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (line[i] + pred) & 0xFF
    return cur
