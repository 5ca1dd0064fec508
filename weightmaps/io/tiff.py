"""Reading TIFF masks with tifffile, and the pixel size a TIFF records."""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps.io.header import (
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

__all__ = ["read_spacing", "read_spacing_unit", "read_tiff"]

# TIFF compressions that tifffile decodes with the standard library alone.
_TIFF_BUILTIN_COMPRESSIONS = frozenset({1, 8, 32946})  # none, adobe deflate, deflate


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


def _tiff_channels(series: Any) -> Channels | None:
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
            return RGB
        if samples == 4:
            return RGBA
        return Channels(f"RGB+{samples - 3}", samples, (0, 1, 2), alpha=3)
    if photometric in (0, 1):  # min-is-white / min-is-black with extra samples
        kind = "grey+alpha" if samples == 2 else "multi-channel"
        return Channels(kind, samples, (0,), alpha=1)
    name = getattr(page.photometric, "name", str(photometric))
    return Channels(name, samples, tuple(range(samples)))


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
    except (*LIBRARY_ERRORS, MaskReadError):
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


def read_tiff(request: Request) -> np.ndarray:
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
                check_header(request, spatial, channels, np.dtype(series.dtype))
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
        except LIBRARY_ERRORS as exc:
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
            raise MaskReadError(path, library_reason("cannot read TIFF", exc)) from exc
        if log.messages:
            raise MaskReadError(path, f"corrupt TIFF: {log.messages[0]}")
    if channels is not None:
        # Planar RGB comes as (..., S, Y, X); the rules expect channels last.
        data = np.moveaxis(data, axes.index("S"), -1)
    return finish(request, data, channels)
