"""Class counts and the class-balance weight map in torch: any device, one mask or a batch."""

from __future__ import annotations

from collections.abc import Mapping

import torch

from weightmaps.kernels._torch_common import (
    ArrayLike,
    DeviceLike,
    any_tensor,
    check_batch,
    target_device,
    warn_if_volume_tensor,
    widen,
)
from weightmaps.kernels.class_balance import ClassCounts, check_balance_mode, class_weights

__all__ = [
    "balance_weight_map_torch",
    "balance_weight_map_torch_batch",
    "class_counts_torch_batch",
]


# Class ids below this are counted with bincount (linear); others are sorted.
_DENSE_IDS = 1 << 16


def _class_tensor(masks: ArrayLike, device: torch.device) -> torch.Tensor:
    mask = widen(any_tensor(masks, device))
    if mask.dtype == torch.bool:
        return mask.to(torch.int64)
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(
            f"class-balance weights need integer class ids, got dtype {mask.dtype}; "
            "threshold a float mask first"
        )
    return mask.to(torch.int64)


def _bins(mask: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The class ids of the batch (sorted) and every pixel's index among them."""
    lo, hi = (int(v) for v in torch.aminmax(mask))
    if lo >= 0 and hi < _DENSE_IDS:
        return list(range(hi + 1)), mask
    classes, inverse = torch.unique(mask, return_inverse=True)
    return classes.tolist(), inverse


def _histograms(index: torch.Tensor, n_bins: int, counted: torch.Tensor | None) -> list[list[int]]:
    """Pixels per bin of every mask: one bincount over (mask, bin), one sync."""
    batch = index.shape[0]
    flat = index.reshape(batch, -1) + torch.arange(batch, device=index.device)[:, None] * n_bins
    if counted is not None:
        flat = torch.where(counted.reshape(batch, -1), flat, batch * n_bins)  # a spare bin
    counts = torch.bincount(flat.reshape(-1), minlength=batch * n_bins + 1)
    return counts[: batch * n_bins].view(batch, n_bins).tolist()


def _counts_of(classes: list[int], histogram: list[int]) -> ClassCounts:
    """``class_counts`` of one mask from its histogram."""
    pixels = {c: n for c, n in zip(classes, histogram, strict=True) if n > 0}
    total = int(sum(pixels.values()))
    return ClassCounts(pixels=pixels, image_pixels={c: total for c in pixels})


def class_counts_torch_batch(
    masks: ArrayLike, *, ignore_index: int | None = None, device: DeviceLike = None
) -> list[ClassCounts]:
    """:func:`weightmaps.class_counts` of every mask of a ``(B, *spatial)`` stack.

    Counted on the device; the counts (a few numbers per class) come to the
    host in one transfer. Sum them for dataset scope.

    Examples
    --------
    >>> import torch
    >>> [c.pixels for c in class_counts_torch_batch(torch.tensor([[0, 1, 1], [0, 0, 255]]),
    ...                                             ignore_index=255)]
    [{0: 1, 1: 2}, {0: 2}]
    """
    mask = _class_tensor(masks, target_device(masks, device))
    check_batch(mask)
    classes, index = _bins(mask)
    counted = None if ignore_index is None else mask != ignore_index
    return [_counts_of(classes, h) for h in _histograms(index, len(classes), counted)]


def _lookup_table(
    classes: list[int],
    weights: Mapping[int, float],
    present: list[bool],
    ignore_index: int | None,
) -> list[float]:
    """Weight per bin, 0 for the ignore value; refuse a present class without one."""
    table, missing = [], []
    for c, here in zip(classes, present, strict=True):
        if ignore_index is not None and c == ignore_index:
            table.append(0.0)
        elif c in weights:
            table.append(float(weights[c]))
        else:
            table.append(0.0)
            if here:
                missing.append(c)
    if missing:
        raise ValueError(
            f"class(es) {missing} occur in the mask but have no count or weight; "
            "dataset counts must include every mask they are applied to"
        )
    return table


def balance_weight_map_torch_batch(
    masks: ArrayLike,
    *,
    mode: str = "inverse",
    ignore_index: int | None = None,
    counts: ClassCounts | Mapping[int, int] | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Class-balance weights ``w(x) = w_class(x)`` of a stack of same-shape masks.

    Parameters
    ----------
    masks : Tensor or ndarray of int or bool, shape (B, *spatial)
        Class ids.
    mode, ignore_index
        As :func:`weightmaps.balance_weight_map`.
    counts : ClassCounts or mapping, optional
        Counts shared by every mask (dataset scope). Default: each mask's own
        counts (image scope), as ``balance_weight_map`` without ``counts``.
    device : torch.device or str, optional
        As :func:`unet_weight_map_torch_batch`.

    Returns
    -------
    Tensor of float32, shape (B, *spatial)
        Equal to ``balance_weight_map`` on every mask. The per-class weights
        come from :func:`weightmaps.class_weights` on the host (the counts
        are a few numbers); the map is painted on the device from a table.

    Examples
    --------
    >>> import torch
    >>> balance_weight_map_torch_batch(torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1]]))
    tensor([[0.6667, 0.6667, 0.6667, 2.0000],
            [2.0000, 0.6667, 0.6667, 0.6667]])
    """
    check_balance_mode(mode)
    target = target_device(masks, device)
    mask = _class_tensor(masks, target)
    check_batch(mask)
    classes, index = _bins(mask)
    counted = None if ignore_index is None else mask != ignore_index
    histograms = _histograms(index, len(classes), counted)
    batch = mask.shape[0]
    if counts is not None:
        weights = class_weights(counts, mode)
        anywhere = [any(h[i] > 0 for h in histograms) for i in range(len(classes))]
        table = _lookup_table(classes, weights, anywhere, ignore_index)
        lut = torch.tensor(table, dtype=torch.float32, device=target)
        return lut[index]
    rows = []
    for h in histograms:
        weights = class_weights(_counts_of(classes, h), mode)
        rows.append(_lookup_table(classes, weights, [n > 0 for n in h], ignore_index))
    lut = torch.tensor(rows, dtype=torch.float32, device=target)
    flat = index.reshape(batch, -1)
    return torch.gather(lut, 1, flat).view(mask.shape)


def balance_weight_map_torch(
    mask: ArrayLike,
    *,
    mode: str = "inverse",
    ignore_index: int | None = None,
    counts: ClassCounts | Mapping[int, int] | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Class-balance weights of one mask on a torch device: :func:`weightmaps.balance_weight_map`.

    Parameters as :func:`balance_weight_map_torch_batch`, for one ``(*spatial)``
    mask; without ``counts`` the mask's own counts are used.

    Examples
    --------
    >>> import numpy as np
    >>> balance_weight_map_torch(np.array([[0, 0, 0, 1]]))
    tensor([[0.6667, 0.6667, 0.6667, 2.0000]])
    """
    warn_if_volume_tensor(mask, "balance_weight_map")
    target = target_device(mask, device)
    t = _class_tensor(mask, target)
    if t.ndim == 0 or t.numel() == 0:
        raise ValueError(f"mask must be a non-empty array, got shape {tuple(t.shape)}")
    return balance_weight_map_torch_batch(
        t[None], mode=mode, ignore_index=ignore_index, counts=counts
    )[0]
