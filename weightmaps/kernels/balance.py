"""Class-balance weights: one weight per class, painted on every pixel.

The counting and painting of numpy masks; the formulas are in
:mod:`weightmaps.kernels.class_balance`, the torch and dask twins in
``balance_torch`` and ``balance_dask``.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from weightmaps._shared.arrays import ArrayOrTensor, is_torch_tensor
from weightmaps._shared.counting import count_ids, paint_ids
from weightmaps.kernels.class_balance import ClassCounts, class_weights

__all__ = ["balance_weight_map", "class_counts", "paint_class_weights"]


def _class_array(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.view(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(
            f"class-balance weights need integer class ids, got dtype {mask.dtype}; "
            "threshold a float mask first"
        )
    return mask


# Class ids below this are counted per id (count_ids) / painted with a lookup
# table, which is linear time; others (instance ids, negatives) fall back to a sort.
_DENSE_IDS = 1 << 16


def _is_dense(values: np.ndarray) -> bool:
    return values.size > 0 and int(values.min()) >= 0 and int(values.max()) < _DENSE_IDS


def _histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes present in ``values`` (sorted) and their pixel counts."""
    if _is_dense(values):
        counts = count_ids(values)
        classes = np.flatnonzero(counts)
        return classes, counts[classes]
    return np.unique(values, return_counts=True)


def class_counts(mask: np.ndarray, *, ignore_index: int | None = None) -> ClassCounts:
    """Count the pixels of every class in one mask.

    Parameters
    ----------
    mask : ndarray of int or bool
        Class ids (a binary mask counts as classes 0 and its foreground value).
    ignore_index : int, optional
        Value whose pixels are not counted.

    Returns
    -------
    ClassCounts
        Sum these over a dataset with ``+`` (or ``sum``).

    Examples
    --------
    >>> import numpy as np
    >>> c = class_counts(np.array([[0, 0, 1], [0, 255, 1]]), ignore_index=255)
    >>> c.pixels, c.total
    ({0: 3, 1: 2}, 5)
    """
    # Every class counted, then the ignored one dropped: no copy of the mask
    # without its ignored pixels.
    classes, counts = _histogram(_class_array(mask).ravel())
    if ignore_index is not None:
        kept = classes != ignore_index
        classes, counts = classes[kept], counts[kept]
    pixels = {int(c): int(n) for c, n in zip(classes, counts, strict=True)}
    total = int(counts.sum())
    return ClassCounts(pixels=pixels, image_pixels={c: total for c in pixels})


def paint_class_weights(
    mask: np.ndarray, weights: Mapping[int, float], *, ignore_index: int | None = None
) -> np.ndarray:
    """float32 map with ``weights[class]`` on every pixel and 0 on ignored ones.

    Raises ``ValueError`` when a counted pixel's class has no weight.
    """
    mask = _class_array(mask)
    if _is_dense(mask):
        classes = np.flatnonzero(count_ids(mask))
        index = mask
        lut = np.zeros(int(classes[-1]) + 1, np.float32)
        slots = classes
    else:
        classes, inverse = np.unique(mask, return_inverse=True)
        index = inverse.reshape(mask.shape)
        lut = np.zeros(len(classes), np.float32)
        slots = np.arange(len(classes))
    missing = []
    for slot, c in zip(slots.tolist(), classes.tolist(), strict=True):
        if ignore_index is not None and c == ignore_index:
            continue
        if c in weights:
            lut[slot] = weights[c]
        else:
            missing.append(c)
    if missing:
        raise ValueError(
            f"class(es) {missing} occur in the mask but have no count or weight; "
            "dataset counts must include every mask they are applied to"
        )
    return paint_ids(lut, index)


def balance_weight_map(
    mask: ArrayOrTensor,
    *,
    mode: str = "inverse",
    ignore_index: int | None = None,
    counts: ClassCounts | Mapping[int, int] | None = None,
) -> ArrayOrTensor:
    """Per-pixel class-balance weights ``w(x) = w_class(x)``.

    Parameters
    ----------
    mask : ndarray or Tensor of int or bool
        Class ids, 2-D or 3-D (any dimension works).
    mode : {"inverse", "median", "enet", "beta"}
        How class weights follow from the counts; see :func:`class_weights`.
    ignore_index : int, optional
        Pixels of this value get weight 0 and are not counted.
    counts : ClassCounts or mapping, optional
        Counts to weight by, e.g. summed over a dataset with
        :func:`class_counts`. A plain mapping is ``{class: pixels}``. Default:
        this mask's own counts.

    Returns
    -------
    ndarray or Tensor of float32
        Same shape as ``mask``. A torch tensor in gives a float32 tensor on
        its device (:mod:`weightmaps.torch_kernels`).

    Examples
    --------
    >>> import numpy as np
    >>> balance_weight_map(np.array([[0, 0, 0, 1]]))
    array([[0.6666667, 0.6666667, 0.6666667, 2.       ]], dtype=float32)
    """
    if is_torch_tensor(mask):
        from weightmaps.kernels.balance_torch import balance_weight_map_torch

        return balance_weight_map_torch(mask, mode=mode, ignore_index=ignore_index, counts=counts)
    if counts is None:
        counts = class_counts(mask, ignore_index=ignore_index)
    return paint_class_weights(mask, class_weights(counts, mode), ignore_index=ignore_index)
