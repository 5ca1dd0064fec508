"""Deep supervision: one loss over outputs at several resolutions, weighted per level."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightmaps.losses._common import LossFn, plain, shape_of

__all__ = ["DS_MODES", "DeepSupervisionLoss", "deep_supervision_loss", "f3net_factors"]


DS_MODES = ("upsample", "downsample")


def f3net_factors(n: int) -> list[float]:
    """Level factors ``1, 1/2, 1/4, ...`` of F3Net's deep supervision.

    Parameters
    ----------
    n : int
        Number of outputs, finest first.

    Returns
    -------
    list of float

    Examples
    --------
    >>> f3net_factors(4)
    [1.0, 0.5, 0.25, 0.125]
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    return [0.5**i for i in range(n)]


def _check_factors(factors: Sequence[float]) -> tuple[float, ...]:
    out = tuple(float(f) for f in factors)
    if not out:
        raise ValueError("factors must not be empty")
    if not all(math.isfinite(f) for f in out):
        raise ValueError(f"factors must be finite numbers, got {out}")
    return out


def _resize_nearest(t: Tensor, size: tuple[int, ...]) -> Tensor:
    """Nearest-neighbour resize of the trailing ``len(size)`` dimensions."""
    n = len(size)
    lead = t.shape[:-n]
    if tuple(t.shape[-n:]) == size:
        return t
    # interpolate only takes floats; nearest copies values, and float64
    # holds every int32/int64 label exactly (float32 would not past 2**24).
    work = torch.float64 if t.dtype in (torch.int32, torch.int64) else torch.float32
    # The channels spelled out: reshape cannot infer -1 for an empty batch.
    flat = t.reshape(t.shape[0], math.prod(t.shape[1:-n]), *t.shape[-n:]).to(work)
    out = F.interpolate(flat, size=size, mode="nearest")
    return out.reshape(*lead, *size).to(t.dtype)


def _resize_area(w: Tensor, size: tuple[int, ...]) -> Tensor:
    """Area-average resize of the trailing ``len(size)`` dimensions."""
    n = len(size)
    if tuple(w.shape[-n:]) == size:
        return w
    lead = w.shape[:-n]
    flat = w.reshape(w.shape[0], math.prod(w.shape[1:-n]), *w.shape[-n:]).float()
    return F.interpolate(flat, size=size, mode="area").reshape(*lead, *size)


def deep_supervision_loss(
    outputs: Sequence[Tensor],
    target: Tensor,
    weight: Tensor | None,
    loss_fn: LossFn,
    factors: Sequence[float] | None = None,
    mode: str = "upsample",
) -> Tensor:
    """Weighted sum of one loss over outputs at several resolutions.

    ``sum_i factors[i] * loss_fn(output_i, target_i, weight_i)``.

    Parameters
    ----------
    outputs : sequence of Tensor
        Channel-first logits ``(B, C, H, W)`` or ``(B, C, D, H, W)``, one per
        level, of any spatial sizes.
    target : Tensor
        Target at full resolution, as ``loss_fn`` expects it (its trailing
        dimensions are the spatial ones).
    weight : Tensor or None
        Weight map at full resolution, or None. Passed on as the third
        argument of ``loss_fn`` (None included), so a loss of two arguments
        needs a wrapper such as ``lambda x, t, w: bce(x, t)``.
    loss_fn : callable
        ``loss_fn(logits, target, weight) -> scalar``, e.g.
        :func:`structure_loss` or a :class:`WeightedCrossEntropyLoss`. It
        makes the value checks, at every level: give it
        ``check_inputs=False`` (a module built so, or ``functools.partial``)
        to skip them. This wrapper has no ``check_inputs`` of its own: what
        a valid weight or target is depends on ``loss_fn``.
    factors : sequence of float, optional
        One factor per output. F3Net uses ``1, 1/2, 1/4, 1/8, 1/16``
        (:func:`f3net_factors`); PraNet sums with equal factors, the default.
    mode : {"upsample", "downsample"}
        ``"upsample"`` (PraNet, F3Net): each output is interpolated to the
        target's size (bilinear in 2-D, trilinear in 3-D,
        ``align_corners=False``, in float32). ``"downsample"``: the target is
        brought to each output's size by nearest neighbour (PyTorch's
        ``"nearest"``; soft float targets too) and the weight map by area
        averaging. A ``weight`` of None stays None, so :func:`structure_loss`
        then computes its map from the resized target, with the same kernel
        at every level.

    Returns
    -------
    Tensor
        Scalar. An empty batch gives what ``loss_fn`` gives for one at every
        level (0 for the losses of this module).

    Examples
    --------
    >>> import torch
    >>> from weightmaps.losses import structure_loss
    >>> target = torch.zeros(1, 1, 16, 16)
    >>> target[..., 4:12, 4:12] = 1.0
    >>> outputs = [torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8)]
    >>> loss = deep_supervision_loss(outputs, target, None, structure_loss, f3net_factors(2))
    >>> round(loss.item(), 4)
    1.9834
    """
    outputs = [plain(out) for out in outputs]
    target, weight = plain(target), plain(weight)
    if not outputs:
        raise ValueError("outputs must hold at least one tensor")
    factors = (1.0,) * len(outputs) if factors is None else _check_factors(factors)
    if len(factors) != len(outputs):
        raise ValueError(f"got {len(outputs)} outputs but {len(factors)} factors")
    if mode not in DS_MODES:
        raise ValueError(f"mode must be one of {DS_MODES}, got {mode!r}")
    total: Tensor | None = None
    for i, (out, factor) in enumerate(zip(outputs, factors, strict=True)):
        if not isinstance(out, Tensor) or out.ndim not in (4, 5):
            shape = shape_of(out) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                "deep supervision needs channel-first outputs (B, C, H, W) or "
                f"(B, C, D, H, W); output {i} has shape {shape}"
            )
        size = tuple(out.shape[2:])
        n = len(size)
        if target.ndim < n + 1:
            raise ValueError(
                f"target shape {shape_of(target)} has fewer than the {n} spatial dimensions "
                f"of output {i} (shape {shape_of(out)}) plus a batch dimension"
            )
        if mode == "upsample":
            full = tuple(target.shape[-n:])
            if size != full:
                interp = "bilinear" if n == 2 else "trilinear"
                out = F.interpolate(out.float(), size=full, mode=interp, align_corners=False)
            level_target, level_weight = target, weight
        else:
            level_target = _resize_nearest(target, size)
            level_weight = None if weight is None else _resize_area(weight, size)
        term = factor * loss_fn(out, level_target, level_weight)
        total = term if total is None else total + term
    assert total is not None
    return total


class DeepSupervisionLoss(nn.Module):
    """Module form of :func:`deep_supervision_loss`.

    Parameters
    ----------
    loss : callable
        ``loss(logits, target, weight) -> scalar``; a module is registered
        as a submodule. It makes the value checks (build it with
        ``check_inputs=False`` to skip them), see :func:`deep_supervision_loss`.
    factors : sequence of float, optional
        One per output; default equal factors of 1.
    mode : {"upsample", "downsample"}
        See :func:`deep_supervision_loss`.

    Examples
    --------
    >>> import torch
    >>> from weightmaps.losses import StructureLoss
    >>> criterion = DeepSupervisionLoss(StructureLoss(), f3net_factors(2), mode="downsample")
    >>> target = torch.zeros(1, 1, 16, 16)
    >>> target[..., 4:12, 4:12] = 1.0
    >>> outputs = [torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8)]
    >>> round(criterion(outputs, target).item(), 4)
    1.9702
    """

    def __init__(
        self,
        loss: LossFn,
        factors: Sequence[float] | None = None,
        *,
        mode: str = "upsample",
    ) -> None:
        super().__init__()
        if mode not in DS_MODES:
            raise ValueError(f"mode must be one of {DS_MODES}, got {mode!r}")
        self.loss = loss
        self.factors = None if factors is None else _check_factors(factors)
        self.mode = mode

    def forward(
        self, outputs: Sequence[Tensor], target: Tensor, weight: Tensor | None = None
    ) -> Tensor:
        return deep_supervision_loss(outputs, target, weight, self.loss, self.factors, self.mode)

    def extra_repr(self) -> str:
        return f"factors={self.factors}, mode={self.mode!r}"
