"""separate_instances against a plain neighbour loop; label_instances by hand."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from conftest import random_instances

from weightmaps import label_instances, separate_instances


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


@pytest.mark.parametrize("connectivity", [1, 2])
def test_separate_2d_matches_loop(connectivity):
    labels = random_instances((40, 40), 20, seed=1).astype(np.uint16)
    got = separate_instances(labels, connectivity=connectivity)
    assert got.dtype == labels.dtype
    np.testing.assert_array_equal(got, reference_separate(labels, connectivity))


@pytest.mark.parametrize("connectivity", [1, 3])
def test_separate_3d_matches_loop(connectivity):
    labels = random_instances((10, 16, 16), 10, seed=2)
    np.testing.assert_array_equal(
        separate_instances(labels, connectivity), reference_separate(labels, connectivity)
    )


def test_separate_leaves_no_contact():
    labels = random_instances((50, 50), 30, seed=3)
    sep = separate_instances(labels)
    assert (sep[:, 1:] * sep[:, :-1] * (sep[:, 1:] != sep[:, :-1])).sum() == 0
    assert (sep[1:] * sep[:-1] * (sep[1:] != sep[:-1])).sum() == 0


def test_separate_by_hand():
    labels = np.array([[1, 1, 2, 2, 0, 3]])
    np.testing.assert_array_equal(separate_instances(labels), [[1, 0, 0, 2, 0, 3]])
    with pytest.raises(ValueError, match="connectivity"):
        separate_instances(labels, connectivity=3)


def test_label_binary_and_semantic():
    mask = np.array(
        [
            [1, 1, 0, 0],
            [0, 0, 1, 0],
            [2, 2, 0, 0],
        ]
    )
    # Full connectivity joins the diagonal; the class-2 region stays apart.
    full = label_instances(mask)
    assert full.dtype == np.int32
    assert full.max() == 2 and full[0, 0] == full[1, 2] and full[2, 0] != full[0, 0]
    faces = label_instances(mask, connectivity=1)
    assert faces.max() == 3
    binary = label_instances(mask.astype(bool))
    assert binary.max() == 1  # the two classes touch diagonally once binarised


def test_label_ignore_value():
    mask = np.array([[1, 255, 1]], np.uint8)
    got = label_instances(mask, ignore_value=255)
    np.testing.assert_array_equal(got, [[1, 0, 2]])


def test_label_rejects_float():
    with pytest.raises(TypeError):
        label_instances(np.zeros((3, 3)))
