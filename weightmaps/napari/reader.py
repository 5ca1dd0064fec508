"""napari reader: weight maps as image layers with their spacing, carved targets as labels.

No napari import: a layer is napari's plain ``(data, kwargs, layer_type)``
tuple, so this module is tested without a display.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps.map_files import MapFile, output_kind, read_map_file

__all__ = ["LAYER_STYLES", "get_reader", "layer_style", "read_layers"]

LayerData = tuple[Any, dict[str, Any], str]

LAYER_STYLES: dict[str, dict[str, Any]] = {
    # Weights from 1 (or 0) up: a sequential map, brightest where the loss counts most.
    "unet": {"colormap": "inferno"},
    "edge": {"colormap": "magma"},
    "balance": {"colormap": "viridis"},
    # Signed distances: a diverging map centred on the contour.
    "sdf": {"colormap": "PiYG"},
    "skeleton": {"colormap": "gray"},
    "distance": {"colormap": "magma"},
}
"""Colormap per map kind; any other kind is shown in grey."""


def _paths(path: str | Sequence[str]) -> list[str]:
    if isinstance(path, str | os.PathLike):
        return [os.fspath(path)]
    return [os.fspath(p) for p in path]


def get_reader(path: str | Sequence[str]) -> Callable[..., list[LayerData]] | None:
    """napari's reader hook: :func:`read_layers` when every path is one of our outputs.

    Examples
    --------
    >>> get_reader("out/cells_01.unet.tif") is read_layers
    True
    >>> get_reader(["cells_01.tif"]) is None
    True
    """
    paths = _paths(path)
    if paths and all(output_kind(p.rstrip("/\\")) is not None for p in paths):
        return read_layers
    return None


def layer_style(kind: str, file: MapFile | None = None) -> dict[str, Any]:
    """Colormap and contrast limits of a map kind's layer.

    The contrast is the map's range as the manifest recorded it (a zarr map is
    not read for it), else the array's own; signed distances are centred on 0.

    Examples
    --------
    >>> layer_style("unet")
    {'colormap': 'inferno'}
    """
    style = dict(LAYER_STYLES.get(kind, {"colormap": "gray"}))
    if file is None:
        return style
    low = high = None
    if file.summary is not None:
        low, high = file.summary["min"], file.summary["max"]
    elif isinstance(file.data, np.ndarray) and file.data.size:
        low, high = float(file.data.min()), float(file.data.max())
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        if kind == "sdf":
            reach = max(abs(low), abs(high)) or 1.0
            low, high = -reach, reach
        style["contrast_limits"] = [low, high if high > low else low + 1.0]
    return style


def _layer(path: str, file: MapFile) -> LayerData:
    kind = file.kind or "image"
    stem = Path(path.rstrip("/\\")).name
    for suffix in (".tif", ".tiff", ".zarr"):
        if stem.lower().endswith(suffix):
            stem = stem[: -len(suffix)]
    metadata = {
        "weightmaps_kind": kind,
        "weightmaps_params": file.params or {},
        "weightmaps_mask": file.mask,
        "spacing_unit": file.unit,
        "path": path,
    }
    kwargs: dict[str, Any] = {"name": stem, "metadata": metadata}
    if file.spacing is not None:
        kwargs["scale"] = list(file.spacing)
    if kind == "target":
        return file.data, kwargs, "labels"
    kwargs.update(layer_style(kind, file))
    kwargs["blending"] = "additive"
    return file.data, kwargs, "image"


def read_layers(path: str | Sequence[str]) -> list[LayerData]:
    """One layer per file: maps as images, the carved target as labels.

    Zarr maps stay lazy (dask arrays) however large; TIFF maps are read
    whole. ``scale`` is the spacing the file (or the manifest) records, so a
    3D map lies over its image in physical units. The layer's metadata holds
    the kind, the parameters the map was made with and its mask.

    Examples
    --------
    >>> data, kwargs, layer_type = read_layers("out/vol.unet.tif")[0]  # doctest: +SKIP
    >>> kwargs["scale"], kwargs["colormap"], layer_type  # doctest: +SKIP
    ([2.0, 0.5, 0.5], 'inferno', 'image')
    """
    return [_layer(p, read_map_file(p.rstrip("/\\"), lazy=True)) for p in _paths(path)]

