"""Chunked instance kernels (Dask): carving with a one-pixel halo, and connected
components across chunks."""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable

import dask
import dask.array as da
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from skimage import measure

from weightmaps._shared.checks import check_connectivity, check_nonempty
from weightmaps.kernels._dask_common import as_dask, check_label_dtype, map_with_halo, meta
from weightmaps.kernels.instances import separate_instances as numpy_separate_instances

__all__ = ["SEPARATE_HALO", "label_instances", "separate_instances"]

SEPARATE_HALO: int = 1
"""Pixels per axis :func:`separate_instances` grows its blocks by: carving looks
at direct neighbours only."""


def separate_instances(instances: da.Array, connectivity: int = 1) -> da.Array:
    """Chunked :func:`weightmaps.separate_instances` (halo of one pixel).

    Returns
    -------
    dask array
        Lazy, dtype and chunks of ``instances``.

    Examples
    --------
    >>> import dask.array as da
    >>> x = da.from_array([[1, 1, 2, 2, 0, 3]], chunks=(1, 2))
    >>> separate_instances(x).compute()
    array([[1, 0, 0, 2, 0, 3]])
    """
    labels = as_dask(instances)
    check_nonempty(labels.shape, "instances")
    check_label_dtype(labels, "instances")
    check_connectivity(connectivity, labels.ndim)
    func = functools.partial(numpy_separate_instances, connectivity=connectivity)
    return map_with_halo(func, [labels], (SEPARATE_HALO,) * labels.ndim, labels.dtype)


# --------------------------------------------------------------------------
# connected components across chunks
#
# dask_image.ndmeasure.label joins every nonzero pixel into one foreground, so
# on a semantic mask two touching regions of different classes would merge.
# The same scheme is used here with value-aware steps (skimage's label, which
# labels regions of one value, as the in-memory label_instances does):
#   1. each chunk is labelled alone; a task keeps only its count and its
#      outer faces (local labels and values);
#   2. for every pair (or corner group) of neighbouring chunks, the two-pixel
#      thick face across their border is labelled by value; local labels that
#      fall in one face component are the same instance;
#   3. the client joins these pairs (a sparse graph, connected components)
#      into global ids 1..n;
#   4. the lazy result labels each chunk again and maps local to global ids.
# Steps 1-3 run when label_instances is called, and only counts and pairs of
# ids come back; no task ever holds more than a chunk and its faces.

_KEY_SHIFT = 32  # face keys: chunk number << 32 | local label


def _label_block(block: np.ndarray, connectivity: int) -> tuple[np.ndarray, int]:
    return measure.label(block, background=0, connectivity=connectivity, return_num=True)


def _block_faces(block: np.ndarray, connectivity: int) -> tuple[int, dict]:
    """Number of components in a chunk, and its first and last slice on every axis."""
    labels, n = _label_block(block, connectivity)
    faces = {}
    for axis in range(block.ndim):
        for side, cut in ((0, slice(0, 1)), (1, slice(-1, None))):
            index = tuple(cut if ax == axis else slice(None) for ax in range(block.ndim))
            faces[axis, side] = (block[index].copy(), labels[index].copy())
    return int(n), faces


def _face_piece(faces: dict, spec: tuple[int | None, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The part of a chunk at ``spec``: per axis its first (0) or last (1)
    slice, or all of it (None); always one of the stored faces, cut further."""
    axis = next(ax for ax, s in enumerate(spec) if s is not None)
    values, labels = faces[axis, spec[axis]]
    index = tuple(
        slice(None) if s is None or ax == axis else (slice(0, 1) if s == 0 else slice(-1, None))
        for ax, s in enumerate(spec)
    )
    return values[index], labels[index]


def _face_pairs(
    offset: tuple[int, ...],
    connectivity: int,
    steps: list[tuple[int, ...]],
    numbers: list[int],
    summaries: list[tuple[int, dict]],
) -> np.ndarray:
    """Pairs of (chunk, local label) keys that touch across one chunk border.

    The chunks are a base chunk and its neighbours at ``steps`` (every
    0/1 step within ``offset``); the face is two pixels thick along the axes
    of ``offset`` and the extent of the base chunk along the others.
    """
    pieces = []
    for step, number, (_, faces) in zip(steps, numbers, summaries, strict=True):
        spec = tuple(None if o == 0 else 1 - s for o, s in zip(offset, step, strict=True))
        values, labels = _face_piece(faces, spec)
        keys = np.where(labels > 0, (np.int64(number) << _KEY_SHIFT) + labels, 0)
        region = tuple(
            slice(None) if o == 0 else slice(s, s + 1) for o, s in zip(offset, step, strict=True)
        )
        pieces.append((region, values, keys))
    shape = tuple(2 if o else n for o, n in zip(offset, pieces[0][1].shape, strict=True))
    values = np.zeros(shape, pieces[0][1].dtype)
    keys = np.zeros(shape, np.int64)
    for region, v, k in pieces:
        values[region] = v
        keys[region] = k
    foreground = keys != 0
    if not foreground.any():
        return np.empty((2, 0), np.int64)
    common = measure.label(values, background=0, connectivity=connectivity)
    rows = np.unique(np.stack([common[foreground], keys[foreground]], axis=1), axis=0)
    same = rows[1:, 0] == rows[:-1, 0]  # sorted by face component, then key
    return np.stack([rows[:-1, 1][same], rows[1:, 1][same]])


def _relabel_block(block: np.ndarray, connectivity: int, lut: np.ndarray) -> np.ndarray:
    labels, _ = _label_block(block, connectivity)
    return lut[labels]


def _nested(grid: tuple[int, ...], make: Callable, prefix: tuple[int, ...] = ()) -> object:
    """Nested lists of ``make(index)`` over a block grid, for ``da.block``."""
    if len(prefix) == len(grid):
        return make(prefix)
    return [_nested(grid, make, (*prefix, i)) for i in range(grid[len(prefix)])]


def label_instances(
    mask: da.Array,
    *,
    connectivity: int | None = None,
    ignore_value: int | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.label_instances`: connected components across chunks.

    Every connected region of one nonzero value is one instance, also across
    chunk borders, and touching regions of different values stay apart (a
    semantic mask gives one instance per region of each class). The ids are
    1..n but may be numbered differently from the in-memory function; the
    regions are the same.

    The component graph is computed now (one pass: each chunk labelled, the
    faces between chunks compared); the result is lazy and labels each chunk
    again when computed.

    Parameters
    ----------
    mask : dask array of int or bool
        0 is background.
    connectivity : int, optional
        1 = faces only, up to ``mask.ndim`` (default) = full connectivity.
    ignore_value : int, optional
        Pixels of this value are background.

    Returns
    -------
    dask array of int32
        Lazy, chunks of ``mask``.

    Examples
    --------
    >>> import dask.array as da
    >>> x = da.from_array([[1, 1, 0, 1], [0, 2, 2, 1]], chunks=1)
    >>> label_instances(x).compute()
    array([[1, 1, 0, 2],
           [0, 3, 3, 2]], dtype=int32)
    """
    m = as_dask(mask)
    check_nonempty(m.shape, "mask")
    check_label_dtype(m, "mask")
    connectivity = m.ndim if connectivity is None else connectivity
    check_connectivity(connectivity, m.ndim)
    if ignore_value is not None:
        m = da.where(m == ignore_value, m.dtype.type(0), m)
    grid = m.numblocks
    blocks = m.to_delayed()
    order = list(np.ndindex(*grid))
    number = {index: i for i, index in enumerate(order)}

    summarize = dask.delayed(_block_faces, pure=True)
    pair = dask.delayed(_face_pairs, pure=True)
    summaries = {index: summarize(blocks[index], connectivity) for index in order}
    # A chunk border is crossed along the axes where two pixels' chunks
    # differ, at most ``connectivity`` of them: one face per such set of axes
    # (offset), at the chunk where it starts.
    offsets = [o for o in itertools.product((0, 1), repeat=m.ndim) if 0 < sum(o) <= connectivity]
    faces = []
    for index in order:
        for offset in offsets:
            if any(i + o >= g for i, o, g in zip(index, offset, grid, strict=True)):
                continue
            steps = list(itertools.product(*[(0, 1) if o else (0,) for o in offset]))
            members = [tuple(i + s for i, s in zip(index, step, strict=True)) for step in steps]
            faces.append(
                pair(
                    offset,
                    connectivity,
                    steps,
                    [number[b] for b in members],
                    [summaries[b] for b in members],
                )
            )
    counts, pairs = dask.compute([summaries[index][0] for index in order], faces)

    starts = np.concatenate([[0], np.cumsum(np.asarray(counts, np.int64))])
    total = int(starts[-1])
    if total:
        keys = np.concatenate([np.empty((2, 0), np.int64), *pairs], axis=1)
        nodes = starts[keys >> _KEY_SHIFT] + (keys & ((1 << _KEY_SHIFT) - 1)) - 1
        graph = sparse.coo_matrix(
            (np.ones(nodes.shape[1], np.int8), (nodes[0], nodes[1])), shape=(total, total)
        )
        _, component = csgraph.connected_components(graph, directed=False)
        ids = (component + 1).astype(np.int32)
    else:
        ids = np.zeros(0, np.int32)

    relabel = dask.delayed(_relabel_block, pure=True)

    def block_of(index: tuple[int, ...]) -> da.Array:
        i = number[index]
        lut = np.concatenate([[0], ids[starts[i] : starts[i + 1]]]).astype(np.int32)
        shape = tuple(c[j] for c, j in zip(m.chunks, index, strict=True))
        return da.from_delayed(
            relabel(blocks[index], connectivity, lut),
            shape=shape,
            dtype=np.int32,
            meta=meta(m.ndim, np.int32),
        )

    return da.block(_nested(grid, block_of))
