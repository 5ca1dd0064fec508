"""The Hausdorff distance-transform loss (Karimi & Salcudean 2019; MONAI's ``HausdorffDTLoss``)
with the target's distance map precomputed."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from weightmaps.kernels.sdf_torch import boundary_distance_map_torch_batch
from weightmaps.losses._channels import (
    check_spatial_logits,
    chosen_channels,
    float32_region,
    map_channels,
    plain,
    probabilities,
    target_channels,
)

__all__ = ["HausdorffDTLoss", "hausdorff_dt_loss"]


def _field(mask: Tensor, spacing: float | Sequence[float] | None) -> Tensor:
    """``EDT(m) + EDT(~m)`` of every (b, k) channel of a bool mask, 0 where it
    is empty or full (MONAI's ``distance_field``)."""
    batch, k, *spatial = mask.shape
    flat = mask.reshape(batch * k, *spatial)
    field = boundary_distance_map_torch_batch(flat, classes=(1,), spacing=spacing)
    return field.reshape(batch, k, *spatial)


def hausdorff_dt_loss(
    logits: Tensor,
    target: Tensor,
    target_distance: Tensor | None = None,
    *,
    alpha: float = 2.0,
    classes: Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
) -> Tensor:
    """Hausdorff distance-transform loss (Karimi & Salcudean 2019), as MONAI's ``HausdorffDTLoss``.

    ``mean over batch, classes and pixels of (p - g)^2 * (d_p^alpha + d_g^alpha)``
    with ``p`` the probabilities, ``g`` the target, ``d_g`` the target's
    distance map and ``d_p`` that of the thresholded prediction ``p > 0.5``,
    both ``EDT(m) + EDT(~m)`` (0 where a channel is empty or full). ``d_p``
    is computed here, on the logits' device, by the exact torch transform
    (:mod:`weightmaps.sdf_torch`); no gradient flows through it, as in MONAI.

    Parameters
    ----------
    logits : Tensor, shape (B, C, *spatial)
    target : Tensor
        ``(B, *spatial)`` or ``(B, 1, *spatial)`` (see the module notes).
    target_distance : Tensor, optional
        ``d_g``, precomputed: :func:`weightmaps.kernels.sdf.boundary_distance_map`
        (MONAI's target field). Default: computed from ``target`` here.
    alpha : float
        Exponent of the distances.
    classes : sequence of int, optional
        Channels to use. Default: all but channel 0 when ``C > 1`` (MONAI's
        ``include_background=False``), the one channel when ``C == 1``.
    spacing : float or sequence of float, optional
        Pixel size for ``d_p`` (and ``d_g`` when computed here).

    Returns
    -------
    Tensor
        A float32 scalar.

    Examples
    --------
    >>> import torch
    >>> target = torch.zeros(1, 6, 6, dtype=torch.long); target[0, 1:4, 1:4] = 1
    >>> logits = torch.zeros(1, 2, 6, 6); logits[:, 1, 2:5, 2:5] = 4.0
    >>> round(float(hausdorff_dt_loss(logits, target)), 4)
    1.2878
    """
    logits, target, target_distance = plain(logits), plain(target), plain(target_distance)
    check_spatial_logits(logits)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    classes_ = chosen_channels(logits.shape[1], classes)
    with float32_region(logits.device):
        p = probabilities(logits)[:, classes_]
        g = target_channels(target, logits, classes_)
        with torch.no_grad():
            d_p = _field(p.detach() > 0.5, spacing)
            if target_distance is None:
                d_g = _field(g > 0.5, spacing)
            else:
                d_g = map_channels(target_distance, logits, classes_, "target_distance")
        return ((p - g) ** 2 * (d_p**alpha + d_g**alpha)).mean()


class HausdorffDTLoss(nn.Module):
    """:func:`hausdorff_dt_loss` as a module: ``loss(logits, target, target_distance=None)``.

    Examples
    --------
    >>> import torch
    >>> loss = HausdorffDTLoss(alpha=2.0)
    >>> float(loss(torch.full((1, 1, 4, 4), 5.0), torch.ones(1, 4, 4)))
    0.0
    """

    def __init__(
        self,
        *,
        alpha: float = 2.0,
        classes: Sequence[int] | None = None,
        spacing: float | Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.spacing = spacing

    def forward(
        self, logits: Tensor, target: Tensor, target_distance: Tensor | None = None
    ) -> Tensor:
        return hausdorff_dt_loss(
            logits,
            target,
            target_distance,
            alpha=self.alpha,
            classes=self.classes,
            spacing=self.spacing,
        )

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}, classes={self.classes}, spacing={self.spacing}"
