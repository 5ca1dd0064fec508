"""Class-balance weights: one weight per class, painted on every pixel.

Counts come either from the mask itself (scope "image") or from a whole
dataset, summed with ``+`` over the :class:`ClassCounts` of every mask
(scope "dataset").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np

from weightmaps._tensors import is_torch_tensor

__all__ = [
    "BALANCE_MODES",
    "ClassCounts",
    "balance_weight_map",
    "class_counts",
    "class_weights",
    "paint_class_weights",
]

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


def _class_array(mask: np.ndarray) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.view(np.uint8)
    if not np.issubdtype(mask.dtype, np.integer):
        raise TypeError(
            f"class-balance weights need integer class ids, got dtype {mask.dtype}; "
            "threshold a float mask first"
        )
    return mask


def _counted(mask: np.ndarray, ignore_index: int | None) -> np.ndarray:
    values = mask.ravel()
    if ignore_index is not None:
        values = values[values != ignore_index]
    return values


# Class ids below this are histogrammed with bincount / painted with a lookup
# table, which is linear time; others (instance ids, negatives) fall back to a sort.
_DENSE_IDS = 1 << 16


def _is_dense(values: np.ndarray) -> bool:
    return values.size > 0 and int(values.min()) >= 0 and int(values.max()) < _DENSE_IDS


def _histogram(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Classes present in ``values`` (sorted) and their pixel counts."""
    if _is_dense(values):
        counts = np.bincount(values.astype(np.intp, copy=False))
        classes = np.flatnonzero(counts)
        return classes, counts[classes]
    return np.unique(values, return_counts=True)


def class_counts(mask: np.ndarray, *, ignore_index: int | None = None) -> ClassCounts:
    """Count the pixels of every class in one mask.

    Parameters
    ----------
    mask : ndarray of int or bool
        Class ids (a binary mask counts as classes 0 and its foreground value).
    ignore_index : int, optional
        Value whose pixels are not counted.

    Returns
    -------
    ClassCounts
        Sum these over a dataset with ``+`` (or ``sum``).

    Examples
    --------
    >>> import numpy as np
    >>> c = class_counts(np.array([[0, 0, 1], [0, 255, 1]]), ignore_index=255)
    >>> c.pixels, c.total
    ({0: 3, 1: 2}, 5)
    """
    values = _counted(_class_array(mask), ignore_index)
    classes, counts = _histogram(values)
    pixels = {int(c): int(n) for c, n in zip(classes, counts, strict=True)}
    total = int(values.size)
    return ClassCounts(pixels=pixels, image_pixels={c: total for c in pixels})


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
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {mode!r}; expected one of {BALANCE_MODES}")
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


def paint_class_weights(
    mask: np.ndarray, weights: Mapping[int, float], *, ignore_index: int | None = None
) -> np.ndarray:
    """float32 map with ``weights[class]`` on every pixel and 0 on ignored ones.

    Raises ``ValueError`` when a counted pixel's class has no weight.
    """
    mask = _class_array(mask)
    if _is_dense(mask):
        classes = np.flatnonzero(np.bincount(mask.ravel().astype(np.intp, copy=False)))
        index = mask
        lut = np.zeros(int(classes[-1]) + 1, np.float32)
        slots = classes
    else:
        classes, inverse = np.unique(mask, return_inverse=True)
        index = inverse.reshape(mask.shape)
        lut = np.zeros(len(classes), np.float32)
        slots = np.arange(len(classes))
    missing = []
    for slot, c in zip(slots.tolist(), classes.tolist(), strict=True):
        if ignore_index is not None and c == ignore_index:
            continue
        if c in weights:
            lut[slot] = weights[c]
        else:
            missing.append(c)
    if missing:
        raise ValueError(
            f"class(es) {missing} occur in the mask but have no count or weight; "
            "dataset counts must include every mask they are applied to"
        )
    return lut[index]


def balance_weight_map(
    mask: np.ndarray,
    *,
    mode: str = "inverse",
    ignore_index: int | None = None,
    counts: ClassCounts | Mapping[int, int] | None = None,
) -> np.ndarray:
    """Per-pixel class-balance weights ``w(x) = w_class(x)``.

    Parameters
    ----------
    mask : ndarray of int or bool
        Class ids, 2-D or 3-D (any dimension works).
    mode : {"inverse", "median", "enet", "beta"}
        How class weights follow from the counts; see :func:`class_weights`.
    ignore_index : int, optional
        Pixels of this value get weight 0 and are not counted.
    counts : ClassCounts or mapping, optional
        Counts to weight by, e.g. summed over a dataset with
        :func:`class_counts`. A plain mapping is ``{class: pixels}``. Default:
        this mask's own counts.

    Returns
    -------
    ndarray of float32
        Same shape as ``mask``. A torch tensor in gives a float32 tensor on
        its device (:mod:`weightmaps.torch_kernels`).

    Examples
    --------
    >>> import numpy as np
    >>> balance_weight_map(np.array([[0, 0, 0, 1]]))
    array([[0.6666667, 0.6666667, 0.6666667, 2.       ]], dtype=float32)
    """
    if is_torch_tensor(mask):
        from weightmaps.torch_kernels import balance_weight_map_torch

        return balance_weight_map_torch(mask, mode=mode, ignore_index=ignore_index, counts=counts)
    if counts is None:
        counts = class_counts(mask, ignore_index=ignore_index)
    return paint_class_weights(mask, class_weights(counts, mode), ignore_index=ignore_index)
