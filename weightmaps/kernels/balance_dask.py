"""Chunked class counts and class-balance weight map (Dask): one counting pass, then painting."""

from __future__ import annotations

from collections.abc import Mapping

import dask
import dask.array as da
import numpy as np

from weightmaps.kernels._dask_common import as_dask, meta
from weightmaps.kernels.balance import class_counts as numpy_class_counts
from weightmaps.kernels.balance import paint_class_weights
from weightmaps.kernels.class_balance import ClassCounts, check_balance_mode, class_weights

__all__ = ["balance_weight_map", "class_counts"]


def _check_class_dtype(mask: da.Array) -> None:
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(
            f"class-balance weights need integer class ids, got dtype {mask.dtype}; "
            "threshold a float mask first"
        )


def _block_pixels(block: np.ndarray, ignore_index: int | None) -> tuple[dict[int, int], int]:
    counts = numpy_class_counts(block, ignore_index=ignore_index)
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
    m = as_dask(mask)
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
    m = as_dask(mask)
    _check_class_dtype(m)
    check_balance_mode(mode)  # before the counting pass, not after
    if counts is None:
        counts = class_counts(m, ignore_index=ignore_index)
    weights = class_weights(counts, mode)
    return m.map_blocks(
        paint_class_weights,
        weights=weights,
        ignore_index=ignore_index,
        dtype=np.float32,
        meta=meta(m.ndim, np.float32),
    )
