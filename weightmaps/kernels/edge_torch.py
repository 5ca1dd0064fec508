"""The F3Net/PraNet edge weight map in torch: any device, one mask or a batch.

Box sums are running sums along each axis (exact integer sums for 0/1 and
one-hot masks), so the cost does not depend on the window; results equal
:func:`weightmaps.edge_weight_map` within 1e-5.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from weightmaps._shared.checks import check_classes_or_count, check_kernel_size
from weightmaps.kernels._torch_common import (
    ArrayLike,
    DeviceLike,
    any_tensor,
    budget_pixels,
    check_batch,
    in_groups,
    slabs,
    target_device,
    warn_if_volume_tensor,
    widen,
)

__all__ = ["edge_weight_map_torch", "edge_weight_map_torch_batch"]


def _box_sum_axis(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Sum over ``k`` entries centred on each along ``dim``, zero outside:
    the difference of two running sums, so the cost does not depend on k."""
    half = k // 2
    n = x.shape[dim]
    pad_shape = list(x.shape)
    pad_shape[dim] = half + 1  # one more leading zero: the sum "before" entry 0
    front = x.new_zeros(pad_shape)
    pad_shape[dim] = half
    sums = torch.cat([front, x, x.new_zeros(pad_shape)], dim).cumsum_(dim)
    return sums.narrow(dim, k, n) - sums.narrow(dim, 0, n)


def _box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    for dim in range(1, x.ndim):
        x = _box_sum_axis(x, dim, k)
    return x


def _exact_int_dtype(shape: Sequence[int], k: int) -> torch.dtype:
    """int32 running sums of a 0/1 mask are exact while the largest partial
    sum, (line + k) * k^(axes before), stays below 2^31."""
    worst = max((n + k) * k ** (len(shape) - 1) for n in shape)
    return torch.int32 if worst < 2**31 else torch.int64


def _edge_term(m: torch.Tensor, k: int, scale: float) -> torch.Tensor:
    """``|box_k(m) - m|`` in float32. An integer (0/1) ``m`` is summed exactly
    in integers; a soft one in float64, as the numba kernel accumulates."""
    box = _box_sum(m, k)
    if m.dtype.is_floating_point:
        return box.mul_(scale).sub_(m).abs_().to(torch.float32)
    return box.to(torch.float32).mul_(scale).sub_(m).abs_()


def _foreground_t(mask: torch.Tensor, ignore_index: int | None, int_dtype: torch.dtype):
    if mask.dtype == torch.bool:
        return mask.to(int_dtype)
    if mask.dtype.is_complex:
        raise TypeError(f"mask must be bool, integer or float, got dtype {mask.dtype}")
    if not mask.dtype.is_floating_point:
        fg = mask != 0
        if ignore_index is not None:
            fg &= mask != ignore_index
        return fg.to(int_dtype)
    lo, hi = torch.aminmax(mask)
    finite = bool(torch.isfinite(mask).all())
    if not finite or float(lo) < 0 or float(hi) > 1:
        raise ValueError("a float mask must be a soft foreground in [0, 1]")
    # Rounded to float32 first, as the CPU kernel reads it, summed in float64.
    return mask.to(torch.float32).to(torch.float64)


def _edge_batch(
    mask: torch.Tensor, k: int, alpha: float, classes: list[int] | None, ignore_index: int | None
) -> torch.Tensor:
    spatial = mask.shape[1:]
    scale = 1.0 / float(k) ** len(spatial)
    int_dtype = _exact_int_dtype(spatial, k)
    if classes is None:
        edge = _edge_term(_foreground_t(mask, ignore_index, int_dtype), k, scale)
    else:
        edge = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        for c in classes:
            torch.maximum(edge, _edge_term((mask == c).to(int_dtype), k, scale), out=edge)
    weights = edge.mul_(alpha).add_(1.0)
    if ignore_index is not None and not mask.dtype.is_floating_point and mask.dtype != torch.bool:
        weights.masked_fill_(mask == ignore_index, 0.0)
    return weights


def edge_weight_map_torch_batch(
    masks: ArrayLike,
    *,
    kernel_size: int = 31,
    alpha: float = 5.0,
    classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Edge weights ``1 + alpha * |box_k(m) - m|`` of a stack of same-shape masks.

    Parameters
    ----------
    masks : Tensor or ndarray, shape (B, *spatial)
        Binary (bool or int, nonzero = foreground), a soft float foreground
        in [0, 1], or with ``classes`` / ``num_classes`` integer class ids.
    kernel_size, alpha, classes, num_classes, ignore_index
        As :func:`weightmaps.edge_weight_map`.
    device, max_bytes
        As :func:`unet_weight_map_torch_batch`; slabs are cut along the first
        spatial axis with halos of ``kernel_size // 2``.

    Returns
    -------
    Tensor of float32, shape (B, *spatial)
        Equal to ``edge_weight_map`` on every mask within 1e-5 (the box is
        ``avg_pool{2,3}d(m, k, 1, k // 2)`` with zero padding counted).

    Examples
    --------
    >>> import torch
    >>> m = torch.zeros(2, 5, 5, dtype=torch.bool); m[0, 2, 2] = True
    >>> w = edge_weight_map_torch_batch(m, kernel_size=3, alpha=9.0)
    >>> float(w[0, 2, 2]), float(w[0, 1, 1]), float(w[1, 2, 2])
    (9.0, 2.0, 1.0)
    """
    target = target_device(masks, device)
    mask = widen(any_tensor(masks, target))
    check_batch(mask)
    check_classes_or_count(classes, num_classes)
    if num_classes is not None:
        classes = range(num_classes)
    check_kernel_size(kernel_size)
    class_list: list[int] | None = None
    if classes is not None:
        if mask.dtype.is_floating_point or mask.dtype == torch.bool:
            raise TypeError(f"a semantic mask must hold integer class ids, got {mask.dtype}")
        # An absent class has box(m) = m = 0 everywhere: skip it (one sync).
        present = set(torch.unique(mask).tolist())
        class_list = [
            int(c)
            for c in classes
            if int(c) in present and (ignore_index is None or c != ignore_index)
        ]
    out = torch.empty(mask.shape, dtype=torch.float32, device=target)
    budget = budget_pixels("edge", target, max_bytes)
    halo = kernel_size // 2

    def run_group(items: slice) -> None:
        out[items] = _edge_batch(mask[items], kernel_size, alpha, class_list, ignore_index)

    def run_slabbed(b: int) -> None:
        length = mask.shape[1]
        per_row = mask[b].numel() // length
        for lo, hi, a, z in slabs(length, per_row, halo, budget):
            part = _edge_batch(mask[b : b + 1, a:z], kernel_size, alpha, class_list, ignore_index)
            out[b, lo:hi] = part[0, lo - a : hi - a]

    in_groups(mask, budget, run_group, run_slabbed)
    return out


def edge_weight_map_torch(
    mask: ArrayLike,
    *,
    kernel_size: int = 31,
    alpha: float = 5.0,
    classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Edge weights of one mask on a torch device: :func:`weightmaps.edge_weight_map`.

    The box filter is two running sums per axis (exact integer sums for a
    0/1 mask), so its cost does not depend on ``kernel_size``. Parameters as
    :func:`edge_weight_map_torch_batch`, for a ``(*spatial)`` mask.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> w = edge_weight_map_torch(m, kernel_size=3, alpha=9.0)
    >>> float(w[2, 2]), float(w[1, 1]), float(w[0, 0])
    (9.0, 2.0, 1.0)
    """
    warn_if_volume_tensor(mask, "edge_weight_map")
    target = target_device(mask, device)
    t = any_tensor(mask, target)
    if t.ndim == 0 or t.numel() == 0:
        raise ValueError(f"mask must be a non-empty array, got shape {tuple(t.shape)}")
    return edge_weight_map_torch_batch(
        t[None],
        kernel_size=kernel_size,
        alpha=alpha,
        classes=classes,
        num_classes=num_classes,
        ignore_index=ignore_index,
        max_bytes=max_bytes,
    )[0]
