"""Edge weights of the F3Net / PraNet structure loss.

``weit = 1 + alpha * |box_k(m) - m|`` where ``box_k`` is the mean over a k^d
window with zero padding, always divided by k^d: exactly
``F.avg_pool2d(m, k, stride=1, padding=k // 2)`` (``avg_pool3d`` in 3-D) with
its default ``count_include_pad=True``, so foreground at the image edge gets
extra weight.

The map depends on resolution: F3Net and PraNet compute it on the mask after
resizing to the training size (352 x 352 in PraNet). A map computed at the
native size and then resized is a different map; compute it on the mask at
the size the network will see.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from weightmaps._shared.arrays import ArrayOrTensor, is_torch_tensor, line_view
from weightmaps._shared.checks import check_classes_or_count, check_kernel_size, check_nonempty
from weightmaps._shared.threads import map_parts, run_parts, split_range, threads_for
from weightmaps.kernels._box_nb import (
    box_sum_pass,
    box_sum_pass_part,
    edge_term,
    edge_weights_in_place,
)

__all__ = ["box_sum", "edge_weight_map"]


def box_sum(values: np.ndarray, kernel_size: int) -> np.ndarray:
    """Sum over a ``kernel_size``-wide cube centred on each pixel, zero outside.

    Separable running sums (float64 accumulators, float32 result): the cost
    does not depend on ``kernel_size``. Divided by ``kernel_size ** ndim``
    this is ``avg_pool{1,2,3}d(values, k, stride=1, padding=k // 2)`` with
    ``count_include_pad=True``.
    """
    check_kernel_size(kernel_size)
    current = np.ascontiguousarray(values, dtype=np.float32)
    threads = threads_for(current.size)
    # Two buffers alternate between passes; the input is never written.
    buffers: list[np.ndarray | None] = [np.empty_like(current), None]
    for axis in range(current.ndim):
        out = buffers[axis % 2]
        if out is None:
            out = buffers[1] = np.empty_like(current)
        _box_sum_pass(line_view(current, axis), line_view(out, axis), kernel_size, threads)
        current = out
    return current


def _box_sum_pass(src: np.ndarray, dst: np.ndarray, kernel_size: int, threads: int) -> None:
    """One pass, split across ``threads``: by outer lines, or by inner ones when
    the view has too few outer lines (the first pass of a 2-D image)."""
    n_outer, _, n_inner = src.shape
    if n_outer >= threads or n_inner == 1:
        run_parts(
            lambda p: box_sum_pass(src[p[0] : p[1]], dst[p[0] : p[1]], kernel_size),
            split_range(n_outer, threads),
            threads,
        )
    else:
        run_parts(
            lambda p: box_sum_pass_part(src, dst, kernel_size, *p),
            split_range(n_inner, threads, align=64),
            threads,
        )


def _foreground(mask: np.ndarray, ignore_index: int | None) -> np.ndarray:
    if mask.dtype == bool:
        return mask.astype(np.float32)
    if np.issubdtype(mask.dtype, np.integer):
        out = np.empty(mask.shape, np.float32)
        flat_mask, flat_out = mask.reshape(-1), out.reshape(-1)

        def part(lo: int, hi: int) -> None:
            values = flat_mask[lo:hi]
            fg = values != 0
            if ignore_index is not None:
                fg &= values != ignore_index
            flat_out[lo:hi] = fg

        map_parts(part, flat_mask.size)
        return out
    if not np.issubdtype(mask.dtype, np.floating):
        raise TypeError(f"mask must be bool, integer or float, got dtype {mask.dtype}")
    if not np.all(np.isfinite(mask)) or mask.min() < 0 or mask.max() > 1:
        raise ValueError("a float mask must be a soft foreground in [0, 1]")
    # float32 keeps a soft mask to 6e-8, far inside the 1e-5 contract.
    return np.ascontiguousarray(mask, dtype=np.float32)


def edge_weight_map(
    mask: ArrayOrTensor,
    *,
    kernel_size: int = 31,
    alpha: float = 5.0,
    classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
) -> ArrayOrTensor:
    """Edge weights ``1 + alpha * |box_k(m) - m|`` of the F3Net/PraNet loss.

    Parameters
    ----------
    mask : ndarray or Tensor
        2-D or 3-D. Binary (bool or int, nonzero = foreground) or a soft
        float foreground in [0, 1]. With ``classes`` or ``num_classes``, an
        integer semantic mask.
    kernel_size : int
        Odd window width k (31 in F3Net and PraNet).
    alpha : float
        Weight of the edge term (5 in F3Net and PraNet).
    classes : sequence of int, optional
        Semantic mask: the class ids to one-hot; the map is
        ``1 + alpha * max_c |box(m_c) - m_c|``.
    num_classes : int, optional
        Shorthand for ``classes=range(num_classes)``.
    ignore_index : int, optional
        Pixels of this value belong to no class (nor to the foreground) and
        get weight 0.

    Returns
    -------
    ndarray or Tensor of float32
        Same shape as ``mask``. A torch tensor in gives a float32 tensor on
        its device (:mod:`weightmaps.torch_kernels`).

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> w = edge_weight_map(m, kernel_size=3, alpha=9.0)
    >>> float(w[2, 2]), float(w[1, 1]), float(w[0, 0])
    (9.0, 2.0, 1.0)
    """
    if is_torch_tensor(mask):
        from weightmaps.kernels.edge_torch import edge_weight_map_torch

        return edge_weight_map_torch(
            mask,
            kernel_size=kernel_size,
            alpha=alpha,
            classes=classes,
            num_classes=num_classes,
            ignore_index=ignore_index,
        )
    mask = np.asarray(mask)
    check_nonempty(mask.shape, "mask")
    check_classes_or_count(classes, num_classes)
    if num_classes is not None:
        classes = range(num_classes)
    check_kernel_size(kernel_size)
    scale = 1.0 / float(kernel_size) ** mask.ndim
    if classes is None:
        m = _foreground(mask, ignore_index)
        weights = box_sum(m, kernel_size)
        flat_weights, flat_m = weights.ravel(), m.ravel()
        alpha = float(alpha)
        map_parts(
            lambda lo, hi: edge_weights_in_place(flat_weights[lo:hi], flat_m[lo:hi], scale, alpha),
            m.size,
        )
    else:
        if not np.issubdtype(mask.dtype, np.integer):
            raise TypeError(f"a semantic mask must hold integer class ids, got {mask.dtype}")
        edge = np.zeros(mask.size, np.float32)
        for c in classes:
            if ignore_index is not None and c == ignore_index:
                continue
            m = (mask == c).astype(np.float32)
            if not m.any():
                continue  # an absent class has box(m) = m = 0 everywhere
            edge_term(box_sum(m, kernel_size).ravel(), m.ravel(), scale, edge)
        weights = edge.reshape(mask.shape)
        weights *= alpha
        weights += 1.0
    if ignore_index is not None and np.issubdtype(mask.dtype, np.integer):
        weights[mask == ignore_index] = 0.0
    return weights
