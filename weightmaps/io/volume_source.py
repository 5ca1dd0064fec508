"""Reading a chunked volume: a lazy dask array whose every read is guarded.

The limits of :mod:`weightmaps.io.volumes` are checked from the metadata
(and the listing) before zarr opens anything, and again on what zarr read,
in case the files changed in between. Stored data is read through a guard
that makes any decoding failure one line (:class:`VolumeReadError`).
Needs the ``[dask]`` extra.
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import uuid
from collections import OrderedDict
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
    ome_scale,
)
from weightmaps.masktype import MaskTypeError

__all__ = ["VolumeReadError", "open_volume", "read_volume"]


class VolumeReadError(ValueError):
    """Stored data of a volume could not be read or decoded; one line."""


# Decoded stored chunks kept per volume being read, and the smallest kept:
# below it zarr's own reading of many chunks at once is faster.
_CACHE_BYTES = 64 << 20
_CACHED_CHUNK_MIN_BYTES = 64 << 10


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
        # The kernels read every block again per map kind, and every read
        # decodes each stored chunk it touches whole: 48 reads of a 4096^2
        # TIFF of one strip took 1.9 s. Decoded chunks are kept (the least
        # recently used dropped beyond _CACHE_BYTES, one always kept: its
        # size is within --max-chunk-bytes). Small chunks are read through
        # zarr directly, which fetches many at once.
        chunks = tuple(int(c) for c in (getattr(array, "chunks", None) or ()))
        big = len(chunks) == self.ndim and all(c > 0 for c in chunks)
        big = big and math.prod(chunks) * self.dtype.itemsize >= _CACHED_CHUNK_MIN_BYTES
        self._chunks = chunks if big else None
        self._cache: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self._lock = threading.Lock()

    def _region(self, key: Any) -> list[tuple[int, int]] | None:
        """``key`` as (start, stop) per axis, or None when it is not plain slices."""
        key = key if isinstance(key, tuple) else (key,)
        if len(key) != self.ndim or not all(isinstance(k, slice) for k in key):
            return None
        region = []
        for k, n in zip(key, self.shape, strict=True):
            start, stop, step = k.indices(n)
            if step != 1:
                return None
            region.append((start, max(start, stop)))
        return region

    def _chunk(self, index: tuple[int, ...]) -> np.ndarray:
        assert self._chunks is not None
        # Decoded under the lock: two threads reading blocks that share a chunk
        # would otherwise both decode it, and hold it twice.
        with self._lock:
            chunk = self._cache.get(index)
            if chunk is not None:
                self._cache.move_to_end(index)
                return chunk
            bounds = tuple(
                slice(i * c, min((i + 1) * c, n))
                for i, c, n in zip(index, self._chunks, self.shape, strict=True)
            )
            chunk = np.asarray(self.array[bounds])
            self._cache[index] = chunk
            self._cached_bytes += chunk.nbytes
            while self._cached_bytes > _CACHE_BYTES and len(self._cache) > 1:
                _, dropped = self._cache.popitem(last=False)
                self._cached_bytes -= dropped.nbytes
            return chunk

    def _read(self, key: Any) -> np.ndarray:
        if self._chunks is None or (region := self._region(key)) is None:
            return np.asarray(self.array[key])
        out = np.empty(tuple(b - a for a, b in region), self.dtype)
        spans = [range(a // c, -(-b // c)) for (a, b), c in zip(region, self._chunks, strict=True)]
        for index in itertools.product(*spans):
            chunk = self._chunk(index)
            source, target = [], []
            for (a, b), i, c in zip(region, index, self._chunks, strict=True):
                lo, hi = max(a, i * c), min(b, (i + 1) * c)
                source.append(slice(lo - i * c, hi - i * c))
                target.append(slice(lo - a, hi - a))
            out[tuple(target)] = chunk[tuple(source)]
        return out

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
                node = node[ms[0]["datasets"][0]["path"]]
                scale = ome_scale(path)
        else:
            import tifffile

            store = tifffile.imread(path, aszarr=True)
            node = zarr.open(store, mode="r")
            if isinstance(node, zarr.Group):
                node = node["0"]  # a pyramid: its full-resolution level
    except (MaskTypeError, MemoryError, VolumeRefused):
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
