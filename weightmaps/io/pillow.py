"""Reading PNG, JPEG, BMP and GIF masks with Pillow (whichever format the content is)."""

from __future__ import annotations

import os
import threading

import numpy as np

from weightmaps.io.header import (
    GREY_ALPHA,
    LIBRARY_ERRORS,
    RGB,
    RGBA,
    Channels,
    MaskReadError,
    Request,
    check_header,
    finish,
    library_reason,
)

__all__ = ["read_pillow"]


# Content Pillow may decode behind a .png, .jpg, .bmp or .gif suffix. Its TIFF
# plugin (and the rest) have their own quirks with damaged files; TIFF content
# belongs in a .tif file, read by tifffile.
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP", "GIF")

# PNG files end with this exact chunk (zero length, "IEND", fixed CRC); Pillow
# stops quietly when it is missing, so its absence is how a cut file is spotted.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_TAIL_BYTES = 1 << 16

# Pillow's decompression-bomb limit and truncated-file tolerance are module
# globals; they are swapped for the duration of one read, so reads through this
# module are serialised to keep one thread from restoring another's settings.
_PILLOW_LOCK = threading.Lock()


# Pillow modes with one band per pixel; "P" gives the palette indices.
_PILLOW_GREY_MODES = frozenset({"1", "L", "P", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_PILLOW_CHANNELS: dict[str, Channels] = {
    "RGB": RGB,
    "RGBA": RGBA,
    "RGBa": RGBA,
    "RGBX": Channels("RGBX", 4, (0, 1, 2)),
    "LA": GREY_ALPHA,
    "La": GREY_ALPHA,
    "PA": Channels("palette+alpha", 2, (0,), alpha=1),
    "CMYK": Channels("CMYK", 4, (0, 1, 2, 3)),
    "YCbCr": Channels("YCbCr", 3, (0, 1, 2)),
    "LAB": Channels("LAB", 3, (0, 1, 2)),
    "HSV": Channels("HSV", 3, (0, 1, 2)),
}
# Modes whose band values are not light intensities (indices, ink, chroma): the
# luminance rules are applied to Pillow's RGB(A) conversion of these instead.
_PILLOW_CONVERT_FOR_RULES: dict[str, str] = {
    "PA": "RGBA",
    "CMYK": "RGB",
    "YCbCr": "RGB",
    "LAB": "RGB",
    "HSV": "RGB",
}


def read_pillow(request: Request) -> np.ndarray:
    from PIL import Image, ImageFile

    path = request.path
    with _PILLOW_LOCK:
        saved = (Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES)
        # Our max_pixels decides, checked against the header below; a truncated
        # file must fail rather than come back padded with zeros.
        Image.MAX_IMAGE_PIXELS = None
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(path, formats=_PILLOW_FORMATS) as img:
                mode = img.mode
                width, height = img.size
                channels = _PILLOW_CHANNELS.get(mode)
                if channels is None and mode not in _PILLOW_GREY_MODES:
                    raise MaskReadError(path, f"unsupported image mode {mode!r}")
                # Pillow's modes all have acceptable dtypes, hence no dtype check.
                check_header(request, (height, width), channels, None)
                grey_scale = _check_png(path) if img.format == "PNG" else 1
                img.load()
                if channels is not None and request.rgb_rule is not None:
                    target = _PILLOW_CONVERT_FOR_RULES.get(mode)
                    if target is not None:
                        img = img.convert(target)
                        channels = _PILLOW_CHANNELS[target]
                data = np.array(img)
        except MaskReadError:
            raise
        except LIBRARY_ERRORS as exc:
            raise MaskReadError(path, library_reason("cannot read image", exc)) from exc
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved
    if grey_scale != 1 and mode == "L":
        # Pillow stretches 2- and 4-bit grey samples to 0..255 (v * 85, v * 17);
        # undo it so labels come back as stored. The division is exact.
        data //= grey_scale
    return finish(request, data, channels)


def _check_png(path: str) -> int:
    """Check that a PNG is complete; return Pillow's scale factor for its grey samples."""
    try:
        with open(path, "rb") as fh:
            # Signature (8), IHDR length and type (8), width and height (8),
            # then bit depth and colour type.
            head = fh.read(26)
            size = os.fstat(fh.fileno()).st_size
            fh.seek(max(0, size - _PNG_TAIL_BYTES))
            tail = fh.read()
    except OSError as exc:
        raise MaskReadError(path, library_reason("cannot read file", exc)) from exc
    if _PNG_IEND not in tail:
        raise MaskReadError(path, "truncated PNG: the file does not end with an IEND chunk")
    bit_depth, colour_type = head[24], head[25]
    if colour_type == 0 and bit_depth in (2, 4):
        return 255 // (2**bit_depth - 1)
    return 1
