"""Run ``generate``'s per-mask jobs on a Dask cluster (``--scheduler``).

Each job reads one mask, computes, writes its maps atomically into OUT (a
filesystem every worker reaches) and returns its manifest record; only the
client writes the manifest and holds the lock, as results arrive. Dask
reruns the jobs of a worker that is lost; a bad mask is not an exception (the
job returns its reason), so it is reported once and never retried.

Needs the ``[dask]`` extra (``pip install weightmaps[dask]``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from weightmaps.pipeline.jobs import Failed

__all__ = ["DaskWorkers", "check_scheduler"]

_LARGEST_BATCH = 4

# Dask's nannies start workers with MALLOC_TRIM_THRESHOLD_=65536, which also
# fixes glibc's mmap threshold: every map-sized array is then a fresh mmap,
# and a mask's job spends a fifth of its time in page faults (5300 per
# 512x512 mask instead of 2). Our jobs free everything they allocate, so the
# memory glibc keeps is bounded by one job's arrays.
_KEEP_FREED_MEMORY = {"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}
# Ctrl-C reaches every process of the terminal's process group: local workers
# would each print a KeyboardInterrupt traceback while the client shuts them
# down anyway. They run dask_setup below as they start (restarts included).
_WORKERS_IGNORE_CTRL_C = {"distributed.worker.preload": ["weightmaps.pipeline.cluster"]}


def dask_setup(worker: Any) -> None:
    """Dask worker preload hook: local workers leave Ctrl-C and shutdown to the client."""
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.getLogger("distributed.worker").addFilter(_scheduler_gone)


def _scheduler_gone(record: logging.LogRecord) -> bool:
    """False for a local worker's heartbeat that found the scheduler closed.

    The scheduler of ``local:N`` lives in the client's process and closes
    when the run ends (Ctrl-C included); a worker whose heartbeat falls in
    between logs it as an error with a traceback, though the client is
    closing it anyway. Seen in a Ctrl-C test and at the end of bench_scale.
    """
    return not str(record.msg).startswith("Failed to communicate with scheduler during heartbeat")


def check_scheduler(scheduler: object) -> None:
    """Refuse a scheduler address this module cannot use (ValueError).

    Accepted: ``"local:N"`` (a LocalCluster of N worker processes), an
    address with a protocol (``"tcp://host:8786"``), or a
    ``distributed.Client``.
    """
    if not isinstance(scheduler, str):
        if type(scheduler).__name__ != "Client":
            raise ValueError(f"scheduler must be an address or a distributed.Client: {scheduler!r}")
        return
    if scheduler.startswith("local:"):
        count = scheduler[len("local:") :]
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"scheduler {scheduler!r}: local:N needs N >= 1 workers")
    elif "://" not in scheduler:
        raise ValueError(f"scheduler {scheduler!r}: use local:N or an address like tcp://host:8786")
    try:
        import distributed  # noqa: F401
    except ImportError as exc:
        raise ValueError(
            "--scheduler needs the dask extra: pip install 'weightmaps[dask]'"
        ) from exc


class DaskWorkers:
    """The job runner of ``generate`` on a Dask cluster (same interface as the local one)."""

    def __init__(self, scheduler: Any) -> None:
        check_scheduler(scheduler)
        self.scheduler = scheduler
        self.client: Any = None
        self._cluster: Any = None
        self._own_client = False
        self.workers = 1

    def __enter__(self) -> DaskWorkers:
        import dask
        from distributed import Client, LocalCluster

        if isinstance(self.scheduler, str) and self.scheduler.startswith("local:"):
            with dask.config.set({**_KEEP_FREED_MEMORY, **_WORKERS_IGNORE_CTRL_C}):
                self._cluster = LocalCluster(
                    n_workers=int(self.scheduler[len("local:") :]),
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=":0",  # any free port: never collide with a running one
                    silence_logs=logging.ERROR,
                )
            self.client = Client(self._cluster)
            self._own_client = True
        elif isinstance(self.scheduler, str):
            try:
                self.client = Client(self.scheduler, timeout="30s")
            except OSError as exc:
                raise ConnectionError(f"cannot reach scheduler {self.scheduler}: {exc}") from exc
            self._own_client = True
        else:
            self.client = self.scheduler
        threads = self.client.nthreads()
        self.workers = max(1, sum(threads.values()))
        return self

    def __exit__(self, *exc_info: object) -> None:
        if isinstance(exc_info[1], KeyboardInterrupt) and self._cluster is not None:
            # Closing a local cluster with tasks in flight makes distributed log
            # the cancelled comms with tracebacks; the run has said it stopped.
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if self._own_client and self.client is not None:
            self.client.close()
        if self._cluster is not None:
            self._cluster.close()

    def run(self, function: Callable[[Any], Any], jobs: Sequence[Any]) -> Iterator[tuple[Any, Any]]:
        """Yield (job, result) as jobs finish. Closing the iterator cancels the rest.

        Small jobs travel in batches (see :func:`batches`): a Dask task costs
        a few milliseconds of scheduler, client and worker time, a tenth of a
        512x512 mask's job.
        """
        from distributed import as_completed

        todo = iter(batches(jobs, self.workers))
        alone: list[list[Any]] = []  # the jobs of a failed batch, retried one per task
        pending: dict[Any, list[Any]] = {}
        finished = as_completed()

        def submit_next() -> None:
            batch = alone.pop() if alone else next(todo, None)
            if batch is not None:
                future = self.client.submit(_run_batch, function, batch, pure=False)
                pending[future] = batch
                finished.add(future)

        try:
            # A bounded window keeps the scheduler's task list short for any
            # number of masks, while every worker always has work queued.
            for _ in range(2 * self.workers):
                submit_next()
            for future in finished:
                batch = pending.pop(future)
                try:
                    results = future.result()
                except Exception as exc:  # a job that kept killing its workers
                    if len(batch) > 1:  # find which one: its batch-mates are fine
                        alone.extend([job] for job in reversed(batch))
                        submit_next()
                        continue
                    results = [Failed(f"failed on the cluster: {type(exc).__name__}: {exc}")]
                submit_next()
                yield from zip(batch, results, strict=True)
        finally:
            if pending:
                self.client.cancel(list(pending))


def _run_batch(function: Callable[[Any], Any], batch: list[Any]) -> list[Any]:
    return [function(job) for job in batch]


def batches(jobs: Sequence[Any], workers: int, largest: int = _LARGEST_BATCH) -> Iterator[list]:
    """Group jobs into Dask tasks: up to ``largest`` per task, and at least 8 tasks a worker.

    A chunked volume's job (``job.chunked``) is a task of its own.

    Examples
    --------
    >>> [len(b) for b in batches(list(range(10)), workers=1)]
    [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    >>> [len(b) for b in batches(list(range(70)), workers=2, largest=4)]
    [4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 4, 2]
    """
    size = max(1, min(largest, len(jobs) // (8 * workers)))
    batch: list[Any] = []
    for job in jobs:
        if getattr(job, "chunked", False):
            yield [job]
            continue
        batch.append(job)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch
