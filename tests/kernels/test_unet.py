"""U-Net border map on every backend against the plain per-instance formula written out here.

Each test runs on numpy, torch (CPU; CUDA under the ``gpu`` marker) and dask
(odd chunks, so halos cross chunk edges). A twin must also equal the numpy
map within the tolerance its module promises. Backend-only matters (torch
batches and memory budgets, dask chunkings and halos, the numba transform)
live in ``test_unet_torch.py``, ``test_unet_dask.py`` and ``test_nearest.py``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from conftest import random_instances, reference_two_nearest
from huge_ids import HUGE_2D, HUGE_3D, SMALL_2D, ranked
from kernel_backends import NUMPY, assert_agrees_with_numpy, backend_fixture

from weightmaps import border_cutoff, read_mask

backend = backend_fixture("unet_weight_map")

_REFERENCES: dict = {}


def reference_unet(labels, w0=10.0, sigma=5.0, spacing=None, wc=None):
    """Ronneberger et al. eq. 2, border term on background pixels only."""
    key = (labels.tobytes(), labels.shape, labels.dtype.str, w0, sigma, str(spacing))
    if key not in _REFERENCES:  # every backend asks for the same reference
        d1, d2 = reference_two_nearest(labels, spacing)
        with np.errstate(invalid="ignore"):
            border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
        border[~np.isfinite(d2) | (labels != 0)] = 0.0
        _REFERENCES[key] = border
    border = _REFERENCES[key]
    wc = np.ones(labels.shape) if wc is None else wc
    return wc + border


def reference_class_weights(labels, class_weights=None, ignore_mask=None):
    """``w_c`` as the docstring defines it: 1, a mapping, or inverse balance of fg/bg."""
    fg = labels != 0
    if class_weights is None:
        return np.ones(labels.shape)
    if class_weights == "balanced":
        counted = fg if ignore_mask is None else fg[~ignore_mask]
        n = counted.size
        sizes = {1: int(counted.sum()), 0: n - int(counted.sum())}
        present = [c for c, size in sizes.items() if size > 0]
        weights = {c: n / (len(present) * sizes[c]) for c in present}
    else:
        weights = class_weights
    return np.where(fg, weights.get(1, 1.0), weights.get(0, 1.0))


def assert_matches_reference(
    backend, labels, w0=10.0, sigma=5.0, spacing=None, class_weights=None, ignore_mask=None
):
    kwargs = dict(w0=w0, sigma=sigma, spacing=spacing)
    if class_weights is not None:
        kwargs["class_weights"] = class_weights
    if ignore_mask is not None:
        kwargs["ignore_mask"] = ignore_mask
    got = backend.unet_weight_map(labels, **kwargs)
    wc = reference_class_weights(labels, class_weights, ignore_mask)
    want = reference_unet(labels, w0, sigma, spacing, wc)
    if ignore_mask is not None:
        want[ignore_mask] = 0.0
    assert got.dtype == np.float32
    assert got.shape == labels.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * max(w0, 1.0))
    if not backend.is_numpy:
        want = NUMPY.unet_weight_map(labels, **kwargs)
        assert_agrees_with_numpy(backend, got, want, atol=1e-5 * max(w0, 1.0))
    return got


@pytest.mark.parametrize("seed", range(4))
def test_2d_random_touching_and_border(backend, seed):
    labels = random_instances((64, 80), 25, seed=seed)
    assert_matches_reference(backend, labels)


@pytest.mark.parametrize("seed", range(2))
def test_3d_random(backend, seed):
    labels = random_instances((20, 32, 28), 15, seed=seed)
    assert_matches_reference(backend, labels)


@pytest.mark.parametrize("spacing", [(1.0, 0.5), (2.0, 0.7), 1.5])
def test_2d_anisotropic_spacing(backend, spacing):
    labels = random_instances((48, 60), 15, seed=3)
    assert_matches_reference(backend, labels, sigma=3.0, spacing=spacing)


def test_3d_anisotropic_spacing(backend):
    labels = random_instances((12, 30, 30), 12, seed=5)
    assert_matches_reference(backend, labels, sigma=2.5, spacing=(2.0, 0.5, 0.6))


@pytest.mark.parametrize(("w0", "sigma"), [(3.0, 40.0), (10.0, 1.0), (25.0, 2.0)])
def test_parameters(backend, w0, sigma):
    labels = random_instances((40, 44), 8, seed=11)
    assert_matches_reference(backend, labels, w0=w0, sigma=sigma)


@pytest.mark.parametrize("dtype", [np.int32, np.uint16])
def test_non_contiguous_ids(backend, dtype):
    ids = np.random.default_rng(1).permutation(np.arange(1, 5000))[:30]
    labels = random_instances((70, 70), 30, seed=7, ids=ids).astype(dtype)
    assert labels.max() > 30
    assert_matches_reference(backend, labels)


def test_large_and_wide_ids(backend):
    labels = random_instances((40, 40), 6, seed=2).astype(np.int64)
    labels[labels > 0] += 3_000_000_000  # beyond int32, inside the 32-bit label word
    assert_matches_reference(backend, labels)


def test_ids_beyond_32_bits_are_renumbered(backend):
    labels = random_instances((40, 40), 8, seed=2).astype(np.int64)
    huge = labels.copy()
    huge[huge > 0] = huge[huge > 0] * (1 << 33) + 7  # distinct, > 2^32
    np.testing.assert_allclose(
        backend.unet_weight_map(huge), NUMPY.unet_weight_map(labels), rtol=0, atol=1e-4
    )
    assert_matches_reference(backend, huge)


def test_no_instance_and_one_instance(backend):
    empty = np.zeros((16, 16), np.uint16)
    np.testing.assert_array_equal(backend.unet_weight_map(empty), np.ones((16, 16), np.float32))
    one = np.zeros((16, 16), np.uint16)
    one[4:8, 4:8] = 7
    np.testing.assert_array_equal(backend.unet_weight_map(one), np.ones((16, 16), np.float32))


def test_two_instances_by_hand(backend):
    labels = np.zeros((1, 7), np.int32)
    labels[0, 0] = 1
    labels[0, 6] = 2
    got = backend.unet_weight_map(labels, w0=10.0, sigma=5.0)
    # Pixel at column 2: d1 = 2 (to label 1), d2 = 4 (to label 2).
    assert got[0, 2] == pytest.approx(1 + 10 * np.exp(-36 / 50), abs=1e-5)
    assert got[0, 3] == pytest.approx(1 + 10 * np.exp(-36 / 50), abs=1e-5)
    assert got[0, 0] == 1.0 and got[0, 6] == 1.0


def test_touching_instances_get_no_border_between_them(backend):
    labels = np.zeros((9, 12), np.int32)
    labels[2:7, 1:6] = 1
    labels[2:7, 6:11] = 2
    got = backend.unet_weight_map(labels)
    assert np.all(got[labels > 0] == 1.0)
    assert_matches_reference(backend, labels)


def test_sigma_large_uses_full_image(backend):
    labels = random_instances((40, 40), 5, seed=11)
    assert_matches_reference(backend, labels, w0=3.0, sigma=40.0)


def test_matches_per_instance_formula(backend):
    labels = random_instances((36, 40), 10, seed=6)
    assert_matches_reference(backend, labels)


def test_1d_and_thin_shapes(backend):
    labels = np.array([[0, 1, 0, 0, 2, 0, 0, 0, 3]])
    assert_matches_reference(backend, labels)
    assert_matches_reference(backend, labels.T.copy())
    np.testing.assert_allclose(
        backend.unet_weight_map(labels[0]), reference_unet(labels)[0], atol=1e-4
    )
    if not backend.is_numpy:
        assert_agrees_with_numpy(
            backend, backend.unet_weight_map(labels[0]), NUMPY.unet_weight_map(labels[0]), atol=1e-4
        )
    assert_matches_reference(backend, np.array([[0, 1, 2, 0]]), sigma=0.3)


def test_class_weights_mapping_and_balanced(backend):
    labels = random_instances((32, 32), 6, seed=4)
    fg = labels > 0
    border = reference_unet(labels) - 1.0
    got = backend.unet_weight_map(labels, class_weights={0: 0.5, 1: 3.0})
    np.testing.assert_allclose(got, np.where(fg, 3.0, 0.5) + border, atol=1e-4)
    n_fg, n = fg.sum(), fg.size
    balanced = np.where(fg, n / (2 * n_fg), n / (2 * (n - n_fg)))
    got = backend.unet_weight_map(labels, class_weights="balanced")
    np.testing.assert_allclose(got, balanced + border, rtol=1e-6, atol=1e-4)


@pytest.mark.parametrize("class_weights", [None, {0: 0.5, 1: 3.0}, {1: 2.0}, "balanced"])
def test_class_weights_and_ignore(backend, class_weights):
    labels = random_instances((32, 36), 8, seed=4)
    assert_matches_reference(backend, labels, class_weights=class_weights)
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :8] = True
    ignore[20:, 30:] = True
    assert_matches_reference(backend, labels, class_weights=class_weights, ignore_mask=ignore)


def test_ignore_mask_gets_zero_and_is_not_counted(backend):
    labels = random_instances((32, 32), 6, seed=4)
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :8] = True
    got = backend.unet_weight_map(labels, class_weights="balanced", ignore_mask=ignore)
    assert np.all(got[ignore] == 0)
    fg = (labels > 0)[~ignore]
    n_fg, n = fg.sum(), fg.size
    expected_fg = n / (2 * n_fg)
    np.testing.assert_allclose(got[~ignore][fg], expected_fg, rtol=1e-6)


def test_all_ignored_and_all_background(backend):
    labels = random_instances((20, 20), 4, seed=1)
    everything = np.ones(labels.shape, bool)
    got = assert_matches_reference(
        backend, labels, class_weights="balanced", ignore_mask=everything
    )
    assert not got.any()
    got = assert_matches_reference(backend, np.zeros((8, 8), np.int32), class_weights="balanced")
    np.testing.assert_array_equal(got, 1.0)  # one class present: N / (1 * N)


def test_w0_zero(backend):
    labels = random_instances((30, 30), 6, seed=2)
    assert_matches_reference(backend, labels, w0=0.0, class_weights="balanced")


def test_cutoff_drops_the_term_where_the_numpy_kernel_does(backend):
    """Two sites whose d1 + d2 (their distance) straddles the cut-off."""
    sigma = 2.0
    gap = math.floor(border_cutoff(sigma)) + 1
    for distance in (gap, gap - 1):  # above, then below the cut-off
        labels = np.zeros((3, distance + 3), np.int32)
        labels[1, 1] = 1
        labels[1, distance + 1] = 2
        got = assert_matches_reference(backend, labels, sigma=sigma)
        # The term is ~1e-6 w0 here: compare where it is added, not only values.
        assert np.any(got > 1) == (distance < border_cutoff(sigma))
        np.testing.assert_array_equal(got > 1, NUMPY.unet_weight_map(labels, sigma=sigma) > 1)


# ----------------------------------------------------------------------------
# Ids at the ends of the integer range (see huge_ids.py)
# ----------------------------------------------------------------------------


def test_issue_example_three_instances(backend):
    # Three objects, one id of each half of the uint64 range: the map of the
    # same mask numbered 1..3 (was off by 2.37 with w0 = 10).
    small = np.zeros((12, 30), np.uint16)
    small[3:9, 2:8], small[3:9, 12:17], small[3:9, 22:28] = 1, 2, 3
    huge = np.array([0, 7, 2**63, 2**64 - 1], np.uint64)[small]
    w = backend.unet_weight_map(huge)
    assert w.tobytes() == backend.unet_weight_map(small).tobytes()
    np.testing.assert_allclose(w, reference_unet(small), atol=1e-5 * 10)


@pytest.mark.parametrize("huge", [HUGE_2D, HUGE_3D], ids=["2d", "3d"])
def test_huge_ids_give_the_map_of_small_ids(backend, huge):
    small = ranked(huge)
    w = backend.unet_weight_map(huge)
    assert w.tobytes() == backend.unet_weight_map(small).tobytes()
    np.testing.assert_allclose(w, reference_unet(small), atol=1e-5 * 10)
    ignore = np.zeros(huge.shape, bool)
    ignore.flat[::7] = True
    options = dict(class_weights="balanced", ignore_mask=ignore, sigma=3.0, w0=4.0)
    got = backend.unet_weight_map(huge, **options)
    assert got.tobytes() == backend.unet_weight_map(small, **options).tobytes()
    w = backend.unet_weight_map(huge, sigma=2.0)
    assert w.tobytes() == backend.unet_weight_map(small, sigma=2.0).tobytes()
    np.testing.assert_allclose(w, NUMPY.unet_weight_map(small, sigma=2.0), atol=1e-5 * 10)


def test_int64_ids_near_the_top(backend):
    # Signed ids up to 2**63 - 1 need no renumbering and still give the map.
    small = SMALL_2D
    huge = np.array([0, *range(2**63 - 11, 2**63)], np.int64)[small]
    assert backend.unet_weight_map(huge).tobytes() == backend.unet_weight_map(small).tobytes()


# ----------------------------------------------------------------------------
# Bad input
# ----------------------------------------------------------------------------


def test_rejects_bad_input(backend):
    zeros = np.zeros((4, 4), np.int32)
    with pytest.raises(TypeError, match="label_instances"):
        backend.unet_weight_map(np.zeros((4, 4), np.float32))
    with pytest.raises(TypeError, match="integer label array"):
        backend.unet_weight_map(np.zeros((4, 4), np.float64))
    with pytest.raises(ValueError, match=">= 0"):
        backend.unet_weight_map(-np.ones((4, 4), np.int32))
    with pytest.raises(ValueError, match="sigma"):
        backend.unet_weight_map(zeros, sigma=0)
    with pytest.raises(ValueError, match="w0"):
        backend.unet_weight_map(zeros, w0=-1)
    with pytest.raises(ValueError, match="ignore_mask shape"):
        backend.unet_weight_map(zeros, ignore_mask=np.zeros((4, 5), bool))
    with pytest.raises(ValueError, match="keys"):
        backend.unet_weight_map(zeros, class_weights={2: 1.0})
    with pytest.raises(ValueError, match="class_weights"):
        backend.unet_weight_map(zeros, class_weights="median")
    with pytest.raises(ValueError, match="balanced"):
        backend.unet_weight_map(zeros, class_weights="inverse")
    with pytest.raises(ValueError, match="spacing"):
        backend.unet_weight_map(zeros, spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="non-empty"):
        backend.unet_weight_map(np.zeros((0, 4), np.int32))


# ----------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------


@pytest.mark.realdata
def test_realdata_stardist_2d_and_3d(realdata, backend):
    mask2d = read_mask(realdata / "stardist" / "mask2d.tif")
    assert_matches_reference(backend, mask2d)
    assert_matches_reference(backend, mask2d, sigma=3.0, class_weights="balanced")
    mask3d = read_mask(realdata / "stardist" / "mask3d.tif")
    assert_matches_reference(backend, mask3d)
    assert_matches_reference(backend, mask3d, sigma=3.0, spacing=(2.0, 1.0, 1.0))


@pytest.mark.realdata
def test_realdata_dsb2018_smallest(realdata, backend):
    files = sorted((realdata / "dsb2018" / "labels").glob("*.png"), key=lambda p: p.stat().st_size)
    for path in files[:3]:
        assert_matches_reference(backend, read_mask(path))
