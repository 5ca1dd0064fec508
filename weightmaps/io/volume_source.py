"""Reading a chunked volume: a lazy dask array whose every read is guarded.

The limits of :mod:`weightmaps.io.volumes` are checked from the metadata
(and the listing) before zarr opens anything, and again on what zarr read,
in case the files changed in between. Stored data is read through a guard
that makes any decoding failure one line (:class:`VolumeReadError`).
Needs the ``[dask]`` extra.
"""

from __future__ import annotations

import math
import os
import threading
import uuid
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps.io.volumes import (
    VolumeInfo,
    VolumeLimits,
    VolumeRefused,
    check_volume,
    default_chunk_edge,
    inspect_volume,
    multiscales,
)
from weightmaps.masktype import MaskTypeError

__all__ = ["VolumeReadError", "open_volume", "read_volume"]


class VolumeReadError(ValueError):
    """Stored data of a volume could not be read or decoded; one line."""


class _GuardedArray:
    """A zarr array read through ``__getitem__`` only, every failure one ValueError.

    Decoding stored chunks from strangers raises whatever the codec raises
    (numcodecs' RuntimeError, zlib.error, a struct or index error of a
    truncated file...): any of them is this mask's failure, named with the
    region being read, never the run's. MemoryError stays itself.
    """

    def __init__(self, array: Any) -> None:
        self.array = array
        self.shape = tuple(array.shape)
        self.dtype = array.dtype
        self.ndim = len(self.shape)
        # A volume stored as one chunk (a TIFF of one strip or tile, as most
        # writers make a 2-D image) is decoded whole by every read of any part
        # of it, and the kernels read each block again per map kind: 48 reads
        # of a 4096^2 mask took 1.9 s. It is decoded once and kept (its size
        # is within --max-chunk-bytes, checked before opening).
        self._one_chunk = tuple(getattr(array, "chunks", ())) == self.shape
        self._whole: np.ndarray | None = None
        self._lock = threading.Lock()

    def _read(self, key: Any) -> np.ndarray:
        if not self._one_chunk:
            return np.asarray(self.array[key])
        with self._lock:
            if self._whole is None:
                self._whole = np.asarray(self.array[...])
        return self._whole[key].copy()

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            return self._read(key)
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding failure, see the class notes
            region = ", ".join(
                f"{k.start or 0}:{k.stop}" if isinstance(k, slice) else str(k)
                for k in (key if isinstance(key, tuple) else (key,))
            )
            raise VolumeReadError(
                f"cannot read the stored data at [{region}]: {_error_text(exc)}"
            ) from exc


def _error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _open_node(path: str) -> tuple[Any, tuple[float, ...] | None]:
    """The zarr array of a volume (its full-resolution level), and its OME scale.

    Whatever zarr or tifffile raise on metadata they cannot use is this
    mask's one-line failure.
    """
    import zarr

    scale = None
    try:
        if Path(path).is_dir():
            node = zarr.open(path, mode="r")
            if isinstance(node, zarr.Group):
                ms = multiscales(dict(node.attrs))
                if not ms:
                    raise MaskTypeError("a zarr group without multiscales metadata; not a mask")
                dataset = ms[0]["datasets"][0]
                node = node[dataset["path"]]
                for transform in dataset.get("coordinateTransformations") or []:
                    if transform.get("type") == "scale":
                        scale = tuple(float(s) for s in transform["scale"])
        else:
            import tifffile

            store = tifffile.imread(path, aszarr=True)
            node = zarr.open(store, mode="r")
            if isinstance(node, zarr.Group):
                node = node["0"]  # a pyramid: its full-resolution level
    except (MaskTypeError, MemoryError):
        raise
    except Exception as exc:  # noqa: BLE001 - hostile metadata: RecursionError, KeyError...
        raise VolumeRefused(f"cannot open the volume's metadata: {_error_text(exc)}") from exc
    return node, scale


def open_volume(
    path: str, limits: VolumeLimits, chunks: int | None = None
) -> tuple[Any, tuple[float, ...] | None, str | None]:
    """The volume as a lazy dask array (singleton axes dropped), its OME scale, and a
    note on missing chunks.

    The limits are checked from the metadata (and the listing) before zarr
    opens anything, and again on what zarr read, in case the files changed
    in between; nothing is read or scheduled for a volume over a limit.
    """
    import dask.array as da

    info = inspect_volume(path)
    note = check_volume(info, limits, chunks)
    node, scale = _open_node(path)
    opened = VolumeInfo(
        shape=tuple(node.shape),
        dtype=np.dtype(node.dtype),
        stored_chunks=tuple(node.chunks),
        stored_name=info.stored_name,
        shard_entries=info.shard_entries,
    )
    check_volume(opened, limits, chunks)
    if chunks is None and not Path(path).is_dir():
        chunks = default_chunk_edge(tuple(node.shape))
    array = da.from_array(
        _GuardedArray(node),
        chunks=tuple(node.chunks) if chunks is None else chunks,
        name=f"volume-{uuid.uuid4().hex}",
        meta=np.empty((0,) * node.ndim, node.dtype),
        lock=False,
    )
    while array.ndim > 2 and array.shape[0] == 1:
        array = array[0]
        if scale is not None:
            scale = scale[1:]
    if array.ndim not in (2, 3):
        raise MaskTypeError(f"volume must be 2-D or 3-D, got shape {array.shape}")
    if scale is not None:
        scale = scale[-array.ndim :]
    return array, scale, note


def read_volume(path: str | os.PathLike[str], max_pixels: int) -> np.ndarray:
    """A zarr array or OME-Zarr image read whole into memory (``stats``, ``preview``).

    The shape comes from the metadata first: a volume of more than
    ``max_pixels`` voxels is refused (one line) before anything is read.
    Singleton axes are dropped, as :func:`open_volume` drops them.

    Raises
    ------
    VolumeRefused
        Over ``max_pixels`` or over the volume limits, or unreadable metadata.
    VolumeReadError
        Stored data that cannot be read or decoded.
    ImportError
        Without the ``[dask]`` extra (dask and zarr).
    """
    info = inspect_volume(path)
    voxels = math.prod(info.shape)
    if voxels > max_pixels:
        raise VolumeRefused(
            f"has {voxels} voxels, more than the limit of {max_pixels} (max_pixels) "
            "for reading it whole"
        )
    array, _, _ = open_volume(str(path), VolumeLimits())
    # One thread: the volume is small (under max_pixels) and the caller may be a worker.
    return np.asarray(array.compute(scheduler="synchronous"))
