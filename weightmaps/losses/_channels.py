"""Channels, targets and maps of the losses that read distance and skeleton maps.

Each loss takes raw network outputs (logits, never probabilities) of shape
``(B, C, *spatial)``: softmax over the channels when ``C > 1``, sigmoid when
``C == 1``. Targets are ``(B, *spatial)`` or ``(B, 1, *spatial)``: integer
class ids when ``C > 1`` (or a one-hot ``(B, C, *spatial)``), a float or
bool foreground when ``C == 1``. ``classes`` picks the channels the loss
reads; by default every channel but the background (channel 0) when
``C > 1``, the one channel when ``C == 1``.

Precomputed maps come in one of three shapes: ``(B, C, *spatial)`` (one
channel per logit channel, indexed by ``classes``), ``(B, len(classes),
*spatial)`` (in the order of ``classes``), or, for one class,
``(B, *spatial)`` / ``(B, 1, *spatial)``.

- :func:`boundary_loss` (Kervadec et al., MIDL 2019 / MedIA 2021) reads the
  signed distance maps of :func:`weightmaps.sdf.signed_distance_map`;
  :func:`boundary_loss_weights` gives the authors' schedule for pairing it
  with a region loss.
- :func:`hausdorff_dt_loss` (Karimi & Salcudean 2019; MONAI's
  ``HausdorffDTLoss``) reads the target's distance map
  (:func:`weightmaps.sdf.boundary_distance_map`) and measures the
  prediction's own on its device with the exact torch transform.
- :func:`cldice_loss` (Shit et al., CVPR 2021; MONAI's ``SoftclDiceLoss``)
  reads the target's exact skeleton (:func:`weightmaps.skeleton.skeleton_map`).

The work is done in float32 even under ``autocast``. This module imports
torch; ``import weightmaps`` does not.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from weightmaps.losses._common import float32_region, plain

__all__ = [
    "check_spatial_logits",
    "chosen_channels",
    "float32_region",
    "map_channels",
    "plain",
    "probabilities",
    "target_channels",
]


def check_spatial_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.ndim < 3:
        raise ValueError(
            f"logits must be (B, C, *spatial) with at least one spatial axis, got shape "
            f"{tuple(logits.shape)}"
        )


def chosen_channels(n_channels: int, classes: Sequence[int] | None) -> list[int]:
    if classes is None:
        return [0] if n_channels == 1 else list(range(1, n_channels))
    chosen = [int(c) for c in classes]
    if not chosen:
        raise ValueError("classes must name at least one channel")
    bad = [c for c in chosen if not 0 <= c < n_channels]
    if bad:
        raise ValueError(f"classes {bad} are not channels of logits with {n_channels} channels")
    return chosen


def probabilities(logits: Tensor) -> Tensor:
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def target_channels(target: Tensor, logits: Tensor, classes: list[int]) -> Tensor:
    """The target as float (B, len(classes), *spatial)."""
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    batch, n_channels, *spatial = logits.shape
    shape = tuple(target.shape)
    if n_channels > 1 and shape == tuple(logits.shape):
        return target[:, classes].float()  # one-hot (or soft) target
    if shape == (batch, 1, *spatial):
        target = target[:, 0]
    elif shape != (batch, *spatial):
        raise ValueError(
            f"target shape {shape} does not match logits {tuple(logits.shape)}: expected "
            f"{(batch, *spatial)} or {(batch, 1, *spatial)}"
        )
    if n_channels == 1:
        if not (target.is_floating_point() or target.dtype == torch.bool):
            raise TypeError(
                "with one logit channel the target is a float foreground in [0, 1] (or bool), "
                f"got dtype {target.dtype}"
            )
        return target.float().unsqueeze(1)
    if target.is_floating_point() or target.is_complex():
        raise TypeError(
            f"with {n_channels} logit channels the target holds integer class ids, "
            f"got dtype {target.dtype}"
        )
    return torch.stack([target == c for c in classes], 1).float()


def map_channels(
    values: Tensor, logits: Tensor, classes: list[int], name: str, target: Tensor | None = None
) -> Tensor:
    """A precomputed map as float (B, len(classes), *spatial).

    With ``target`` (the one-hot channels), a single map for several classes
    is split by the target's class: a skeleton lies inside its own class.
    """
    if not isinstance(values, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(values).__name__}")
    batch, n_channels, *spatial = logits.shape
    shape = tuple(values.shape)
    k = len(classes)
    if shape == (batch, n_channels, *spatial):
        return values[:, classes].float()
    if shape == (batch, k, *spatial):
        return values.float()
    if shape in ((batch, *spatial), (batch, 1, *spatial)):
        single = values.reshape(batch, 1, *spatial).float()
        if k == 1:
            return single
        if target is not None:
            return single * target
    raise ValueError(
        f"{name} shape {shape} does not fit logits {tuple(logits.shape)} with classes "
        f"{classes}: expected {(batch, n_channels, *spatial)} or {(batch, k, *spatial)}"
        + (f" or {(batch, *spatial)}" if k == 1 or target is not None else "")
    )
