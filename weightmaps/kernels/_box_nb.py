"""Compiled running-sum box filter: the cost does not depend on the width."""

from __future__ import annotations

import numba as nb
import numpy as np


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _box_sum_lines(src, dst, half):
    """The contiguous-axis case: one scalar running sum per line."""
    n_outer, n, _ = src.shape
    for a in range(n_outer):
        line = src[a, :, 0]
        out = dst[a, :, 0]
        acc = 0.0
        for i in range(min(half, n)):
            acc += line[i]
        # The window [i - half, i + half] clipped to the line; the loop is
        # split where clipping starts and stops so the hot middle has no tests.
        head = min(half + 1, n)
        for i in range(head):
            if i + half < n:
                acc += line[i + half]
            out[i] = acc
        middle_end = n - half
        for i in range(head, middle_end):
            acc += line[i + half] - line[i - half - 1]
            out[i] = acc
        for i in range(max(head, middle_end), n):
            acc -= line[i - half - 1]
            out[i] = acc


@nb.njit(cache=True, nogil=True, error_model="numpy")
def box_sum_pass(src, dst, k):
    """``dst[a, i, c] = sum(src[a, i - k//2 : i + k//2 + 1, c])``, zero outside.

    Works on ``(outer, n, inner)`` views so the running sums of a whole row of
    lines advance together over contiguous memory; accumulates in float64.
    """
    n_outer, n, n_inner = src.shape
    half = k // 2
    if n_inner == 1:
        _box_sum_lines(src, dst, half)
        return
    acc = np.zeros(n_inner, np.float64)
    for a in range(n_outer):
        acc[:] = 0.0
        # Prime with the first half window, then slide: add the row entering,
        # drop the row leaving.
        for i in range(min(half, n)):
            for c in range(n_inner):
                acc[c] += src[a, i, c]
        for i in range(n):
            enter = i + half
            leave = i - half - 1
            if enter < n:
                for c in range(n_inner):
                    acc[c] += src[a, enter, c]
            if leave >= 0:
                for c in range(n_inner):
                    acc[c] -= src[a, leave, c]
            for c in range(n_inner):
                dst[a, i, c] = acc[c]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def box_sum_pass_part(src, dst, k, c_lo, c_hi):
    """``box_sum_pass`` on the lines ``c_lo <= c < c_hi`` along axis 2 only (for
    threads that split one outer line); the same sums in the same order."""
    n_outer, n, _ = src.shape
    half = k // 2
    width = c_hi - c_lo
    acc = np.zeros(width, np.float64)
    # Unsigned indices: numba then drops its negative-index wraparound, which
    # kept these loops from vectorizing (the part ran at half the speed of
    # box_sum_pass per pixel).
    lo = np.uint64(c_lo)
    for a in range(n_outer):
        acc[:] = 0.0
        for i in range(min(half, n)):
            for c in range(np.uint64(width)):
                acc[c] += src[a, i, lo + c]
        for i in range(n):
            enter = i + half
            leave = i - half - 1
            if enter < n:
                for c in range(np.uint64(width)):
                    acc[c] += src[a, enter, lo + c]
            if leave >= 0:
                for c in range(np.uint64(width)):
                    acc[c] -= src[a, leave, lo + c]
            for c in range(np.uint64(width)):
                dst[a, i, lo + c] = acc[c]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def edge_term(box_sum, m, scale, out):
    """``out = max(out, |box_sum * scale - m|)`` elementwise, on flat arrays."""
    for i in range(m.size):
        d = abs(box_sum[i] * scale - m[i])
        if d > out[i]:
            out[i] = d


@nb.njit(cache=True, nogil=True, error_model="numpy")
def edge_weights_in_place(box_sum, m, scale, alpha):
    """``box_sum = 1 + alpha * |box_sum * scale - m|``: no temporaries for one class."""
    for i in range(m.size):
        box_sum[i] = 1.0 + alpha * abs(box_sum[i] * scale - m[i])
