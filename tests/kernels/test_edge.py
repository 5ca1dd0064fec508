"""Edge map on every backend against PyTorch's own avg_pool formula.

Each test runs on numpy, torch (CPU; CUDA under the ``gpu`` marker) and dask
(odd chunks). A twin must also equal the numpy map within 1e-5. Batches and
budgets: ``test_edge_torch.py``; chunkings: ``test_edge_dask.py``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import blobs
from kernel_backends import NUMPY, assert_agrees_with_numpy, backend_fixture

from weightmaps import read_mask

backend = backend_fixture("edge_weight_map")
twin = backend_fixture("edge_weight_map", twins=True)


def reference_edge(m: np.ndarray, k: int = 31, alpha: float = 5.0) -> np.ndarray:
    """weit = 1 + alpha * |avg_pool(m) - m|, as in F3Net/PraNet, in float64."""
    t = torch.from_numpy(np.asarray(m, np.float64))[None, None]
    pool = F.avg_pool2d if m.ndim == 2 else F.avg_pool3d
    box = pool(t, kernel_size=k, stride=1, padding=k // 2, count_include_pad=True)
    return (1 + alpha * torch.abs(box - t))[0, 0].numpy()


def edge_map(backend, mask, **kwargs) -> np.ndarray:
    """The backend's map, float32, and (for a twin) numpy's within 1e-5."""
    got = backend.edge_weight_map(mask, **kwargs)
    assert got.dtype == np.float32 and got.shape == mask.shape
    if not backend.is_numpy:
        assert_agrees_with_numpy(backend, got, NUMPY.edge_weight_map(mask, **kwargs), atol=1e-5)
    return got


@pytest.mark.parametrize("k", [31, 11, 3, 1, 81])
def test_binary_2d_matches_avg_pool2d(backend, k):
    mask = blobs((70, 90))
    mask[:, 0] = True  # foreground on the image edge: zero padding counts
    got = edge_map(backend, mask, kernel_size=k, alpha=5.0)
    np.testing.assert_allclose(got, reference_edge(mask, k), atol=1e-5)


def test_edge_pixels_get_extra_weight(backend):
    mask = np.ones((40, 40), bool)
    got = edge_map(backend, mask, kernel_size=31)
    # A full mask has no edges inside, but at the image border the zero
    # padding pulls the mean down: the corner sees 16 x 16 of 31 x 31 pixels.
    assert got[20, 20] < got[0, 20] < got[0, 0]
    assert got[0, 0] == pytest.approx(1 + 5 * (1 - 256 / 961), abs=1e-5)


def test_3d_matches_avg_pool3d(backend):
    mask = blobs((20, 30, 26), seed=1)
    got = edge_map(backend, mask, kernel_size=7, alpha=2.0)
    np.testing.assert_allclose(got, reference_edge(mask, 7, 2.0), atol=1e-5)
    edge_map(backend, mask, kernel_size=31)  # wider than avg_pool3d allows: twins vs numpy


def test_soft_mask_stays_soft(backend):
    rng = np.random.default_rng(3)
    soft = np.clip(rng.normal(0.5, 0.3, (50, 60)), 0, 1)
    got = edge_map(backend, soft, kernel_size=9)
    np.testing.assert_allclose(got, reference_edge(soft, 9), atol=1e-5)
    soft32 = soft.astype(np.float32)
    got32 = edge_map(backend, soft32, kernel_size=9)
    np.testing.assert_allclose(got32, reference_edge(soft32, 9), atol=1e-5)
    got32 = edge_map(backend, soft32, kernel_size=31)
    np.testing.assert_allclose(got32, reference_edge(soft32, 31), atol=1e-5)


def test_integer_binary_values(backend):
    mask = blobs((40, 40), seed=2)
    for scaled in (mask.astype(np.uint8) * 255, mask.astype(np.uint16)):
        np.testing.assert_allclose(edge_map(backend, scaled), reference_edge(mask), atol=1e-5)


def test_kernel_wider_than_image(backend):
    mask = blobs((12, 9), seed=4)
    np.testing.assert_allclose(
        edge_map(backend, mask, kernel_size=31), reference_edge(mask), atol=1e-5
    )


def test_semantic_max_over_classes(backend):
    rng = np.random.default_rng(5)
    mask = np.zeros((60, 60), np.uint8)
    mask[10:40, 5:30] = 1
    mask[30:55, 25:50] = 2
    mask[rng.random(mask.shape) < 0.01] = 3
    got = edge_map(backend, mask, num_classes=4, kernel_size=15)
    per_class = [reference_edge((mask == c).astype(float), 15) for c in range(4)]
    np.testing.assert_allclose(got, np.max(per_class, axis=0), atol=1e-5)
    np.testing.assert_array_equal(
        got, edge_map(backend, mask, classes=[0, 1, 2, 3], kernel_size=15)
    )


def test_semantic_ignore_index(backend):
    mask = np.zeros((40, 40), np.uint8)
    mask[5:20, 5:20] = 1
    mask[30:, :] = 255
    got = edge_map(backend, mask, num_classes=2, ignore_index=255, kernel_size=9)
    want = np.max([reference_edge((mask == c).astype(float), 9) for c in (0, 1)], axis=0)
    want[mask == 255] = 0
    np.testing.assert_allclose(got, want, atol=1e-5)
    binary = edge_map(backend, mask, ignore_index=255, kernel_size=9)
    want = reference_edge((mask == 1).astype(float), 9)
    want[mask == 255] = 0
    np.testing.assert_allclose(binary, want, atol=1e-5)


def test_rejects_bad_input(backend):
    with pytest.raises(ValueError, match="odd"):
        backend.edge_weight_map(np.zeros((8, 8)), kernel_size=4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        backend.edge_weight_map(np.full((8, 8), 2.0))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        backend.edge_weight_map(np.full((8, 8), np.nan))
    with pytest.raises(TypeError, match="integer class ids"):
        backend.edge_weight_map(np.zeros((8, 8)), num_classes=2)
    with pytest.raises(ValueError, match="not both"):
        backend.edge_weight_map(np.zeros((8, 8), int), num_classes=2, classes=[0, 1])
    with pytest.raises(ValueError, match="non-empty"):
        backend.edge_weight_map(np.zeros((0, 5)))


# ----------------------------------------------------------------------------
# Twins against the numpy map where no closed form is written here
# ----------------------------------------------------------------------------


def test_integer_binary_with_a_third_value_and_ignore(twin):
    mask = blobs((40, 50), seed=2).astype(np.uint8) * 255
    mask[:6, :6] = 7  # ignore value
    for kwargs in ({}, {"ignore_index": 7}):
        edge_map(twin, mask, kernel_size=11, **kwargs)


def test_semantic_class_choices(twin):
    rng = np.random.default_rng(4)
    semantic = rng.integers(0, 4, (6, 8)).repeat(6, 0).repeat(6, 1).astype(np.uint8)
    semantic[:5, :5] = 255
    for kwargs in (
        {"num_classes": 4},
        {"classes": [0, 2, 3]},
        {"num_classes": 6, "ignore_index": 255},
        {"classes": [0, 1, 2, 3, 255], "ignore_index": 255},
    ):
        edge_map(twin, semantic, kernel_size=7, **kwargs)


# ----------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------


@pytest.mark.realdata
def test_realdata_stardist_2d_and_3d(realdata, backend):
    mask2d = read_mask(realdata / "stardist" / "mask2d.tif") > 0
    np.testing.assert_allclose(edge_map(backend, mask2d), reference_edge(mask2d), atol=1e-5)
    mask3d = read_mask(realdata / "stardist" / "mask3d.tif") > 0
    np.testing.assert_allclose(
        edge_map(backend, mask3d, kernel_size=15), reference_edge(mask3d, 15), atol=1e-5
    )
