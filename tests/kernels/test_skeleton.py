"""Skeleton maps against skimage run on the whole array, one region at a time.

Runs on every backend that has ``skeleton_map``: numpy only, for now.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import blobs, random_instances
from kernel_backends import backend_fixture
from skimage.morphology import skeletonize

backend = backend_fixture("skeleton_map")


def reference_skeletons(labels: np.ndarray, ids, method=None) -> np.ndarray:
    """The slow way: skeletonize each region alone on the whole array, union."""
    out = np.zeros(labels.shape, bool)
    for i in ids:
        out |= skeletonize(labels == i, method=method)
    return out.astype(np.uint8)


def nonzero_ids(labels):
    return [int(i) for i in np.unique(labels) if i != 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instances_2d_match_per_instance_skeletonize(backend, seed):
    labels = random_instances((70, 90), 40, radius=(2.0, 9.0), seed=seed)
    got = backend.skeleton_map(labels)
    assert got.dtype == np.uint8 and got.shape == labels.shape
    np.testing.assert_array_equal(got, reference_skeletons(labels, nonzero_ids(labels)))
    # touching cells keep separate skeletons: different from thinning the foreground
    assert not np.array_equal(got, backend.skeleton_map(labels, mask_type="binary"))


def test_instances_3d_match_per_instance_skeletonize(backend):
    labels = random_instances((20, 26, 24), 12, radius=(2.0, 6.0), seed=4)
    np.testing.assert_array_equal(
        backend.skeleton_map(labels), reference_skeletons(labels, nonzero_ids(labels))
    )


def test_objects_on_edges_and_corners(backend):
    """Boxes cut by the array's edge must thin as the whole array does."""
    labels = np.zeros((30, 40), np.int32)
    labels[:8, :10] = 5  # corner
    labels[10:20, 35:] = 7  # right edge
    labels[22:, 12:30] = 9  # bottom edge
    labels[9:21, 10:34] = 11  # inside, touching the others
    labels[:, 38] = 13  # a one-pixel line across the array
    np.testing.assert_array_equal(
        backend.skeleton_map(labels), reference_skeletons(labels, nonzero_ids(labels))
    )
    vol = np.zeros((6, 12, 14), np.int32)
    vol[:, :5, :6] = 2
    vol[:, 6:, 4:] = 3
    np.testing.assert_array_equal(backend.skeleton_map(vol), reference_skeletons(vol, [2, 3]))


def test_lee_method_in_2d(backend):
    labels = random_instances((50, 60), 20, radius=(3.0, 8.0), seed=6)
    np.testing.assert_array_equal(
        backend.skeleton_map(labels, method="lee"),
        reference_skeletons(labels, nonzero_ids(labels), method="lee"),
    )


def test_sparse_large_ids_are_renumbered(backend):
    labels = random_instances((40, 40), 10, seed=3)
    wide = np.where(labels > 0, labels.astype(np.uint32) * 400_000_000, 0).astype(np.uint32)
    np.testing.assert_array_equal(backend.skeleton_map(wide), backend.skeleton_map(labels))


def test_binary_is_one_foreground(backend):
    mask = blobs((60, 50), seed=2)
    as_255 = mask.astype(np.uint8) * 255
    expected = skeletonize(mask).astype(np.uint8)
    np.testing.assert_array_equal(backend.skeleton_map(mask), expected)  # bool: binary
    np.testing.assert_array_equal(backend.skeleton_map(as_255, mask_type="binary"), expected)
    np.testing.assert_array_equal(backend.skeleton_map(as_255), expected)  # one id: the same
    vol = blobs((16, 20, 18), seed=5)
    np.testing.assert_array_equal(
        backend.skeleton_map(vol, mask_type="binary"), skeletonize(vol).astype(np.uint8)
    )


def test_semantic_per_class_with_ignore(backend):
    labels = random_instances((60, 70), 24, radius=(3.0, 10.0), seed=8)
    semantic = np.where(labels > 0, (labels - 1) % 3 + 1, 0).astype(np.uint8)
    semantic[:5, :5] = 255
    got = backend.skeleton_map(semantic, mask_type="semantic", ignore_index=255)
    np.testing.assert_array_equal(got, reference_skeletons(semantic, [1, 2, 3]))
    assert not got[semantic == 255].any()
    binary = backend.skeleton_map(semantic, mask_type="binary", ignore_index=255)
    expected = skeletonize((semantic != 0) & (semantic != 255)).astype(np.uint8)
    np.testing.assert_array_equal(binary, expected)


def test_empty_and_bad_input(backend):
    np.testing.assert_array_equal(backend.skeleton_map(np.zeros((5, 5), np.uint8)), 0)
    with pytest.raises(ValueError, match="mask_type"):
        backend.skeleton_map(np.zeros((5, 5), np.uint8), mask_type="auto")
    with pytest.raises(TypeError, match="integer or boolean"):
        backend.skeleton_map(np.zeros((5, 5), np.float32))
    with pytest.raises(ValueError, match="2-D and 3-D"):
        backend.skeleton_map(np.zeros(5, np.uint8))
    with pytest.raises(ValueError, match=">= 0"):
        backend.skeleton_map(np.array([[-1, 0], [0, 1]]))
