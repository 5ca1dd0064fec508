"""Write files so that a reader never sees half of one.

Every file goes to a hidden temporary name in its destination folder and is
renamed into place once complete (``os.replace`` is atomic on one file
system), so an interrupted run leaves either the old file or the new one.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_COMPRESSION",
    "TEMP_SUFFIX",
    "atomic_path",
    "remove_leftover_temporaries",
    "tiff_compression",
    "write_text_atomic",
    "write_tiff_atomic",
]

TEMP_SUFFIX = ".wmtmp"
"""Suffix of the temporary files (hidden, in the destination folder)."""


def _file_mode() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


_FILE_MODE = _file_mode()

DEFAULT_COMPRESSION = "zlib:1"
"""How maps are compressed unless told: deflate (TIFF's "zlib") at level 1.

Measured on 512x512 weight maps (``benchmarks/bench_write.py``): level 1
writes them 1.5-2.3x faster than level 6, zlib's own default, for 1-11 %
more bytes (the class-balance map, a few KiB, 39 %), and decodes as fast.
Every TIFF reader opens deflate: ImageJ's own reader, Bio-Formats (Fiji),
napari and tifffile. zstd writes faster still, but ImageJ cannot read it
and tifffile only with imagecodecs: an option, not the default.
"""

COMPRESSIONS = {"zlib": (1, 9), "zstd": (1, 22), "none": None}
"""Codecs of :func:`tiff_compression` and their levels (lowest, highest)."""

# ImageJ hyperstacks hold these sample types only.
_IMAGEJ_DTYPES = frozenset({np.dtype(np.uint8), np.dtype(np.uint16), np.dtype(np.float32)})


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` on success.

    On any exception, Ctrl-C included, the temporary file is removed and
    ``path`` is untouched.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=TEMP_SUFFIX)
    os.close(fd)
    # mkstemp makes the file private (0600); outputs get the usual permissions.
    os.chmod(tmp, _FILE_MODE)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 text atomically (flushed to disk before the rename)."""
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def tiff_compression(spec: str) -> dict[str, Any]:
    """The ``tifffile.imwrite`` arguments of a compression: ``"zlib:1"``, ``"zstd"``, ``"none"``.

    ``codec`` or ``codec:level``; ``zlib`` alone is level 6 (zlib's own
    default), ``zstd`` alone level 3. zstd needs the imagecodecs package, to
    write and to read (ImageJ's own TIFF reader cannot read it).

    Raises
    ------
    ValueError
        An unknown codec, a level out of its range, or zstd without imagecodecs.

    Examples
    --------
    >>> tiff_compression("zlib:1")
    {'compression': 'zlib', 'compressionargs': {'level': 1}}
    >>> tiff_compression("zstd")["compression"]
    'zstd'
    >>> tiff_compression("none")
    {}
    """
    codec, _, level_text = str(spec).strip().lower().partition(":")
    if codec not in COMPRESSIONS:
        raise ValueError(
            f"compression must be one of {', '.join(COMPRESSIONS)} (optionally codec:level), "
            f"got {spec!r}"
        )
    levels = COMPRESSIONS[codec]
    if levels is None:
        if level_text:
            raise ValueError(f"compression 'none' takes no level, got {spec!r}")
        return {}
    lowest, highest = levels
    if codec == "zstd":
        try:
            import imagecodecs  # noqa: F401
        except ImportError:
            raise ValueError("zstd needs imagecodecs: pip install imagecodecs") from None
    if not level_text:  # the codec's own default level
        return {"compression": codec}
    try:
        level = int(level_text)
    except ValueError:
        raise ValueError(f"compression level must be a whole number, got {spec!r}") from None
    if not lowest <= level <= highest:
        raise ValueError(f"{codec} levels are {lowest} to {highest}, got {level}")
    return {"compression": codec, "compressionargs": {"level": level}}


def write_tiff_atomic(
    path: str | os.PathLike[str],
    array: np.ndarray,
    *,
    spacing: Sequence[float] | None = None,
    unit: str | None = None,
    writer: Callable[..., object] | None = None,
    hasher: Any = None,
    compression: str = DEFAULT_COMPRESSION,
    threads: int = 1,
    class_axis: bool = False,
) -> int:
    """Write a 2-D image or 3-D stack as a compressed TIFF, atomically.

    3-D stacks of uint8, uint16 or float32 are written in ImageJ's format
    (Fiji and napari read them as a stack with its slice spacing); the
    resolution tags carry the y/x pixel size. With ``class_axis`` the array
    is ``(K, H, W)`` or ``(K, D, H, W)``, one channel per class, written
    with its axes (``CYX``, ``CZYX``) in tifffile's shaped format:
    ``tifffile.imread`` gives back that shape, a single class included
    (an ImageJ hyperstack would drop an axis of one), and Fiji opens it as
    a stack of its ``K`` (times ``D``) planes.

    Parameters
    ----------
    path : path-like
        Destination; its folder must exist.
    array : ndarray
        ``(H, W)`` or ``(D, H, W)``.
    spacing : sequence of float, optional
        Pixel size per axis, recorded in the file.
    unit : str, optional
        Unit of ``spacing`` (e.g. "micron"), recorded in 3-D ImageJ stacks.
    writer : callable, optional
        ``tifffile.imwrite`` or a stand-in (tests use one to interrupt a
        write halfway).
    hasher : hashlib hash object, optional
        Updated with the file's bytes, read back from the temporary file
        before the rename: the digest is that of exactly what was written.
    compression : str
        ``"zlib:1"`` (default), ``"zlib:6"``, ``"zstd:3"``, ``"none"``: see
        :func:`tiff_compression`.
    threads : int
        Threads compressing the strips of one large image; the caller's
        share of the cores (tifffile's own default would take half of them
        in every worker process).
    class_axis : bool
        The first axis of ``array`` is a class (channel) axis.

    Returns
    -------
    int
        Size of the written file in bytes.

    Examples
    --------
    >>> import os, tempfile, tifffile
    >>> path = os.path.join(tempfile.mkdtemp(), "w.tif")
    >>> size = write_tiff_atomic(path, np.ones((4, 5), np.float32), spacing=(0.5, 0.5))
    >>> tifffile.imread(path).shape
    (4, 5)
    """
    import tifffile

    writer = tifffile.imwrite if writer is None else writer
    array = np.ascontiguousarray(array)
    kwargs: dict[str, object] = {**tiff_compression(compression), "maxworkers": max(1, threads)}
    if spacing is not None:
        dy, dx = spacing[-2:]
        kwargs["resolution"] = (1.0 / dx, 1.0 / dy)
    if class_axis:
        kwargs.update(
            metadata={"axes": "C" + "ZYX"[3 - (array.ndim - 1) :]}, photometric="minisblack"
        )
    elif array.ndim == 3 and array.dtype in _IMAGEJ_DTYPES:
        metadata: dict[str, object] = {"axes": "ZYX"}
        if spacing is not None:
            metadata["spacing"] = float(spacing[0])
        if unit is not None:
            metadata["unit"] = unit
        kwargs.update(imagej=True, metadata=metadata)
    else:
        kwargs["metadata"] = None
    with atomic_path(path) as tmp:
        writer(tmp, array, **kwargs)
        size = tmp.stat().st_size
        if hasher is not None:
            with open(tmp, "rb") as fh:
                hashlib.file_digest(fh, lambda: hasher)
    return size


def remove_leftover_temporaries(root: str | os.PathLike[str]) -> int:
    """Remove the temporary files a killed run left under ``root``; return how many.

    A run stopped by SIGKILL (the OOM killer, a scheduler's time limit)
    cannot remove the file it was writing. Only hidden regular files named
    ``.*.wmtmp`` are removed; hidden folders and symbolic links are not
    entered, and the temporary zarr folders of volumes are kept (a rerun
    resumes them). Call it only while holding the folder's lock, when no
    other run can be writing there.
    """
    removed = 0
    for folder, subdirs, files in os.walk(root):
        subdirs[:] = [d for d in subdirs if not d.startswith(".")]
        for name in files:
            if not (name.startswith(".") and name.endswith(TEMP_SUFFIX)):
                continue
            path = os.path.join(folder, name)
            if os.path.isfile(path) and not os.path.islink(path):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
                    removed += 1
    return removed
