"""Class-balance maps and counts on every backend, against values worked out by hand.

Each test runs on numpy, torch (CPU; CUDA under the ``gpu`` marker) and dask
(odd chunks); ``class_counts`` on the backends that have it (numpy, dask). A
twin must also equal the numpy map within 1e-5. The weights themselves:
``test_class_balance.py``; batches: ``test_balance_torch.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs
from kernel_backends import NUMPY, assert_agrees_with_numpy, backend_fixture

from weightmaps import BALANCE_MODES, read_mask

backend = backend_fixture("balance_weight_map")
twin = backend_fixture("balance_weight_map", twins=True)
counter = backend_fixture("class_counts", name="counter")

# 8 pixels: class 0 x5, class 1 x2, class 2 x1.
MASK = np.array([[0, 0, 0, 0], [0, 1, 1, 2]], np.uint8)


def balance_map(backend, mask, **kwargs) -> np.ndarray:
    """The backend's map, float32, and (for a twin) numpy's within 1e-5."""
    got = backend.balance_weight_map(mask, **kwargs)
    assert got.dtype == np.float32 and got.shape == mask.shape
    if not backend.is_numpy:
        want = NUMPY.balance_weight_map(mask, **kwargs)
        assert_agrees_with_numpy(backend, got, want, atol=1e-5)
    return got


def semantic_mask(shape=(30, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.choice([0, 1, 2, 5], size=shape, p=[0.6, 0.25, 0.1, 0.05]).astype(np.uint8)
    mask[:3] = 255
    return mask


def test_inverse_by_hand(backend):
    m = balance_map(backend, MASK)
    assert m.mean() == pytest.approx(1.0)  # the point of "inverse"
    np.testing.assert_allclose(m, [[8 / 15] * 4, [8 / 15, 4 / 3, 4 / 3, 8 / 3]], rtol=1e-6)


def test_beta_by_hand(backend):
    # 3 foreground pixels of 8: beta = 5/8 on foreground, 3/8 on background.
    m = balance_map(backend, MASK, mode="beta")
    np.testing.assert_allclose(m, [[3 / 8] * 4, [3 / 8, 5 / 8, 5 / 8, 5 / 8]], rtol=1e-6)


def test_median_over_a_dataset_by_hand(backend):
    a = np.array([[0, 0, 1, 1]])  # 4 pixels, classes 0 and 1
    b = np.array([[0, 0, 0, 0, 0, 2]])  # 6 pixels, classes 0 and 2
    counts = NUMPY.class_counts(a) + NUMPY.class_counts(b)
    # f = 7/10, 2/4, 1/6; median 1/2 -> weights 5/7, 1, 3
    m = balance_map(backend, b, mode="median", counts=counts)
    np.testing.assert_allclose(m, [[5 / 7] * 5 + [3.0]], rtol=1e-6)


def test_class_counts_over_a_dataset_by_hand(counter):
    a = np.array([[0, 0, 1, 1]])
    b = np.array([[0, 0, 0, 0, 0, 2]])
    counts = counter.class_counts(a) + counter.class_counts(b)
    assert counts.pixels == {0: 7, 1: 2, 2: 1}
    assert counts.image_pixels == {0: 10, 1: 4, 2: 6}
    assert counts.images == 2


def test_dataset_counts_used_instead_of_own(backend):
    counts = {0: 90, 1: 10}
    m = balance_map(backend, np.array([[0, 1]]), counts=counts)
    np.testing.assert_allclose(m, [[100 / 180, 100 / 20]], rtol=1e-6)


def test_all_background_and_all_ignored(backend):
    np.testing.assert_array_equal(balance_map(backend, np.zeros((3, 3), np.uint8)), np.ones((3, 3)))
    # beta = 1 - 0/N = 1, so background gets 1 - beta = 0: the formula (and the
    # seed's loss) gives an image with no foreground no weight at all.
    np.testing.assert_array_equal(
        balance_map(backend, np.zeros((3, 3), np.uint8), mode="beta"), np.zeros((3, 3))
    )
    ignored = np.full((3, 3), 255, np.uint8)
    np.testing.assert_array_equal(balance_map(backend, ignored, ignore_index=255), np.zeros((3, 3)))


def test_ignore_index_not_counted_and_zero(backend):
    mask = np.array([[0, 0, 1, 255, 255, 255]], np.uint8)
    m = balance_map(backend, mask, ignore_index=255)
    np.testing.assert_allclose(m, [[3 / 4, 3 / 4, 3 / 2, 0, 0, 0]], rtol=1e-6)


def test_class_counts_leave_ignored_pixels_out(counter):
    mask = np.array([[0, 0, 1, 255, 255, 255]], np.uint8)
    c = counter.class_counts(mask, ignore_index=255)
    assert c.pixels == {0: 2, 1: 1} and c.total == 3


def test_class_missing_from_dataset_counts_is_an_error(backend):
    with pytest.raises(ValueError, match=r"\[2\] .*no count or weight"):
        backend.balance_weight_map(np.array([[0, 1, 2]]), counts={0: 5, 1: 5})
    with pytest.raises(ValueError, match=r"\[2\] .*no count or weight"):
        backend.balance_weight_map(np.array([[0, 1, 2]]), counts={0: 3, 1: 1})


def test_sparse_ids_and_negative_values_use_the_sorting_path(backend):
    mask = np.array([[-3, -3, 70000, 70000, 70000, 0]])
    m = balance_map(backend, mask)
    np.testing.assert_allclose(m, [[1.0, 1.0, 2 / 3, 2 / 3, 2 / 3, 2.0]], rtol=1e-6)


def test_sparse_and_negative_ids_with_ignore(backend):
    mask = np.array([[0, 70000, 70000], [-3, 0, 0]], np.int64)
    # 6 pixels of 3 classes: N / (K n_c) = 6 / (3 * (3, 2, 1)).
    m = balance_map(backend, mask)
    np.testing.assert_allclose(m, [[2 / 3, 1.0, 1.0], [2.0, 2 / 3, 2 / 3]], rtol=1e-6)
    # -3 ignored: 5 pixels of 2 classes, 5 / (2 * (3, 2)); the ignored pixel 0.
    m = balance_map(backend, mask, ignore_index=-3)
    np.testing.assert_allclose(m, [[5 / 6, 5 / 4, 5 / 4], [0.0, 5 / 6, 5 / 6]], rtol=1e-6)


def test_bool_mask_and_3d(backend):
    mask = np.zeros((2, 3, 4), bool)
    mask[0, 0, :2] = True
    m = balance_map(backend, mask, mode="beta")
    assert m.shape == mask.shape
    np.testing.assert_allclose(m[mask], 22 / 24)
    np.testing.assert_allclose(m[~mask], 2 / 24)


def test_rejects_bad_input(backend):
    with pytest.raises(ValueError, match="unknown balance mode"):
        backend.balance_weight_map(MASK, mode="nope")
    with pytest.raises(TypeError, match="integer class ids"):
        backend.balance_weight_map(MASK.astype(float))


# ----------------------------------------------------------------------------
# Twins against the numpy map in every mode
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("mode", BALANCE_MODES)
def test_every_mode(twin, mode):
    mask = semantic_mask()
    for kwargs in ({}, {"ignore_index": 255}):
        balance_map(twin, mask, mode=mode, **kwargs)
    binary = blobs((20, 24, 18), seed=5)  # bool, 3-D
    balance_map(twin, binary, mode=mode)


@pytest.mark.parametrize("mode", BALANCE_MODES)
def test_every_mode_with_dataset_counts(twin, mode):
    masks = [semantic_mask(seed=s) for s in range(3)]
    counts = sum(NUMPY.class_counts(m, ignore_index=255) for m in masks)
    for mask in masks:
        balance_map(twin, mask, mode=mode, ignore_index=255, counts=counts)
    plain = {0: 10, 1: 5, 2: 3, 5: 1}
    balance_map(twin, masks[0], mode=mode, ignore_index=255, counts=plain)
    binary = blobs((20, 24, 18), seed=5)
    counts = NUMPY.class_counts(binary) + NUMPY.class_counts(masks[1] % 4)
    balance_map(twin, binary, mode=mode, counts=counts)


def test_class_counts_of_the_whole_array(counter):
    mask = semantic_mask((12, 30, 26), seed=3)
    assert counter.class_counts(mask, ignore_index=255) == NUMPY.class_counts(
        mask, ignore_index=255
    )
    assert counter.class_counts(mask) == NUMPY.class_counts(mask)
    assert counter.class_counts(mask).pixels == {
        int(c): int(n) for c, n in zip(*np.unique(mask, return_counts=True), strict=True)
    }


# ----------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------


@pytest.mark.realdata
def test_realdata_stardist_beta(realdata, backend):
    mask2d = read_mask(realdata / "stardist" / "mask2d.tif") > 0
    beta = 1 - mask2d.mean()
    np.testing.assert_allclose(
        balance_map(backend, mask2d, mode="beta"), np.where(mask2d, beta, 1 - beta), rtol=1e-6
    )
