"""What every mask reader shares: the request and its checks against the file
header, the one-line error, and how the pixels become the mask.

Everything knowable from a header (size, dtype, dimensions, colour channels)
is checked before any pixel data is read or memory allocated.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import zlib
from dataclasses import dataclass
from typing import Any

import numpy as np

from weightmaps._shared.text import first_line

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "GREY_ALPHA",
    "LIBRARY_ERRORS",
    "RGB",
    "RGBA",
    "RGB_RULES",
    "Channels",
    "MaskReadError",
    "Request",
    "check_arguments",
    "check_dtype",
    "check_file",
    "check_header",
    "finish",
    "library_reason",
    "squeezed",
]

DEFAULT_MAX_PIXELS: int = 2**30
"""Largest pixel (voxel) count :func:`read_mask` accepts unless told otherwise."""

RGB_RULES: tuple[str, ...] = ("dark", "bright", "nonblack", "alpha")
"""Rules that turn a colour image into a 0/1 mask (see :func:`read_mask`)."""


# Exceptions the image libraries raise for damaged or unreadable files. Anything
# else (AttributeError, MemoryError, ...) is a bug or a resource problem and is
# left to propagate rather than be reported as a bad file.
LIBRARY_ERRORS: tuple[type[BaseException], ...] = (
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
        self.reason = first_line(reason)
        super().__init__(f"{self.path}: {self.reason}")

    def __reduce__(self) -> tuple[Any, ...]:
        # The default reduction passes the formatted message as the only
        # argument, which __init__ cannot take; worker processes pickle errors.
        return (type(self), (self.path, self.reason))


# Shown and pickled under the name users import it by.
MaskReadError.__module__ = "weightmaps.io"


@dataclass(frozen=True)
class Channels:
    """How the last axis of a multi-channel image is laid out."""

    kind: str
    count: int
    colour: tuple[int, ...]
    alpha: int | None = None


RGB = Channels("RGB", 3, (0, 1, 2))
RGBA = Channels("RGBA", 4, (0, 1, 2), alpha=3)
GREY_ALPHA = Channels("grey+alpha", 2, (0,), alpha=1)


@dataclass(frozen=True)
class Request:
    path: str
    channel: int | None
    rgb_rule: str | None
    max_pixels: int

    @property
    def wants_colour(self) -> bool:
        return self.channel is not None or self.rgb_rule is not None


def library_reason(what: str, exc: BaseException) -> str:
    message = first_line(str(exc)) if str(exc).strip() else type(exc).__name__
    return f"{what}: {message}"


def check_arguments(
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


def check_file(path: str | os.PathLike[str]) -> None:
    # Checked up front because the libraries word these cases inconsistently
    # (an empty TIFF is an "IndexError", an empty NPY an "EOF").
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise MaskReadError(path, "no such file") from exc
    except OSError as exc:
        raise MaskReadError(path, library_reason("cannot access file", exc)) from exc
    if stat.S_ISDIR(info.st_mode):
        raise MaskReadError(path, "is a directory, not a mask file")
    if not stat.S_ISREG(info.st_mode):
        # A FIFO or device would block or never end.
        raise MaskReadError(path, "not a regular file")
    if info.st_size == 0:
        raise MaskReadError(path, "empty file (0 bytes)")


def squeezed(shape: tuple[int, ...]) -> tuple[int, ...]:
    dims = list(shape)
    while len(dims) > 2 and 1 in dims:
        del dims[dims.index(1)]
    return tuple(dims)


def check_dtype(request: Request, dtype: np.dtype) -> None:
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


def check_header(
    request: Request,
    shape: tuple[int, ...],
    channels: Channels | None,
    dtype: np.dtype | None,
) -> None:
    """Validate everything knowable from the header, before pixels are read.

    `shape` is the spatial shape, without the channel axis of a colour image;
    `dtype` is None where the format only has acceptable dtypes.
    """
    if dtype is not None:
        check_dtype(request, dtype)
    shape = tuple(int(n) for n in shape)
    pixels = math.prod(shape)
    if pixels == 0:
        raise MaskReadError(request.path, f"empty image (shape {shape})")
    if pixels > request.max_pixels:
        raise MaskReadError(
            request.path,
            f"image has {pixels} pixels, more than the limit of {request.max_pixels} (max_pixels)",
        )
    ndim = len(squeezed(shape))
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


def _apply_rule(data: np.ndarray, channels: Channels, rule: str) -> np.ndarray:
    if rule == "alpha":
        assert channels.alpha is not None  # ruled out by check_header
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


def finish(request: Request, data: np.ndarray, channels: Channels | None) -> np.ndarray:
    """Squeeze, pick the channel or apply the rule, and make the byte order native."""
    if channels is None:
        data = data.reshape(squeezed(data.shape))
    else:
        data = data.reshape(squeezed(data.shape[:-1]) + data.shape[-1:])
        if request.rgb_rule is not None:
            data = _apply_rule(data, channels, request.rgb_rule)
        else:
            assert request.channel is not None  # ruled out by check_header
            data = data[..., request.channel].copy()
    if not data.dtype.isnative:
        data = data.astype(data.dtype.newbyteorder("="))
    return data
