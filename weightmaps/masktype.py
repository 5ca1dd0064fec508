"""Tell binary, semantic and instance masks apart, and refuse what is none of them.

The rule used by ``mask_type="auto"`` (documented in the README as well):

1. A float mask must hold whole numbers; fractional values (a resized or
   soft mask) are refused: say ``"binary"`` to threshold at half the maximum.
2. A mask with no foreground (only 0 and the ignore value) is refused as
   empty, unless empty masks are allowed.
3. At most one nonzero value: **binary**.
4. An 8-bit-range mask whose maximum is at least 128 and holds at least half
   of the nonzero pixels, with three or more values strictly between 0 and
   the maximum, looks like a binary mask with compression noise (a JPEG, or
   a resized PNG) and is refused: say ``"binary"`` to threshold it.
5. Every nonzero value forms exactly one connected region (full
   connectivity): **instance** (one object per id).
6. At least a quarter of the nonzero values form several separate regions:
   **semantic** (a class occurs in several places).
7. Fewer than a quarter split, among more than 16 values: **instance** (a
   few objects cut in pieces, as overlapping annotations or crops leave
   them).
8. Otherwise (a few of at most 16 values split into pieces) the mask is
   ambiguous and refused: say ``"instance"`` or ``"semantic"``.

A semantic mask in which every class happens to be one blob passes rule 5 as
an instance mask; datasets of semantic masks should name their type.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "MASK_TYPES",
    "EmptyMaskError",
    "MaskTypeError",
    "distinct_values",
    "infer_mask_type",
    "infer_sampled_type",
]

MASK_TYPES: tuple[str, ...] = ("auto", "binary", "semantic", "instance")

# Rule 4: compression noise is a fringe of in-between values around objects
# that mostly keep the top value.
_NOISE_MIN_VALUES = 3
_NOISE_MIN_TOP_SHARE = 0.5
# Rules 6 and 7: share of values split into several regions.
_SEMANTIC_SPLIT_FRACTION = 0.25
# Rule 7: with this many values or fewer, a split value could be a class.
_FEW_VALUES = 16


class MaskTypeError(ValueError):
    """The mask's values do not fit the requested or any clear mask type."""


class EmptyMaskError(MaskTypeError):
    """The mask has no foreground pixel."""


def distinct_values(mask: np.ndarray) -> np.ndarray:
    """Sorted distinct values of a mask, by histogram when the range is small.

    Examples
    --------
    >>> distinct_values(np.array([[3, 0], [3, 7]], np.uint8))
    array([0, 3, 7])
    """
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return np.flatnonzero(np.bincount(mask.ravel().view(np.uint8), minlength=2))
    if mask.dtype.kind == "u" and mask.dtype.itemsize <= 2:
        return np.flatnonzero(np.bincount(mask.ravel()))
    return np.unique(mask)


def _whole_numbers(mask: np.ndarray) -> np.ndarray:
    """Integer view of the mask; float masks must hold whole numbers."""
    if mask.dtype == bool or np.issubdtype(mask.dtype, np.integer):
        return mask
    if not np.issubdtype(mask.dtype, np.floating):
        raise MaskTypeError(f"unsupported mask dtype {mask.dtype}")
    if not np.all(np.isfinite(mask)):
        raise MaskTypeError("float mask holds NaN or infinite values")
    fractional = mask != np.round(mask)
    if fractional.any():
        example = float(mask[fractional].flat[0])
        raise MaskTypeError(
            f"float mask with fractional values (e.g. {example:.4g}); "
            "say mask type 'binary' to threshold at half the maximum"
        )
    return mask.astype(np.int64)


def infer_mask_type(mask: np.ndarray, *, ignore_value: int | None = None) -> str:
    """Classify a mask as ``"binary"``, ``"semantic"`` or ``"instance"``.

    Parameters
    ----------
    mask : ndarray
        2-D or 3-D label mask.
    ignore_value : int, optional
        Value that marks unlabelled pixels; not counted as a class.

    Returns
    -------
    str
        The mask type, by the rule in this module's docstring.

    Raises
    ------
    EmptyMaskError
        No foreground pixel.
    MaskTypeError
        Fractional float values, compression noise, negative values, or a
        mask that fits neither instance nor semantic clearly. The message
        says which type to name instead.

    Examples
    --------
    >>> import numpy as np
    >>> infer_mask_type(np.array([[0, 255], [255, 0]], np.uint8))
    'binary'
    >>> infer_mask_type(np.array([[1, 1, 0, 2], [0, 0, 0, 2]]))
    'instance'
    >>> infer_mask_type(np.array([[1, 0, 1], [2, 0, 2]]))
    'semantic'
    """
    mask = _whole_numbers(np.asarray(mask))
    if mask.dtype == bool:
        if not mask.any():
            raise EmptyMaskError("mask has no foreground pixel")
        return "binary"
    values = distinct_values(mask)
    if values[0] < 0 and values[0] != ignore_value:
        raise MaskTypeError(f"mask has negative values (min {int(values[0])})")
    foreground = values[values != 0]
    if ignore_value is not None:
        foreground = foreground[foreground != ignore_value]
    if foreground.size == 0:
        raise EmptyMaskError("mask has no foreground pixel")
    if foreground.size == 1:
        return "binary"
    _refuse_compression_noise(mask, foreground)
    split = _split_fraction(mask, foreground.size, ignore_value)
    if split == 0:
        return "instance"
    if split >= _SEMANTIC_SPLIT_FRACTION:
        return "semantic"
    if foreground.size > _FEW_VALUES:
        return "instance"
    raise MaskTypeError(
        f"ambiguous mask type: {split:.0%} of its {foreground.size} nonzero values form "
        "several separate regions (an instance mask with split objects, or a semantic "
        "mask?); name the mask type 'instance' or 'semantic'"
    )


def _refuse_compression_noise(mask: np.ndarray, foreground: np.ndarray) -> None:
    top = int(foreground[-1])
    between = foreground[:-1]
    if top < 128 or top > 255 or between.size < _NOISE_MIN_VALUES:
        return
    nonzero = np.count_nonzero(mask)
    top_share = np.count_nonzero(mask == top) / nonzero if nonzero else 0.0
    if top_share >= _NOISE_MIN_TOP_SHARE:
        raise MaskTypeError(
            f"looks like a binary mask with compression noise ({between.size} values "
            f"between 0 and {top}, {top_share:.0%} of the foreground at {top}); say mask "
            "type 'binary' to threshold at half the maximum"
        )


def _split_fraction(mask: np.ndarray, n_values: int, ignore_value: int | None) -> float:
    """Share of nonzero values that form more than one connected region."""
    if ignore_value is not None:
        mask = np.where(mask == ignore_value, 0, mask)
    from skimage import measure  # a second to import: not for `weightmaps --help`

    regions = measure.label(mask, background=0, connectivity=mask.ndim)
    n_regions = int(regions.max())
    if n_regions == n_values:
        return 0.0
    # All pixels of a region share one value, so any pixel names it.
    region_value = np.zeros(n_regions + 1, dtype=mask.dtype)
    region_value[regions.ravel()] = mask.ravel()
    _, regions_per_value = np.unique(region_value[1:], return_counts=True)
    return float(np.count_nonzero(regions_per_value > 1)) / n_values


def infer_sampled_type(values: np.ndarray, *, ignore_value: int | None = None) -> str:
    """The type of an integer volume from the distinct values of a sample of its chunks.

    Connectivity cannot be judged from a sample, so only the counting rules
    apply: at most one nonzero value is **binary**, more than 16 are
    **instance**, and 2 to 16 are refused as ambiguous (instance ids or class
    ids): name the type.

    Examples
    --------
    >>> infer_sampled_type(np.array([0, 255]))
    'binary'
    >>> infer_sampled_type(np.arange(40))
    'instance'
    """
    values = np.asarray(values)
    if ignore_value is not None:
        values = values[values != ignore_value]
    nonzero = int(np.count_nonzero(values))
    if nonzero <= 1:
        return "binary"
    if nonzero > _FEW_VALUES:
        return "instance"
    raise MaskTypeError(
        f"ambiguous volume: {nonzero} nonzero values in a sample of its chunks, instance "
        "ids or class ids; say --mask-type instance or semantic"
    )
