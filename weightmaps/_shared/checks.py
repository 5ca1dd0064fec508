"""Argument checks shared by every backend of a kernel, with one wording each."""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = [
    "check_classes_or_count",
    "check_connectivity",
    "check_kernel_size",
    "check_nonempty",
    "check_sigma",
    "check_w0",
]


def check_w0(w0: float) -> None:
    """The U-Net border term's height: finite and >= 0."""
    if not w0 >= 0 or not math.isfinite(w0):
        raise ValueError(f"w0 must be finite and >= 0, got {w0}")


def check_sigma(sigma: float) -> None:
    """A Gaussian width: finite and > 0."""
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")


def check_kernel_size(kernel_size: int) -> None:
    """An odd window width >= 1 (an even one has no centre pixel: avg_pool
    would change the shape)."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size}")


def check_connectivity(connectivity: int, ndim: int) -> None:
    """A connectivity of ``ndim``-D connected components: 1..ndim."""
    if not 1 <= connectivity <= ndim:
        raise ValueError(f"connectivity must be in 1..{ndim}, got {connectivity}")


def check_nonempty(shape: Sequence[int], name: str) -> None:
    """An array with at least one axis and one element."""
    if len(shape) == 0 or math.prod(shape) == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {tuple(shape)}")


def check_classes_or_count(classes: object, num_classes: object) -> None:
    """At most one of ``classes`` and ``num_classes``."""
    if classes is not None and num_classes is not None:
        raise ValueError("give classes or num_classes, not both")
