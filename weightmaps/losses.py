"""Segmentation losses that read the precomputed per-pixel weight maps.

Every loss takes raw network outputs (logits, never probabilities) and gets
its per-pixel term ``l(x)`` from PyTorch itself (:func:`F.cross_entropy` or
:func:`F.binary_cross_entropy_with_logits` with ``reduction="none"``), so the
log-sum-exp stability of those functions carries over. The work is done in
float32 even when the logits are bfloat16/float16 or the call sits inside an
``autocast`` region; the result is a float32 tensor.

This module imports torch; ``import weightmaps`` does not. Use it as
``from weightmaps.losses import weighted_cross_entropy``.

Reductions
----------
With ``w`` the weight map (times the class weight of the target, when one is
given) and ``l`` the per-pixel loss, over the pixels that count (for
cross-entropy: not ``ignore_index``):

``"mean"`` (default)
    ``sum(w * l) / sum(w)`` over the whole batch. This is what PyTorch means
    by ``weight=``: with a map of ones it equals ``F.cross_entropy`` /
    ``F.binary_cross_entropy_with_logits`` with ``reduction="mean"``.
``"image_mean"``
    ``sum(w * l) / sum(w)`` per image, then the mean over the images whose
    ``sum(w)`` is not 0 (the per-image rescaling of many U-Net recipes).
``"pixel_mean"``
    ``sum(w * l) / n``, ``n`` the number of counted pixels: the plain mean of
    ``w * l`` of pytorch-3dunet and pytorch_connectomics.
``"sum"``
    ``sum(w * l)``.
``"none"``
    The per-pixel ``w * l`` (0 on ignored pixels), unreduced.

A quotient whose denominator is 0 (all weights 0, or every pixel ignored) is
returned as 0, still attached to the graph, instead of NaN: such a batch
contributes no gradient. An empty batch (``B == 0``, or no pixels) is the
same case: every reduced loss is 0 with a graph, ``"none"`` an empty tensor.
It is a value, not an error, because nothing counts there exactly as when
every pixel is ignored, and because a training loop can meet it legitimately
(an uneven last shard, a loss over the images of a batch that have a mask);
``backward()`` then still runs and gives zero gradients.

Input checks
------------
Every loss function and module takes ``check_inputs`` (default True). It
checks the values, not only the shapes, and raises a ValueError that names
the problem: weights must be finite and ``>= 0`` (where they count: pixels
of ``ignore_index`` are exempt), BCE-style targets must lie in [0, 1] (a
0/255 mask is the usual mistake), cross-entropy targets must be class ids in
``[0, C)`` or ``ignore_index``, ``class_weight`` finite and ``>= 0``. This
reads the minima and maxima back from the device: one synchronisation per
call, under a millisecond on the CPU for a (8, 1, 352, 352) batch.
Pass ``check_inputs=False`` in a hot loop whose data are known to be good;
unchecked values then enter the formulas as given: a NaN or infinite weight
makes the loss NaN, negative weights give numbers without meaning (the
quotients are still ``sum(w * l) / sum(w)``, never silently the sum), and a
target outside [0, 1] gives a BCE that is not a loss (it can go far below 0).

Also here: the F3Net/PraNet structure loss (:func:`structure_loss`), balanced
BCE (:func:`balanced_bce_with_logits`) and a deep supervision wrapper
(:func:`deep_supervision_loss`), each with a thin :class:`torch.nn.Module`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "DS_MODES",
    "REDUCTIONS",
    "BalancedBCEWithLogitsLoss",
    "DeepSupervisionLoss",
    "StructureLoss",
    "WeightedBCEWithLogitsLoss",
    "WeightedCrossEntropyLoss",
    "balanced_bce_with_logits",
    "deep_supervision_loss",
    "f3net_factors",
    "structure_loss",
    "weighted_bce_with_logits",
    "weighted_cross_entropy",
]

REDUCTIONS = ("mean", "image_mean", "pixel_mean", "sum", "none")
DS_MODES = ("upsample", "downsample")

LossFn = Callable[[Tensor, Tensor, "Tensor | None"], Tensor]


# ----------------------------------------------------------------------------
# Shared checks and reductions
# ----------------------------------------------------------------------------


def _shape(t: Tensor) -> tuple[int, ...]:
    return tuple(t.shape)


def _float32_region(device: torch.device) -> contextlib.AbstractContextManager:
    # An enclosing autocast region would send some of the ops below back to
    # half precision; the sums over many pixels need float32.
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:  # a device type without autocast has nothing to disable
        return contextlib.nullcontext()


def _check_reduction(reduction: str) -> None:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def _check_logits(logits: Tensor) -> None:
    if not isinstance(logits, Tensor):
        raise TypeError(f"logits must be a torch.Tensor, got {type(logits).__name__}")
    if not logits.is_floating_point():
        raise TypeError(f"logits must be a floating-point tensor, got dtype {logits.dtype}")
    if logits.ndim < 2:
        raise ValueError(
            f"logits must have a batch dimension and at least one more, got shape {_shape(logits)}"
        )


def _check_weight_dtype(weight: Tensor) -> None:
    if not isinstance(weight, Tensor):
        raise TypeError(f"weight must be a torch.Tensor or None, got {type(weight).__name__}")
    if weight.is_complex():
        raise TypeError(f"weight must be real, got dtype {weight.dtype}")


def _safe_div(num: Tensor, den: Tensor) -> Tensor:
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


def _check_values(
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


def _reduce(wl: Tensor, w: Tensor, count: Tensor | int, reduction: str) -> Tensor:
    """Reduce the per-pixel ``w * l`` given the effective weights ``w``.

    ``count`` is the number of pixels that count, for ``"pixel_mean"``.
    """
    if reduction == "none":
        return wl
    if reduction == "sum":
        return wl.sum()
    if reduction == "mean":
        return _safe_div(wl.sum(), w.sum())
    if reduction == "pixel_mean":
        return _safe_div(wl.sum(), torch.as_tensor(count, dtype=wl.dtype, device=wl.device))
    # image_mean: images without any weight carry no information, so they
    # are left out of the batch mean rather than pulling it towards 0.
    # flatten, not reshape(B, -1): that cannot infer -1 for an empty batch.
    num = wl.flatten(1).sum(dim=1)
    den = w.flatten(1).sum(dim=1)
    per_image = _safe_div(num, den)
    n_images = (den != 0).sum().to(per_image.dtype)
    return _safe_div(per_image.sum(), n_images)


def _binary_target(target: Tensor, logits: Tensor) -> Tensor:
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
    lg, tg = _shape(logits), _shape(target)
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


def _binary_weight(weight: Tensor | None, logits: Tensor) -> Tensor | None:
    """Check a weight map for a BCE-style loss and give it the shape of ``logits``."""
    if weight is None:
        return None
    _check_weight_dtype(weight)
    lg, wg = _shape(logits), _shape(weight)
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


# ----------------------------------------------------------------------------
# Weighted cross-entropy
# ----------------------------------------------------------------------------


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
        ``(B, *spatial)`` integer class ids in ``[0, C)`` or ``ignore_index``.
    weight : Tensor or None
        ``(B, *spatial)`` or ``(B, 1, *spatial)`` per-pixel weights, for
        example a U-Net border map. None means all ones.
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
    _check_reduction(reduction)
    _check_logits(logits)
    if not isinstance(target, Tensor):
        raise TypeError(f"target must be a torch.Tensor, got {type(target).__name__}")
    if target.is_floating_point() or target.is_complex():
        raise TypeError(
            f"target for cross-entropy must hold integer class ids, got dtype {target.dtype}; "
            "for a single-channel float target use weighted_bce_with_logits"
        )
    expected = (logits.shape[0], *logits.shape[2:])
    if _shape(target) != expected:
        raise ValueError(
            f"target shape {_shape(target)} does not match logits shape {_shape(logits)}: "
            f"expected (B, *spatial) = {expected}"
        )
    if weight is not None:
        _check_weight_dtype(weight)
        if _shape(weight) == (expected[0], 1, *expected[1:]):
            weight = weight.squeeze(1)
        elif _shape(weight) != expected:
            raise ValueError(
                f"weight shape {_shape(weight)} does not match target shape {expected}: "
                f"expected {expected} or {(expected[0], 1, *expected[1:])}"
            )
    if class_weight is not None:
        n_classes = logits.shape[1]
        if not isinstance(class_weight, Tensor):
            class_weight = torch.as_tensor(class_weight)
        if _shape(class_weight) != (n_classes,):
            raise ValueError(
                f"class_weight shape {_shape(class_weight)} does not match the {n_classes} "
                f"classes of logits shape {_shape(logits)}"
            )

    with _float32_region(logits.device):
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
            _check_values(
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
        return _reduce(wl, total_w, valid.sum(), reduction)


# ----------------------------------------------------------------------------
# Weighted binary cross-entropy
# ----------------------------------------------------------------------------


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
    _check_reduction(reduction)
    _check_logits(logits)
    target = _binary_target(target, logits)
    weight = _binary_weight(weight, logits)
    with _float32_region(logits.device):
        x = logits.float()
        if check_inputs:
            _check_values(weight=None if weight is None else weight.float(), target=target)
        if pos_weight is not None:
            pos_weight = torch.as_tensor(pos_weight, dtype=torch.float32, device=x.device)
        loss = F.binary_cross_entropy_with_logits(
            x, target.float(), pos_weight=pos_weight, reduction="none"
        )
        w = torch.ones_like(loss) if weight is None else weight.float().expand_as(loss)
        return _reduce(w * loss, w, loss.numel(), reduction)


# ----------------------------------------------------------------------------
# Structure loss (F3Net / PraNet)
# ----------------------------------------------------------------------------


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
    _check_logits(logits)
    if logits.ndim not in (4, 5):
        raise ValueError(
            "structure_loss needs (B, C, H, W) or (B, C, D, H, W) logits, "
            f"got shape {_shape(logits)}"
        )
    if weight is None and (kernel_size < 1 or kernel_size % 2 == 0):
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")
    target = _binary_target(target, logits)
    weight = _binary_weight(weight, logits)
    with _float32_region(logits.device):
        x = logits.float()
        if check_inputs:
            _check_values(weight=None if weight is None else weight.float(), target=target)
        m = target.float()
        weit = _edge_weight(m, kernel_size, alpha) if weight is None else weight.float()
        dims = tuple(range(2, x.ndim))
        if legacy_reduce:
            # The mean over no pixels is NaN; their sum, 0, keeps the convention.
            legacy = "mean" if x.numel() else "sum"
            wbce = F.binary_cross_entropy_with_logits(x, m, reduction=legacy)
        else:
            bce = F.binary_cross_entropy_with_logits(x, m, reduction="none")
            wbce = _safe_div((weit * bce).sum(dim=dims), weit.sum(dim=dims))
        p = torch.sigmoid(x)
        inter = (p * m * weit).sum(dim=dims)
        union = ((p + m) * weit).sum(dim=dims)
        wiou = 1 - (inter + 1) / (union - inter + 1)
        per_image = wbce + wiou
        # The mean over no images would be NaN; the sum is 0, with a graph.
        return per_image.mean() if per_image.numel() else per_image.sum()


# ----------------------------------------------------------------------------
# Balanced BCE (HED / DASNet)
# ----------------------------------------------------------------------------


def balanced_bce_with_logits(
    logits: Tensor,
    target: Tensor,
    weight: Tensor | None = None,
    *,
    reduction: str = "sum",
    check_inputs: bool = True,
) -> Tensor:
    """Class-balanced binary cross-entropy (HED, DASNet) on logits.

    Without ``weight``, per image ``beta = 1 - n_fg / N`` (``n_fg`` the sum
    of the target, ``N`` its number of elements) and::

        l = -(beta * t * log(p) + (1 - beta) * (1 - t) * log(1 - p))

    with ``p = sigmoid(logits)``; ``beta`` is a constant (no gradient). The
    effective weight of a pixel, used by the normalising reductions, is
    ``beta * t + (1 - beta) * (1 - t)``: the ``beta`` map of
    :func:`weightmaps.balance_weight_map` (mode ``"beta"``, per image) for a
    binary target. An image without foreground has ``beta = 1`` and so
    weighs nothing.

    With ``weight`` (e.g. a precomputed ``beta`` map, per image or per
    dataset), this is ``weighted_bce_with_logits`` with a default reduction
    of ``"sum"``. For a binary target and the per-image ``beta`` map, both
    forms give the same value.

    Parameters
    ----------
    logits : Tensor
        ``(B, 1, *spatial)`` or ``(B, *spatial)`` raw scores.
    target : Tensor
        Float in [0, 1] or bool, the shape of ``logits`` with or without the
        channel of size 1.
    weight : Tensor, optional
        Per-pixel weights, same shapes as ``target``. Default: the per-image
        ``beta`` balance computed on the fly.
    reduction : {"sum", "mean", "image_mean", "pixel_mean", "none"}
        Default ``"sum"``: the sum over all pixels of the batch, which is the
        value of the reference code this loss comes from. ``"pixel_mean"``
        divides that by the number of pixels (independent of image size);
        ``"mean"`` divides by ``sum(w)``. See the module docstring.
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
    >>> logits = torch.zeros(1, 1, 2, 2)  # -log(0.5) = ln 2 per pixel
    >>> target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])  # beta = 3/4
    >>> # 1 foreground pixel * 3/4 + 3 background pixels * 1/4 = 1.5 ln 2
    >>> round(balanced_bce_with_logits(logits, target).item(), 4)
    1.0397
    """
    _check_reduction(reduction)
    _check_logits(logits)
    target = _binary_target(target, logits)
    weight = _binary_weight(weight, logits)
    with _float32_region(logits.device):
        x = logits.float()
        if check_inputs:
            _check_values(weight=None if weight is None else weight.float(), target=target)
        t = target.float()
        if weight is not None:
            w = weight.float()
            return _reduce(
                w * F.binary_cross_entropy_with_logits(x, t, reduction="none"),
                w,
                x.numel(),
                reduction,
            )
        td = t.detach()
        # Not td[0].numel(): there is no image 0 in an empty batch.
        n_per_image = max(math.prod(td.shape[1:]), 1)
        beta = 1 - td.flatten(1).sum(dim=1) / n_per_image
        beta = beta.reshape(-1, *([1] * (x.ndim - 1)))
        # -log(p) and -log(1 - p) from PyTorch's stable logit form; the two
        # terms carry different factors, so one call with t cannot give them.
        neg_log_p = F.binary_cross_entropy_with_logits(x, torch.ones_like(x), reduction="none")
        neg_log_q = F.binary_cross_entropy_with_logits(x, torch.zeros_like(x), reduction="none")
        loss = beta * t * neg_log_p + (1 - beta) * (1 - t) * neg_log_q
        w = beta * td + (1 - beta) * (1 - td)
        return _reduce(loss, w, x.numel(), reduction)


# ----------------------------------------------------------------------------
# Deep supervision
# ----------------------------------------------------------------------------


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
    >>> target = torch.zeros(1, 1, 16, 16)
    >>> target[..., 4:12, 4:12] = 1.0
    >>> outputs = [torch.zeros(1, 1, 16, 16), torch.zeros(1, 1, 8, 8)]
    >>> loss = deep_supervision_loss(outputs, target, None, structure_loss, f3net_factors(2))
    >>> round(loss.item(), 4)
    1.9834
    """
    outputs = list(outputs)
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
            shape = _shape(out) if isinstance(out, Tensor) else type(out).__name__
            raise ValueError(
                "deep supervision needs channel-first outputs (B, C, H, W) or "
                f"(B, C, D, H, W); output {i} has shape {shape}"
            )
        size = tuple(out.shape[2:])
        n = len(size)
        if target.ndim < n + 1:
            raise ValueError(
                f"target shape {_shape(target)} has fewer than the {n} spatial dimensions "
                f"of output {i} (shape {_shape(out)}) plus a batch dimension"
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


# ----------------------------------------------------------------------------
# Modules
# ----------------------------------------------------------------------------


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
        _check_reduction(reduction)
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
        _check_reduction(reduction)
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


class BalancedBCEWithLogitsLoss(nn.Module):
    """Module form of :func:`balanced_bce_with_logits`; the options,
    ``check_inputs`` included, are fixed at construction.

    Examples
    --------
    >>> import torch
    >>> criterion = BalancedBCEWithLogitsLoss(reduction="pixel_mean")
    >>> target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    >>> round(criterion(torch.zeros(1, 1, 2, 2), target).item(), 4)  # 1.5 ln 2 / 4
    0.2599
    """

    def __init__(self, *, reduction: str = "sum", check_inputs: bool = True) -> None:
        super().__init__()
        _check_reduction(reduction)
        self.reduction = reduction
        self.check_inputs = check_inputs

    def forward(self, logits: Tensor, target: Tensor, weight: Tensor | None = None) -> Tensor:
        return balanced_bce_with_logits(
            logits, target, weight, reduction=self.reduction, check_inputs=self.check_inputs
        )

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, check_inputs={self.check_inputs}"


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
