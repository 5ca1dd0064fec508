"""The device path of ``generate``: CPU workers prepare, a torch device computes
batches, threads write.

Reading, computing and writing overlap: worker processes keep a bounded
window of masks prepared ahead, masks of one shape are stacked into batches
of ``batch_size``, and writer threads compress and write while the next
batch computes. A batch the device has no memory for is computed on the CPU.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Any

from weightmaps.pipeline.jobs import Failed, Job, Prepared, Source, Written
from weightmaps.pipeline.mask_jobs import dataset_counts, map_kinds, write_outputs
from weightmaps.pipeline.reports import GenerateReport, LogFunction
from weightmaps.pipeline.workers import prepare_job
from weightmaps.prepare import PreparedMask
from weightmaps.recipe import MaskMaps, compute_maps_batch, compute_prepared

__all__ = ["device_results", "resolve_device"]


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


Item = tuple[Job, PreparedMask, Source]


def device_results(
    pool: Any,
    jobs: Sequence[Job],
    *,
    device: str,
    batch_size: int,
    log: LogFunction,
    report: GenerateReport,
) -> Iterator[tuple[Job, Written | Failed]]:
    """Yield (job, result) like ``pool.run(compute_job, jobs)``, computing on ``device``."""
    groups: dict[tuple, list[Item]] = {}
    writes: dict[Future, Job] = {}
    writers = ThreadPoolExecutor(max(1, pool.workers))

    def flush(key: tuple) -> None:
        items = groups.pop(key)
        first, _, source = items[0]
        results = _compute_batch(items, first, source, device, log, report)
        for (job, _, src), result in zip(items, results, strict=True):
            writes[writers.submit(write_outputs, job, src, result)] = job

    def finished(block: bool) -> Iterator[tuple[Job, Written | Failed]]:
        if not writes:
            return
        done, _ = wait(writes, timeout=None if block else 0, return_when=FIRST_COMPLETED)
        for future in done:
            yield writes.pop(future), future.result()

    try:
        for job, loaded in pool.run(prepare_job, jobs):
            if not isinstance(loaded, Prepared):  # a failure, or a volume's record
                yield job, loaded
                continue
            prepared, source = loaded.prepared, loaded.source
            key = (source.shape, source.spacing, job.kinds, prepared.mask_type == "semantic")
            groups.setdefault(key, []).append((job, prepared, source))
            if len(groups[key]) >= batch_size:
                flush(key)
            yield from finished(block=False)
            while len(writes) > 2 * batch_size:
                yield from finished(block=True)
        for key in list(groups):
            flush(key)
        while writes:
            yield from finished(block=True)
    finally:
        for future in writes:
            future.cancel()
        writers.shutdown(wait=True)


def _out_of_memory_errors() -> tuple[type[BaseException], ...]:
    import torch

    return (torch.cuda.OutOfMemoryError, MemoryError)


def _compute_batch(
    items: list[Item],
    job: Job,
    source: Source,
    device: str,
    log: LogFunction,
    report: GenerateReport,
) -> list[MaskMaps]:
    kinds = map_kinds(job)
    prepared = [p for _, p, _ in items]
    start = time.perf_counter()
    try:
        return compute_maps_batch(
            prepared,
            job.settings,
            kinds=kinds,
            spacing=source.spacing,
            dataset_counts=dataset_counts(job),
            device=device,
        )
    except _out_of_memory_errors():
        log(
            logging.WARNING,
            f"{device} ran out of memory on {len(items)} masks of shape "
            f"{source.shape}; computing them on the CPU",
        )
        return [
            compute_prepared(
                p,
                job.settings,
                kinds=kinds,
                spacing=source.spacing,
                dataset_counts=dataset_counts(job),
            )
            for p in prepared
        ]
    finally:
        report.device_seconds += time.perf_counter() - start
