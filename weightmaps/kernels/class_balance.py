"""The class-balance formulas: class counts that add up over masks, one weight per class.

Counts come either from the mask itself (scope "image") or from a whole
dataset, summed with ``+`` over the :class:`ClassCounts` of every mask
(scope "dataset"). Shared by every backend of the balance map and by the
U-Net map's ``"balanced"`` class weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

__all__ = ["BALANCE_MODES", "ClassCounts", "check_balance_mode", "class_weights"]

BALANCE_MODES = ("inverse", "median", "enet", "beta")

# ENet's constant: keeps 1 / ln(c + p) bounded (at most ~50) for rare classes.
_ENET_C = 1.02


@dataclasses.dataclass(frozen=True)
class ClassCounts:
    """Pixel counts per class, summable over masks.

    Attributes
    ----------
    pixels : dict
        ``n_c``: counted pixels of class c (ignored pixels are not counted).
    image_pixels : dict
        Counted pixels of the masks in which class c appears, which median
        frequency balancing divides by.
    images : int
        Number of masks summed.
    """

    pixels: dict[int, int]
    image_pixels: dict[int, int]
    images: int = 1

    @property
    def total(self) -> int:
        """``N``: all counted pixels."""
        return int(sum(self.pixels.values()))

    def __add__(self, other: ClassCounts) -> ClassCounts:
        if not isinstance(other, ClassCounts):
            return NotImplemented
        return ClassCounts(
            pixels=_add_dicts(self.pixels, other.pixels),
            image_pixels=_add_dicts(self.image_pixels, other.image_pixels),
            images=self.images + other.images,
        )

    def __radd__(self, other: object) -> ClassCounts:
        # Lets sum(list_of_counts) start from 0.
        if other == 0:
            return self
        return NotImplemented

    def to_dict(self) -> dict:
        """JSON-ready form (string keys), inverse of :meth:`from_dict`."""
        return {
            "pixels": {str(k): v for k, v in sorted(self.pixels.items())},
            "image_pixels": {str(k): v for k, v in sorted(self.image_pixels.items())},
            "images": self.images,
        }

    @classmethod
    def from_dict(cls, data: Mapping) -> ClassCounts:
        return cls(
            pixels={int(k): int(v) for k, v in data["pixels"].items()},
            image_pixels={int(k): int(v) for k, v in data["image_pixels"].items()},
            images=int(data.get("images", 1)),
        )

    @classmethod
    def from_pixels(cls, pixels: Mapping[int, int]) -> ClassCounts:
        """Counts known only as pixels per class: every class is taken to
        appear in all counted pixels (as in a single image)."""
        pixels = {int(k): int(v) for k, v in pixels.items() if int(v) > 0}
        total = int(sum(pixels.values()))
        return cls(pixels=pixels, image_pixels={k: total for k in pixels})


def _add_dicts(a: Mapping[int, int], b: Mapping[int, int]) -> dict[int, int]:
    out = dict(a)
    for k, v in b.items():
        out[k] = out.get(k, 0) + v
    return out


def check_balance_mode(mode: str) -> None:
    """One of :data:`BALANCE_MODES`."""
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {mode!r}; expected one of {BALANCE_MODES}")


def class_weights(
    counts: ClassCounts | Mapping[int, int], mode: str = "inverse"
) -> dict[int, float]:
    """One weight per class present in ``counts``.

    Modes (``n_c`` pixels of class c, ``N`` all counted pixels,
    ``p_c = n_c / N``, ``K`` classes present):

    - ``"inverse"``: ``N / (K * n_c)``; the mean weight over pixels is 1.
    - ``"median"``: median frequency balancing (SegNet),
      ``f_c = n_c / image_pixels_c``, weight ``median(f) / f_c``.
    - ``"enet"``: ``1 / ln(1.02 + p_c)`` (ENet).
    - ``"beta"``: balanced BCE (HED): ``beta = 1 - n_fg / N`` with every
      nonzero class foreground; foreground weight ``beta``, background
      ``1 - beta``. A mask without foreground thus weighs nothing, as in
      the formula.

    Classes with no pixels get no weight.

    Examples
    --------
    >>> class_weights({0: 3, 1: 1}, "inverse")
    {0: 0.6666666666666666, 1: 2.0}
    >>> class_weights({0: 3, 1: 1}, "beta")
    {0: 0.25, 1: 0.75}
    """
    if not isinstance(counts, ClassCounts):
        counts = ClassCounts.from_pixels(counts)
    check_balance_mode(mode)
    present = {c: n for c, n in counts.pixels.items() if n > 0}
    total = sum(present.values())
    if not present:
        return {}
    if mode == "inverse":
        return {c: total / (len(present) * n) for c, n in present.items()}
    if mode == "median":
        freq = {c: n / counts.image_pixels[c] for c, n in present.items()}
        median = float(np.median(list(freq.values())))
        return {c: median / f for c, f in freq.items()}
    if mode == "enet":
        return {c: float(1.0 / np.log(_ENET_C + n / total)) for c, n in present.items()}
    foreground = sum(n for c, n in present.items() if c != 0)
    beta = 1.0 - foreground / total
    return {c: (beta if c != 0 else 1.0 - beta) for c in present}
