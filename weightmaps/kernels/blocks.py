"""Blocks grown by a halo: the chunks a halo map computes in, and the block a task holds.

One definition for the chunked kernels (:mod:`weightmaps.kernels._dask_common`
computes with it) and for the limits of :mod:`weightmaps.io.volumes` (which
size the blocks from it before any graph is built), so the size that is
checked is the size that is computed. Needs no dask.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

__all__ = ["coarsen_chunks", "grown_span", "halo_chunks", "largest_grown_block"]


def coarsen_chunks(chunks: Sequence[int], depth: int) -> tuple[int, ...]:
    """Merge neighbouring chunks along one axis until each has >= ``depth`` pixels.

    A halo comes from the neighbouring chunk only, so no chunk may be thinner
    than the halo. Merging keeps every original boundary a boundary of the
    finer chunking, so going back to it afterwards only splits chunks.

    Examples
    --------
    >>> coarsen_chunks((3, 3, 3, 1), 5)
    (10,)
    >>> coarsen_chunks((4, 4, 4, 4), 3)
    (4, 4, 4, 4)
    """
    if depth <= 0:
        return tuple(chunks)
    merged: list[int] = []
    pending = 0
    for size in chunks:
        pending += size
        if pending >= depth:
            merged.append(pending)
            pending = 0
    if pending:  # a thin tail joins the last chunk (or is the only one)
        if merged:
            merged[-1] += pending
        else:
            merged.append(pending)
    return tuple(merged)


def halo_chunks(
    chunks: Sequence[Sequence[int]], depth: Sequence[int]
) -> tuple[tuple[tuple[int, ...], ...], tuple[int, ...]]:
    """The chunks a halo map computes in, and the halo each axis really gets.

    Chunks thinner than the halo are merged (:func:`coarsen_chunks`); an axis
    left in one chunk needs no halo at all (depth 0 there).

    Parameters
    ----------
    chunks : sequence of sequences of int
        Chunk lengths per axis (a dask array's ``chunks``).
    depth : sequence of int
        Halo wanted per axis, in pixels.

    Returns
    -------
    (chunks, depth)

    Examples
    --------
    >>> halo_chunks(((4, 4, 2), (10,)), (3, 3))
    (((4, 6), (10,)), (3, 0))
    """
    merged = tuple(coarsen_chunks(c, d) for c, d in zip(chunks, depth, strict=True))
    depth = tuple(d if len(c) > 1 else 0 for c, d in zip(merged, depth, strict=True))
    return merged, depth


def grown_span(bounds: Sequence[int], index: int, depth: int) -> tuple[int, int]:
    """(start, stop) of chunk ``index`` grown by ``depth`` on each side, clipped to
    the axis (``bounds``: the chunk boundaries, 0 first and the length last), as a
    halo with ``boundary="none"`` grows it: never padded beyond the volume edge.

    Examples
    --------
    >>> grown_span((0, 4, 8, 10), 0, 3), grown_span((0, 4, 8, 10), 1, 3)
    ((0, 7), (1, 10))
    """
    return max(bounds[index] - depth, 0), min(bounds[index + 1] + depth, bounds[-1])


def largest_grown_block(chunks: Sequence[Sequence[int]], depth: Sequence[int]) -> tuple[int, ...]:
    """The edges of the largest block a task of a halo map holds: per axis, the
    longest chunk after merging (:func:`halo_chunks`) grown by the halo on both
    sides and clipped at the volume edge (:func:`grown_span`).

    Blocks are products of their axes' spans, so the largest block is the
    product of each axis's longest span.

    Examples
    --------
    Chunks of 4 with a halo of 3: an inner chunk grows to 10, the edge ones
    to 7; chunks of 2 are merged into one of 6 first, which needs no halo.

    >>> largest_grown_block(((4, 4, 4, 4), (2, 2, 2)), (3, 3))
    (10, 6)
    """
    merged, depth = halo_chunks(chunks, depth)
    edges = []
    for c, d in zip(merged, depth, strict=True):
        bounds = tuple(itertools.accumulate(c, initial=0))
        spans = (grown_span(bounds, i, d) for i in range(len(c)))
        edges.append(max((stop - start for start, stop in spans), default=0))
    return tuple(edges)
