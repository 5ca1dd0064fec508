"""``generate``: compute and write the weight maps of every mask under MASKS.

The pipeline knows files, not formulas: it finds masks under MASKS
(:mod:`~weightmaps.pipeline.discover`), decides which maps are missing or
stale from the manifest (:mod:`~weightmaps.pipeline.plan`), has worker
processes (:mod:`~weightmaps.pipeline.workers`) read each mask, compute its
maps through the recipe and write them atomically, and records every finished
mask in ``OUT/weightmaps.json`` as it completes, so an interrupted run
resumes where it stopped.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from weightmaps._shared.text import printable
from weightmaps.io.header import DEFAULT_MAX_PIXELS
from weightmaps.io.names import output_name
from weightmaps.io.volumes import (
    DEFAULT_CHUNKED_ABOVE,
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_VOLUME_VOXELS,
    VolumeLimits,
    VolumeRefused,
)
from weightmaps.io.writing import (
    DEFAULT_COMPRESSION,
    remove_leftover_temporaries,
    tiff_compression,
)
from weightmaps.kernels.class_balance import ClassCounts
from weightmaps.kinds import DEFAULT_KINDS, REGISTRY
from weightmaps.pipeline.device import device_results, resolve_device
from weightmaps.pipeline.discover import MaskFile, find_masks, masks_description, require_masks
from weightmaps.pipeline.jobs import Failed, ReadOptions
from weightmaps.pipeline.lock import OutputLocked, output_lock
from weightmaps.pipeline.manifest import MANIFEST_NAME, Manifest, params_digest
from weightmaps.pipeline.plan import (
    ManifestSaver,
    Plan,
    Run,
    check_kinds,
    make_out_dir,
    open_manifest,
    settings_record,
)
from weightmaps.pipeline.reports import (
    GenerateInterrupted,
    GenerateReport,
    LogFunction,
    PipelineError,
    default_log,
    progress_bar,
)
from weightmaps.pipeline.workers import (
    LocalWorkers,
    compute_job,
    count_job,
    default_workers,
    engine,
    volume_threads,
)
from weightmaps.settings import MapSettings

__all__ = ["generate"]


def generate(
    masks_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    kinds: str | Sequence[str] = DEFAULT_KINDS,
    glob: Sequence[str] | str = (),
    channel: int | None = None,
    rgb_rule: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    workers: int | None = None,
    device: str = "auto",
    batch_size: int = 8,
    scheduler: Any = None,
    chunked_above: int = DEFAULT_CHUNKED_ABOVE,
    chunks: int | None = None,
    max_volume_voxels: int = DEFAULT_MAX_VOLUME_VOXELS,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    missing_chunks: str = "fill",
    compression: str = DEFAULT_COMPRESSION,
    force: bool = False,
    dry_run: bool = False,
    fail_fast: bool = False,
    progress: bool | None = None,
    log: LogFunction | None = None,
    **options: Any,
) -> GenerateReport:
    """Compute and write the weight maps of every mask under ``masks_dir``.

    The Python form of ``weightmaps generate MASKS OUT``, with the same
    behaviour: masks whose maps are current (same parameters, same mask
    content, outputs present) are skipped, bad masks are reported and the
    rest completes, outputs are written atomically and recorded in
    ``OUT/weightmaps.json`` as they complete.

    Parameters
    ----------
    masks_dir : path-like or sequence of path-like
        Where masks are found: a folder (searched recursively; maps go to
        the same relative paths under ``out_dir``), a mask file, or several
        files and folders (a file's maps are named after the file).
    out_dir : path-like
        Where maps go; may equal ``masks_dir``. Not created when there is
        nothing to do.
    kinds : str or sequence of {"unet", "edge", "balance", "sdf", "distance", "skeleton"}
        Maps to compute (default ``unet``, ``edge`` and ``balance``; see
        :data:`weightmaps.kinds.DEFAULT_KINDS`). A string is one kind or
        several, comma-separated, as ``--kinds`` takes them: ``"unet"``.
    glob : str or sequence of str
        Only masks matching a pattern (see :func:`find_masks`).
    channel, rgb_rule, max_pixels
        How colour masks are read and the largest accepted pixel count
        (see :func:`weightmaps.read_mask`).
    workers : int, optional
        Worker processes; default all cores. 1 runs in this process.
    device : {"auto", "cpu", "cuda", "cuda:N", "torch:cpu"}
        Where maps are computed (see :func:`resolve_device`): ``"auto"`` is
        the GPU when torch sees one, else the CPU kernels.
    batch_size : int
        Masks of one shape computed together on a torch device.
    scheduler : str or distributed.Client, optional
        Run on a Dask cluster (see :mod:`weightmaps.cluster`): ``"local:N"``
        starts N local worker processes, ``"tcp://host:8786"`` connects to a
        running scheduler. OUT must be reachable from every worker.
    chunked_above : int
        TIFF masks with more pixels than this, and every zarr mask (a
        ``*.zarr`` folder: a zarr array or OME-Zarr image), are computed
        chunk by chunk and their maps written as zarr arrays
        ``OUT/<stem>.<kind>.zarr`` (see :mod:`weightmaps.pipeline.volume_jobs`).
    chunks : int, optional
        Edge length of the processing (and output) chunks of such volumes;
        default a zarr's own chunks; a TIFF: 256, 2048 for a 2-D image.
    max_volume_voxels : int
        Refuse a chunked volume with more voxels than this (``max_pixels``
        is the limit of masks read whole), read from its metadata before
        anything is read or scheduled.
    max_chunk_bytes : int
        Refuse a chunked volume whose stored chunks (zarr chunks, TIFF tiles
        or strips) decode to more bytes than this, or whose processing chunks
        hold more, counted as float32 maps (or the mask's item size if
        larger).
    missing_chunks : {"fill", "error"}
        Zarr chunks absent from the store read as the fill value (zarr's
        rule; said per volume at INFO level) or refuse the volume.
    compression : str
        Of the TIFF maps: ``"zlib:1"`` (default: deflate at level 1, which
        every TIFF reader opens), ``"zlib"`` (level 6) to ``"zlib:9"``,
        ``"zstd"`` or ``"zstd:LEVEL"`` (ImageJ cannot read it, tifffile only
        with imagecodecs), ``"none"``. Not a map parameter: it changes the bytes, not the
        values, and never makes a map stale.
    force : bool
        Recompute everything (and start a new manifest if the old one is
        unreadable).
    dry_run : bool
        Only report what would be computed; write nothing.
    fail_fast : bool
        Stop at the first failed mask.
    progress : bool, optional
        Show a progress bar; default only when stderr is a terminal.
    log : callable, optional
        ``log(level, message)`` for per-mask messages (``logging`` levels);
        default the ``weightmaps`` logger.
    **options
        Map parameters, the fields of :class:`weightmaps.settings.MapSettings`
        (``w0=``, ``sigma=``, ``mask_type=``, ``balance_scope=``, ...).

    Returns
    -------
    GenerateReport
        Done, skipped and failed masks; ``exit_code`` as the command's.

    Raises
    ------
    ValueError, TypeError
        Invalid options (nothing is done).
    PipelineError
        The run cannot proceed: no mask found (or none matching ``glob``:
        :class:`~weightmaps.pipeline.discover.NoMasksError`, OUT untouched),
        OUT not writable or full, another run holds its lock, an unreadable
        manifest.
    GenerateInterrupted
        Ctrl-C; finished masks are recorded, a rerun resumes.

    Examples
    --------
    >>> import weightmaps
    >>> report = weightmaps.generate("masks/", "out/", kinds=["unet"], sigma=3)  # doctest: +SKIP
    >>> report.exit_code, len(report.done)  # doctest: +SKIP
    (0, 120)
    """
    log = log or default_log
    settings = MapSettings(**options) if options else MapSettings()
    read = ReadOptions(channel, rgb_rule, max_pixels)
    kinds = check_kinds(kinds)
    patterns = (glob,) if isinstance(glob, str) else tuple(glob)
    workers = default_workers() if workers is None else int(workers)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    torch_device = resolve_device(device)
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    if chunked_above < 0:
        raise ValueError(f"chunked-above must be >= 0, got {chunked_above}")
    if chunks is not None and chunks < 1:
        raise ValueError(f"chunks must be >= 1, got {chunks}")
    volume_limits = VolumeLimits(max_volume_voxels, max_chunk_bytes, missing_chunks)
    tiff_compression(compression)  # a bad codec or level: ValueError now
    masks_path = _masks_arg(masks_dir)
    out_path = Path(out_dir)
    report = GenerateReport(
        masks_dir=masks_description(masks_path), out_dir=str(out_dir), dry_run=dry_run
    )
    if scheduler is not None:
        from weightmaps.pipeline.cluster import check_scheduler

        check_scheduler(scheduler)
        if torch_device is not None:
            raise ValueError("--scheduler runs on the cluster's CPUs; use it with --device cpu")
    options_ = _RunOptions(
        patterns,
        workers,
        force,
        dry_run,
        fail_fast,
        progress,
        log,
        torch_device,
        batch_size,
        scheduler,
        chunked_above,
        chunks,
        volume_limits,
        compression,
    )
    # Before OUT is made or locked: nothing to do is an error, not an empty manifest.
    found = find_masks(masks_path, out_dir=out_path, patterns=patterns)
    require_masks(found, masks_path, patterns)
    start = time.perf_counter()
    try:
        _generate(report, masks_path, out_path, settings, read, kinds, options_, found)
    finally:
        report.elapsed = time.perf_counter() - start
    return report


def _masks_arg(masks_dir: Any) -> Any:
    """MASKS as given: one folder or file (a Path), or several (a tuple of Paths)."""
    if isinstance(masks_dir, (str, os.PathLike)):
        paths = [Path(masks_dir)]
    else:
        paths = [Path(m) for m in masks_dir]
        if not paths:
            raise ValueError("no masks folder or file given")
    for path in paths:
        if not path.exists() and not path.is_symlink():
            raise ValueError(f"masks folder or file {path} does not exist")
    return paths[0] if len(paths) == 1 else tuple(paths)


@dataclasses.dataclass(frozen=True)
class _RunOptions:
    patterns: tuple[str, ...]
    workers: int
    force: bool
    dry_run: bool
    fail_fast: bool
    progress: bool | None
    log: LogFunction
    device: str | None  # a torch device, or None for the CPU kernels
    batch_size: int
    scheduler: Any = None  # a Dask scheduler address or Client, or None
    chunked_above: int = DEFAULT_CHUNKED_ABOVE
    chunks: int | None = None
    volume_limits: VolumeLimits = VolumeLimits()
    compression: str = DEFAULT_COMPRESSION


def _generate(
    report: GenerateReport,
    masks_path: Path,
    out_path: Path,
    settings: MapSettings,
    read: ReadOptions,
    kinds: tuple[str, ...],
    options: _RunOptions,
    found: list[MaskFile],
) -> None:
    if options.dry_run:
        exists = out_path.is_dir()
        manifest = open_manifest(out_path, options.force) if exists else Manifest()
        run = _new_run(masks_path, out_path, settings, read, kinds, manifest, options)
        _execute(run, report, options, found)
        return
    make_out_dir(out_path)
    try:
        with output_lock(out_path):
            manifest = open_manifest(out_path, options.force)
            run = _new_run(masks_path, out_path, settings, read, kinds, manifest, options)
            removed = remove_leftover_temporaries(out_path)
            if removed:
                options.log(
                    logging.INFO, f"removed {removed} temporary files left by an interrupted run"
                )
            _execute(run, report, options, found)
    except OutputLocked as exc:
        raise PipelineError(str(exc)) from exc
    except OSError as exc:
        raise PipelineError(f"cannot write to {out_path}: {exc.strerror or exc}") from exc


def _new_run(
    masks_path: Path,
    out_path: Path,
    settings: MapSettings,
    read: ReadOptions,
    kinds: tuple[str, ...],
    manifest: Manifest,
    options: _RunOptions,
) -> Run:
    return Run(
        masks_path,
        out_path,
        settings,
        read,
        kinds,
        manifest,
        chunked_above=options.chunked_above,
        chunks=options.chunks,
        volume_limits=options.volume_limits,
        compression=options.compression,
    )


def _execute(run: Run, report: GenerateReport, options: _RunOptions, found: list[MaskFile]) -> None:
    dry_run, fail_fast, progress, log = (
        options.dry_run,
        options.fail_fast,
        options.progress,
        options.log,
    )
    manifest_path = run.out_dir / MANIFEST_NAME
    saver = ManifestSaver(run.manifest, manifest_path, enabled=not dry_run)
    run.manifest.settings = settings_record(run)
    try:
        plans = _plan_all(run, report, found, options.force, log)  # hashes every mask
    except KeyboardInterrupt:
        raise GenerateInterrupted(report) from None  # nothing computed yet
    if fail_fast and report.failed:
        report.stopped_early = True
        return
    workers = max(1, min(options.workers, len(plans) or 1))
    run.volume_threads = volume_threads(options.scheduler, workers)
    # A rerun with everything current starts no worker processes or cluster.
    idle = not any(p.todo for p in plans) and not _counts_missing(run, plans)
    try:
        with LocalWorkers(1) if idle else engine(options.scheduler, workers) as pool:
            dataset_counts = None
            if run.settings.balance_scope == "dataset" and "balance" in run.kinds:
                dataset_counts = _dataset_pass(run, report, plans, pool, dry_run, fail_fast, log)
                saver.maybe_save()
                if fail_fast and report.failed:
                    report.stopped_early = True
                    return
            todo = [p for p in plans if p.mask.rel not in report.failed and p.todo]
            report.skipped.extend(p.mask.rel for p in plans if not p.todo)
            for plan in todo:
                report.reasons[plan.mask.rel] = dict(plan.todo)
                detail = ", ".join(f"{k}: {r}" for k, r in plan.todo.items())
                log(
                    logging.INFO if dry_run else logging.DEBUG,
                    f"{printable(plan.mask.rel)}: {detail}",
                )
            if dry_run:
                report.done.extend(p.mask.rel for p in todo)
                return
            jobs = [run.job(p, dataset_counts) for p in todo]
            by_rel = {p.mask.rel: p for p in todo}
            bar = progress_bar(len(jobs), progress, "maps")
            try:
                if options.device is None:
                    results = pool.run(compute_job, jobs)
                else:
                    results = device_results(
                        pool,
                        jobs,
                        device=options.device,
                        batch_size=options.batch_size,
                        log=log,
                        report=report,
                    )
                for job, result in results:
                    bar.update(1)
                    plan = by_rel[job.rel]
                    if isinstance(result, Failed):
                        if result.fatal:
                            results.close()
                            raise PipelineError(f"{printable(job.rel)}: {printable(result.reason)}")
                        _fail(report, run, job.rel, result.reason, log)
                        if fail_fast:
                            report.stopped_early = True
                            results.close()
                            break
                        continue
                    run.record(plan, result)
                    report.done.append(job.rel)
                    # Each worker process compiles alone, at the same time as the others.
                    report.compile_seconds += result.compile_seconds / workers
                    report.mask_types[result.mask_type] += 1
                    _warn(report, job.rel, result.warnings, log)
                    read_as = result.mask_type
                    if result.threshold is not None:
                        report.thresholded[job.rel] = result.threshold
                        read_as += f" (noise thresholded: foreground > {result.threshold:g})"
                    said = (
                        *result.notes,
                        *_spacing_notes(run, report, job.rel, result, log),
                        *(f"{kind}: {text}" for kind, text in result.warnings.items()),
                    )
                    notes = f" ({'; '.join(said)})" if said else ""
                    wrote = f"{read_as}, wrote {', '.join(result.outputs)}{notes}"
                    log(logging.INFO, f"{printable(job.rel)}: {wrote}")
                    saver.maybe_save()
            finally:
                bar.close()
    except KeyboardInterrupt:
        saver.save()
        raise GenerateInterrupted(report) from None
    finally:
        saver.save()


def _warn(report: GenerateReport, rel: str, warnings: dict[str, str], log: LogFunction) -> None:
    """A kind's warning said once, as it first comes; the summary counts the masks."""
    for kind, text in warnings.items():
        said = report.warnings.setdefault(kind, {})
        first = not said
        # Recorded before it is said: a signal during the log line (SIGTERM, Ctrl-C)
        # must not leave the summary a kind with no mask.
        said[rel] = text
        if first:
            log(
                logging.WARNING,
                f"warning: {kind} maps of {printable(rel)}: {text} "
                "(said once; the summary counts the masks, -v names each)",
            )


def _spacing_text(spacing: Sequence[float]) -> str:
    return " x ".join(f"{s:g}" for s in spacing)


def _spacing_notes(
    run: Run, report: GenerateReport, rel: str, result: Any, log: LogFunction
) -> tuple[str, ...]:
    """What the distances of a mask were computed in, for its ``-v`` line.

    ``--spacing auto`` on a file that records no pixel size falls back to
    pixels: said once as a warning, counted in the summary.
    """
    if not any(k in REGISTRY and "spacing" in REGISTRY[k].uses for k in run.kinds):
        return ()  # no distances among these maps
    given, used, in_file = run.settings.spacing, result.spacing, result.file_spacing
    if given == "auto" and used is None:
        if not report.pixel_units:
            log(
                logging.WARNING,
                f"{printable(rel)}: its file records no spacing; --spacing auto computes "
                "its distances in pixels (said once; the summary counts them)",
            )
        report.pixel_units.append(rel)
        return ("no spacing in the file: distances in pixels",)
    if given == "auto":
        return (f"spacing {_spacing_text(used)} from the file",)
    if given is None and in_file is not None:
        return (
            f"distances in pixels; the file's spacing {_spacing_text(in_file)} is used "
            "with --spacing auto",
        )
    return ()


def _counts_missing(run: Run, plans: list[Plan]) -> bool:
    """Would the dataset-scope balance pass have to read any mask?"""
    if run.settings.balance_scope != "dataset" or "balance" not in run.kinds:
        return False
    return any(run.cached_counts(p) is None for p in plans)


def _fail(report: GenerateReport, run: Run, rel: str, reason: str, log: LogFunction) -> None:
    report.failed[rel] = reason
    record = run.manifest.masks.get(rel)
    if record is not None:
        # Its maps no longer describe the mask on disk.
        record["outputs"] = {}
    log(logging.ERROR, f"FAILED {printable(rel)}: {printable(reason)}")


def _plan_all(
    run: Run,
    report: GenerateReport,
    found: list[MaskFile],
    force: bool,
    log: LogFunction,
) -> list[Plan]:
    plans: list[Plan] = []
    owners: dict[str, str] = {}
    for mask in found:
        if mask.error is not None:
            _fail(report, run, mask.rel, mask.error, log)
            continue
        first = owners.setdefault(output_name(mask.rel, "unet"), mask.rel)
        if first != mask.rel:
            _fail(report, run, mask.rel, f"its maps would overwrite those of {first}", log)
            continue
        try:
            plans.append(run.plan(mask, force))
        except OSError as exc:
            _fail(report, run, mask.rel, f"cannot read: {exc.strerror or exc}", log)
        except VolumeRefused as exc:
            _fail(report, run, mask.rel, str(exc), log)
    return plans


def _dataset_pass(
    run: Run,
    report: GenerateReport,
    plans: list[Plan],
    pool: LocalWorkers,
    dry_run: bool,
    fail_fast: bool,
    log: LogFunction,
) -> dict[str, Any] | None:
    """First pass of dataset-scope balance: class counts summed over every mask."""
    counts: dict[str, tuple[str, ClassCounts]] = {}
    missing: list[Plan] = []
    for plan in plans:
        cached = run.cached_counts(plan)
        if cached is None:
            missing.append(plan)
        else:
            counts[plan.mask.rel] = cached
    if dry_run and missing:
        return None  # balance maps show as "dataset counts not known yet"
    by_rel = {p.mask.rel: p for p in missing}
    bar = progress_bar(len(missing), None if missing else False, "counts")
    try:
        results = pool.run(count_job, [run.job(p) for p in missing])
        for job, result in results:
            bar.update(1)
            if isinstance(result, Failed):
                _fail(report, run, job.rel, result.reason, log)
                if fail_fast:
                    results.close()
                    return None
                continue
            run.cache_counts(by_rel[job.rel], result.mask_type, result.counts)
            counts[job.rel] = (result.mask_type, ClassCounts.from_dict(result.counts))
    finally:
        bar.close()
    types = Counter(mask_type for mask_type, _ in counts.values())
    if "semantic" in types and len(types) > 1:
        found = ", ".join(f"{n} {t}" for t, n in sorted(types.items()))
        raise PipelineError(
            f"dataset-scope balance needs masks of one kind, found {found}; "
            "name the mask type (--mask-type)"
        )
    total = sum((c for _, c in counts.values()), ClassCounts({}, {}, 0))
    dataset = run.register_dataset_weights(total)
    # Every mask found, counted or failed, as check sees them: fixing a failed
    # mask changes the sources, and a rerun without changes finds them equal.
    dataset["sources"] = params_digest({p.mask.rel: p.sha256 for p in plans})
    run.manifest.dataset = dataset
    report.dataset = dataset
    for plan in plans:
        if plan.mask.rel not in counts:
            continue
        if plan.todo.get("balance") == "dataset counts not known yet":
            # Planned before the weights were known: decide again now that they are.
            del plan.todo["balance"]
        if "balance" not in plan.todo:
            run.replan(plan, "balance")
    return dataset["counts"]
