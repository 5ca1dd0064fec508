"""Soft clDice (Shit et al., CVPR 2021; MONAI's ``SoftclDiceLoss``) with the target's exact
skeleton precomputed."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from weightmaps.losses._channels import (
    check_spatial_logits,
    chosen_channels,
    float32_region,
    map_channels,
    plain,
    probabilities,
    target_channels,
)

__all__ = ["ClDiceLoss", "cldice_loss", "soft_skeleton"]


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
    :func:`weightmaps.kernels.skeleton.skeleton_map` instead of soft. With
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
    logits, target, target_skeleton = plain(logits), plain(target), plain(target_skeleton)
    check_spatial_logits(logits)
    if logits.ndim not in (4, 5):
        raise ValueError(f"cldice_loss takes 2-D or 3-D logits, got shape {tuple(logits.shape)}")
    classes_ = chosen_channels(logits.shape[1], classes)
    with float32_region(logits.device):
        p = probabilities(logits)[:, classes_]
        g = target_channels(target, logits, classes_)
        if target_skeleton is None:
            s_g = soft_skeleton(g, iters)
        else:
            s_g = map_channels(target_skeleton, logits, classes_, "target_skeleton", g)
        s_p = soft_skeleton(p, iters)
        dims = tuple(range(1, p.ndim))
        t_prec = ((s_p * g).sum(dims) + smooth) / (s_p.sum(dims) + smooth)
        t_sens = ((s_g * p).sum(dims) + smooth) / (s_g.sum(dims) + smooth)
        return (1.0 - 2.0 * t_prec * t_sens / (t_prec + t_sens + eps)).mean()


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
