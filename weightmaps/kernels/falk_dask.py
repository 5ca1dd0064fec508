"""The chunked U-Net weight of Falk et al. 2019 (Dask): each chunk with a halo.

Both of its distance terms are cut where they fall below ``1e-6`` of their
height (:func:`~weightmaps.kernels.border.border_cutoff` of ``sigma`` and of
``sigma_1``), so a pixel's weight is decided by the instances within the
larger cut-off; a block grown by ``ceil(cutoff / spacing) + 1`` pixels per
axis sees all of them, and can only see fewer instances beyond it, never
nearer ones (the argument of :mod:`weightmaps.kernels._dask_common`). The
chunked map equals :func:`weightmaps.kernels.falk.unet_weight_map_falk` of
the whole volume.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import dask.array as da
import numpy as np

from weightmaps._shared.arrays import steps_within
from weightmaps._shared.checks import check_nonempty, check_sigma, check_w0
from weightmaps.kernels._dask_common import as_dask, check_label_dtype, map_with_halo
from weightmaps.kernels.border import border_cutoff
from weightmaps.kernels.falk import unet_weight_map_falk as numpy_unet_weight_map_falk
from weightmaps.kernels.nearest import normalized_spacing

__all__ = ["falk_halo", "unet_weight_map_falk"]


def falk_halo(
    w0: float,
    sigma: float,
    sigma_1: float,
    v_bal: float,
    spacing: float | Sequence[float] | None = None,
    *,
    ndim: int = 2,
) -> tuple[int, ...]:
    """Pixels per axis a chunk needs around it for an exact Falk map.

    Examples
    --------
    >>> falk_halo(10.0, 5.0, 10.0, 0.1)
    (54, 54)
    >>> falk_halo(10.0, 5.0, 10.0, 1.0)  # no fall: the border term's reach
    (28, 28)
    """
    reach = 0.0
    if w0 > 0:
        reach = border_cutoff(sigma)
    if v_bal != 1.0:
        reach = max(reach, border_cutoff(sigma_1))
    if reach == 0.0:
        return (0,) * ndim
    return tuple(steps_within(reach, s) + 1 for s in normalized_spacing(spacing, ndim))


def _falk_block(
    labels: np.ndarray,
    classes: np.ndarray | None = None,
    ignore: np.ndarray | None = None,
    **kwargs: object,
) -> np.ndarray:
    return numpy_unet_weight_map_falk(labels, classes=classes, ignore_mask=ignore, **kwargs)


def unet_weight_map_falk(
    instances: da.Array,
    *,
    classes: da.Array | np.ndarray | None = None,
    w0: float = 10.0,
    sigma: float = 5.0,
    sigma_1: float = 10.0,
    v_bal: float = 0.1,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: da.Array | np.ndarray | None = None,
) -> da.Array:
    """Chunked :func:`weightmaps.kernels.falk.unet_weight_map_falk` (no class weights).

    Parameters as there; ``instances`` (ids unique across the volume),
    ``classes`` and ``ignore_mask`` are dask arrays of one shape.

    Returns
    -------
    dask array of float32
        Lazy, chunks of ``instances``.

    Examples
    --------
    >>> import numpy as np, dask.array as da
    >>> labels = np.array([[1, 0, 2] + [0] * 19])
    >>> w = unet_weight_map_falk(da.from_array(labels, chunks=5))
    >>> round(float(w[0, 1].compute()), 4), round(float(w[0, -1].compute()), 4)
    (10.2267, 0.248)
    """
    labels = as_dask(instances)
    check_nonempty(labels.shape, "instances")
    check_label_dtype(labels, "instances")
    check_w0(w0)
    check_sigma(sigma)
    check_sigma(sigma_1)
    if not (v_bal >= 0 and math.isfinite(v_bal)):
        raise ValueError(f"v_bal must be finite and >= 0, got {v_bal}")
    arrays = [labels]
    for name, extra in (("classes", classes), ("ignore_mask", ignore_mask)):
        if extra is None:
            continue
        extra = as_dask(extra)
        if extra.shape != labels.shape:
            raise ValueError(f"{name} shape {extra.shape} differs from instances {labels.shape}")
        arrays.append(extra.astype(bool) if name == "ignore_mask" else extra)
    spacing_ = normalized_spacing(spacing, labels.ndim)
    func = functools.partial(
        _falk_block if classes is not None else _no_classes_block,
        w0=w0,
        sigma=sigma,
        sigma_1=sigma_1,
        v_bal=v_bal,
        spacing=None if spacing is None else tuple(spacing_.tolist()),
    )
    depth = falk_halo(w0, sigma, sigma_1, v_bal, spacing_, ndim=labels.ndim)
    return map_with_halo(func, arrays, depth, np.float32)


def _no_classes_block(
    labels: np.ndarray, ignore: np.ndarray | None = None, **kwargs: object
) -> np.ndarray:
    return numpy_unet_weight_map_falk(labels, ignore_mask=ignore, **kwargs)
