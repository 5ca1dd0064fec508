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
from weightmaps.kinds.spec import MapContext, MapKind, Param, numbers_from_text
from weightmaps.masktype import MaskTypeError

__all__ = ["KIND"]


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
)
