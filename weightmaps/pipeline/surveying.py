"""What ``stats`` and ``preview`` read: every mask's statistics, a mask's maps in OUT."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from weightmaps.io.header import DEFAULT_MAX_PIXELS, MaskReadError
from weightmaps.io.names import OUTPUT_KINDS
from weightmaps.io.read import is_lossy, read_mask
from weightmaps.io.volumes import fingerprint
from weightmaps.pipeline.discover import find_masks, require_masks
from weightmaps.pipeline.jobs import reason
from weightmaps.pipeline.manifest import file_sha256
from weightmaps.pipeline.plan import open_manifest
from weightmaps.pipeline.reports import progress_bar
from weightmaps.settings import MapSettings
from weightmaps.stats import MaskStats, mask_stats

__all__ = ["FoundMaps", "find_maps", "maps_of", "survey"]

_READ_KEYS = ("channel", "rgb_rule")  # how a mask was read, in every parameter set


def survey(
    masks_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    *,
    glob: Sequence[str] | str = (),
    channel: int | None = None,
    rgb_rule: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
    **options: Any,
) -> tuple[dict[str, MaskStats], dict[str, str]]:
    """Read every mask under ``masks_dir`` (a folder, a mask file or several) and
    compute its :class:`MaskStats`. Finding none raises
    :class:`~weightmaps.pipeline.discover.NoMasksError`.

    Returns
    -------
    stats : dict
        Mask path (relative) -> its statistics.
    failed : dict
        Mask path -> one-line reason it could not be read.
    """
    if isinstance(masks_dir, (str, os.PathLike)) and not Path(masks_dir).exists():
        raise ValueError(f"masks folder or file {masks_dir} does not exist")
    settings = MapSettings(**options)
    patterns = (glob,) if isinstance(glob, str) else tuple(glob)
    stats: dict[str, MaskStats] = {}
    failed: dict[str, str] = {}
    found = find_masks(masks_dir, patterns=patterns)
    require_masks(found, masks_dir, patterns)
    bar = progress_bar(len(found), progress, "stats")
    try:
        for mask_file in found:
            bar.update(1)
            if mask_file.error is not None:
                failed[mask_file.rel] = mask_file.error
                continue
            try:
                lossy = False
                if mask_file.path.is_dir():  # a zarr array or OME-Zarr image
                    mask = _read_zarr_mask(mask_file.path, max_pixels)
                else:
                    mask = read_mask(
                        mask_file.path, channel=channel, rgb_rule=rgb_rule, max_pixels=max_pixels
                    )
                    lossy = is_lossy(mask_file.path)
                stats[mask_file.rel] = mask_stats(mask, settings, lossy=lossy)
            except MaskReadError as exc:
                failed[mask_file.rel] = exc.reason
            except (ValueError, TypeError, MemoryError) as exc:
                failed[mask_file.rel] = reason(exc)
    finally:
        bar.close()
    return stats, failed


def _read_zarr_mask(path: Path, max_pixels: int) -> Any:
    """A zarr mask read whole; without the [dask] extra, one line saying so."""
    from weightmaps.io.volume_source import read_volume

    try:
        return read_volume(path, max_pixels)
    except ImportError as exc:  # dask or zarr, imported when the volume is opened
        raise MaskReadError(
            path, f"reading a zarr mask needs the [dask] extra ({exc.name} is missing)"
        ) from None


@dataclasses.dataclass(frozen=True)
class FoundMaps:
    """A mask's maps in an OUT folder and how the run that made them read the mask.

    Attributes
    ----------
    files : dict of str to Path
        Output kind (``"unet"``, ..., ``"target"``) -> its file.
    read : dict
        ``channel`` and ``rgb_rule`` the maps were made with (empty when the
        manifest does not say).
    params : dict
        Output kind -> the parameter set the manifest records for it.
    by_content : bool
        Found through the manifest by the mask's content; False: by name.
    """

    files: dict[str, Path]
    read: dict[str, Any]
    params: dict[str, dict[str, Any]]
    by_content: bool


def find_maps(
    mask_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, by_name: bool = True
) -> FoundMaps:
    """The map files in ``out_dir`` made from the mask at ``mask_path``, with
    their parameters and the reading options (``--channel``, ``--rgb-rule``)
    they were made with.

    Found through the manifest by the mask's content hash; failing that (and
    with ``by_name``), by name (``<stem>.<kind>.tif``) when exactly one such
    file exists per kind: those may be maps of an older version of the mask,
    and their reading options are the last run's.
    """
    out_path = Path(out_dir)
    manifest = open_manifest(out_path, force=False) if out_path.is_dir() else None
    last_run: dict[str, Any] = {}
    if manifest is not None:
        last_run = {k: manifest.settings[k] for k in _READ_KEYS if k in manifest.settings}
        sha = fingerprint(mask_path)[1] if Path(mask_path).is_dir() else file_sha256(mask_path)
        for record in manifest.masks.values():
            if record.get("sha256") == sha and record.get("outputs"):
                outputs = record["outputs"]
                kinds = [kind for kind in OUTPUT_KINDS if kind in outputs]
                params = {
                    kind: dict(manifest.parameter_sets[outputs[kind].get("params")])
                    for kind in kinds
                    if outputs[kind].get("params") in manifest.parameter_sets
                }
                _resolve_auto_spacing(params, record)
                # Every output of a mask is read the same way; any one's set says how.
                read = next(
                    ({k: p[k] for k in _READ_KEYS if k in p} for p in params.values()), {}
                )
                read = read or last_run
                files = {k: manifest.output_path(out_path, outputs[k]["path"]) for k in kinds}
                return FoundMaps(files, read, params, by_content=True)
    if not by_name:
        return FoundMaps({}, last_run, {}, by_content=False)
    stem = Path(mask_path).name.rsplit(".", 1)[0]
    found: dict[str, Path] = {}
    for kind in OUTPUT_KINDS:
        candidates = sorted(out_path.rglob(f"{stem}.{kind}.tif")) if out_path.is_dir() else []
        if len(candidates) == 1:
            found[kind] = candidates[0]
    return FoundMaps(found, last_run, {}, by_content=False)


def _resolve_auto_spacing(params: dict[str, dict[str, Any]], record: dict[str, Any]) -> None:
    """``spacing: "auto"`` in a parameter set becomes what this mask's distances used."""
    used = record.get("spacing")
    for kind_params in params.values():
        if kind_params.get("spacing") == "auto":
            kind_params["spacing"] = "pixels" if used is None else used


def maps_of(
    mask_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, by_name: bool = True
) -> dict[str, Path]:
    """The map files in ``out_dir`` made from the mask at ``mask_path``.

    Found through the manifest by the mask's content hash; failing that (and
    with ``by_name``), by name (``<stem>.<kind>.tif``) when exactly one such
    file exists per kind: those may be maps of an older version of the mask.
    :func:`find_maps` also gives their parameters.
    """
    return find_maps(mask_path, out_dir, by_name=by_name).files
