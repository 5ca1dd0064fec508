"""The chunked signed distance map (Dask): clipped to ``max_distance``, each chunk with a halo.

A distance is not local: the signed distance of a pixel may depend on a
class boundary anywhere in the volume. Clipped to ``[-R, R]`` it is: every
value with ``|phi| < R`` is decided by pixels within
:func:`~weightmaps.kernels.sdf.sdf_halo` pixels per axis, and a block grown
by that halo gives them exactly, while farther values are clipped either way
(see :func:`weightmaps.kernels.sdf.signed_distance_map`, ``block=True``).
So the chunked map needs ``max_distance`` and equals the in-memory
``signed_distance_map(..., max_distance=R)`` of the whole volume.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import dask.array as da
import numpy as np

from weightmaps._shared.checks import check_nonempty
from weightmaps.kernels._dask_common import as_dask, check_label_dtype, map_with_halo
from weightmaps.kernels.sdf import sdf_halo
from weightmaps.kernels.sdf import signed_distance_map as numpy_signed_distance_map

__all__ = ["signed_distance_map"]


def _class_block(
    labels: np.ndarray,
    *,
    c: int,
    spacing: tuple[float, ...],
    ignore_index: int | None,
    max_distance: float,
) -> np.ndarray:
    return numpy_signed_distance_map(
        labels,
        classes=(c,),
        spacing=spacing,
        ignore_index=ignore_index,
        max_distance=max_distance,
        block=True,
    )[0]


def signed_distance_map(
    labels: da.Array,
    *,
    classes: Sequence[int],
    max_distance: float,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    counts: Mapping[int, int] | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.signed_distance_map`, clipped to ``max_distance``.

    Parameters
    ----------
    labels : dask array of int or bool
        Class ids, or a 0/1 foreground.
    classes : sequence of int
        The classes of the whole volume, in order (a chunk cannot tell which
        are present elsewhere).
    max_distance : float
        Values are clipped to ``[-max_distance, max_distance]``; required.
    spacing, ignore_index
        As :func:`weightmaps.signed_distance_map`.
    counts : mapping, optional
        Pixels of each class in the whole volume (ignored pixels not
        counted). A class with none, or covering every pixel, gets 0
        everywhere, as in memory (the formula is undefined there); without
        ``counts`` they are counted now (one pass).

    Returns
    -------
    dask array of float32, shape (len(classes), *labels.shape)
        Lazy; one chunk per class along the first axis, the chunks of
        ``labels`` along the others. Equal to
        ``signed_distance_map(labels, classes=classes, max_distance=R, ...)``
        of the whole volume.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> labels = da.from_array(np.array([[0, 1, 1, 1, 0, 0, 0, 0]]), chunks=3)
    >>> signed_distance_map(labels, classes=[1], max_distance=2.0).compute()
    array([[[ 1.,  0., -1.,  0.,  1.,  2.,  2.,  2.]]], dtype=float32)
    """
    m = as_dask(labels)
    check_nonempty(m.shape, "labels")
    check_label_dtype(m, "labels")
    chosen = [int(c) for c in classes]
    if ignore_index is not None and ignore_index in chosen:
        raise ValueError(f"the ignore value {ignore_index} cannot be one of the classes")
    halo = sdf_halo(max_distance, spacing, m.ndim)  # checks max_distance and spacing
    steps = (
        None
        if spacing is None
        else tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, np.float64), (m.ndim,)))
    )
    if counts is None:
        found = da.compute(*[da.count_nonzero(m == c) for c in chosen])
        counts = {c: int(n) for c, n in zip(chosen, found, strict=True)}
    maps = []
    for c in chosen:
        held = int(counts.get(c, 0))
        if held == 0 or held == m.size:
            maps.append(da.zeros(m.shape, np.float32, chunks=m.chunks))
            continue
        func = functools.partial(
            _class_block, c=c, spacing=steps, ignore_index=ignore_index, max_distance=max_distance
        )
        maps.append(map_with_halo(func, [m], halo, np.float32))
    if not maps:
        return da.zeros((0, *m.shape), np.float32, chunks=((0,), *m.chunks))
    return da.stack(maps)
