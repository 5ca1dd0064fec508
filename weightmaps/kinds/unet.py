"""The ``unet`` kind: U-Net border weights (Ronneberger et al. 2015, eq. 2).

``w(x) = w_c(x) + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` from the mask's
instances (its ids, or connected components of a binary or semantic mask);
kernels in :mod:`weightmaps.kernels.unet` and its twins.

With ``v_bal`` below 1 it is the U-Net authors' full weight (Falk et al.,
Nature Methods 2019, :mod:`weightmaps.kernels.falk`): on background
``v_bal + sum_c [w0 exp(-(d1 + d2)^2 / 2 sigma^2) + (1 - v_bal)
exp(-d1^2 / 2 sigma_bal^2)]`` with ``d1``, ``d2`` measured to instances of
class ``c`` (a semantic mask's classes; one class otherwise), 1 on
foreground. ``v_bal = 1`` (the default) is eq. 2 itself, computed by the
U-Net kernels as before. The torch path computes Falk's map on the CPU
while the mask is prepared; the chunked path has its own kernel.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from weightmaps._shared.checks import check_sigma, check_w0
from weightmaps.kinds.spec import MapContext, MapKind, Param, numbers_from_text

__all__ = ["KIND", "falk", "suggested_sigma", "unet_class_weights"]


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


def _check_v_bal(value: float) -> None:
    if not (0 <= value <= 1):
        raise ValueError("v_bal must lie in [0, 1] (1: the U-Net map of eq. 2)")


FALK_PARAMS = (
    Param(
        name="v_bal",
        default=1.0,
        help="U-Net map of Falk et al. 2019: weight of background far from every object, "
        "rising to 1 at an object's edge over sigma_bal [default: 1, eq. 2 without it]",
        normalize=_float,
        check=_check_v_bal,
        cli_type=float,
        omit_at_default=True,
    ),
    Param(
        name="sigma_bal",
        default=10.0,
        help="Width of that rise (Falk et al.'s sigma_bal), in the units of the spacing",
        normalize=_float,
        check=check_sigma,
        cli_type=float,
        omit_at_default=True,
    ),
)


def falk(settings: Any) -> bool:
    """Whether the settings ask for Falk et al.'s map (``v_bal`` below 1)."""
    return settings.v_bal != 1.0


def _check_settings(settings: Any) -> None:
    if falk(settings) and settings.class_weights is not None:
        raise ValueError(
            "class weights do not apply with v_bal: in Falk et al.'s map the background's "
            "weight is v_bal and the foreground's 1"
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


def _falk_classes(prepared: Any) -> Any:
    # Falk's borders are measured between instances of one class.
    return prepared.values if prepared.mask_type == "semantic" else None


def _unet_map(
    plain: Callable[..., Any],
    with_falk: Callable[..., Any],
    prepared: Any,
    settings: Any,
    context: MapContext,
) -> Any:
    # The numpy and dask kernels take the same arguments; only the modules differ.
    common = dict(
        w0=settings.w0, sigma=settings.sigma, spacing=context.spacing, ignore_mask=prepared.ignore
    )
    if falk(settings):
        return with_falk(
            prepared.instances,
            classes=_falk_classes(prepared),
            sigma_1=settings.sigma_bal,
            v_bal=settings.v_bal,
            **common,
        )
    return plain(prepared.instances, class_weights=unet_class_weights(settings), **common)


def _compute(prepared: Any, settings: Any, context: MapContext) -> np.ndarray:
    from weightmaps.kernels.falk import unet_weight_map_falk
    from weightmaps.kernels.unet import unet_weight_map

    return _unet_map(unet_weight_map, unet_weight_map_falk, prepared, settings, context)


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
    from weightmaps.kernels.falk_dask import unet_weight_map_falk
    from weightmaps.kernels.unet_dask import unet_weight_map

    return _unet_map(unet_weight_map, unet_weight_map_falk, prepared, settings, context)


def _halo(settings: Any, spacing: Sequence[float] | None, ndim: int) -> tuple[int, ...]:
    # The chunked kernels' own halos for the arguments _unet_map gives them, so
    # the limit on grown blocks sizes what they compute (none without w0, and
    # Falk's fall only where v_bal asks for it).
    if falk(settings):
        from weightmaps.kernels.falk_dask import falk_halo

        return falk_halo(
            settings.w0, settings.sigma, settings.sigma_bal, settings.v_bal, spacing, ndim=ndim
        )
    from weightmaps.kernels.unet_dask import border_halo

    return border_halo(settings.w0, settings.sigma, spacing, ndim=ndim)


def suggested_sigma(diameter: float) -> float:
    """The border term's ``sigma`` for objects of this diameter: a quarter of it.

    The term ``w0 exp(-(d1 + d2)^2 / (2 sigma^2))`` falls to ``w0 / e^2``
    (a seventh) where the gap ``d1 + d2`` is ``2 sigma``: a quarter of the
    diameter weights the gaps narrower than half an object, those a network
    bridges when it merges two. Nuclei of 20 pixels give Ronneberger et al.'s
    sigma = 5. Rounded to half a pixel, at least 1.

    Examples
    --------
    >>> suggested_sigma(20.0), suggested_sigma(9.0), suggested_sigma(2.0)
    (5.0, 2.0, 1.0)
    """
    return max(1.0, round(diameter / 2) / 2)


KIND = MapKind(
    name="unet",
    summary="U-Net border weights: w_c + w0 exp(-(d1 + d2)^2 / 2 sigma^2) between instances",
    params=PARAMS + FALK_PARAMS,
    uses=("connectivity", "w0", "sigma", "class_weights", "spacing", "v_bal", "sigma_bal"),
    needs_instances=True,
    compute=_compute,
    compute_batch=_compute_batch,
    compute_volume=_compute_volume,
    # No torch kernel of Falk's terms: made on the CPU while the mask is prepared.
    on_cpu=falk,
    halo=_halo,
    halo_options=("--sigma", "--sigma-bal", "--spacing"),
    check_settings=_check_settings,
)
