"""How many connected regions each value of a label mask forms.

An instance mask has one region per id; a semantic mask's classes often
split into several. :func:`weightmaps.masktype.infer_mask_type` tells them
apart by this count. Regions are joined with full connectivity (faces,
edges and corners) and only between pixels of equal value, so two touching
instances stay two regions.
"""

from __future__ import annotations

import numpy as np

from weightmaps._shared.threads import map_parts, run_parts, split_range, threads_for

__all__ = ["regions_per_value"]


def regions_per_value(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Every nonzero value of ``labels`` and the number of regions it forms.

    Parameters
    ----------
    labels : ndarray of int or bool
        1-D to 3-D, 0 = background.

    Returns
    -------
    values : ndarray
        The distinct nonzero values, sorted.
    regions : ndarray of int64
        For each value, its connected regions (full connectivity, equal
        values only).

    Examples
    --------
    >>> labels = np.array([[1, 0, 1], [0, 0, 0], [2, 2, 0]])
    >>> values, regions = regions_per_value(labels)
    >>> values.tolist(), regions.tolist()
    ([1, 2], [2, 1])
    """
    labels = np.asarray(labels)
    if labels.dtype == bool:
        labels = labels.view(np.uint8)
    if not 1 <= labels.ndim <= 3:
        raise ValueError(f"labels must be 1-D to 3-D, got shape {labels.shape}")
    if labels.size == 0:
        return np.zeros(0, labels.dtype), np.zeros(0, np.int64)
    from weightmaps.kernels import _regions_nb as kernels

    # Axis 0 stays axis 0, the one split among threads: (n,) -> (n, 1, 1)
    # and (h, w) -> (h, 1, w) keep every neighbour a neighbour.
    view = labels.reshape((labels.shape[0],) + (1,) * (3 - labels.ndim) + labels.shape[1:])
    view = np.ascontiguousarray(view)
    parent = np.empty(view.size, np.int32 if view.size < 2**31 else np.int64)
    slabs = split_range(view.shape[0], threads_for(view.size))
    run_parts(lambda slab: kernels.join_planes(view, parent, *slab, slab[0]), slabs, len(slabs))
    for start, _ in slabs[1:]:
        kernels.join_planes(view, parent, start, start + 1, start - 1)
    flat = view.ravel()
    plane = flat.size // view.shape[0]

    def root_values(z0: int, z1: int) -> np.ndarray:
        pixels = np.flatnonzero(flat[z0 * plane : z1 * plane])
        pixels += z0 * plane
        roots = pixels[parent[pixels] == pixels]  # one pixel per region
        return flat[roots]

    # The same slabs, each on its thread again.
    found = map_parts(root_values, view.shape[0], pixels=view.size)
    values, regions = np.unique(np.concatenate(found), return_counts=True)
    return values, regions.astype(np.int64)
