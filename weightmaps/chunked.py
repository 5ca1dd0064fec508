"""Chunked kernels: weight maps of volumes larger than memory, with Dask.

Every function here takes a dask array (a numpy array is wrapped as one
chunk), has the name and keyword arguments of its in-memory counterpart and
returns a lazy dask array with the same chunks, equal to the in-memory
function on the whole volume (to float rounding) for any chunking. Needs the
``[dask]`` extra (``pip install weightmaps[dask]``); ``import weightmaps``
alone never imports dask.

Why a block with a halo gives the exact map:

- U-Net: the border term is below ``1e-6 * w0`` once ``d1 + d2`` exceeds
  :func:`~weightmaps.unet.border_cutoff` (about 5.26 sigma), and the in-memory
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
import math
from collections.abc import Callable, Mapping, Sequence

import dask
import dask.array as da
import numpy as np
from scipy import sparse
from scipy.sparse import csgraph
from skimage import measure

from weightmaps import balance as _balance
from weightmaps import edge as _edge
from weightmaps import instances as _instances
from weightmaps import unet as _unet
from weightmaps.balance import BALANCE_MODES, ClassCounts
from weightmaps.edge import _check_kernel_size
from weightmaps.nearest import _normalized_spacing
from weightmaps.unet import border_cutoff

__all__ = [
    "balance_weight_map",
    "class_counts",
    "edge_weight_map",
    "halo_depth",
    "label_instances",
    "separate_instances",
    "unet_weight_map",
]


# --------------------------------------------------------------------------
# helpers


def _as_dask(array: object) -> da.Array:
    return array if isinstance(array, da.Array) else da.asarray(array)


def _check_nonempty(array: da.Array, name: str) -> None:
    if array.ndim == 0 or array.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {array.shape}")


def _check_label_dtype(array: da.Array, name: str) -> None:
    if array.dtype != bool and not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer or boolean array, got dtype {array.dtype}")


def _check_connectivity(connectivity: int, ndim: int) -> None:
    if not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be in 1..{ndim}, got {connectivity}")


def _meta(ndim: int, dtype: np.dtype | type) -> np.ndarray:
    # Given explicitly so dask never calls a kernel on an empty block to guess
    # the output type (the kernels reject empty arrays).
    return np.empty((0,) * ndim, dtype)


def _coarsen(chunks: tuple[int, ...], depth: int) -> tuple[int, ...]:
    """Merge neighbouring chunks along one axis until each has >= ``depth`` pixels.

    A halo comes from the neighbouring chunk only, so no chunk may be thinner
    than the halo. Merging keeps every original boundary a boundary of the
    finer chunking, so going back to it afterwards only splits chunks.
    """
    if depth <= 0:
        return chunks
    merged: list[int] = []
    pending = 0
    for size in chunks:
        pending += size
        if pending >= depth:
            merged.append(pending)
            pending = 0
    if pending:  # a thin tail joins the last chunk (or is the only one)
        if merged:
            merged[-1] += pending
        else:
            merged.append(pending)
    return tuple(merged)


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
        start, stop = b[i], b[i + 1]
        lo, hi = max(start - d, 0), min(stop + d, b[-1])
        grown.append(slice(lo, hi))
        crop.append(slice(start - lo, stop - lo))
    result = func(*(source.read(tuple(grown)) for source in sources))
    # A copy: a view would keep the whole grown result alive downstream.
    return np.ascontiguousarray(result[tuple(crop)])


def _map_with_halo(
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
    chunks = tuple(_coarsen(c, d) for c, d in zip(base.chunks, depth, strict=True))
    depth = tuple(d if len(c) > 1 else 0 for c, d in zip(chunks, depth, strict=True))
    if any(depth) and all(_rereadable(a) for a in arrays):
        bounds = tuple(tuple(int(b) for b in np.cumsum((0, *c))) for c in chunks)
        out = da.map_blocks(
            functools.partial(
                _reread_block, func, tuple(_Source(a) for a in arrays), bounds, depth
            ),
            chunks=chunks,
            dtype=dtype,
            meta=_meta(base.ndim, dtype),
        )
    else:
        arrays = [a if a.chunks == chunks else a.rechunk(chunks) for a in arrays]
        out = da.map_overlap(
            func,
            *arrays,
            depth=dict(enumerate(depth)),
            boundary="none",
            dtype=dtype,
            meta=_meta(base.ndim, dtype),
        )
    return out if out.chunks == base.chunks else out.rechunk(base.chunks)


def halo_depth(
    sigma: float, spacing: float | Sequence[float] | None = None, *, ndim: int = 2
) -> tuple[int, ...]:
    """Halo, in pixels per axis, that makes a chunked U-Net map exact.

    ``ceil(border_cutoff(sigma) / spacing_axis) + 1``.

    Examples
    --------
    >>> halo_depth(5.0)
    (28, 28)
    >>> halo_depth(2.0, (4.0, 1.0, 1.0), ndim=3)
    (4, 12, 12)
    """
    spacing_ = _normalized_spacing(spacing, ndim)
    cutoff = border_cutoff(sigma)
    return tuple(int(math.ceil(cutoff / s)) + 1 for s in spacing_)


# --------------------------------------------------------------------------
# U-Net border weights


def _unet_block(
    labels: np.ndarray, ignore: np.ndarray | None = None, **kwargs: object
) -> np.ndarray:
    return _unet.unet_weight_map(labels, ignore_mask=ignore, **kwargs)


def _balanced_foreground(labels: da.Array, ignore: da.Array | None) -> dict[int, float]:
    """The ``"balanced"`` class weights from global counts (one reduction pass)."""
    foreground = labels != 0
    if ignore is None:
        counted: object = labels.size
    else:
        foreground &= ~ignore
        counted = da.count_nonzero(~ignore)
    n_fg, n_counted = dask.compute(da.count_nonzero(foreground), counted)
    # As the in-memory kernel: inverse balance of background against foreground.
    return _balance.class_weights({0: int(n_counted) - int(n_fg), 1: int(n_fg)}, "inverse")


def unet_weight_map(
    instances: da.Array,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | str | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: da.Array | np.ndarray | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.unet_weight_map`.

    Each chunk is computed by the in-memory kernel on the chunk grown by
    :func:`halo_depth` pixels per axis (not padded at the volume edge) and
    cropped, which gives the in-memory map exactly (see the module notes).
    A task reads its grown chunk itself when ``instances`` (and
    ``ignore_mask``) are read from storage with at most elementwise ops on
    top, so memory does not grow with the volume; otherwise the grown chunks
    come from ``map_overlap``. Chunks thinner than the halo are merged for the computation; the
    result has the chunks of ``instances``.

    Parameters
    ----------
    instances : dask array of int
        Instance labels, 0 = background, ids unique across the whole volume.
    w0, sigma, spacing
        As in :func:`weightmaps.unet_weight_map`.
    class_weights : mapping, "balanced" or None
        As in :func:`weightmaps.unet_weight_map`. ``"balanced"`` counts
        foreground and background over the whole volume: that count is
        computed now (one pass), the map stays lazy.
    ignore_mask : dask or numpy array of bool, optional
        Pixels that get weight 0; rechunked like ``instances``.

    Returns
    -------
    dask array of float32
        Lazy, chunks of ``instances``.

    Examples
    --------
    >>> import dask.array as da
    >>> w = unet_weight_map(da.from_array([[1, 0, 2]], chunks=1), w0=10, sigma=5)
    >>> w.chunks
    ((1,), (1, 1, 1))
    >>> round(float(w[0, 1].compute()), 4)
    10.2312
    """
    labels = _as_dask(instances)
    _check_nonempty(labels, "instances")
    if labels.dtype != bool and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"instances must be an integer label array, got dtype {labels.dtype}; "
            "turn a binary or semantic mask into instances with label_instances()"
        )
    if w0 < 0 or not math.isfinite(w0):
        raise ValueError(f"w0 must be finite and >= 0, got {w0}")
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    spacing_ = _normalized_spacing(spacing, labels.ndim)
    ignore = None
    if ignore_mask is not None:
        ignore = _as_dask(ignore_mask).astype(bool)
        if ignore.shape != labels.shape:
            raise ValueError(
                f"ignore_mask shape {ignore.shape} differs from instances {labels.shape}"
            )
    weights: Mapping[int, float] | None
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"class_weights must be a mapping, 'balanced' or None, got {class_weights!r}"
            )
        weights = _balanced_foreground(labels, ignore)
    elif class_weights is not None:
        weights = {int(k): float(v) for k, v in class_weights.items()}
        unknown = set(weights) - {0, 1}
        if unknown:
            raise ValueError(
                f"class_weights keys are 0 (background) and 1 (foreground), got {sorted(unknown)}"
            )
    else:
        weights = None
    # w0 = 0 has no border term, hence no reach beyond the pixel itself.
    depth = halo_depth(sigma, spacing_, ndim=labels.ndim) if w0 > 0 else (0,) * labels.ndim
    func = functools.partial(
        _unet_block,
        w0=w0,
        sigma=sigma,
        class_weights=weights,
        spacing=None if spacing is None else tuple(spacing_.tolist()),
    )
    arrays = [labels] if ignore is None else [labels, ignore]
    return _map_with_halo(func, arrays, depth, np.float32)


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
    labels = _as_dask(instances)
    _check_nonempty(labels, "instances")
    _check_label_dtype(labels, "instances")
    _check_connectivity(connectivity, labels.ndim)
    func = functools.partial(_instances.separate_instances, connectivity=connectivity)
    return _map_with_halo(func, [labels], (1,) * labels.ndim, labels.dtype)


# --------------------------------------------------------------------------
# edge weights


def edge_weight_map(
    mask: da.Array,
    *,
    kernel_size: int = 31,
    alpha: float = 5.0,
    classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.edge_weight_map` (halo of ``kernel_size // 2``).

    ``classes`` is the global class list (or ``num_classes``); a class absent
    from a chunk and its halo adds nothing there, exactly as in memory.
    Float masks are checked to lie in [0, 1] chunk by chunk, when computed.

    Returns
    -------
    dask array of float32
        Lazy, chunks of ``mask``.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> w = edge_weight_map(da.from_array(m, chunks=2), kernel_size=3, alpha=9.0)
    >>> w[2, 2].compute(), w[1, 1].compute(), w[0, 0].compute()
    (np.float32(9.0), np.float32(2.0), np.float32(1.0))
    """
    m = _as_dask(mask)
    _check_nonempty(m, "mask")
    if classes is not None and num_classes is not None:
        raise ValueError("give classes or num_classes, not both")
    _check_kernel_size(kernel_size)
    semantic = classes is not None or num_classes is not None
    if semantic and not np.issubdtype(m.dtype, np.integer):
        raise TypeError(f"a semantic mask must hold integer class ids, got {m.dtype}")
    if not (m.dtype == bool or np.issubdtype(m.dtype, np.number)) or np.issubdtype(
        m.dtype, np.complexfloating
    ):
        raise TypeError(f"mask must be bool, integer or float, got dtype {m.dtype}")
    func = functools.partial(
        _edge.edge_weight_map,
        kernel_size=kernel_size,
        alpha=alpha,
        classes=None if classes is None else tuple(int(c) for c in classes),
        num_classes=num_classes,
        ignore_index=ignore_index,
    )
    return _map_with_halo(func, [m], (kernel_size // 2,) * m.ndim, np.float32)


# --------------------------------------------------------------------------
# class balance


def _check_class_dtype(mask: da.Array) -> None:
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(
            f"class-balance weights need integer class ids, got dtype {mask.dtype}; "
            "threshold a float mask first"
        )


def _block_pixels(block: np.ndarray, ignore_index: int | None) -> tuple[dict[int, int], int]:
    counts = _balance.class_counts(block, ignore_index=ignore_index)
    return counts.pixels, counts.total


def class_counts(mask: da.Array, *, ignore_index: int | None = None) -> ClassCounts:
    """Chunked :func:`weightmaps.class_counts`: the counts of the whole volume.

    Computed now (one pass, chunk counts summed): the volume counts as one
    image, as the in-memory function counts one mask.

    Examples
    --------
    >>> import dask.array as da
    >>> c = class_counts(da.from_array([[0, 0, 1], [0, 255, 1]], chunks=1), ignore_index=255)
    >>> c.pixels, c.total
    ({0: 3, 1: 2}, 5)
    """
    m = _as_dask(mask)
    _check_class_dtype(m)
    count = dask.delayed(_block_pixels, pure=True)
    parts = dask.compute(*[count(b, ignore_index) for b in m.to_delayed().ravel()])
    pixels: dict[int, int] = {}
    total = 0
    for block_pixels, block_total in parts:
        total += block_total
        for c, n in block_pixels.items():
            pixels[c] = pixels.get(c, 0) + n
    pixels = dict(sorted(pixels.items()))
    return ClassCounts(pixels=pixels, image_pixels={c: total for c in pixels})


def balance_weight_map(
    mask: da.Array,
    *,
    mode: str = "inverse",
    ignore_index: int | None = None,
    counts: ClassCounts | Mapping[int, int] | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.balance_weight_map`.

    ``counts=None`` counts the whole volume (:func:`class_counts`, computed
    now: image scope for this one volume); dataset counts can be given.
    The painting is elementwise (``map_blocks``) and lazy.

    Returns
    -------
    dask array of float32
        Lazy, chunks of ``mask``.

    Examples
    --------
    >>> import dask.array as da
    >>> balance_weight_map(da.from_array([[0, 0, 0, 1]], chunks=2)).compute()
    array([[0.6666667, 0.6666667, 0.6666667, 2.       ]], dtype=float32)
    """
    m = _as_dask(mask)
    _check_class_dtype(m)
    if mode not in BALANCE_MODES:  # before the counting pass, not after
        raise ValueError(f"unknown balance mode {mode!r}; expected one of {BALANCE_MODES}")
    if counts is None:
        counts = class_counts(m, ignore_index=ignore_index)
    weights = _balance.class_weights(counts, mode)
    return m.map_blocks(
        _balance.paint_class_weights,
        weights=weights,
        ignore_index=ignore_index,
        dtype=np.float32,
        meta=_meta(m.ndim, np.float32),
    )


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
    m = _as_dask(mask)
    _check_nonempty(m, "mask")
    _check_label_dtype(m, "mask")
    connectivity = m.ndim if connectivity is None else connectivity
    _check_connectivity(connectivity, m.ndim)
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
            meta=_meta(m.ndim, np.int32),
        )

    return da.block(_nested(grid, block_of))
