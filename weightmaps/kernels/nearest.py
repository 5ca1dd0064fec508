"""Distances to the nearest and second-nearest distinct instance.

This is the geometric core of the U-Net border weight: for every pixel, the
distance ``d1`` to the nearest pixel of the nearest instance and ``d2`` to the
nearest pixel of the second-nearest *distinct* instance.

The textbook way runs one full distance transform per instance and sorts a
stack of ``(instances, *shape)`` distances. Here the pair is computed in one
separable transform: a first pass per line along one axis, then one pass per
remaining axis that merges, for every pixel, the pairs of the lines around it.
Each pass keeps for every pixel the two nearest sites that carry different
labels. This is exact: if the second-nearest distinct site lost its place in
its line's top two, both sites kept ahead of it would be nearer, and one of
them differs in label from the nearest, a contradiction. Its cost does not
depend on the number of instances and its memory is a few arrays of the
image's size.

Distances at or beyond ``max_distance`` are not computed (they are reported
as missing); every pair with ``d2 < max_distance`` is exact.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from weightmaps._shared.arrays import line_view, sequential_ids, steps_within
from weightmaps._shared.threads import run_parts, split_range, threads_for
from weightmaps.kernels import _nearest_nb as kernels

__all__ = [
    "add_border_term",
    "as_label_array",
    "axis_order",
    "nearest_two_instances",
    "normalized_spacing",
]


def normalized_spacing(spacing: float | Sequence[float] | None, ndim: int) -> np.ndarray:
    if spacing is None:
        return np.ones(ndim)
    values = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,)).copy()
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return values


# Label dtypes the compiled passes read as they are, when asked to keep them:
# the usual dtypes of mask files, whose ids all fit the int32 pair buffers.
_SMALL_LABELS = frozenset({np.dtype(np.uint8), np.dtype(np.uint16)})


def as_label_array(instances: np.ndarray, *, keep_small: bool = False) -> np.ndarray:
    """The labels as a C-contiguous array the compiled passes accept.

    Signed (int32, or int64 for ids beyond int32), or with ``keep_small``
    uint8 and uint16 labels as they are: a 16-bit volume then needs no
    4-byte copy of its labels.
    """
    instances = np.asarray(instances)
    if keep_small and instances.dtype in _SMALL_LABELS and instances.size:
        return np.ascontiguousarray(instances)
    if instances.dtype == bool:
        return np.ascontiguousarray(instances, dtype=np.int32)
    if not np.issubdtype(instances.dtype, np.integer):
        raise TypeError(
            f"instances must be an integer label array, got dtype {instances.dtype}; "
            "turn a binary or semantic mask into instances with label_instances()"
        )
    if instances.ndim == 0 or instances.size == 0:
        raise ValueError(f"instances must be a non-empty array, got shape {instances.shape}")
    if instances.size and instances.min() < 0:
        raise ValueError("instance labels must be >= 0 (0 is background)")
    highest = int(instances.max()) if instances.size else 0
    if highest > np.iinfo(np.int64).max:
        # uint64 ids from 2**63 up would turn negative (-1 is NO_LABEL):
        # their ranks keep identity and order, so the map is unchanged.
        return sequential_ids(instances)
    wide = highest > np.iinfo(np.int32).max
    return np.ascontiguousarray(instances, dtype=np.int64 if wide else np.int32)


def axis_order(spacing: np.ndarray) -> list[int]:
    """Axes in processing order: the linear scan first, on the axis with the
    most pixels per unit length (the window passes would cost most there)."""
    ndim = len(spacing)
    first = min(range(ndim), key=lambda ax: (spacing[ax], -ax))
    return [first] + [ax for ax in reversed(range(ndim)) if ax != first]


# Pixels after the processed axis from which a pass runs a row of them at a
# time (below, pixel at a time, with per-pixel early exits). Measured on
# 4000 x w masks: pixel at a time wins up to w = 16, rows from w = 24.
_MIN_ROW = 20


def _by_rows(labels: np.ndarray, axis: int) -> bool:
    return int(np.prod(labels.shape[axis + 1 :], dtype=np.int64)) >= _MIN_ROW


def _accumulator(spacing: np.ndarray, cap: float) -> np.ndarray:
    """Empty array of the dtype the row passes accumulate squared distances in.

    float32 when every squared distance they form is exact in it: each
    ``spacing**2`` a multiple of ``2**-e`` and every sum (below ``2 * cap``)
    under ``2**24 * 2**-e``. Then float32 sums equal the float64 sums of the
    pixel-at-a-time passes. Otherwise float64, rounded as those passes round.
    """
    steps = spacing**2
    for e in range(31):
        if np.all(steps * 2.0**e == np.round(steps * 2.0**e)):
            if 2.0 * cap * 2.0**e < 2.0**24:
                return np.empty(0, np.float32)
            break
    return np.empty(0, np.float64)


def _pair_label_dtype(label_dtype: np.dtype) -> np.dtype:
    """Labels of the pair buffers: signed (-1 is NO_LABEL), int32 unless ids need int64."""
    return np.dtype(np.int64) if label_dtype == np.int64 else np.dtype(np.int32)


class _PairBuffer:
    """Squared distances (float32: capped values are small, so exact for
    integer offsets) and labels of the two nearest distinct sites."""

    def __init__(self, shape: tuple[int, ...], label_dtype: np.dtype) -> None:
        self.v1 = np.empty(shape, np.float32)
        self.l1 = np.empty(shape, _pair_label_dtype(label_dtype))
        self.v2 = np.empty(shape, np.float32)
        self.l2 = np.empty(shape, _pair_label_dtype(label_dtype))

    def views(self, axis: int) -> tuple[np.ndarray, ...]:
        return tuple(line_view(a, axis) for a in (self.v1, self.l1, self.v2, self.l2))


def _window_in_place(
    pairs: _PairBuffer, axis: int, step2: float, by_rows: bool, acc: np.ndarray
) -> None:
    """A later pass along ``axis``, its result written back into ``pairs``.

    The lines of the pass are independent across the view's outer axis, so
    groups of them go through a scratch buffer of about ``_BLOCK_PIXELS``
    pixels and are copied back: one pair buffer for the whole image, not two
    (16 bytes a pixel saved on a volume). Each pixel gets the same pair as
    from a pass over the whole buffer.
    """
    views = pairs.views(axis)
    n_outer, n, n_inner = views[0].shape
    threads = threads_for(pairs.v1.size)
    # Scratch of ~_BLOCK_PIXELS in all, shared out among the threads.
    group = min(n_outer, max(1, _BLOCK_PIXELS // (threads * n * n_inner)))

    def lines(part: tuple[int, int]) -> None:
        start, stop = part
        size = min(group, stop - start)
        scratch = _PairBuffer((size, n, n_inner), pairs.l1.dtype)
        buffers = (scratch.v1, scratch.l1, scratch.v2, scratch.l2)
        for a0 in range(start, stop, size):
            a1 = min(a0 + size, stop)
            source = tuple(view[a0:a1] for view in views)
            target = tuple(buffer[: a1 - a0] for buffer in buffers)
            if by_rows:
                kernels.window_pass_rows(*source, *target, step2, acc)
            else:
                kernels.window_pass(*source, *target, step2)
            for view, done in zip(views, target, strict=True):
                view[a0:a1] = done

    # Each thread its own run of lines and its own scratch.
    run_parts(lines, split_range(n_outer, threads), threads)


def _pair_passes(
    labels: np.ndarray, spacing: np.ndarray, cap: float, *, keep_last: bool
) -> tuple[_PairBuffer, int | None]:
    """Run every pass but, unless ``keep_last``, the last one.

    Returns the buffer of the last pass run and the axis still to process
    (None when all are done).
    """
    order = axis_order(spacing)
    first = order[0]
    current = _PairBuffer(labels.shape, labels.dtype)
    views = (line_view(labels, first), *current.views(first))
    step2 = float(spacing[first] ** 2)
    threads = threads_for(labels.size)
    run_parts(
        lambda part: kernels.scan_pass(*(v[part[0] : part[1]] for v in views), step2, cap),
        split_range(views[0].shape[0], threads),
        threads,
    )
    rest = order[1:]
    stop = len(rest) if keep_last else len(rest) - 1
    for axis in rest[:stop]:
        _window_in_place(
            current,
            axis,
            float(spacing[axis] ** 2),
            _by_rows(labels, axis),
            _accumulator(spacing, cap),
        )
    return current, (None if keep_last or not rest else rest[-1])


def nearest_two_instances(
    instances: np.ndarray,
    *,
    spacing: float | Sequence[float] | None = None,
    max_distance: float | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Distance and label of the nearest and second-nearest distinct instance.

    Parameters
    ----------
    instances : ndarray of int
        Label image of any dimension, 0 = background, every object a distinct
        positive id (ids need not be contiguous).
    spacing : float or sequence of float, optional
        Pixel size along each axis; distances are in these units.
    max_distance : float, optional
        Distances at or beyond this are not computed. Pairs with
        ``d2 < max_distance`` are exact; beyond it the pass stops early, which
        is what makes the transform fast. Default: no limit.

    Returns
    -------
    d1, label1, d2, label2 : ndarray
        float64 distances between pixel centres and the labels they belong
        to (int32 or int64; uint64 ids beyond the int64 range come back as
        uint64). A pixel of an instance has ``d1 == 0`` and ``label1`` its own id.
        Where no instance (or no second distinct instance) lies within
        ``max_distance``, the distance is ``inf`` and the label 0.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 0, 0, 2]])
    >>> d1, l1, d2, l2 = nearest_two_instances(labels)
    >>> d1[0, 1], l1[0, 1], d2[0, 1], l2[0, 1]
    (np.float64(1.0), np.int32(1), np.float64(2.0), np.int32(2))
    """
    labels = as_label_array(instances)
    original = np.asarray(instances)
    renumbered = original.dtype == np.uint64 and int(original.max()) > np.iinfo(np.int64).max
    spacing_ = normalized_spacing(spacing, labels.ndim)
    if max_distance is None:
        cap = float(np.sum((np.asarray(labels.shape) * spacing_) ** 2)) * 4.0 + 1.0
    else:
        cap = float(max_distance) ** 2
    pairs, _ = _pair_passes(labels, spacing_, cap, keep_last=True)

    def distances(v: np.ndarray, lab: np.ndarray) -> np.ndarray:
        d = np.sqrt(v, dtype=np.float64)
        d[lab == kernels.NO_LABEL] = np.inf
        return d

    def labels_of(lab: np.ndarray) -> np.ndarray:
        lab[lab == kernels.NO_LABEL] = 0
        if renumbered:  # ranks back to the uint64 ids they stand for
            ids = np.unique(original)
            return np.concatenate([np.zeros(1, np.uint64), ids[ids != 0]])[lab]
        return lab

    return (
        distances(pairs.v1, pairs.l1),
        labels_of(pairs.l1),
        distances(pairs.v2, pairs.l2),
        labels_of(pairs.l2),
    )


# Pixels per slab of the last pass: bounds the pair buffers (16 bytes a
# pixel, two of them in 3-D) to ~32 MB whatever the size of the image.
_BLOCK_PIXELS = 1 << 20


def add_border_term(
    instances: np.ndarray,
    out: np.ndarray,
    *,
    w0: float,
    sigma: float,
    cutoff: float,
    spacing: float | Sequence[float] | None = None,
) -> np.ndarray:
    """Add ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels to ``out``.

    Nothing is added on instances, where fewer than two instances exist, and
    where ``d1 + d2 >= cutoff`` (there the term is below
    ``w0 * exp(-cutoff^2 / 2 sigma^2)``). ``instances`` must come from
    ``as_label_array``; ``out`` is float32, same shape.

    Every pass but the last is independent along the last pass's axis, and
    the last one looks at most ``cutoff`` away along it, so the image is done
    in slabs along that axis, each grown by that reach: memory stays bounded
    while the result is the same as in one piece.
    """
    labels = instances  # validated by the caller (unet_weight_map)
    spacing_ = normalized_spacing(spacing, labels.ndim)
    inv_two_sigma2 = 1.0 / (2.0 * sigma * sigma)
    cap = cutoff * cutoff
    if labels.ndim == 1:  # the scan pass is the only one
        pairs, _ = _pair_passes(labels, spacing_, cap, keep_last=True)
        s = np.sqrt(pairs.v1, dtype=np.float64) + np.sqrt(pairs.v2)
        found = (pairs.l2 != kernels.NO_LABEL) & (labels == 0) & (s < cutoff)
        out[found] += w0 * np.exp(-(s[found] ** 2) * inv_two_sigma2)
        return out
    axis = axis_order(spacing_)[-1]
    length = labels.shape[axis]
    reach = steps_within(cutoff, spacing_[axis]) + 1
    per_row = labels.size // length
    # At least 8 halos per slab keeps the work redone on halos small.
    rows = max(_BLOCK_PIXELS // per_row, 8 * reach, 1)
    for lo in range(0, length, rows):
        hi = min(lo + rows, length)
        a, b = max(lo - reach, 0), min(hi + reach, length)
        slab = tuple(slice(a, b) if ax == axis else slice(None) for ax in range(labels.ndim))
        slab_labels = np.ascontiguousarray(labels[slab])
        slab_out = np.ascontiguousarray(out[slab])
        pairs, _ = _pair_passes(slab_labels, spacing_, cap, keep_last=False)
        _border_pass(
            (line_view(slab_labels, axis), *pairs.views(axis), line_view(slab_out, axis)),
            (
                lo - a,
                hi - a,
                float(spacing_[axis] ** 2),
                float(w0),
                inv_two_sigma2,
                float(cutoff),
            ),
            _accumulator(spacing_, cap) if _by_rows(labels, axis) else None,
        )
        if not np.shares_memory(slab_out, out):
            out[slab] = slab_out
        del pairs  # before the next slab allocates its own
    return out


def _border_pass(arrays: tuple[np.ndarray, ...], scalars: tuple, acc: np.ndarray | None) -> None:
    """The last pass (rows when ``acc`` is given), split across the calling thread's
    threads: by outer lines, or with one outer line by blocks of its rows."""
    n_outer, _, n_inner = arrays[0].shape
    threads = threads_for(arrays[0].size)
    if n_outer == 1 and acc is not None:
        parts = split_range(n_inner, threads, align=kernels.BLOCK)
        run_parts(
            lambda part: kernels.border_pass_rows_part(*arrays, *scalars, acc, *part),
            parts,
            threads,
        )
        return
    kernel = kernels.border_pass if acc is None else kernels.border_pass_rows
    extra = () if acc is None else (acc,)
    run_parts(
        lambda part: kernel(*(v[part[0] : part[1]] for v in arrays), *scalars, *extra),
        split_range(n_outer, threads),
        threads,
    )
