"""Compiled passes of the two-nearest-distinct-instance transform.

Every pass works on a 3-D view ``(outer, n, inner)`` of the label volume in
which axis 1 is the axis being processed, so one kernel serves any number of
dimensions. For every pixel a pass keeps the two nearest sites that carry
*different* labels: squared distance so far (``v1 <= v2``) and label
(``l1 != l2``; ``-1`` means "no site below the cap").

Passes along an axis that is not the contiguous one come in a second form
that merges a whole row of pixels at a time, vectorized (``*_rows``, at the
end); both give the same bytes.

Why this is exact (see ``weightmaps.kernels.nearest``): the nearest and the
second-nearest distinct site are separable across axes like the plain
Euclidean distance transform, and every partial distance of a pair that can
matter is below the cap, so capping never drops it.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

NO_LABEL = -1


@nb.njit(cache=True, inline="always", error_model="numpy")
def _keep_two(v, lab, v1, l1, v2, l2):
    """Offer site (v, lab) to the running pair; keep the two nearest distinct labels.

    Written as selects rather than nested branches: which case applies is
    data-dependent and mispredicted branches dominated the cost.
    """
    same = lab == l1
    nearer = v < v1
    new_v1 = v if nearer else v1  # if same, lab == l1, so this is min either way
    new_l1 = lab if nearer else l1
    if same:
        new_v2 = v2
        new_l2 = l2
    else:
        new_v2 = v1 if nearer else min(v, v2)
        new_l2 = l1 if nearer else (lab if v < v2 else l2)
    return new_v1, new_l1, new_v2, new_l2


@nb.njit(cache=True, inline="always", error_model="numpy")
def _passed_site(lab, i, p1, q1, p2, q2):
    """A scan passes pixel i: update the nearest site behind (p1, label q1) and
    the nearest behind it with another label (p2, q2)."""
    if lab != 0:
        if lab != q1:
            p2 = p1
            q2 = q1
            q1 = lab
        p1 = i
    return p1, q1, p2, q2


@nb.njit(cache=True, nogil=True, error_model="numpy")
def scan_pass(labels, out_v1, out_l1, out_v2, out_l2, step2, cap):
    """First pass, from the label image itself: two linear scans per line.

    Scanning one way, the nearest site behind the current pixel and the
    nearest one behind it with another label are all a pixel needs from that
    side; merging both sides gives the pair along the line.
    """
    n_outer, n, n_inner = labels.shape
    for a in range(n_outer):
        for c in range(n_inner):
            p1 = -1
            q1 = NO_LABEL
            p2 = -1
            q2 = NO_LABEL
            for i in range(n):
                p1, q1, p2, q2 = _passed_site(labels[a, i, c], i, p1, q1, p2, q2)
                v1 = cap
                l1 = NO_LABEL
                v2 = cap
                l2 = NO_LABEL
                if q1 != NO_LABEL:
                    d = (i - p1) * (i - p1) * step2
                    if d < cap:
                        v1 = d
                        l1 = q1
                        if q2 != NO_LABEL:
                            d = (i - p2) * (i - p2) * step2
                            if d < cap:
                                v2 = d
                                l2 = q2
                out_v1[a, i, c] = v1
                out_l1[a, i, c] = l1
                out_v2[a, i, c] = v2
                out_l2[a, i, c] = l2
            p1 = -1
            q1 = NO_LABEL
            p2 = -1
            q2 = NO_LABEL
            for i in range(n - 1, -1, -1):
                p1, q1, p2, q2 = _passed_site(labels[a, i, c], i, p1, q1, p2, q2)
                if q1 == NO_LABEL:
                    continue
                d = (p1 - i) * (p1 - i) * step2
                if d >= cap:
                    continue
                v1, l1, v2, l2 = _keep_two(
                    d, q1, out_v1[a, i, c], out_l1[a, i, c], out_v2[a, i, c], out_l2[a, i, c]
                )
                if q2 != NO_LABEL:
                    d = (p2 - i) * (p2 - i) * step2
                    if d < cap:
                        v1, l1, v2, l2 = _keep_two(d, q2, v1, l1, v2, l2)
                out_v1[a, i, c] = v1
                out_l1[a, i, c] = l1
                out_v2[a, i, c] = v2
                out_l2[a, i, c] = l2


@nb.njit(cache=True, inline="always", error_model="numpy")
def _window_pair(iv1, il1, iv2, il2, a, i, c, step2, sum_cut):
    """Best pair for pixel (a, i, c) over the lines at offsets 0, +-1, +-2, ...

    A line at offset o adds at least o^2 * step2, so the search stops as soon
    as that reaches the second distance kept: nothing further can enter.
    It also stops once ``d1 + d2`` is sure to end at or above ``sum_cut``
    (every later site is at least ``o * sqrt(step2)`` away, so the final sum is
    at least ``min(d1, o) + o``); the pair returned then already sums to more.
    """
    n = iv1.shape[1]
    v1 = iv1[a, i, c]
    l1 = il1[a, i, c]
    v2 = iv2[a, i, c]
    l2 = il2[a, i, c]
    step = math.sqrt(step2)
    o = 1
    while True:
        off = o * o * step2
        if off >= v2:
            break
        reach = o * step
        # min(d1, reach) + reach >= sum_cut, without a square root per step.
        if 2.0 * reach >= sum_cut:
            rest = sum_cut - reach
            if rest <= 0.0 or v1 >= rest * rest:
                break
        lo = i - o
        hi = i + o
        if lo < 0 and hi >= n:
            break
        # A missing site carries the cap as its distance and v2 never
        # exceeds the cap, so "t < v2" also rules out missing sites; and a
        # line whose nearest cannot enter cannot offer its second either.
        # The two sides stay written out: a shared inlined helper measured 7x
        # slower (numba did not keep the loop tight).
        if lo >= 0:
            t = iv1[a, lo, c] + off
            if t < v2:
                v1, l1, v2, l2 = _keep_two(t, il1[a, lo, c], v1, l1, v2, l2)
                t = iv2[a, lo, c] + off
                if t < v2:
                    v1, l1, v2, l2 = _keep_two(t, il2[a, lo, c], v1, l1, v2, l2)
        if hi < n:
            t = iv1[a, hi, c] + off
            if t < v2:
                v1, l1, v2, l2 = _keep_two(t, il1[a, hi, c], v1, l1, v2, l2)
                t = iv2[a, hi, c] + off
                if t < v2:
                    v1, l1, v2, l2 = _keep_two(t, il2[a, hi, c], v1, l1, v2, l2)
        o += 1
    return v1, l1, v2, l2


@nb.njit(cache=True, nogil=True, error_model="numpy")
def window_pass(iv1, il1, iv2, il2, ov1, ol1, ov2, ol2, step2):
    """A later pass: merge the pairs of the lines within the cap along axis 1."""
    n_outer, n, n_inner = iv1.shape
    for a in range(n_outer):
        for i in range(n):
            for c in range(n_inner):
                v1, l1, v2, l2 = _window_pair(iv1, il1, iv2, il2, a, i, c, step2, math.inf)
                ov1[a, i, c] = v1
                ol1[a, i, c] = l1
                ov2[a, i, c] = v2
                ol2[a, i, c] = l2


@nb.njit(cache=True, nogil=True, error_model="numpy")
def border_pass(labels, iv1, il1, iv2, il2, out, start, stop, step2, w0, inv_two_sigma2, cutoff):
    """Last pass fused with the border term, on background pixels only.

    Adds ``w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` to ``out`` where
    ``d1 + d2 < cutoff``, for lines ``start <= i < stop`` along axis 1 (the
    others are the halo of a slab). Fusing saves the four output arrays of a
    plain pass.
    """
    n_outer, n, n_inner = iv1.shape
    for a in range(n_outer):
        for i in range(start, stop):
            for c in range(n_inner):
                if labels[a, i, c] != 0:
                    continue
                v1, l1, v2, l2 = _window_pair(iv1, il1, iv2, il2, a, i, c, step2, cutoff)
                if l2 != NO_LABEL:
                    s = math.sqrt(v1) + math.sqrt(v2)
                    if s < cutoff:
                        out[a, i, c] += w0 * math.exp(-s * s * inv_two_sigma2)


# ---------------------------------------------------------------------------
# Passes vectorized across the contiguous axis.
#
# The passes above walk one pixel at a time and stop each pixel's search as
# soon as nothing further can enter: they read few lines, but every step is
# a data-dependent branch. When the processed axis is not the contiguous one,
# a whole row of pixels (axis 2 of the view) can instead take in the line at
# offset o at once, with selects instead of branches, which the compiler turns
# into SIMD; the row stops when none of its pixels can still change. A row
# reads more lines than its pixels would one by one, but each costs a fraction.
#
# The running pairs of a row live in scratch arrays of the accumulator dtype:
# float32 when every squared distance the passes form is exact in float32,
# else float64, which rounds exactly as the pixel-at-a-time passes do (their
# sums are float64), so both give the same bytes either way.

# Pixels of a row taken in together; the row stops when none can change.
# Shorter rows would stop sooner, but every merge of a line into a row has a
# fixed cost (loop set-up, ~30-45 ns measured) that outweighed the saving at
# 64 and 128 pixels and broke even at 256.
ROW = 512
# Pixels along the contiguous axis whose lines stay in cache while a window
# of lines around every row of them is merged in (a MB for 64 lines).
BLOCK = 1024


@nb.njit(cache=True, inline="always", error_model="numpy")
def _merge_pairs(t1, m1, t2, m2, v1, l1, v2, l2):
    """The two nearest distinct labels of two pairs, without branches (so that a
    loop of it vectorizes): ``(t1, m1, t2, m2)`` merged into ``(v1, l1, v2, l2)``.

    The first is the nearer of ``v1`` and ``t1``. The second is the nearest
    entry with another label: if ``t1`` comes first, the better of ``t2`` and
    the first entry of the other pair not labelled ``m1``; else the better of
    ``v2`` and the first entry of this pair not labelled ``l1``.
    """
    same = m1 == l1
    nearer = t1 < v1
    other_v = v2 if same else v1
    other_l = l2 if same else l1
    this_v = t2 if same else t1
    this_l = m2 if same else m1
    x = other_v if nearer else v2
    xl = other_l if nearer else l2
    y = t2 if nearer else this_v
    yl = m2 if nearer else this_l
    return (
        t1 if nearer else v1,
        m1 if nearer else l1,
        min(x, y),
        yl if y < x else xl,
    )


# _merge_line, _merge_two_lines and _search_row are compiled on their own, not
# inlined (inline="always") into each pass: a fresh install's first 3-D mask
# compiled in 12.5 s instead of 19 s, the first 2-D one in 9 s instead of 11 s,
# and bench_edt's figures stayed within their run-to-run spread.
@nb.njit(cache=True, error_model="numpy")
def _merge_line(av1, al1, av2, al2, w, iv1, il1, iv2, il2, a, j, c0, off, next_off, limit):
    """Merge line ``j`` (its pairs plus ``off``) into the row's pairs.

    Returns whether a pixel of the row may still change at the next offset:
    ``v2 > next_off`` (a site there could still enter) and ``v1 < limit``.
    """
    active = False
    # Unsigned indices: numba then drops its negative-index wraparound, which
    # would otherwise turn these contiguous loads into gathers.
    for k in range(np.uint64(w)):
        c = np.uint64(c0) + k
        v1, l1, v2, l2 = _merge_pairs(
            iv1[a, j, c] + off,
            il1[a, j, c],
            iv2[a, j, c] + off,
            il2[a, j, c],
            av1[k],
            al1[k],
            av2[k],
            al2[k],
        )
        av1[k] = v1
        al1[k] = l1
        av2[k] = v2
        al2[k] = l2
        active |= (v2 > next_off) & (v1 < limit)
    return active


@nb.njit(cache=True, error_model="numpy")
def _merge_two_lines(
    av1, al1, av2, al2, w, iv1, il1, iv2, il2, a, lo, hi, c0, off, next_off, limit
):
    """``_merge_line`` for the lines ``lo`` and ``hi`` at the same offset, in one sweep."""
    active = False
    for k in range(np.uint64(w)):
        c = np.uint64(c0) + k
        v1, l1, v2, l2 = _merge_pairs(
            iv1[a, lo, c] + off,
            il1[a, lo, c],
            iv2[a, lo, c] + off,
            il2[a, lo, c],
            av1[k],
            al1[k],
            av2[k],
            al2[k],
        )
        v1, l1, v2, l2 = _merge_pairs(
            iv1[a, hi, c] + off,
            il1[a, hi, c],
            iv2[a, hi, c] + off,
            il2[a, hi, c],
            v1,
            l1,
            v2,
            l2,
        )
        av1[k] = v1
        al1[k] = l1
        av2[k] = v2
        al2[k] = l2
        active |= (v2 > next_off) & (v1 < limit)
    return active


@nb.njit(cache=True, inline="always", error_model="numpy")
def _sum_limit(reach, cutoff):
    """Bound on ``v1`` below which a pixel can still end with ``d1 + d2 < cutoff``
    when every site still to come lies ``reach`` or further (``_window_pair``):
    none while ``2 reach < cutoff``, else ``(cutoff - reach)^2`` (rounded up)."""
    if 2.0 * reach < cutoff:
        return math.inf
    rest = cutoff - reach
    if rest <= 0.0:
        return -1.0
    return rest * rest * (1.0 + 1e-6)


@nb.njit(cache=True, inline="always", error_model="numpy")
def _still_active(av1, av2, w, next_off, limit):
    """``_merge_line``'s answer when no line was merged."""
    active = False
    for k in range(np.uint64(w)):
        active |= (av2[k] > next_off) & (av1[k] < limit)
    return active


@nb.njit(cache=True, error_model="numpy")
def _search_row(
    av1, al1, av2, al2, w, iv1, il1, iv2, il2, a, i, c0, sites, active, step2, cutoff, scalars
):
    """Merge the lines at offsets 1, 2, ... around line ``i`` into the pairs of
    its pixels ``c0 .. c0 + w``, while any of them may still change.

    ``cutoff`` (inf for none) is the border pass's bound on ``d1 + d2``.
    Pixels that have stopped are merged further with the others; that only
    brings their pair closer to the exact one, and a pixel stopped by the
    cutoff has a pair summing to at least ``cutoff`` either way. ``sites[j]``
    is False where line ``j`` has no site below the cap over these pixels:
    merging it would change nothing, so it is skipped (in sparse volumes most
    lines of the first window pass are empty). ``scalars`` (3 items of the
    accumulator dtype) casts the offsets to that dtype.
    """
    n = iv1.shape[1]
    step = math.sqrt(step2)
    o = 1
    while active:
        lo = i - o
        hi = i + o
        if lo < 0 and hi >= n:
            break
        scalars[0] = o * o * step2
        scalars[1] = (o + 1) * (o + 1) * step2
        scalars[2] = _sum_limit((o + 1) * step, cutoff)
        off, next_off, limit = scalars[0], scalars[1], scalars[2]
        use_lo = lo >= 0 and sites[lo]
        use_hi = hi < n and sites[hi]
        if use_lo and use_hi:
            active = _merge_two_lines(
                av1, al1, av2, al2, w, iv1, il1, iv2, il2, a, lo, hi, c0, off, next_off, limit
            )
        elif use_lo:
            active = _merge_line(
                av1, al1, av2, al2, w, iv1, il1, iv2, il2, a, lo, c0, off, next_off, limit
            )
        elif use_hi:
            active = _merge_line(
                av1, al1, av2, al2, w, iv1, il1, iv2, il2, a, hi, c0, off, next_off, limit
            )
        else:
            active = _still_active(av1, av2, w, next_off, limit)
        o += 1


@nb.njit(cache=True, inline="always", error_model="numpy")
def _lines_with_sites(il1, a, b0, b1, sites):
    """``sites[j, t]``: line ``j`` has a site over row ``t`` of the block ``b0 .. b1``."""
    for j in range(il1.shape[1]):
        for t, c0 in enumerate(range(b0, b1, ROW)):
            w = min(ROW, b1 - c0)
            found = False
            for k in range(np.uint64(w)):
                found |= il1[a, j, np.uint64(c0) + k] != NO_LABEL
            sites[j, t] = found


@nb.njit(cache=True, nogil=True, error_model="numpy")
def window_pass_rows(iv1, il1, iv2, il2, ov1, ol1, ov2, ol2, step2, acc):
    """``window_pass`` a row at a time; ``acc`` (empty) gives the accumulator dtype."""
    n_outer, n, n_inner = iv1.shape
    av1 = np.empty(ROW, acc.dtype)
    av2 = np.empty(ROW, acc.dtype)
    al1 = np.empty(ROW, il1.dtype)
    al2 = np.empty(ROW, il1.dtype)
    scalars = np.empty(3, acc.dtype)
    sites = np.empty((n, (BLOCK + ROW - 1) // ROW), np.bool_)
    for a in range(n_outer):
        for b0 in range(0, n_inner, BLOCK):
            b1 = min(b0 + BLOCK, n_inner)
            _lines_with_sites(il1, a, b0, b1, sites)
            for i in range(n):
                for t, c0 in enumerate(range(b0, b1, ROW)):
                    w = min(ROW, b1 - c0)
                    active = np.bool_(False)
                    for k in range(np.uint64(w)):
                        c = np.uint64(c0) + k
                        av1[k] = iv1[a, i, c]
                        al1[k] = il1[a, i, c]
                        av2[k] = iv2[a, i, c]
                        al2[k] = il2[a, i, c]
                        active |= av2[k] > step2
                    _search_row(
                        av1,
                        al1,
                        av2,
                        al2,
                        w,
                        iv1,
                        il1,
                        iv2,
                        il2,
                        a,
                        i,
                        c0,
                        sites[:, t],
                        active,
                        step2,
                        math.inf,
                        scalars,
                    )
                    for k in range(np.uint64(w)):
                        c = np.uint64(c0) + k
                        ov1[a, i, c] = av1[k]
                        ol1[a, i, c] = al1[k]
                        ov2[a, i, c] = av2[k]
                        ol2[a, i, c] = al2[k]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def border_pass_rows(
    labels, iv1, il1, iv2, il2, out, start, stop, step2, w0, inv_two_sigma2, cutoff, acc
):
    """``border_pass`` a row at a time; ``acc`` (empty) gives the accumulator dtype."""
    border_pass_rows_part(
        labels, iv1, il1, iv2, il2, out, start, stop, step2, w0, inv_two_sigma2, cutoff, acc,
        0, iv1.shape[2],
    )  # fmt: skip


@nb.njit(cache=True, nogil=True, error_model="numpy")
def border_pass_rows_part(
    labels, iv1, il1, iv2, il2, out, start, stop, step2, w0, inv_two_sigma2, cutoff, acc,
    c_lo, c_hi,
):  # fmt: skip
    """``border_pass_rows`` on the pixels ``c_lo <= c < c_hi`` along axis 2 only.

    Threads split a pass at multiples of ``BLOCK``: every row then holds the
    pixels it holds in one call over the whole, so the bytes are the same.
    """
    n_outer, n, _ = iv1.shape
    av1 = np.empty(ROW, acc.dtype)
    av2 = np.empty(ROW, acc.dtype)
    al1 = np.empty(ROW, il1.dtype)
    al2 = np.empty(ROW, il1.dtype)
    scalars = np.empty(3, acc.dtype)
    sites = np.empty((n, (BLOCK + ROW - 1) // ROW), np.bool_)
    first_limit = _sum_limit(math.sqrt(step2), cutoff)
    for a in range(n_outer):
        for b0 in range(c_lo, c_hi, BLOCK):
            b1 = min(b0 + BLOCK, c_hi)
            _lines_with_sites(il1, a, b0, b1, sites)
            for i in range(start, stop):
                for t, c0 in enumerate(range(b0, b1, ROW)):
                    w = min(ROW, b1 - c0)
                    active = np.bool_(False)
                    for k in range(np.uint64(w)):
                        c = np.uint64(c0) + k
                        # An instance pixel gets no term: the pair (0, 0) never
                        # changes and never counts as active.
                        inside = labels[a, i, c] != 0
                        av1[k] = 0.0 if inside else iv1[a, i, c]
                        al1[k] = il1[a, i, c]
                        av2[k] = 0.0 if inside else iv2[a, i, c]
                        al2[k] = NO_LABEL if inside else il2[a, i, c]
                        active |= (av2[k] > step2) & (av1[k] < first_limit)
                    _search_row(
                        av1,
                        al1,
                        av2,
                        al2,
                        w,
                        iv1,
                        il1,
                        iv2,
                        il2,
                        a,
                        i,
                        c0,
                        sites[:, t],
                        active,
                        step2,
                        cutoff,
                        scalars,
                    )
                    for k in range(np.uint64(w)):
                        if al2[k] != NO_LABEL:
                            s = math.sqrt(np.float64(av1[k])) + math.sqrt(np.float64(av2[k]))
                            if s < cutoff:
                                c = np.uint64(c0) + k
                                out[a, i, c] += w0 * math.exp(-s * s * inv_two_sigma2)
