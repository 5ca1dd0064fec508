"""regions_per_value against scikit-image's labelling, by hand, and split across threads."""

from __future__ import annotations

import numpy as np
import pytest
from skimage import measure

import weightmaps._shared.threads
from weightmaps._shared.threads import kernel_threads
from weightmaps.kernels.regions import regions_per_value


def regions_by_labelling(labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Oracle: label equal-valued regions (full connectivity), then count them per value."""
    values = labels.view(np.uint8) if labels.dtype == bool else labels
    regions = measure.label(values, background=0, connectivity=values.ndim)
    found: dict[int, int] = {}
    for region in range(1, int(regions.max()) + 1):
        value = int(values[regions == region][0])
        found[value] = found.get(value, 0) + 1
    keys = sorted(found)
    return np.array(keys, values.dtype), np.array([found[k] for k in keys], np.int64)


@pytest.mark.parametrize("ndim", [1, 2, 3])
@pytest.mark.parametrize("threads", [1, 2, 3])
def test_regions_match_scikit_image_labelling(monkeypatch, ndim, threads):
    monkeypatch.setattr(weightmaps._shared.threads, "PARALLEL_PIXELS", 1)  # split every mask
    rng = np.random.default_rng(10 * ndim + threads)
    for _ in range(150):
        shape = tuple(int(n) for n in rng.integers(1, 9, ndim))
        labels = rng.integers(0, int(rng.integers(2, 6)), shape)
        for dtype in (np.uint8, np.uint16, np.int32, np.int64, bool):
            typed = labels.astype(dtype)
            expected = regions_by_labelling(typed)
            with kernel_threads(threads):
                values, regions = regions_per_value(typed)
            np.testing.assert_array_equal(values, expected[0])
            np.testing.assert_array_equal(regions, expected[1])


def test_regions_by_hand():
    labels = np.array(
        [
            [1, 1, 0, 2],
            [0, 0, 2, 0],  # 2 joins 2 across a corner
            [3, 3, 0, 1],  # 3 touches nothing of its value; 1 comes back apart
            [3, 4, 4, 0],  # 4 touches 3: two regions, not one
        ]
    )
    values, regions = regions_per_value(labels)
    assert values.tolist() == [1, 2, 3, 4]
    assert regions.tolist() == [2, 1, 1, 1]


def test_a_3d_region_joined_only_through_a_corner_across_slabs(monkeypatch):
    monkeypatch.setattr(weightmaps._shared.threads, "PARALLEL_PIXELS", 1)
    labels = np.zeros((4, 3, 3), np.uint16)
    labels[1, 0, 0] = 5
    labels[2, 1, 1] = 5  # a corner away, in the next slab when split in two
    labels[3, 2, 2] = 6
    with kernel_threads(2):
        values, regions = regions_per_value(labels)
    assert values.tolist() == [5, 6] and regions.tolist() == [1, 1]


@pytest.mark.parametrize("shape", [(2, 2, 2, 2), ()])
def test_other_dimensions_are_refused(shape):
    with pytest.raises(ValueError, match="1-D to 3-D"):
        regions_per_value(np.ones(shape, np.uint8))


def test_an_empty_mask_has_no_regions():
    values, regions = regions_per_value(np.zeros((0, 4), np.uint16))
    assert values.size == 0 and regions.size == 0
