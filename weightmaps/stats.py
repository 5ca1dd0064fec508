"""What is in a set of masks: class frequencies, instances, touching pairs, object sizes.

Pure computation on arrays; ``weightmaps stats`` reads the files. From the
objects' sizes it suggests the two lengths that must fit them: the U-Net
border term's ``sigma`` (:func:`~weightmaps.kinds.unet.suggested_sigma`, a
quarter of the median diameter) and the edge window ``k``
(:func:`~weightmaps.kinds.edge.suggested_edge_kernel`, about half of it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from scipy import ndimage

from weightmaps.kernels.class_balance import BALANCE_MODES, ClassCounts, class_weights
from weightmaps.kernels.objects import object_diameters
from weightmaps.kinds.edge import suggested_edge_kernel
from weightmaps.kinds.unet import suggested_sigma
from weightmaps.prepare import mask_instances
from weightmaps.settings import MapSettings

__all__ = ["MaskStats", "mask_stats", "object_summary", "summarize_stats", "touching_pairs"]


def touching_pairs(instances: np.ndarray, connectivity: int = 1) -> int:
    """Number of distinct pairs of instances that touch.

    Two instances touch when a pixel of one neighbours a pixel of the other
    (``connectivity`` 1 = faces only, up to ``ndim`` = also edges and corners).

    Examples
    --------
    >>> touching_pairs(np.array([[1, 2, 0, 3], [1, 2, 0, 3]]))
    1
    >>> touching_pairs(np.array([[1, 0], [0, 2]]), connectivity=2)
    1
    """
    labels = np.asarray(instances)
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    centre = np.array(structure.shape) // 2
    pairs = []
    for offset in np.argwhere(structure) - centre:
        # Half of the neighbourhood: each unordered neighbour pair once.
        nonzero = offset[offset != 0]
        if nonzero.size == 0 or nonzero[0] < 0:
            continue
        here = tuple(slice(max(0, -o), labels.shape[i] - max(0, o)) for i, o in enumerate(offset))
        there = tuple(slice(max(0, o), labels.shape[i] - max(0, -o)) for i, o in enumerate(offset))
        a, b = labels[here], labels[there]
        touching = (a != b) & (a != 0) & (b != 0)
        if touching.any():
            lo = np.minimum(a[touching], b[touching]).astype(np.int64)
            hi = np.maximum(a[touching], b[touching]).astype(np.int64)
            pairs.append(np.stack([lo, hi], axis=1))
    if not pairs:
        return 0
    return int(np.unique(np.concatenate(pairs), axis=0).shape[0])


@dataclasses.dataclass
class MaskStats:
    """Statistics of one mask.

    ``diameters`` holds the equivalent diameter of each instance in pixels,
    ``on_border`` whether it touches the mask's border
    (:func:`~weightmaps.kernels.objects.object_diameters`).
    """

    mask_type: str
    counts: ClassCounts
    instances: int
    touching_pairs: int
    diameters: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0))
    on_border: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros(0, bool))


def mask_stats(
    mask: np.ndarray, settings: MapSettings | None = None, *, lossy: bool = False
) -> MaskStats:
    """Class counts, instance count and touching pairs of one mask.

    Binary and instance masks count background (0) and foreground (1);
    semantic masks their class ids. Instances of binary and semantic masks
    are their connected components. ``lossy``: the mask was read from a JPEG,
    which ``auto`` reads as ``generate`` does (binary, its noise cut away).

    Examples
    --------
    >>> s = mask_stats(np.array([[1, 2, 0, 0], [1, 2, 0, 3]], np.uint16))
    >>> s.mask_type, s.instances, s.touching_pairs, s.counts.pixels
    ('instance', 3, 1, {0: 3, 1: 5})
    """
    settings = settings or MapSettings()
    mask_type, counts, instances = mask_instances(mask, settings, lossy=lossy)
    diameters, on_border = object_diameters(instances)
    return MaskStats(
        mask_type=mask_type,
        counts=counts,
        instances=int(diameters.size),
        touching_pairs=touching_pairs(instances),
        diameters=diameters,
        on_border=on_border,
    )


def object_summary(stats: list[MaskStats]) -> dict[str, Any] | None:
    """The objects' sizes over masks, and the ``sigma`` and ``k`` they suggest.

    Objects cut by a mask's border measure small: they are left out when any
    object lies inside. None without objects.

    Returns
    -------
    dict or None
        ``measured`` (objects measured), ``on_border_left_out``, the
        ``median_diameter`` and its 10th and 90th percentiles (pixels), and
        ``suggested``: ``sigma`` and ``edge_kernel`` for the median object.

    Examples
    --------
    >>> mask = np.zeros((64, 64), np.uint16); mask[10:30, 10:30] = 1; mask[35:55, 35:55] = 2
    >>> object_summary([mask_stats(mask)])["suggested"]
    {'sigma': 5.5, 'edge_kernel': 13}
    """
    if not stats:
        return None
    diameters = np.concatenate([s.diameters for s in stats])
    on_border = np.concatenate([s.on_border for s in stats])
    if diameters.size == 0:
        return None
    inside = diameters[~on_border]
    measured = inside if inside.size else diameters
    p10, median, p90 = (float(x) for x in np.percentile(measured, [10, 50, 90]))
    return {
        "measured": int(measured.size),
        "on_border_left_out": int(diameters.size - measured.size),
        "median_diameter": median,
        "p10_diameter": p10,
        "p90_diameter": p90,
        "suggested": {
            "sigma": suggested_sigma(median),
            "edge_kernel": suggested_edge_kernel(median),
        },
    }


def summarize_stats(stats: list[MaskStats]) -> dict[str, Any]:
    """Totals over masks, with the class weights each balance mode would give.

    Returns a JSON-ready dict: ``masks``, ``mask_types``, ``classes`` (per
    class: pixels, frequency, and the weight of every mode), ``instances``,
    ``touching_pairs`` and ``objects`` (:func:`object_summary`).
    """
    total = sum((s.counts for s in stats), ClassCounts({}, {}, 0))
    types: dict[str, int] = {}
    for s in stats:
        types[s.mask_type] = types.get(s.mask_type, 0) + 1
    weights = {mode: class_weights(total, mode) for mode in BALANCE_MODES}
    n = total.total
    classes = {
        str(c): {
            "pixels": pixels,
            "frequency": pixels / n if n else 0.0,
            **{f"{mode}_weight": weights[mode].get(c) for mode in BALANCE_MODES},
        }
        for c, pixels in sorted(total.pixels.items())
    }
    return {
        "masks": len(stats),
        "mask_types": types,
        "classes": classes,
        "instances": sum(s.instances for s in stats),
        "touching_pairs": sum(s.touching_pairs for s in stats),
        "objects": object_summary(stats),
    }
