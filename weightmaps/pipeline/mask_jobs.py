"""The jobs of a mask in memory: read it, compute its maps, write them as TIFFs.

Output layout: for ``MASKS/a/b.png``, ``OUT/a/b.unet.tif``, ``OUT/a/b.edge.tif``
... (deflate at level 1 unless told; each kind's dtype and shape: float32,
``(K, *spatial)`` for a signed distance map, uint8 skeletons) and, with ``separate_touching``,
``OUT/a/b.target.tif`` (the carved mask, the mask's dtype). Every file is
written atomically.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np

from weightmaps._shared.threads import kernel_threads, run_parts, threads_for
from weightmaps.io.header import MaskReadError
from weightmaps.io.names import output_name
from weightmaps.io.read import is_lossy, read_mask
from weightmaps.io.tiff import read_spacing_unit
from weightmaps.io.writing import write_tiff_atomic
from weightmaps.kernels.class_balance import ClassCounts
from weightmaps.kinds import REGISTRY
from weightmaps.pipeline.jobs import (
    FATAL_WRITE_ERRORS,
    Counted,
    Failed,
    Job,
    Prepared,
    Source,
    Written,
    reason,
    resolve_spacing,
)
from weightmaps.prepare import mask_class_counts, prepare_array
from weightmaps.recipe import MaskMaps, compute_prepared

__all__ = ["compute_mask_job", "count_mask_job", "prepare_mask_job", "write_outputs"]

# A mask's own problems: anything else is a bug or a resource problem of the run.
_MASK_ERRORS = (ValueError, TypeError, MemoryError)


def _load(job: Job) -> tuple[np.ndarray, Source]:
    mask = read_mask(job.path, **dataclasses.asdict(job.read))
    file_spacing, unit = read_spacing_unit(job.path)
    spacing = resolve_spacing(job.settings.spacing, file_spacing, mask.ndim)
    source = Source(
        shape=mask.shape,
        dtype=str(mask.dtype),
        spacing=spacing,
        file_spacing=file_spacing,
        unit=unit,
        lossy=is_lossy(job.path),
    )
    return mask, source


def map_kinds(job: Job) -> list[str]:
    """The job's outputs that are maps (not the carved target)."""
    return [k for k in job.kinds if k in REGISTRY]


def dataset_counts(job: Job) -> ClassCounts | None:
    """The job's summed dataset counts, if any."""
    return None if job.dataset_counts is None else ClassCounts.from_dict(job.dataset_counts)


def count_mask_job(job: Job) -> Counted | Failed:
    """Worker: the mask type and class counts (first pass of dataset-scope balance)."""
    try:
        mask = read_mask(job.path, **dataclasses.asdict(job.read))
        mask_type, counts = mask_class_counts(mask, job.settings, lossy=is_lossy(job.path))
    except MaskReadError as exc:
        return Failed(exc.reason)
    except _MASK_ERRORS as exc:
        return Failed(reason(exc))
    return Counted(mask_type=mask_type, counts=counts.to_dict())


def compute_mask_job(job: Job) -> Written | Failed:
    """Worker: read one mask, compute its maps, write them; return its record.

    One kind at a time, each map written and released before the next is
    computed: a volume in memory holds one map and its intermediates, not
    all of them (the documentation's *Memory in memory*).
    """
    # The job's share of the cores: its kernels split a large mask across
    # them; N worker processes on C cores get C // N threads each.
    with kernel_threads(job.threads or 1):
        return _compute_and_write(job)


def _compute_and_write(job: Job) -> Written | Failed:
    written: Written | None = None
    try:
        mask, source = _load(job)
        prepared = prepare_array(mask, job.settings, lossy=source.lossy)
        source = dataclasses.replace(source, threshold=prepared.threshold)
        del mask  # prepared holds what the maps need (the mask itself, most often)
        kinds = map_kinds(job) or [None]
        for i, kind in enumerate(kinds):
            result = compute_prepared(
                prepared,
                job.settings,
                kinds=() if kind is None else (kind,),
                spacing=source.spacing,
                dataset_counts=dataset_counts(job),
            )
            if i < len(kinds) - 1:
                result.target = None  # written with the last kind
            if kind is not None and not any(REGISTRY[k].needs_instances for k in kinds[i + 1 :]):
                prepared.release_instances()
            step = write_outputs(job, source, result)
            del result
            if isinstance(step, Failed):
                return step
            written = step if written is None else _joined(written, step)
    except MaskReadError as exc:
        return Failed(exc.reason)
    except _MASK_ERRORS as exc:
        return Failed(reason(exc))
    assert written is not None
    return written


def _joined(first: Written, then: Written) -> Written:
    return dataclasses.replace(
        first,
        outputs={**first.outputs, **then.outputs},
        warnings={**first.warnings, **then.warnings},
    )


def prepare_mask_job(job: Job) -> Prepared | Failed:
    """Worker of the device path: read one mask and do the CPU part of its maps."""
    try:
        mask, source = _load(job)
        prepared = prepare_array(mask, job.settings, kinds=map_kinds(job), lossy=source.lossy)
        source = dataclasses.replace(source, threshold=prepared.threshold)
    except MaskReadError as exc:
        return Failed(exc.reason)
    except _MASK_ERRORS as exc:
        return Failed(reason(exc))
    return Prepared(prepared=prepared, source=source)


def _map_stats(array: np.ndarray) -> dict[str, float]:
    stats: dict[str, float] = {}

    def measure(what: str) -> None:
        if what == "mean":
            stats["mean"] = float(array.mean(dtype=np.float64))
        else:
            stats["min"], stats["max"] = float(array.min()), float(array.max())

    # Each a whole-array reduction (the mean's sum in numpy's order), the mean
    # on one of the job's threads and the extremes on another.
    run_parts(measure, ["mean", "extremes"], min(threads_for(array.size), 2))
    return {what: stats[what] for what in ("min", "max", "mean")}


def write_outputs(job: Job, source: Source, result: MaskMaps) -> Written | Failed:
    """Write a mask's maps atomically; return its manifest record (or the failure)."""
    arrays = dict(result.maps)
    if result.target is not None and "target" in job.kinds:
        arrays["target"] = result.target
    # The maps lie on the mask's grid: their files carry its pixel size (the
    # one given, else the file's) whatever the distances were computed in.
    recorded_spacing = source.spacing or source.file_spacing
    outputs: dict[str, dict] = {}
    for kind, array in arrays.items():
        rel_out = output_name(job.rel, kind)
        path = Path(job.out_root) / rel_out
        class_axis = kind in REGISTRY and REGISTRY[kind].class_axis
        same_grid = array.shape[1 if class_axis else 0 :] == tuple(source.shape)
        try:
            # Checked before mkdir too, which would otherwise create folders
            # wherever a symlinked folder in OUT leads; after it for races.
            for _ in range(2):
                if not path.parent.resolve().is_relative_to(Path(job.out_root).resolve()):
                    return Failed(f"output folder of {rel_out} leads outside OUT; refused")
                path.parent.mkdir(parents=True, exist_ok=True)
            # The digest of the bytes written lets a reader tell this map from
            # any other file put in its place, even one of the same size.
            digest = hashlib.sha256()
            size = write_tiff_atomic(
                path,
                array,
                spacing=recorded_spacing if same_grid else None,
                unit=source.unit if recorded_spacing == source.file_spacing else None,
                hasher=digest,
                compression=job.compression,
                threads=job.threads or 1,
                class_axis=class_axis,
            )
        except OSError as exc:
            return Failed(
                f"cannot write {rel_out}: {exc.strerror or exc}",
                fatal=exc.errno in FATAL_WRITE_ERRORS,
            )
        outputs[kind] = {
            "path": rel_out,
            "bytes": size,
            "sha256": digest.hexdigest(),
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            **_map_stats(array),
        }
    return Written(
        mask_type=result.mask_type,
        shape=list(source.shape),
        dtype=source.dtype,
        spacing=None if source.spacing is None else list(source.spacing),
        file_spacing=None if source.file_spacing is None else list(source.file_spacing),
        counts=None if result.counts is None else result.counts.to_dict(),
        outputs=outputs,
        threshold=source.threshold,
        warnings=dict(result.warnings),
    )
