"""Tests for weightmaps.io.read_mask: every format, colour handling, limits, damaged files."""

from __future__ import annotations

import logging
import os
import pickle
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image, ImageFile

from weightmaps.io import (
    DEFAULT_MAX_PIXELS,
    MASK_SUFFIXES,
    RGB_RULES,
    MaskReadError,
    read_mask,
)
from weightmaps.io.read import is_lossy


def _labels(shape: tuple[int, ...], dtype: type = np.uint16, high: int = 1000) -> np.ndarray:
    rng = np.random.default_rng(sum(shape))
    return rng.integers(0, high, size=shape).astype(dtype)


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _png_bytes(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A minimal PNG written by hand, for what Pillow cannot write (or would refuse)."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", zlib.compress(rows))
        + _png_chunk(b"IEND", b"")
    )


def _assert_one_line_error(exc_info: pytest.ExceptionInfo[MaskReadError], path: Path) -> str:
    message = str(exc_info.value)
    assert message.startswith(f"{path}: ")
    assert "\n" not in message
    assert exc_info.value.path == str(path)
    assert message == f"{path}: {exc_info.value.reason}"
    return exc_info.value.reason


def _forbid(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> None:
    """Make a pixel-reading function fail loudly, to show it is never reached."""

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError(f"{name} was called")

    monkeypatch.setattr(owner, name, refuse)


# ----------------------------------------------------------------------------- constants


def test_public_constants() -> None:
    assert DEFAULT_MAX_PIXELS == 2**30
    assert MASK_SUFFIXES == (".tif", ".tiff", ".png", ".npy", ".jpg", ".jpeg", ".bmp", ".gif")
    assert RGB_RULES == ("dark", "bright", "nonblack", "alpha")
    assert issubclass(MaskReadError, ValueError)


def test_error_attributes_and_pickling() -> None:
    exc = MaskReadError("a/b.png", "something broke\nsecond line")
    assert exc.path == "a/b.png"
    assert exc.reason == "something broke"
    assert str(exc) == "a/b.png: something broke"
    copy = pickle.loads(pickle.dumps(exc))
    assert isinstance(copy, MaskReadError)
    assert (copy.path, copy.reason, str(copy)) == (exc.path, exc.reason, str(exc))


# ------------------------------------------------------------------------------------ TIFF


def test_tiff_2d_uint16(tmp_path: Path) -> None:
    mask = _labels((20, 30), high=60000)
    assert mask.max() > 255
    path = tmp_path / "mask.tif"
    tifffile.imwrite(path, mask)
    out = read_mask(path)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, mask)


def test_tiff_3d_stack(tmp_path: Path) -> None:
    mask = _labels((4, 10, 12), dtype=np.int32)
    path = tmp_path / "stack.tiff"
    # A leading axis of 3 or 4 would be written as planar RGB(A) by default.
    tifffile.imwrite(path, mask, photometric="minisblack")
    out = read_mask(path)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, mask)


def test_tiff_generic_multipage(tmp_path: Path) -> None:
    # Pages written one by one without tifffile's shape metadata, as other tools do.
    mask = _labels((3, 8, 9))
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        for page in mask:
            writer.write(page, metadata=None)
    np.testing.assert_array_equal(read_mask(path), mask)


def test_tiff_singleton_axis_squeezed(tmp_path: Path) -> None:
    mask = _labels((1, 9, 7))
    path = tmp_path / "single.tif"
    tifffile.imwrite(path, mask)
    out = read_mask(path)
    assert out.shape == (9, 7)
    np.testing.assert_array_equal(out, mask[0])


def test_tiff_deflate(tmp_path: Path) -> None:
    mask = _labels((5, 16, 16))
    path = tmp_path / "deflate.tif"
    tifffile.imwrite(path, mask, compression="zlib", photometric="minisblack")
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == tifffile.COMPRESSION.ADOBE_DEFLATE
    np.testing.assert_array_equal(read_mask(path), mask)


def _imagecodecs_importable() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def _lzw_tagged_tiff(path: Path) -> None:
    """An uncompressed TIFF relabelled as LZW: what a reader without LZW support sees."""
    tifffile.imwrite(path, _labels((12, 10)))
    with tifffile.TiffFile(path) as tif:
        tag = tif.pages[0].tags["Compression"]
        assert tif.byteorder == "<" and tag.dtype == 3  # little-endian SHORT, inline
        where = tag.valueoffset
    raw = bytearray(path.read_bytes())
    raw[where : where + 2] = struct.pack("<H", 5)
    path.write_bytes(bytes(raw))


def test_lzw_tiff_without_imagecodecs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "lzw.tif"
    _lzw_tagged_tiff(path)
    if _imagecodecs_importable():
        # Simulate its absence: the import fails and tifffile cannot decode.
        monkeypatch.setitem(sys.modules, "imagecodecs", None)

        def no_codec(*args: object, **kwargs: object) -> None:
            raise ValueError("<COMPRESSION.LZW: 5> requires the 'imagecodecs' package")

        monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_codec)
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    reason = _assert_one_line_error(exc_info, path)
    assert reason == "compressed with LZW; install imagecodecs (pip install imagecodecs) to read it"


def test_lzw_tiff_with_imagecodecs(tmp_path: Path) -> None:
    pytest.importorskip("imagecodecs")
    mask = _labels((3, 12, 10))
    path = tmp_path / "lzw.tif"
    tifffile.imwrite(path, mask, compression="lzw", photometric="minisblack")
    np.testing.assert_array_equal(read_mask(path), mask)


def test_tiff_rgb_needs_a_rule(tmp_path: Path) -> None:
    rgb = np.zeros((6, 7, 3), np.uint8)
    rgb[2:4, 2:5] = (200, 150, 250)
    path = tmp_path / "rgb.tif"
    tifffile.imwrite(path, rgb, photometric="rgb")
    with pytest.raises(MaskReadError, match=r"RGB image \(3 channels\); pass channel="):
        read_mask(path)
    np.testing.assert_array_equal(read_mask(path, channel=2), rgb[..., 2])
    np.testing.assert_array_equal(read_mask(path, rgb_rule="bright"), (rgb[..., 0] > 0))


def test_tiff_planar_rgb_channels_last(tmp_path: Path) -> None:
    planar = np.zeros((3, 6, 7), np.uint16)
    planar[1, 1:3, 1:3] = 40000
    path = tmp_path / "planar.tif"
    tifffile.imwrite(path, planar, photometric="rgb", planarconfig="separate")
    np.testing.assert_array_equal(read_mask(path, channel=1), planar[1])
    np.testing.assert_array_equal(read_mask(path, rgb_rule="nonblack"), planar[1] > 0)


def test_tiff_minisblack_with_three_samples_is_a_volume(tmp_path: Path) -> None:
    mask = _labels((6, 7, 3))
    path = tmp_path / "vol.tif"
    tifffile.imwrite(path, mask, photometric="minisblack")
    np.testing.assert_array_equal(read_mask(path), mask)


# ------------------------------------------------------------------------------------- PNG


def test_png_1bit(tmp_path: Path) -> None:
    mask = _labels((9, 13), high=2).astype(bool)
    path = tmp_path / "bits.png"
    Image.fromarray(mask).save(path)
    assert Image.open(path).mode == "1"
    out = read_mask(path)
    assert out.dtype == np.bool_
    np.testing.assert_array_equal(out, mask)


def test_png_l(tmp_path: Path) -> None:
    mask = _labels((9, 13), dtype=np.uint8, high=256)
    path = tmp_path / "grey.png"
    Image.fromarray(mask).save(path)
    out = read_mask(path)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, mask)


def test_png_i16_round_trips_values_above_255(tmp_path: Path) -> None:
    mask = _labels((9, 13), high=65536)
    mask[0, 0] = 65535
    mask[0, 1] = 256
    path = tmp_path / "labels16.png"
    Image.fromarray(mask).save(path)
    assert Image.open(path).mode.startswith("I;16")
    out = read_mask(path)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, mask)


def test_png_palette_gives_indices(tmp_path: Path) -> None:
    indices = np.array([[0, 1, 2], [2, 1, 0]], np.uint8)
    img = Image.fromarray(indices, mode="L").convert("P")
    img.putdata(indices.ravel().tolist())
    img.putpalette([10, 20, 30, 200, 0, 0, 0, 255, 0])
    path = tmp_path / "palette.png"
    img.save(path)
    assert Image.open(path).mode == "P"
    out = read_mask(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3)
    np.testing.assert_array_equal(out, indices)


def test_png_low_bit_grey_values_as_stored(tmp_path: Path) -> None:
    # 2-bit grey, values 0..3: Pillow alone would return 0, 85, 170, 255.
    rows = b"".join(b"\x00" + bytes([0b00011011]) for _ in range(2))
    path = tmp_path / "two_bit.png"
    path.write_bytes(_png_bytes(4, 2, 2, 0, rows))
    np.testing.assert_array_equal(read_mask(path), [[0, 1, 2, 3], [0, 1, 2, 3]])


@pytest.mark.parametrize(
    ("mode", "kind", "count"),
    [("RGB", "RGB", 3), ("RGBA", "RGBA", 4), ("LA", "grey+alpha", 2)],
)
def test_png_colour_without_rule_is_an_error(
    tmp_path: Path, mode: str, kind: str, count: int
) -> None:
    path = tmp_path / f"colour_{mode}.png"
    Image.new(mode, (5, 4)).save(path)
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    reason = _assert_one_line_error(exc_info, path)
    assert reason == (
        f"{kind} image ({count} channels); pass channel= or rgb_rule= "
        "(one of 'dark', 'bright', 'nonblack', 'alpha') to say how to read it"
    )


def _rgba_fixture(tmp_path: Path) -> tuple[Path, np.ndarray]:
    rgba = np.zeros((4, 5, 4), np.uint8)
    rgba[..., :3] = 255  # white, opaque background
    rgba[..., 3] = 255
    rgba[0, 0] = (0, 0, 0, 255)  # black
    rgba[0, 1] = (127, 128, 128, 255)  # luminance 127.67: dark (threshold 128)
    rgba[0, 2] = (128, 128, 128, 255)  # luminance 128: bright
    rgba[1, 0] = (0, 0, 1, 255)  # nearly black: dark but not "black"
    rgba[2, :] = (0, 0, 0, 0)  # transparent black
    rgba[3, 4] = (255, 255, 255, 7)  # faintly opaque white
    path = tmp_path / "rgba.png"
    Image.fromarray(rgba, mode="RGBA").save(path)
    return path, rgba


def test_png_channel_returns_that_channel(tmp_path: Path) -> None:
    path, rgba = _rgba_fixture(tmp_path)
    for k in range(4):
        out = read_mask(path, channel=k)
        assert out.dtype == np.uint8
        np.testing.assert_array_equal(out, rgba[..., k])
    with pytest.raises(MaskReadError, match="channel=4 but the RGBA image has 4 channels"):
        read_mask(path, channel=4)


def test_png_rgb_rules(tmp_path: Path) -> None:
    path, rgba = _rgba_fixture(tmp_path)
    colour = rgba[..., :3].astype(np.int64)
    dark = colour.sum(axis=-1) < 128 * 3
    expected = {
        "dark": dark,
        "bright": ~dark,
        "nonblack": colour.any(axis=-1),
        "alpha": rgba[..., 3] > 0,
    }
    for rule in RGB_RULES:
        out = read_mask(path, rgb_rule=rule)
        assert out.dtype == np.uint8, rule
        assert set(np.unique(out)) <= {0, 1}, rule
        np.testing.assert_array_equal(out, expected[rule].astype(np.uint8), err_msg=rule)
    dark_out = read_mask(path, rgb_rule="dark")
    assert dark_out[0, 0] == 1 and dark_out[0, 1] == 1 and dark_out[0, 2] == 0
    assert dark_out[1, 0] == 1 and read_mask(path, rgb_rule="nonblack")[1, 0] == 1


def test_alpha_rule_needs_alpha(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.new("RGB", (3, 3)).save(path)
    with pytest.raises(MaskReadError, match="rgb_rule='alpha' but the RGB image has no alpha"):
        read_mask(path, rgb_rule="alpha")


def test_grey_alpha_rules(tmp_path: Path) -> None:
    la = np.zeros((3, 4, 2), np.uint8)
    la[..., 0] = [[0, 50, 200, 255]] * 3
    la[..., 1] = [[255, 0, 255, 0]] * 3
    path = tmp_path / "la.png"
    Image.fromarray(la, mode="LA").save(path)
    np.testing.assert_array_equal(read_mask(path, rgb_rule="dark"), la[..., 0] < 128)
    np.testing.assert_array_equal(read_mask(path, rgb_rule="alpha"), la[..., 1] > 0)
    np.testing.assert_array_equal(read_mask(path, channel=0), la[..., 0])


def test_rule_arguments_ignored_for_single_channel(tmp_path: Path) -> None:
    mask = _labels((5, 6), dtype=np.uint8, high=200)
    path = tmp_path / "grey.png"
    Image.fromarray(mask).save(path)
    np.testing.assert_array_equal(read_mask(path, channel=2), mask)
    np.testing.assert_array_equal(read_mask(path, rgb_rule="alpha"), mask)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"channel": 0, "rgb_rule": "dark"}, "pass channel= or rgb_rule=, not both"),
        ({"rgb_rule": "darkest"}, "unknown rgb_rule 'darkest'"),
        ({"channel": -1}, "channel must be a non-negative integer"),
        ({"channel": True}, "channel must be a non-negative integer"),
        ({"max_pixels": 0}, "max_pixels must be positive"),
        ({"max_pixels": 1.5}, "max_pixels must be an integer"),
    ],
)
def test_bad_arguments(tmp_path: Path, kwargs: dict, match: str) -> None:
    path, _ = _rgba_fixture(tmp_path)
    with pytest.raises(MaskReadError, match=match) as exc_info:
        read_mask(path, **kwargs)
    _assert_one_line_error(exc_info, path)


# ------------------------------------------------------------------------------------- NPY


@pytest.mark.parametrize(
    "mask",
    [
        _labels((7, 9), dtype=np.int64),
        _labels((3, 7, 9), dtype=np.uint32),
        _labels((7, 9), high=2).astype(bool),
        _labels((3, 7, 9), high=2).astype(bool),
        _labels((7, 9)).astype(np.float32),
    ],
    ids=["2d-int64", "3d-uint32", "2d-bool", "3d-bool", "2d-float32"],
)
def test_npy_round_trip(tmp_path: Path, mask: np.ndarray) -> None:
    path = tmp_path / "mask.npy"
    np.save(path, mask)
    out = read_mask(path)
    assert out.dtype == mask.dtype
    np.testing.assert_array_equal(out, mask)


def test_npy_big_endian_and_fortran_order(tmp_path: Path) -> None:
    mask = np.asfortranarray(_labels((6, 8)).astype(">u2"))
    path = tmp_path / "be.npy"
    np.save(path, mask)
    out = read_mask(path)
    assert out.dtype == np.uint16 and out.dtype.isnative
    np.testing.assert_array_equal(out, mask)


def test_npy_singleton_axes(tmp_path: Path) -> None:
    mask = _labels((1, 5, 1, 6))
    path = tmp_path / "singletons.npy"
    np.save(path, mask)
    assert read_mask(path).shape == (5, 6)
    np.save(path, mask.reshape(1, 1, 30))
    assert read_mask(path).shape == (1, 30)


_UNPICKLED: list[str] = []


def _record_unpickling(tag: str) -> str:
    _UNPICKLED.append(tag)
    return tag


class _Tripwire:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (_record_unpickling, ("unpickled",))


def test_npy_object_dtype_refused_and_never_unpickled(tmp_path: Path) -> None:
    path = tmp_path / "objects.npy"
    data = np.empty((2, 2), dtype=object)
    data[...] = _Tripwire()
    np.save(path, data, allow_pickle=True)
    _UNPICKLED.clear()
    with pytest.raises(MaskReadError, match="object dtype is refused") as exc_info:
        read_mask(path)
    _assert_one_line_error(exc_info, path)
    assert _UNPICKLED == []


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (np.zeros((3, 3), dtype=[("a", "i4"), ("b", "f4")]), "structured dtype"),
        (np.full((3, 3), "x"), "is not numeric"),
        (np.zeros((3, 3), np.complex64), "is not numeric"),
        (np.zeros((3, 3), "datetime64[s]"), "is not numeric"),
    ],
    ids=["structured", "unicode", "complex", "datetime"],
)
def test_npy_bad_dtypes(tmp_path: Path, data: np.ndarray, match: str) -> None:
    path = tmp_path / "bad.npy"
    np.save(path, data)
    with pytest.raises(MaskReadError, match=match) as exc_info:
        read_mask(path)
    _assert_one_line_error(exc_info, path)


def test_npy_trailing_three_is_a_volume_unless_asked(tmp_path: Path) -> None:
    rgb = _labels((5, 6, 3), dtype=np.uint8, high=256)
    path = tmp_path / "maybe_rgb.npy"
    np.save(path, rgb)
    np.testing.assert_array_equal(read_mask(path), rgb)  # (D, H, W) with W = 3
    np.testing.assert_array_equal(read_mask(path, channel=1), rgb[..., 1])
    lum = rgb.astype(np.int64).sum(axis=-1)
    np.testing.assert_array_equal(read_mask(path, rgb_rule="dark"), lum < 3 * 128)
    with pytest.raises(MaskReadError, match="no alpha channel"):
        read_mask(path, rgb_rule="alpha")


def test_npy_rgba_alpha_rule(tmp_path: Path) -> None:
    rgba = _labels((1, 5, 6, 4), dtype=np.uint8, high=3)
    path = tmp_path / "rgba.npy"
    np.save(path, rgba)
    np.testing.assert_array_equal(read_mask(path, rgb_rule="alpha"), rgba[0, ..., 3] > 0)


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((5,), "expected a 2D or 3D mask, got 1D"),
        ((2, 3, 4, 5), "expected a 2D or 3D mask, got 4D"),
        ((0, 4), "empty image"),
        ((3, 0, 4), "empty image"),
    ],
)
def test_npy_bad_shapes(tmp_path: Path, shape: tuple[int, ...], match: str) -> None:
    path = tmp_path / "shape.npy"
    np.save(path, np.zeros(shape, np.uint8))
    with pytest.raises(MaskReadError, match=match) as exc_info:
        read_mask(path)
    _assert_one_line_error(exc_info, path)


# ------------------------------------------------------------------------------ size limit


def _write_each_format(tmp_path: Path) -> list[Path]:
    mask = _labels((12, 10), high=200)
    paths = [tmp_path / "m.tif", tmp_path / "m.png", tmp_path / "m.npy"]
    tifffile.imwrite(paths[0], mask)
    Image.fromarray(mask.astype(np.uint8)).save(paths[1])
    np.save(paths[2], mask)
    return paths


def test_max_pixels_refused_before_reading_pixels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    paths = _write_each_format(tmp_path)
    for path in paths:
        assert read_mask(path, max_pixels=120).shape == (12, 10)
    _forbid(monkeypatch, np, "load")
    _forbid(monkeypatch, np.lib.format, "read_array")
    _forbid(monkeypatch, Image.Image, "load")
    _forbid(monkeypatch, ImageFile.ImageFile, "load")
    _forbid(monkeypatch, tifffile.TiffPageSeries, "asarray")
    for path in paths:
        with pytest.raises(MaskReadError) as exc_info:
            read_mask(path, max_pixels=119)
        reason = _assert_one_line_error(exc_info, path)
        assert reason == "image has 120 pixels, more than the limit of 119 (max_pixels)"


def test_max_pixels_counts_voxels_not_channels(tmp_path: Path) -> None:
    path = tmp_path / "rgb.png"
    Image.new("RGB", (10, 12)).save(path)
    assert read_mask(path, channel=0, max_pixels=120).shape == (12, 10)
    with pytest.raises(MaskReadError, match="image has 120 pixels"):
        read_mask(path, channel=0, max_pixels=119)
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(stack, np.zeros((3, 4, 5), np.uint8), photometric="minisblack")
    with pytest.raises(MaskReadError, match="image has 60 pixels"):
        read_mask(stack, max_pixels=59)


def test_npy_huge_header_tiny_body(tmp_path: Path) -> None:
    path = tmp_path / "huge.npy"
    header = {"descr": "<u2", "fortran_order": False, "shape": (100_000, 100_000)}
    with open(path, "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\x00" * 64)
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    reason = _assert_one_line_error(exc_info, path)
    assert reason == f"image has {10**10} pixels, more than the limit of {2**30} (max_pixels)"
    # Under a limit it passes, the short body is caught before anything is allocated.
    with pytest.raises(MaskReadError, match="truncated .npy file"):
        read_mask(path, max_pixels=10**11)


def test_png_huge_header_tiny_body(tmp_path: Path) -> None:
    path = tmp_path / "huge.png"
    path.write_bytes(_png_bytes(100_000, 100_000, 8, 0, b"\x00" * 10))
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    reason = _assert_one_line_error(exc_info, path)
    assert reason == f"image has {10**10} pixels, more than the limit of {2**30} (max_pixels)"


def test_tiff_huge_header_tiny_body(tmp_path: Path) -> None:
    path = tmp_path / "huge.tif"
    tifffile.imwrite(path, np.zeros((4, 4), np.uint8))
    raw = bytearray(path.read_bytes())
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages[0].tags
        for name in ("ImageWidth", "ImageLength"):
            tag = tags[name]
            size = 2 if tag.dtype == 3 else 4
            fmt = "<H" if size == 2 else "<I"
            raw[tag.valueoffset : tag.valueoffset + size] = struct.pack(fmt, 60_000)
    path.write_bytes(bytes(raw))
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    reason = _assert_one_line_error(exc_info, path)
    assert reason.startswith(f"image has {60_000**2} pixels, more than the limit")


def test_pillow_limit_does_not_decide(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's own limit would refuse (or warn about) this image; ours allows it.
    path = tmp_path / "grey.png"
    mask = _labels((40, 50), dtype=np.uint8, high=256)
    Image.fromarray(mask).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    np.testing.assert_array_equal(read_mask(path), mask)
    assert Image.MAX_IMAGE_PIXELS == 100  # restored


# ---------------------------------------------------------------------- damaged files


def _assert_every_cut_fails(tmp_path: Path, name: str, raw: bytes, step: int = 1) -> None:
    path = tmp_path / name
    for n in range(1, len(raw), step):
        path.write_bytes(raw[:n])
        with pytest.raises(MaskReadError) as exc_info:
            read_mask(path)
        _assert_one_line_error(exc_info, path)


def test_truncated_png(tmp_path: Path) -> None:
    path = tmp_path / "full.png"
    Image.fromarray(_labels((20, 30), high=65536)).save(path)
    _assert_every_cut_fails(tmp_path, "cut.png", path.read_bytes())


def test_truncated_png_even_if_pillow_told_to_tolerate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "full.png"
    Image.fromarray(_labels((20, 30), dtype=np.uint8, high=256)).save(path)
    raw = path.read_bytes()
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    cut = tmp_path / "cut.png"
    for n in (len(raw) // 2, len(raw) - 20, len(raw) - 1):
        cut.write_bytes(raw[:n])
        with pytest.raises(MaskReadError, match="truncated|cannot read image"):
            read_mask(cut)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True  # restored


def _tiff_referenced_bytes(path: Path) -> int:
    """Bytes of a classic TIFF that its IFDs, tag values and image data occupy."""
    end = 0
    with tifffile.TiffFile(path) as tif:
        assert not tif.is_bigtiff
        for page in tif.pages:
            end = max(end, page.offset + 2 + 12 * len(page.tags) + 4)
            end = max(end, *(tag.valueoffset + tag.valuebytecount for tag in page.tags))
            end = max(
                end, *(o + n for o, n in zip(page.dataoffsets, page.databytecounts, strict=True))
            )
    return end


@pytest.mark.parametrize(
    ("shape", "compression"),
    [((12, 15), None), ((4, 12, 15), None), ((4, 12, 15), "zlib")],
    ids=["2d", "stack", "deflate-stack"],
)
def test_truncated_tiff(tmp_path: Path, shape: tuple[int, ...], compression: str | None) -> None:
    path = tmp_path / "full.tif"
    mask = _labels(shape)
    tifffile.imwrite(path, mask, compression=compression, photometric="minisblack")
    raw = path.read_bytes()
    # tifffile may leave a few unreferenced bytes at the end; losing them loses nothing.
    needed = _tiff_referenced_bytes(path)
    assert len(raw) - 32 <= needed <= len(raw)
    _assert_every_cut_fails(tmp_path, "cut.tif", raw[:needed])
    cut = tmp_path / "cut.tif"
    cut.write_bytes(raw[:needed])
    np.testing.assert_array_equal(read_mask(cut), mask)


def test_truncated_npy(tmp_path: Path) -> None:
    path = tmp_path / "full.npy"
    np.save(path, _labels((6, 7)))
    _assert_every_cut_fails(tmp_path, "cut.npy", path.read_bytes())


@pytest.mark.parametrize("suffix", MASK_SUFFIXES)
def test_empty_file(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"empty{suffix}"
    path.write_bytes(b"")
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    assert _assert_one_line_error(exc_info, path) == "empty file (0 bytes)"


@pytest.mark.parametrize("suffix", MASK_SUFFIXES)
@pytest.mark.parametrize(
    "content",
    [b"garbage bytes, not an image\n" * 5, b"II*\x00" + b"\xff" * 40, b"\x89PNG\r\n\x1a\nxx"],
    ids=["text", "tiff-magic", "png-magic"],
)
def test_garbage_bytes(tmp_path: Path, suffix: str, content: bytes) -> None:
    path = tmp_path / f"garbage{suffix}"
    path.write_bytes(content)
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    _assert_one_line_error(exc_info, path)


def test_wrong_content_for_suffix(tmp_path: Path) -> None:
    path = tmp_path / "really_png.npy"
    Image.new("L", (4, 4)).save(path, format="PNG")
    with pytest.raises(MaskReadError, match="not a readable .npy file"):
        read_mask(path)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "mask.xyz"
    path.write_bytes(b"whatever")
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    reason = _assert_one_line_error(exc_info, path)
    assert reason == (
        "unsupported format '.xyz' (expected .tif, .tiff, .png, .npy, .jpg, .jpeg, .bmp, .gif)"
    )


def test_suffix_case_insensitive(tmp_path: Path) -> None:
    mask = _labels((4, 5))
    path = tmp_path / "MASK.NPY"
    with open(path, "wb") as fh:  # np.save(path) would append ".npy"
        np.save(fh, mask)
    np.testing.assert_array_equal(read_mask(str(path)), mask)


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nowhere.tif"
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    assert _assert_one_line_error(exc_info, path) == "no such file"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_fifo_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.npy"
    os.mkfifo(path)
    with pytest.raises(MaskReadError, match="not a regular file"):
        read_mask(path)


def test_tifffile_logger_left_as_found(tmp_path: Path) -> None:
    logger = logging.getLogger("tifffile")
    before = list(logger.handlers)
    path = tmp_path / "m.tif"
    tifffile.imwrite(path, _labels((4, 5)))
    read_mask(path)
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(MaskReadError):
        read_mask(path)
    assert logger.handlers == before


def test_directory(tmp_path: Path) -> None:
    path = tmp_path / "folder.png"
    path.mkdir()
    with pytest.raises(MaskReadError, match="is a directory"):
        read_mask(path)


# ------------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_realdata_dsb2018_labels(realdata: Path) -> None:
    paths = sorted((realdata / "dsb2018" / "labels").glob("*.png"))
    assert paths
    for path in paths:
        mask = read_mask(path)
        assert mask.dtype == np.uint16, path
        assert mask.ndim == 2 and mask.max() > 0, path


@pytest.mark.realdata
def test_realdata_stardist_3d(realdata: Path) -> None:
    mask = read_mask(realdata / "stardist" / "mask3d.tif")
    assert mask.shape == (31, 61, 57)
    assert mask.dtype == np.uint16
    assert mask.max() > 0


@pytest.mark.realdata
def test_realdata_stardist_2d(realdata: Path) -> None:
    mask = read_mask(realdata / "stardist" / "mask2d.tif")
    assert mask.shape == (512, 512)
    ids = np.unique(mask)
    assert len(ids[ids != 0]) == 125
    assert mask.max() == 183


@pytest.mark.realdata
def test_realdata_horse(realdata: Path) -> None:
    path = realdata / "skimage" / "horse.png"
    with pytest.raises(MaskReadError) as exc_info:
        read_mask(path)
    assert "RGBA image (4 channels); pass channel= or rgb_rule=" in str(exc_info.value)
    mask = read_mask(path, rgb_rule="dark")
    assert mask.dtype == np.uint8 and mask.shape == (328, 400)
    assert set(np.unique(mask)) == {0, 1}
    assert 0 < mask.mean() < 1
    # The horse is one object in the middle; the corners are background.
    assert mask[0, 0] == mask[0, -1] == mask[-1, 0] == mask[-1, -1] == 0


# ----------------------------------------------------------------------------- JPEG, BMP, GIF


def _disc(size: int = 64) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return np.where((yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2, 255, 0).astype(
        np.uint8
    )


@pytest.mark.parametrize("suffix", [".jpg", ".jpeg", ".JPG"])
def test_jpeg_mask_read_with_its_noise(tmp_path: Path, suffix: str) -> None:
    mask = _disc()
    path = tmp_path / f"polyp{suffix}"
    Image.fromarray(mask).save(path, format="JPEG", quality=75)
    read = read_mask(path)
    assert read.dtype == np.uint8 and read.shape == mask.shape
    # Values as decoded: the noise is there, the threshold comes later.
    assert len(np.unique(read)) > 2
    assert np.array_equal(read > 127, mask > 127) or np.mean((read > 127) != (mask > 127)) < 0.01
    assert is_lossy(path)


@pytest.mark.parametrize("fmt,suffix", [("BMP", ".bmp"), ("GIF", ".gif")])
def test_bmp_and_gif_masks_lossless(tmp_path: Path, fmt: str, suffix: str) -> None:
    mask = np.zeros((10, 12), np.uint8)
    mask[2:5, 3:9] = 1
    mask[6:9, 1:4] = 2
    path = tmp_path / f"labels{suffix}"
    Image.fromarray(mask).save(path, format=fmt)
    np.testing.assert_array_equal(read_mask(path), mask)
    assert not is_lossy(path)


def test_jpeg_content_behind_png_suffix_is_lossy(tmp_path: Path) -> None:
    path = tmp_path / "really_jpeg.png"
    Image.fromarray(_disc()).save(path, format="JPEG")
    assert read_mask(path).shape == (64, 64)
    assert is_lossy(path)
    png = tmp_path / "plain.png"
    Image.fromarray(_disc()).save(png)
    assert not is_lossy(png) and not is_lossy(tmp_path / "missing.png")
