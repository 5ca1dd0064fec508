"""Planning a run from the manifest: which maps of which masks are missing or stale,
and what the manifest records as masks finish.

A map is current when its mask's bytes (a volume: its fingerprint), its
parameters (by digest) and its file (size; :func:`~weightmaps.pipeline.check`
also compares each TIFF map's SHA-256) are those recorded; anything else is
redone, and only that.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from weightmaps.io.tiff import read_spacing_unit
from weightmaps.io.volumes import (
    DEFAULT_CHUNKED_ABOVE,
    DEFAULT_MAX_CHUNK_BYTES,
    DEFAULT_MAX_VOLUME_VOXELS,
    VolumeInfo,
    VolumeLimits,
    check_halo_blocks,
    check_volume,
    fingerprint,
    inspect_volume,
    is_big_tiff,
    ome_scale,
    processing_grid,
    tree_size,
)
from weightmaps.io.writing import DEFAULT_COMPRESSION
from weightmaps.kernels.class_balance import ClassCounts, class_weights
from weightmaps.kinds import KINDS, kind_names
from weightmaps.kinds.spec import jsonable
from weightmaps.pipeline.discover import MaskFile
from weightmaps.pipeline.jobs import Job, ReadOptions, Written
from weightmaps.pipeline.manifest import (
    MANIFEST_NAME,
    Manifest,
    ManifestError,
    file_sha256,
    params_digest,
)
from weightmaps.pipeline.reports import PipelineError

__all__ = [
    "ManifestSaver",
    "Plan",
    "Run",
    "check_kinds",
    "make_out_dir",
    "open_manifest",
    "planned_file_spacing",
    "recorded_volume_options",
    "settings_record",
]

# The manifest is rewritten at most this often while masks complete.
_MANIFEST_INTERVAL_S = 1.0


@dataclasses.dataclass(kw_only=True)
class Plan:
    """One mask's plan: its size and hash (a volume's fingerprint), what to redo and why."""

    mask: MaskFile
    size: int = 0
    sha256: str = ""  # or a volume's fingerprint ("stat:...")
    todo: dict[str, str] = dataclasses.field(default_factory=dict)
    chunked: bool = False


class Run:
    """State of one generate or check run: settings, manifest, parameter digests."""

    def __init__(
        self,
        masks_dir: Path,
        out_dir: Path,
        settings: Any,
        read: ReadOptions,
        kinds: tuple[str, ...],
        manifest: Manifest,
        *,
        chunked_above: int = DEFAULT_CHUNKED_ABOVE,
        chunks: int | None = None,
        volume_limits: VolumeLimits | None = None,
        compression: str = DEFAULT_COMPRESSION,
    ) -> None:
        self.masks_dir = masks_dir
        self.compression = compression
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

    def plan(self, mask: MaskFile, force: bool) -> Plan:
        plan = Plan(mask=mask)
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
            info = inspect_volume(mask.path)
            check_volume(info, self.volume_limits, self.chunks)
            self._check_grown_blocks(mask.path, info, plan)
        return plan

    def _check_grown_blocks(self, path: Path, info: VolumeInfo, plan: Plan) -> None:
        """The job's check of blocks grown by the maps' halos (VolumeRefused), from
        the metadata before the volume is opened, with the spacing the job will
        use: none, the one given, or the file's own (a TIFF's tags, an
        OME-Zarr's scale). A volume the job refuses for another reason, and a
        client without the dask extra, leave it to the job, which checks again
        either way.
        """
        from weightmaps.pipeline.jobs import resolve_spacing
        from weightmaps.recipe import volume_halos, volume_refusal

        kinds = [k for k in plan.todo if k in KINDS]
        grid = processing_grid(info, self.chunks)
        if volume_refusal(self.settings, kinds) is not None or len(grid) not in (2, 3):
            return
        setting = self.settings.spacing
        try:
            file_spacing = (
                planned_file_spacing(path, info, len(grid)) if setting == "auto" else None
            )
            spacing = resolve_spacing(setting, file_spacing, len(grid))
            halos = volume_halos(self.settings, kinds, spacing, len(grid))
        except Exception:  # noqa: BLE001 - hostile metadata (a negative scale ...)
            # The job fails such a volume in its own words; planning only adds
            # the refusals it can size.
            return
        check_halo_blocks(grid, info.dtype, halos, self.volume_limits)

    def _counts_needed(self, plan: Plan) -> bool:
        """Will the dataset-scope balance pass read this mask for its counts?"""
        if self.settings.balance_scope != "dataset" or "balance" not in self.kinds:
            return False
        return self.cached_counts(plan) is None

    def _stale_reason(
        self, kind: str, record: dict[str, Any] | None, plan: Plan, force: bool
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

    def replan(self, plan: Plan, kind: str) -> None:
        """Re-decide one kind once its parameters are known (dataset weights)."""
        reason = self._stale_reason(kind, self.manifest.masks.get(plan.mask.rel), plan, False)
        if reason is not None:
            plan.todo[kind] = reason

    def cached_counts(self, plan: Plan) -> tuple[str, ClassCounts] | None:
        record = self.manifest.masks.get(plan.mask.rel) or {}
        cache = record.get("count_cache")
        if (
            not cache
            or cache.get("sha256") != plan.sha256
            or cache.get("params") != self.counts_digest
        ):
            return None
        return cache["mask_type"], ClassCounts.from_dict(cache["counts"])

    def job(self, plan: Plan, dataset_counts: dict[str, Any] | None = None) -> Job:
        return Job(
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
            compression=self.compression,
        )

    def record(self, plan: Plan, result: Written) -> None:
        old = self.manifest.masks.get(plan.mask.rel) or {}
        outputs: dict[str, Any] = {}
        if old.get("sha256") == plan.sha256:
            outputs = {k: v for k, v in old.get("outputs", {}).items() if k not in plan.todo}
        for kind, output in result.outputs.items():
            outputs[kind] = {**output, "params": self.digests[kind]}
        record = {
            "size": plan.size,
            "sha256": plan.sha256,
            "mask_type": result.mask_type,
            "shape": result.shape,
            "dtype": result.dtype,
            "spacing": result.spacing,
            "outputs": dict(sorted(outputs.items())),
        }
        if result.threshold is not None:
            record["threshold"] = result.threshold  # noise cut away: said, not hidden
        if result.file_spacing is not None:
            record["file_spacing"] = result.file_spacing
        if result.counts is not None:
            record["count_cache"] = {
                "sha256": plan.sha256,
                "params": self.counts_digest,
                "mask_type": result.mask_type,
                "counts": result.counts,
            }
        self.manifest.masks[plan.mask.rel] = record

    def cache_counts(self, plan: Plan, mask_type: str, counts: dict[str, Any]) -> None:
        record = self.manifest.masks.setdefault(plan.mask.rel, {"outputs": {}})
        record["count_cache"] = {
            "sha256": plan.sha256,
            "params": self.counts_digest,
            "mask_type": mask_type,
            "counts": counts,
        }


def open_manifest(out_dir: Path, force: bool) -> Manifest:
    try:
        manifest = Manifest.load(out_dir / MANIFEST_NAME)
    except ManifestError as exc:
        if not force:
            raise PipelineError(f"{exc}; move it away or run with --force") from exc
        manifest = None
    return manifest or Manifest()


def make_out_dir(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise PipelineError(f"cannot create {out_dir}: {exc.strerror or exc}") from exc
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise PipelineError(f"cannot write to {out_dir}: permission denied")


def check_kinds(kinds: str | Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(dict.fromkeys(kind_names(kinds)))
    bad = [k for k in kinds if k not in KINDS]
    if bad or not kinds:
        raise ValueError(f"kinds must be a non-empty selection of {', '.join(KINDS)}; got {kinds}")
    return kinds


def settings_record(run: Run) -> dict[str, Any]:
    return {
        "kinds": list(run.kinds),
        **{k: jsonable(v) for k, v in dataclasses.asdict(run.settings).items()},
        "channel": run.read.channel,
        "rgb_rule": run.read.rgb_rule,
        "chunked_above": run.chunked_above,
        # Not map parameters (no digest depends on them): what check plans with.
        "chunks": run.chunks,
        "max_volume_voxels": run.volume_limits.max_voxels,
        "max_chunk_bytes": run.volume_limits.max_chunk_bytes,
        "missing_chunks": run.volume_limits.missing_chunks,
    }


class ManifestSaver:
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


def recorded_volume_options(recorded: dict[str, Any]) -> tuple[VolumeLimits, int | None]:
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


def planned_file_spacing(path: Path, info: VolumeInfo, ndim: int) -> tuple[float, ...] | None:
    """The pixel size a volume's file gives, as its job will take it: a TIFF's
    tags, or an OME-Zarr's scale less the leading axes of length 1 the job drops."""
    if not path.is_dir():
        return read_spacing_unit(path)[0]
    scale = ome_scale(path)
    if scale is None:
        return None
    return scale[len(info.shape) - ndim :][-ndim:]
