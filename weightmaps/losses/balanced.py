"""Class-balanced binary cross-entropy (HED, DASNet) on logits."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightmaps.losses._common import (
    binary_target,
    binary_weight,
    check_logits,
    check_reduction,
    check_values,
    float32_region,
    plain,
    reduce_weighted,
)

__all__ = ["BalancedBCEWithLogitsLoss", "balanced_bce_with_logits"]


def balanced_bce_with_logits(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    reduction: str = "sum",
    check_inputs: bool = True,
) -> Tensor:
    """Class-balanced binary cross-entropy (HED, DASNet) on logits.

    Without ``weight``, per image ``beta = 1 - n_fg / N`` (``n_fg`` the sum
    of the target, ``N`` its number of elements) and::

        l = -(beta * t * log(p) + (1 - beta) * (1 - t) * log(1 - p))

    with ``p = sigmoid(logits)``; ``beta`` is a constant (no gradient). The
    effective weight of a pixel, used by the normalising reductions, is
    ``beta * t + (1 - beta) * (1 - t)``: the ``beta`` map of
    :func:`weightmaps.balance_weight_map` (mode ``"beta"``, per image) for a
    binary target. An image without foreground has ``beta = 1`` and so
    weighs nothing.

    With ``weight`` (e.g. a precomputed ``beta`` map, per image or per
    dataset), this is ``weighted_bce_with_logits`` with a default reduction
    of ``"sum"``. For a binary target and the per-image ``beta`` map, both
    forms give the same value.

    Parameters
    ----------
    logits : Tensor
        ``(B, 1, *spatial)`` or ``(B, *spatial)`` raw scores.
    target : Tensor
        Float in [0, 1] or bool, the shape of ``logits`` with or without the
        channel of size 1.
    weight : Tensor, optional
        Per-pixel weights, same shapes as ``target``. Default: the per-image
        ``beta`` balance computed on the fly.
    reduction : {"sum", "mean", "image_mean", "pixel_mean", "none"}
        Default ``"sum"``: the sum over all pixels of the batch, which is the
        value of the reference code this loss comes from. ``"pixel_mean"``
        divides that by the number of pixels (independent of image size);
        ``"mean"`` divides by ``sum(w)``. See the module docstring.
    check_inputs : bool
        Check the values (one device synchronisation): ``weight`` finite and
        ``>= 0``, ``target`` in [0, 1]. False skips it; see "Input checks" in
        the module docstring.

    Returns
    -------
    Tensor
        float32 scalar, or per-pixel for ``reduction="none"``. An empty
        batch gives 0 (with a graph; an empty tensor for ``"none"``).

    Raises
    ------
    TypeError
        Non-float logits or an integer target.
    ValueError
        Shapes that do not fit, an unknown reduction, or (``check_inputs``)
        a NaN, infinite or negative weight, or a target outside [0, 1].

    Examples
    --------
    >>> import torch
    >>> logits = torch.zeros(1, 1, 2, 2)  # -log(0.5) = ln 2 per pixel
    >>> target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # beta = 3/4
    >>> # 1 foreground pixel * 3/4 + 3 background pixels * 1/4 = 1.5 ln 2
    >>> round(balanced_bce_with_logits(logits, target).item(), 4)
    1.0397
    """
    logits, target, weight = plain(logits), plain(target), plain(weight)
    check_reduction(reduction)
    check_logits(logits)
    target = binary_target(target, logits)
    weight = binary_weight(weight, logits)
    with float32_region(logits.device):
        x = logits.float()
        if check_inputs:
            check_values(weight=None if weight is None else weight.float(), target=target)
        t = target.float()
        if weight is not None:
            w = weight.float()
            return reduce_weighted(
                w * F.binary_cross_entropy_with_logits(x, t, reduction="none"),
                w,
                x.numel(),
                reduction,
            )
        td = t.detach()
        # Not td[0].numel(): there is no image 0 in an empty batch.
        n_per_image = max(math.prod(td.shape[1:]), 1)
        beta = 1 - td.flatten(1).sum(dim=1) / n_per_image
        beta = beta.reshape(-1, *([1] * (x.ndim - 1)))
        # -log(p) and -log(1 - p) from PyTorch's stable logit form; the two
        # terms carry different factors, so one call with t cannot give them.
        neg_log_p = F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none")
        neg_log_q = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none")
        loss = beta * t * neg_log_p + (1 - beta) * (1 - t) * neg_log_q
        w = beta * td + (1 - beta) * (1 - td)
        return reduce_weighted(loss, w, x.numel(), reduction)


class BalancedBCEWithLogitsLoss(nn.Module):
    """Module form of :func:`balanced_bce_with_logits`; the options,
    ``check_inputs`` included, are fixed at construction.

    Examples
    --------
    >>> import torch
    >>> criterion = BalancedBCEWithLogitsLoss(reduction="pixel_mean")
    >>> target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    >>> round(criterion(torch.zeros(1, 1, 2, 2), target).item(), 4)  # 1.5 ln 2 / 4
    0.2599
    """

    def __init__(self, *, reduction: str = "sum", check_inputs: bool = True) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction
        self.check_inputs = check_inputs

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return balanced_bce_with_logits(
            logits, target, weight, reduction=self.reduction, check_inputs=self.check_inputs
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, check_inputs={self.check_inputs}"
