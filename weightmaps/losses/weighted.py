"""Cross-entropy and binary cross-entropy weighted per pixel by a precomputed map."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightmaps.losses._common import (
    binary_target,
    binary_weight,
    check_logits,
    check_reduction,
    check_values,
    check_weight_dtype,
    float32_region,
    plain,
    reduce_weighted,
    shape_of,
)

__all__ = [
    "WeightedBCEWithLogitsLoss",
    "WeightedCrossEntropyLoss",
    "weighted_bce_with_logits",
    "weighted_cross_entropy",
]


def weighted_cross_entropy(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    *,
    reduction: str = "mean",
    ignore_index: int = -100,
    class_weight: Tensor | None = None,
    label_smoothing: float = 0.0,
    check_inputs: bool = True,
) -> Tensor:
    """Multi-class cross-entropy weighted per pixel by a precomputed map.

    Parameters
    ----------
    logits : Tensor
        ``(B, C, *spatial)`` raw scores, any floating dtype.
    target : Tensor
        ``(B, *spatial)`` or ``(B, 1, *spatial)`` (MONAI's channel-first
        labels) integer class ids in ``[0, C)`` or ``ignore_index``.
    weight : Tensor or None
        ``(B, *spatial)`` or ``(B, 1, *spatial)`` per-pixel weights, for
        example a U-Net border map. None means all ones. MONAI's
        ``MetaTensor`` works for any argument (read as a plain tensor).
    reduction : {"mean", "image_mean", "pixel_mean", "sum", "none"}
        See the module docstring for the formulas. ``"none"`` returns the
        ``(B, *spatial)`` map of ``weight * l``, where ``l`` (PyTorch's
        per-pixel loss) already carries ``class_weight``.
    ignore_index : int
        Target value whose pixels count nowhere: not in any sum of losses or
        weights, nor in the pixel count of ``"pixel_mean"``.
    class_weight : Tensor, optional
        ``(C,)`` per-class factors, as ``weight=`` of :func:`F.cross_entropy`.
        The total weight of a pixel is ``weight * class_weight[target]``, so
        with a map of ones ``"mean"`` equals
        ``F.cross_entropy(logits, target, weight=class_weight)``.
    label_smoothing : float
        As in :func:`F.cross_entropy`, whose per-pixel loss is used as is.
    check_inputs : bool
        Check the values (one device synchronisation): ``weight`` finite and
        ``>= 0`` on the counted pixels, target ids in ``[0, C)`` or
        ``ignore_index``, ``class_weight`` finite and ``>= 0``. False skips
        it; see "Input checks" in the module docstring.

    Returns
    -------
    Tensor
        float32 scalar, or ``(B, *spatial)`` for ``reduction="none"``. An
        empty batch gives 0 (with a graph; an empty tensor for ``"none"``).

    Raises
    ------
    TypeError
        Non-float logits, or a float target (probability targets are not
        supported).
    ValueError
        Shapes of logits, target, weight or class_weight that do not fit, an
        unknown reduction, or (``check_inputs``) a NaN, infinite or negative
        weight or class weight, or a target id out of range.

    Examples
    --------
    >>> import torch
    >>> logits = torch.zeros(1, 3, 2, 2)  # uniform: every pixel costs ln 3
    >>> target = torch.tensor([[[0, 1], [2, -100]]])  # one pixel ignored
    >>> weight = torch.tensor([[[1.0, 2.0], [3.0, 9.0]]])
    >>> round(weighted_cross_entropy(logits, target, weight).item(), 4)
    1.0986
    >>> round(weighted_cross_entropy(logits, target, weight, reduction="pixel_mean").item(), 4)
    2.1972
    """
    logits, target, weight = plain(logits), plain(target), plain(weight)
    check_reduction(reduction)
    check_logits(logits)
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex():
        raise TypeError(
            f"target for cross-entropy must hold integer class ids, got dtype {target.dtype}; "
            "for a single-channel float target use weighted_bce_with_logits (MONAI's "
            "LoadImaged gives float32 labels: convert them with "
            "EnsureTyped(keys='label', dtype=torch.int64))"
        )
    expected = (logits.shape[0], *logits.shape[2:])
    if shape_of(target) == (expected[0], 1, *expected[1:]):
        target = target.squeeze(1)  # (B, 1, *spatial), as MONAI's channel-first labels
    if shape_of(target) != expected:
        raise ValueError(
            f"target shape {shape_of(target)} does not match logits shape {shape_of(logits)}: "
            f"expected (B, *spatial) = {expected} or {(expected[0], 1, *expected[1:])}"
        )
    if weight is not None:
        check_weight_dtype(weight)
        if shape_of(weight) == (expected[0], 1, *expected[1:]):
            weight = weight.squeeze(1)
        elif shape_of(weight) != expected:
            raise ValueError(
                f"weight shape {shape_of(weight)} does not match target shape {expected}: "
                f"expected {expected} or {(expected[0], 1, *expected[1:])}"
            )
    if class_weight is not None:
        n_classes = logits.shape[1]
        if not isinstance(class_weight, Tensor):
            class_weight = torch.as_tensor(class_weight)
        if shape_of(class_weight) != (n_classes,):
            raise ValueError(
                f"class_weight shape {shape_of(class_weight)} does not match the {n_classes} "
                f"classes of logits shape {shape_of(logits)}"
            )

    with float32_region(logits.device):
        x = logits.float()
        t = target.long()
        cw = None if class_weight is None else class_weight.to(x.device, torch.float32)
        valid = t != ignore_index
        zero = torch.zeros((), dtype=torch.float32, device=x.device)
        # where(), not a product: a NaN or inf weight on an ignored pixel must
        # not leak into the sums.
        pixel_w = valid.float() if weight is None else torch.where(valid, weight.float(), zero)
        counted_t = t.masked_fill(~valid, 0)
        if check_inputs:  # before F.cross_entropy, which asserts on a GPU
            check_values(
                weight=None if weight is None else pixel_w,
                class_ids=counted_t,
                n_classes=x.shape[1],
                ignore_index=ignore_index,
                class_weight=cw,
            )
        # Carries class_weight and label smoothing exactly as PyTorch defines
        # them, and is 0 on ignored pixels.
        loss = F.cross_entropy(
            x,
            t,
            weight=cw,
            ignore_index=ignore_index,
            reduction="none",
            label_smoothing=label_smoothing,
        )
        wl = pixel_w * loss
        # PyTorch's mean divides by sum(class_weight[target]); multiplying the
        # map in keeps that denominator for a map of ones.
        total_w = pixel_w if cw is None else pixel_w * cw[counted_t]
        return reduce_weighted(wl, total_w, valid.sum(), reduction)


def weighted_bce_with_logits(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None,
    *,
    reduction: str = "mean",
    pos_weight: Tensor | float | None = None,
    check_inputs: bool = True,
) -> Tensor:
    """Binary cross-entropy on logits, weighted per pixel by a precomputed map.

    Parameters
    ----------
    logits : Tensor
        ``(B, 1, *spatial)`` or ``(B, *spatial)`` raw scores (any shape
        ``(B, ...)`` works when target and weight have the same shape).
    target : Tensor
        Float in [0, 1] (soft targets allowed) or bool; the shape of
        ``logits``, with or without the channel of size 1.
    weight : Tensor or None
        Per-pixel weights, the shape of ``logits`` with or without the
        channel of size 1. None means all ones.
    reduction : {"mean", "image_mean", "pixel_mean", "sum", "none"}
        See the module docstring. ``"none"`` returns ``w * l`` in the shape
        of ``logits``.
    pos_weight : Tensor or float, optional
        Factor on the positive term, broadcast as in
        :func:`F.binary_cross_entropy_with_logits`. It is part of ``l``, not
        of ``w``: with a map of ones ``"mean"`` equals PyTorch's mean.
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
    >>> logits = torch.zeros(1, 1, 2, 2)  # p = 0.5: every pixel costs ln 2
    >>> target = torch.tensor([[[1.0, 0.0], [0.0, 0.3]]])
    >>> weight = torch.tensor([[[1.0, 2.0], [3.0, 4.0]]])
    >>> round(weighted_bce_with_logits(logits, target, weight).item(), 4)
    0.6931
    >>> round(weighted_bce_with_logits(logits, target, weight, reduction="sum").item(), 4)
    6.9315
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
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32, device=x.device)
        loss = F.binary_cross_entropy_with_logits(
            x, target.float(), pos_weight=pos_weight, reduction="none"
        )
        w = torch.ones_like(loss) if weight is None else weight.float().expand_as(loss)
        return reduce_weighted(w * loss, w, loss.numel(), reduction)


class WeightedCrossEntropyLoss(nn.Module):
    """Module form of :func:`weighted_cross_entropy`.

    The keyword options, ``check_inputs`` included, are fixed at
    construction; ``class_weight`` is a buffer, so it follows ``.to(device)``.

    Examples
    --------
    >>> import torch
    >>> criterion = WeightedCrossEntropyLoss(ignore_index=255)
    >>> logits = torch.zeros(1, 2, 1, 2)
    >>> target = torch.tensor([[[1, 255]]])
    >>> round(criterion(logits, target, torch.ones(1, 1, 2)).item(), 4)
    0.6931
    """

    class_weight: Tensor | None

    def __init__(
        self,
        *,
        reduction: str = "mean",
        ignore_index: int = -100,
        class_weight: Tensor | None = None,
        label_smoothing: float = 0.0,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction
        self.ignore_index = ignore_index
        self.label_smoothing = label_smoothing
        self.check_inputs = check_inputs
        cw = None if class_weight is None else torch.as_tensor(class_weight, dtype=torch.float32)
        self.register_buffer("class_weight", cw)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        return weighted_cross_entropy(
            logits,
            target,
            weight,
            reduction=self.reduction,
            ignore_index=self.ignore_index,
            class_weight=self.class_weight,
            label_smoothing=self.label_smoothing,
            check_inputs=self.check_inputs,
        )

    def extra_repr(self) -> str:
        return (
            f"reduction={self.reduction!r}, ignore_index={self.ignore_index}, "
            f"label_smoothing={self.label_smoothing}, check_inputs={self.check_inputs}"
        )


class WeightedBCEWithLogitsLoss(nn.Module):
    """Module form of :func:`weighted_bce_with_logits`.

    The keyword options, ``check_inputs`` included, are fixed at
    construction; ``pos_weight`` is a buffer.

    Examples
    --------
    >>> import torch
    >>> criterion = WeightedBCEWithLogitsLoss(reduction="image_mean")
    >>> logits, target = torch.zeros(2, 1, 3, 3), torch.ones(2, 1, 3, 3)
    >>> round(criterion(logits, target, torch.rand(2, 3, 3) + 0.5).item(), 4)
    0.6931
    """

    pos_weight: Tensor | None

    def __init__(
        self,
        *,
        reduction: str = "mean",
        pos_weight: Tensor | float | None = None,
        check_inputs: bool = True,
    ) -> None:
        super().__init__()
        check_reduction(reduction)
        self.reduction = reduction
        self.check_inputs = check_inputs
        pw = None if pos_weight is None else torch.as_tensor(pos_weight, dtype=torch.float32)
        self.register_buffer("pos_weight", pw)

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None) -> Tensor:
        return weighted_bce_with_logits(
            logits,
            target,
            weight,
            reduction=self.reduction,
            pos_weight=self.pos_weight,
            check_inputs=self.check_inputs,
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, check_inputs={self.check_inputs}"
