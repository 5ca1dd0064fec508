"""The boundary loss (Kervadec et al., MIDL 2019 / MedIA 2021) on precomputed signed distance maps,
and the authors' schedule for pairing it with a region loss."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from weightmaps.losses._channels import (
    check_spatial_logits,
    chosen_channels,
    float32_region,
    map_channels,
    plain,
    probabilities,
)

__all__ = ["BOUNDARY_SCHEDULES", "BoundaryLoss", "boundary_loss", "boundary_loss_weights"]


BOUNDARY_SCHEDULES = ("rebalance", "increase", "constant")


def boundary_loss(logits: Tensor, sdf: Tensor, *, classes: Sequence[int] | None = None) -> Tensor:
    """Boundary loss of Kervadec et al.: the mean of ``p_c * phi_c``.

    ``mean over batch, classes and pixels of softmax(logits)[:, c] * phi_c``
    (sigmoid for one channel), ``phi_c`` the signed distance map of class c
    (:func:`weightmaps.kernels.sdf.signed_distance_map`: positive outside the class,
    ``<= 0`` inside). This is ``SurfaceLoss`` of the authors' code with
    ``idc = classes``. Its minimum is negative: it falls as probability moves
    into the class and away from it.

    Parameters
    ----------
    logits : Tensor, shape (B, C, *spatial)
    sdf : Tensor
        ``(B, C, *spatial)``, ``(B, len(classes), *spatial)`` or, for one
        class, ``(B, *spatial)``.
    classes : sequence of int, optional
        Channels to use (``idc``). Default: all but channel 0 when
        ``C > 1`` (the authors use ``idc=[1]`` for binary tasks), the one
        channel when ``C == 1``.

    Returns
    -------
    Tensor
        A float32 scalar.

    Examples
    --------
    The sdf is computed once per mask (``classes=range(1, C)`` for the
    default channels), and the loss is added to a region loss with the
    weights of the epoch (:func:`boundary_loss_weights`):

    >>> import torch
    >>> import torch.nn.functional as F
    >>> from weightmaps.kernels.sdf import signed_distance_map
    >>> mask = torch.zeros(1, 8, 8, dtype=torch.long); mask[0, 2:6, 2:6] = 1
    >>> sdf = torch.from_numpy(signed_distance_map(mask[0].numpy(), classes=(1,)))[None]
    >>> logits = torch.zeros(1, 2, 8, 8)  # p = 0.5 everywhere: half the mean of phi
    >>> round(float(boundary_loss(logits, sdf)), 4)
    0.6161
    >>> region, boundary = boundary_loss_weights(epoch=10)
    >>> loss = region * F.cross_entropy(logits, mask) + boundary * boundary_loss(logits, sdf)
    """
    logits, sdf = plain(logits), plain(sdf)
    check_spatial_logits(logits)
    classes_ = chosen_channels(logits.shape[1], classes)
    with float32_region(logits.device):
        p = probabilities(logits)[:, classes_]
        phi = map_channels(sdf, logits, classes_, "sdf")
        return (p * phi).mean()


def boundary_loss_weights(
    epoch: int,
    *,
    schedule: str = "rebalance",
    step: float = 0.01,
    start: float = 0.01,
    region_floor: float = 0.1,
) -> tuple[float, float]:
    """Weights ``(region, boundary)`` of the region and boundary losses at an epoch.

    The authors' released training (LIVIAETS/boundary-loss, ``scheduler.py``
    and the ISLES/WMH makefiles) starts from ``(1, start)`` with
    ``start = 0.01`` and, after every epoch:

    ``"rebalance"``
        ``StealWeight(step)``: the region weight loses ``step`` (never below
        ``region_floor``), the boundary weight gains ``step``. The shift of
        emphasis from the region term to the boundary term the papers call
        rebalancing.
    ``"increase"``
        ``AddWeightLoss([0, step])``: the region weight stays 1, the boundary
        weight gains ``step``.
    ``"constant"``
        ``(1, start)`` throughout.

    Parameters
    ----------
    epoch : int
        Epochs completed (0 for the first).

    Returns
    -------
    (float, float)
        Multiply the region loss by the first, :func:`boundary_loss` by the
        second, and add.

    Examples
    --------
    >>> boundary_loss_weights(0)
    (1.0, 0.01)
    >>> [tuple(round(w, 2) for w in boundary_loss_weights(e)) for e in (1, 50, 200)]
    [(0.99, 0.02), (0.5, 0.51), (0.1, 2.01)]
    """
    if schedule not in BOUNDARY_SCHEDULES:
        raise ValueError(f"schedule must be one of {BOUNDARY_SCHEDULES}, got {schedule!r}")
    if epoch < 0:
        raise ValueError(f"epoch must be >= 0, got {epoch}")
    region, boundary = 1.0, float(start)
    if schedule == "constant":
        return region, boundary
    # Step by step, as the released scheduler accumulates them.
    for _ in range(int(epoch)):
        if schedule == "rebalance":
            region = max(region_floor, region - step)
        boundary += step
    return region, boundary


class BoundaryLoss(nn.Module):
    """:func:`boundary_loss` as a module: ``loss(logits, sdf)``.

    Examples
    --------
    >>> import torch
    >>> loss = BoundaryLoss()
    >>> float(loss(torch.zeros(1, 2, 3, 3), torch.ones(1, 3, 3)))
    0.5
    """

    def __init__(self, *, classes: Sequence[int] | None = None) -> None:
        super().__init__()
        self.classes = None if classes is None else tuple(int(c) for c in classes)

    def forward(self, logits: Tensor, sdf: Tensor) -> Tensor:
        return boundary_loss(logits, sdf, classes=self.classes)

    def extra_repr(self) -> str:
        return f"classes={self.classes}"
