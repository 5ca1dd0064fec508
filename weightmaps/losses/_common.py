"""Checks, value checks and reductions shared by every loss (see the package docstring)."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import Tensor

REDUCTIONS = ("mean", "image_mean", "pixel_mean", "sum", "none")

LossFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


def plain(tensor: Any) -> Any:
    """A tensor subclass (MONAI's ``MetaTensor``) as a plain Tensor; anything else as is.

    ``as_subclass`` shares the storage and stays attached to the autograd
    graph; the losses then run at plain-tensor speed and return plain
    tensors, whatever metadata the inputs carried.
    """
    if isinstance(tensor, Tensor) and type(tensor) is not Tensor:
        return tensor.as_subclass(Tensor)
    return tensor


def shape_of(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def float32_region(device: torch.device) -> contextlib.AbstractContextManager:
    # An enclosing autocast region would send some of the ops below back to
    # half precision; the sums over many pixels need float32.
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type without autocast has nothing to disable
        return contextlib.nullcontext()


def check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.ndim < 2:
        raise ValueError(
            "logits must have a batch dimension and at least one more, "
            f"got shape {shape_of(logits)}"
        )


def check_weight_dtype(weight: Tensor) -> None:
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor or None, got {type(weight).__name__}")
    if weight.is_complex():
        raise TypeError(f"weight must be real, got dtype {weight.dtype}")


def safe_div(num: Tensor, den: Tensor) -> Tensor:
    # With non-negative weights a zero denominator comes with a zero numerator;
    # dividing by 1 there gives 0 (and zero gradients) instead of 0/0 = NaN.
    # Only 0 is replaced: unchecked negative totals still divide, so "mean"
    # never turns into the plain sum.
    return num / torch.where(den != 0, den, torch.ones_like(den))


def _ranges(tensors: Sequence[Tensor]) -> list[tuple[float, float]]:
    """Minimum and maximum of each non-empty tensor (NaN when it holds one),
    read back in one device synchronisation."""
    pairs = [torch.stack(torch.aminmax(t)).double() for t in tensors]
    flat = torch.cat(pairs).tolist()
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(len(pairs))]


def check_values(
    *,
    weight: Tensor | None = None,
    target: Tensor | None = None,
    class_ids: Tensor | None = None,
    n_classes: int = 0,
    ignore_index: int = -100,
    class_weight: Tensor | None = None,
) -> None:
    """The value checks of ``check_inputs`` (see the module docstring).

    ``weight``: the weights that count, to be finite and >= 0. ``target``: a
    BCE-style float target, in [0, 1]. ``class_ids``: cross-entropy targets
    with ignored pixels already replaced by 0, in ``[0, n_classes)``.
    """
    named = {
        "weight": weight,
        "target": None if target is None or target.dtype == torch.bool else target,
        "class_ids": class_ids,
        "class_weight": class_weight,
    }
    named = {k: v for k, v in named.items() if v is not None and v.numel() > 0}
    if not named:
        return
    ranges = dict(zip(named, _ranges(list(named.values())), strict=True))
    for name in ("weight", "class_weight"):
        if name not in ranges:
            continue
        lo, hi = ranges[name]
        if math.isnan(lo) or math.isnan(hi):
            raise ValueError(f"{name} holds NaN values; weights must be finite and >= 0")
        if math.isinf(lo) or math.isinf(hi):
            raise ValueError(f"{name} holds infinite values; weights must be finite and >= 0")
        if lo < 0:
            raise ValueError(
                f"{name} holds negative values (minimum {lo:g}); weights must be finite and >= 0"
            )
    if "target" in ranges:
        lo, hi = ranges["target"]
        if math.isnan(lo) or math.isnan(hi):
            raise ValueError("target holds NaN values; it must lie in [0, 1]")
        if lo < 0 or hi > 1:
            hint = "; divide a 0/255 mask by 255" if hi > 1 else ""
            raise ValueError(f"target must lie in [0, 1], got values in [{lo:g}, {hi:g}]{hint}")
    if "class_ids" in ranges:
        lo, hi = ranges["class_ids"]
        if lo < 0 or hi >= n_classes:
            bad = int(lo) if lo < 0 else int(hi)
            raise ValueError(
                f"target holds class id {bad}; class ids must be in [0, {n_classes}) "
                f"for {n_classes}-channel logits, or ignore_index ({ignore_index})"
            )


def reduce_weighted(wl: Tensor, w: Tensor, count: Tensor | int, reduction: str) -> Tensor:
    """Reduce the per-pixel ``w * l`` given the effective weights ``w``.

    ``count`` is the number of pixels that count, for ``"pixel_mean"``.
    """
    if reduction == "none":
        return wl
    if reduction == "sum":
        return wl.sum()
    if reduction == "mean":
        return safe_div(wl.sum(), w.sum())
    if reduction == "pixel_mean":
        return safe_div(wl.sum(), torch.as_tensor(count, dtype=wl.dtype, device=wl.device))
    # image_mean: images without any weight carry no information, so they
    # are left out of the batch mean rather than pulling it towards 0.
    # flatten, not reshape(B, -1): that cannot infer -1 for an empty batch.
    num = wl.flatten(1).sum(dim=1)
    den = w.flatten(1).sum(dim=1)
    per_image = safe_div(num, den)
    n_images = (den != 0).sum().to(per_image.dtype)
    return safe_div(per_image.sum(), n_images)


def binary_target(target: Tensor, logits: Tensor) -> Tensor:
    """Check a BCE-style target and give it the shape of ``logits``."""
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if not (target.is_floating_point() or target.dtype == torch.bool):
        # A uint8 0/255 mask is the usual cause; refusing integers makes the
        # caller look at the values before they become BCE targets.
        raise TypeError(
            f"target must be a float tensor with values in [0, 1] (or bool), got dtype "
            f"{target.dtype}; convert a 0/1 integer mask with target.float() "
            "(divide a 0/255 mask by 255 first)"
        )
    lg, tg = shape_of(logits), shape_of(target)
    if tg == lg:
        return target
    if lg[1] == 1 and tg == (lg[0], *lg[2:]):
        return target.unsqueeze(1)
    if len(tg) >= 2 and tg[1] == 1 and (tg[0], *tg[2:]) == lg:
        return target.squeeze(1)
    raise ValueError(
        f"target shape {tg} does not match logits shape {lg}: expected {lg}"
        + (f" or {(lg[0], *lg[2:])}" if lg[1] == 1 else "")
    )


def binary_weight(weight: Tensor | None, logits: Tensor) -> Tensor | None:
    """Check a weight map for a BCE-style loss and give it the shape of ``logits``."""
    if weight is None:
        return None
    check_weight_dtype(weight)
    lg, wg = shape_of(logits), shape_of(weight)
    if wg == lg:
        return weight
    if lg[1] == 1 and wg == (lg[0], *lg[2:]):
        return weight.unsqueeze(1)
    if len(wg) >= 2 and wg[1] == 1 and (wg[0], *wg[2:]) == lg:
        return weight.squeeze(1)
    raise ValueError(
        f"weight shape {wg} does not match logits shape {lg}: expected {lg}"
        + (f" or {(lg[0], *lg[2:])}" if lg[1] == 1 else "")
    )
