"""Tell binary, semantic and instance masks apart, and refuse what is none of them.

The rule used by ``mask_type="auto"`` (docs/reference/mask-types.md tells it
with examples). A pixel is *uniform* when its whole neighbourhood (3 x 3, or
3 x 3 x 3) holds its value: nearly every pixel of a label mask is, nearly no
pixel of a photograph or of a compression fringe.

1. A float mask must hold whole numbers; fractional values (a resized or
   soft mask) are refused: say ``"binary"`` to threshold at half the maximum.
2. A mask with no foreground (only 0 and the ignore value) is refused as
   empty, unless empty masks are allowed.
3. At most one nonzero value: **binary**.
4. More than 16 nonzero values with fewer than a fifth of the pixels
   uniform: an intensity image (a raw image beside its mask), refused.
5. An 8-bit-range mask whose maximum is at least 128 and holds at least half
   of the nonzero pixels, with three or more values strictly between 0 and
   the maximum that make a fringe (fewer than 5% of their pixels uniform),
   looks like a binary mask with compression noise (a resized PNG) and is
   refused: say ``"binary"`` to threshold it.
6. 2 to 16 nonzero values evenly spaced from 0 up to a maximum of 128..255
   (0, 32, 64, ..., 255; 0, 128, 255): grey levels of class ids scaled for
   display, **semantic**.
7. Every nonzero value forms exactly one connected region (full
   connectivity): **instance** (one object per id).
8. At least a quarter of the nonzero values form several separate regions:
   **semantic** (a class occurs in several places).
9. Fewer than a quarter split, among more than 16 values: **instance** (a
   few objects cut in pieces, as overlapping annotations or crops leave
   them).
10. Otherwise (a few of at most 16 values split into pieces) the mask is
    ambiguous and refused: say ``"instance"`` or ``"semantic"``.

A semantic mask in which every class happens to be one blob passes rule 7 as
an instance mask (unless rule 6 reads its levels); datasets of semantic masks
should name their type.

A mask read from a lossy file (a JPEG) is binary by nature, with noise at
its edges: :func:`lossy_threshold` finds its levels (values with uniform
regions) and thresholds at half the top one, or refuses several levels.

Advice in messages names the Python keywords (``mask_type='binary'``); the
command line shows its options instead.
"""

from __future__ import annotations

import numpy as np

from weightmaps._shared.counting import count_ids
from weightmaps._shared.threads import map_parts

__all__ = [
    "MASK_TYPES",
    "EmptyMaskError",
    "MaskTypeError",
    "distinct_values",
    "infer_mask_type",
    "infer_sampled_type",
    "lossy_threshold",
    "uniform_pixels",
]

MASK_TYPES: tuple[str, ...] = ("auto", "binary", "semantic", "instance")

# Rule 4: an intensity image has many values and hardly a uniform pixel: the
# raw images measured (stardist img2d/img3d, DSB2018) 0.0 to 0.01 of their
# pixels, the label masks 0.56 (small 3-D nuclei) to 0.99.
_IMAGE_MAX_UNIFORM = 0.2
# Rule 5: compression noise is a fringe of in-between values around objects
# that mostly keep the top value; no pixel of a JPEG fringe was uniform
# (Pillow, quality 10 to 95), most pixels of a real class are.
_NOISE_MIN_VALUES = 3
_NOISE_MIN_TOP_SHARE = 0.5
_FRINGE_MAX_UNIFORM = 0.05
# Lossy masks: a level holds at least this share of the uniform foreground
# pixels (a JPEG's stray uniform noise values held 0.2% at most).
_LEVEL_MIN_SHARE = 0.02
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
        return np.flatnonzero(count_ids(mask, minlength=2))
    if mask.dtype.kind == "u" and mask.dtype.itemsize <= 2:
        return np.flatnonzero(count_ids(mask))
    if mask.dtype.kind in "iu" and mask.size:
        low, high = int(mask.min()), int(mask.max())
        if low >= 0 and high <= mask.size:
            # Ids up to the pixel count (labels 1..n in int32, most instance
            # masks): a count per id, linear where np.unique sorts or hashes.
            return np.flatnonzero(count_ids(mask, minlength=1)).astype(mask.dtype)
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
            "name mask_type='binary' to threshold at half the maximum"
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
    uniform = _LazyUniform(mask)
    _refuse_intensity_image(mask, foreground, uniform)
    _refuse_compression_noise(mask, foreground, uniform)
    if _display_levels(foreground):
        return "semantic"
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
        "mask?); name mask_type='instance' or mask_type='semantic'"
    )


def uniform_pixels(mask: np.ndarray) -> np.ndarray:
    """Pixels whose whole neighbourhood (3 x 3, 3 x 3 x 3) holds their value.

    The image's edge counts as more of the same (nearest-pixel padding).

    Examples
    --------
    >>> mask = np.zeros((4, 5), np.uint8)
    >>> mask[:, 3:] = 7
    >>> uniform_pixels(mask).astype(int)
    array([[1, 1, 0, 0, 1],
           [1, 1, 0, 0, 1],
           [1, 1, 0, 0, 1],
           [1, 1, 0, 0, 1]])
    """
    mask = np.asarray(mask)
    if mask.ndim == 0:
        return np.ones(mask.shape, bool)
    uniform = np.empty(mask.shape, bool)
    # Slabs along axis 0 on the kernel threads, each read with the plane on
    # either side: a pixel looks no further than its neighbours.
    n = mask.shape[0]

    def slab(lo: int, hi: int) -> None:
        start, stop = max(lo - 1, 0), min(hi + 1, n)
        uniform[lo:hi] = _uniform_in(mask[start:stop])[lo - start : hi - start]

    map_parts(slab, n, pixels=mask.size)
    return uniform


def _uniform_in(mask: np.ndarray) -> np.ndarray:
    """:func:`uniform_pixels` of a whole array, on the calling thread."""
    uniform = np.ones(mask.shape, bool)
    # One axis at a time: a pixel is uniform over axes 0..k when it equals its
    # two neighbours along k and both are uniform over axes 0..k-1. A neighbour
    # beyond the edge is the pixel itself (nearest padding), so it is skipped.
    # Six to eight times faster than a 3^d maximum and minimum filter.
    for axis in range(mask.ndim):
        if mask.shape[axis] < 2:
            continue
        before = [slice(None)] * mask.ndim
        after = [slice(None)] * mask.ndim
        before[axis] = slice(None, -1)
        after[axis] = slice(1, None)
        before, after = tuple(before), tuple(after)
        equal = mask[before] == mask[after]
        from_before = uniform[before] & equal
        equal &= uniform[after]
        uniform[after] &= from_before
        uniform[before] &= equal
    return uniform


class _LazyUniform:
    """The uniform pixels of a mask, computed when a rule first asks."""

    def __init__(self, mask: np.ndarray) -> None:
        self.mask = mask
        self._pixels: np.ndarray | None = None

    @property
    def pixels(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = uniform_pixels(self.mask)
        return self._pixels


def _refuse_intensity_image(
    mask: np.ndarray, foreground: np.ndarray, uniform: _LazyUniform
) -> None:
    if foreground.size <= _FEW_VALUES:
        return
    share = float(np.count_nonzero(uniform.pixels)) / uniform.pixels.size
    if share < _IMAGE_MAX_UNIFORM:
        zeros = mask.size - np.count_nonzero(mask)
        background = (
            "no 0 background" if zeros < 0.01 * mask.size else f"{zeros / mask.size:.0%} at 0"
        )
        raise MaskTypeError(
            f"looks like an intensity image, not labels ({foreground.size} values, "
            f"{background}, {share:.0%} of pixels inside a region of one value where a "
            "label mask has most); leave it out with glob=, or name mask_type='instance' "
            "or mask_type='semantic' if it is labels"
        )


def _refuse_compression_noise(
    mask: np.ndarray, foreground: np.ndarray, uniform: _LazyUniform
) -> None:
    top = int(foreground[-1])
    between = foreground[:-1]
    if top < 128 or top > 255 or between.size < _NOISE_MIN_VALUES:
        return
    nonzero = np.count_nonzero(mask)
    top_share = np.count_nonzero(mask == top) / nonzero if nonzero else 0.0
    if top_share < _NOISE_MIN_TOP_SHARE:
        return
    # Values of a real class fill regions; those of noise line the edges.
    in_between = (mask > 0) & (mask < top)
    n_between = int(np.count_nonzero(in_between))
    inside = int(np.count_nonzero(uniform.pixels & in_between))
    if n_between and inside / n_between >= _FRINGE_MAX_UNIFORM:
        return
    raise MaskTypeError(
        f"looks like a binary mask with compression noise ({between.size} values "
        f"between 0 and {top} along the edges, {top_share:.0%} of the foreground at "
        f"{top}); name mask_type='binary' to threshold at half the maximum"
    )


def _display_levels(foreground: np.ndarray) -> bool:
    """Class ids scaled to grey levels for display: 0, 32, 64, ..., 255 or 0, 128, 255."""
    top = int(foreground[-1])
    if not 128 <= top <= 255 or foreground.size > _FEW_VALUES:
        return False
    gaps = np.diff(np.concatenate([[0], foreground.astype(np.int64)]))
    return int(gaps.max() - gaps.min()) <= 1


def lossy_threshold(mask: np.ndarray, *, ignore_value: int | None = None) -> float:
    """Where a mask read from a lossy file (a JPEG) is cut into background and foreground.

    A JPEG of a binary mask holds its two levels, each in uniform regions,
    and tens of other values along their edges that no uniform region
    holds. The threshold is half the top level (half the maximum when no
    value holds a uniform region, as in a small mask): a 0/1 mask whose
    noise reaches 2 is cut at 0.5, not at 1.

    Parameters
    ----------
    mask : ndarray
        The mask as read (integers).
    ignore_value : int, optional
        Value of unlabelled pixels; not a level.

    Returns
    -------
    float
        Foreground is ``mask > threshold``.

    Raises
    ------
    EmptyMaskError
        No foreground pixel.
    MaskTypeError
        Two or more levels besides 0 (0, 128 and 255): thresholding would
        merge classes.

    Examples
    --------
    >>> mask = np.zeros((8, 8), np.uint8)
    >>> mask[2:7, 2:7] = 1
    >>> mask[1, 2:7] = 2  # noise above the top level
    >>> lossy_threshold(mask)
    0.5
    """
    mask = _whole_numbers(np.asarray(mask))
    if mask.dtype == bool:
        mask = mask.view(np.uint8)
    counted = mask if ignore_value is None else np.where(mask == ignore_value, 0, mask)
    if not counted.any():
        raise EmptyMaskError("mask has no foreground pixel")
    inside = counted[uniform_pixels(mask) & (counted != 0)]
    values, counts = np.unique(inside, return_counts=True)
    levels = values[counts >= _LEVEL_MIN_SHARE * inside.size] if inside.size else values
    if levels.size >= 2:
        shown = ", ".join(str(int(v)) for v in levels)
        raise MaskTypeError(
            f"JPEG mask with {levels.size} grey levels besides 0 ({shown}) under its "
            "compression noise: a lossy file cannot hold class ids; save the masks "
            "losslessly (PNG, TIFF), or name mask_type='binary' to threshold at half the "
            "maximum (the levels merged)"
        )
    top = float(levels[0]) if levels.size else float(counted.max())
    return top / 2


def _split_fraction(mask: np.ndarray, n_values: int, ignore_value: int | None) -> float:
    """Share of nonzero values that form more than one connected region."""
    if ignore_value is not None:
        mask = np.where(mask == ignore_value, 0, mask)
    from weightmaps.kernels.regions import regions_per_value

    _, regions = regions_per_value(mask)
    return float(np.count_nonzero(regions > 1)) / n_values


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
        "ids or class ids; name mask_type='instance' or mask_type='semantic'"
    )
