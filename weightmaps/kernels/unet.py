"""U-Net border weights (Ronneberger et al. 2015, eq. 2).

``w(x) = w_c(x) + w0 * exp(-(d1(x) + d2(x))^2 / (2 sigma^2))`` with ``d1``,
``d2`` the distances to the nearest and second-nearest distinct instance,
the border term on background pixels only.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from weightmaps._shared.arrays import ArrayOrTensor, is_torch_tensor
from weightmaps._shared.checks import check_sigma, check_w0
from weightmaps.kernels.balance import class_counts, paint_class_weights
from weightmaps.kernels.border import BORDER_TOLERANCE, border_cutoff, explicit_class_weights
from weightmaps.kernels.class_balance import class_weights
from weightmaps.kernels.nearest import add_border_term, as_label_array

__all__ = ["BORDER_TOLERANCE", "border_cutoff", "unet_weight_map"]


def _base_weights(
    foreground: np.ndarray,
    class_weights_: Mapping[int, float] | str | None,
    ignore_mask: np.ndarray | None,
) -> np.ndarray:
    """``w_c``: the per-pixel class weight before the border term."""
    if class_weights_ is None:
        return np.ones(foreground.shape, np.float32)
    binary = foreground.astype(np.uint8)
    if isinstance(class_weights_, str):
        if class_weights_ != "balanced":
            raise ValueError(
                f"class_weights must be a mapping, 'balanced' or None, got {class_weights_!r}"
            )
        counted = binary if ignore_mask is None else binary[~ignore_mask]
        weights = class_weights(class_counts(counted), "inverse")
    else:
        weights = explicit_class_weights(class_weights_)
    # A class absent from this mask needs no weight; fill so painting succeeds.
    weights = {0: 1.0, 1: 1.0, **weights}
    return paint_class_weights(binary, weights)


def unet_weight_map(
    instances: ArrayOrTensor,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | str | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: ArrayOrTensor | None = None,
) -> ArrayOrTensor:
    """U-Net border weight map from instance labels.

    Parameters
    ----------
    instances : ndarray or Tensor of int
        2-D or 3-D instance labels, 0 = background, ids need not be
        contiguous. Touching instances get no border weight between them
        (no background lies there); carve a gap first with
        :func:`separate_instances`. Binary or semantic masks must become
        instances first (:func:`label_instances`).
    w0 : float
        Height of the border term.
    sigma : float
        Width of the border term, in the units of ``spacing``.
    class_weights : mapping, "balanced" or None
        ``w_c``. None: 1 everywhere. ``{0: a, 1: b}``: ``a`` on background,
        ``b`` on foreground. ``"balanced"``: the ``inverse`` balance of
        foreground against background (ignored pixels not counted).
    spacing : float or sequence of float, optional
        Pixel size along each axis; distances and ``sigma`` are in its units.
    ignore_mask : ndarray or Tensor of bool, optional
        Pixels that get weight 0.

    Returns
    -------
    ndarray or Tensor of float32
        ``w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels
        with at least two instances, ``w_c`` elsewhere, 0 on ignored pixels.
        Equal to the per-instance reference within ``1e-6 * w0``: the term
        is dropped where ``d1 + d2`` exceeds :func:`border_cutoff`. A torch
        tensor in gives a float32 tensor on its device
        (:mod:`weightmaps.torch_kernels`).

    Examples
    --------
    >>> import numpy as np
    >>> labels = np.array([[1, 0, 2]])
    >>> w = unet_weight_map(labels, w0=10, sigma=5)
    >>> w[0, 0], round(float(w[0, 1]), 4)
    (np.float32(1.0), 10.2312)
    """
    if is_torch_tensor(instances):
        from weightmaps.kernels.unet_torch import unet_weight_map_torch

        return unet_weight_map_torch(
            instances,
            w0=w0,
            sigma=sigma,
            class_weights=class_weights,
            spacing=spacing,
            ignore_mask=ignore_mask,
        )
    check_w0(w0)
    check_sigma(sigma)
    labels = as_label_array(instances, keep_small=True)
    if ignore_mask is not None:
        ignore_mask = np.asarray(ignore_mask, dtype=bool)
        if ignore_mask.shape != labels.shape:
            raise ValueError(
                f"ignore_mask shape {ignore_mask.shape} differs from instances {labels.shape}"
            )
    weights = _base_weights(labels != 0, class_weights, ignore_mask)
    if w0 > 0:
        add_border_term(
            labels, weights, w0=w0, sigma=sigma, cutoff=border_cutoff(sigma), spacing=spacing
        )
    if ignore_mask is not None:
        weights[ignore_mask] = 0.0
    return weights
