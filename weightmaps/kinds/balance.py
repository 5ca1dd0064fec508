"""The ``balance`` kind: one weight per class, painted on every pixel.

Counts from the mask alone (scope ``"image"``) or summed over every mask of
the run (scope ``"dataset"``, a first pass); kernels in
:mod:`weightmaps.kernels.balance` and its twins, formulas in
:mod:`weightmaps.kernels.class_balance`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from weightmaps.kernels.class_balance import BALANCE_MODES
from weightmaps.kinds.spec import MapContext, MapKind, Param

__all__ = ["BALANCE_SCOPES", "KIND"]

BALANCE_SCOPES: tuple[str, ...] = ("image", "dataset")


def _choice(name: str, allowed: tuple[str, ...]) -> Any:
    def check(value: str) -> None:
        if value not in allowed:
            raise ValueError(f"{name} must be one of {allowed}")

    return check


PARAMS = (
    Param(
        name="balance_mode",
        key="mode",
        default="inverse",
        help="Class-balance formula",
        check=_choice("balance mode", BALANCE_MODES),
        choices=BALANCE_MODES,
    ),
    Param(
        name="balance_scope",
        key="scope",
        default="image",
        help="Count classes per image or over the dataset",
        check=_choice("balance scope", BALANCE_SCOPES),
        choices=BALANCE_SCOPES,
    ),
)


def _counts(settings: Any, context: MapContext) -> Any:
    if settings.balance_scope != "dataset":
        return context.counts
    if context.dataset_counts is None:
        raise ValueError("balance scope 'dataset' needs dataset_counts")
    return context.dataset_counts


def _compute(prepared: Any, settings: Any, context: MapContext) -> np.ndarray:
    from weightmaps.kernels.balance import balance_weight_map

    return balance_weight_map(
        prepared.classes,
        mode=settings.balance_mode,
        ignore_index=prepared.class_ignore,
        counts=_counts(settings, context),
    )


def _compute_batch(batch: Sequence[Any], settings: Any, context: MapContext) -> Any:
    from weightmaps.kernels.balance_torch import balance_weight_map_torch_batch

    dataset = settings.balance_scope == "dataset"
    return balance_weight_map_torch_batch(
        np.stack([p.classes for p in batch]),
        mode=settings.balance_mode,
        ignore_index=batch[0].class_ignore,
        counts=_counts(settings, context) if dataset else None,
        device=context.device,
    )


def _compute_volume(prepared: Any, settings: Any, context: MapContext) -> Any:
    from weightmaps.kernels.balance_dask import balance_weight_map

    return balance_weight_map(
        prepared.classes,
        mode=settings.balance_mode,
        ignore_index=prepared.class_ignore,
        counts=_counts(settings, context),
    )


KIND = MapKind(
    name="balance",
    summary="Class-balance weights: w_class(x), inverse, median, enet or beta",
    params=PARAMS,
    uses=("balance_mode", "balance_scope"),
    compute=_compute,
    compute_batch=_compute_batch,
    compute_volume=_compute_volume,
    halo=lambda settings, spacing, ndim: (0,) * ndim,
)
