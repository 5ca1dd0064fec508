"""The ``skeleton`` kind: the exact skeleton of the target, what clDice reads.

uint8, 1 on the skeleton: every instance of an instance mask thinned on its
own (touching cells keep separate skeletons), a binary mask's foreground as
one region, every class of a semantic mask on its own;
``skimage.morphology.skeletonize`` (Zhang's method in 2-D, Lee's in 3-D).
Ignored pixels are background. The kernel is
:func:`weightmaps.kernels.skeleton.skeleton_map`; it runs on the CPU, while
a mask is prepared, on every path.

Thinning is not local (a pixel stays on the skeleton depending on the whole
object), so a chunked volume's skeleton is refused rather than thinned chunk
by chunk, which would break it at every seam.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from weightmaps.kinds.spec import MapContext, MapKind

__all__ = ["KIND"]


def _compute(prepared: Any, settings: Any, context: MapContext) -> np.ndarray:
    from weightmaps.kernels.skeleton import skeleton_map

    if prepared.mask_type == "semantic":
        return skeleton_map(
            prepared.values, mask_type="semantic", ignore_index=prepared.class_ignore
        )
    if prepared.mask_type == "instance":
        # The mask's ids, ignored pixels 0, carved when touching ones were separated.
        return skeleton_map(prepared.instances, mask_type="instance")
    return skeleton_map(prepared.values, mask_type="binary")


def _volume_refusal(settings: Any) -> str | None:
    return (
        "skeleton maps are not computed for chunked volumes (thinning is not local: a "
        "skeleton cut at chunk seams would be wrong); raise --chunked-above to read the "
        "volume whole"
    )


KIND = MapKind(
    name="skeleton",
    summary="Skeleton of every instance, class or the foreground (clDice): 1 on the skeleton",
    params=(),
    uses=(),
    default=False,
    dtype="uint8",
    preview="overlay",
    compute=_compute,
    on_cpu=lambda settings: True,
    volume_refusal=_volume_refusal,
    halo=lambda settings, spacing, ndim: (0,) * ndim,
)
