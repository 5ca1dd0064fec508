"""The parameters of the U-Net border term, shared by every backend of the map.

The term ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` is below ``1e-6 * w0`` once
``d1 + d2`` exceeds :func:`border_cutoff`: every kernel drops it there, and the
chunked and slabbed ones take their halo from it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["BORDER_TOLERANCE", "border_cutoff", "explicit_class_weights"]

# The border term is dropped where it is below this fraction of w0; the
# contract allows 1e-5 * w0, so this leaves a margin of ten.
BORDER_TOLERANCE = 1e-6


def border_cutoff(sigma: float, tolerance: float = BORDER_TOLERANCE) -> float:
    """``d1 + d2`` beyond which the border term is below ``tolerance * w0``.

    ``sigma * sqrt(2 ln(1 / tolerance))``, about 5.26 sigma for 1e-6.

    Examples
    --------
    >>> round(border_cutoff(5.0), 3)
    26.283
    """
    return sigma * math.sqrt(2.0 * math.log(1.0 / tolerance))


def explicit_class_weights(class_weights: Mapping[int, float]) -> dict[int, float]:
    """``{0: background, 1: foreground}`` weights, both present (1 where not given)."""
    weights = {int(k): float(v) for k, v in class_weights.items()}
    unknown = set(weights) - {0, 1}
    if unknown:
        raise ValueError(
            f"class_weights keys are 0 (background) and 1 (foreground), got {sorted(unknown)}"
        )
    return {0: 1.0, 1: 1.0, **weights}
