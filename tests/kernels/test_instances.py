"""separate_instances against a plain neighbour loop; label_instances by hand.

Each test runs on every backend that has the kernel (numpy, dask with odd
chunks). Chunkings of their own: ``test_instances_dask.py``.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import random_instances
from huge_ids import HUGE_2D, HUGE_3D, ranked
from kernel_backends import NUMPY, backend_fixture

separator = backend_fixture("separate_instances", name="separator")
labeller = backend_fixture("label_instances", name="labeller")


def reference_separate(labels, connectivity):
    """Visit every pixel and every neighbour within the connectivity."""
    out = labels.copy()
    offsets = [
        o
        for o in itertools.product((-1, 0, 1), repeat=labels.ndim)
        if 0 < sum(map(abs, o)) <= connectivity
    ]
    for idx in np.ndindex(labels.shape):
        own = labels[idx]
        if own == 0:
            continue
        for o in offsets:
            nb = tuple(i + d for i, d in zip(idx, o, strict=True))
            if all(0 <= n < s for n, s in zip(nb, labels.shape, strict=True)):
                if labels[nb] != 0 and labels[nb] != own:
                    out[idx] = 0
                    break
    return out


def assert_same_partition(got: np.ndarray, expected: np.ndarray) -> None:
    """Same regions, whatever the ids: zero on zero, and a bijection of ids 1..n."""
    np.testing.assert_array_equal(got == 0, expected == 0)
    pairs = np.unique(np.stack([got.ravel(), expected.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
    ids = np.unique(got[got != 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))


# ----------------------------------------------------------------------------
# separate_instances
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("connectivity", [1, 2])
def test_separate_2d_matches_loop(separator, connectivity):
    labels = random_instances((40, 40), 20, seed=1).astype(np.uint16)
    got = separator.separate_instances(labels, connectivity=connectivity)
    assert got.dtype == labels.dtype
    np.testing.assert_array_equal(got, reference_separate(labels, connectivity))


@pytest.mark.parametrize("connectivity", [1, 3])
def test_separate_3d_matches_loop(separator, connectivity):
    labels = random_instances((10, 16, 16), 10, seed=2)
    np.testing.assert_array_equal(
        separator.separate_instances(labels, connectivity), reference_separate(labels, connectivity)
    )


def test_separate_leaves_no_contact(separator):
    labels = random_instances((50, 50), 30, seed=3)
    sep = separator.separate_instances(labels)
    assert (sep[:, 1:] * sep[:, :-1] * (sep[:, 1:] != sep[:, :-1])).sum() == 0
    assert (sep[1:] * sep[:-1] * (sep[1:] != sep[:-1])).sum() == 0


def test_separate_by_hand(separator):
    labels = np.array([[1, 1, 2, 2, 0, 3]])
    np.testing.assert_array_equal(separator.separate_instances(labels), [[1, 0, 0, 2, 0, 3]])
    with pytest.raises(ValueError, match="connectivity"):
        separator.separate_instances(labels, connectivity=3)


def test_separate_keeps_huge_ids_and_carves_as_small_ids(separator):
    for huge in (HUGE_2D, HUGE_3D):
        small = ranked(huge)
        carved = separator.separate_instances(huge)
        expected = separator.separate_instances(small)
        assert carved.dtype == np.uint64
        np.testing.assert_array_equal(carved != 0, expected != 0)
        np.testing.assert_array_equal(carved, np.where(expected != 0, huge, 0))
        assert (expected != small).any()  # something was carved
        np.testing.assert_array_equal(carved, NUMPY.separate_instances(huge))


@pytest.mark.parametrize(
    "ids",
    [
        (2**53 + 1, 2**53 + 2, 2**53 + 3),
        (2**62, 2**62 + 1, 2**63 - 1),
        (2**63 - 3, 2**63 - 2, 2**63 - 1),
    ],
)
def test_separate_large_int64_ids(separator, ids):
    # ndimage filters go through float64: these ids used to merge or lose
    # the image edge, carving nothing or everything.
    a, b, c = ids
    row = np.array([[a, a, b, b, 0, c]], np.int64)
    np.testing.assert_array_equal(separator.separate_instances(row), [[a, 0, 0, b, 0, c]])


def test_separate_rejects_bad_input(separator):
    with pytest.raises(ValueError, match=">= 0"):
        separator.separate_instances(np.array([[1, -1, 0]]))
    with pytest.raises(ValueError, match="non-empty"):
        separator.separate_instances(np.zeros((0, 5), int))


# ----------------------------------------------------------------------------
# label_instances
# ----------------------------------------------------------------------------


def test_label_binary_and_semantic(labeller):
    mask = np.array(
        [
            [1, 1, 0, 0],
            [0, 0, 1, 0],
            [2, 2, 0, 0],
        ]
    )
    # Full connectivity joins the diagonal; the class-2 region stays apart.
    full = labeller.label_instances(mask)
    assert full.dtype == np.int32
    assert full.max() == 2 and full[0, 0] == full[1, 2] and full[2, 0] != full[0, 0]
    faces = labeller.label_instances(mask, connectivity=1)
    assert faces.max() == 3
    binary = labeller.label_instances(mask.astype(bool))
    assert binary.max() == 1  # the two classes touch diagonally once binarised


def test_label_ignore_value(labeller):
    mask = np.array([[1, 255, 1]], np.uint8)
    got = labeller.label_instances(mask, ignore_value=255)
    np.testing.assert_array_equal(got, [[1, 0, 2]])


def test_label_tells_huge_values_apart(labeller):
    # Two touching regions of values that are one float64: two instances.
    semantic = np.array([[2**64 - 1, 2**64 - 1, 2**64 - 2, 2**64 - 2, 0, 2**63]], np.uint64)
    np.testing.assert_array_equal(labeller.label_instances(semantic), [[1, 1, 2, 2, 0, 3]])
    np.testing.assert_array_equal(
        labeller.label_instances(semantic, ignore_value=2**64 - 2), [[1, 1, 0, 0, 0, 2]]
    )
    for huge in (HUGE_2D, HUGE_3D):
        got = labeller.label_instances(huge)
        np.testing.assert_array_equal(got, labeller.label_instances(ranked(huge)))
        assert_same_partition(got, NUMPY.label_instances(ranked(huge)))


def test_label_bool_and_empty(labeller):
    mask = random_instances((40, 44), 20, seed=5) != 0
    assert_same_partition(labeller.label_instances(mask), NUMPY.label_instances(mask))
    empty = labeller.label_instances(np.zeros((9, 9), np.uint8))
    np.testing.assert_array_equal(empty, np.zeros((9, 9), np.int32))


def test_label_rejects_bad_input(labeller):
    with pytest.raises(TypeError, match="integer or boolean"):
        labeller.label_instances(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="connectivity"):
        labeller.label_instances(np.zeros((4, 4), np.uint8), connectivity=3)
