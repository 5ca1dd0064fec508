"""The offline pipeline behind ``weightmaps generate`` and ``weightmaps check``.

The pipeline knows files, not formulas: it finds masks under MASKS, decides
which maps are missing or stale from the manifest, has worker processes read
each mask, compute its maps with :func:`weightmaps.maps.compute_maps` and
write them atomically, and records every finished mask in
``OUT/weightmaps.json`` as it completes, so an interrupted run resumes where
it stopped.

Output layout: for ``MASKS/a/b.png``, ``OUT/a/b.unet.tif``,
``OUT/a/b.edge.tif``, ``OUT/a/b.balance.tif`` (float32, zlib) and, with
``separate_touching``, ``OUT/a/b.target.tif`` (the carved mask, the mask's
dtype).

A volume (a ``*.zarr`` folder: zarr array or OME-Zarr image, or a TIFF above
``chunked_above`` pixels) is computed chunk by chunk by :mod:`weightmaps.volumes`
and its maps written as zarr arrays, ``OUT/a/v.unet.zarr`` ...
"""

from __future__ import annotations

import dataclasses
import errno
import fnmatch
import hashlib
import logging
import multiprocessing
import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any

import numpy as np

from weightmaps.balance import ClassCounts, class_weights
from weightmaps.io import (
    DEFAULT_MAX_PIXELS,
    MASK_SUFFIXES,
    MaskReadError,
    read_mask,
    read_spacing_unit,
)
from weightmaps.lock import OutputLocked, die_with_parent, output_lock
from weightmaps.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    file_sha256,
    map_name,
    params_digest,
)
from weightmaps.maps import (
    KINDS,
    MapSettings,
    MaskMaps,
    PreparedMask,
    compute_maps,
    compute_maps_batch,
    compute_prepared,
    mask_class_counts,
    prepare_mask,
)
from weightmaps.masktype import MaskTypeError
from weightmaps.stats import MaskStats, mask_stats
from weightmaps.volumes import (
    DEFAULT_CHUNKED_ABOVE,
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_VOLUME_VOXELS,
    VolumeLimits,
    VolumeRefused,
    check_volume,
    fingerprint,
    inspect_volume,
    is_big_tiff,
    tree_size,
    zarr_kind,
)
from weightmaps.writing import remove_leftover_temporaries, write_tiff_atomic

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_RUN_ERROR",
    "EXIT_USAGE",
    "OUTPUT_KINDS",
    "CheckReport",
    "GenerateInterrupted",
    "GenerateReport",
    "PipelineError",
    "check",
    "find_masks",
    "generate",
    "maps_of",
    "output_name",
    "resolve_device",
    "survey",
]

OUTPUT_KINDS: tuple[str, ...] = (*KINDS, "target")

EXIT_OK = 0
"""Every mask succeeded (or was already current)."""
EXIT_FAILED = 1
"""Some masks failed (each reported with its reason); all others completed."""
EXIT_USAGE = 2
"""Bad options or arguments; nothing was done."""
EXIT_RUN_ERROR = 3
"""The run could not proceed: OUT not writable or full, locked by another run, bad manifest."""
EXIT_INTERRUPTED = 130
"""Stopped by Ctrl-C; finished masks are recorded, rerun to resume."""

# Writing errors that will hit every following file too: stop the run. EFBIG
# is a file size limit (ulimit -f, a file system's largest file): maps of one
# dataset have similar sizes.
_FATAL_WRITE_ERRORS = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT, errno.EFBIG}
)
# The manifest is rewritten at most this often while masks complete.
_MANIFEST_INTERVAL_S = 1.0

_logger = logging.getLogger("weightmaps")

LogFunction = Callable[[int, str], None]


class PipelineError(RuntimeError):
    """The run as a whole cannot proceed (see :data:`EXIT_RUN_ERROR`)."""


class GenerateInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`generate`; ``report`` says what was finished and recorded."""

    def __init__(self, report: GenerateReport) -> None:
        super().__init__("interrupted")
        self.report = report


def printable(text: str) -> str:
    """``text`` with control characters escaped, so that a message stays one line.

    File names come from strangers: a newline or a terminal escape in one
    must not split a report line or drive the terminal.

    Examples
    --------
    >>> printable("a\\nb.png")
    'a\\\\nb.png'
    >>> printable("noyau_é.tif")
    'noyau_é.tif'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def output_name(rel: str, kind: str) -> str:
    """Output path (relative to OUT) of a mask's map: ``a/b.png`` -> ``a/b.unet.tif``.

    Examples
    --------
    >>> output_name("a/b.png", "edge")
    'a/b.edge.tif'
    """
    return map_name(rel, kind, ".tif")


def _is_own_output(name: str) -> bool:
    return any(name.endswith((f".{kind}.tif", f".{kind}.zarr")) for kind in OUTPUT_KINDS)


@dataclasses.dataclass
class MaskFile:
    """A mask found under MASKS: its path, its path relative to MASKS, any problem."""

    path: Path
    rel: str
    error: str | None = None


def find_masks(
    masks_dir: str | os.PathLike[str],
    *,
    out_dir: str | os.PathLike[str] | None = None,
    patterns: Sequence[str] = (),
) -> list[MaskFile]:
    """Every mask file under ``masks_dir``, sorted by relative path.

    Hidden files and folders are skipped, symlinked folders are not entered,
    and a symlinked file is refused when it leads outside ``masks_dir``.
    A folder named ``*.zarr`` is one mask (a zarr array, or an OME-Zarr
    image) and is not entered. Files and folders inside ``out_dir``, or
    inside any folder holding a manifest (the OUT of an earlier run), named
    like this tool's outputs (``*.unet.tif``, ``*.unet.zarr`` ...) are never
    taken for masks, so OUT may be MASKS.

    Parameters
    ----------
    patterns : sequence of str
        Keep only masks matching one of these shell patterns (fnmatch): a
        pattern with a ``/`` is matched against the path relative to
        ``masks_dir`` (``*`` crosses folders), one without against the name.
    """
    root = Path(masks_dir).resolve()
    out_roots = [] if out_dir is None else [Path(out_dir).resolve()]
    found: list[MaskFile] = []
    unreadable: list[OSError] = []
    for folder, subdirs, files in os.walk(root, onerror=unreadable.append):
        subdirs[:] = sorted(d for d in subdirs if not d.startswith("."))
        folder_path = Path(folder)
        if MANIFEST_NAME in files:
            out_roots.append(folder_path)  # the OUT of an earlier run
        in_out = any(folder_path.is_relative_to(r) for r in out_roots)
        volumes = [d for d in subdirs if d.lower().endswith(".zarr")]
        subdirs[:] = [d for d in subdirs if d not in volumes]  # a volume is not entered
        masks = [
            n for n in files if not n.startswith(".") and Path(n).suffix.lower() in MASK_SUFFIXES
        ]
        for name in volumes + masks:
            if in_out and _is_own_output(name):
                continue
            path = folder_path / name
            rel = path.relative_to(root).as_posix()
            if not patterns or _matches(rel, name, patterns):
                found.append(MaskFile(path, rel, _refusal(path, root, is_volume=name in volumes)))
    for exc in unreadable:
        # Masks inside may have been missed: a failure, never a silent skip.
        folder_path = Path(exc.filename or root)
        rel = folder_path.relative_to(root).as_posix() if folder_path != root else "."
        found.append(MaskFile(folder_path, rel, f"cannot read folder: {exc.strerror or exc}"))
    found.sort(key=lambda m: m.rel)
    return found


_FILE_TYPES = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def _refusal(path: Path, root: Path, *, is_volume: bool) -> str | None:
    """Why a mask found under MASKS cannot be read, or None.

    Only regular files (and zarr folders) are masks: reading a FIFO or a
    device would block or never end.
    """
    if path.is_symlink():
        if is_volume:
            return "symbolic link to a folder; refused"
        try:
            target = path.resolve(strict=True)
        except (OSError, RuntimeError) as exc:  # a loop: RuntimeError before Python 3.13
            return f"symbolic link cannot be followed: {getattr(exc, 'strerror', None) or exc}"
        if not target.is_relative_to(root):
            return "symbolic link leads outside MASKS; refused"
    if is_volume:
        if zarr_kind(path) not in ("array", "ome"):
            return "not a zarr array or OME-Zarr image"
        return None
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        return f"cannot read: {exc.strerror or exc}"
    if not stat.S_ISREG(mode):
        what = _FILE_TYPES.get(stat.S_IFMT(mode), "a special file")
        return f"not a regular file ({what}); skipped"
    return None


def _matches(rel: str, name: str, patterns: Sequence[str]) -> bool:
    return any(fnmatch.fnmatch(rel if "/" in p else name, p) for p in patterns)


@dataclasses.dataclass(frozen=True)
class _ReadOptions:
    channel: int | None = None
    rgb_rule: str | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS


@dataclasses.dataclass(frozen=True)
class _Job:
    """One mask's work, sent to a worker process."""

    path: str
    rel: str
    out_root: str
    kinds: tuple[str, ...]
    settings: MapSettings
    read: _ReadOptions
    dataset_counts: dict[str, Any] | None = None
    chunked: bool = False  # a volume computed chunk by chunk (weightmaps.volumes)
    chunks: int | None = None  # processing chunk edge; None: the zarr's own (TIFF: 256)
    threads: int | None = None  # a volume's threads; None: every core
    volume_limits: VolumeLimits = VolumeLimits()  # checked again in the job: files change


def _resolve_spacing(
    setting: str | tuple[float, ...] | None, file_spacing: tuple[float, ...] | None, ndim: int
) -> tuple[float, ...] | None:
    if setting is None:
        return None
    spacing = file_spacing if setting == "auto" else tuple(setting)
    if spacing is not None and len(spacing) != ndim:
        raise MaskTypeError(f"spacing {spacing} has {len(spacing)} values for a {ndim}-D mask")
    return spacing


def _map_stats(array: np.ndarray) -> dict[str, float]:
    return {
        "min": float(array.min()),
        "max": float(array.max()),
        "mean": float(array.mean(dtype=np.float64)),
    }


def _count_job(job: _Job) -> dict[str, Any]:
    """Worker: the mask type and class counts (first pass of dataset-scope balance)."""
    if job.chunked:
        from weightmaps.volumes import count_volume_job

        return count_volume_job(job)
    try:
        mask = read_mask(job.path, **dataclasses.asdict(job.read))
        mask_type, counts = mask_class_counts(mask, job.settings)
    except MaskReadError as exc:
        return {"error": exc.reason}
    except (ValueError, TypeError, MemoryError) as exc:
        return {"error": _reason(exc)}
    return {"mask_type": mask_type, "counts": counts.to_dict()}


@dataclasses.dataclass(frozen=True)
class _Source:
    """What a worker learnt about a mask besides its pixels."""

    shape: tuple[int, ...]
    dtype: str
    spacing: tuple[float, ...] | None  # used for the U-Net distances
    file_spacing: tuple[float, ...] | None
    unit: str | None


def _load(job: _Job) -> tuple[np.ndarray, _Source]:
    mask = read_mask(job.path, **dataclasses.asdict(job.read))
    file_spacing, unit = read_spacing_unit(job.path)
    spacing = _resolve_spacing(job.settings.spacing, file_spacing, mask.ndim)
    return mask, _Source(mask.shape, str(mask.dtype), spacing, file_spacing, unit)


def _dataset_counts(job: _Job) -> ClassCounts | None:
    return None if job.dataset_counts is None else ClassCounts.from_dict(job.dataset_counts)


def _map_kinds(job: _Job) -> list[str]:
    return [k for k in job.kinds if k in KINDS]


def _compute_job(job: _Job) -> dict[str, Any]:
    """Worker: read one mask, compute its maps, write them; return its record."""
    if job.chunked:
        from weightmaps.volumes import compute_volume_job

        return compute_volume_job(job)
    try:
        mask, source = _load(job)
        result = compute_maps(
            mask,
            job.settings,
            kinds=_map_kinds(job),
            spacing=source.spacing,
            dataset_counts=_dataset_counts(job),
        )
    except MaskReadError as exc:
        return {"error": exc.reason}
    except (ValueError, TypeError, MemoryError) as exc:
        return {"error": _reason(exc)}
    return _write_outputs(job, source, result)


def _prepare_job(job: _Job) -> dict[str, Any]:
    """Worker of the device path: read one mask and do the CPU part of its maps.

    A volume (``job.chunked``) is computed and written here, on the CPU: its record
    comes back instead.
    """
    if job.chunked:
        return _compute_job(job)
    try:
        mask, source = _load(job)
        prepared = prepare_mask(mask, job.settings, kinds=_map_kinds(job))
    except MaskReadError as exc:
        return {"error": exc.reason}
    except (ValueError, TypeError, MemoryError) as exc:
        return {"error": _reason(exc)}
    return {"prepared": prepared, "source": source}


def _write_outputs(job: _Job, source: _Source, result: MaskMaps) -> dict[str, Any]:
    """Write a mask's maps atomically; return its manifest record (or the error)."""
    arrays = dict(result.maps)
    if result.target is not None and "target" in job.kinds:
        arrays["target"] = result.target
    recorded_spacing = source.spacing or source.file_spacing
    outputs: dict[str, dict[str, Any]] = {}
    for kind, array in arrays.items():
        rel_out = output_name(job.rel, kind)
        path = Path(job.out_root) / rel_out
        same_grid = array.shape == source.shape
        try:
            # Checked before mkdir too, which would otherwise create folders
            # wherever a symlinked folder in OUT leads; after it for races.
            for _ in range(2):
                if not path.parent.resolve().is_relative_to(Path(job.out_root).resolve()):
                    return {"error": f"output folder of {rel_out} leads outside OUT; refused"}
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
            )
        except OSError as exc:
            reason = f"cannot write {rel_out}: {exc.strerror or exc}"
            return {"fatal" if exc.errno in _FATAL_WRITE_ERRORS else "error": reason}
        outputs[kind] = {
            "path": rel_out,
            "bytes": size,
            "sha256": digest.hexdigest(),
            "shape": list(array.shape),
            "dtype": str(array.dtype),
            **_map_stats(array),
        }
    return {
        "mask_type": result.mask_type,
        "shape": list(source.shape),
        "dtype": source.dtype,
        "spacing": None if recorded_spacing is None else list(recorded_spacing),
        "counts": None if result.counts is None else result.counts.to_dict(),
        "outputs": outputs,
    }


def _reason(exc: BaseException) -> str:
    if isinstance(exc, MemoryError):
        return "out of memory"
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


class _Workers:
    """Runs jobs in worker processes (or in this process for one worker)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> _Workers:
        if self.workers > 1:
            # fork keeps the compiled kernels and needs no import guard in the
            # caller's script; elsewhere the platform default is used.
            context = (
                multiprocessing.get_context("fork") if sys.platform.startswith("linux") else None
            )
            # Workers end with this process, even when it is killed (SIGKILL,
            # the OOM killer): an orphan would hold memory and run on forever.
            self._pool = ProcessPoolExecutor(
                self.workers,
                mp_context=context,
                initializer=die_with_parent,
                initargs=(os.getpid(),),
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def run(
        self, function: Callable[[_Job], dict[str, Any]], jobs: Sequence[_Job]
    ) -> Iterator[tuple[_Job, dict[str, Any]]]:
        """Yield (job, result) as jobs finish. Closing the iterator cancels the rest."""
        if self._pool is None:
            for job in jobs:
                yield job, function(job)
            return
        pending: dict[Future, _Job] = {}
        todo = iter(jobs)
        try:
            # A bounded window of submitted jobs: memory stays flat for any
            # number of masks, and cancelling is immediate.
            for job in todo:
                pending[self._pool.submit(function, job)] = job
                if len(pending) >= 2 * self.workers:
                    break
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    job = pending.pop(future)
                    try:
                        result = future.result()
                    except BrokenProcessPool as exc:
                        raise PipelineError(
                            f"a worker process died while processing {printable(job.rel)} "
                            "(out of memory? try fewer --workers)"
                        ) from exc
                    yield job, result
                    next_job = next(todo, None)
                    if next_job is not None:
                        pending[self._pool.submit(function, next_job)] = next_job
        finally:
            for future in pending:
                future.cancel()


@dataclasses.dataclass
class GenerateReport:
    """What a :func:`generate` run did.

    Attributes
    ----------
    done : list of str
        Masks whose maps were (re)computed and written (dry run: would be).
    skipped : list of str
        Masks whose requested maps were all current.
    failed : dict
        Mask path -> one-line reason.
    reasons : dict
        Mask path -> {output kind: why it is (re)computed}.
    mask_types : Counter
        Detected or given mask types of the masks read.
    dataset : dict or None
        Dataset-scope balance: summed counts and the class weights used.
    device_seconds : float
        Wall time spent computing batches on the torch device (device path).
    """

    masks_dir: str
    out_dir: str
    dry_run: bool = False
    done: list[str] = dataclasses.field(default_factory=list)
    skipped: list[str] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)
    reasons: dict[str, dict[str, str]] = dataclasses.field(default_factory=dict)
    mask_types: Counter = dataclasses.field(default_factory=Counter)
    dataset: dict[str, Any] | None = None
    elapsed: float = 0.0
    stopped_early: bool = False
    device_seconds: float = 0.0

    @property
    def exit_code(self) -> int:
        """:data:`EXIT_OK` or :data:`EXIT_FAILED`."""
        return EXIT_FAILED if self.failed else EXIT_OK

    @property
    def throughput(self) -> float:
        """Masks computed per second of wall time."""
        return len(self.done) / self.elapsed if self.elapsed > 0 else 0.0

    def summary(self) -> str:
        """A few lines for a person: counts, failures with reasons, time."""
        verb = "would compute" if self.dry_run else "done"
        lines = [
            f"{verb} {len(self.done)}, skipped {len(self.skipped)} (current), "
            f"failed {len(self.failed)}"
            + ("" if self.dry_run else f" in {self.elapsed:.1f} s ({self.throughput:.1f} masks/s)")
        ]
        for rel, reason in list(self.failed.items())[:20]:
            lines.append(f"  FAILED {printable(rel)}: {printable(reason)}")
        if len(self.failed) > 20:
            lines.append(f"  ... and {len(self.failed) - 20} more failures")
        if len(self.mask_types) > 1:
            found = ", ".join(f"{n} {t}" for t, n in sorted(self.mask_types.items()))
            lines.append(f"  note: mask types differ ({found}); name one with --mask-type")
        if self.stopped_early:
            lines.append("  stopped at the first failure (--fail-fast)")
        if not self.dry_run:
            lines.append(f"  maps in {self.out_dir}, manifest {Path(self.out_dir) / MANIFEST_NAME}")
        return "\n".join(lines)


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(kinds))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty selection of {', '.join(KINDS)}; got {kinds}")
    return kinds


def resolve_device(device: str) -> str | None:
    """Where ``generate`` computes: None for the numba kernels on the CPU, else a torch device.

    ``"auto"`` is CUDA when torch sees a GPU, else the CPU kernels; ``"cpu"``
    the CPU kernels; ``"cuda"``/``"cuda:N"`` that GPU (an error when absent);
    ``"torch:cpu"`` the batched torch path on the CPU (what the GPU path
    runs, slower than ``"cpu"``: for testing and comparison).
    """
    if device == "cpu":
        return None
    if device == "torch:cpu":
        return "cpu"
    if device == "auto":
        # Importing torch costs a second or two: only where a GPU may exist.
        if sys.platform.startswith("linux") and not os.path.exists("/dev/nvidiactl"):
            return None
        import torch

        return "cuda" if torch.cuda.is_available() else None
    if device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ValueError(f"device must be auto, cpu, cuda, cuda:N or torch:cpu; got {device!r}")
    import torch

    if not torch.cuda.is_available():
        raise ValueError(
            f"device {device}: CUDA is not available here (torch.cuda.is_available() is False); "
            "use --device cpu"
        )
    index = int(device[5:]) if ":" in device else 0
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {device}: only {torch.cuda.device_count()} CUDA devices")
    return device


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclasses.dataclass
class _Plan:
    mask: MaskFile
    size: int = 0
    sha256: str = ""  # or a volume's fingerprint ("stat:...")
    todo: dict[str, str] = dataclasses.field(default_factory=dict)
    chunked: bool = False


class _Run:
    """State of one generate or check run."""

    def __init__(
        self,
        masks_dir: Path,
        out_dir: Path,
        settings: MapSettings,
        read: _ReadOptions,
        kinds: tuple[str, ...],
        manifest: Manifest,
        *,
        chunked_above: int = DEFAULT_CHUNKED_ABOVE,
        chunks: int | None = None,
        volume_limits: VolumeLimits | None = None,
    ) -> None:
        self.masks_dir = masks_dir
        self.chunked_above = chunked_above
        self.chunks = chunks
        self.volume_limits = volume_limits or VolumeLimits()
        self.volume_threads: int | None = None  # threads of one volume job; None: all cores
        self.verify_digests = False  # also hash every current map (check); else sizes only
        self.out_dir = out_dir
        self.settings = settings
        self.read = read
        self.kinds = kinds
        self.manifest = manifest
        self.digests: dict[str, str] = {}
        for kind in self.output_kinds:
            if kind == "balance" and settings.balance_scope == "dataset":
                continue  # registered once the dataset weights are known
            self.digests[kind] = manifest.register(self.params(kind))
        self.counts_digest = params_digest(self.params("target"))

    @property
    def output_kinds(self) -> tuple[str, ...]:
        return (*self.kinds, "target") if self.settings.separate_touching else self.kinds

    def params(self, kind: str) -> dict[str, Any]:
        return {
            **self.settings.kind_params(kind),
            "channel": self.read.channel,
            "rgb_rule": self.read.rgb_rule,
        }

    def register_dataset_weights(self, counts: ClassCounts) -> dict[str, Any]:
        weights = class_weights(counts, self.settings.balance_mode)
        dataset = {
            "counts": counts.to_dict(),
            "weights": {str(c): w for c, w in sorted(weights.items())},
        }
        params = {**self.params("balance"), "dataset_weights": dataset["weights"]}
        self.digests["balance"] = self.manifest.register(params)
        return dataset

    def plan(self, mask: MaskFile, force: bool) -> _Plan:
        plan = _Plan(mask)
        if mask.path.is_dir() or is_big_tiff(mask.path, self.chunked_above):
            # Too costly to hash: a fingerprint of sizes and modification times.
            plan.chunked = True
            plan.size, plan.sha256 = fingerprint(mask.path)
        else:
            plan.size = mask.path.stat().st_size
            plan.sha256 = file_sha256(mask.path)
        record = self.manifest.masks.get(mask.rel)
        for kind in self.output_kinds:
            reason = self._stale_reason(kind, record, plan, force)
            if reason is not None:
                plan.todo[kind] = reason
        if plan.chunked and (plan.todo or self._counts_needed(plan)):
            # From the metadata, before anything is read or scheduled (VolumeRefused).
            check_volume(inspect_volume(mask.path), self.volume_limits, self.chunks)
        return plan

    def _counts_needed(self, plan: _Plan) -> bool:
        """Will the dataset-scope balance pass read this mask for its counts?"""
        if self.settings.balance_scope != "dataset" or "balance" not in self.kinds:
            return False
        return self.cached_counts(plan) is None

    def _stale_reason(
        self, kind: str, record: dict[str, Any] | None, plan: _Plan, force: bool
    ) -> str | None:
        if force:
            return "forced"
        if record is None:
            return "new mask"
        if record.get("sha256") != plan.sha256:
            return "mask changed"
        if kind == "target" and record.get("mask_type") != "instance":
            return None  # only instance masks are carved
        output = record.get("outputs", {}).get(kind)
        if output is None:
            return "not generated yet"
        digest = self.digests.get(kind)
        if digest is None:
            return "dataset counts not known yet"
        if output.get("params") != digest:
            return "parameters changed"
        try:
            path = self.manifest.output_path(self.out_dir, output["path"])
            size = tree_size(path)
            if size != output.get("bytes"):
                return "output changed on disk"
            # TIFF maps carry the digest of the bytes written; zarr maps, sizes only.
            recorded = output.get("sha256")
            if self.verify_digests and recorded is not None and file_sha256(path) != recorded:
                return "output changed on disk (same size, other SHA-256: delete it to redo it)"
        except (OSError, ManifestError):
            return "output missing"
        return None

    def replan(self, plan: _Plan, kind: str) -> None:
        """Re-decide one kind once its parameters are known (dataset weights)."""
        reason = self._stale_reason(kind, self.manifest.masks.get(plan.mask.rel), plan, False)
        if reason is not None:
            plan.todo[kind] = reason

    def cached_counts(self, plan: _Plan) -> tuple[str, ClassCounts] | None:
        record = self.manifest.masks.get(plan.mask.rel) or {}
        cache = record.get("count_cache")
        if (
            not cache
            or cache.get("sha256") != plan.sha256
            or cache.get("params") != self.counts_digest
        ):
            return None
        return cache["mask_type"], ClassCounts.from_dict(cache["counts"])

    def job(self, plan: _Plan, dataset_counts: dict[str, Any] | None = None) -> _Job:
        return _Job(
            path=str(plan.mask.path),
            rel=plan.mask.rel,
            out_root=str(self.out_dir),
            kinds=tuple(plan.todo),
            settings=self.settings,
            read=self.read,
            dataset_counts=dataset_counts,
            chunked=plan.chunked,
            chunks=self.chunks,
            threads=self.volume_threads,
            volume_limits=self.volume_limits,
        )

    def record(self, plan: _Plan, result: dict[str, Any]) -> None:
        old = self.manifest.masks.get(plan.mask.rel) or {}
        outputs: dict[str, Any] = {}
        if old.get("sha256") == plan.sha256:
            outputs = {k: v for k, v in old.get("outputs", {}).items() if k not in plan.todo}
        for kind, output in result["outputs"].items():
            outputs[kind] = {**output, "params": self.digests[kind]}
        record = {
            "size": plan.size,
            "sha256": plan.sha256,
            "mask_type": result["mask_type"],
            "shape": result["shape"],
            "dtype": result["dtype"],
            "spacing": result["spacing"],
            "outputs": dict(sorted(outputs.items())),
        }
        if result.get("counts") is not None:
            record["count_cache"] = {
                "sha256": plan.sha256,
                "params": self.counts_digest,
                "mask_type": result["mask_type"],
                "counts": result["counts"],
            }
        self.manifest.masks[plan.mask.rel] = record

    def cache_counts(self, plan: _Plan, mask_type: str, counts: dict[str, Any]) -> None:
        record = self.manifest.masks.setdefault(plan.mask.rel, {"outputs": {}})
        record["count_cache"] = {
            "sha256": plan.sha256,
            "params": self.counts_digest,
            "mask_type": mask_type,
            "counts": counts,
        }


def _default_log(level: int, message: str) -> None:
    _logger.log(level, message)


def _open_manifest(out_dir: Path, force: bool) -> Manifest:
    try:
        manifest = Manifest.load(out_dir / MANIFEST_NAME)
    except ManifestError as exc:
        if not force:
            raise PipelineError(f"{exc}; move it away or run with --force") from exc
        manifest = None
    return manifest or Manifest()


def _make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PipelineError(f"cannot write to {out_dir}: permission denied")


def generate(
    masks_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    kinds: Sequence[str] = KINDS,
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
    masks_dir, out_dir : path-like
        Where masks are found (recursively) and where maps go, at the same
        relative paths. ``out_dir`` may equal ``masks_dir``.
    kinds : sequence of {"unet", "edge", "balance"}
        Maps to compute.
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
        ``OUT/<stem>.<kind>.zarr`` (see :mod:`weightmaps.volumes`).
    chunks : int, optional
        Edge length of the processing (and output) chunks of such volumes;
        default a zarr's own chunks, 256 for a TIFF.
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
        Map parameters, the fields of :class:`weightmaps.maps.MapSettings`
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
        The run cannot proceed: OUT not writable or full, another run holds
        its lock, an unreadable manifest.
    GenerateInterrupted
        Ctrl-C; finished masks are recorded, a rerun resumes.

    Examples
    --------
    >>> import weightmaps
    >>> report = weightmaps.generate("masks/", "out/", kinds=["unet"], sigma=3)  # doctest: +SKIP
    >>> report.exit_code, len(report.done)  # doctest: +SKIP
    (0, 120)
    """
    log = log or _default_log
    settings = MapSettings(**options) if options else MapSettings()
    read = _ReadOptions(channel, rgb_rule, max_pixels)
    kinds = _check_kinds(kinds)
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
    masks_path = Path(masks_dir)
    out_path = Path(out_dir)
    if not masks_path.is_dir():
        raise ValueError(f"masks folder {masks_dir} does not exist or is not a folder")
    report = GenerateReport(str(masks_dir), str(out_dir), dry_run=dry_run)
    if scheduler is not None:
        from weightmaps.cluster import check_scheduler

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
    )
    start = time.perf_counter()
    try:
        _generate(report, masks_path, out_path, settings, read, kinds, options_)
    finally:
        report.elapsed = time.perf_counter() - start
    return report


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


def _generate(
    report: GenerateReport,
    masks_path: Path,
    out_path: Path,
    settings: MapSettings,
    read: _ReadOptions,
    kinds: tuple[str, ...],
    options: _RunOptions,
) -> None:
    if options.dry_run:
        exists = out_path.is_dir()
        manifest = _open_manifest(out_path, options.force) if exists else Manifest()
        run = _new_run(masks_path, out_path, settings, read, kinds, manifest, options)
        _execute(run, report, options)
        return
    _make_out_dir(out_path)
    try:
        with output_lock(out_path):
            manifest = _open_manifest(out_path, options.force)
            run = _new_run(masks_path, out_path, settings, read, kinds, manifest, options)
            removed = remove_leftover_temporaries(out_path)
            if removed:
                options.log(
                    logging.INFO, f"removed {removed} temporary files left by an interrupted run"
                )
            _execute(run, report, options)
    except OutputLocked as exc:
        raise PipelineError(str(exc)) from exc
    except OSError as exc:
        raise PipelineError(f"cannot write to {out_path}: {exc.strerror or exc}") from exc


def _new_run(
    masks_path: Path,
    out_path: Path,
    settings: MapSettings,
    read: _ReadOptions,
    kinds: tuple[str, ...],
    manifest: Manifest,
    options: _RunOptions,
) -> _Run:
    return _Run(
        masks_path,
        out_path,
        settings,
        read,
        kinds,
        manifest,
        chunked_above=options.chunked_above,
        chunks=options.chunks,
        volume_limits=options.volume_limits,
    )


def _execute(run: _Run, report: GenerateReport, options: _RunOptions) -> None:
    dry_run, fail_fast, progress, log = (
        options.dry_run,
        options.fail_fast,
        options.progress,
        options.log,
    )
    manifest_path = run.out_dir / MANIFEST_NAME
    saver = _ManifestSaver(run.manifest, manifest_path, enabled=not dry_run)
    run.manifest.settings = _settings_record(run)
    try:
        plans = _plan_all(run, report, options.patterns, options.force, log)  # hashes every mask
    except KeyboardInterrupt:
        raise GenerateInterrupted(report) from None  # nothing computed yet
    if fail_fast and report.failed:
        report.stopped_early = True
        return
    workers = max(1, min(options.workers, len(plans) or 1))
    run.volume_threads = _volume_threads(options, workers)
    # A rerun with everything current starts no worker processes or cluster.
    idle = not any(p.todo for p in plans) and not _counts_missing(run, plans)
    try:
        with _Workers(1) if idle else _engine(options, workers) as pool:
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
            bar = _progress_bar(len(jobs), progress, "maps")
            try:
                if options.device is None:
                    results = pool.run(_compute_job, jobs)
                else:
                    results = _device_results(pool, jobs, options, report)
                for job, result in results:
                    bar.update(1)
                    plan = by_rel[job.rel]
                    if "fatal" in result:
                        results.close()
                        raise PipelineError(f"{printable(job.rel)}: {printable(result['fatal'])}")
                    if "error" in result:
                        _fail(report, run, job.rel, result["error"], log)
                        if fail_fast:
                            report.stopped_early = True
                            results.close()
                            break
                        continue
                    run.record(plan, result)
                    report.done.append(job.rel)
                    report.mask_types[result["mask_type"]] += 1
                    notes = "; ".join(
                        n for n in (result.get("resumed"), result.get("missing")) if n
                    )
                    resumed = f" ({notes})" if notes else ""
                    wrote = f"{result['mask_type']}, wrote {_kinds(result)}{resumed}"
                    log(logging.INFO, f"{printable(job.rel)}: {wrote}")
                    saver.maybe_save()
            finally:
                bar.close()
    except KeyboardInterrupt:
        saver.save()
        raise GenerateInterrupted(report) from None
    finally:
        saver.save()


def _volume_threads(options: _RunOptions, workers: int) -> int | None:
    """Threads of one volume job: this machine's cores shared by the processes running jobs.

    None on a remote cluster (every core of the worker's machine: run one
    worker per machine there for volumes).
    """
    scheduler = options.scheduler
    if scheduler is None:
        processes = workers
    elif isinstance(scheduler, str) and scheduler.startswith("local:"):
        processes = int(scheduler[len("local:") :])
    else:
        return None
    return max(1, default_workers() // processes)


def _counts_missing(run: _Run, plans: list[_Plan]) -> bool:
    """Would the dataset-scope balance pass have to read any mask?"""
    if run.settings.balance_scope != "dataset" or "balance" not in run.kinds:
        return False
    return any(run.cached_counts(p) is None for p in plans)


def _engine(options: _RunOptions, workers: int) -> Any:
    """Local worker processes, or a Dask cluster with ``scheduler``."""
    if options.scheduler is None:
        return _Workers(workers)
    from weightmaps.cluster import DaskWorkers

    return _ClusterErrors(DaskWorkers(options.scheduler))


class _ClusterErrors:
    """A scheduler that cannot be reached is a run error, not an OUT problem."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine

    def __enter__(self) -> Any:
        try:
            return self.engine.__enter__()
        except OSError as exc:
            raise PipelineError(str(exc)) from exc

    def __exit__(self, *exc_info: object) -> None:
        self.engine.__exit__(*exc_info)


def _device_results(
    pool: _Workers, jobs: Sequence[_Job], options: _RunOptions, report: GenerateReport
) -> Iterator[tuple[_Job, dict[str, Any]]]:
    """The device path: CPU workers read and prepare, the device computes in batches,
    threads write; yields (job, result) like ``pool.run(_compute_job, jobs)``.

    Reading, computing and writing overlap: worker processes keep a bounded
    window of masks prepared ahead, masks of one shape are stacked into
    batches of ``batch_size``, and writer threads compress and write while
    the next batch computes.
    """
    groups: dict[tuple, list[tuple[_Job, PreparedMask, _Source]]] = {}
    writes: dict[Future, _Job] = {}
    writers = ThreadPoolExecutor(max(1, pool.workers))

    def flush(key: tuple) -> None:
        items = groups.pop(key)
        first, _, source = items[0]
        results = _compute_batch(items, first, source, options, report)
        for (job, _, src), result in zip(items, results, strict=True):
            writes[writers.submit(_write_outputs, job, src, result)] = job

    def finished(block: bool) -> Iterator[tuple[_Job, dict[str, Any]]]:
        if not writes:
            return
        done, _ = wait(writes, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            yield writes.pop(future), future.result()

    try:
        for job, loaded in pool.run(_prepare_job, jobs):
            if "prepared" not in loaded:  # an error, or a volume's record
                yield job, loaded
                continue
            prepared, source = loaded["prepared"], loaded["source"]
            key = (source.shape, source.spacing, job.kinds, prepared.mask_type == "semantic")
            groups.setdefault(key, []).append((job, prepared, source))
            if len(groups[key]) >= options.batch_size:
                flush(key)
            yield from finished(block=False)
            while len(writes) > 2 * options.batch_size:
                yield from finished(block=True)
        for key in list(groups):
            flush(key)
        while writes:
            yield from finished(block=True)
    finally:
        for future in writes:
            future.cancel()
        writers.shutdown(wait=True)


def _compute_batch(
    items: list[tuple[_Job, PreparedMask, _Source]],
    job: _Job,
    source: _Source,
    options: _RunOptions,
    report: GenerateReport,
) -> list[MaskMaps]:
    kinds = _map_kinds(job)
    prepared = [p for _, p, _ in items]
    start = time.perf_counter()
    try:
        return compute_maps_batch(
            prepared,
            job.settings,
            kinds=kinds,
            spacing=source.spacing,
            dataset_counts=_dataset_counts(job),
            device=options.device,
        )
    except RuntimeError as exc:
        if "out of memory" not in str(exc).lower():
            raise
        options.log(
            logging.WARNING,
            f"{options.device} ran out of memory on {len(items)} masks of shape "
            f"{source.shape}; computing them on the CPU",
        )
        return [
            compute_prepared(
                p,
                job.settings,
                kinds=kinds,
                spacing=source.spacing,
                dataset_counts=_dataset_counts(job),
            )
            for p in prepared
        ]
    finally:
        report.device_seconds += time.perf_counter() - start


def _kinds(result: dict[str, Any]) -> str:
    return ", ".join(result["outputs"])


def _fail(report: GenerateReport, run: _Run, rel: str, reason: str, log: LogFunction) -> None:
    report.failed[rel] = reason
    record = run.manifest.masks.get(rel)
    if record is not None:
        # Its maps no longer describe the mask on disk.
        record["outputs"] = {}
    log(logging.ERROR, f"FAILED {printable(rel)}: {printable(reason)}")


def _plan_all(
    run: _Run,
    report: GenerateReport,
    patterns: tuple[str, ...],
    force: bool,
    log: LogFunction,
) -> list[_Plan]:
    found = find_masks(run.masks_dir, out_dir=run.out_dir, patterns=patterns)
    plans: list[_Plan] = []
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
    if not found:
        log(
            logging.WARNING,
            f"no masks ({', '.join(MASK_SUFFIXES)}, .zarr) found under {run.masks_dir}",
        )
    return plans


def _dataset_pass(
    run: _Run,
    report: GenerateReport,
    plans: list[_Plan],
    pool: _Workers,
    dry_run: bool,
    fail_fast: bool,
    log: LogFunction,
) -> dict[str, Any] | None:
    """First pass of dataset-scope balance: class counts summed over every mask."""
    counts: dict[str, tuple[str, ClassCounts]] = {}
    missing: list[_Plan] = []
    for plan in plans:
        cached = run.cached_counts(plan)
        if cached is None:
            missing.append(plan)
        else:
            counts[plan.mask.rel] = cached
    if dry_run and missing:
        return None  # balance maps show as "dataset counts not known yet"
    by_rel = {p.mask.rel: p for p in missing}
    bar = _progress_bar(len(missing), None if missing else False, "counts")
    try:
        results = pool.run(_count_job, [run.job(p) for p in missing])
        for job, result in results:
            bar.update(1)
            if "error" in result:
                _fail(report, run, job.rel, result["error"], log)
                if fail_fast:
                    results.close()
                    return None
                continue
            run.cache_counts(by_rel[job.rel], result["mask_type"], result["counts"])
            counts[job.rel] = (result["mask_type"], ClassCounts.from_dict(result["counts"]))
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


def _settings_record(run: _Run) -> dict[str, Any]:
    return {
        "kinds": list(run.kinds),
        **{k: _jsonable(v) for k, v in dataclasses.asdict(run.settings).items()},
        "channel": run.read.channel,
        "rgb_rule": run.read.rgb_rule,
        "chunked_above": run.chunked_above,
        # Not map parameters (no digest depends on them): what check plans with.
        "chunks": run.chunks,
        "max_volume_voxels": run.volume_limits.max_voxels,
        "max_chunk_bytes": run.volume_limits.max_chunk_bytes,
        "missing_chunks": run.volume_limits.missing_chunks,
    }


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


class _ManifestSaver:
    """Writes the manifest as masks complete, and at the end.

    At most once a second, and at most a tenth of the time: rewriting the
    manifest of 10^5 masks takes seconds, and the client that writes it is
    also the one feeding the workers.
    """

    def __init__(self, manifest: Manifest, path: Path, *, enabled: bool) -> None:
        self.manifest = manifest
        self.path = path
        self.enabled = enabled
        self._last = time.monotonic()
        self._interval = _MANIFEST_INTERVAL_S

    def maybe_save(self) -> None:
        if time.monotonic() - self._last >= self._interval:
            self.save()

    def save(self) -> None:
        if self.enabled:
            start = time.monotonic()
            self.manifest.prune()
            self.manifest.save(self.path)
            self._last = time.monotonic()
            self._interval = max(_MANIFEST_INTERVAL_S, 10 * (self._last - start))


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress_bar(total: int, progress: bool | None, unit_name: str) -> Any:
    show = sys.stderr.isatty() if progress is None else progress
    if not show or total == 0:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, unit="mask", desc=unit_name, file=sys.stderr, dynamic_ncols=True)


# --- check -----------------------------------------------------------------


@dataclasses.dataclass
class CheckReport:
    """Per mask and output kind: ``current``, or why it is stale or missing."""

    current: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    stale: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    missing: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    failed: dict[str, str] = dataclasses.field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """1 when any map is missing or stale (or a mask is unreadable), else 0."""
        return EXIT_FAILED if self.stale or self.missing or self.failed else EXIT_OK


_MISSING_REASONS = frozenset({"new mask", "not generated yet", "output missing"})


def check(
    masks_dir: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    *,
    kinds: Sequence[str] | None = None,
    glob: Sequence[str] | str = (),
    channel: int | None = None,
    rgb_rule: str | None = None,
    hash_maps: bool = True,
    **options: Any,
) -> CheckReport:
    """Which maps under ``out_dir`` are current, stale or missing.

    Parameters not given are taken from the manifest's last run, so a plain
    check asks "is OUT up to date with how it was made?"; given ones ask
    "would generate with these parameters redo anything?". Nothing is read
    but the manifest, the masks' bytes (for their hashes) and, with
    ``hash_maps``, the maps' bytes: a TIFF map whose SHA-256 differs from the
    one recorded when it was written is stale ("same size, other SHA-256")
    even at the same size. generate compares sizes only (a rerun with nothing to do
    reads no map), so such a map must be deleted for generate to redo it.
    Zarr maps and maps recorded without a digest are compared by size.
    """
    masks_path, out_path = Path(masks_dir), Path(out_dir)
    if not masks_path.is_dir():
        raise ValueError(f"masks folder {masks_dir} does not exist or is not a folder")
    manifest = _open_manifest(out_path, force=False) if out_path.is_dir() else Manifest()
    recorded = dict(manifest.settings)
    fields = {f.name for f in dataclasses.fields(MapSettings)}
    merged = {k: _settings_value(k, v) for k, v in recorded.items() if k in fields}
    merged.update(options)
    settings = MapSettings(**merged)
    read = _ReadOptions(
        channel if channel is not None else recorded.get("channel"),
        rgb_rule if rgb_rule is not None else recorded.get("rgb_rule"),
    )
    kinds = _check_kinds(kinds or recorded.get("kinds") or KINDS)
    chunked_above = recorded.get("chunked_above", DEFAULT_CHUNKED_ABOVE)
    volume_limits, chunks = _recorded_volume_options(recorded)
    run = _Run(
        masks_path,
        out_path,
        settings,
        read,
        kinds,
        manifest,
        chunked_above=chunked_above,
        chunks=chunks,
        volume_limits=volume_limits,
    )
    run.verify_digests = hash_maps
    report = CheckReport()
    patterns = (glob,) if isinstance(glob, str) else tuple(glob)
    plans: list[_Plan] = []
    for mask in find_masks(masks_path, out_dir=out_path, patterns=patterns):
        if mask.error is not None:
            report.failed[mask.rel] = mask.error
            continue
        try:
            plans.append(run.plan(mask, force=False))
        except OSError as exc:
            report.failed[mask.rel] = f"cannot read: {exc.strerror or exc}"
        except VolumeRefused as exc:
            report.failed[mask.rel] = str(exc)
    if settings.balance_scope == "dataset" and "balance" in kinds:
        _check_dataset(run, plans)
    for plan in plans:
        for kind in run.output_kinds:
            if kind in plan.todo:
                reason = plan.todo[kind]
                bucket = report.missing if reason in _MISSING_REASONS else report.stale
                bucket.append((plan.mask.rel, kind, reason))
            elif kind != "target" or "target" in manifest.masks[plan.mask.rel].get("outputs", {}):
                report.current.append((plan.mask.rel, kind))
    return report


def _recorded_volume_options(recorded: dict[str, Any]) -> tuple[VolumeLimits, int | None]:
    """The volume limits and chunks of the last generate run (a manifest from anyone)."""
    chunks = recorded.get("chunks")
    try:
        if chunks is not None and (
            isinstance(chunks, bool) or not isinstance(chunks, int) or chunks < 1
        ):
            raise ValueError(f"chunks must be a positive integer, got {chunks!r}")
        limits = VolumeLimits(
            recorded.get("max_volume_voxels", DEFAULT_MAX_VOLUME_VOXELS),
            recorded.get("max_chunk_bytes", DEFAULT_MAX_CHUNK_BYTES),
            recorded.get("missing_chunks", "fill"),
        )
    except ValueError as exc:
        raise ManifestError(f"bad volume settings in the manifest: {exc}") from None
    return limits, chunks


def _settings_value(name: str, value: Any) -> Any:
    if isinstance(value, list):
        return tuple(value)
    return value


def _check_dataset(run: _Run, plans: list[_Plan]) -> None:
    """Dataset-scope balance maps are current only if the set of masks is unchanged."""
    dataset = run.manifest.dataset or {}
    sources = params_digest({p.mask.rel: p.sha256 for p in plans})
    weights = dataset.get("weights")
    if weights is None or dataset.get("sources") != sources:
        for plan in plans:
            if plan.todo.get("balance") in (None, "dataset counts not known yet"):
                plan.todo["balance"] = "dataset changed since the maps were made"
        return
    params = {**run.params("balance"), "dataset_weights": weights}
    run.digests["balance"] = params_digest(params)
    for plan in plans:
        if plan.todo.get("balance") == "dataset counts not known yet":
            del plan.todo["balance"]
        run.replan(plan, "balance")


# --- stats and preview helpers ----------------------------------------------


def survey(
    masks_dir: str | os.PathLike[str],
    *,
    glob: Sequence[str] | str = (),
    channel: int | None = None,
    rgb_rule: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    progress: bool | None = None,
    **options: Any,
) -> tuple[dict[str, MaskStats], dict[str, str]]:
    """Read every mask under ``masks_dir`` and compute its :class:`MaskStats`.

    Returns
    -------
    stats : dict
        Mask path (relative) -> its statistics.
    failed : dict
        Mask path -> one-line reason it could not be read.
    """
    if not Path(masks_dir).is_dir():
        raise ValueError(f"masks folder {masks_dir} does not exist or is not a folder")
    settings = MapSettings(**options)
    patterns = (glob,) if isinstance(glob, str) else tuple(glob)
    stats: dict[str, MaskStats] = {}
    failed: dict[str, str] = {}
    found = find_masks(masks_dir, patterns=patterns)
    bar = _progress_bar(len(found), progress, "stats")
    try:
        for mask_file in found:
            bar.update(1)
            if mask_file.error is not None:
                failed[mask_file.rel] = mask_file.error
                continue
            try:
                mask = read_mask(
                    mask_file.path, channel=channel, rgb_rule=rgb_rule, max_pixels=max_pixels
                )
                stats[mask_file.rel] = mask_stats(mask, settings)
            except MaskReadError as exc:
                failed[mask_file.rel] = exc.reason
            except (ValueError, TypeError, MemoryError) as exc:
                failed[mask_file.rel] = _reason(exc)
    finally:
        bar.close()
    return stats, failed


def maps_of(
    mask_path: str | os.PathLike[str], out_dir: str | os.PathLike[str], *, by_name: bool = True
) -> dict[str, Path]:
    """The map files in ``out_dir`` made from the mask at ``mask_path``.

    Found through the manifest by the mask's content hash; failing that (and
    with ``by_name``), by name (``<stem>.<kind>.tif``) when exactly one such
    file exists per kind: those may be maps of an older version of the mask.
    """
    out_path = Path(out_dir)
    manifest = _open_manifest(out_path, force=False) if out_path.is_dir() else None
    if manifest is not None:
        sha = fingerprint(mask_path)[1] if Path(mask_path).is_dir() else file_sha256(mask_path)
        for record in manifest.masks.values():
            if record.get("sha256") == sha and record.get("outputs"):
                outputs = record["outputs"]
                return {
                    kind: manifest.output_path(out_path, outputs[kind]["path"])
                    for kind in OUTPUT_KINDS
                    if kind in outputs
                }
    if not by_name:
        return {}
    stem = Path(mask_path).name.rsplit(".", 1)[0]
    found: dict[str, Path] = {}
    for kind in OUTPUT_KINDS:
        candidates = sorted(out_path.rglob(f"{stem}.{kind}.tif")) if out_path.is_dir() else []
        if len(candidates) == 1:
            found[kind] = candidates[0]
    return found
