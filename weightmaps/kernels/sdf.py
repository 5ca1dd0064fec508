"""Signed distance maps for the boundary loss (Kervadec et al., MIDL 2019 / MedIA 2021).

For every class ``c``, with ``S = (labels == c)`` and ``EDT(X)`` the distance
from each True pixel of ``X`` to the nearest False pixel
(``scipy.ndimage.distance_transform_edt(X, sampling=spacing)``)::

    phi_c = EDT(~S) * ~S  -  (EDT(S) - 1) * S

Positive outside the class (the distance to it), ``<= 0`` inside (0 on the
inner contour). This is ``one_hot2dist`` of the authors' code; the ``- 1``
is in the units of ``spacing`` as there. The boundary loss reads these maps
(:func:`weightmaps.distance_losses.boundary_loss`).

Where the formula is undefined the map is 0: a class absent from the mask
(no contour to be near), and a class that fills the whole mask (``EDT(S)``
has no False pixel to measure to; scipy returns distances to a point outside
the array there, an artefact of its algorithm, not a distance).

``max_distance=R`` gives ``clip(phi, -R, R)``. The values are then exact
within reach of a block grown by :func:`sdf_halo` pixels, so a chunked
volume can be done block by block (``block=True``, see
:func:`signed_distance_map`).

MONAI's ``HausdorffDTLoss`` reads a different map, ``EDT(S) + EDT(~S)``
(:func:`boundary_distance_map`): it equals ``|phi|`` outside and
``|phi| + 1`` inside (unit spacing).

The torch twin is :mod:`weightmaps.sdf_torch`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import ndimage as ndi

from weightmaps._shared.arrays import steps_within

__all__ = ["boundary_distance_map", "class_ids", "sdf_halo", "signed_distance_map"]


def _check_labels(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.dtype == bool:
        return labels.astype(np.uint8)
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"labels must be an integer or boolean array of class ids, got dtype {labels.dtype}"
        )
    if labels.ndim == 0 or labels.size == 0:
        raise ValueError(f"labels must be a non-empty array, got shape {labels.shape}")
    return labels


def _check_spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,))
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return tuple(float(v) for v in values)


def _check_max_distance(max_distance: float | None, block: bool) -> None:
    if max_distance is not None and not (max_distance > 0 and math.isfinite(max_distance)):
        raise ValueError(f"max_distance must be finite and > 0, got {max_distance}")
    if block and max_distance is None:
        raise ValueError("block=True needs max_distance (the halo is set by it)")


def class_ids(
    labels: np.ndarray,
    classes: Sequence[int] | None = None,
    ignore_index: int | None = None,
) -> list[int]:
    """The classes a map is computed for: ``classes``, or the ids present but 0.

    Examples
    --------
    >>> class_ids(np.array([[0, 3, 255], [1, 3, 0]]), ignore_index=255)
    [1, 3]
    >>> class_ids(np.array([[0, 1]]), classes=(1, 2))
    [1, 2]
    """
    if classes is not None:
        chosen = [int(c) for c in classes]
        if ignore_index is not None and ignore_index in chosen:
            raise ValueError(f"the ignore value {ignore_index} cannot be one of the classes")
        return chosen
    present = np.unique(np.asarray(labels))
    return [int(c) for c in present if c != 0 and (ignore_index is None or c != ignore_index)]


def sdf_halo(
    max_distance: float, spacing: float | Sequence[float] | None = None, ndim: int = 2
) -> tuple[int, ...]:
    """Pixels to grow a block by, per axis, so that its ``max_distance`` map is exact.

    A value must be exact where ``|phi| < max_distance``: outside the class
    that is a distance below ``max_distance``, inside it ``EDT(S)`` below
    ``max_distance + 1``. Every pixel that near lies less than
    ``(max_distance + 1) / spacing`` pixels away along each axis, so
    ``ceil((max_distance + 1) / spacing) - 1`` pixels suffice: ``R`` for a
    whole ``R`` and unit spacing. Farther values are clipped either way (a
    block's distances are never shorter than the whole mask's).

    Examples
    --------
    >>> sdf_halo(10.0)
    (10, 10)
    >>> sdf_halo(10.0, spacing=(4.0, 1.0, 0.5), ndim=3)
    (2, 10, 21)
    """
    _check_max_distance(max_distance, False)
    return tuple(
        max(steps_within(max_distance + 1.0, s) - 1, 0) for s in _check_spacing(spacing, ndim)
    )


def _grown_box(inside: np.ndarray) -> tuple[slice, ...]:
    """The bounding box of ``inside`` grown by one pixel, cut by the array's edge."""
    box = ndi.find_objects(inside.view(np.uint8))[0]
    return tuple(
        slice(max(s.start - 1, 0), min(s.stop + 1, n))
        for s, n in zip(box, inside.shape, strict=True)
    )


def _across_boundary(inside: np.ndarray, sampling: tuple[float, ...]) -> np.ndarray | None:
    """float64 distance to the nearest pixel on the other side of the class's
    boundary: to the class outside it, ``EDT(S)`` inside it. None when the
    class is absent or fills the whole array.

    The inside transform runs on the class's grown box only. Exact: for a
    pixel of the box, a pixel outside the grown box is never nearer than its
    projection onto the grown box's rim, which is outside the class (the rim
    holds none of it); where the box meets the array's edge the array ends
    there too.
    """
    if not inside.any() or inside.all():
        return None
    distance = ndi.distance_transform_edt(~inside, sampling=sampling)
    grown = _grown_box(inside)
    part = inside[grown]
    within = ndi.distance_transform_edt(part, sampling=sampling)
    distance[grown][part] = within[part]
    return distance


def signed_distance_map(
    labels: np.ndarray,
    *,
    classes: Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    max_distance: float | None = None,
    block: bool = False,
) -> np.ndarray:
    """Signed distance map of every class: the map the boundary loss reads.

    Parameters
    ----------
    labels : ndarray of int or bool
        Class ids (semantic mask), or a 0/1 foreground (binary and instance
        masks: pass ``labels != 0`` and ``classes=(1,)``). Any dimension.
    classes : sequence of int, optional
        Classes to compute, in this order. Default: the ids present but 0 and
        ``ignore_index``, sorted.
    spacing : float or sequence of float, optional
        Pixel size along each axis; distances are in its units.
    ignore_index : int, optional
        Pixels of this value belong to no class (so they count as outside
        every class) and get 0 in every map.
    max_distance : float, optional
        Clip the values to ``[-max_distance, max_distance]``. The result is
        exactly ``clip(phi, -R, R)``.
    block : bool
        ``labels`` is a block of a larger mask, grown on every side by
        :func:`sdf_halo` pixels (or cut by the mask's edge); needs
        ``max_distance``. A class absent from the block is farther than
        ``max_distance`` from every pixel of the block's core and gets
        ``+max_distance`` there (not 0), one filling it ``-max_distance``;
        list the classes of the whole mask in ``classes``. The core of the
        result then equals the whole mask's clipped map.

    Returns
    -------
    ndarray of float32, shape (len(classes), *labels.shape)
        ``phi_c = EDT(~S) * ~S - (EDT(S) - 1) * S`` per class, 0 for a class
        absent from ``labels`` or filling it (see the module notes), 0 on
        ignored pixels. Equal to the formula computed in float64 with
        ``scipy.ndimage.distance_transform_edt``, rounded to float32.

    Examples
    --------
    >>> import numpy as np
    >>> phi = signed_distance_map(np.array([[0, 1, 1, 1, 0, 0]]))
    >>> phi
    array([[[ 1.,  0., -1.,  0.,  1.,  2.]]], dtype=float32)
    """
    labels = _check_labels(labels)
    sampling = _check_spacing(spacing, labels.ndim)
    _check_max_distance(max_distance, block)
    chosen = class_ids(labels, classes, ignore_index)
    out = np.zeros((len(chosen), *labels.shape), np.float32)
    for k, c in enumerate(chosen):
        inside = labels == c
        phi = _across_boundary(inside, sampling)
        if phi is None:
            if block and inside.any():
                out[k] = -max_distance
            elif block:
                out[k] = max_distance
            continue
        np.subtract(1.0, phi, out=phi, where=inside)
        if max_distance is not None:
            np.clip(phi, -max_distance, max_distance, out=phi)
        out[k] = phi
    if ignore_index is not None:
        out[:, labels == ignore_index] = 0.0
    return out


def boundary_distance_map(
    labels: np.ndarray,
    *,
    classes: Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
) -> np.ndarray:
    """``EDT(S) + EDT(~S)`` per class: the target distance of MONAI's ``HausdorffDTLoss``.

    The distance of every pixel to the nearest pixel on the other side of the
    class's boundary, positive on both sides. 0 for a class absent from the
    mask or filling it, as MONAI's ``distance_field`` does; 0 on ignored
    pixels. Parameters as :func:`signed_distance_map`.

    Returns
    -------
    ndarray of float32, shape (len(classes), *labels.shape)

    Examples
    --------
    >>> import numpy as np
    >>> boundary_distance_map(np.array([[0, 1, 1, 1, 0, 0]]))
    array([[[1., 1., 2., 1., 1., 2.]]], dtype=float32)
    """
    labels = _check_labels(labels)
    sampling = _check_spacing(spacing, labels.ndim)
    chosen = class_ids(labels, classes, ignore_index)
    out = np.zeros((len(chosen), *labels.shape), np.float32)
    for k, c in enumerate(chosen):
        distance = _across_boundary(labels == c, sampling)
        if distance is not None:
            out[k] = distance
    if ignore_index is not None:
        out[:, labels == ignore_index] = 0.0
    return out
