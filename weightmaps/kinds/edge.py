"""The ``edge`` kind: the F3Net/PraNet structure loss's edge weights.

``weit = 1 + alpha * |box_k(m) - m|`` of the foreground (per class, the
maximum, for semantic masks); kernels in :mod:`weightmaps.kernels.edge` and
its twins. The map depends on resolution: ``edge_size`` computes it at the
training size, as PraNet does after resizing its masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from weightmaps._shared.checks import check_kernel_size
from weightmaps._shared.threads import map_parts
from weightmaps.kinds.spec import MapContext, MapKind, Param, numbers_from_text
from weightmaps.masktype import MaskTypeError

__all__ = ["KIND", "suggested_edge_kernel", "window_advice"]


def _check_alpha(value: float) -> None:
    if not math.isfinite(value):
        raise ValueError("edge alpha must be finite")


def _size(value: Any) -> Any:
    return None if value is None else tuple(int(x) for x in value)


def _check_size(value: Any) -> None:
    if value is not None and not all(n >= 1 for n in value):
        raise ValueError("edge size must be positive")


PARAMS = (
    Param(
        name="edge_kernel",
        key="kernel_size",
        default=31,
        help="Edge map window k, odd",
        normalize=int,
        check=check_kernel_size,
        cli_type=int,
    ),
    Param(
        name="edge_alpha",
        key="alpha",
        default=5.0,
        help="Edge map factor alpha",
        normalize=float,
        check=_check_alpha,
        cli_type=float,
    ),
    Param(
        name="edge_size",
        key="size",
        default=None,
        help="Compute edge maps at this training size, e.g. 352,352 [default: mask size]",
        normalize=_size,
        check=_check_size,
        parse=lambda text: numbers_from_text(text, int),
    ),
)


def _compute_at_mask_size(prepared: Any, settings: Any) -> np.ndarray:
    from weightmaps.kernels.edge import edge_weight_map

    classes = prepared.present_classes()
    return edge_weight_map(
        prepared.classes if classes is None else prepared.values,
        kernel_size=settings.edge_kernel,
        alpha=settings.edge_alpha,
        classes=classes,
        ignore_index=prepared.class_ignore,
    )


def _resize(array: np.ndarray, size: Sequence[int], *, order: int) -> np.ndarray:
    from skimage import transform

    return transform.resize(
        array, size, order=order, mode="edge", anti_aliasing=False, preserve_range=True
    )


def _compute_at_size(prepared: Any, settings: Any) -> np.ndarray:
    from weightmaps.kernels.edge import edge_weight_map

    classes = prepared.present_classes()
    size = tuple(settings.edge_size or ())
    if len(size) != prepared.values.ndim:
        raise MaskTypeError(
            f"edge size {size} does not match the mask's {prepared.values.ndim} dimensions"
        )
    ignore = None
    if prepared.ignore is not None:
        ignore = _resize(prepared.ignore, size, order=0).astype(bool)
    if classes is None:
        # PraNet resizes the mask bilinearly and keeps it soft: so do we.
        foreground = (prepared.classes == 1).astype(np.float32)
        soft = np.clip(_resize(foreground, size, order=1), 0.0, 1.0).astype(np.float32)
        if ignore is not None:
            soft[ignore] = 0.0
        weights = edge_weight_map(soft, kernel_size=settings.edge_kernel, alpha=settings.edge_alpha)
    else:
        resized = _resize(prepared.values, size, order=0).astype(prepared.values.dtype)
        weights = edge_weight_map(
            resized,
            kernel_size=settings.edge_kernel,
            alpha=settings.edge_alpha,
            classes=classes,
            ignore_index=prepared.class_ignore,
        )
    if ignore is not None:
        weights[ignore] = 0.0
    return weights


def _compute(prepared: Any, settings: Any, context: MapContext) -> np.ndarray:
    if settings.edge_size is None:
        return _compute_at_mask_size(prepared, settings)
    return _compute_at_size(prepared, settings)


def _compute_batch(batch: Sequence[Any], settings: Any, context: MapContext) -> Any:
    from weightmaps.kernels.edge_torch import edge_weight_map_torch_batch

    if batch[0].mask_type == "semantic":
        present: set[int] = set()
        for p in batch:
            present.update(p.present_classes() or ())
        labels, classes = np.stack([p.values for p in batch]), sorted(present)
    else:
        labels, classes = np.stack([p.classes for p in batch]), None
    return edge_weight_map_torch_batch(
        labels,
        kernel_size=settings.edge_kernel,
        alpha=settings.edge_alpha,
        classes=classes,
        ignore_index=batch[0].class_ignore,
        device=context.device,
        max_bytes=context.max_bytes,
    )


def _compute_volume(prepared: Any, settings: Any, context: MapContext) -> Any:
    from weightmaps.kernels.edge_dask import edge_weight_map

    return edge_weight_map(
        prepared.classes,
        kernel_size=settings.edge_kernel,
        alpha=settings.edge_alpha,
        classes=prepared.present_classes(),
        ignore_index=prepared.class_ignore,
    )


def _volume_refusal(settings: Any) -> str | None:
    if settings.edge_size is not None:
        return "edge size is not supported for chunked volumes (a volume is not resized)"
    return None


def suggested_edge_kernel(diameter: float) -> int:
    """The window ``k`` for objects of this diameter (pixels): about half of it.

    The edge term reaches ``k // 2`` pixels into an object from its edge, so
    ``k`` of half the diameter weights the outer half of its radius and leaves
    its core at the base weight 1. An odd integer, at least 3. PraNet's
    k = 31 fits objects of about 60 pixels across (its polyps at 352^2).

    Examples
    --------
    >>> suggested_edge_kernel(20.0), suggested_edge_kernel(60.0), suggested_edge_kernel(2.0)
    (11, 31, 3)
    """
    return max(3, 2 * round(diameter / 4) + 1)


def _extent_advice(shape: Sequence[int], k: int) -> str | None:
    """The window against the mask's extent: zero padding lies beyond every face."""
    for axis, n in enumerate(shape):
        if k > n / 2:
            what = "slices" if len(shape) == 3 and axis == 0 else "pixels"
            largest = max(3, n // 2 - (1 - n // 2 % 2))
            return (
                f"the edge window k = {k} spans more than half of the mask's {n} {what} "
                f"along axis {axis}: with the zero padding beyond its faces, foreground "
                f"within {k // 2} {what} of a face gets edge weight, so little or none "
                f"stays at the base weight 1; try --edge-kernel {largest} or less"
            )
    return None


def _ids_on_core(
    objects: np.ndarray, classes: np.ndarray, weights: np.ndarray, tolerance: float
) -> int:
    """How many distinct ids ``objects`` holds on foreground pixels whose weight is
    within ``tolerance`` of 1; parts of the mask on the kernel threads."""
    from weightmaps.masktype import distinct_values

    flat = [a.reshape(-1) for a in (objects, classes, weights)]

    def choose(lo: int, hi: int) -> np.ndarray:
        ids, part_classes, part_weights = (a[lo:hi] for a in flat)
        core = (part_classes == 1) & (np.abs(part_weights - 1.0) < tolerance)
        return ids[core]

    chosen = map_parts(choose, flat[0].size)
    return int(distinct_values(np.concatenate(chosen)).size)


def _object_advice(prepared: Any, weights: np.ndarray, k: int, alpha: float) -> str | None:
    """The window against the objects: most of them edge weight through and through."""
    from scipy import ndimage

    from weightmaps.kernels.objects import object_diameters

    if prepared.mask_type == "instance":
        # The mask's own ids (carved when asked), ignored pixels none: not
        # prepared.instances, which would keep a copy after the maps freed it.
        # Without foreground they hold no object and the advice is None below.
        values = prepared.values
        objects = values if prepared.ignore is None else np.where(prepared.ignore, 0, values)
    else:
        foreground = prepared.classes == 1
        if not foreground.any():
            return None
        structure = ndimage.generate_binary_structure(foreground.ndim, foreground.ndim)
        objects, _ = ndimage.label(foreground, structure=structure)
    # A pixel stays at weight 1 where its k-window holds foreground only (the
    # zero padding outside the mask counts as background, as in the map): read
    # off the map, where any other pixel differs from 1 by alpha / k^d or more.
    tolerance = abs(alpha) / (2.0 * k**weights.ndim)
    with_core = _ids_on_core(objects, prepared.classes, weights, tolerance)
    diameters, on_border = object_diameters(objects)
    count = diameters.size
    filled = count - with_core
    if 2 * filled <= count:
        return None
    median = float(np.median(diameters[~on_border] if (~on_border).any() else diameters))
    return (
        f"the edge window k = {k} covers {filled} of {count} objects whole (median "
        f"diameter {median:.0f} px): none of their pixels stays at the base weight 1, "
        f"the map weights whole objects, not their edges; try --edge-kernel "
        f"{suggested_edge_kernel(median)}"
    )


def window_advice(prepared: Any, settings: Any, weights: Any = None) -> str | None:
    """A warning when the edge window ``k`` is large against the mask, or None.

    Two rules, in this order: ``k`` larger than half the mask along an axis
    (a thin volume: the zero padding beyond its faces gives edge weight to
    most of its foreground), and, for binary and instance masks with their
    map in memory (``weights``, a numpy array), more than half of the objects
    without a pixel at the base weight 1, i.e. no pixel whose k-window lies
    inside the object. Not for maps made at ``edge_size`` (the training size
    the window was chosen for) nor without an edge term (``alpha`` 0); beyond
    the first rule, not for semantic masks or chunked volumes. Objects are the
    instances of an instance mask (as ``weightmaps stats`` counts them), the
    connected components of a binary one; the median diameter and the window
    it suggests are those of :func:`weightmaps.stats.object_summary`.
    """
    if settings.edge_size is not None or settings.edge_alpha == 0:
        return None
    k = settings.edge_kernel
    said = _extent_advice(prepared.classes.shape, k)
    if said is not None or prepared.mask_type == "semantic":
        return said
    if not isinstance(weights, np.ndarray) or weights.shape != prepared.classes.shape:
        return None
    return _object_advice(prepared, weights, k, settings.edge_alpha)


KIND = MapKind(
    name="edge",
    summary="F3Net/PraNet edge weights: 1 + alpha |box_k(m) - m|",
    params=PARAMS,
    uses=("edge_kernel", "edge_alpha", "edge_size"),
    compute=_compute,
    compute_batch=_compute_batch,
    compute_volume=_compute_volume,
    on_cpu=lambda settings: settings.edge_size is not None,
    volume_refusal=_volume_refusal,
    halo=lambda settings, spacing, ndim: (settings.edge_kernel // 2,) * ndim,
    halo_options=("--edge-kernel",),
    advice=window_advice,
)
