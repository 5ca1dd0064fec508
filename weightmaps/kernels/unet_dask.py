"""The chunked U-Net border weight map (Dask): each chunk with a halo of the border's reach.

See :mod:`weightmaps.kernels._dask_common` for why a block grown by
:func:`halo_depth` gives the in-memory map exactly.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import dask
import dask.array as da
import numpy as np

from weightmaps._shared.arrays import steps_within
from weightmaps._shared.checks import check_nonempty, check_sigma, check_w0
from weightmaps.kernels._dask_common import as_dask, map_with_halo
from weightmaps.kernels.border import border_cutoff, explicit_class_weights
from weightmaps.kernels.class_balance import class_weights as balance_class_weights
from weightmaps.kernels.nearest import normalized_spacing
from weightmaps.kernels.unet import unet_weight_map as numpy_unet_weight_map

__all__ = ["border_halo", "halo_depth", "unet_weight_map"]


def halo_depth(
    sigma: float, spacing: float | Sequence[float] | None = None, *, ndim: int = 2
) -> tuple[int, ...]:
    """Halo, in pixels per axis, that makes a chunked U-Net map exact.

    ``ceil(border_cutoff(sigma) / spacing_axis) + 1``.

    Examples
    --------
    >>> halo_depth(5.0)
    (28, 28)
    >>> halo_depth(2.0, (4.0, 1.0, 1.0), ndim=3)
    (4, 12, 12)
    """
    spacing_ = normalized_spacing(spacing, ndim)
    cutoff = border_cutoff(sigma)
    return tuple(steps_within(cutoff, s) + 1 for s in spacing_)


def border_halo(
    w0: float, sigma: float, spacing: float | Sequence[float] | None = None, *, ndim: int = 2
) -> tuple[int, ...]:
    """The halo :func:`unet_weight_map` grows its blocks by: :func:`halo_depth`, or
    none at all without a border term (``w0 = 0``: no reach beyond the pixel itself).

    Examples
    --------
    >>> border_halo(10.0, 5.0), border_halo(0.0, 5.0)
    ((28, 28), (0, 0))
    """
    return halo_depth(sigma, spacing, ndim=ndim) if w0 > 0 else (0,) * ndim


def _unet_block(
    labels: np.ndarray, ignore: np.ndarray | None = None, **kwargs: object
) -> np.ndarray:
    return numpy_unet_weight_map(labels, ignore_mask=ignore, **kwargs)


def _balanced_foreground(labels: da.Array, ignore: da.Array | None) -> dict[int, float]:
    """The ``"balanced"`` class weights from global counts (one reduction pass)."""
    foreground = labels != 0
    if ignore is None:
        counted: object = labels.size
    else:
        foreground &= ~ignore
        counted = da.count_nonzero(~ignore)
    n_fg, n_counted = dask.compute(da.count_nonzero(foreground), counted)
    # As the in-memory kernel: inverse balance of background against foreground.
    return balance_class_weights({0: int(n_counted) - int(n_fg), 1: int(n_fg)}, "inverse")


def unet_weight_map(
    instances: da.Array,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | str | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: da.Array | np.ndarray | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.unet_weight_map`.

    Each chunk is computed by the in-memory kernel on the chunk grown by
    :func:`halo_depth` pixels per axis (not padded at the volume edge) and
    cropped, which gives the in-memory map exactly (see the module notes).
    A task reads its grown chunk itself when ``instances`` (and
    ``ignore_mask``) are read from storage with at most elementwise ops on
    top, so memory does not grow with the volume; otherwise the grown chunks
    come from ``map_overlap``. Chunks thinner than the halo are merged for the computation; the
    result has the chunks of ``instances``.

    Parameters
    ----------
    instances : dask array of int
        Instance labels, 0 = background, ids unique across the whole volume.
    w0, sigma, spacing
        As in :func:`weightmaps.unet_weight_map`.
    class_weights : mapping, "balanced" or None
        As in :func:`weightmaps.unet_weight_map`. ``"balanced"`` counts
        foreground and background over the whole volume: that count is
        computed now (one pass), the map stays lazy.
    ignore_mask : dask or numpy array of bool, optional
        Pixels that get weight 0; rechunked like ``instances``.

    Returns
    -------
    dask array of float32
        Lazy, chunks of ``instances``.

    Examples
    --------
    >>> import dask.array as da
    >>> w = unet_weight_map(da.from_array([[1, 0, 2]], chunks=1), w0=10, sigma=5)
    >>> w.chunks
    ((1,), (1, 1, 1))
    >>> round(float(w[0, 1].compute()), 4)
    10.2312
    """
    labels = as_dask(instances)
    check_nonempty(labels.shape, "instances")
    if labels.dtype != bool and not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(
            f"instances must be an integer label array, got dtype {labels.dtype}; "
            "turn a binary or semantic mask into instances with label_instances()"
        )
    check_w0(w0)
    check_sigma(sigma)
    spacing_ = normalized_spacing(spacing, labels.ndim)
    ignore = None
    if ignore_mask is not None:
        ignore = as_dask(ignore_mask).astype(bool)
        if ignore.shape != labels.shape:
            raise ValueError(
                f"ignore_mask shape {ignore.shape} differs from instances {labels.shape}"
            )
    weights: Mapping[int, float] | None
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(
                f"class_weights must be a mapping, 'balanced' or None, got {class_weights!r}"
            )
        weights = _balanced_foreground(labels, ignore)
    elif class_weights is not None:
        weights = explicit_class_weights(class_weights)
    else:
        weights = None
    depth = border_halo(w0, sigma, spacing_, ndim=labels.ndim)
    func = functools.partial(
        _unet_block,
        w0=w0,
        sigma=sigma,
        class_weights=weights,
        spacing=None if spacing is None else tuple(spacing_.tolist()),
    )
    arrays = [labels] if ignore is None else [labels, ignore]
    return map_with_halo(func, arrays, depth, np.float32)
