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
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

__all__ = ["kernel_threads", "run_parts", "split_range", "thread_count", "threads_for"]

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


def run_parts(work: Callable[[Any], None], parts: Sequence[Any], threads: int) -> None:
    """``work(part)`` for every part, on up to ``threads`` threads (here when one)."""
    if threads <= 1 or len(parts) <= 1:
        for part in parts:
            work(part)
        return
    with ThreadPoolExecutor(min(threads, len(parts))) as pool:
        for future in [pool.submit(work, part) for part in parts]:
            future.result()
