"""What every chunked (Dask) kernel shares: blocks with halos, read where they are stored.

Every function here takes a dask array (a numpy array is wrapped as one
chunk), has the name and keyword arguments of its in-memory counterpart and
returns a lazy dask array with the same chunks, equal to the in-memory
function on the whole volume (to float rounding) for any chunking. Needs the
``[dask]`` extra (``pip install weightmaps[dask]``); ``import weightmaps``
alone never imports dask.

Why a block with a halo gives the exact map:

- U-Net: the border term is below ``1e-6 * w0`` once ``d1 + d2`` exceeds
  :func:`~weightmaps.kernels.border.border_cutoff` (about 5.26 sigma), and the in-memory
  kernel drops it there. A pixel with ``d1 + d2`` under the cut-off has both
  nearest instances within the cut-off, so a block grown by
  ``ceil(cutoff / spacing) + 1`` pixels per axis sees their true nearest
  pixels; a block can only see fewer instances, never nearer ones, so beyond
  the cut-off both give the cut value too.
- Edge: ``box_k`` looks ``k // 2`` pixels away.
- ``separate_instances``: carving looks at direct neighbours only.

The halos use ``boundary="none"``: at the volume edge a block is not padded,
and the in-memory kernel, run on the block, treats that edge as it treats
the image edge (no instance beyond it; the avg_pool zero padding beyond it,
which is also right for class 0 of a semantic mask, where padding the mask
with 0 would not be).

Memory: when the input of a halo map is read from storage (zarr, a TIFF read
lazily, a numpy array; sliced, rechunked or elementwise ops on top), each
block task reads its grown block itself, so the memory is set by the chunk
and not by the volume. Other inputs (a labelling, another halo map) are
computed once and handed to the neighbouring blocks by ``map_overlap``,
which keeps a few slabs of chunks in memory.

Maps that need global numbers (class-balance counts, ``"balanced"`` U-Net
class weights, the connected components of :func:`label_instances`) read the
volume once when the function is called (``dask.compute`` on the current
scheduler) and return a lazy map that reads it again: two streaming passes
rather than one graph that would hold every chunk until the counts are done.
"""

from __future__ import annotations

import bisect
import functools
import itertools
from collections.abc import Callable, Sequence

import dask
import dask.array as da
import numpy as np

from weightmaps.kernels.blocks import grown_span, halo_chunks

__all__ = ["as_dask", "check_label_dtype", "map_with_halo", "meta"]


def as_dask(array: object) -> da.Array:
    return array if isinstance(array, da.Array) else da.asarray(array)


def check_label_dtype(array: da.Array, name: str) -> None:
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer or boolean array, got dtype {array.dtype}")


def meta(ndim: int, dtype: np.dtype | type) -> np.ndarray:
    # Given explicitly so dask never calls a kernel on an empty block to guess
    # the output type (the kernels reject empty arrays).
    return np.empty((0,) * ndim, dtype)


# Ops that cost little more than the read itself: a block task may read its
# input region again from storage rather than keep neighbouring chunks alive.
_OPERATOR_MODULES = ("_operator", "operator")


@functools.cache
def _cheap_funcs() -> frozenset:
    from dask.array import chunk
    from dask.array import core as dcore

    names = ("getter", "getter_nofancy", "getter_inline", "concatenate3", "concatenate_shaped")
    funcs = {getattr(dcore, n) for n in names if hasattr(dcore, n)}
    return frozenset(funcs | {chunk.getitem, chunk.astype, np.where})


def _is_cheap(func: object) -> bool:
    return (
        func in _cheap_funcs()
        or isinstance(func, np.ufunc)
        or getattr(func, "__module__", None) in _OPERATOR_MODULES
    )


def _rereadable(array: da.Array) -> bool:
    """Whether the chunks of ``array`` are storage reads, slices and elementwise ops only.

    Such an array (``from_zarr``, ``from_array``, a TIFF read lazily, a
    rechunk, ``where``/``astype``/comparisons of them) is cheap to read again
    region by region; anything else (a labelling, another halo map, a
    user's ``map_blocks``) is computed once and handed on through the graph.

    Parameters
    ----------
    array : dask array

    Returns
    -------
    bool
        False also when the graph cannot be inspected (an unknown dask).
    """
    try:
        from dask._task_spec import GraphNode, NestedContainer, Task, convert_legacy_graph
    except ImportError:  # pragma: no cover - a dask without task specs
        return False
    try:
        stack = list(convert_legacy_graph(dict(array.__dask_graph__())).values())
    except Exception:  # pragma: no cover - a graph dask cannot convert: be safe
        return False
    while stack:
        node = stack.pop()
        if not isinstance(node, Task):
            continue  # data, aliases, references
        if not isinstance(node, NestedContainer) and not _is_cheap(node.func):
            return False
        stack.extend(a for a in (*node.args, *node.kwargs.values()) if isinstance(a, GraphNode))
    return True


class _Source:
    """A dask array that block tasks read from themselves, one region at a time.

    Given to tasks as a plain argument, not as a graph input: no chunk of it
    is held between tasks, so a halo map's memory is that of the blocks in
    flight however many chunks the volume has.

    Parameters
    ----------
    array : dask array
        Cheap to read again (:func:`_rereadable`).
    """

    def __init__(self, array: da.Array) -> None:
        self.name = array.name
        self.dtype = array.dtype
        self.graph = array.__dask_graph__()
        # Chunk boundaries per axis: chunk i spans bounds[i]:bounds[i + 1].
        self.bounds = tuple(tuple(int(b) for b in np.cumsum((0, *c))) for c in array.chunks)

    def __dask_tokenize__(self) -> tuple[str, str]:
        return ("weightmaps.chunked._Source", self.name)

    def read(self, region: tuple[slice, ...]) -> np.ndarray:
        """The values of ``region``, read chunk by chunk into one new array.

        Each chunk the region touches is computed alone, by the synchronous
        scheduler in the calling task on the graph culled to that chunk
        (about a millisecond of overhead; ``compute`` would take ten), and
        only its part is kept, so at most one chunk is held besides the
        result.
        """
        out = np.empty(tuple(r.stop - r.start for r in region), self.dtype)
        # Per axis: (chunk index, chunk start, part of the region in that chunk).
        spans = []
        for r, bounds in zip(region, self.bounds, strict=True):
            first = bisect.bisect_right(bounds, r.start) - 1
            last = bisect.bisect_left(bounds, r.stop)
            spans.append(
                [
                    (i, bounds[i], slice(max(r.start, bounds[i]), min(r.stop, bounds[i + 1])))
                    for i in range(first, last)
                ]
            )
        for parts in itertools.product(*spans):
            index = tuple(i for i, _, _ in parts)
            local = tuple(slice(p.start - s, p.stop - s) for _, s, p in parts)
            into = tuple(
                slice(p.start - r.start, p.stop - r.start)
                for (_, _, p), r in zip(parts, region, strict=True)
            )
            key = (self.name, *index)
            graph = self.graph.cull({key}) if hasattr(self.graph, "cull") else self.graph
            out[into] = np.asarray(dask.get(graph, key))[local]
        return out


def _reread_block(
    func: Callable[..., np.ndarray],
    sources: tuple[_Source, ...],
    bounds: tuple[tuple[int, ...], ...],
    depth: tuple[int, ...],
    block_id: tuple[int, ...] | None = None,
) -> np.ndarray:
    """One block of a halo map: read the block grown by ``depth`` (clipped at
    the volume edge, as ``boundary="none"``), apply ``func``, crop."""
    assert block_id is not None
    grown, crop = [], []
    for b, i, d in zip(bounds, block_id, depth, strict=True):
        lo, hi = grown_span(b, i, d)
        grown.append(slice(lo, hi))
        crop.append(slice(b[i] - lo, b[i + 1] - lo))
    result = func(*(source.read(tuple(grown)) for source in sources))
    # A copy: a view would keep the whole grown result alive downstream.
    return np.ascontiguousarray(result[tuple(crop)])


def map_with_halo(
    func: Callable[..., np.ndarray],
    arrays: Sequence[da.Array],
    depth: Sequence[int],
    dtype: np.dtype | type,
) -> da.Array:
    """``map_overlap`` with ``boundary="none"`` for any chunking; same chunks out.

    Chunks thinner than the halo are merged first (dask would otherwise
    rechunk on its own and hand back its chunking); an axis left in one
    chunk needs no halo at all.

    When every input is cheap to read again (:func:`_rereadable`: read from
    storage, sliced, elementwise ops), each block task reads its grown block
    itself (:class:`_Source`), and the memory is that of the blocks in
    flight. ``map_overlap`` instead hands every chunk to its neighbours'
    tasks (as views, which keep the whole chunk), so a chunk stays in memory
    until all of them have run, and the threaded scheduler loads chunks well
    ahead of them: with 256^3 chunks, 8 input chunks were held at once for a
    512^3 volume and 16 for a 1024x512x512 one. Inputs that are costly to
    compute (a labelling, another halo map) are computed once and go through
    ``map_overlap``.
    """
    base = arrays[0]
    # The same merging and halos the limits size blocks by (io.volumes, from kernels.blocks).
    chunks, depth = halo_chunks(base.chunks, depth)
    if any(depth) and all(_rereadable(a) for a in arrays):
        bounds = tuple(tuple(int(b) for b in np.cumsum((0, *c))) for c in chunks)
        out = da.map_blocks(
            functools.partial(
                _reread_block, func, tuple(_Source(a) for a in arrays), bounds, depth
            ),
            chunks=chunks,
            dtype=dtype,
            meta=meta(base.ndim, dtype),
        )
    else:
        arrays = [a if a.chunks == chunks else a.rechunk(chunks) for a in arrays]
        out = da.map_overlap(
            func,
            *arrays,
            depth=dict(enumerate(depth)),
            boundary="none",
            dtype=dtype,
            meta=meta(base.ndim, dtype),
        )
    return out if out.chunks == base.chunks else out.rechunk(base.chunks)
