"""Masks whose instance ids sit at the ends of the integer range.

Only which pixels share an id matters, so a mask with uint64 ids near 2**63
and 2**64 - 1 must give exactly the maps of the same mask numbered 1..n in
the ids' order. The ids are chosen to break naive casts: 2**64 - 1 is -1 as
int64 (the kernels' "no label"), 2**63 is the most negative int64, 2**64 - 2
and 2**64 - 1 are one float64, and 5 and 2**32 + 5 share their low 32 bits.
Used by the kernel suites (tests/kernels) and by test_large_ids.py (stats,
``weightmaps generate``).
"""

from __future__ import annotations

import numpy as np
from conftest import random_instances

HUGE_IDS = [
    5,
    2**32 + 5,
    2**53 + 1,
    2**53 + 2,
    2**63 - 2,
    2**63 - 1,
    2**63,
    2**63 + 1,
    2**64 - 3,
    2**64 - 2,
    2**64 - 1,
]


def huge(small: np.ndarray, seed: int = 0) -> np.ndarray:
    """``small`` (ids 1..n) with its ids replaced by HUGE_IDS, shuffled."""
    n = int(small.max())
    rng = np.random.default_rng(seed)
    ids = [HUGE_IDS[i] for i in rng.permutation(len(HUGE_IDS))[:n]]
    lut = np.array([0, *ids], np.uint64)
    return lut[small]


def ranked(labels: np.ndarray) -> np.ndarray:
    """The oracle: every id replaced by its rank among the ids, in Python ints."""
    rank = {v: i + 1 for i, v in enumerate(sorted({int(v) for v in labels.ravel()} - {0}))}
    out = np.zeros(labels.shape, np.uint16)
    for v, r in rank.items():
        out[labels == np.uint64(v)] = r
    return out


# Many touching balls, and two separate pairs of dots near the edges.
SMALL_2D = random_instances((40, 56), 11, radius=(2.0, 7.0), seed=4).astype(np.uint16)
HUGE_2D = huge(SMALL_2D)
SMALL_3D = random_instances((14, 22, 20), 11, radius=(2.0, 5.0), seed=5).astype(np.uint16)
HUGE_3D = huge(SMALL_3D, seed=1)
