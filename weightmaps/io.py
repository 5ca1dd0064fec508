"""Read segmentation label masks from TIFF, PNG and NPY files.

:func:`read_mask` returns the stored label values unchanged (only singleton axes
are dropped and the byte order made native), checks the image size from the
file header before any pixel data is read, and turns every failure into a
one-line :class:`MaskReadError` that starts with the file's path.
"""

from __future__ import annotations

import logging
import math
import os
import stat
import struct
import threading
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "MASK_SUFFIXES",
    "RGB_RULES",
    "MaskReadError",
    "read_mask",
    "read_spacing",
    "read_spacing_unit",
]

DEFAULT_MAX_PIXELS: int = 2**30
"""Largest pixel (voxel) count :func:`read_mask` accepts unless told otherwise."""

RGB_RULES: tuple[str, ...] = ("dark", "bright", "nonblack", "alpha")
"""Rules that turn a colour image into a 0/1 mask (see :func:`read_mask`)."""

MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy")
"""File suffixes :func:`read_mask` reads (compared case-insensitively)."""

# Exceptions the image libraries raise for damaged or unreadable files. Anything
# else (AttributeError, MemoryError, ...) is a bug or a resource problem and is
# left to propagate rather than be reported as a bad file.
_LIBRARY_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    ValueError,
    EOFError,
    KeyError,
    IndexError,
    TypeError,
    SyntaxError,
    NotImplementedError,
    RuntimeError,
    struct.error,
    zlib.error,
)

# TIFF compressions that tifffile decodes with the standard library alone.
_TIFF_BUILTIN_COMPRESSIONS = frozenset({1, 8, 32946})  # none, adobe deflate, deflate

# Content Pillow may decode behind a .png suffix. Its TIFF and GIF plugins (and
# the rest) have their own quirks with damaged files; TIFF content belongs in a
# .tif file, read by tifffile.
_PILLOW_FORMATS = ("PNG", "JPEG", "BMP")

# PNG files end with this exact chunk (zero length, "IEND", fixed CRC); Pillow
# stops quietly when it is missing, so its absence is how a cut file is spotted.
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"
_PNG_TAIL_BYTES = 1 << 16

# Pillow's decompression-bomb limit and truncated-file tolerance are module
# globals; they are swapped for the duration of one read, so reads through this
# module are serialised to keep one thread from restoring another's settings.
_PILLOW_LOCK = threading.Lock()


class MaskReadError(ValueError):
    """A mask file could not be read.

    The message is a single line, ``"<path>: <reason>"``.

    Parameters
    ----------
    path : str or os.PathLike
        The file that was being read.
    reason : str
        Why it failed; only its first non-empty line is kept.

    Attributes
    ----------
    path : str
        The file that was being read.
    reason : str
        Why it failed, without the path.
    """

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = _first_line(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduction passes the formatted message as the only
        # argument, which __init__ cannot take; worker processes pickle errors.
        return (type(self), (self.path, self.reason))


@dataclass(frozen=True)
class _Channels:
    """How the last axis of a multi-channel image is laid out."""

    kind: str
    count: int
    colour: tuple[int, ...]
    alpha: int | None = None


_RGB = _Channels("RGB", 3, (0, 1, 2))
_RGBA = _Channels("RGBA", 4, (0, 1, 2), alpha=3)
_GREY_ALPHA = _Channels("grey+alpha", 2, (0,), alpha=1)

# Pillow modes with one band per pixel; "P" gives the palette indices.
_PILLOW_GREY_MODES = frozenset({"1", "L", "P", "I", "F", "I;16", "I;16L", "I;16B", "I;16N"})
_PILLOW_CHANNELS: dict[str, _Channels] = {
    "RGB": _RGB,
    "RGBA": _RGBA,
    "RGBa": _RGBA,
    "RGBX": _Channels("RGBX", 4, (0, 1, 2)),
    "LA": _GREY_ALPHA,
    "La": _GREY_ALPHA,
    "PA": _Channels("palette+alpha", 2, (0,), alpha=1),
    "CMYK": _Channels("CMYK", 4, (0, 1, 2, 3)),
    "YCbCr": _Channels("YCbCr", 3, (0, 1, 2)),
    "LAB": _Channels("LAB", 3, (0, 1, 2)),
    "HSV": _Channels("HSV", 3, (0, 1, 2)),
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


def read_mask(
    path: str | os.PathLike[str],
    *,
    channel: int | None = None,
    rgb_rule: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a 2D or 3D segmentation mask from a TIFF, PNG or NPY file.

    Label values are returned exactly as stored: nothing is rescaled, relabelled
    or cast, apart from making the byte order native. Singleton axes are dropped
    while the array has more than two dimensions, so a ``(1, H, W)`` stack
    becomes ``(H, W)``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` (read with tifffile; 2D pages or 3D multi-page
        stacks, first series only), ``.png`` (read with Pillow; JPEG or BMP
        content behind the suffix is read too) or ``.npy`` file. The suffix is
        compared case-insensitively.
    channel : int, optional
        For a colour (multi-channel) image, return this channel (0-based) as
        stored. Ignored for single-channel images.
    rgb_rule : {'dark', 'bright', 'nonblack', 'alpha'}, optional
        For a colour image, build a ``uint8`` 0/1 mask: ``'dark'`` marks pixels
        whose luminance (mean of the colour channels, alpha ignored) is below
        half the dtype's range (128 for ``uint8``, 0.5 for floats),
        ``'bright'`` those at or above it, ``'nonblack'`` those with any colour
        channel nonzero, and ``'alpha'`` those with alpha > 0. Ignored for
        single-channel images. Cannot be combined with `channel`.
    max_pixels : int, default DEFAULT_MAX_PIXELS
        Refuse images whose pixel (voxel) count, read from the file header,
        exceeds this. Checked before pixel data is read or memory allocated;
        Pillow's own decompression-bomb limit is bypassed so this is the limit
        that applies.

    Returns
    -------
    numpy.ndarray
        The mask, shape ``(H, W)`` or ``(D, H, W)``. PNG modes map to ``bool``
        ("1"), ``uint8`` ("L", and "P" as palette indices), ``uint16``
        ("I;16") and ``int32`` ("I").

    Raises
    ------
    MaskReadError
        For any file that cannot be read as a mask: missing, empty, truncated
        or corrupt, unsupported suffix or dtype, too large, not 2D/3D, a colour
        image without `channel`/`rgb_rule`, or a TIFF compression that needs
        the optional ``imagecodecs`` package. Invalid arguments raise it too.
        The message is one line starting with the path.

    Notes
    -----
    Colour images are: Pillow images with several bands ("RGB", "RGBA", "LA",
    "CMYK", ...), and TIFFs with several samples per pixel. An NPY array is
    only read as colour when `channel` or `rgb_rule` is given and its last axis
    has length 3 (RGB) or 4 (RGBA); otherwise a ``(D, H, 3)`` array is a
    volume. Object, structured and non-numeric NPY dtypes are refused without
    unpickling anything.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from weightmaps.io import read_mask
    >>> path = os.path.join(tempfile.mkdtemp(), "mask.npy")
    >>> np.save(path, np.array([[0, 1], [2, 2]], dtype=np.uint16))
    >>> read_mask(path)
    array([[0, 1],
           [2, 2]], dtype=uint16)
    >>> read_mask(path, max_pixels=3)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    weightmaps.io.MaskReadError: ...mask.npy: image has 4 pixels, more than the limit of 3 ...

    A drawn RGB(A) mask needs a rule saying which pixels are foreground:

    >>> mask = read_mask("outline.png", rgb_rule="dark")  # doctest: +SKIP
    """
    _check_arguments(path, channel, rgb_rule, max_pixels)
    suffix = Path(path).suffix.lower()
    if suffix not in MASK_SUFFIXES:
        raise MaskReadError(
            path,
            f"unsupported format {suffix!r} (expected {', '.join(MASK_SUFFIXES)})",
        )
    _check_file(path)
    request = _Request(os.fspath(path), channel, rgb_rule, max_pixels)
    if suffix == ".npy":
        return _read_npy(request)
    if suffix == ".png":
        return _read_pillow(request)
    return _read_tiff(request)


@dataclass(frozen=True)
class _Request:
    path: str
    channel: int | None
    rgb_rule: str | None
    max_pixels: int

    @property
    def wants_colour(self) -> bool:
        return self.channel is not None or self.rgb_rule is not None


def _first_line(text: str) -> str:
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"


def _library_reason(what: str, exc: BaseException) -> str:
    message = _first_line(str(exc)) if str(exc).strip() else type(exc).__name__
    return f"{what}: {message}"


def _check_arguments(
    path: str | os.PathLike[str],
    channel: int | None,
    rgb_rule: str | None,
    max_pixels: int,
) -> None:
    if channel is not None and rgb_rule is not None:
        raise MaskReadError(path, "pass channel= or rgb_rule=, not both")
    if channel is not None and (
        isinstance(channel, bool) or not isinstance(channel, int | np.integer) or channel < 0
    ):
        raise MaskReadError(path, f"channel must be a non-negative integer, got {channel!r}")
    if rgb_rule is not None and rgb_rule not in RGB_RULES:
        raise MaskReadError(
            path, f"unknown rgb_rule {rgb_rule!r} (expected one of {', '.join(RGB_RULES)})"
        )
    if isinstance(max_pixels, bool) or not isinstance(max_pixels, int | np.integer):
        raise MaskReadError(path, f"max_pixels must be an integer, got {max_pixels!r}")
    if max_pixels < 1:
        raise MaskReadError(path, f"max_pixels must be positive, got {max_pixels}")


def _check_file(path: str | os.PathLike[str]) -> None:
    # Checked up front because the libraries word these cases inconsistently
    # (an empty TIFF is an "IndexError", an empty NPY an "EOF").
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise MaskReadError(path, "no such file") from exc
    except OSError as exc:
        raise MaskReadError(path, _library_reason("cannot access file", exc)) from exc
    if stat.S_ISDIR(info.st_mode):
        raise MaskReadError(path, "is a directory, not a mask file")
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or device would block or never end.
        raise MaskReadError(path, "not a regular file")
    if info.st_size == 0:
        raise MaskReadError(path, "empty file (0 bytes)")


def _squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > 2 and 1 in dims:
        del dims[dims.index(1)]
    return tuple(dims)


def _check_dtype(request: _Request, dtype: np.dtype) -> None:
    if dtype.hasobject:
        raise MaskReadError(
            request.path, "object dtype is refused (reading it would mean unpickling)"
        )
    if dtype.names is not None:
        raise MaskReadError(request.path, f"structured dtype {dtype} is not a label mask")
    if dtype.subdtype is not None:
        raise MaskReadError(request.path, f"subarray dtype {dtype} is not a label mask")
    if dtype.kind not in "biuf":
        raise MaskReadError(
            request.path, f"dtype {dtype} is not numeric (expected bool, integer or float)"
        )


def _check_header(
    request: _Request,
    shape: tuple[int, ...],
    channels: _Channels | None,
    dtype: np.dtype | None,
) -> None:
    """Validate everything knowable from the header, before pixels are read.

    `shape` is the spatial shape, without the channel axis of a colour image;
    `dtype` is None where the format only has acceptable dtypes.
    """
    if dtype is not None:
        _check_dtype(request, dtype)
    shape = tuple(int(n) for n in shape)
    pixels = math.prod(shape)
    if pixels == 0:
        raise MaskReadError(request.path, f"empty image (shape {shape})")
    if pixels > request.max_pixels:
        raise MaskReadError(
            request.path,
            f"image has {pixels} pixels, more than the limit of {request.max_pixels} (max_pixels)",
        )
    ndim = len(_squeezed(shape))
    if ndim not in (2, 3):
        raise MaskReadError(
            request.path, f"expected a 2D or 3D mask, got {ndim}D data of shape {shape}"
        )
    if channels is None:
        return
    if not request.wants_colour:
        raise MaskReadError(
            request.path,
            f"{channels.kind} image ({channels.count} channels); pass channel= or rgb_rule= "
            f"(one of {', '.join(repr(rule) for rule in RGB_RULES)}) to say how to read it",
        )
    if request.channel is not None and request.channel >= channels.count:
        raise MaskReadError(
            request.path,
            f"channel={request.channel} but the {channels.kind} image has "
            f"{channels.count} channels",
        )
    if request.rgb_rule == "alpha" and channels.alpha is None:
        raise MaskReadError(
            request.path, f"rgb_rule='alpha' but the {channels.kind} image has no alpha channel"
        )


def _half_range(dtype: np.dtype) -> float:
    if dtype.kind == "b":
        return 0.5
    if dtype.kind in "iu":
        return (int(np.iinfo(dtype).max) + 1) // 2
    # Float colour images are conventionally scaled to [0, 1].
    return 0.5


def _apply_rule(data: np.ndarray, channels: _Channels, rule: str) -> np.ndarray:
    if rule == "alpha":
        assert channels.alpha is not None  # ruled out by _check_header
        return (data[..., channels.alpha] > 0).astype(np.uint8)
    colour = data[..., list(channels.colour)]
    if rule == "nonblack":
        return np.any(colour != 0, axis=-1).astype(np.uint8)
    threshold = _half_range(data.dtype)
    n = len(channels.colour)
    if data.dtype.kind in "biu" and data.dtype.itemsize <= 4 and float(threshold).is_integer():
        # mean < t  <=>  sum < t * n, which integer sums decide exactly (a float
        # mean would put e.g. (127 + 128 + 128) / 3 on the wrong side by rounding).
        total = colour.sum(axis=-1, dtype=np.int64)
        dark = total < int(threshold) * n
    else:
        dark = colour.mean(axis=-1, dtype=np.float64) < threshold
    return (dark if rule == "dark" else ~dark).astype(np.uint8)


def _finish(request: _Request, data: np.ndarray, channels: _Channels | None) -> np.ndarray:
    """Squeeze, pick the channel or apply the rule, and make the byte order native."""
    if channels is None:
        data = data.reshape(_squeezed(data.shape))
    else:
        data = data.reshape(_squeezed(data.shape[:-1]) + data.shape[-1:])
        if request.rgb_rule is not None:
            data = _apply_rule(data, channels, request.rgb_rule)
        else:
            assert request.channel is not None  # ruled out by _check_header
            data = data[..., request.channel].copy()
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data


# --------------------------------------------------------------------------- NPY


def _read_npy(request: _Request) -> np.ndarray:
    path = request.path
    try:
        with open(path, "rb") as fh:
            shape, dtype = _npy_header(request, fh)
            channels = None
            spatial = shape
            squeezed = _squeezed(shape)
            if request.wants_colour and len(squeezed) in (3, 4) and squeezed[-1] in (3, 4):
                channels = _RGB if squeezed[-1] == 3 else _RGBA
                spatial = squeezed[:-1]
            _check_header(request, spatial, channels, dtype)

            expected = fh.tell() + math.prod(shape) * dtype.itemsize
            file_size = os.fstat(fh.fileno()).st_size
            if file_size < expected:
                raise MaskReadError(
                    path,
                    f"truncated .npy file: the header promises {expected} bytes, "
                    f"the file has {file_size}",
                )
            # Same handle as the header checks, so a file replaced in between
            # cannot slip past them.
            fh.seek(0)
            data = np.lib.format.read_array(fh, allow_pickle=False)
    except MaskReadError:
        raise
    except _LIBRARY_ERRORS as exc:
        raise MaskReadError(path, _library_reason("cannot read .npy data", exc)) from exc
    if channels is not None:
        data = data.reshape(squeezed)
    return _finish(request, data, channels)


def _npy_header(request: _Request, fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            # Version 3.0 exists only for structured dtypes with non-Latin-1
            # field names, which are refused anyway.
            raise MaskReadError(request.path, f"unsupported .npy format version {version}")
    except MaskReadError:
        raise
    except _LIBRARY_ERRORS as exc:
        raise MaskReadError(request.path, _library_reason("not a readable .npy file", exc)) from exc
    return tuple(int(n) for n in shape), dtype


# ------------------------------------------------------------------------ Pillow


def _read_pillow(request: _Request) -> np.ndarray:
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
                _check_header(request, (height, width), channels, None)
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
        except _LIBRARY_ERRORS as exc:
            raise MaskReadError(path, _library_reason("cannot read image", exc)) from exc
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved
    if grey_scale != 1 and mode == "L":
        # Pillow stretches 2- and 4-bit grey samples to 0..255 (v * 85, v * 17);
        # undo it so labels come back as stored. The division is exact.
        data //= grey_scale
    return _finish(request, data, channels)


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
        raise MaskReadError(path, _library_reason("cannot read file", exc)) from exc
    if _PNG_IEND not in tail:
        raise MaskReadError(path, "truncated PNG: the file does not end with an IEND chunk")
    bit_depth, colour_type = head[24], head[25]
    if colour_type == 0 and bit_depth in (2, 4):
        return 255 // (2**bit_depth - 1)
    return 1


# -------------------------------------------------------------------------- TIFF


class _ErrorLog(logging.Handler):
    """Collects ERROR records that tifffile logs from the calling thread.

    tifffile logs, rather than raises, when an IFD chain is broken or metadata
    and pages disagree, and then returns fewer pages than the file describes.
    """

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.messages.append(record.getMessage())


@contextmanager
def _tifffile_errors() -> Iterator[_ErrorLog]:
    handler = _ErrorLog()
    logger = logging.getLogger("tifffile")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _imagecodecs_available() -> bool:
    try:
        import imagecodecs  # noqa: F401
    except ImportError:
        return False
    return True


def _tiff_channels(series: Any) -> _Channels | None:
    axes = series.axes
    if "S" not in axes:
        return None
    samples = int(series.shape[axes.index("S")])
    if samples == 1:
        return None
    page = series.keyframe
    photometric = int(page.photometric)
    if photometric == 2:  # RGB
        if samples == 3:
            return _RGB
        if samples == 4:
            return _RGBA
        return _Channels(f"RGB+{samples - 3}", samples, (0, 1, 2), alpha=3)
    if photometric in (0, 1):  # min-is-white / min-is-black with extra samples
        kind = "grey+alpha" if samples == 2 else "multi-channel"
        return _Channels(kind, samples, (0,), alpha=1)
    name = getattr(page.photometric, "name", str(photometric))
    return _Channels(name, samples, tuple(range(samples)))


def _tiff_end(tif: Any, series: Any) -> int:
    """Return the byte offset where the file's image data and IFDs end.

    tifffile reads a contiguous series without parsing every IFD, and tolerates
    tag values past the end of the file, so a cut-off file can otherwise read
    without error; parsing every page and comparing ends with the file size
    catches it.
    """
    if series.dataoffset is not None:
        end = int(series.dataoffset) + int(series.nbytes)
    else:
        end = 0
        for page in series.pages:
            if page is None:
                continue
            for offset, count in zip(page.dataoffsets, page.databytecounts, strict=False):
                if count:
                    end = max(end, int(offset) + int(count))
    fmt = tif.tiff
    fh = tif.filehandle
    for page in tif.pages:
        tags = getattr(page, "tags", None)
        if tags is None:
            continue
        # The declared entry count, not len(tags): tifffile skips entries it
        # cannot read.
        fh.seek(page.offset)
        (count,) = struct.unpack(fmt.tagnoformat, fh.read(fmt.tagnosize))
        end = max(end, int(page.offset) + fmt.tagnosize + count * fmt.tagsize + fmt.offsetsize)
        for tag in tags:
            end = max(end, int(tag.valueoffset) + int(tag.valuebytecount))
    return end


def _refuse_extra_series(path: str, tif: Any) -> None:
    """Pages of different shapes split a stack into series: not one 2D or 3D mask."""
    extra = [s for s in tif.series[1:] if not s.keyframe.is_reduced]
    if extra:
        shapes = ", ".join(str(tuple(s.shape)) for s in tif.series[:4])
        raise MaskReadError(
            path,
            f"TIFF holds {len(extra) + 1} images of different shapes ({shapes}); expected "
            "one 2D image or one 3D stack of equal pages",
        )


def read_spacing(path: str | os.PathLike[str]) -> tuple[float, ...] | None:
    """Pixel size per axis recorded in a TIFF, or None; see :func:`read_spacing_unit`."""
    return read_spacing_unit(path)[0]


def read_spacing_unit(
    path: str | os.PathLike[str],
) -> tuple[tuple[float, ...] | None, str | None]:
    """Pixel size per axis and its unit recorded in a TIFF; None where it records none.

    ImageJ stacks give the slice spacing (``spacing``) and the resolution
    tags give y and x. Other formats record nothing usable and give None.
    Metadata is read from the header only; a file that cannot be read gives
    None (reading the mask itself reports the problem).

    Examples
    --------
    >>> read_spacing_unit("mask.png")  # doctest: +SKIP
    (None, None)
    """
    if Path(path).suffix.lower() not in (".tif", ".tiff"):
        return None, None
    import tifffile

    try:
        with tifffile.TiffFile(path) as tif:
            if not tif.series:
                return None, None
            series = tif.series[0]
            page = series.keyframe
            spatial = [n for n, ax in zip(series.shape, series.axes, strict=True) if ax != "S"]
            spatial = [n for n in spatial if n != 1] if len(spatial) > 2 else spatial
            yx = [_resolution_spacing(page, f"{axis}Resolution") for axis in "YX"]
            meta = tif.imagej_metadata or {}
            z = meta.get("spacing")
            unit = meta.get("unit")
    except (*_LIBRARY_ERRORS, MaskReadError):
        return None, None
    spacing: list[float | None] = yx if len(spatial) == 2 else [z, *yx]
    if all(s is None for s in spacing) or len(spatial) not in (2, 3):
        return None, None
    result = tuple(1.0 if s is None else float(s) for s in spacing)
    if not all(math.isfinite(s) and s > 0 for s in result):
        return None, None
    return result, unit if isinstance(unit, str) and unit.isprintable() else None


def _resolution_spacing(page: Any, name: str) -> float | None:
    tag = page.tags.get(name)
    if tag is None:
        return None
    numerator, denominator = tag.value
    if numerator <= 0 or denominator <= 0:
        return None
    spacing = denominator / numerator
    # (1, 1) is what writers put when they know nothing.
    return None if spacing == 1.0 else spacing


def _read_tiff(request: _Request) -> np.ndarray:
    import tifffile

    path = request.path
    compression: int | None = None
    with _tifffile_errors() as log:
        try:
            with tifffile.TiffFile(path) as tif:
                if not tif.series:
                    raise MaskReadError(path, "TIFF file contains no images")
                series = tif.series[0]
                _refuse_extra_series(path, tif)
                compression = int(series.keyframe.compression)
                channels = _tiff_channels(series)
                shape = tuple(int(n) for n in series.shape)
                axes = series.axes
                spatial = tuple(n for n, ax in zip(shape, axes, strict=True) if ax != "S")
                _check_header(request, spatial, channels, np.dtype(series.dtype))
                end = _tiff_end(tif, series)
                if log.messages:
                    raise MaskReadError(path, f"corrupt TIFF: {log.messages[0]}")
                file_size = tif.filehandle.size
                if end > file_size:
                    raise MaskReadError(
                        path,
                        f"truncated TIFF: its data and IFDs end at byte {end}, the file has "
                        f"{file_size} bytes",
                    )
                data = series.asarray()
        except MaskReadError:
            raise
        except _LIBRARY_ERRORS as exc:
            if (
                compression is not None
                and compression not in _TIFF_BUILTIN_COMPRESSIONS
                and not _imagecodecs_available()
            ):
                try:
                    label = tifffile.COMPRESSION(compression).name
                except ValueError:
                    label = f"compression {compression}"
                raise MaskReadError(
                    path,
                    f"compressed with {label}; install imagecodecs (pip install imagecodecs) "
                    "to read it",
                ) from exc
            raise MaskReadError(path, _library_reason("cannot read TIFF", exc)) from exc
        if log.messages:
            raise MaskReadError(path, f"corrupt TIFF: {log.messages[0]}")
    if channels is not None:
        # Planar RGB comes as (..., S, Y, X); the rules expect channels last.
        data = np.moveaxis(data, axes.index("S"), -1)
    return _finish(request, data, channels)
