"""The ``distance`` kind: ``EDT(S) + EDT(~S)`` per class, what the Hausdorff DT loss reads.

MONAI's ``HausdorffDTLoss`` computes this field of the target at every step
(``distance_field``: the distance of every pixel to the nearest pixel on the
other side of the class's boundary, 0 for a class absent from the mask or
filling it); :func:`weightmaps.losses.hausdorff_dt_loss` reads it precomputed
as ``target_distance``. It is the signed distance map's magnitude measured
from the other side: ``1 - phi`` inside the class, ``phi`` outside, so it
shares the ``sdf`` kind's parameters (``sdf_classes``, ``sdf_max``,
``spacing``), classes, chunked kernel and its need of ``sdf_max`` on a
chunked volume (values then at most ``sdf_max``). Equal to
:func:`weightmaps.kernels.sdf.boundary_distance_map` to float32 rounding.
"""

from __future__ import annotations

import functools

from weightmaps.kinds.sdf import (
    sdf_kind_halo,
    sdf_maps,
    sdf_maps_batch,
    sdf_maps_volume,
    sdf_volume_refusal,
)
from weightmaps.kinds.spec import MapKind

__all__ = ["KIND"]

KIND = MapKind(
    name="distance",
    summary="Distance to the class boundary per class (Hausdorff DT loss): EDT(S) + EDT(~S)",
    params=(),
    uses=("sdf_classes", "sdf_max", "spacing"),
    default=False,
    class_axis=True,
    compute=functools.partial(sdf_maps, boundary=True),
    compute_batch=functools.partial(sdf_maps_batch, boundary=True),
    compute_volume=functools.partial(sdf_maps_volume, boundary=True),
    volume_refusal=sdf_volume_refusal("distance"),
    halo=sdf_kind_halo,
    halo_options=("--sdf-max", "--spacing"),
)
