"""Counting ids and painting them through a table, split over the kernel threads.

Counting runs compiled and ``take`` releases the GIL, but each call runs on
one core; on a large mask the calling thread's kernel threads
(:mod:`weightmaps._shared.threads`) each take a contiguous part. The results
are those of one call of ``np.bincount`` or ``np.take`` on the whole.
"""

from __future__ import annotations

import numpy as np

from weightmaps._shared.threads import map_parts

__all__ = ["count_ids", "paint_ids"]


def count_ids(values: np.ndarray, minlength: int = 0) -> np.ndarray:
    """``np.bincount(values.ravel(), minlength=minlength)`` for non-negative integer ids.

    Integer ids are counted a run at a time by a compiled loop
    (:mod:`weightmaps._shared._count_nb`), each thread its own part; the
    counts are those of ``np.bincount``, also in length and dtype.

    Examples
    --------
    >>> count_ids(np.array([[0, 2], [2, 2]], np.uint8)).tolist()
    [1, 0, 3]
    """
    flat = np.asarray(values).ravel()
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    if flat.dtype.kind not in "iu" or flat.size == 0:
        return np.bincount(flat, minlength=minlength)
    from weightmaps._shared._count_nb import count_runs

    def count(lo: int, hi: int) -> np.ndarray:
        part = flat[lo:hi]
        if flat.dtype.kind == "i" and part.min() < 0:
            raise ValueError("ids must be non-negative")
        counts = np.zeros(max(int(part.max()) + 1, minlength), np.intp)
        count_runs(part, counts)
        return counts

    counts = map_parts(count, flat.size)
    total = max(counts, key=len)
    for part_counts in counts:
        if part_counts is not total:
            total[: part_counts.size] += part_counts
    return total


def paint_ids(table: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """``table[ids]``: every id replaced by its entry of the 1-D ``table``.

    Every id must index ``table`` (not checked: they are clipped, which writes
    straight into the result and ran 1.7x faster than checking).

    Examples
    --------
    >>> paint_ids(np.array([0.5, 2.0], np.float32), np.array([[0, 1], [1, 1]])).tolist()
    [[0.5, 2.0], [2.0, 2.0]]
    """
    ids = np.asarray(ids)
    out = np.empty(ids.shape, table.dtype)
    flat_ids, flat_out = ids.reshape(-1), out.reshape(-1)
    map_parts(
        lambda lo, hi: np.take(table, flat_ids[lo:hi], out=flat_out[lo:hi], mode="clip"),
        flat_ids.size,
    )
    return out
