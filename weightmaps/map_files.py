"""A map file read with what it records: its kind, its parameters, its spacing.

What the MONAI reader (:mod:`weightmaps.monai`) and the napari plugin
(:mod:`weightmaps.napari`) show beside the pixels. A map's kind is in its
name (``cells.unet.tif``, ``vol.edge.zarr``); its parameters are in the
attributes of a zarr map, and for a TIFF map in the manifest
``weightmaps.json`` of the OUT folder it lies in (looked for in the folders
above it); its spacing is the one the TIFF records (ImageJ spacing and
resolution tags), else the mask's as the manifest recorded it.

Masks and images are read here too, as stored (no mask-type rule): a TIFF
``(*spatial)`` or ``(*spatial, samples)``, a PNG or JPEG through Pillow, an
``.npy`` without pickles. Every TIFF's and zarr's size is checked from its
header before anything is read.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps.io import DEFAULT_MAX_PIXELS, read_spacing_unit
from weightmaps.io.names import OUTPUT_KINDS
from weightmaps.pipeline.manifest import MANIFEST_NAME, Manifest, ManifestError

__all__ = [
    "READ_SUFFIXES",
    "MapFile",
    "find_manifest",
    "output_kind",
    "read_map_file",
    "read_tiff_checked",
]

READ_SUFFIXES: tuple[str, ...] = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".npy", ".zarr")
"""What :func:`read_map_file` reads: maps, masks and images."""

_MANIFEST_LEVELS = 16  # folders looked through, upwards, for an OUT's manifest


@dataclasses.dataclass(frozen=True)
class MapFile:
    """A file's pixels and what is recorded about them.

    Attributes
    ----------
    data : ndarray or dask array
        As stored: ``(*spatial)``, or ``(*spatial, C)`` where ``channel_axis``
        says so. A zarr map read with ``lazy=True`` is a dask array.
    channel_axis : int or None
        -1 for a colour image's samples, None when every axis is spatial.
    kind : str or None
        The output kind (``"unet"``, ``"edge"``, ``"balance"``, ``"target"``
        ...) from the name, None for a mask or an image.
    spacing : tuple of float or None
        Pixel size per spatial axis, in the axes' order.
    unit : str or None
        Unit of ``spacing`` when recorded (ImageJ's ``unit``).
    params : dict or None
        The parameters the map was made with (manifest or zarr attributes).
    mask : str or None
        The source mask, relative to MASKS, when the manifest names it.
    summary : dict or None
        The map's ``min``, ``max`` and ``mean`` as the manifest recorded them.
    """

    data: Any
    channel_axis: int | None = None
    kind: str | None = None
    spacing: tuple[float, ...] | None = None
    unit: str | None = None
    params: dict[str, Any] | None = None
    mask: str | None = None
    summary: dict[str, float] | None = None

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        shape = tuple(int(n) for n in self.data.shape)
        return shape if self.channel_axis is None else shape[:-1]


def output_kind(path: str | os.PathLike[str]) -> str | None:
    """The output kind a file's name says, or None.

    Examples
    --------
    >>> output_kind("out/a/cells_01.unet.tif"), output_kind("vol.target.zarr")
    ('unet', 'target')
    >>> output_kind("masks/cells_01.tif") is None
    True
    """
    name = Path(path).name.lower()
    for kind in OUTPUT_KINDS:
        if name.endswith((f".{kind}.tif", f".{kind}.tiff", f".{kind}.zarr")):
            return kind
    return None


def find_manifest(path: str | os.PathLike[str]) -> Path | None:
    """The ``weightmaps.json`` of the nearest folder above ``path`` that has one."""
    folder = Path(os.path.abspath(path)).parent
    for _ in range(_MANIFEST_LEVELS):
        candidate = folder / MANIFEST_NAME
        if candidate.is_file() and not candidate.is_symlink():
            return candidate
        if folder.parent == folder:
            break
        folder = folder.parent
    return None


@dataclasses.dataclass(frozen=True)
class _Recorded:
    """What the manifest says of one output."""

    params: dict[str, Any] | None = None
    record: dict[str, Any] | None = None  # the mask's record
    mask: str | None = None
    output: dict[str, Any] | None = None


def _manifest_record(path: Path, kind: str) -> _Recorded:
    """What the manifest of the OUT holding ``path`` records of that output."""
    found = find_manifest(path)
    if found is None:
        return _Recorded()
    try:
        manifest = Manifest.load(found)
    except ManifestError as exc:
        warnings.warn(f"{exc}; reading {path.name} without its parameters", stacklevel=3)
        return _Recorded()
    if manifest is None:
        return _Recorded()
    rel = Path(os.path.abspath(path)).relative_to(found.parent.absolute()).as_posix()
    for mask, record in manifest.masks.items():
        output = (record.get("outputs") or {}).get(kind)
        if output is not None and output.get("path") == rel:
            params = manifest.parameter_sets.get(output.get("params") or "")
            return _Recorded(None if params is None else dict(params), record, mask, output)
    return _Recorded()


def read_tiff_checked(
    source: Any, max_pixels: int = DEFAULT_MAX_PIXELS
) -> tuple[np.ndarray, str]:
    """A TIFF's first series and its axes, after checking the header's pixel count
    (samples not counted): a header claiming 60000^2 pixels is refused before
    anything is allocated.

    Raises
    ------
    ValueError
        More pixels than ``max_pixels``.
    """
    import tifffile

    with tifffile.TiffFile(source) as tif:
        series = tif.series[0]
        pixels = math.prod(
            n for n, axis in zip(series.shape, series.axes, strict=True) if axis != "S"
        )
        if pixels > max_pixels:
            raise ValueError(
                f"{source}: has {pixels} pixels, more than the limit of {max_pixels} (max_pixels)"
            )
        return tif.asarray(), series.axes


def _read_zarr(path: Path, lazy: bool, max_pixels: int) -> tuple[Any, dict[str, Any]]:
    import zarr

    from weightmaps.io.volume_source import open_volume
    from weightmaps.io.volumes import VolumeLimits

    # The volume checks of generate: metadata from strangers, read without following links.
    array, _, _ = open_volume(str(path), VolumeLimits())
    if not lazy and math.prod(array.shape) > max_pixels:
        raise ValueError(
            f"{path}: has {math.prod(array.shape)} voxels, more than the limit of {max_pixels} "
            "(max_pixels); read it lazily"
        )
    attributes = dict(zarr.open_array(str(path), mode="r").attrs)
    return (array if lazy else np.asarray(array.compute())), attributes


def read_map_file(
    path: str | os.PathLike[str], *, lazy: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS
) -> MapFile:
    """Read a map, a mask or an image with its kind, parameters and spacing.

    Parameters
    ----------
    path : path-like
        A map written by ``weightmaps generate`` (``*.unet.tif``,
        ``*.edge.zarr``, ...), a mask or an image (``.tif``, ``.png``,
        ``.jpg``, ``.npy``, ``.zarr``).
    lazy : bool
        Give a zarr map as a dask array (for napari) instead of reading it.
    max_pixels : int
        Refuse a TIFF or (read whole) zarr with more pixels, from its header.

    Returns
    -------
    MapFile

    Examples
    --------
    >>> read_map_file("out/cells_01.unet.tif").params["sigma"]  # doctest: +SKIP
    5.0
    """
    path = Path(path)
    suffix = path.suffix.lower()
    kind = output_kind(path)
    channel_axis: int | None = None
    attributes: dict[str, Any] = {}
    if suffix == ".zarr":
        data, attributes = _read_zarr(path, lazy, max_pixels)
    elif suffix in (".tif", ".tiff"):
        data, axes = read_tiff_checked(path, max_pixels)
        channel_axis = -1 if axes.endswith(("S", "C")) and data.ndim > 2 else None
    elif suffix == ".npy":
        stored = np.load(path, allow_pickle=False, mmap_mode="r")  # the header only, so far
        if math.prod(stored.shape) > max_pixels:
            raise ValueError(
                f"{path}: has {math.prod(stored.shape)} pixels, more than the limit of "
                f"{max_pixels} (max_pixels)"
            )
        data = np.array(stored)
    elif suffix in (".png", ".jpg", ".jpeg"):
        from PIL import Image

        with Image.open(path) as img:
            if img.mode in ("P", "PA"):
                alpha = img.mode == "PA" or "transparency" in img.info
                img = img.convert("RGBA" if alpha else "RGB")
            data = np.asarray(img)
        channel_axis = -1 if data.ndim == 3 else None
    else:
        raise ValueError(f"{path}: cannot read a {suffix or 'suffix-less'} file; {READ_SUFFIXES}")
    spacing, unit = read_spacing_unit(path) if suffix in (".tif", ".tiff") else (None, None)
    recorded = _Recorded() if kind is None else _manifest_record(path, kind)
    params, record = recorded.params, recorded.record
    if kind is not None and isinstance(attributes.get("weightmaps_params"), dict):
        params = dict(attributes["weightmaps_params"])
    n_spatial = data.ndim - (channel_axis is not None)
    if spacing is None and record is not None:
        # The grid's pixel size, as the TIFF maps carry it: the spacing the
        # distances used, else the file's (recorded apart in later manifests).
        grid = record.get("spacing") or record.get("file_spacing")
        if isinstance(grid, list):
            spacing = tuple(float(s) for s in grid)
    if spacing is not None and len(spacing) != n_spatial:
        spacing = None  # recorded for another layout: no spacing rather than a wrong one
    if params is not None:
        params = json.loads(json.dumps(params))  # plain JSON values only
    return MapFile(
        data=data,
        channel_axis=channel_axis,
        kind=kind,
        spacing=spacing,
        unit=unit,
        params=params,
        mask=recorded.mask,
        summary=_summary(recorded.output),
    )


def _summary(output: dict[str, Any] | None) -> dict[str, float] | None:
    if output is None:
        return None
    values = {key: output.get(key) for key in ("min", "max", "mean")}
    if not all(isinstance(v, int | float) and math.isfinite(v) for v in values.values()):
        return None
    return {key: float(v) for key, v in values.items()}
