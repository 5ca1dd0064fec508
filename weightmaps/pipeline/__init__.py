"""The offline pipeline behind ``weightmaps generate``, ``check`` and ``stats``.

One module per job: :mod:`~weightmaps.pipeline.discover` finds masks,
:mod:`~weightmaps.pipeline.plan` decides from the manifest what is stale,
:mod:`~weightmaps.pipeline.workers` runs jobs in local processes or on a Dask
cluster (:mod:`~weightmaps.pipeline.cluster`), :mod:`~weightmaps.pipeline.mask_jobs`
and :mod:`~weightmaps.pipeline.volume_jobs` read, compute and write one mask,
:mod:`~weightmaps.pipeline.device` batches masks on a GPU,
:mod:`~weightmaps.pipeline.generation` and :mod:`~weightmaps.pipeline.checking` are
the commands, :mod:`~weightmaps.pipeline.reports` what they tell, and
:mod:`~weightmaps.pipeline.manifest` and :mod:`~weightmaps.pipeline.lock` the
files a run keeps in OUT.

Output layout: for ``MASKS/a/b.png``, ``OUT/a/b.unet.tif``, ``OUT/a/b.edge.tif``,
``OUT/a/b.balance.tif`` (float32, deflate) and, with ``separate_touching``,
``OUT/a/b.target.tif``; a volume's maps are zarr arrays, ``OUT/a/v.unet.zarr``.
"""

from __future__ import annotations

from weightmaps._shared.text import printable
from weightmaps.io.names import OUTPUT_KINDS, output_name
from weightmaps.pipeline.checking import check
from weightmaps.pipeline.device import resolve_device
from weightmaps.pipeline.discover import MaskFile, find_masks
from weightmaps.pipeline.generation import generate
from weightmaps.pipeline.reports import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_RUN_ERROR,
    EXIT_USAGE,
    CheckReport,
    GenerateInterrupted,
    GenerateReport,
    PipelineError,
)
from weightmaps.pipeline.surveying import maps_of, survey
from weightmaps.pipeline.workers import default_workers

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
    "MaskFile",
    "PipelineError",
    "check",
    "default_workers",
    "find_masks",
    "generate",
    "maps_of",
    "output_name",
    "printable",
    "resolve_device",
    "survey",
]
