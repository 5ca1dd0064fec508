"""Where jobs run: worker processes on this machine, or a Dask cluster.

Both engines have one interface: ``with engine as pool: for job, result in
pool.run(function, jobs)``, results in completion order, closing the iterator
cancels the rest. The job functions here send a mask in memory or a volume to
its own job (:mod:`~weightmaps.pipeline.mask_jobs`,
:mod:`~weightmaps.pipeline.volume_jobs`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from weightmaps._shared.text import printable
from weightmaps.pipeline.jobs import Counted, Failed, Job, Prepared, Written
from weightmaps.pipeline.lock import die_with_parent
from weightmaps.pipeline.mask_jobs import compute_mask_job, count_mask_job, prepare_mask_job
from weightmaps.pipeline.reports import PipelineError

__all__ = [
    "LocalWorkers",
    "compile_timer",
    "compute_job",
    "count_job",
    "default_workers",
    "engine",
    "prepare_job",
    "volume_threads",
]


def count_job(job: Job) -> Counted | Failed:
    """Worker: a mask's type and class counts (the dataset-scope pass)."""
    if job.chunked:
        from weightmaps.pipeline.volume_jobs import count_volume_job

        return count_volume_job(job)
    return count_mask_job(job)


@contextlib.contextmanager
def compile_timer() -> Iterator[list[float]]:
    """``[seconds]`` numba spent compiling kernels within the block.

    Compiled kernels are cached on disk: a machine's first run compiles them
    (seconds, in every worker process), later runs load them. Only real
    compilation counts, not loading from the cache.
    """
    spent = [0.0]
    try:
        from numba.core import event
    except ImportError:  # pragma: no cover - numba is a dependency
        yield spent
        return

    def add(seconds: float) -> None:
        spent[0] += seconds

    with event.install_timer("numba:compile", add):
        yield spent


def compute_job(job: Job) -> Written | Failed:
    """Worker: a mask's maps, computed and written (with the seconds spent compiling)."""
    with compile_timer() as spent:
        if job.chunked:
            from weightmaps.pipeline.volume_jobs import compute_volume_job

            result = compute_volume_job(job)
        else:
            result = compute_mask_job(job)
    if isinstance(result, Written) and spent[0]:
        result = dataclasses.replace(result, compile_seconds=spent[0])
    return result


def prepare_job(job: Job) -> Prepared | Written | Failed:
    """Worker of the device path: the CPU part of a mask's maps.

    A volume is computed and written here, on the CPU: its record comes back.
    """
    if job.chunked:
        return compute_job(job)
    return prepare_mask_job(job)


def default_workers() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class LocalWorkers:
    """Runs jobs in worker processes (or in this process for one worker)."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> LocalWorkers:
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

    def run(self, function: Callable[[Job], Any], jobs: Sequence[Job]) -> Iterator[tuple[Job, Any]]:
        """Yield (job, result) as jobs finish. Closing the iterator cancels the rest."""
        if self._pool is None:
            for job in jobs:
                yield job, function(job)
            return
        pending: dict[Future, Job] = {}
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


def engine(scheduler: Any, workers: int) -> Any:
    """Local worker processes, or a Dask cluster with ``scheduler``."""
    if scheduler is None:
        return LocalWorkers(workers)
    from weightmaps.pipeline.cluster import DaskWorkers

    return _ClusterErrors(DaskWorkers(scheduler))


def volume_threads(scheduler: Any, workers: int) -> int | None:
    """Threads of one volume job: this machine's cores shared by the processes running jobs.

    None on a remote cluster (every core of the worker's machine: run one
    worker per machine there for volumes).
    """
    if scheduler is None:
        processes = workers
    elif isinstance(scheduler, str) and scheduler.startswith("local:"):
        processes = int(scheduler[len("local:") :])
    else:
        return None
    return max(1, default_workers() // processes)
