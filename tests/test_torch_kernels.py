"""Torch kernels against the numpy/numba kernels, on CPU and (marked gpu) on CUDA."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import blobs, random_instances, reference_two_nearest
from scipy import ndimage as ndi

from weightmaps import (
    ClassCounts,
    balance_weight_map,
    border_cutoff,
    class_counts,
    edge_weight_map,
    read_mask,
    unet_weight_map,
)
from weightmaps.kernels.edge_torch import _exact_int_dtype
from weightmaps.kernels.nearest import axis_order
from weightmaps.kernels.unet_torch import _pair_keys, _squared_distance
from weightmaps.torch_kernels import (
    BYTES_PER_PIXEL,
    balance_weight_map_torch,
    balance_weight_map_torch_batch,
    class_counts_torch_batch,
    default_max_bytes,
    edge_weight_map_torch,
    edge_weight_map_torch_batch,
    estimate_bytes,
    unet_weight_map_torch,
    unet_weight_map_torch_batch,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=[pytest.mark.gpu, needs_cuda])]


@pytest.fixture(autouse=True, scope="module")
def one_cpu_thread():
    """On a shared CPU, torch's OpenMP threads wait for each other at every
    operation; a U-Net map is ~1000 small ones, which then take seconds."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


def on(array: np.ndarray, device: str) -> torch.Tensor:
    """The array as a tensor on ``device`` (uint16/uint32 widened, as torch lacks them)."""
    if array.dtype in (np.uint16, np.uint32):
        array = array.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def check_map(got: torch.Tensor, want: np.ndarray, device: str, atol: float) -> None:
    assert isinstance(got, torch.Tensor)
    assert got.dtype == torch.float32
    assert got.device.type == torch.device(device).type
    assert tuple(got.shape) == want.shape
    np.testing.assert_allclose(got.cpu().numpy(), want, rtol=0, atol=atol)


def check_unet(labels: np.ndarray, device: str, w0: float = 10.0, **kwargs) -> None:
    want = unet_weight_map(labels, w0=w0, **kwargs)
    ignore = kwargs.pop("ignore_mask", None)
    if ignore is not None:
        kwargs["ignore_mask"] = on(ignore, device)
    got = unet_weight_map_torch(on(labels, device), w0=w0, **kwargs)
    check_map(got, want, device, 1e-5 * w0)


# ----------------------------------------------------------------------------
# U-Net border weights
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(3))
def test_unet_2d_touching_and_border(device, seed):
    check_unet(random_instances((64, 80), 25, seed=seed), device)


@pytest.mark.parametrize("seed", range(2))
def test_unet_3d(device, seed):
    check_unet(random_instances((20, 32, 28), 15, seed=seed), device)


@pytest.mark.parametrize("spacing", [(1.0, 0.5), (2.0, 0.7), 1.5])
def test_unet_2d_anisotropic_spacing(device, spacing):
    check_unet(random_instances((48, 60), 15, seed=3), device, sigma=3.0, spacing=spacing)


def test_unet_3d_anisotropic_spacing(device):
    labels = random_instances((12, 30, 30), 12, seed=5)
    check_unet(labels, device, sigma=2.5, spacing=(2.0, 0.5, 0.6))


@pytest.mark.parametrize("w0, sigma", [(3.0, 40.0), (10.0, 1.0), (25.0, 2.0)])
def test_unet_parameters(device, w0, sigma):
    check_unet(random_instances((40, 44), 8, seed=11), device, w0=w0, sigma=sigma)


def test_unet_non_contiguous_and_wide_ids(device):
    ids = np.random.default_rng(1).permutation(np.arange(1, 5000))[:30]
    labels = random_instances((70, 70), 30, seed=7, ids=ids).astype(np.uint16)
    assert labels.max() > 30
    check_unet(labels, device)
    wide = random_instances((40, 40), 6, seed=2).astype(np.int64)
    wide[wide > 0] += 3_000_000_000  # beyond int32, inside the 32-bit label word
    check_unet(wide, device)


def test_unet_ids_beyond_32_bits_are_renumbered(device):
    labels = random_instances((40, 40), 8, seed=2).astype(np.int64)
    huge = labels.copy()
    huge[huge > 0] = huge[huge > 0] * (1 << 33) + 7  # distinct, > 2^32
    want = unet_weight_map(labels)
    check_map(unet_weight_map_torch(on(huge, device)), want, device, 1e-4)


def test_unet_fewer_than_two_instances(device):
    empty = np.zeros((16, 16), np.uint16)
    check_map(unet_weight_map_torch(on(empty, device)), np.ones((16, 16), np.float32), device, 0)
    one = empty.copy()
    one[4:8, 4:8] = 7
    check_map(unet_weight_map_torch(on(one, device)), np.ones((16, 16), np.float32), device, 0)


def test_unet_thin_and_1d_shapes(device):
    labels = np.array([[0, 1, 0, 0, 2, 0, 0, 0, 3]])
    check_unet(labels, device)
    check_unet(labels.T.copy(), device)
    check_unet(labels[0], device)
    check_unet(np.array([[0, 1, 2, 0]]), device, sigma=0.3)


def test_unet_touching_instances_get_no_border_between_them(device):
    labels = np.zeros((9, 12), np.int32)
    labels[2:7, 1:6] = 1
    labels[2:7, 6:11] = 2
    got = unet_weight_map_torch(on(labels, device))
    assert torch.all(got[on(labels, device) > 0] == 1.0)
    check_unet(labels, device)


@pytest.mark.parametrize("class_weights", [None, {0: 0.5, 1: 3.0}, {1: 2.0}, "balanced"])
def test_unet_class_weights_and_ignore(device, class_weights):
    labels = random_instances((32, 36), 8, seed=4)
    check_unet(labels, device, class_weights=class_weights)
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :8] = True
    ignore[20:, 30:] = True
    check_unet(labels, device, class_weights=class_weights, ignore_mask=ignore)


def test_unet_all_ignored_and_all_background(device):
    labels = random_instances((20, 20), 4, seed=1)
    everything = np.ones(labels.shape, bool)
    check_unet(labels, device, class_weights="balanced", ignore_mask=everything)
    check_unet(np.zeros((8, 8), np.int32), device, class_weights="balanced")


def test_unet_w0_zero(device):
    check_unet(random_instances((30, 30), 6, seed=2), device, w0=0.0, class_weights="balanced")


@pytest.mark.parametrize(
    "shape, spacing",
    [((40, 50), (1.0, 1.0)), ((40, 50), (1.5, 0.8)), ((9, 20, 17), (1.5, 1.0, 0.8))],
)
def test_pair_transform_equals_per_instance_reference(shape, spacing):
    """With a cut-off beyond the image the separable transform is the full one."""
    labels = random_instances(shape, 12, seed=9)
    spacing_ = np.asarray(spacing)
    reach_all = float(np.sqrt(np.sum((np.asarray(shape) * spacing_) ** 2))) + 1
    k1, k2 = _pair_keys(
        torch.from_numpy(labels).long()[None], spacing_, reach_all, axis_order(spacing_)
    )
    d1 = _squared_distance(k1)[0].double().sqrt().numpy()
    d2 = _squared_distance(k2)[0].double().sqrt().numpy()
    r1, r2 = reference_two_nearest(labels, spacing)
    np.testing.assert_allclose(d1, r1, rtol=1e-6)
    np.testing.assert_allclose(d2, r2, rtol=1e-6)
    l1 = (k1 & 0xFFFFFFFF)[0].numpy()
    l2 = (k2 & 0xFFFFFFFF)[0].numpy()
    assert np.all(l1 != l2) and np.all(l1 > 0) and np.all(l2 > 0)
    for label in np.unique(labels[labels > 0]):  # each label lies at its distance
        d = ndi.distance_transform_edt(labels != label, sampling=spacing)
        np.testing.assert_allclose(d[l1 == label], d1[l1 == label], rtol=1e-6)
        np.testing.assert_allclose(d[l2 == label], d2[l2 == label], rtol=1e-6)


def test_unet_matches_per_instance_formula(device):
    """The full reference formula, not only the CPU kernel."""
    labels = random_instances((36, 40), 10, seed=6)
    d1, d2 = reference_two_nearest(labels, None)
    with np.errstate(invalid="ignore"):
        border = 10.0 * np.exp(-((d1 + d2) ** 2) / (2 * 5.0**2))
    border[~np.isfinite(d2) | (labels != 0)] = 0.0
    check_map(unet_weight_map_torch(on(labels, device)), 1.0 + border, device, 1e-4)


def test_unet_cutoff_drops_the_term_as_the_cpu_kernel_does(device):
    """Two sites whose d1 + d2 (their distance) straddles the cut-off."""
    sigma = 2.0
    gap = math.floor(border_cutoff(sigma)) + 1
    for distance in (gap, gap - 1):  # above, then below the cut-off
        labels = np.zeros((3, distance + 3), np.int32)
        labels[1, 1] = 1
        labels[1, distance + 1] = 2
        check_unet(labels, device, sigma=sigma)
        # The term is ~1e-6 w0 here: compare where it is added, not only values.
        got = unet_weight_map_torch(on(labels, device), sigma=sigma).cpu().numpy()
        want = unet_weight_map(labels, sigma=sigma)
        np.testing.assert_array_equal(got > 1, want > 1)
        assert np.any(want > 1) == (distance < border_cutoff(sigma))


def test_unet_batch_equals_per_mask(device):
    masks = np.stack([random_instances((30, 34), 9, seed=s) for s in range(4)])
    masks[2] = 0  # an empty mask in the batch
    ignore = np.zeros(masks.shape, bool)
    ignore[1, :5] = True
    kwargs = dict(sigma=3.0, spacing=(1.2, 0.9), class_weights="balanced")
    got = unet_weight_map_torch_batch(on(masks, device), ignore_mask=on(ignore, device), **kwargs)
    assert got.shape == masks.shape and got.dtype == torch.float32
    for b in range(len(masks)):
        want = unet_weight_map(masks[b], ignore_mask=ignore[b], **kwargs)
        check_map(got[b], want, device, 1e-4)


@pytest.mark.parametrize("shape", [(90, 40), (30, 20, 18)])
def test_unet_groups_and_slabs_change_nothing(device, shape):
    masks = np.stack([random_instances(shape, 20, seed=13 + s) for s in range(3)])
    whole = unet_weight_map_torch_batch(on(masks, device), sigma=2.0)
    pixels = masks[0].size
    for budget in (2 * pixels, pixels // 2, 1):  # groups of 2, slabs, one-row slabs
        got = unet_weight_map_torch_batch(
            on(masks, device), sigma=2.0, max_bytes=budget * BYTES_PER_PIXEL["unet"]
        )
        torch.testing.assert_close(got, whole, rtol=0, atol=1e-6)
    single = unet_weight_map_torch(on(masks[0], device), sigma=2.0, max_bytes=1)
    torch.testing.assert_close(single, whole[0], rtol=0, atol=1e-6)


def test_unet_numpy_input_and_device_keyword(device):
    labels = random_instances((24, 24), 5, seed=1).astype(np.uint16)
    got = unet_weight_map_torch(labels, device=device)
    check_map(got, unet_weight_map(labels), device, 1e-4)
    assert unet_weight_map_torch(labels).device.type == "cpu"
    assert unet_weight_map_torch(labels.astype(bool)).dtype == torch.float32


def test_unet_rejects_bad_input():
    with pytest.raises(TypeError, match="label_instances"):
        unet_weight_map_torch(torch.zeros(4, 4))
    with pytest.raises(TypeError, match="label_instances"):
        unet_weight_map_torch(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match=">= 0"):
        unet_weight_map_torch(-torch.ones(4, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="sigma"):
        unet_weight_map_torch(torch.zeros(4, 4, dtype=torch.int32), sigma=0)
    with pytest.raises(ValueError, match="w0"):
        unet_weight_map_torch(torch.zeros(4, 4, dtype=torch.int32), w0=-1)
    with pytest.raises(ValueError, match="ignore_mask shape"):
        unet_weight_map_torch(torch.zeros(4, 4, dtype=torch.int32), ignore_mask=np.zeros((4, 5)))
    with pytest.raises(ValueError, match="keys"):
        unet_weight_map_torch(torch.zeros(4, 4, dtype=torch.int32), class_weights={2: 1.0})
    with pytest.raises(ValueError, match="balanced"):
        unet_weight_map_torch(torch.zeros(4, 4, dtype=torch.int32), class_weights="inverse")
    with pytest.raises(ValueError, match="spacing"):
        unet_weight_map_torch(torch.zeros(4, 4, dtype=torch.int32), spacing=(1.0, 0.0))
    with pytest.raises(ValueError, match="non-empty"):
        unet_weight_map_torch(torch.zeros(0, 4, dtype=torch.int32))
    with pytest.raises(ValueError, match="batch"):
        unet_weight_map_torch_batch(torch.zeros(4, dtype=torch.int32))


# ----------------------------------------------------------------------------
# Edge weights
# ----------------------------------------------------------------------------


def avg_pool_edge(m: np.ndarray, k: int, alpha: float) -> np.ndarray:
    """weit = 1 + alpha * |avg_pool(m) - m| as F3Net/PraNet write it, in float64."""
    t = torch.from_numpy(np.asarray(m, np.float64))[None, None]
    pool = F.avg_pool2d if m.ndim == 2 else F.avg_pool3d
    box = pool(t, kernel_size=k, stride=1, padding=k // 2, count_include_pad=True)
    return (1 + alpha * torch.abs(box - t))[0, 0].numpy()


@pytest.mark.parametrize("k", [31, 11, 3, 1, 81])
def test_edge_2d_matches_avg_pool2d(device, k):
    mask = blobs((70, 90))
    mask[:, 0] = True  # foreground on the image edge: zero padding counts
    got = edge_weight_map_torch(on(mask, device), kernel_size=k)
    check_map(got, avg_pool_edge(mask, k, 5.0), device, 1e-5)
    check_map(got, edge_weight_map(mask, kernel_size=k), device, 1e-5)


def test_edge_3d_matches_avg_pool3d(device):
    mask = blobs((20, 30, 26), seed=1)
    got = edge_weight_map_torch(on(mask, device), kernel_size=7, alpha=2.0)
    check_map(got, avg_pool_edge(mask, 7, 2.0), device, 1e-5)
    got = edge_weight_map_torch(on(mask, device), kernel_size=31)
    check_map(got, edge_weight_map(mask, kernel_size=31), device, 1e-5)


def test_edge_soft_mask(device):
    rng = np.random.default_rng(3)
    soft = np.clip(rng.normal(0.5, 0.3, (50, 60)), 0, 1)
    got = edge_weight_map_torch(on(soft, device), kernel_size=9)
    check_map(got, avg_pool_edge(soft, 9, 5.0), device, 1e-5)
    check_map(got, edge_weight_map(soft, kernel_size=9), device, 1e-5)
    soft32 = soft.astype(np.float32)
    got = edge_weight_map_torch(on(soft32, device), kernel_size=31)
    check_map(got, edge_weight_map(soft32, kernel_size=31), device, 1e-5)


def test_edge_integer_binary_and_ignore(device):
    mask = blobs((40, 50), seed=2).astype(np.uint8) * 255
    mask[:6, :6] = 7  # ignore value
    for kwargs in ({}, {"ignore_index": 7}):
        got = edge_weight_map_torch(on(mask, device), kernel_size=11, **kwargs)
        check_map(got, edge_weight_map(mask, kernel_size=11, **kwargs), device, 1e-5)


def test_edge_semantic(device):
    rng = np.random.default_rng(4)
    semantic = rng.integers(0, 4, (6, 8)).repeat(6, 0).repeat(6, 1).astype(np.uint8)
    semantic[:5, :5] = 255
    for kwargs in (
        {"num_classes": 4},
        {"classes": [0, 2, 3]},
        {"num_classes": 6, "ignore_index": 255},
        {"classes": [0, 1, 2, 3, 255], "ignore_index": 255},
    ):
        got = edge_weight_map_torch(on(semantic, device), kernel_size=7, **kwargs)
        check_map(got, edge_weight_map(semantic, kernel_size=7, **kwargs), device, 1e-5)


def test_edge_batch_equals_per_mask_and_slabs(device):
    masks = np.stack([blobs((40, 44), seed=s) for s in range(3)])
    got = edge_weight_map_torch_batch(on(masks, device), kernel_size=15)
    for b in range(3):
        check_map(got[b], edge_weight_map(masks[b], kernel_size=15), device, 1e-5)
    for budget in (2 * masks[0].size, masks[0].size // 3, 1):
        slabbed = edge_weight_map_torch_batch(
            on(masks, device), kernel_size=15, max_bytes=budget * BYTES_PER_PIXEL["edge"]
        )
        torch.testing.assert_close(slabbed, got, rtol=0, atol=1e-6)


def test_edge_running_sums_widen_before_they_could_overflow():
    assert _exact_int_dtype((2048, 2048), 31) == torch.int32
    assert _exact_int_dtype((512, 512, 512), 31) == torch.int32
    assert _exact_int_dtype((4096, 4096, 4096), 31) == torch.int32
    assert _exact_int_dtype((2, 2, 3_000_000), 31) == torch.int64


def test_edge_rejects_bad_input():
    with pytest.raises(ValueError, match="odd"):
        edge_weight_map_torch(torch.zeros(5, 5), kernel_size=4)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        edge_weight_map_torch(torch.full((5, 5), 2.0))
    with pytest.raises(ValueError, match="not both"):
        edge_weight_map_torch(torch.zeros(5, 5, dtype=torch.int64), classes=[0], num_classes=2)
    with pytest.raises(TypeError, match="integer class ids"):
        edge_weight_map_torch(torch.zeros(5, 5), num_classes=2)
    with pytest.raises(ValueError, match="non-empty"):
        edge_weight_map_torch(torch.zeros(0, 5))


# ----------------------------------------------------------------------------
# Class-balance weights
# ----------------------------------------------------------------------------


def semantic_mask(shape=(30, 40), seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mask = rng.choice([0, 1, 2, 5], size=shape, p=[0.6, 0.25, 0.1, 0.05]).astype(np.uint8)
    mask[:3] = 255
    return mask


@pytest.mark.parametrize("mode", ["inverse", "median", "enet", "beta"])
def test_balance_every_mode(device, mode):
    mask = semantic_mask()
    for kwargs in ({}, {"ignore_index": 255}):
        got = balance_weight_map_torch(on(mask, device), mode=mode, **kwargs)
        check_map(got, balance_weight_map(mask, mode=mode, **kwargs), device, 1e-5)
    binary = blobs((20, 24, 18), seed=5)  # bool, 3-D
    got = balance_weight_map_torch(on(binary, device), mode=mode)
    check_map(got, balance_weight_map(binary, mode=mode), device, 1e-5)


@pytest.mark.parametrize("mode", ["inverse", "median", "enet", "beta"])
def test_balance_dataset_counts(device, mode):
    masks = np.stack([semantic_mask(seed=s) for s in range(3)])
    counts = sum(class_counts(m, ignore_index=255) for m in masks)
    got = balance_weight_map_torch_batch(
        on(masks, device), mode=mode, ignore_index=255, counts=counts
    )
    for b in range(3):
        want = balance_weight_map(masks[b], mode=mode, ignore_index=255, counts=counts)
        check_map(got[b], want, device, 1e-5)
    plain = {0: 10, 1: 5, 2: 3, 5: 1}
    got = balance_weight_map_torch(on(masks[0], device), mode=mode, ignore_index=255, counts=plain)
    want = balance_weight_map(masks[0], mode=mode, ignore_index=255, counts=plain)
    check_map(got, want, device, 1e-5)


def test_balance_batch_equals_per_mask(device):
    masks = np.stack([semantic_mask(seed=s) for s in range(4)])
    masks[1][masks[1] == 5] = 2  # a class absent from one mask
    masks[3] = 255  # all ignored
    got = balance_weight_map_torch_batch(on(masks, device), mode="median", ignore_index=255)
    for b in range(4):
        want = balance_weight_map(masks[b], mode="median", ignore_index=255)
        check_map(got[b], want, device, 1e-5)


def test_balance_sparse_and_negative_ids(device):
    mask = np.array([[0, 70000, 70000], [-3, 0, 0]], np.int64)
    for kwargs in ({}, {"ignore_index": -3}):
        got = balance_weight_map_torch(on(mask, device), **kwargs)
        check_map(got, balance_weight_map(mask, **kwargs), device, 1e-6)


def test_balance_class_missing_from_counts_is_an_error(device):
    with pytest.raises(ValueError, match="no count or weight"):
        balance_weight_map_torch(on(np.array([[0, 1, 2]]), device), counts={0: 3, 1: 1})


def test_balance_rejects_bad_input():
    with pytest.raises(TypeError, match="integer class ids"):
        balance_weight_map_torch(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="unknown balance mode"):
        balance_weight_map_torch(torch.zeros(3, 3, dtype=torch.int64), mode="nope")


def test_class_counts_torch_batch(device):
    masks = np.stack([semantic_mask(seed=s) for s in range(3)])
    got = class_counts_torch_batch(on(masks, device), ignore_index=255)
    assert got == [class_counts(m, ignore_index=255) for m in masks]
    assert isinstance(sum(got), ClassCounts)


# ----------------------------------------------------------------------------
# Memory estimates, devices
# ----------------------------------------------------------------------------


def test_estimate_bytes():
    assert estimate_bytes((512, 512), "unet", batch=2) == 2 * 512 * 512 * BYTES_PER_PIXEL["unet"]
    assert estimate_bytes((10, 10), "balance") == 100 * BYTES_PER_PIXEL["balance"]
    assert estimate_bytes((64, 64, 64), "all") == estimate_bytes((64, 64, 64), "unet")
    assert estimate_bytes((100, 100), "edge") > 100 * 100 * BYTES_PER_PIXEL["edge"]
    with pytest.raises(ValueError, match="unknown kind"):
        estimate_bytes((4, 4), "nope")
    assert default_max_bytes("cpu") > 0


@pytest.mark.gpu
@needs_cuda
def test_gpu_memory_stays_within_the_estimate():
    labels = torch.from_numpy(random_instances((512, 512), 300, radius=(4, 12), seed=1)).cuda()
    masks = torch.stack([labels] * 4)
    for kind, run in (
        ("unet", lambda: unet_weight_map_torch_batch(masks)),
        ("edge", lambda: edge_weight_map_torch_batch(masks > 0)),
        ("balance", lambda: balance_weight_map_torch_batch(masks > 0)),
    ):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        run()
        torch.cuda.synchronize()
        peak = torch.cuda.max_memory_allocated() - before
        assert peak <= estimate_bytes((512, 512), kind, batch=4), kind
    # A budget far below the batch's need: slabs, and still the same map.
    whole = unet_weight_map_torch_batch(masks)
    torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated()
    small = unet_weight_map_torch_batch(masks, max_bytes=8 << 20)
    assert torch.cuda.max_memory_allocated() - before < 64 << 20
    torch.testing.assert_close(small, whole, rtol=0, atol=1e-6)


# ----------------------------------------------------------------------------
# Real data
# ----------------------------------------------------------------------------


@pytest.mark.realdata
def test_realdata_stardist_2d_and_3d(realdata, device):
    mask2d = read_mask(realdata / "stardist" / "mask2d.tif")
    check_unet(mask2d, device)
    check_unet(mask2d, device, sigma=3.0, class_weights="balanced")
    check_map(
        edge_weight_map_torch(on(mask2d > 0, device)), edge_weight_map(mask2d > 0), device, 1e-5
    )
    check_map(
        balance_weight_map_torch(on(mask2d > 0, device), mode="beta"),
        balance_weight_map(mask2d > 0, mode="beta"),
        device,
        1e-5,
    )
    mask3d = read_mask(realdata / "stardist" / "mask3d.tif")
    check_unet(mask3d, device)
    check_unet(mask3d, device, sigma=3.0, spacing=(2.0, 1.0, 1.0))
    check_map(
        edge_weight_map_torch(on(mask3d > 0, device), kernel_size=15),
        edge_weight_map(mask3d > 0, kernel_size=15),
        device,
        1e-5,
    )
