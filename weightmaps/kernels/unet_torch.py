"""The U-Net border weight map in torch: any device, one mask or a batch.

The two nearest *distinct* labels are separable like the plain distance
transform (see :mod:`weightmaps.kernels.nearest` for the proof). For every pixel each
pass keeps the two nearest sites with different labels, packed into one int64
key per site: the float32 squared distance's bit pattern in the high word
(non-negative floats order like their bits) and the label in the low word, so
"nearer" is one integer comparison and "same label" one comparison of the low
words. Missing sites are ``+inf`` with label ``-1`` (all ones).

- The first pass, along the axis with the finest spacing, finds for each
  pixel the nearest site on each side and the nearest one behind it with
  another label with running maxima (``cummax``) of positions: its cost does
  not depend on the cut-off.
- Every later pass merges, offset by offset, the pairs of the lines within
  the cut-off radius, ``ceil(cutoff / spacing)`` pixels each way, with
  elementwise operations on shifted slices: memory is a few tensors of the
  mask's size, whatever the number of offsets or instances.

A computed pair is always a pair of real sites with their exact distances,
so it can only be farther than the true pair; restricting the offsets to the
cut-off box leaves every pair with ``d1 + d2 < cutoff`` exact, and the term
is added exactly where ``d1 + d2 < cutoff`` (:func:`weightmaps.border_cutoff`),
as on the CPU.

Memory
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping, Sequence

import numpy as np
import torch

from weightmaps._shared.arrays import steps_within
from weightmaps._shared.checks import check_sigma, check_w0
from weightmaps.kernels._torch_common import (
    LABEL_WORD,
    ArrayLike,
    DeviceLike,
    bool_tensor,
    budget_pixels,
    check_batch,
    in_groups,
    label_tensor,
    slabs,
    target_device,
    warn_if_volume_tensor,
)
from weightmaps.kernels.border import border_cutoff, explicit_class_weights
from weightmaps.kernels.class_balance import class_weights
from weightmaps.kernels.nearest import axis_order, normalized_spacing

__all__ = ["unet_weight_map_torch", "unet_weight_map_torch_batch"]

# Pair keys: float32 bits of the squared distance << 32 | label (low 32 bits).
_INF_BITS = 0x7F800000
_MISSING = (_INF_BITS << 32) | LABEL_WORD
# Position of the high (distance) word in an int64 viewed as two int32/float32.
_HIGH_WORD = 1 if sys.byteorder == "little" else 0


def _pack(squared: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One int64 key per site: float32 bits of the distance, then the label."""
    bits = squared.to(torch.float32).view(torch.int32).to(torch.int64)
    return bits.bitwise_left_shift_(32).bitwise_or_(labels & LABEL_WORD)


def _squared_distance(keys: torch.Tensor) -> torch.Tensor:
    return (keys >> 32).to(torch.int32).view(torch.float32)


def _low_words(keys: torch.Tensor) -> torch.Tensor:
    """The labels of ``keys`` as a strided int32 view (no copy)."""
    return keys.view(torch.int32)[..., 1 - _HIGH_WORD :: 2]


def _plus_distance(keys: torch.Tensor, offset: float) -> torch.Tensor:
    """A copy of ``keys`` with ``offset`` added to every squared distance.

    Added to the float32 high words in place: +inf (missing) stays +inf and
    the labels are not touched.
    """
    out = keys.clone()
    out.view(torch.float32)[..., _HIGH_WORD::2].add_(offset)
    return out


def _merge_into(a1: torch.Tensor, a2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> None:
    """``(a1, a2)`` becomes the two nearest distinct labels of ``(a1, a2, b1, b2)``.

    Both pairs hold different labels and ``key1 < key2``. The nearest is
    ``min(a1, b1)``. If ``a1`` and ``b1`` share a label, the second is
    ``min(a2, b2)``; else it is ``min(loser, a2, b2)`` with ``loser =
    max(a1, b1)``: the loser's own second may share the winner's label, but
    it is farther than the loser and never wins. So minima and maxima only,
    no ``where`` (slow on CPU); ``a1`` and ``a2`` may be views, written in place.
    """
    same = _low_words(a1) == _low_words(b1)
    loser = torch.maximum(a1, b1)
    torch.minimum(a1, b1, out=a1)
    torch.minimum(a2, b2, out=a2)
    # A loser with the winner's label is no candidate: lift it to "missing".
    torch.maximum(loser, same * _MISSING, out=loser)
    torch.minimum(a2, loser, out=a2)


def _shift_one(x: torch.Tensor, dim: int, fill: int) -> torch.Tensor:
    """``out[i] = x[i - 1]`` along ``dim``, ``fill`` at ``i = 0``."""
    out = torch.full_like(x, fill)
    n = x.shape[dim]
    out.narrow(dim, 1, n - 1).copy_(x.narrow(dim, 0, n - 1))
    return out


def _scan_side(labels: torch.Tensor, dim: int, step2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of the nearest site at or before each pixel along ``dim``, and of
    the nearest one before it with another label.

    The foreground sites of a line fall into runs of one label; the second
    site is the last site before the start of the run holding the first.
    Both come from running maxima of positions, so the cost is linear.
    Positions are ``-1`` where there is none.
    """
    n = labels.shape[dim]
    view = [1] * labels.ndim
    view[dim] = n
    after = torch.arange(1, n + 1, device=labels.device).view(view)  # position + 1
    foreground = labels != 0
    p1 = torch.cummax(foreground * after - 1, dim).values
    # Labels with a -1 in front: gathering at position + 1 reads -1 for "none".
    pad_shape = list(labels.shape)
    pad_shape[dim] = 1
    padded = torch.cat([labels.new_full(pad_shape, -1), labels], dim)
    q1 = torch.gather(padded, dim, p1 + 1)
    del padded
    p1_before = _shift_one(p1, dim, -1)
    q1_before = _shift_one(q1, dim, -1)
    run_start = foreground & (labels != q1_before)
    del foreground
    start = torch.cummax(run_start * after - 1, dim).values.clamp_(min=0)
    del run_start
    # Before any run (start clamped to 0) both read the fill at i = 0: none.
    p2 = torch.gather(p1_before, dim, start)
    q2 = torch.gather(q1_before, dim, start)
    del start, p1_before, q1_before
    key1 = _site_keys(p1, q1, after, step2)
    del p1, q1
    return key1, _site_keys(p2, q2, after, step2)


def _site_keys(
    position: torch.Tensor, label: torch.Tensor, after: torch.Tensor, step2: float
) -> torch.Tensor:
    """Keys of the sites at ``position`` (-1: none) seen from each pixel of
    the line (``after`` = pixel position + 1)."""
    # float64 then rounded once to float32, as the numba kernel does.
    d = (after - 1 - position).to(torch.float64).square_().mul_(step2)
    return _pack(d.masked_fill_(position < 0, math.inf), label)


def _scan_pass(labels: torch.Tensor, dim: int, step2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First pass: the pair of each pixel along its line, from both sides."""
    k1, k2 = _scan_side(labels, dim, step2)
    r1, r2 = _scan_side(labels.flip(dim), dim, step2)
    _merge_into(k1, k2, r1.flip(dim), r2.flip(dim))
    return k1, k2


def _window_pass(
    k1: torch.Tensor, k2: torch.Tensor, dim: int, reach: int, step2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Later pass: merge the pairs of the lines at offsets ``1..reach`` along
    ``dim`` into each pixel's pair. Elementwise work on shifted slices: a
    site beyond the edge is simply not offered (the "missing" padding)."""
    n = k1.shape[dim]
    o1, o2 = k1.clone(), k2.clone()
    for o in range(1, min(reach, n - 1) + 1):
        c1 = _plus_distance(k1, o * o * step2)
        c2 = _plus_distance(k2, o * o * step2)
        m = n - o
        # Pixel i sees the line at i - o, then the one at i + o.
        lo1, lo2 = o1.narrow(dim, o, m), o2.narrow(dim, o, m)
        _merge_into(lo1, lo2, c1.narrow(dim, 0, m), c2.narrow(dim, 0, m))
        hi1, hi2 = o1.narrow(dim, 0, m), o2.narrow(dim, 0, m)
        _merge_into(hi1, hi2, c1.narrow(dim, o, m), c2.narrow(dim, o, m))
        del c1, c2
    return o1, o2


def _pair_keys(
    labels: torch.Tensor, spacing: np.ndarray, cutoff: float, axes: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of the two nearest distinct sites after the passes along ``axes``
    (spatial axes; the batch axis 0 is never crossed)."""
    first = axes[0]
    k1, k2 = _scan_pass(labels, first + 1, float(spacing[first] ** 2))
    for axis in axes[1:]:
        reach = steps_within(cutoff, spacing[axis])
        k1, k2 = _window_pass(k1, k2, axis + 1, reach, float(spacing[axis] ** 2))
    return k1, k2


def _add_border(
    labels: torch.Tensor,
    out: torch.Tensor,
    spacing: np.ndarray,
    w0: float,
    sigma: float,
    cutoff: float,
    axes: list[int],
) -> None:
    """``out += w0 exp(-(d1 + d2)^2 / 2 sigma^2)`` where ``d1 + d2 < cutoff``,
    on background pixels with a second instance."""
    k1, k2 = _pair_keys(labels, spacing, cutoff, axes)
    s = _squared_distance(k1).sqrt() + _squared_distance(k2).sqrt()
    del k1
    found = (k2 != _MISSING) & (labels == 0) & (s < cutoff)
    del k2
    term = s.square_().mul_(-1.0 / (2.0 * sigma * sigma)).exp_().mul_(w0)
    out.add_(torch.where(found, term, 0.0))


def _border_term(
    labels: torch.Tensor,
    out: torch.Tensor,
    *,
    w0: float,
    sigma: float,
    spacing: np.ndarray,
    budget_pixels: int,
) -> None:
    """Add the border term to ``out`` (both ``(B, *spatial)``), in groups of
    masks or in slabs along the last pass's axis that fit ``budget_pixels``.

    Every pass but the last is independent along the last pass's axis, which
    looks at most ``reach`` lines away: a slab grown by that halo gives the
    same values as the whole mask.
    """
    cutoff = border_cutoff(sigma)
    axes = axis_order(spacing)
    ndim = labels.ndim - 1

    def run_group(items: slice) -> None:
        _add_border(labels[items], out[items], spacing, w0, sigma, cutoff, axes)

    def run_slabbed(b: int) -> None:
        if ndim == 1:  # a line: the scan pass only, nothing to split across
            run_group(slice(b, b + 1))
            return
        axis = axes[-1]
        length = labels.shape[axis + 1]
        halo = steps_within(cutoff, spacing[axis])
        per_row = labels[b].numel() // length
        for lo, hi, a, z in slabs(length, per_row, halo, budget_pixels):
            slab = labels[b : b + 1].narrow(axis + 1, a, z - a).contiguous()
            part = torch.zeros(slab.shape, dtype=torch.float32, device=slab.device)
            _add_border(slab, part, spacing, w0, sigma, cutoff, axes)
            out[b : b + 1].narrow(axis + 1, lo, hi - lo).add_(
                part.narrow(axis + 1, lo - a, hi - lo)
            )
            del slab, part

    in_groups(labels, budget_pixels, run_group, run_slabbed)


def _per_class_values(
    foreground: torch.Tensor,
    class_weights_: Mapping[int, float] | str | None,
    ignore: torch.Tensor | None,
) -> tuple[list[float], list[float]] | None:
    """Background and foreground ``w_c`` of every mask (None: 1 everywhere),
    as the CPU kernel's ``_base_weights`` computes them."""
    batch = foreground.shape[0]
    if class_weights_ is None:
        return None
    if isinstance(class_weights_, str):
        if class_weights_ != "balanced":
            raise ValueError(
                f"class_weights must be a mapping, 'balanced' or None, got {class_weights_!r}"
            )
        counted = torch.ones_like(foreground) if ignore is None else ~ignore
        dims = tuple(range(1, foreground.ndim))
        n1 = (foreground & counted).sum(dims)
        n0 = counted.sum(dims) - n1
        counts = torch.stack([n0, n1], 1).tolist()  # tiny: to the host
        bg, fg = [], []
        for n0_, n1_ in counts:
            w = {0: 1.0, 1: 1.0, **class_weights({0: n0_, 1: n1_}, "inverse")}
            bg.append(w[0])
            fg.append(w[1])
        return bg, fg
    weights = explicit_class_weights(class_weights_)
    return [weights[0]] * batch, [weights[1]] * batch


def unet_weight_map_torch_batch(
    instances: ArrayLike,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | str | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: ArrayLike | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """U-Net border weight maps of a stack of same-shape instance masks.

    Parameters
    ----------
    instances : Tensor or ndarray of int, shape (B, *spatial)
        Instance labels, 0 = background, ids need not be contiguous; each
        mask is independent (ids may repeat across masks).
    w0, sigma, class_weights, spacing
        As :func:`weightmaps.unet_weight_map`; ``spacing`` is per spatial
        axis and shared by the batch, ``"balanced"`` counts each mask alone.
    ignore_mask : Tensor or ndarray of bool, shape (B, *spatial), optional
        Pixels that get weight 0.
    device : torch.device or str, optional
        Where to compute. Default: the input tensor's device (CPU for numpy).
    max_bytes : int, optional
        Working-memory budget (default :func:`default_max_bytes`): masks are
        done in groups, and a mask too large alone in slabs, to fit it.

    Returns
    -------
    Tensor of float32, shape (B, *spatial)
        Equal to ``unet_weight_map`` on every mask within ``1e-5 * w0``.

    Examples
    --------
    >>> import torch
    >>> labels = torch.tensor([[[1, 0, 2]], [[3, 0, 0]]])
    >>> w = unet_weight_map_torch_batch(labels)
    >>> round(float(w[0, 0, 1]), 4), float(w[1, 0, 1])
    (10.2312, 1.0)
    """
    target = target_device(instances, device)
    labels = label_tensor(instances, target)
    check_batch(labels)
    ignore = None
    if ignore_mask is not None:
        ignore = bool_tensor(ignore_mask, labels.shape, target, "ignore_mask")
    return _unet_batch(labels, ignore, w0, sigma, class_weights, spacing, max_bytes)


def _unet_batch(
    labels: torch.Tensor,
    ignore: torch.Tensor | None,
    w0: float,
    sigma: float,
    class_weights_: Mapping[int, float] | str | None,
    spacing: float | Sequence[float] | None,
    max_bytes: int | None,
) -> torch.Tensor:
    """The U-Net maps of validated ``(B, *spatial)`` int64 labels."""
    check_w0(w0)
    check_sigma(sigma)
    spacing_ = normalized_spacing(spacing, labels.ndim - 1)
    foreground = labels != 0
    values = _per_class_values(foreground, class_weights_, ignore)
    if values is None:
        out = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    else:
        view = (-1,) + (1,) * (labels.ndim - 1)
        bg = torch.tensor(values[0], dtype=torch.float32, device=labels.device).view(view)
        fg = torch.tensor(values[1], dtype=torch.float32, device=labels.device).view(view)
        out = torch.where(foreground, fg, bg)
    del foreground
    if w0 > 0:
        budget = budget_pixels("unet", labels.device, max_bytes)
        _border_term(labels, out, w0=w0, sigma=sigma, spacing=spacing_, budget_pixels=budget)
    if ignore is not None:
        out.masked_fill_(ignore, 0.0)
    return out


def unet_weight_map_torch(
    instances: ArrayLike,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | str | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: ArrayLike | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """U-Net border weight map of one instance mask, on a torch device.

    ``w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels with
    at least two instances, ``w_c`` elsewhere, 0 on ignored pixels: the map
    of :func:`weightmaps.unet_weight_map`, equal to it within ``1e-5 * w0``
    (the term is dropped where ``d1 + d2 >= border_cutoff(sigma)``, as there).

    Parameters
    ----------
    instances : Tensor or ndarray of int, shape (*spatial)
        2-D or 3-D instance labels, 0 = background.
    w0, sigma, class_weights, spacing, ignore_mask
        As :func:`weightmaps.unet_weight_map`.
    device, max_bytes
        As :func:`unet_weight_map_torch_batch`.

    Returns
    -------
    Tensor of float32
        Same shape as ``instances``, on the input tensor's device (the CPU
        for a numpy array) unless ``device`` says otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> w = unet_weight_map_torch(np.array([[1, 0, 2]]), w0=10, sigma=5)
    >>> w.dtype, float(w[0, 0]), round(float(w[0, 1]), 4)
    (torch.float32, 1.0, 10.2312)
    """
    warn_if_volume_tensor(instances, "unet_weight_map")
    target = target_device(instances, device)
    labels = label_tensor(instances, target)
    ignore = None
    if ignore_mask is not None:
        ignore = bool_tensor(ignore_mask, labels.shape, target, "ignore_mask")[None]
    return _unet_batch(labels[None], ignore, w0, sigma, class_weights, spacing, max_bytes)[0]
