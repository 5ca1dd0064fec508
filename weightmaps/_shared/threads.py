"""How many threads the kernels of the calling thread may use, and running parts on them.

The compiled kernels release the GIL (``nogil``), so one large mask can be
split into independent parts (lines, groups of lines, blocks of a row) run
on threads. Who decides how many: the caller, for the calling thread only
(:func:`kernel_threads`). ``generate`` gives every job its share of the
cores (``--workers N`` processes on C cores: ``C // N`` threads each); a
chunked volume's Dask threads each run their blocks on one thread; a direct
call from user code runs on one thread unless it asks for more. So the
machine is never oversubscribed by threads inside threads.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

__all__ = [
    "kernel_threads",
    "map_parts",
    "run_parts",
    "split_range",
    "thread_count",
    "threads_for",
]

_local = threading.local()

PARALLEL_PIXELS = 1 << 17
"""Pixels from which a kernel pass is split across threads: below, starting
them costs more than they save."""


def thread_count() -> int:
    """Threads the kernels of the calling thread may use (1 unless set)."""
    return getattr(_local, "threads", 1)


def threads_for(pixels: int) -> int:
    """Threads for a pass over ``pixels``: :func:`thread_count`, or 1 for a small one."""
    threads = thread_count()
    return threads if threads > 1 and pixels >= PARALLEL_PIXELS else 1


@contextlib.contextmanager
def kernel_threads(threads: int | None) -> Iterator[None]:
    """Within the block, the calling thread's kernels use up to ``threads`` threads.

    ``None`` leaves the current setting.

    Examples
    --------
    >>> with kernel_threads(4):
    ...     thread_count()
    4
    >>> thread_count()
    1
    """
    if threads is None:
        yield
        return
    previous = thread_count()
    _local.threads = max(1, int(threads))
    try:
        yield
    finally:
        _local.threads = previous


def split_range(stop: int, parts: int, align: int = 1) -> list[tuple[int, int]]:
    """``range(stop)`` as up to ``parts`` contiguous pieces, inner cuts at multiples of ``align``.

    Examples
    --------
    >>> split_range(10, 3)
    [(0, 3), (3, 6), (6, 10)]
    >>> split_range(3000, 2, align=1024)
    [(0, 1024), (1024, 3000)]
    """
    units = -(-stop // align)
    parts = max(1, min(parts, units))
    cuts = [min(stop, (units * i // parts) * align) for i in range(parts + 1)]
    return [(lo, hi) for lo, hi in zip(cuts, cuts[1:], strict=False) if hi > lo]


def map_parts(
    work: Callable[[int, int], Any], stop: int, *, pixels: int | None = None
) -> list[Any]:
    """``[work(lo, hi) for (lo, hi) in split_range(stop, threads)]``, the parts on the
    kernel threads: as many as :func:`threads_for` gives ``pixels`` (default
    ``stop``) pixels, the results in the parts' order.

    Examples
    --------
    >>> map_parts(lambda lo, hi: hi - lo, 10)
    [10]
    """
    parts = split_range(stop, threads_for(stop if pixels is None else pixels))
    results: list[Any] = [None] * len(parts)

    def run(index: int) -> None:
        results[index] = work(*parts[index])

    run_parts(run, range(len(parts)), len(parts))
    return results


def run_parts(work: Callable[[Any], None], parts: Sequence[Any], threads: int) -> None:
    """``work(part)`` for every part, on up to ``threads`` threads (here when one).

    The calling thread runs the first part itself while threads of a pool kept
    for the process run the others: starting threads anew on every pass cost a
    2048^2 mask about 30 ms, a tenth of its U-Net map. The first error raised
    is raised here, once every part has stopped (they write shared arrays).
    """
    if threads <= 1 or len(parts) <= 1:
        for part in parts:
            work(part)
        return
    pool = _kernel_pool(min(threads, len(parts)) - 1)
    futures = [pool.submit(work, part) for part in parts[1:]]
    error: BaseException | None = None
    try:
        work(parts[0])
    except BaseException as exc:
        error = exc
        for future in futures:
            future.cancel()
    for future in futures:
        try:
            future.result()
        except CancelledError:
            pass
        except BaseException as exc:
            error = error or exc
    if error is not None:
        raise error


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _kernel_pool(workers: int) -> ThreadPoolExecutor:
    """The process's pool of kernel threads, grown to at least ``workers``."""
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < workers:
            previous = _pool
            _pool = ThreadPoolExecutor(workers, thread_name_prefix="weightmaps-kernel")
            if previous is not None:
                previous.shutdown(wait=False)
        return _pool


def _forget_pool() -> None:
    """A forked child has none of its parent's threads: it starts its own pool."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)
