"""Edge map against PyTorch's own avg_pool formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import blobs

from weightmaps import edge_weight_map


def reference_edge(m: np.ndarray, k: int = 31, alpha: float = 5.0) -> np.ndarray:
    """weit = 1 + alpha * |avg_pool(m) - m|, as in F3Net/PraNet, in float64."""
    t = torch.from_numpy(np.asarray(m, np.float64))[None, None]
    pool = F.avg_pool2d if m.ndim == 2 else F.avg_pool3d
    box = pool(t, kernel_size=k, stride=1, padding=k // 2)
    return (1 + alpha * torch.abs(box - t))[0, 0].numpy()


@pytest.mark.parametrize("k", [31, 3, 1, 11])
def test_binary_2d_matches_avg_pool2d(k):
    mask = blobs((70, 90))
    mask[:, 0] = True  # foreground on the image edge: zero padding counts
    got = edge_weight_map(mask, kernel_size=k, alpha=5.0)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, reference_edge(mask, k), atol=1e-5)


def test_edge_pixels_get_extra_weight():
    mask = np.ones((40, 40), bool)
    got = edge_weight_map(mask, kernel_size=31)
    # A full mask has no edges inside, but at the image border the zero
    # padding pulls the mean down: the corner sees 16 x 16 of 31 x 31 pixels.
    assert got[20, 20] < got[0, 20] < got[0, 0]
    assert got[0, 0] == pytest.approx(1 + 5 * (1 - 256 / 961), abs=1e-5)


def test_3d_matches_avg_pool3d():
    mask = blobs((20, 30, 26), seed=1)
    got = edge_weight_map(mask, kernel_size=7, alpha=2.0)
    np.testing.assert_allclose(got, reference_edge(mask, 7, 2.0), atol=1e-5)


def test_soft_mask_stays_soft():
    rng = np.random.default_rng(3)
    soft = np.clip(rng.normal(0.5, 0.3, (50, 60)), 0, 1)
    got = edge_weight_map(soft, kernel_size=9)
    np.testing.assert_allclose(got, reference_edge(soft, 9), atol=1e-5)
    got32 = edge_weight_map(soft.astype(np.float32), kernel_size=9)
    np.testing.assert_allclose(got32, reference_edge(soft.astype(np.float32), 9), atol=1e-5)


def test_integer_binary_values():
    mask = blobs((40, 40), seed=2)
    for scaled in (mask.astype(np.uint8) * 255, mask.astype(np.uint16)):
        np.testing.assert_allclose(edge_weight_map(scaled), reference_edge(mask), atol=1e-5)


def test_kernel_wider_than_image():
    mask = blobs((12, 9), seed=4)
    np.testing.assert_allclose(
        edge_weight_map(mask, kernel_size=31), reference_edge(mask), atol=1e-5
    )


def test_semantic_max_over_classes():
    rng = np.random.default_rng(5)
    mask = np.zeros((60, 60), np.uint8)
    mask[10:40, 5:30] = 1
    mask[30:55, 25:50] = 2
    mask[rng.random(mask.shape) < 0.01] = 3
    got = edge_weight_map(mask, num_classes=4, kernel_size=15)
    per_class = [reference_edge((mask == c).astype(float), 15) for c in range(4)]
    np.testing.assert_allclose(got, np.max(per_class, axis=0), atol=1e-5)
    np.testing.assert_array_equal(got, edge_weight_map(mask, classes=[0, 1, 2, 3], kernel_size=15))


def test_semantic_ignore_index():
    mask = np.zeros((40, 40), np.uint8)
    mask[5:20, 5:20] = 1
    mask[30:, :] = 255
    got = edge_weight_map(mask, num_classes=2, ignore_index=255, kernel_size=9)
    want = np.max([reference_edge((mask == c).astype(float), 9) for c in (0, 1)], axis=0)
    want[mask == 255] = 0
    np.testing.assert_allclose(got, want, atol=1e-5)
    binary = edge_weight_map(mask, ignore_index=255, kernel_size=9)
    want = reference_edge((mask == 1).astype(float), 9)
    want[mask == 255] = 0
    np.testing.assert_allclose(binary, want, atol=1e-5)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="odd"):
        edge_weight_map(np.zeros((8, 8)), kernel_size=4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        edge_weight_map(np.full((8, 8), 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        edge_weight_map(np.full((8, 8), np.nan))
    with pytest.raises(TypeError):
        edge_weight_map(np.zeros((8, 8)), num_classes=2)
    with pytest.raises(ValueError, match="not both"):
        edge_weight_map(np.zeros((8, 8), int), num_classes=2, classes=[0, 1])
