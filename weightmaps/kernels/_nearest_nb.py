"""Compiled passes of the two-nearest-distinct-instance transform.

Every pass works on a 3-D view ``(outer, n, inner)`` of the label volume in
which axis 1 is the axis being processed, so one kernel serves any number of
dimensions. For every pixel a pass keeps the two nearest sites that carry
*different* labels: squared distance so far (``v1 <= v2``) and label
(``l1 != l2``; ``-1`` means "no site below the cap").

Why this is exact (see ``weightmaps.kernels.nearest``): the nearest and the
second-nearest distinct site are separable across axes like the plain
Euclidean distance transform, and every partial distance of a pair that can
matter is below the cap, so capping never drops it.
"""

from __future__ import annotations

import math

import numba as nb

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
