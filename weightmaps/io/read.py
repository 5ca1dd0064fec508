"""Read segmentation label masks from TIFF, PNG, JPEG, BMP, GIF and NPY files.

:func:`read_mask` returns the stored label values unchanged (only singleton axes
are dropped and the byte order made native), checks the image size from the
file header before any pixel data is read, and turns every failure into a
one-line :class:`MaskReadError` that starts with the file's path.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from weightmaps.io.header import (
    DEFAULT_MAX_PIXELS,
    MaskReadError,
    Request,
    check_arguments,
    check_file,
)
from weightmaps.io.npy import read_npy
from weightmaps.io.pillow import read_pillow
from weightmaps.io.tiff import read_tiff

__all__ = ["LOSSY_SUFFIXES", "MASK_SUFFIXES", "is_lossy", "read_mask"]

_PILLOW_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")
MASK_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".npy", ".jpg", ".jpeg", ".bmp", ".gif")
"""File suffixes :func:`read_mask` reads (compared case-insensitively)."""

LOSSY_SUFFIXES: tuple[str, ...] = (".jpg", ".jpeg")
"""Suffixes of lossy formats: their masks carry compression noise."""

_JPEG_MAGIC = b"\xff\xd8\xff"


def is_lossy(path: str | os.PathLike[str]) -> bool:
    """Whether a mask file holds lossy (JPEG) content: by its suffix, or by its
    first bytes behind another Pillow suffix (a JPEG saved as ``.png``).

    Examples
    --------
    >>> is_lossy("polyp.JPG"), is_lossy("cells.tif")
    (True, False)
    """
    suffix = Path(path).suffix.lower()
    if suffix in LOSSY_SUFFIXES:
        return True
    if suffix not in _PILLOW_SUFFIXES:
        return False
    try:
        with open(path, "rb") as fh:
            return fh.read(len(_JPEG_MAGIC)) == _JPEG_MAGIC
    except OSError:
        return False  # read_mask says why


def read_mask(
    path: str | os.PathLike[str],
    *,
    channel: int | None = None,
    rgb_rule: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Read a 2D or 3D segmentation mask from a TIFF, PNG, JPEG, BMP, GIF or NPY file.

    Label values are returned exactly as stored: nothing is rescaled, relabelled
    or cast, apart from making the byte order native. Singleton axes are dropped
    while the array has more than two dimensions, so a ``(1, H, W)`` stack
    becomes ``(H, W)``.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.tif``/``.tiff`` (read with tifffile; 2D pages or 3D multi-page
        stacks, first series only), ``.png``, ``.jpg``/``.jpeg``, ``.bmp`` or
        ``.gif`` (read with Pillow, whichever of these formats the content is;
        a GIF's first frame) or ``.npy`` file. The suffix is compared
        case-insensitively. A JPEG's values are returned as decoded, noise
        and all (see :func:`weightmaps.masktype.lossy_threshold`).
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
    check_arguments(path, channel, rgb_rule, max_pixels)
    suffix = Path(path).suffix.lower()
    if suffix not in MASK_SUFFIXES:
        raise MaskReadError(
            path,
            f"unsupported format {suffix!r} (expected {', '.join(MASK_SUFFIXES)})",
        )
    check_file(path)
    request = Request(os.fspath(path), channel, rgb_rule, max_pixels)
    if suffix == ".npy":
        return read_npy(request)
    if suffix in _PILLOW_SUFFIXES:
        return read_pillow(request)
    return read_tiff(request)
