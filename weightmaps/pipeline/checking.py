"""``check``: which maps under OUT are current, stale or missing, without computing any."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from weightmaps.io.volumes import DEFAULT_CHUNKED_ABOVE, VolumeRefused
from weightmaps.kinds import DEFAULT_KINDS
from weightmaps.pipeline.discover import find_masks, require_masks
from weightmaps.pipeline.jobs import ReadOptions
from weightmaps.pipeline.manifest import Manifest, params_digest
from weightmaps.pipeline.plan import (
    Plan,
    Run,
    check_kinds,
    open_manifest,
    recorded_volume_options,
)
from weightmaps.pipeline.reports import CheckReport
from weightmaps.settings import settings_from_record

__all__ = ["check"]

_MISSING_REASONS = frozenset({"new mask", "not generated yet", "output missing"})


def check(
    masks_dir: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out_dir: str | os.PathLike[str],
    *,
    kinds: str | Sequence[str] | None = None,
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

    ``masks_dir`` is a folder, a mask file or several, as for
    :func:`~weightmaps.pipeline.generate`; finding no mask (or none matching
    ``glob``) raises :class:`~weightmaps.pipeline.discover.NoMasksError`.
    """
    masks_path, out_path = masks_dir, Path(out_dir)
    if isinstance(masks_dir, (str, os.PathLike)) and not Path(masks_dir).exists():
        raise ValueError(f"masks folder or file {masks_dir} does not exist")
    patterns = (glob,) if isinstance(glob, str) else tuple(glob)
    found = find_masks(masks_path, out_dir=out_path, patterns=patterns)
    require_masks(found, masks_path, patterns)
    manifest = open_manifest(out_path, force=False) if out_path.is_dir() else Manifest()
    recorded = dict(manifest.settings)
    settings = settings_from_record(recorded, **options)
    read = ReadOptions(
        channel if channel is not None else recorded.get("channel"),
        rgb_rule if rgb_rule is not None else recorded.get("rgb_rule"),
    )
    kinds = check_kinds(kinds or recorded.get("kinds") or DEFAULT_KINDS)
    chunked_above = recorded.get("chunked_above", DEFAULT_CHUNKED_ABOVE)
    volume_limits, chunks = recorded_volume_options(recorded)
    run = Run(
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
    plans: list[Plan] = []
    for mask in found:
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


def _check_dataset(run: Run, plans: list[Plan]) -> None:
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
