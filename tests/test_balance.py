"""Class-balance weights against values worked out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from weightmaps import ClassCounts, balance_weight_map, class_counts, class_weights

# 8 pixels: class 0 x5, class 1 x2, class 2 x1.
MASK = np.array([[0, 0, 0, 0], [0, 1, 1, 2]], np.uint8)


def test_inverse_by_hand():
    # N / (K n_c) = 8 / (3 n_c)
    w = class_weights(class_counts(MASK), "inverse")
    assert w == pytest.approx({0: 8 / 15, 1: 8 / 6, 2: 8 / 3})
    m = balance_weight_map(MASK)
    assert m.dtype == np.float32
    assert m.mean() == pytest.approx(1.0)  # the point of "inverse"
    np.testing.assert_allclose(m, [[8 / 15] * 4, [8 / 15, 4 / 3, 4 / 3, 8 / 3]], rtol=1e-6)


def test_enet_by_hand():
    w = class_weights(class_counts(MASK), "enet")
    assert w[0] == pytest.approx(1 / math.log(1.02 + 5 / 8))
    assert w[2] == pytest.approx(1 / math.log(1.02 + 1 / 8))


def test_beta_by_hand():
    # 3 foreground pixels of 8: beta = 5/8 on foreground, 3/8 on background.
    m = balance_weight_map(MASK, mode="beta")
    np.testing.assert_allclose(m, [[3 / 8] * 4, [3 / 8, 5 / 8, 5 / 8, 5 / 8]], rtol=1e-6)


def test_median_single_image_by_hand():
    # One image: f_c = n_c / 8 -> (5, 2, 1)/8, median 2/8 -> weights 2/5, 1, 2.
    w = class_weights(class_counts(MASK), "median")
    assert w == pytest.approx({0: 0.4, 1: 1.0, 2: 2.0})


def test_median_over_a_dataset_by_hand():
    a = np.array([[0, 0, 1, 1]])  # 4 pixels, classes 0 and 1
    b = np.array([[0, 0, 0, 0, 0, 2]])  # 6 pixels, classes 0 and 2
    counts = class_counts(a) + class_counts(b)
    assert counts.pixels == {0: 7, 1: 2, 2: 1}
    assert counts.image_pixels == {0: 10, 1: 4, 2: 6}
    assert counts.images == 2
    # f = 7/10, 2/4, 1/6; median 1/2 -> weights 5/7, 1, 3
    w = class_weights(counts, "median")
    assert w == pytest.approx({0: 5 / 7, 1: 1.0, 2: 3.0})
    m = balance_weight_map(b, mode="median", counts=counts)
    np.testing.assert_allclose(m, [[5 / 7] * 5 + [3.0]], rtol=1e-6)
    assert sum([class_counts(a), class_counts(b)]) == counts


def test_dataset_counts_used_instead_of_own():
    counts = {0: 90, 1: 10}
    m = balance_weight_map(np.array([[0, 1]]), counts=counts)
    np.testing.assert_allclose(m, [[100 / 180, 100 / 20]], rtol=1e-6)


def test_absent_classes_get_no_weight_and_no_division_by_zero():
    counts = ClassCounts.from_pixels({0: 10, 1: 0, 3: 5})
    for mode in ("inverse", "median", "enet", "beta"):
        w = class_weights(counts, mode)
        assert set(w) == {0, 3}
        assert all(np.isfinite(list(w.values())))
    assert class_weights({}, "inverse") == {}


def test_all_background_and_all_ignored():
    np.testing.assert_array_equal(balance_weight_map(np.zeros((3, 3), np.uint8)), np.ones((3, 3)))
    # beta = 1 - 0/N = 1, so background gets 1 - beta = 0: the formula (and the
    # seed's loss) gives an image with no foreground no weight at all.
    np.testing.assert_array_equal(
        balance_weight_map(np.zeros((3, 3), np.uint8), mode="beta"), np.zeros((3, 3))
    )
    ignored = np.full((3, 3), 255, np.uint8)
    np.testing.assert_array_equal(balance_weight_map(ignored, ignore_index=255), np.zeros((3, 3)))


def test_ignore_index_not_counted_and_zero():
    mask = np.array([[0, 0, 1, 255, 255, 255]], np.uint8)
    c = class_counts(mask, ignore_index=255)
    assert c.pixels == {0: 2, 1: 1} and c.total == 3
    m = balance_weight_map(mask, ignore_index=255)
    np.testing.assert_allclose(m, [[3 / 4, 3 / 4, 3 / 2, 0, 0, 0]], rtol=1e-6)


def test_class_missing_from_dataset_counts_is_an_error():
    with pytest.raises(ValueError, match=r"\[2\]"):
        balance_weight_map(np.array([[0, 1, 2]]), counts={0: 5, 1: 5})


def test_sparse_ids_and_negative_values_use_the_sorting_path():
    mask = np.array([[-3, -3, 70000, 70000, 70000, 0]])
    m = balance_weight_map(mask)
    np.testing.assert_allclose(m, [[1.0, 1.0, 2 / 3, 2 / 3, 2 / 3, 2.0]], rtol=1e-6)


def test_bool_mask_and_3d():
    mask = np.zeros((2, 3, 4), bool)
    mask[0, 0, :2] = True
    m = balance_weight_map(mask, mode="beta")
    assert m.shape == mask.shape
    np.testing.assert_allclose(m[mask], 22 / 24)
    np.testing.assert_allclose(m[~mask], 2 / 24)


def test_counts_json_round_trip():
    counts = class_counts(MASK) + class_counts(MASK[:, :2])
    assert ClassCounts.from_dict(counts.to_dict()) == counts


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown balance mode"):
        balance_weight_map(MASK, mode="nope")
    with pytest.raises(TypeError, match="integer class ids"):
        balance_weight_map(MASK.astype(float))
