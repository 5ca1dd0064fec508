"""Skeleton maps for the clDice loss (Shit et al., CVPR 2021).

The exact skeleton of the target, ``skimage.morphology.skeletonize``, which
clDice's soft skeleton approximates: computed once per mask here, it replaces
the target's soft skeleton in
:func:`weightmaps.distance_losses.cldice_loss`.

- instance masks: every object skeletonised on its own, so touching cells
  keep separate skeletons (one pass over the whole mask would thin them as
  one region);
- binary masks: the foreground as one region;
- semantic masks: every class on its own.

Each region is thinned on its bounding box grown by one pixel (cut by the
array's edge), not on the whole array. Both of skimage's methods are
translation-invariant thinnings that decide every pixel from its 3 x 3 (x 3)
neighbourhood and never add foreground (Lee's method visits candidates in
raster order, which a box keeps), so a region alone in its grown box - a
ring of background, or the array's edge where the array ends - thins
exactly as alone in the whole array, at the cost of its box instead of the
array's.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

__all__ = ["SKELETON_MASK_TYPES", "skeleton_map"]

SKELETON_MASK_TYPES = ("instance", "binary", "semantic")


def _regions(labels: np.ndarray) -> np.ndarray:
    """Labels find_objects can take: ids above the pixel count renumbered.

    find_objects keeps one slot per id up to the largest, so its cost is
    linear in the larger of the two.
    """
    if labels.size == 0 or int(labels.max()) <= labels.size:
        return labels
    ids, inverse = np.unique(labels, return_inverse=True)
    inverse = inverse.reshape(labels.shape)
    return inverse if ids[0] == 0 else inverse + 1


def _skeletons_of_regions(regions: np.ndarray, method: str | None) -> np.ndarray:
    """Union of the skeletons of every nonzero id, each thinned alone."""
    out = np.zeros(regions.shape, np.uint8)
    for index, box in enumerate(ndi.find_objects(regions)):
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - 1, 0), min(s.stop + 1, n))
            for s, n in zip(box, regions.shape, strict=True)
        )
        skeleton = skeletonize(regions[grown] == index + 1, method=method)
        out[grown][skeleton] = 1
    return out


def skeleton_map(
    labels: np.ndarray,
    *,
    mask_type: str = "instance",
    ignore_index: int | None = None,
    method: str | None = None,
) -> np.ndarray:
    """Skeleton of every object, class or the foreground: 1 on the skeleton.

    Parameters
    ----------
    labels : ndarray of int or bool
        2-D or 3-D mask, 0 = background.
    mask_type : {"instance", "binary", "semantic"}
        ``"instance"``: every id an object, skeletonised on its own (ids need
        not be contiguous). ``"binary"``: every nonzero pixel one foreground.
        ``"semantic"``: every class id on its own (computed as instances are:
        a class is thinned alone, all its parts together). A binary mask gives
        the same skeleton with ``"instance"`` as with ``"binary"``.
    ignore_index : int, optional
        Pixels of this value are background (and 0 in the map).
    method : {None, "zhang", "lee"}
        Passed to ``skimage.morphology.skeletonize``: by default Zhang's
        method in 2-D and Lee's in 3-D.

    Returns
    -------
    ndarray of uint8
        Same shape as ``labels``; equal to the union over regions of
        ``skeletonize(labels == id)`` computed on the whole array.

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.zeros((5, 12), np.uint8)
    >>> labels[1:4, 1:6] = 1; labels[1:4, 6:11] = 2  # two touching cells
    >>> skeleton_map(labels)[1:3]
    array([[0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0],
           [0, 1, 1, 1, 0, 0, 1, 1, 1, 0, 0, 0]], dtype=uint8)
    >>> skeleton_map(labels, mask_type="binary")[1:3]
    array([[0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0],
           [0, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]], dtype=uint8)
    """
    if mask_type not in SKELETON_MASK_TYPES:
        raise ValueError(f"mask_type must be one of {SKELETON_MASK_TYPES}, got {mask_type!r}")
    labels = np.asarray(labels)
    if labels.dtype != bool and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"labels must be an integer or boolean array, got dtype {labels.dtype}")
    if labels.ndim not in (2, 3):
        raise ValueError(f"skeletons are computed for 2-D and 3-D masks, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"labels must be non-empty, got shape {labels.shape}")
    if labels.dtype == bool or mask_type == "binary":
        foreground = labels != 0
        if ignore_index is not None and labels.dtype != bool:
            foreground &= labels != ignore_index
        regions = foreground.astype(np.uint8)
    else:
        if labels.min() < 0:
            raise ValueError("labels must be >= 0 (0 is background)")
        regions = labels
        if ignore_index is not None:
            regions = np.where(labels == ignore_index, 0, labels)
        regions = _regions(regions.astype(np.int64, copy=False))
    return _skeletons_of_regions(regions, method)
