"""The F3Net / PraNet structure loss: edge-weighted BCE plus weighted IoU."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightmaps.losses._common import (
    binary_target,
    binary_weight,
    check_logits,
    check_values,
    float32_region,
    plain,
    safe_div,
    shape_of,
)

__all__ = ["StructureLoss", "structure_loss"]


def _edge_weight(mask: Tensor, kernel_size: int, alpha: float) -> Tensor:
    # count_include_pad=True (the default) divides by k**d everywhere, so
    # foreground touching the border is weighted up, as in the original.
    if mask.numel() == 0:  # the pooling refuses an empty image
        return torch.ones_like(mask)
    half = kernel_size // 2
    if mask.ndim == 4:
        box = F.avg_pool2d(mask, kernel_size=kernel_size, stride=1, padding=half)
    else:
        # avg_pool3d refuses volumes smaller than the kernel even when padded;
        # padding with zeros first gives the same k**3 mean.
        box = F.avg_pool3d(F.pad(mask, (half,) * 6), kernel_size=kernel_size, stride=1)
    return 1 + alpha * (box - mask).abs()


def structure_loss(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    legacy_reduce: bool = False,
    kernel_size: int = 31,
    alpha: float = 5.0,
    check_inputs: bool = True,
) -> Tensor:
    """F3Net/PraNet structure loss: edge-weighted BCE plus weighted IoU.

    Per image (and channel), with ``m`` the target, ``p = sigmoid(logits)``
    and ``weit`` the weight map::

        wbce = sum(weit * bce) / sum(weit)
        wiou = 1 - (sum(p*m*weit) + 1) / (sum((p + m)*weit) - sum(p*m*weit) + 1)
        loss = mean over the batch (and channels) of (wbce + wiou)

    Parameters
    ----------
    logits : Tensor
        ``(B, C, H, W)`` or ``(B, C, D, H, W)`` raw scores; C is 1 in F3Net
        and PraNet.
    target : Tensor
        Float mask in [0, 1] (soft allowed) or bool, the shape of ``logits``
        (without the channel when C is 1).
    weight : Tensor, optional
        Precomputed ``weit`` (e.g. from :func:`weightmaps.edge_weight_map`),
        the shape of ``logits`` with or without the channel of size 1. By
        default it is computed from the target at the logits' size:
        ``1 + alpha * |box_k(m) - m|`` with zero padding, the box mean always
        divided by ``k**d`` (``F.avg_pool2d`` / ``F.avg_pool3d`` with
        ``count_include_pad=True``). The map depends on the resolution at
        which it is computed.
    legacy_reduce : bool
        Reproduce the published code's numbers. It calls
        ``binary_cross_entropy_with_logits(..., reduce='none')``; PyTorch reads
        the legacy ``reduce`` argument as a truth value, so the BCE comes back
        already reduced to the plain mean over the whole batch, and
        ``sum(weit * bce) / sum(weit)`` gives that same scalar. With True,
        ``wbce`` is that unweighted batch mean; the IoU term is unchanged.
    kernel_size : int
        Odd window width k (31 in both papers). Only used when ``weight`` is
        None.
    alpha : float
        Weight of the edge term (5 in both papers). Only used when ``weight``
        is None.
    check_inputs : bool
        Check the values (one device synchronisation): ``weight`` finite and
        ``>= 0``, ``target`` in [0, 1]. False skips it; see "Input checks" in
        the module docstring.

    Returns
    -------
    Tensor
        float32 scalar. An image whose ``sum(weit)`` is 0 gets ``wbce = 0``
        (and ``wiou = 0``) instead of NaN; an empty batch gives 0 (with a
        graph) instead of the NaN of a mean over no images.

    Raises
    ------
    TypeError
        Non-float logits or an integer target.
    ValueError
        Shapes that do not fit, an even ``kernel_size``, or
        (``check_inputs``) a NaN, infinite or negative weight, or a target
        outside [0, 1].

    Examples
    --------
    >>> import torch
    >>> target = torch.zeros(2, 1, 8, 8)
    >>> target[:, :, 2:6, 2:6] = 1.0
    >>> logits = torch.zeros(2, 1, 8, 8)
    >>> logits[:, :, 3:5, 3:5] = 3.0  # finds the centre, misses the edge
    >>> round(structure_loss(logits, target).item(), 4)
    1.1038
    >>> round(structure_loss(logits, target, legacy_reduce=True).item(), 4)  # unweighted BCE
    1.1676
    """
    logits, target, weight = plain(logits), plain(target), plain(weight)
    check_logits(logits)
    if logits.ndim not in (4, 5):
        raise ValueError(
            "structure_loss needs (B, C, H, W) or (B, C, D, H, W) logits, "
            f"got shape {shape_of(logits)}"
        )
    if weight is None and (kernel_size < 1 or kernel_size % 2 == 0):
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    target = binary_target(target, logits)
    weight = binary_weight(weight, logits)
    with float32_region(logits.device):
        x = logits.float()
        if check_inputs:
            check_values(weight=None if weight is None else weight.float(), target=target)
        m = target.float()
        weit = _edge_weight(m, kernel_size, alpha) if weight is None else weight.float()
        dims = tuple(range(2, x.ndim))
        if legacy_reduce:
            # The mean over no pixels is NaN; their sum, 0, keeps the convention.
            legacy = "mean" if x.numel() else "sum"
            wbce = F.binary_cross_entropy_with_logits(x, m, reduction=legacy)
        else:
            bce = F.binary_cross_entropy_with_logits(x, m, reduction="none")
            wbce = safe_div((weit * bce).sum(dim=dims), weit.sum(dim=dims))
        p = torch.sigmoid(x)
        inter = (p * m * weit).sum(dim=dims)
        union = ((p + m) * weit).sum(dim=dims)
        wiou = 1 - (inter + 1) / (union - inter + 1)
        per_image = wbce + wiou
        # The mean over no images would be NaN; the sum is 0, with a graph.
        return per_image.mean() if per_image.numel() else per_image.sum()


class StructureLoss(nn.Module):
    """Module form of :func:`structure_loss`; the options, ``check_inputs``
    included, are fixed at construction.

    Examples
    --------
    >>> import torch
    >>> criterion = StructureLoss(legacy_reduce=True)
    >>> target = torch.zeros(1, 1, 8, 8)
    >>> target[..., :4] = 1.0
    >>> criterion(torch.zeros(1, 1, 8, 8), target).dtype
    torch.float32
    """

    def __init__(
        self,
        *,
        legacy_reduce: bool = False,
        kernel_size: int = 31,
        alpha: float = 5.0,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        if kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
        self.legacy_reduce = legacy_reduce
        self.kernel_size = kernel_size
        self.alpha = alpha
        self.check_inputs = check_inputs

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return structure_loss(
            logits,
            target,
            weight,
            legacy_reduce=self.legacy_reduce,
            kernel_size=self.kernel_size,
            alpha=self.alpha,
            check_inputs=self.check_inputs,
        )

    def extra_repr(self) -> str:
        return (
            f"legacy_reduce={self.legacy_reduce}, kernel_size={self.kernel_size}, "
            f"alpha={self.alpha}, check_inputs={self.check_inputs}"
        )
