"""The ``sdf`` kind: signed distance maps, what the boundary loss reads.

``phi_c = EDT(~S) * ~S - (EDT(S) - 1) * S`` for every class ``c`` with
``S = (labels == c)`` (Kervadec et al.'s ``one_hot2dist``), float32, one
channel per class: ``(K, *spatial)``. Binary and instance masks have one
class, the foreground (1); semantic masks the class ids present (the ignore
value left out), or the ids of ``sdf_classes``, which every map then has in
the same order (what a training batch needs; name 0 there for the
background's map). Ignored pixels are 0;
distances are in the units of ``spacing``. Kernels in
:mod:`weightmaps.kernels.sdf` and its twins.

Distances are not local: a chunked volume needs ``sdf_max``, which clips the
values to ``[-sdf_max, sdf_max]`` everywhere (in memory too, so both paths
give one map) and makes a block grown by
:func:`~weightmaps.kernels.sdf.sdf_halo` exact.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from weightmaps.kinds.spec import MapContext, MapKind, Param

__all__ = [
    "KIND",
    "sdf_classes",
    "sdf_kind_halo",
    "sdf_maps",
    "sdf_maps_batch",
    "sdf_maps_volume",
    "sdf_volume_refusal",
]


def _classes(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, str):
        value = _parse_classes(value)
    classes = tuple(int(c) for c in value)
    if any(c != v for c, v in zip(classes, value, strict=True)):
        raise ValueError("class ids must be whole numbers")
    return classes


def _parse_classes(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise ValueError(f"expected comma-separated class ids, got {text!r}") from None


def _check_classes(value: Any) -> None:
    if value is None:
        return
    if not value or any(c < 0 for c in value) or len(set(value)) != len(value):
        raise ValueError("sdf classes must be distinct class ids >= 0, at least one")


def _check_max(value: Any) -> None:
    if value is not None and not (value > 0 and math.isfinite(value)):
        raise ValueError("sdf max must be finite and > 0")


def _max(value: Any) -> Any:
    return float(value)


PARAMS = (
    Param(
        name="sdf_classes",
        key="classes",
        default=None,
        help="sdf and distance maps of these class ids of a semantic mask, in this order, "
        "e.g. 0,1,2 [default: the classes present but 0; binary and instance masks: "
        "the foreground]",
        normalize=_classes,
        check=_check_classes,
        parse=_parse_classes,
    ),
    Param(
        name="sdf_max",
        key="max_distance",
        default=None,
        help="Clip sdf maps to +-this and distance maps to this, in the units of the "
        "spacing; needed for chunked volumes [default: no clipping]",
        normalize=_max,
        check=_check_max,
        cli_type=float,
    ),
)


def sdf_classes(prepared: Any, settings: Any) -> tuple[list[int], Any, int | None]:
    """(classes, labels, ignore index) of a prepared mask's signed distance map."""
    if prepared.mask_type != "semantic":
        return [1], prepared.classes, prepared.class_ignore
    if settings.sdf_classes is not None:
        classes = list(settings.sdf_classes)
    else:
        # As the kernel's default: the classes present but background (0).
        classes = [c for c in prepared.present_classes() or () if c != 0]
    if not classes:
        raise ValueError("no class to measure a signed distance to; name them with sdf classes")
    if prepared.class_ignore is not None and prepared.class_ignore in classes:
        raise ValueError(
            f"sdf classes {classes} hold the ignore value {prepared.class_ignore}; leave it out"
        )
    return classes, prepared.values, prepared.class_ignore


def _boundary_field(
    phi: np.ndarray, labels: np.ndarray, classes: Sequence[int], max_distance: float | None
) -> np.ndarray:
    """``EDT(S) + EDT(~S)`` from ``phi``: ``1 - phi`` inside the class, ``phi``
    outside (undefined classes and ignored pixels stay 0), at most ``max_distance``."""
    for k, c in enumerate(classes):
        inside = labels == c
        if not inside.all():  # a class filling the mask has no field (0)
            np.subtract(np.float32(1), phi[k], out=phi[k], where=inside)
    if max_distance is not None:
        np.minimum(phi, np.float32(max_distance), out=phi)
    return phi


def sdf_maps(prepared: Any, settings: Any, context: MapContext, *, boundary: bool = False) -> Any:
    """The numpy kernel of the ``sdf`` kind, or with ``boundary`` of ``distance``."""
    from weightmaps.kernels.sdf import signed_distance_map

    classes, labels, ignore = sdf_classes(prepared, settings)
    phi = signed_distance_map(
        labels,
        classes=classes,
        spacing=context.spacing,
        ignore_index=ignore,
        max_distance=settings.sdf_max,
    )
    return _boundary_field(phi, labels, classes, settings.sdf_max) if boundary else phi


def sdf_maps_batch(
    batch: Sequence[Any], settings: Any, context: MapContext, *, boundary: bool = False
) -> Any:
    """The torch kernel of the ``sdf`` (``distance``) kind on a batch of one shape."""
    import torch

    from weightmaps.kernels.sdf_torch import signed_distance_map_torch_batch

    chosen = [sdf_classes(p, settings) for p in batch]
    union = sorted({c for classes, _, _ in chosen for c in classes})
    labels = np.stack([labels for _, labels, _ in chosen])
    maps = signed_distance_map_torch_batch(
        labels,
        classes=union,
        spacing=context.spacing,
        ignore_index=chosen[0][2],
        max_distance=settings.sdf_max,
        device=context.device,
    )
    if boundary:
        on = torch.from_numpy(labels).to(maps.device)
        inside = torch.stack([on == c for c in union], 1)
        # A class filling a mask has no field (0), as in memory.
        inside &= ~inside.flatten(2).all(-1).view(*inside.shape[:2], *(1,) * (labels.ndim - 1))
        maps = torch.where(inside, 1.0 - maps, maps)
        if settings.sdf_max is not None:
            maps = maps.clamp_max(float(settings.sdf_max))
    if all(classes == union for classes, _, _ in chosen):
        return maps
    # A semantic mask's map holds its own classes, in its own order: one
    # tensor per mask. (A class absent from a mask is 0 in the batch's map,
    # as in that mask's own, so the channels kept are the mask's map.)
    position = {c: k for k, c in enumerate(union)}
    return [maps[j, [position[c] for c in classes]] for j, (classes, _, _) in enumerate(chosen)]


def sdf_maps_volume(
    prepared: Any, settings: Any, context: MapContext, *, boundary: bool = False
) -> Any:
    """The chunked kernel of the ``sdf`` (``distance``) kind (needs ``sdf_max``)."""
    import dask.array as da

    from weightmaps.kernels.sdf_dask import signed_distance_map

    classes, labels, ignore = sdf_classes(prepared, settings)
    counts = prepared.class_counts().pixels
    phi = signed_distance_map(
        labels,
        classes=classes,
        spacing=context.spacing,
        ignore_index=ignore,
        max_distance=settings.sdf_max,
        counts=counts,
    )
    if not boundary:
        return phi
    layers = []
    for k, c in enumerate(classes):
        if counts.get(c, 0) in (0, labels.size):  # no field: 0 everywhere
            layers.append(phi[k])
        else:
            layers.append(da.where(labels == c, np.float32(1) - phi[k], phi[k]))
    return da.minimum(da.stack(layers), np.float32(settings.sdf_max))


def sdf_volume_refusal(name: str) -> Any:
    """The refusal of an unbounded ``name`` map on a chunked volume."""

    def refusal(settings: Any) -> str | None:
        if settings.sdf_max is None:
            return (
                f"{name} maps of a chunked volume need --sdf-max (a distance is not local: "
                "without a bound, a chunk's values depend on the whole volume)"
            )
        return None

    return refusal


def sdf_kind_halo(settings: Any, spacing: Sequence[float] | None, ndim: int) -> tuple[int, ...]:
    """The halo of the ``sdf`` and ``distance`` kinds' chunked kernels."""
    from weightmaps.kernels.sdf import sdf_halo

    if settings.sdf_max is None:
        return (0,) * ndim  # not computed chunked (refused)
    return sdf_halo(settings.sdf_max, spacing, ndim)


KIND = MapKind(
    name="sdf",
    summary="Signed distance maps per class (boundary loss): EDT(~S) ~S - (EDT(S) - 1) S",
    params=PARAMS,
    uses=("sdf_classes", "sdf_max", "spacing"),
    default=False,
    class_axis=True,
    preview="diverging",
    compute=sdf_maps,
    compute_batch=sdf_maps_batch,
    compute_volume=sdf_maps_volume,
    volume_refusal=sdf_volume_refusal("sdf"),
    halo=sdf_kind_halo,
    halo_options=("--sdf-max", "--spacing"),
)
