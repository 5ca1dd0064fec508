"""Class weights from counts (kernels/class_balance.py) against values worked out by hand.

Pure numbers, one implementation for every backend; the maps that paint
them are tested on every backend in ``test_balance.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from weightmaps import ClassCounts, class_counts, class_weights

# 8 pixels: class 0 x5, class 1 x2, class 2 x1.
MASK = np.array([[0, 0, 0, 0], [0, 1, 1, 2]], np.uint8)


def test_inverse_by_hand():
    # N / (K n_c) = 8 / (3 n_c)
    w = class_weights(class_counts(MASK), "inverse")
    assert w == pytest.approx({0: 8 / 15, 1: 8 / 6, 2: 8 / 3})


def test_enet_by_hand():
    w = class_weights(class_counts(MASK), "enet")
    assert w[0] == pytest.approx(1 / math.log(1.02 + 5 / 8))
    assert w[2] == pytest.approx(1 / math.log(1.02 + 1 / 8))


def test_median_single_image_by_hand():
    # One image: f_c = n_c / 8 -> (5, 2, 1)/8, median 2/8 -> weights 2/5, 1, 2.
    w = class_weights(class_counts(MASK), "median")
    assert w == pytest.approx({0: 0.4, 1: 1.0, 2: 2.0})


def test_median_over_a_dataset_by_hand():
    a = np.array([[0, 0, 1, 1]])  # 4 pixels, classes 0 and 1
    b = np.array([[0, 0, 0, 0, 0, 2]])  # 6 pixels, classes 0 and 2
    counts = class_counts(a) + class_counts(b)
    # f = 7/10, 2/4, 1/6; median 1/2 -> weights 5/7, 1, 3
    w = class_weights(counts, "median")
    assert w == pytest.approx({0: 5 / 7, 1: 1.0, 2: 3.0})
    assert sum([class_counts(a), class_counts(b)]) == counts


def test_absent_classes_get_no_weight_and_no_division_by_zero():
    counts = ClassCounts.from_pixels({0: 10, 1: 0, 3: 5})
    for mode in ("inverse", "median", "enet", "beta"):
        w = class_weights(counts, mode)
        assert set(w) == {0, 3}
        assert all(np.isfinite(list(w.values())))
    assert class_weights({}, "inverse") == {}


def test_counts_json_round_trip():
    counts = class_counts(MASK) + class_counts(MASK[:, :2])
    assert ClassCounts.from_dict(counts.to_dict()) == counts
