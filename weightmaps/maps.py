"""All maps of one mask from one set of settings: what ``generate`` runs per file.

This module knows formulas and mask types, not files: it takes an array and
returns arrays. The pipeline (:mod:`weightmaps.pipeline`) reads, writes and
records.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from skimage import transform

from weightmaps.balance import BALANCE_MODES, ClassCounts, balance_weight_map, class_counts
from weightmaps.edge import edge_weight_map
from weightmaps.instances import label_instances, separate_instances
from weightmaps.masktype import (
    MASK_TYPES,
    EmptyMaskError,
    MaskTypeError,
    distinct_values,
    infer_mask_type,
)
from weightmaps.unet import unet_weight_map

__all__ = [
    "BALANCE_SCOPES",
    "KINDS",
    "MapSettings",
    "MaskMaps",
    "PreparedMask",
    "compute_maps",
    "compute_maps_batch",
    "compute_prepared",
    "mask_class_counts",
    "mask_instances",
    "prepare_mask",
]

KINDS: tuple[str, ...] = ("unet", "edge", "balance")
BALANCE_SCOPES: tuple[str, ...] = ("image", "dataset")

# Binary and instance masks are balanced as background 0 against foreground 1;
# ignored pixels get this class id so they can be excluded by value.
_FG_BG_IGNORE = 2


@dataclasses.dataclass(frozen=True)
class MapSettings:
    """Parameters of every map kind, as ``weightmaps generate`` takes them.

    Attributes
    ----------
    mask_type : {"auto", "binary", "semantic", "instance"}
        How to read label values; ``"auto"`` follows
        :func:`weightmaps.masktype.infer_mask_type`.
    ignore_value : int, optional
        Unlabelled pixels: weight 0 in every map, counted in no class.
    connectivity : int, optional
        Connectivity of the connected components that turn binary and
        semantic masks into instances (default: full, as skimage).
    separate_touching : bool
        Carve a gap between touching instances (instance masks) and compute
        every map from that carved target.
    allow_empty : bool
        Accept masks without foreground (else they are an error).
    w0, sigma : float
        U-Net border term height and width (sigma in units of the spacing).
    class_weights : None, "balanced" or (background, foreground)
        ``w_c`` of the U-Net map.
    spacing : None, "auto" or tuple of float
        Pixel size per axis for the U-Net distances: None = pixel units,
        "auto" = read from the file where it records one.
    edge_kernel, edge_alpha : int, float
        Window k and factor alpha of the edge map.
    edge_size : tuple of int, optional
        Compute the edge map at this (training) size instead of the mask's.
    balance_mode : {"inverse", "median", "enet", "beta"}
    balance_scope : {"image", "dataset"}
    """

    mask_type: str = "auto"
    ignore_value: int | None = None
    connectivity: int | None = None
    separate_touching: bool = False
    allow_empty: bool = False
    w0: float = 10.0
    sigma: float = 5.0
    class_weights: str | tuple[float, float] | None = None
    spacing: str | tuple[float, ...] | None = None
    edge_kernel: int = 31
    edge_alpha: float = 5.0
    edge_size: tuple[int, ...] | None = None
    balance_mode: str = "inverse"
    balance_scope: str = "image"

    def __post_init__(self) -> None:
        # 4 and 4.0 must give the same parameters (and the same digest).
        _normalize(self, "w0", float)
        _normalize(self, "sigma", float)
        _normalize(self, "edge_alpha", float)
        _normalize(self, "edge_kernel", int)
        if self.class_weights is not None and not isinstance(self.class_weights, str):
            _normalize(self, "class_weights", lambda v: tuple(float(x) for x in v))
        if self.spacing is not None and not isinstance(self.spacing, str):
            _normalize(self, "spacing", lambda v: tuple(float(x) for x in v))
        if self.edge_size is not None:
            _normalize(self, "edge_size", lambda v: tuple(int(x) for x in v))
        _require(self.mask_type in MASK_TYPES, f"mask type must be one of {MASK_TYPES}")
        _require(self.connectivity is None or self.connectivity >= 1, "connectivity must be >= 1")
        _require(math.isfinite(self.w0) and self.w0 >= 0, "w0 must be finite and >= 0")
        _require(math.isfinite(self.sigma) and self.sigma > 0, "sigma must be finite and > 0")
        if isinstance(self.class_weights, str):
            _require(self.class_weights == "balanced", "class weights: 'balanced' or two numbers")
        elif self.class_weights is not None:
            _require(
                len(self.class_weights) == 2 and all(w >= 0 for w in self.class_weights),
                "class weights need two numbers >= 0 (background, foreground)",
            )
        if isinstance(self.spacing, str):
            _require(self.spacing == "auto", "spacing: 'auto' or numbers")
        elif self.spacing is not None:
            _require(all(s > 0 for s in self.spacing), "spacing must be > 0")
        _require(
            self.edge_kernel >= 1 and self.edge_kernel % 2 == 1, "edge kernel must be odd and >= 1"
        )
        _require(math.isfinite(self.edge_alpha), "edge alpha must be finite")
        _require(
            self.edge_size is None or all(n >= 1 for n in self.edge_size),
            "edge size must be positive",
        )
        _require(self.balance_mode in BALANCE_MODES, f"balance mode must be one of {BALANCE_MODES}")
        _require(
            self.balance_scope in BALANCE_SCOPES, f"balance scope must be one of {BALANCE_SCOPES}"
        )

    def kind_params(self, kind: str) -> dict[str, Any]:
        """The settings a map kind depends on (JSON-ready), for staleness checks.

        ``"target"`` (the carved mask) depends on the shared settings only.
        """
        shared = {
            "mask_type": self.mask_type,
            "ignore_value": self.ignore_value,
            "separate_touching": self.separate_touching,
        }
        if self.separate_touching:
            shared["connectivity"] = self.connectivity
        own: dict[str, Any]
        if kind == "unet":
            own = {
                "connectivity": self.connectivity,
                "w0": self.w0,
                "sigma": self.sigma,
                "class_weights": _jsonable(self.class_weights),
                "spacing": _jsonable(self.spacing),
            }
        elif kind == "edge":
            own = {
                "kernel_size": self.edge_kernel,
                "alpha": self.edge_alpha,
                "size": _jsonable(self.edge_size),
            }
        elif kind == "balance":
            own = {"mode": self.balance_mode, "scope": self.balance_scope}
        elif kind == "target":
            own = {}
        else:
            raise ValueError(f"unknown map kind {kind!r}")
        return {"kind": kind, **shared, **own}


# MapSettings field -> its key in kind_params(), where the two differ.
PARAM_KEYS: dict[str, str] = {
    "edge_kernel": "kernel_size",
    "edge_alpha": "alpha",
    "edge_size": "size",
    "balance_mode": "mode",
    "balance_scope": "scope",
}


def _normalize(settings: MapSettings, name: str, convert: Any) -> None:
    try:
        value = convert(getattr(settings, name))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name}: {exc}") from exc
    object.__setattr__(settings, name, value)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


@dataclasses.dataclass
class MaskMaps:
    """What :func:`compute_maps` returns for one mask."""

    mask_type: str
    maps: dict[str, np.ndarray]
    target: np.ndarray | None = None
    counts: ClassCounts | None = None


@dataclasses.dataclass
class PreparedMask:
    """A mask read as its type: what every map is computed from (CPU work done).

    Made by :func:`prepare_mask`; :func:`compute_maps_batch` turns a list of
    them into maps on a torch device.
    """

    mask_type: str
    values: np.ndarray  # the mask as integers (carved when separated)
    classes: np.ndarray  # class id per pixel, as the balance map counts them
    class_ignore: int | None
    ignore: np.ndarray | None
    instances: np.ndarray | None = None
    target: np.ndarray | None = None
    edge: np.ndarray | None = None  # an edge map made at another size, on the CPU


def _prepare(mask: np.ndarray, settings: MapSettings) -> PreparedMask:
    mask = np.asarray(mask)
    if mask.ndim not in (2, 3):
        raise MaskTypeError(f"mask must be 2-D or 3-D, got shape {mask.shape}")
    ignore_value = settings.ignore_value
    mask_type = settings.mask_type
    if mask_type == "auto":
        try:
            mask_type = infer_mask_type(mask, ignore_value=ignore_value)
        except EmptyMaskError:
            # Background (and ignored pixels) only: nothing to tell apart. Read
            # it as binary; _refuse_empty refuses it unless empty masks are allowed.
            mask_type = "binary"
    ignore = None if ignore_value is None else mask == ignore_value
    if ignore is not None and not ignore.any():
        ignore = None
    if mask_type == "binary":
        prepared = _prepare_binary(mask, ignore)
    else:
        values = _integer_labels(mask, mask_type)
        if mask_type == "semantic":
            prepared = PreparedMask(mask_type, values, values, ignore_value, ignore)
        else:
            foreground = values != 0 if ignore is None else (values != 0) & ~ignore
            prepared = PreparedMask(
                mask_type, values, _fg_bg_classes(foreground, ignore), _FG_BG_IGNORE, ignore
            )
    _refuse_empty(prepared, settings)
    if mask_type == "instance" and settings.separate_touching:
        _separate(prepared, settings)
    return prepared


def _prepare_binary(mask: np.ndarray, ignore: np.ndarray | None) -> PreparedMask:
    if mask.dtype == bool:
        foreground = mask.copy()
    else:
        counted = mask if ignore is None else mask[~ignore]
        if counted.size == 0:
            foreground = np.zeros(mask.shape, bool)
        else:
            if not np.all(np.isfinite(counted)):
                raise MaskTypeError("binary mask holds NaN or infinite values")
            # JPEG noise and 0/255, 0/1 or float masks alike: half the maximum.
            foreground = mask > float(counted.max()) / 2
    if ignore is not None:
        foreground &= ~ignore
    classes = _fg_bg_classes(foreground, ignore)
    return PreparedMask("binary", foreground.view(np.uint8), classes, _FG_BG_IGNORE, ignore)


def _fg_bg_classes(foreground: np.ndarray, ignore: np.ndarray | None) -> np.ndarray:
    classes = foreground.astype(np.uint8)
    if ignore is not None:
        classes[ignore] = _FG_BG_IGNORE
    return classes


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


def _refuse_empty(prepared: PreparedMask, settings: MapSettings) -> None:
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


def _instances(prepared: PreparedMask, settings: MapSettings) -> np.ndarray:
    if prepared.instances is None:
        if prepared.mask_type == "instance":
            instances = prepared.values
            if prepared.ignore is not None:
                instances = np.where(prepared.ignore, 0, instances)
        else:
            instances = label_instances(
                prepared.values,
                connectivity=settings.connectivity,
                ignore_value=prepared.class_ignore if prepared.mask_type == "semantic" else None,
            )
        prepared.instances = instances
    return prepared.instances


def _separate(prepared: PreparedMask, settings: MapSettings) -> None:
    """Carve touching instances apart; every map then follows the carved target."""
    carved = separate_instances(_instances(prepared, settings), connectivity=1)
    gap = (carved == 0) & (prepared.values != 0)
    if prepared.ignore is not None:
        gap &= ~prepared.ignore
    target = prepared.values.copy()
    target[gap] = 0
    prepared.instances = carved
    prepared.target = target
    prepared.values = target
    prepared.classes = prepared.classes.copy()
    prepared.classes[gap] = 0


def _semantic_classes(prepared: PreparedMask) -> list[int] | None:
    if prepared.mask_type != "semantic":
        return None
    present = distinct_values(prepared.values)
    return [int(c) for c in present if c != prepared.class_ignore]


def _edge_map(prepared: PreparedMask, settings: MapSettings) -> np.ndarray:
    classes = _semantic_classes(prepared)
    if settings.edge_size is None:
        return edge_weight_map(
            prepared.classes if classes is None else prepared.values,
            kernel_size=settings.edge_kernel,
            alpha=settings.edge_alpha,
            classes=classes,
            ignore_index=prepared.class_ignore,
        )
    return _edge_map_at_size(prepared, settings, classes)


def _edge_map_at_size(
    prepared: PreparedMask, settings: MapSettings, classes: list[int] | None
) -> np.ndarray:
    size = tuple(settings.edge_size or ())
    if len(size) != prepared.values.ndim:
        raise MaskTypeError(
            f"edge size {size} does not match the mask's {prepared.values.ndim} dimensions"
        )
    ignore = None
    if prepared.ignore is not None:
        ignore = _resize(prepared.ignore, size, order=0).astype(bool)
    if classes is None:
        # PraNet resizes the mask bilinearly and keeps it soft: so do we.
        foreground = (prepared.classes == 1).astype(np.float32)
        soft = np.clip(_resize(foreground, size, order=1), 0.0, 1.0).astype(np.float32)
        if ignore is not None:
            soft[ignore] = 0.0
        weights = edge_weight_map(soft, kernel_size=settings.edge_kernel, alpha=settings.edge_alpha)
    else:
        resized = _resize(prepared.values, size, order=0).astype(prepared.values.dtype)
        weights = edge_weight_map(
            resized,
            kernel_size=settings.edge_kernel,
            alpha=settings.edge_alpha,
            classes=classes,
            ignore_index=prepared.class_ignore,
        )
    if ignore is not None:
        weights[ignore] = 0.0
    return weights


def _resize(array: np.ndarray, size: Sequence[int], *, order: int) -> np.ndarray:
    return transform.resize(
        array, size, order=order, mode="edge", anti_aliasing=False, preserve_range=True
    )


def _unet_map(
    prepared: PreparedMask, settings: MapSettings, spacing: Sequence[float] | None
) -> np.ndarray:
    return unet_weight_map(
        _instances(prepared, settings),
        w0=settings.w0,
        sigma=settings.sigma,
        class_weights=_unet_class_weights(settings),
        spacing=spacing,
        ignore_mask=prepared.ignore,
    )


def _unet_class_weights(settings: MapSettings) -> Mapping[int, float] | str | None:
    if isinstance(settings.class_weights, tuple):
        return {0: settings.class_weights[0], 1: settings.class_weights[1]}
    return settings.class_weights


def _counts(prepared: PreparedMask) -> ClassCounts:
    return class_counts(prepared.classes, ignore_index=prepared.class_ignore)


def mask_class_counts(mask: np.ndarray, settings: MapSettings) -> tuple[str, ClassCounts]:
    """The mask type and the class counts the balance map of this mask uses.

    Binary and instance masks count background (0) against foreground (1);
    semantic masks count their class ids. Summed over a dataset, these are
    the counts of ``balance_scope="dataset"``.
    """
    prepared = _prepare(mask, settings)
    return prepared.mask_type, _counts(prepared)


def mask_instances(mask: np.ndarray, settings: MapSettings) -> tuple[str, ClassCounts, np.ndarray]:
    """The mask type, class counts and instance labels of one mask.

    Instances are the mask's ids (instance masks) or connected components
    (binary, semantic), after carving when ``settings.separate_touching``.
    """
    prepared = _prepare(mask, settings)
    return prepared.mask_type, _counts(prepared), _instances(prepared, settings)


def compute_maps(
    mask: np.ndarray,
    settings: MapSettings,
    *,
    kinds: Sequence[str] = KINDS,
    spacing: Sequence[float] | None = None,
    dataset_counts: ClassCounts | None = None,
) -> MaskMaps:
    """Compute the requested maps of one mask.

    Parameters
    ----------
    mask : ndarray
        2-D or 3-D label mask as read from disk.
    settings : MapSettings
        Parameters of every kind.
    kinds : sequence of {"unet", "edge", "balance"}
        Which maps to compute.
    spacing : sequence of float, optional
        Pixel size per axis for the U-Net map (already resolved from
        ``settings.spacing``).
    dataset_counts : ClassCounts, optional
        Counts summed over the dataset, required when
        ``settings.balance_scope == "dataset"``.

    Returns
    -------
    MaskMaps
        The mask type, a float32 map per kind, the carved target when
        touching instances were separated, and this mask's class counts.

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((32, 32), np.uint16); mask[4:12, 4:12] = 7; mask[4:12, 14:20] = 9
    >>> result = compute_maps(mask, MapSettings())
    >>> result.mask_type, sorted(result.maps), result.maps["unet"].dtype
    ('instance', ['balance', 'edge', 'unet'], dtype('float32'))
    """
    unknown = [k for k in kinds if k not in KINDS]
    if unknown:
        raise ValueError(f"unknown map kinds {unknown}; choose from {KINDS}")
    return compute_prepared(
        _prepare(mask, settings),
        settings,
        kinds=kinds,
        spacing=spacing,
        dataset_counts=dataset_counts,
    )


def compute_prepared(
    prepared: PreparedMask,
    settings: MapSettings,
    *,
    kinds: Sequence[str] = KINDS,
    spacing: Sequence[float] | None = None,
    dataset_counts: ClassCounts | None = None,
) -> MaskMaps:
    """:func:`compute_maps` from a :func:`prepare_mask` result, on the CPU."""
    counts = _counts(prepared)
    maps: dict[str, np.ndarray] = {}
    if "unet" in kinds:
        maps["unet"] = _unet_map(prepared, settings, spacing)
    if "edge" in kinds:
        maps["edge"] = prepared.edge if prepared.edge is not None else _edge_map(prepared, settings)
    if "balance" in kinds:
        if settings.balance_scope == "dataset" and dataset_counts is None:
            raise ValueError("balance scope 'dataset' needs dataset_counts")
        maps["balance"] = balance_weight_map(
            prepared.classes,
            mode=settings.balance_mode,
            ignore_index=prepared.class_ignore,
            counts=dataset_counts if settings.balance_scope == "dataset" else counts,
        )
    return MaskMaps(prepared.mask_type, maps, prepared.target, counts)


def prepare_mask(
    mask: np.ndarray, settings: MapSettings, *, kinds: Sequence[str] = KINDS
) -> PreparedMask:
    """The CPU part of :func:`compute_maps`: type, classes, instances, carving.

    Connected components and carving have no good GPU form; a worker process
    runs this, and :func:`compute_maps_batch` the rest on the device. An edge
    map at another size (``settings.edge_size``) is made here too.
    """
    prepared = _prepare(mask, settings)
    if "unet" in kinds:
        _instances(prepared, settings)
    if "edge" in kinds and settings.edge_size is not None:
        prepared.edge = _edge_map_at_size(prepared, settings, _semantic_classes(prepared))
    return prepared


def _family(prepared: PreparedMask) -> str:
    # Binary and instance masks share one class space (0/1, ignore 2).
    return "semantic" if prepared.mask_type == "semantic" else "foreground"


def compute_maps_batch(
    prepared: Sequence[PreparedMask],
    settings: MapSettings,
    *,
    kinds: Sequence[str] = KINDS,
    spacing: Sequence[float] | None = None,
    dataset_counts: ClassCounts | None = None,
    device: Any = None,
    max_bytes: int | None = None,
) -> list[MaskMaps]:
    """The maps of many prepared masks, computed in batches on a torch device.

    Masks of one shape and class space are stacked and computed together by
    :mod:`weightmaps.torch_kernels`; results are numpy arrays equal to those
    of :func:`compute_maps` within ``1e-5 * w0`` (U-Net) and ``1e-5``.

    Parameters
    ----------
    prepared : sequence of PreparedMask
        From :func:`prepare_mask` with the same ``settings`` and ``kinds``.
    settings, kinds, dataset_counts
        As for :func:`compute_maps`.
    spacing : sequence of float, optional
        One pixel size for all these masks.
    device : torch device or str, optional
        Where to compute (default: CPU through torch).
    max_bytes : int, optional
        Memory budget of the kernels on the device; larger batches are split
        and larger masks done in overlapping slabs (default: half the free
        GPU memory).

    Examples
    --------
    >>> import numpy as np
    >>> mask = np.zeros((32, 32), np.uint16); mask[4:12, 4:12] = 7; mask[4:12, 14:20] = 9
    >>> ready = [prepare_mask(mask, MapSettings()), prepare_mask(mask.T, MapSettings())]
    >>> out = compute_maps_batch(ready, MapSettings(), device="cpu")
    >>> [sorted(m.maps) for m in out]
    [['balance', 'edge', 'unet'], ['balance', 'edge', 'unet']]
    """
    from weightmaps import torch_kernels as tk

    if settings.balance_scope == "dataset" and "balance" in kinds and dataset_counts is None:
        raise ValueError("balance scope 'dataset' needs dataset_counts")
    results = [MaskMaps(p.mask_type, {}, p.target, _counts(p)) for p in prepared]
    groups: dict[tuple, list[int]] = {}
    for i, p in enumerate(prepared):
        groups.setdefault((p.values.shape, _family(p)), []).append(i)
    for (_, family), members in groups.items():
        batch = [prepared[i] for i in members]
        maps: dict[str, Any] = {}
        if "unet" in kinds:
            maps["unet"] = tk.unet_weight_map_torch_batch(
                np.stack([_instances(p, settings) for p in batch]),
                w0=settings.w0,
                sigma=settings.sigma,
                class_weights=_unet_class_weights(settings),
                spacing=spacing,
                ignore_mask=_stacked_ignore(batch),
                device=device,
                max_bytes=max_bytes,
            )
        if "edge" in kinds and settings.edge_size is None:
            if family == "semantic":
                present = set()
                for p in batch:
                    present.update(_semantic_classes(p) or ())
                labels, classes = np.stack([p.values for p in batch]), sorted(present)
            else:
                labels, classes = np.stack([p.classes for p in batch]), None
            maps["edge"] = tk.edge_weight_map_torch_batch(
                labels,
                kernel_size=settings.edge_kernel,
                alpha=settings.edge_alpha,
                classes=classes,
                ignore_index=batch[0].class_ignore,
                device=device,
                max_bytes=max_bytes,
            )
        if "balance" in kinds:
            maps["balance"] = tk.balance_weight_map_torch_batch(
                np.stack([p.classes for p in batch]),
                mode=settings.balance_mode,
                ignore_index=batch[0].class_ignore,
                counts=dataset_counts if settings.balance_scope == "dataset" else None,
                device=device,
            )
        for kind, stacked in maps.items():
            host = stacked.cpu().numpy()
            for j, i in enumerate(members):
                results[i].maps[kind] = host[j]
        if "edge" in kinds and settings.edge_size is not None:
            for i in members:
                edge = prepared[i].edge
                results[i].maps["edge"] = (
                    edge
                    if edge is not None
                    else _edge_map_at_size(prepared[i], settings, _semantic_classes(prepared[i]))
                )
    for result in results:
        result.maps = {k: result.maps[k] for k in KINDS if k in result.maps}
    return results


def _stacked_ignore(batch: Sequence[PreparedMask]) -> np.ndarray | None:
    if all(p.ignore is None for p in batch):
        return None
    return np.stack(
        [p.ignore if p.ignore is not None else np.zeros(p.values.shape, bool) for p in batch]
    )
