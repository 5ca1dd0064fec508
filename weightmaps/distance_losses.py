"""Losses that read distance and skeleton maps: boundary, Hausdorff-DT and clDice.

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

import contextlib
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightmaps.sdf_torch import boundary_distance_map_torch_batch

__all__ = [
    "BOUNDARY_SCHEDULES",
    "BoundaryLoss",
    "ClDiceLoss",
    "HausdorffDTLoss",
    "boundary_loss",
    "boundary_loss_weights",
    "cldice_loss",
    "hausdorff_dt_loss",
    "soft_skeleton",
]

BOUNDARY_SCHEDULES = ("rebalance", "increase", "constant")


# ----------------------------------------------------------------------------
# Shared checks
# ----------------------------------------------------------------------------


def _float32_region(device: torch.device) -> contextlib.AbstractContextManager:
    # Under autocast some ops below would run in half precision; the sums
    # over many pixels need float32.
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:
        return contextlib.nullcontext()


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.ndim < 3:
        raise ValueError(
            f"logits must be (B, C, *spatial) with at least one spatial axis, got shape "
            f"{tuple(logits.shape)}"
        )


def _channels(n_channels: int, classes: Sequence[int] | None) -> list[int]:
    if classes is None:
        return [0] if n_channels == 1 else list(range(1, n_channels))
    chosen = [int(c) for c in classes]
    if not chosen:
        raise ValueError("classes must name at least one channel")
    bad = [c for c in chosen if not 0 <= c < n_channels]
    if bad:
        raise ValueError(f"classes {bad} are not channels of logits with {n_channels} channels")
    return chosen


def _probabilities(logits: Tensor) -> Tensor:
    logits = logits.float()
    if logits.shape[1] == 1:
        return torch.sigmoid(logits)
    return torch.softmax(logits, dim=1)


def _target_channels(target: Tensor, logits: Tensor, classes: list[int]) -> Tensor:
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


def _map_channels(
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


# ----------------------------------------------------------------------------
# Boundary loss
# ----------------------------------------------------------------------------


def boundary_loss(logits: Tensor, sdf: Tensor, *, classes: Sequence[int] | None = None) -> Tensor:
    """Boundary loss of Kervadec et al.: the mean of ``p_c * phi_c``.

    ``mean over batch, classes and pixels of softmax(logits)[:, c] * phi_c``
    (sigmoid for one channel), ``phi_c`` the signed distance map of class c
    (:func:`weightmaps.sdf.signed_distance_map`: positive outside the class,
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
    >>> from weightmaps.sdf import signed_distance_map
    >>> mask = torch.zeros(1, 8, 8, dtype=torch.long); mask[0, 2:6, 2:6] = 1
    >>> sdf = torch.from_numpy(signed_distance_map(mask[0].numpy(), classes=(1,)))[None]
    >>> logits = torch.zeros(1, 2, 8, 8)  # p = 0.5 everywhere: half the mean of phi
    >>> round(float(boundary_loss(logits, sdf)), 4)
    0.6161
    >>> region, boundary = boundary_loss_weights(epoch=10)
    >>> loss = region * F.cross_entropy(logits, mask) + boundary * boundary_loss(logits, sdf)
    """
    _check_logits(logits)
    classes_ = _channels(logits.shape[1], classes)
    with _float32_region(logits.device):
        p = _probabilities(logits)[:, classes_]
        phi = _map_channels(sdf, logits, classes_, "sdf")
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


# ----------------------------------------------------------------------------
# Hausdorff distance-transform loss
# ----------------------------------------------------------------------------


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
        ``d_g``, precomputed: :func:`weightmaps.sdf.boundary_distance_map`
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
    _check_logits(logits)
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    classes_ = _channels(logits.shape[1], classes)
    with _float32_region(logits.device):
        p = _probabilities(logits)[:, classes_]
        g = _target_channels(target, logits, classes_)
        with torch.no_grad():
            d_p = _field(p.detach() > 0.5, spacing)
            if target_distance is None:
                d_g = _field(g > 0.5, spacing)
            else:
                d_g = _map_channels(target_distance, logits, classes_, "target_distance")
        return ((p - g) ** 2 * (d_p**alpha + d_g**alpha)).mean()


# ----------------------------------------------------------------------------
# clDice
# ----------------------------------------------------------------------------


def _soft_erode(x: Tensor) -> Tensor:
    """Minimum over the cross-shaped neighbourhood, one axis at a time."""
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    spatial = x.ndim - 2
    eroded = None
    for axis in range(spatial):
        kernel = [1] * spatial
        padding = [0] * spatial
        kernel[axis], padding[axis] = 3, 1
        along = -pool(-x, tuple(kernel), (1,) * spatial, tuple(padding))
        eroded = along if eroded is None else torch.minimum(eroded, along)
    return eroded


def _soft_dilate(x: Tensor) -> Tensor:
    pool = F.max_pool2d if x.ndim == 4 else F.max_pool3d
    spatial = x.ndim - 2
    return pool(x, (3,) * spatial, (1,) * spatial, (1,) * spatial)


def soft_skeleton(x: Tensor, iters: int = 3) -> Tensor:
    """Soft skeleton of Shit et al. (clDice): iterated soft erosion and opening.

    ``x`` is ``(B, C, H, W)`` or ``(B, C, D, H, W)`` in [0, 1]. The same
    operations as clDice's ``soft_skel`` and MONAI's ``soft_skel``
    (min/max pooling), differentiable.

    Examples
    --------
    >>> import torch
    >>> x = torch.zeros(1, 1, 5, 7); x[0, 0, 1:4, 1:6] = 1.0
    >>> soft_skeleton(x, iters=1)[0, 0, 2]
    tensor([0., 0., 1., 1., 1., 0., 0.])
    """
    if x.ndim not in (4, 5):
        raise ValueError(f"soft_skeleton takes (B, C, H, W) or (B, C, D, H, W), got {x.ndim}-D")
    if iters < 0:
        raise ValueError(f"iters must be >= 0, got {iters}")
    skeleton = F.relu(x - _soft_dilate(_soft_erode(x)))
    for _ in range(int(iters)):
        x = _soft_erode(x)
        delta = F.relu(x - _soft_dilate(_soft_erode(x)))
        skeleton = skeleton + F.relu(delta - skeleton * delta)
    return skeleton


def cldice_loss(
    logits: Tensor,
    target: Tensor,
    target_skeleton: Tensor | None = None,
    *,
    iters: int = 3,
    classes: Sequence[int] | None = None,
    smooth: float = 1.0,
    eps: float = 1e-4,
) -> Tensor:
    """Soft clDice loss (Shit et al., CVPR 2021) with the target's exact skeleton.

    Per image, over the chosen channels and pixels::

        Tprec = (sum(S_p * g) + smooth) / (sum(S_p) + smooth)
        Tsens = (sum(S_g * p) + smooth) / (sum(S_g) + smooth)
        loss  = 1 - 2 Tprec Tsens / (Tprec + Tsens + eps)

    then the mean over the batch. ``S_p`` is the soft skeleton of the
    probabilities (:func:`soft_skeleton`, differentiable); ``S_g`` is the
    target's skeleton, precomputed exactly by
    :func:`weightmaps.skeleton.skeleton_map` instead of soft. With
    ``target_skeleton=None`` the target's soft skeleton is used, and the
    result equals MONAI's ``SoftclDiceLoss(iter_=iters, smooth_nr=smooth,
    smooth_dr=smooth, smooth=eps)`` (pass ``classes=range(C)`` for its
    default ``include_background=True``).

    Parameters
    ----------
    logits : Tensor, shape (B, C, H, W) or (B, C, D, H, W)
    target : Tensor
        ``(B, *spatial)`` or ``(B, 1, *spatial)`` (see the module notes).
    target_skeleton : Tensor, optional
        0/1 skeleton: per class ``(B, C or len(classes), *spatial)``, or one
        map ``(B, *spatial)`` for all classes (split by the target's class).
    iters : int
        Soft-skeleton iterations for the prediction (and a soft target).
    classes : sequence of int, optional
        Channels to use; default all but channel 0 when ``C > 1``.
    smooth, eps : float
        As above.

    Returns
    -------
    Tensor
        A float32 scalar.

    Examples
    --------
    >>> import torch
    >>> target = torch.zeros(1, 1, 7, 7); target[0, 0, 3, 1:6] = 1.0
    >>> logits = torch.where(target > 0, 5.0, -5.0)
    >>> round(float(cldice_loss(logits, target, target)), 4)
    0.0028
    """
    _check_logits(logits)
    if logits.ndim not in (4, 5):
        raise ValueError(f"cldice_loss takes 2-D or 3-D logits, got shape {tuple(logits.shape)}")
    classes_ = _channels(logits.shape[1], classes)
    with _float32_region(logits.device):
        p = _probabilities(logits)[:, classes_]
        g = _target_channels(target, logits, classes_)
        if target_skeleton is None:
            s_g = soft_skeleton(g, iters)
        else:
            s_g = _map_channels(target_skeleton, logits, classes_, "target_skeleton", g)
        s_p = soft_skeleton(p, iters)
        dims = tuple(range(1, p.ndim))
        t_prec = ((s_p * g).sum(dims) + smooth) / (s_p.sum(dims) + smooth)
        t_sens = ((s_g * p).sum(dims) + smooth) / (s_g.sum(dims) + smooth)
        return (1.0 - 2.0 * t_prec * t_sens / (t_prec + t_sens + eps)).mean()


# ----------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------


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


class ClDiceLoss(nn.Module):
    """:func:`cldice_loss` as a module: ``loss(logits, target, target_skeleton=None)``.

    Examples
    --------
    >>> import torch
    >>> loss = ClDiceLoss(iters=3)
    >>> target = torch.zeros(1, 1, 7, 7); target[0, 0, 3, 1:6] = 1.0
    >>> round(float(loss(torch.where(target > 0, 5.0, -5.0), target, target)), 4)
    0.0028
    """

    def __init__(
        self,
        *,
        iters: int = 3,
        classes: Sequence[int] | None = None,
        smooth: float = 1.0,
        eps: float = 1e-4,
    ) -> None:
        super().__init__()
        if iters < 0 or int(iters) != iters:
            raise ValueError(f"iters must be a whole number >= 0, got {iters}")
        if not (smooth >= 0 and math.isfinite(smooth)) or not eps > 0:
            raise ValueError(f"smooth must be >= 0 and eps > 0, got {smooth}, {eps}")
        self.iters = int(iters)
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.smooth = float(smooth)
        self.eps = float(eps)

    def forward(
        self, logits: Tensor, target: Tensor, target_skeleton: Tensor | None = None
    ) -> Tensor:
        return cldice_loss(
            logits,
            target,
            target_skeleton,
            iters=self.iters,
            classes=self.classes,
            smooth=self.smooth,
            eps=self.eps,
        )

    def extra_repr(self) -> str:
        return f"iters={self.iters}, classes={self.classes}, smooth={self.smooth}, eps={self.eps}"
