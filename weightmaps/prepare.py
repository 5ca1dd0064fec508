"""A mask read as its type: the labels every map kind is computed from.

:func:`prepare_array` (a mask in memory, numpy) and :func:`prepare_volume` (a
chunked volume, dask) make the same :class:`PreparedMask` by the same rules:

- the type: given, or decided by :func:`weightmaps.masktype.infer_mask_type`
  (a volume: by :func:`weightmaps.masktype.infer_sampled_type` on a sample of
  its chunks);
- ``classes``, what the class-balance and edge maps count: 0/1 foreground
  for binary and instance masks, with ignored pixels as class 2, the class ids
  themselves for semantic masks, the ignore value as their ignore index;
- ``values``: the mask as integers (a binary mask thresholded at half its
  maximum, so 0/1, 0/255 and noise alike; a JPEG read with ``auto`` at half
  its top level, see :func:`weightmaps.masktype.lossy_threshold`);
- masks without foreground are refused unless ``allow_empty``;
- with ``separate_touching``, instance masks are carved (a one-pixel gap
  between touching instances) and every map follows the carved target;
- ``instances``, what the U-Net map reads: the mask's ids, or connected
  components of a binary or semantic mask, computed when first needed.

This module knows formulas and mask types, not files.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from weightmaps.kernels.class_balance import ClassCounts
from weightmaps.masktype import (
    EmptyMaskError,
    MaskTypeError,
    distinct_values,
    infer_mask_type,
    infer_sampled_type,
    lossy_threshold,
)

__all__ = [
    "FG_BG_IGNORE",
    "PreparedMask",
    "mask_class_counts",
    "mask_instances",
    "prepare_array",
    "prepare_volume",
]

FG_BG_IGNORE = 2
"""Class of ignored pixels in the 0/1 class space of binary and instance masks."""

_SAMPLE_BLOCKS = 16  # chunks of a volume read to guess its type
_SAMPLE_PIXELS = 2**18  # pixels kept per sampled chunk


@dataclasses.dataclass(kw_only=True)
class PreparedMask:
    """A mask read as its type: what every map is computed from (the CPU work done).

    The arrays are numpy arrays (:func:`prepare_array`) or lazy dask arrays
    (:func:`prepare_volume`). Worker processes send numpy ones to the device
    path, so everything here pickles.

    Attributes
    ----------
    mask_type : {"binary", "semantic", "instance"}
    values : array
        The mask as integers (carved when touching instances were separated).
    classes : array
        Class id per pixel, as the balance and edge maps count them.
    class_ignore : int, optional
        The class id of ignored pixels in ``classes``.
    ignore : array of bool, optional
        Ignored pixels (weight 0 in every map).
    target : array, optional
        The carved mask, when touching instances were separated.
    premade : dict
        Maps already made while preparing (an edge map at another size,
        made on the CPU for the device path), by kind.
    counts : ClassCounts, optional
        The class counts of ``classes``, once counted.
    chunked : bool
        Dask arrays (a chunked volume) rather than numpy ones.
    connectivity : int, optional
        Of the connected components that make instances of a binary or
        semantic mask (default full).
    threshold : float, optional
        Where a binary mask holding more values than 0 and one other (a
        JPEG's noise) was cut: foreground is ``mask > threshold``.
    """

    mask_type: str
    values: Any
    classes: Any
    class_ignore: int | None
    ignore: Any = None
    target: Any = None
    premade: dict[str, Any] = dataclasses.field(default_factory=dict)
    counts: ClassCounts | None = None
    chunked: bool = False
    _instances: Any = None
    _present: list[int] | None = None
    connectivity: int | None = None
    threshold: float | None = None

    @property
    def instances(self) -> Any:
        """Instance labels: the mask's ids (ignored pixels 0), or connected components."""
        if self._instances is None:
            self._instances = self._label()
        return self._instances

    def release_instances(self) -> None:
        """Drop the instance labels made for the maps (a copy or a labelling), once
        no map still to compute needs them: a volume's memory goes to the next map.

        Carved instances are kept: they are not made again from ``values``. Any
        others are, the same, should a later kernel read them after all.
        """
        if self.target is None:
            self._instances = None

    def _label(self) -> Any:
        if self.mask_type == "instance":
            if self.ignore is None:
                return self.values
            where = _where(self.chunked)
            return where(self.ignore, 0, self.values)
        if self.chunked:
            from weightmaps.kernels.instances_dask import label_instances
        else:
            from weightmaps.kernels.instances import label_instances
        return label_instances(
            self.values,
            connectivity=self.connectivity,
            ignore_value=self.class_ignore if self.mask_type == "semantic" else None,
        )

    def present_classes(self) -> list[int] | None:
        """A semantic mask's class ids (the ignore value excluded); None otherwise."""
        if self.mask_type != "semantic":
            return None
        if self._present is None:
            if self.counts is not None and self.chunked:
                pixels = self.counts.pixels
                self._present = sorted(int(c) for c, n in pixels.items() if n)
                self._present = [c for c in self._present if c != self.class_ignore]
            else:
                present = distinct_values(self.values)
                self._present = [int(c) for c in present if c != self.class_ignore]
        return self._present

    def class_counts(self) -> ClassCounts:
        """The class counts of ``classes`` (ignored pixels not counted)."""
        if self.counts is None:
            if self.chunked:
                from weightmaps.kernels.balance_dask import class_counts
            else:
                from weightmaps.kernels.balance import class_counts
            self.counts = class_counts(self.classes, ignore_index=self.class_ignore)
        return self.counts


def _where(chunked: bool) -> Any:
    if chunked:
        import dask.array as da

        return da.where
    return np.where


# --- in memory ----------------------------------------------------------------


def prepare_array(
    mask: np.ndarray, settings: Any, *, kinds: Sequence[str] = (), lossy: bool = False
) -> PreparedMask:
    """Read a mask in memory as its type (see the module docstring).

    ``kinds`` that need instances get them now, and kinds computed on the
    CPU in any case (:attr:`~weightmaps.kinds.spec.MapKind.on_cpu`) their
    maps: the device path sends the result to the GPU. ``lossy``: the mask
    was read from a JPEG, which ``auto`` reads as binary with noise.

    Raises
    ------
    MaskTypeError
        A mask that is not 2-D or 3-D, holds values of no clear type, or no
        foreground (:class:`~weightmaps.masktype.EmptyMaskError`).
    """
    from weightmaps.kinds import REGISTRY
    from weightmaps.kinds.spec import MapContext

    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise MaskTypeError(f"mask must be 2-D or 3-D, got shape {mask.shape}")
    ignore_value = settings.ignore_value
    mask_type = settings.mask_type
    threshold = None
    if mask_type == "auto":
        try:
            if lossy and mask.dtype != bool:
                threshold = lossy_threshold(mask, ignore_value=ignore_value)
                mask_type = "binary"
            else:
                mask_type = infer_mask_type(mask, ignore_value=ignore_value)
        except EmptyMaskError:
            # Background (and ignored pixels) only: nothing to tell apart. Read
            # it as binary; the empty check refuses it unless empty masks are allowed.
            mask_type = "binary"
    ignore = None if ignore_value is None else mask == ignore_value
    if ignore is not None and not ignore.any():
        ignore = None
    if mask_type == "binary":
        prepared = _binary_array(mask, ignore, threshold)
    else:
        values = _integer_labels(mask, mask_type)
        prepared = _typed_mask(mask_type, values, ignore, ignore_value, chunked=False)
    prepared.connectivity = settings.connectivity
    _refuse_empty_array(prepared, settings)
    if mask_type == "instance" and settings.separate_touching:
        _carve(prepared)
    for name in kinds:
        kind = REGISTRY[name]
        if kind.needs_instances:
            prepared.instances  # noqa: B018 - computed now, on this CPU
        if kind.on_cpu is not None and kind.on_cpu(settings):
            prepared.premade[name] = kind.compute(prepared, settings, MapContext())
    return prepared


def _binary_array(
    mask: np.ndarray, ignore: np.ndarray | None, threshold: float | None = None
) -> PreparedMask:
    noisy = False
    if mask.dtype == bool:
        foreground = mask.copy()
    else:
        counted = mask if ignore is None else mask[~ignore]
        if counted.size == 0:
            foreground = np.zeros(mask.shape, bool)
        else:
            if not np.all(np.isfinite(counted)):
                raise MaskTypeError("binary mask holds NaN or infinite values")
            top = counted.max()
            # 0/255, 0/1 or float masks and noise alike: half the maximum,
            # unless a JPEG's levels said where (lossy_threshold).
            if threshold is None:
                threshold = float(top) / 2
            foreground = mask > threshold
            # Values besides 0 and the top: thresholding dropped something, said
            # in the manifest and the summary.
            noisy = bool(np.any((counted != 0) & (counted != top)))
    if ignore is not None:
        foreground &= ~ignore
    return PreparedMask(
        mask_type="binary",
        values=foreground.view(np.uint8),
        classes=_fg_bg_classes(foreground, ignore, chunked=False),
        class_ignore=FG_BG_IGNORE,
        ignore=ignore,
        threshold=threshold if noisy else None,
    )


def _foreground(values: Any, ignore: Any) -> Any:
    return values != 0 if ignore is None else (values != 0) & ~ignore


def _fg_bg_classes(foreground: Any, ignore: Any, chunked: bool) -> Any:
    classes = foreground.astype(np.uint8)
    if ignore is None:
        return classes
    if chunked:
        return _where(True)(ignore, np.uint8(FG_BG_IGNORE), classes)
    classes[ignore] = FG_BG_IGNORE
    return classes


def _typed_mask(
    mask_type: str, values: Any, ignore: Any, ignore_value: int | None, *, chunked: bool
) -> PreparedMask:
    """The classes a mask's type reads: its ids (semantic), or foreground/background."""
    if mask_type == "semantic":
        classes, class_ignore = values, ignore_value
    else:
        classes = _fg_bg_classes(_foreground(values, ignore), ignore, chunked)
        class_ignore = FG_BG_IGNORE
    return PreparedMask(
        mask_type=mask_type,
        values=values,
        classes=classes,
        class_ignore=class_ignore,
        ignore=ignore,
        chunked=chunked,
    )


def _integer_labels(mask: np.ndarray, mask_type: str) -> np.ndarray:
    if mask.dtype == bool:
        return mask.view(np.uint8)
    if np.issubdtype(mask.dtype, np.floating):
        if not np.all(np.isfinite(mask)) or np.any(mask != np.round(mask)):
            raise MaskTypeError(
                f"a {mask_type} mask must hold whole numbers; this float mask does not"
            )
        mask = mask.astype(np.int64)
    elif not np.issubdtype(mask.dtype, np.integer):
        raise MaskTypeError(f"unsupported mask dtype {mask.dtype}")
    if mask.size and mask.min() < 0:
        raise MaskTypeError(f"a {mask_type} mask must not hold negative values")
    return mask


def _refuse_empty_array(prepared: PreparedMask, settings: Any) -> None:
    if settings.allow_empty:
        return
    if prepared.mask_type == "semantic":
        present = distinct_values(prepared.values)
        if settings.ignore_value is not None:
            present = present[present != settings.ignore_value]
        has_content = present.size > 0
    else:
        has_content = bool(np.any(prepared.classes == 1))
    if not has_content:
        hint = ""
        if prepared.ignore is not None:
            hint = f", all labelled pixels equal the ignore value {settings.ignore_value}"
        raise EmptyMaskError(f"mask has no foreground pixel{hint} (allow empty masks to accept it)")


def _carve(prepared: PreparedMask) -> None:
    """Carve touching instances apart; every map then follows the carved target."""
    if prepared.chunked:
        from weightmaps.kernels.instances_dask import separate_instances
    else:
        from weightmaps.kernels.instances import separate_instances
    where = _where(prepared.chunked)
    carved = separate_instances(prepared.instances, connectivity=1)
    gap = (carved == 0) & (prepared.values != 0)
    if prepared.ignore is not None:
        gap &= ~prepared.ignore
    if prepared.chunked:
        target = where(gap, prepared.values.dtype.type(0), prepared.values)
        classes = where(gap, np.uint8(0), prepared.classes)
    else:
        target = prepared.values.copy()
        target[gap] = 0
        classes = prepared.classes.copy()
        classes[gap] = 0
    prepared._instances = carved
    prepared.target = target
    prepared.values = target
    prepared.classes = classes


# --- chunked volumes ------------------------------------------------------------


def _sample_values(volume: Any) -> np.ndarray:
    """Distinct values of a sample of whole chunks: every chunk of a volume of up
    to 64, else a strided sample of about 16 (thinned to 2^18 pixels each)."""
    import dask

    grid = volume.numblocks
    if math.prod(grid) <= 4 * _SAMPLE_BLOCKS:
        axes = [np.arange(n) for n in grid]
    else:
        per_axis = max(1, int(_SAMPLE_BLOCKS ** (1 / len(grid))))
        axes = [
            np.unique(np.linspace(0, n - 1, min(n, per_axis)).round().astype(int)) for n in grid
        ]
    picks = []
    for index in np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(grid)):
        block = volume.blocks[tuple(int(i) for i in index)]
        step = max(1, int((block.size / _SAMPLE_PIXELS) ** (1 / block.ndim)))
        picks.append(block[(slice(None, None, step),) * block.ndim].ravel())
    values = dask.compute(*[p.map_blocks(np.unique, chunks=(np.nan,)) for p in picks])
    return np.unique(np.concatenate(values)) if values else np.zeros(0, volume.dtype)


def _volume_type(volume: Any, settings: Any) -> str:
    if settings.mask_type != "auto":
        return settings.mask_type
    if not np.issubdtype(volume.dtype, np.integer):
        return "binary"
    return infer_sampled_type(_sample_values(volume), ignore_value=settings.ignore_value)


def prepare_volume(volume: Any, settings: Any) -> PreparedMask:
    """Read a chunked volume (a dask array) as its type, lazily (see the module docstring).

    Reads the volume for its value range and class counts (one pass each);
    the arrays of the result stay lazy.

    Raises
    ------
    MaskTypeError
        A volume of no clear type, of floats named semantic or instance, or
        without foreground.
    """
    import dask
    import dask.array as da

    mask_type = _volume_type(volume, settings)
    ignore_value = settings.ignore_value
    ignore = None if ignore_value is None else volume == ignore_value
    if mask_type != "binary" and not (
        volume.dtype == bool or np.issubdtype(volume.dtype, np.integer)
    ):
        raise MaskTypeError(
            f"a chunked {mask_type} volume must hold integers, got dtype {volume.dtype}"
        )
    if volume.dtype == bool:
        values = volume.astype(np.uint8)
    else:
        counted = volume if ignore is None else da.where(ignore, volume.dtype.type(0), volume)
        lowest, highest = dask.compute(counted.min(), counted.max())
        if mask_type != "binary" and lowest < 0:
            raise MaskTypeError(f"a {mask_type} mask must not hold negative values")
        if mask_type == "binary" and not np.isfinite(highest):
            raise MaskTypeError("binary mask holds NaN or infinite values")
        values = volume > float(highest) / 2 if mask_type == "binary" else volume
    if mask_type == "binary":
        # Ignored voxels are background.
        values = _foreground(values, ignore).astype(np.uint8)
    prepared = _typed_mask(mask_type, values, ignore, ignore_value, chunked=True)
    prepared.connectivity = settings.connectivity
    if mask_type == "instance" and settings.separate_touching:
        _carve(prepared)
    counts = prepared.class_counts()
    if mask_type == "semantic":
        empty = not prepared.present_classes()
    else:
        empty = counts.pixels.get(1, 0) == 0
    if empty and not settings.allow_empty:
        raise MaskTypeError("mask has no foreground pixel (allow empty masks to accept it)")
    return prepared


# --- what the statistics and the dataset pass read ----------------------------------


def mask_class_counts(
    mask: np.ndarray, settings: Any, *, lossy: bool = False
) -> tuple[str, ClassCounts]:
    """The mask type and the class counts the balance map of this mask uses.

    Binary and instance masks count background (0) against foreground (1);
    semantic masks count their class ids. Summed over a dataset, these are
    the counts of ``balance_scope="dataset"``. ``lossy`` as for
    :func:`prepare_array`.
    """
    prepared = prepare_array(mask, settings, lossy=lossy)
    return prepared.mask_type, prepared.class_counts()


def mask_instances(
    mask: np.ndarray, settings: Any, *, lossy: bool = False
) -> tuple[str, ClassCounts, np.ndarray]:
    """The mask type, class counts and instance labels of one mask.

    Instances are the mask's ids (instance masks) or connected components
    (binary, semantic), after carving when ``settings.separate_touching``.
    ``lossy`` as for :func:`prepare_array`.
    """
    prepared = prepare_array(mask, settings, lossy=lossy)
    return prepared.mask_type, prepared.class_counts(), prepared.instances
