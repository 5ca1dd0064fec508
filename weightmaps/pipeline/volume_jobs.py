"""The jobs of a chunked volume: read it chunk by chunk, write its maps as zarr arrays.

A volume (a ``*.zarr`` folder: zarr array or OME-Zarr image, or a TIFF above
``chunked_above`` pixels) is read through :func:`weightmaps.io.volume_source.open_volume`,
its maps made by :func:`weightmaps.recipe.compute_volume_maps` and written by
:func:`weightmaps.io.zarr_maps.write_volume_maps` to ``OUT/a/v.unet.zarr`` ...,
resumable chunk by chunk. The arrays' attributes hold ``weightmaps_kind``,
the kind's parameters, the source fingerprint and the tool version.
Needs the ``[dask]`` extra.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from weightmaps._version import __version__
from weightmaps.io.tiff import read_spacing_unit
from weightmaps.io.volume_source import open_volume
from weightmaps.io.volumes import check_halo_blocks, fingerprint
from weightmaps.io.zarr_maps import MapWriteError, write_volume_maps
from weightmaps.pipeline.jobs import (
    FATAL_WRITE_ERRORS,
    Counted,
    Failed,
    Job,
    Written,
    reason,
    resolve_spacing,
)
from weightmaps.pipeline.mask_jobs import dataset_counts, map_kinds
from weightmaps.prepare import prepare_volume
from weightmaps.recipe import compute_volume_maps, map_advice, volume_halos, volume_refusal

__all__ = ["compute_volume_job", "count_volume_job"]

# A volume's own problems, decoding its data included (VolumeReadError is a ValueError).
_VOLUME_ERRORS = (ValueError, TypeError, MemoryError, OSError, KeyError)


def _missing_extra(exc: ImportError) -> Failed:
    """A volume met without the ``[dask]`` extra: one line naming it, not a traceback."""
    missing = exc.name or "dask"
    return Failed(
        f"chunked volumes need the dask extra ({missing} is not installed): "
        "pip install 'weightmaps[dask]'"
    )


def _scheduler(job: Job) -> Any:
    import dask

    # A threaded scheduler inside the job, in a local worker process or on a
    # Dask worker alike (never the cluster's client from inside a task), with
    # the job's share of the cores: N worker processes each running a volume
    # must not start N threads per core.
    return dask.config.set(scheduler="threads", num_workers=job.threads)


def count_volume_job(job: Job) -> Counted | Failed:
    """Worker: the mask type and class counts of a volume (dataset-scope balance)."""
    try:
        with _scheduler(job):
            volume, _, _ = open_volume(job.path, job.volume_limits, job.chunks)
            # Only the carving (if any) has a halo here; no map is made.
            halos = volume_halos(job.settings, (), None, volume.ndim)
            check_halo_blocks(volume.chunks, volume.dtype, halos, job.volume_limits)
            prepared = prepare_volume(volume, job.settings)
    except ImportError as exc:
        return _missing_extra(exc)
    except _VOLUME_ERRORS as exc:
        return Failed(reason(exc))
    return Counted(mask_type=prepared.mask_type, counts=prepared.class_counts().to_dict())


def compute_volume_job(job: Job) -> Written | Failed:
    """Worker: compute a volume's maps chunk by chunk and write them as zarr arrays."""
    try:
        with _scheduler(job):
            return _compute(job)
    except MapWriteError as exc:
        os_error = exc.__cause__
        text = f"cannot write {exc.rel_out}: {getattr(os_error, 'strerror', None) or os_error}"
        return Failed(text, fatal=getattr(os_error, "errno", None) in FATAL_WRITE_ERRORS)
    except ImportError as exc:
        return _missing_extra(exc)
    except _VOLUME_ERRORS as exc:
        return Failed(reason(exc))


def _spacing(
    job: Job, ome_scale: tuple[float, ...] | None, ndim: int
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    """(spacing for the distances, spacing found in the file)."""
    file_spacing = ome_scale
    if not Path(job.path).is_dir():
        file_spacing, _ = read_spacing_unit(job.path)
    return resolve_spacing(job.settings.spacing, file_spacing, ndim), file_spacing


def _compute(job: Job) -> Written:
    from weightmaps.masktype import MaskTypeError

    settings = job.settings
    kinds = map_kinds(job)
    refused = volume_refusal(settings, kinds)
    if refused is not None:  # before anything is read
        raise MaskTypeError(refused)
    volume, scale, missing = open_volume(job.path, job.volume_limits, job.chunks)
    spacing, file_spacing = _spacing(job, scale, volume.ndim)
    # The spacing may come from the file: only now are the halos known. Still
    # before any block is read (the mask type, the labelling) or any map's
    # graph is built.
    halos = volume_halos(settings, kinds, spacing, volume.ndim)
    check_halo_blocks(volume.chunks, volume.dtype, halos, job.volume_limits)
    prepared, maps = compute_volume_maps(
        volume, settings, kinds=kinds, spacing=spacing, dataset_counts=dataset_counts(job)
    )
    if prepared.target is not None and "target" in job.kinds:
        maps["target"] = prepared.target
    _, source_fingerprint = fingerprint(job.path)
    attributes = {
        kind: {
            "weightmaps_kind": kind,
            "weightmaps_params": settings.kind_params(kind),
            "weightmaps_source_fingerprint": source_fingerprint,
            "weightmaps_version": __version__,
        }
        for kind in maps
    }
    outputs, kept = write_volume_maps(job.out_root, job.rel, maps, attributes)
    total = sum(math.prod(array.numblocks) for array in maps.values())
    notes = (f"resumed: {kept} of {total} chunks kept" if kept else None, missing)
    counts = prepared.class_counts()
    return Written(
        mask_type=prepared.mask_type,
        shape=list(volume.shape),
        dtype=str(volume.dtype),
        spacing=None if spacing is None else list(spacing),
        file_spacing=None if file_spacing is None else list(file_spacing),
        counts=counts.to_dict(),
        outputs=outputs,
        notes=tuple(note for note in notes if note),
        warnings=map_advice(prepared, settings, maps),
    )
