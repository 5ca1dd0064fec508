"""How large the objects of a labelled mask are: their equivalent diameters.

The U-Net border term's ``sigma`` and the edge map's window ``k`` are lengths
that only make sense against the objects' size; ``weightmaps stats`` measures
it and suggests both, ``generate`` warns when the edge window is larger than the
objects (:mod:`weightmaps.kinds.edge`).
"""

from __future__ import annotations

import math

import numpy as np

from weightmaps._shared.counting import count_ids

__all__ = ["object_diameters"]


def object_diameters(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Equivalent diameter of every object, and whether it touches the border.

    Parameters
    ----------
    labels : ndarray of int
        2-D or 3-D labels, 0 = background, one id per object (ids need not be
        contiguous; any size, the ids are not used as indices).

    Returns
    -------
    diameters : ndarray of float64
        Per object (in the order of their ids), the diameter of the disk (2-D)
        or ball (3-D) of its area or volume, in pixels.
    on_border : ndarray of bool
        Objects touching the mask's border: cut by it, they measure small.

    Examples
    --------
    >>> labels = np.zeros((20, 20), np.int32); labels[5:15, 5:15] = 7; labels[0:2, 0:2] = 9
    >>> diameters, on_border = object_diameters(labels)
    >>> [round(float(d), 2) for d in diameters], on_border.tolist()
    ([11.28, 2.26], [False, True])
    """
    labels = np.asarray(labels)
    if labels.ndim not in (2, 3):
        raise ValueError(f"labels must be 2-D or 3-D, got shape {labels.shape}")
    if labels.size and np.issubdtype(labels.dtype, np.integer) and labels.min() >= 0:
        top = int(labels.max())
    else:
        top = None
    if top is not None and top <= labels.size:
        # Ids no larger than the mask (1..n, most masks): a count per id, no sort.
        counts = count_ids(labels, minlength=top + 1)
        ids = np.flatnonzero(counts)
        sizes = counts[ids]
    else:
        ids, sizes = np.unique(labels, return_counts=True)
    keep = ids != 0
    ids, sizes = ids[keep], sizes[keep].astype(np.float64)
    if labels.ndim == 2:
        diameters = 2.0 * np.sqrt(sizes / math.pi)
    else:
        diameters = 2.0 * np.cbrt(3.0 * sizes / (4.0 * math.pi))
    faces = [
        np.take(labels, index, axis=axis).ravel()
        for axis in range(labels.ndim)
        for index in (0, -1)
    ]
    on_border = np.isin(ids, np.unique(np.concatenate(faces)))
    return diameters, on_border
