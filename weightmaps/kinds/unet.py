"""The ``unet`` kind: U-Net border weights (Ronneberger et al. 2015, eq. 2).

``w(x) = w_c(x) + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` from the mask's
instances (its ids, or connected components of a binary or semantic mask);
kernels in :mod:`weightmaps.kernels.unet` and its twins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from weightmaps._shared.checks import check_sigma, check_w0
from weightmaps.kinds.spec import MapContext, MapKind, Param, numbers_from_text

__all__ = ["KIND", "unet_class_weights"]


def _float(value: Any) -> float:
    return float(value)


def _class_weights(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return tuple(float(x) for x in value)


def _check_class_weights(value: Any) -> None:
    if isinstance(value, str):
        if value != "balanced":
            raise ValueError("class weights: 'balanced' or two numbers")
    elif value is not None and (len(value) != 2 or not all(w >= 0 for w in value)):
        raise ValueError("class weights need two numbers >= 0 (background, foreground)")


def _parse_class_weights(text: str) -> Any:
    if text == "balanced":
        return text
    numbers = numbers_from_text(text)
    if len(numbers) != 2:
        raise ValueError("'balanced' or two numbers: background,foreground")
    return numbers


def _spacing(value: Any) -> Any:
    if value is None or isinstance(value, str):
        return value
    return tuple(float(x) for x in value)


def _check_spacing(value: Any) -> None:
    if isinstance(value, str):
        if value != "auto":
            raise ValueError("spacing: 'auto' or numbers")
    elif value is not None and not all(s > 0 for s in value):
        raise ValueError("spacing must be > 0")


def _parse_spacing(text: str) -> Any:
    return text if text == "auto" else numbers_from_text(text)


PARAMS = (
    Param(
        name="w0",
        default=10.0,
        help="U-Net border term height",
        normalize=_float,
        check=check_w0,
        cli_type=float,
    ),
    Param(
        name="sigma",
        default=5.0,
        help="U-Net border term width, in the units of the spacing",
        normalize=_float,
        check=check_sigma,
        cli_type=float,
    ),
    Param(
        name="class_weights",
        default=None,
        help="U-Net w_c: 'balanced' or background,foreground [default: 1 everywhere]",
        normalize=_class_weights,
        check=_check_class_weights,
        parse=_parse_class_weights,
    ),
    Param(
        name="spacing",
        default=None,
        help="Pixel size per axis, e.g. 2,0.5,0.5, or 'auto' from the TIFF "
        "[default: pixel units]; sigma is in the same units",
        normalize=_spacing,
        check=_check_spacing,
        parse=_parse_spacing,
    ),
)


def unet_class_weights(settings: Any) -> Mapping[int, float] | str | None:
    """``w_c`` of the kernels from the settings' ``class_weights``."""
    if isinstance(settings.class_weights, tuple):
        return {0: settings.class_weights[0], 1: settings.class_weights[1]}
    return settings.class_weights


def _stacked_ignore(batch: Sequence[Any]) -> np.ndarray | None:
    if all(p.ignore is None for p in batch):
        return None
    return np.stack(
        [p.ignore if p.ignore is not None else np.zeros(p.values.shape, bool) for p in batch]
    )


def _compute(prepared: Any, settings: Any, context: MapContext) -> np.ndarray:
    from weightmaps.kernels.unet import unet_weight_map

    return unet_weight_map(
        prepared.instances,
        w0=settings.w0,
        sigma=settings.sigma,
        class_weights=unet_class_weights(settings),
        spacing=context.spacing,
        ignore_mask=prepared.ignore,
    )


def _compute_batch(batch: Sequence[Any], settings: Any, context: MapContext) -> Any:
    from weightmaps.kernels.unet_torch import unet_weight_map_torch_batch

    return unet_weight_map_torch_batch(
        np.stack([p.instances for p in batch]),
        w0=settings.w0,
        sigma=settings.sigma,
        class_weights=unet_class_weights(settings),
        spacing=context.spacing,
        ignore_mask=_stacked_ignore(batch),
        device=context.device,
        max_bytes=context.max_bytes,
    )


def _compute_volume(prepared: Any, settings: Any, context: MapContext) -> Any:
    from weightmaps.kernels.unet_dask import unet_weight_map

    return unet_weight_map(
        prepared.instances,
        w0=settings.w0,
        sigma=settings.sigma,
        class_weights=unet_class_weights(settings),
        spacing=context.spacing,
        ignore_mask=prepared.ignore,
    )


def _halo(settings: Any, spacing: Sequence[float] | None, ndim: int) -> tuple[int, ...]:
    from weightmaps.kernels.border import border_cutoff

    cutoff = border_cutoff(settings.sigma)
    steps = (1.0,) * ndim if spacing is None else tuple(spacing)
    return tuple(int(math.ceil(cutoff / s)) + 1 for s in steps)


KIND = MapKind(
    name="unet",
    summary="U-Net border weights: w_c + w0 exp(-(d1 + d2)^2 / 2 sigma^2) between instances",
    params=PARAMS,
    uses=("connectivity", "w0", "sigma", "class_weights", "spacing"),
    needs_instances=True,
    compute=_compute,
    compute_batch=_compute_batch,
    compute_volume=_compute_volume,
    halo=_halo,
)
