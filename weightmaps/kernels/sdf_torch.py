"""Exact Euclidean distance transform and signed distance maps on a torch device.

The maps of :mod:`weightmaps.sdf`, as whole-tensor torch operations, so they
run on a GPU (or on the CPU through torch), one mask or a batch at once, and
so a loss can measure the distances of its own prediction where the
prediction lives (:func:`weightmaps.distance_losses.hausdorff_dt_loss`).

The transform
-------------
Squared Euclidean distance is separable: the squared distance from ``x`` to
the nearest site is ``min over y of sum_a (x_a - y_a)^2 s_a^2``, which can be
taken one axis at a time (the lower envelope of Felzenszwalb & Huttenlocher,
and of scipy's exact transform):

- the first pass, along the axis with the finest spacing, finds each pixel's
  nearest site on its own line, from running maxima (``cummax``) of site
  positions from both ends: linear, whatever the distances;
- every later pass takes ``g'(i) = min over o of g(i + o) + (o s)^2`` along
  its axis, offset by offset, with elementwise minima over shifted slices.
  An offset with ``(o s)^2`` at or above every pixel's current value cannot
  lower any of them, so the pass stops there: its cost is the image size
  times the largest distance in the image (not its length), checked every
  few offsets with one device sync. Lines that hold no site yet (empty rows
  of a 3-D slab) do not hold it open.

Each pass keeps, for every pixel, the exact minimum over the sites seen so
far, so the result is exact (the same sites and sums as scipy's), not an
approximation. With ``max_distance`` the later passes stop at offsets beyond
it: every distance up to ``max_distance`` is still exact (each axis's part of
such a distance is within it), the rest are only known to exceed it.

Squared distances are summed in float32 when they are whole numbers below
2^24 (unit spacing and lines shorter than ~2900 pixels in 2-D), else in
float64; square roots and the maps in float64, then rounded once to float32,
as the numpy kernels round scipy's float64 results.

This module imports torch; ``import weightmaps`` does not.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from weightmaps.kernels.sdf import class_ids, sdf_halo

__all__ = [
    "boundary_distance_map_torch",
    "boundary_distance_map_torch_batch",
    "distance_transform_edt_torch",
    "distance_transform_edt_torch_batch",
    "sdf_halo",
    "signed_distance_map_torch",
    "signed_distance_map_torch_batch",
]

ArrayLike = torch.Tensor | np.ndarray
DeviceLike = torch.device | str | None

# Squared distances that are whole numbers below this are exact in float32.
_FLOAT32_EXACT = float(1 << 24)


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def _target_device(x: object, device: DeviceLike) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return torch.device("cpu")


def _tensor(mask: ArrayLike, device: torch.device, name: str) -> torch.Tensor:
    """An integer or bool tensor on ``device`` (unsigned 16/32/64-bit widened)."""
    if isinstance(mask, torch.Tensor):
        t = mask
        if t.dtype in (torch.uint16, torch.uint32, torch.uint64):
            t = t.to(torch.int64)
    else:
        array = np.asarray(mask)
        if array.dtype in (np.uint16, np.uint32, np.uint64):
            if array.size and int(array.max()) > np.iinfo(np.int64).max:
                raise ValueError(f"{name}: uint64 ids beyond the int64 range are not supported")
            array = array.astype(np.int64)
        t = torch.from_numpy(np.ascontiguousarray(array))
    if t.dtype.is_floating_point or t.dtype.is_complex:
        raise TypeError(f"{name} must be an integer or boolean array, got dtype {t.dtype}")
    if t.numel() == 0:
        raise ValueError(f"{name} must be non-empty, got shape {tuple(t.shape)}")
    return t.to(device)


def _batch(t: torch.Tensor, name: str) -> None:
    if t.ndim < 2:
        raise ValueError(
            f"{name} must be (B, *spatial) with at least one spatial axis, got shape "
            f"{tuple(t.shape)}"
        )


def _spacing(spacing: float | Sequence[float] | None, ndim: int) -> tuple[float, ...]:
    if spacing is None:
        return (1.0,) * ndim
    values = np.broadcast_to(np.asarray(spacing, dtype=np.float64), (ndim,))
    if not np.all(np.isfinite(values)) or np.any(values <= 0):
        raise ValueError(f"spacing must be positive and finite, got {spacing!r}")
    return tuple(float(v) for v in values)


def _check_max_distance(max_distance: float | None) -> None:
    if max_distance is not None and not (max_distance > 0 and math.isfinite(max_distance)):
        raise ValueError(f"max_distance must be finite and > 0, got {max_distance}")


# ----------------------------------------------------------------------------
# The transform
# ----------------------------------------------------------------------------


def _work_dtype(shape: Sequence[int], spacing: tuple[float, ...]) -> torch.dtype:
    if all(s == 1.0 for s in spacing) and sum(n * n for n in shape) < _FLOAT32_EXACT:
        return torch.float32
    return torch.float64


def _line_pass(sites: torch.Tensor, dim: int, step: float, dtype: torch.dtype) -> torch.Tensor:
    """Squared distance to the nearest site on each pixel's line along ``dim``
    (inf where the line holds none)."""
    n = sites.shape[dim]
    view = [1] * sites.ndim
    view[dim] = n
    position = torch.arange(n, device=sites.device).view(view)
    none = torch.tensor(-1, device=sites.device)
    before = torch.cummax(torch.where(sites, position, none), dim).values
    after = torch.cummax(torch.where(sites.flip(dim), position, none), dim).values
    gap_before = torch.where(before >= 0, position - before, 2 * n)
    gap_after = torch.where(after >= 0, position - after, 2 * n).flip(dim)
    del before, after
    gap = torch.minimum(gap_before, gap_after)
    del gap_before, gap_after
    squared = gap.to(dtype).mul_(step).square_()
    return squared.masked_fill_(gap >= 2 * n, math.inf)


def _envelope_pass(g: torch.Tensor, dim: int, step: float, cap: float) -> torch.Tensor:
    """``min over o of g(i + o) + (o step)^2`` along ``dim`` for offsets with
    ``(o step)^2 <= cap`` that can still lower some pixel."""
    n = g.shape[dim]
    out = g.clone()
    holds_site = torch.isfinite(g).any(dim, keepdim=True)

    def largest() -> float:
        # Lines without a site stay at inf whatever the offset: leave them out.
        return float(torch.where(holds_site, out, 0.0).amax())

    bound = largest()
    check = 2
    for o in range(1, n):
        added = (o * step) ** 2
        if added >= bound or added > cap:
            break
        m = n - o
        # Pixel i sees the line at i - o, then the one at i + o.
        lower = out.narrow(dim, o, m)
        torch.minimum(lower, g.narrow(dim, 0, m) + added, out=lower)
        upper = out.narrow(dim, 0, m)
        torch.minimum(upper, g.narrow(dim, o, m) + added, out=upper)
        if o == check:
            bound = largest()
            check = min(2 * check, check + 32)
    return out


def _squared_edt(
    sites: torch.Tensor, spacing: tuple[float, ...], max_distance: float | None
) -> torch.Tensor:
    """Squared distance from every pixel of ``sites`` (B, *spatial) to the nearest
    True pixel of its own item (0 on sites, inf in an item without sites).

    Exact up to ``max_distance``; beyond it, some value above it.
    """
    spatial = sites.shape[1:]
    dtype = _work_dtype(spatial, spacing)
    cap = math.inf if max_distance is None else float(max_distance) ** 2
    axes = sorted(range(len(spatial)), key=lambda a: (spacing[a], -a))
    g = _line_pass(sites, axes[0] + 1, spacing[axes[0]], dtype)
    for axis in axes[1:]:
        g = _envelope_pass(g, axis + 1, spacing[axis], cap)
    return g


def distance_transform_edt_torch_batch(
    masks: ArrayLike,
    *,
    spacing: float | Sequence[float] | None = None,
    max_distance: float | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Distance from every True pixel to the nearest False pixel, per mask of a stack.

    ``scipy.ndimage.distance_transform_edt(mask, sampling=spacing)`` of every
    ``(*spatial)`` mask of a ``(B, *spatial)`` stack, exact, on any torch
    device.

    Parameters
    ----------
    masks : Tensor or ndarray of bool or int, shape (B, *spatial)
        Nonzero is True.
    spacing : float or sequence of float, optional
        Pixel size along each spatial axis.
    max_distance : float, optional
        Distances beyond this are reported as ``max_distance`` (those up to it
        are exact); the transform then costs the image size times this
        distance at most.
    device : torch.device or str, optional
        Where to compute. Default: the input tensor's device (CPU for numpy).

    Returns
    -------
    Tensor of float32, shape (B, *spatial)
        0 on False pixels. A mask with no False pixel gets ``inf`` everywhere
        (scipy measures to a point outside the array there).

    Examples
    --------
    >>> import torch
    >>> distance_transform_edt_torch_batch(torch.tensor([[[1, 1, 1, 0, 1]]]))
    tensor([[[3., 2., 1., 0., 1.]]])
    """
    target = _target_device(masks, device)
    t = _tensor(masks, target, "masks")
    _batch(t, "masks")
    _check_max_distance(max_distance)
    sampling = _spacing(spacing, t.ndim - 1)
    d = _squared_edt(t == 0, sampling, max_distance).to(torch.float64).sqrt_()
    if max_distance is not None:
        d.clamp_(max=float(max_distance))
    return d.to(torch.float32)


def distance_transform_edt_torch(
    mask: ArrayLike,
    *,
    spacing: float | Sequence[float] | None = None,
    max_distance: float | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """:func:`distance_transform_edt_torch_batch` of one ``(*spatial)`` mask.

    Examples
    --------
    >>> import numpy as np
    >>> distance_transform_edt_torch(np.array([[1, 1], [1, 0]]))
    tensor([[1.4142, 1.0000],
            [1.0000, 0.0000]])
    """
    target = _target_device(mask, device)
    t = _tensor(mask, target, "mask")
    batch = distance_transform_edt_torch_batch(t[None], spacing=spacing, max_distance=max_distance)
    return batch[0]


# ----------------------------------------------------------------------------
# Signed and boundary distance maps
# ----------------------------------------------------------------------------


def _classes(
    labels: torch.Tensor, classes: Sequence[int] | None, ignore_index: int | None
) -> list[int]:
    if classes is not None:
        return class_ids(np.zeros(1, np.uint8), classes, ignore_index)
    present = torch.unique(labels).tolist()  # one sync
    return class_ids(np.asarray(present, np.int64), None, ignore_index)


def _class_distances(
    labels: torch.Tensor, c: int, spacing: tuple[float, ...], max_distance: float | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``inside``, the float64 distance to the other side of the boundary
    (to the class outside it, ``EDT(S)`` inside it), and which items hold
    the class and which it fills."""
    inside = labels == c
    batch = labels.shape[0]
    both = _squared_edt(torch.cat([inside, ~inside]), spacing, max_distance)
    d = torch.where(inside, both[batch:], both[:batch]).to(torch.float64).sqrt_()
    del both
    flat = inside.reshape(batch, -1)
    view = (batch,) + (1,) * (labels.ndim - 1)
    return inside, d, flat.any(1).view(view), flat.all(1).view(view)


def _labels_batch(labels: ArrayLike, device: DeviceLike) -> torch.Tensor:
    target = _target_device(labels, device)
    t = _tensor(labels, target, "labels")
    _batch(t, "labels")
    return t


def signed_distance_map_torch_batch(
    labels: ArrayLike,
    *,
    classes: Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    max_distance: float | None = None,
    block: bool = False,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Signed distance maps of a stack of same-shape masks.

    Parameters
    ----------
    labels : Tensor or ndarray of int or bool, shape (B, *spatial)
        Class ids, or a 0/1 foreground.
    classes : sequence of int, optional
        Default: the ids present in the whole batch but 0 and
        ``ignore_index`` (a mask without one of them gets 0 for it, as
        :func:`weightmaps.sdf.signed_distance_map` gives for an absent
        listed class).
    spacing, ignore_index, max_distance, block
        As :func:`weightmaps.sdf.signed_distance_map`; ``spacing`` is per
        spatial axis.
    device : torch.device or str, optional
        Where to compute. Default: the input tensor's device (CPU for numpy).

    Returns
    -------
    Tensor of float32, shape (B, len(classes), *spatial)
        Equal to ``signed_distance_map`` of every mask with the same
        ``classes``, to float32 rounding.

    Examples
    --------
    >>> import torch
    >>> signed_distance_map_torch_batch(torch.tensor([[[0, 1, 1, 1, 0, 0]]]))
    tensor([[[[ 1.,  0., -1.,  0.,  1.,  2.]]]])
    """
    t = _labels_batch(labels, device)
    sampling = _spacing(spacing, t.ndim - 1)
    _check_max_distance(max_distance)
    if block and max_distance is None:
        raise ValueError("block=True needs max_distance (the halo is set by it)")
    chosen = _classes(t, classes, ignore_index)
    # EDT(S) is needed up to max_distance + 1 inside the class.
    reach = None if max_distance is None else float(max_distance) + 1.0
    out = torch.zeros((t.shape[0], len(chosen), *t.shape[1:]), dtype=torch.float32, device=t.device)
    for k, c in enumerate(chosen):
        inside, d, present, full = _class_distances(t, c, sampling, reach)
        phi = torch.where(inside, 1.0 - d, d)
        del d
        if max_distance is not None:
            phi.clamp_(-float(max_distance), float(max_distance))
        undefined = ~present | full
        if block:
            phi = torch.where(undefined, torch.where(full, -max_distance, max_distance), phi)
        else:
            phi.masked_fill_(undefined, 0.0)
        out[:, k] = phi
    if ignore_index is not None:
        out.masked_fill_((t == ignore_index).unsqueeze(1), 0.0)
    return out


def signed_distance_map_torch(
    labels: ArrayLike,
    *,
    classes: Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    max_distance: float | None = None,
    block: bool = False,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Signed distance map of one mask: :func:`weightmaps.sdf.signed_distance_map` on torch.

    Parameters as there, plus ``device`` (default: the input tensor's device,
    the CPU for numpy).

    Returns
    -------
    Tensor of float32, shape (len(classes), *spatial)
        Equal to ``signed_distance_map`` to float32 rounding.

    Examples
    --------
    >>> import numpy as np
    >>> signed_distance_map_torch(np.array([[0, 2, 2, 0, 1]]))
    tensor([[[4., 3., 2., 1., 0.]],
    <BLANKLINE>
            [[1., 0., 0., 1., 2.]]])
    """
    t = _tensor(labels, _target_device(labels, device), "labels")
    if classes is None:
        classes = _classes(t, None, ignore_index)
    return signed_distance_map_torch_batch(
        t[None],
        classes=classes,
        spacing=spacing,
        ignore_index=ignore_index,
        max_distance=max_distance,
        block=block,
    )[0]


def boundary_distance_map_torch_batch(
    labels: ArrayLike,
    *,
    classes: Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """``EDT(S) + EDT(~S)`` per class of a stack: :func:`weightmaps.sdf.boundary_distance_map`.

    MONAI's ``HausdorffDTLoss.distance_field``: 0 for a class absent from a
    mask or filling it. Parameters as :func:`signed_distance_map_torch_batch`.

    Returns
    -------
    Tensor of float32, shape (B, len(classes), *spatial)

    Examples
    --------
    >>> import torch
    >>> boundary_distance_map_torch_batch(torch.tensor([[[0, 1, 1, 1, 0, 0]]]))
    tensor([[[[1., 1., 2., 1., 1., 2.]]]])
    """
    t = _labels_batch(labels, device)
    sampling = _spacing(spacing, t.ndim - 1)
    chosen = _classes(t, classes, ignore_index)
    out = torch.zeros((t.shape[0], len(chosen), *t.shape[1:]), dtype=torch.float32, device=t.device)
    for k, c in enumerate(chosen):
        _, d, present, full = _class_distances(t, c, sampling, None)
        out[:, k] = d.masked_fill_(~present | full, 0.0)
    if ignore_index is not None:
        out.masked_fill_((t == ignore_index).unsqueeze(1), 0.0)
    return out


def boundary_distance_map_torch(
    labels: ArrayLike,
    *,
    classes: Sequence[int] | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_index: int | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """:func:`boundary_distance_map_torch_batch` of one ``(*spatial)`` mask.

    Examples
    --------
    >>> import numpy as np
    >>> boundary_distance_map_torch(np.array([[1, 1, 0]]))
    tensor([[[2., 1., 1.]]])
    """
    t = _tensor(labels, _target_device(labels, device), "labels")
    if classes is None:
        classes = _classes(t, None, ignore_index)
    return boundary_distance_map_torch_batch(
        t[None], classes=classes, spacing=spacing, ignore_index=ignore_index
    )[0]
