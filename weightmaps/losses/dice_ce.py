"""Dice plus cross-entropy, the cross-entropy weighted per pixel by a precomputed map.

MONAI's ``DiceCELoss`` (softmax or sigmoid Dice plus PyTorch's cross-entropy)
is where its users look for a per-pixel weight, and it has none: its
``weight`` is per class. :func:`weighted_dice_ce` is the same sum with the
cross-entropy of :func:`weighted_cross_entropy` (or, for one channel,
:func:`weighted_bce_with_logits`) reading the map; ``weight_dice=True``
weights the Dice sums by the map as well.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from weightmaps.losses._common import (
    check_logits,
    check_reduction,
    check_weight_dtype,
    float32_region,
    plain,
    shape_of,
)
from weightmaps.losses.weighted import weighted_bce_with_logits, weighted_cross_entropy

__all__ = ["WeightedDiceCELoss", "weighted_dice_ce"]


def _check_ce_reduction(reduction: str) -> None:
    if reduction == "none":
        raise ValueError("ce_reduction 'none' has no meaning in a sum with the Dice term")
    check_reduction(reduction)


def _class_ids(target: Tensor, logits: Tensor, check_inputs: bool) -> Tensor:
    """Class ids ``(B, *spatial)`` from ``(B, *spatial)`` or ``(B, 1, *spatial)``,
    integer or (as MONAI loads labels) float holding whole numbers."""
    expected = (logits.shape[0], *logits.shape[2:])
    if shape_of(target) == (expected[0], 1, *expected[1:]):
        target = target.squeeze(1)
    if shape_of(target) != expected:
        raise ValueError(
            f"target shape {shape_of(target)} does not match logits shape {shape_of(logits)}: "
            f"expected {expected} or {(expected[0], 1, *expected[1:])}"
        )
    if target.is_complex():
        raise TypeError(f"target must hold class ids, got dtype {target.dtype}")
    if target.is_floating_point():
        if check_inputs and target.numel() and not bool(torch.all(target == target.round())):
            raise ValueError(
                "a float target for several logit channels must hold whole class ids; "
                "got fractional values"
            )
        target = target.long()
    return target


def weighted_dice_ce(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    *,
    include_background: bool = True,
    lambda_dice: float = 1.0,
    lambda_ce: float = 1.0,
    weight_dice: bool = False,
    squared_pred: bool = False,
    batch: bool = False,
    smooth_nr: float = 1e-5,
    smooth_dr: float = 1e-5,
    ce_reduction: str = "mean",
    ignore_index: int = -100,
    check_inputs: bool = True,
) -> Tensor:
    """Soft Dice plus cross-entropy weighted per pixel, as MONAI's ``DiceCELoss``.

    ``lambda_dice * dice + lambda_ce * ce``. With several channels the Dice
    reads ``softmax(logits)`` against the one-hot target and the
    cross-entropy is :func:`weighted_cross_entropy`; with one channel,
    ``sigmoid(logits)`` and :func:`weighted_bce_with_logits`. Per image and
    channel (over the batch too with ``batch=True``), with ``w`` the map
    when ``weight_dice`` and 1 otherwise::

        dice = 1 - (2 sum(w p g) + smooth_nr) / (sum(w p) + sum(w g) + smooth_dr)

    (``p^2`` and ``g^2`` in the denominator with ``squared_pred``), then the
    mean over images and channels. Without a map, or with a map of ones,
    this is ``DiceCELoss(to_onehot_y=True, softmax=True)`` for several
    channels and ``DiceCELoss(sigmoid=True)`` for one, with the same
    ``include_background``, ``squared_pred``, ``batch`` and smoothing.

    Parameters
    ----------
    logits : Tensor
        ``(B, C, *spatial)`` raw scores.
    target : Tensor
        ``(B, 1, *spatial)`` (MONAI's labels) or ``(B, *spatial)``: class
        ids in ``[0, C)`` or ``ignore_index`` when ``C > 1``, integer or
        float holding whole numbers (MONAI loads labels as float32); a float
        (or bool) foreground in [0, 1] when ``C == 1``.
    weight : Tensor or None
        ``(B, 1, *spatial)`` or ``(B, *spatial)`` per-pixel weights (a U-Net
        border map, an edge map). None means all ones.
    include_background : bool
        Whether channel 0 counts in the Dice (always in the cross-entropy),
        as MONAI's option; ignored with one channel.
    lambda_dice, lambda_ce : float
        Factors of the two terms, ``>= 0``.
    weight_dice : bool
        Weight the Dice sums by the map too. False (default) keeps the Dice
        a region term and lets the map act on the cross-entropy, as the
        U-Net paper weights its loss.
    squared_pred, batch, smooth_nr, smooth_dr
        As in MONAI's ``DiceLoss``.
    ce_reduction : {"mean", "image_mean", "pixel_mean", "sum"}
        Reduction of the cross-entropy term (see :mod:`weightmaps.losses`).
    ignore_index : int
        Target value (several channels) whose pixels count in neither term.
    check_inputs : bool
        Check values as the cross-entropy does (weights finite and ``>= 0``,
        class ids in range, a float target whole or in [0, 1]).

    Returns
    -------
    Tensor
        float32 scalar.

    Examples
    --------
    >>> import torch
    >>> logits = torch.zeros(1, 2, 2, 2)  # p = 1/2 everywhere
    >>> target = torch.tensor([[[[0, 1], [1, 1]]]])  # (B, 1, H, W), as MONAI gives it
    >>> weight = torch.ones(1, 1, 2, 2)
    >>> # Dice of the background 1 - 1/3, of the foreground 1 - 3/5; then ln 2
    >>> round(weighted_dice_ce(logits, target, weight).item(), 4)
    1.2265
    >>> round(weighted_dice_ce(logits, target, weight, include_background=False).item(), 4)
    1.0931
    """
    logits, target, weight = plain(logits), plain(target), plain(weight)
    check_logits(logits)
    if logits.ndim < 3:
        raise ValueError(f"logits must be (B, C, *spatial), got shape {shape_of(logits)}")
    _check_ce_reduction(ce_reduction)
    for name, value in (("lambda_dice", lambda_dice), ("lambda_ce", lambda_ce)):
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{name} must be finite and >= 0, got {value}")
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if weight is not None:
        check_weight_dtype(weight)
    n_channels = logits.shape[1]
    if n_channels == 1:
        ce = weighted_bce_with_logits(
            logits, target, weight, reduction=ce_reduction, check_inputs=check_inputs
        )
        g = target.reshape(logits.shape).float()  # shape checked by the BCE
        valid = None
    else:
        ids = _class_ids(target, logits, check_inputs)
        ce = weighted_cross_entropy(
            logits,
            ids,
            weight,
            reduction=ce_reduction,
            ignore_index=ignore_index,
            check_inputs=check_inputs,
        )
        valid = (ids != ignore_index).unsqueeze(1)
        g = torch.zeros_like(logits, dtype=torch.float32)
        g.scatter_(1, ids.masked_fill(~valid.squeeze(1), 0).unsqueeze(1), 1.0)
    with float32_region(logits.device):
        x = logits.float()
        p = torch.sigmoid(x) if n_channels == 1 else torch.softmax(x, dim=1)
        w = None
        if weight_dice and weight is not None:
            w = weight.reshape(logits.shape[0], 1, *logits.shape[2:]).float()
        if valid is not None:
            w = valid.float() if w is None else w * valid
        if not include_background and n_channels > 1:
            p, g = p[:, 1:], g[:, 1:]
        pg, pp, gg = p * g, (p * p if squared_pred else p), (g * g if squared_pred else g)
        if w is not None:
            pg, pp, gg = pg * w, pp * w, gg * w
        axes = [0, *range(2, p.ndim)] if batch else list(range(2, p.ndim))
        intersection = pg.sum(dim=axes)
        denominator = pp.sum(dim=axes) + gg.sum(dim=axes)
        dice = 1.0 - (2.0 * intersection + smooth_nr) / (denominator + smooth_dr)
        dice = dice.mean() if dice.numel() else dice.sum()
        return lambda_dice * dice + lambda_ce * ce


class WeightedDiceCELoss(nn.Module):
    """Module form of :func:`weighted_dice_ce` (options fixed at construction).

    Examples
    --------
    >>> import torch
    >>> criterion = WeightedDiceCELoss(include_background=False)
    >>> logits, target = torch.randn(2, 3, 8, 8), torch.randint(0, 3, (2, 1, 8, 8))
    >>> criterion(logits, target, torch.ones(2, 1, 8, 8)).shape
    torch.Size([])
    """

    def __init__(
        self,
        *,
        include_background: bool = True,
        lambda_dice: float = 1.0,
        lambda_ce: float = 1.0,
        weight_dice: bool = False,
        squared_pred: bool = False,
        batch: bool = False,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
        ce_reduction: str = "mean",
        ignore_index: int = -100,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        self.options = {
            "include_background": include_background,
            "lambda_dice": lambda_dice,
            "lambda_ce": lambda_ce,
            "weight_dice": weight_dice,
            "squared_pred": squared_pred,
            "batch": batch,
            "smooth_nr": smooth_nr,
            "smooth_dr": smooth_dr,
            "ce_reduction": ce_reduction,
            "ignore_index": ignore_index,
            "check_inputs": check_inputs,
        }
        _check_ce_reduction(ce_reduction)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return weighted_dice_ce(logits, target, weight, **self.options)

    def extra_repr(self) -> str:
        return ", ".join(f"{name}={value!r}" for name, value in self.options.items())
