"""Instance labels: from binary or semantic masks, and separating touching ones."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import measure

from weightmaps._shared.arrays import FLOAT64_EXACT_IDS, sequential_ids

__all__ = ["label_instances", "separate_instances"]


def _check_integer_mask(mask: np.ndarray, name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype != bool and not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(f"{name} must be an integer or boolean array, got dtype {mask.dtype}")
    if mask.ndim == 0 or mask.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {mask.shape}")
    return mask


def label_instances(
    mask: np.ndarray,
    *,
    connectivity: int | None = None,
    ignore_value: int | None = None,
) -> np.ndarray:
    """Turn a binary or semantic mask into instances by connected components.

    Every connected region of one nonzero value becomes one instance, so two
    touching regions of different classes stay separate instances.

    Parameters
    ----------
    mask : ndarray of int or bool
        0 is background; any other value a class (a binary mask has one).
    connectivity : int, optional
        Neighbours counted as connected: 1 = faces only, up to ``mask.ndim`` =
        faces, edges and corners. Default ``mask.ndim`` (full connectivity,
        as ``skimage.measure.label``).
    ignore_value : int, optional
        Pixels of this value are treated as background.

    Returns
    -------
    ndarray of int32
        Instance ids 1..n, 0 = background.

    Examples
    --------
    >>> import numpy as np
    >>> label_instances(np.array([[1, 1, 0, 1], [0, 0, 0, 1]]))
    array([[1, 1, 0, 2],
           [0, 0, 0, 2]], dtype=int32)
    """
    mask = _check_integer_mask(mask, "mask")
    if ignore_value is not None:
        mask = np.where(mask == ignore_value, 0, mask)
    connectivity = mask.ndim if connectivity is None else connectivity
    if not 1 <= connectivity <= mask.ndim:
        raise ValueError(f"connectivity must be in 1..{mask.ndim}, got {connectivity}")
    labels = measure.label(mask, background=0, connectivity=connectivity)
    return labels.astype(np.int32, copy=False)


def separate_instances(instances: np.ndarray, connectivity: int = 1) -> np.ndarray:
    """Carve a gap between touching instances.

    Every foreground pixel with a neighbour that belongs to a *different*
    instance becomes background, on both sides of the contact, so the U-Net
    border term can act between cells that touch (Ronneberger et al. train on
    such a carved target). Pixels next to background or the image edge stay.
    Both sides are carved so the result does not depend on which instance
    happens to have the larger id.

    Parameters
    ----------
    instances : ndarray of int
        Instance labels, 0 = background.
    connectivity : int
        Which neighbours touch: 1 = faces only (default), up to
        ``instances.ndim`` = faces, edges and corners.

    Returns
    -------
    ndarray
        Same dtype and shape as ``instances``, the ids kept. Any id works,
        up to ``2**64 - 1`` in uint64; negative ids are refused.

    Examples
    --------
    >>> import numpy as np
    >>> separate_instances(np.array([[1, 1, 2, 2, 0, 3]]))
    array([[1, 0, 0, 2, 0, 3]])
    """
    instances = _check_integer_mask(instances, "instances")
    if not 1 <= connectivity <= instances.ndim:
        raise ValueError(f"connectivity must be in 1..{instances.ndim}, got {connectivity}")
    if instances.dtype.kind == "i" and instances.min() < 0:
        raise ValueError("instance labels must be >= 0 (0 is background)")
    footprint = ndi.generate_binary_structure(instances.ndim, connectivity)
    top = int(instances.max())
    if top > FLOAT64_EXACT_IDS:
        # ndimage compares through float64, where such ids may coincide (and
        # uint64 ids from 2**63 turn negative as int64): carve on their ranks.
        labels = sequential_ids(instances).astype(np.int64, copy=False)
        top = int(labels.max())
    else:
        labels = instances.astype(np.int64, copy=False)
    # Background (and the outside) must never count as "a different instance":
    # it is 0 for the maximum and the largest value for the minimum.
    highest = ndi.maximum_filter(labels, footprint=footprint, mode="constant", cval=0)
    sentinel = top + 1  # kept small: ndimage passes cval through float64
    lowest = ndi.minimum_filter(
        np.where(labels == 0, sentinel, labels), footprint=footprint, mode="constant", cval=sentinel
    )
    touching = (labels != 0) & ((highest > labels) | (lowest < labels))
    separated = instances.copy()
    separated[touching] = 0
    return separated
