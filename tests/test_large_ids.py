"""Instance ids at the ends of the integer range give the maps of small ids.

Only which pixels share an id matters, so a mask with uint64 ids near 2**63
and 2**64 - 1 must give exactly the maps of the same mask numbered 1..n in
the ids' order. The ids are chosen to break naive casts: 2**64 - 1 is -1 as
int64 (the kernels' "no label"), 2**63 is the most negative int64, 2**64 - 2
and 2**64 - 1 are one float64, and 5 and 2**32 + 5 share their low 32 bits.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import random_instances, reference_two_nearest
from weightmaps.cli.main import main

from weightmaps import label_instances, separate_instances, unet_weight_map
from weightmaps.kernels.nearest import nearest_two_instances
from weightmaps.settings import MapSettings
from weightmaps.stats import mask_stats, touching_pairs

HUGE_IDS = [
    5,
    2**32 + 5,
    2**53 + 1,
    2**53 + 2,
    2**63 - 2,
    2**63 - 1,
    2**63,
    2**63 + 1,
    2**64 - 3,
    2**64 - 2,
    2**64 - 1,
]


def _huge(small: np.ndarray, seed: int = 0) -> np.ndarray:
    """``small`` (ids 1..n) with its ids replaced by HUGE_IDS, shuffled."""
    n = int(small.max())
    rng = np.random.default_rng(seed)
    ids = [HUGE_IDS[i] for i in rng.permutation(len(HUGE_IDS))[:n]]
    lut = np.array([0, *ids], np.uint64)
    return lut[small]


def _ranked(labels: np.ndarray) -> np.ndarray:
    """The oracle: every id replaced by its rank among the ids, in Python ints."""
    rank = {v: i + 1 for i, v in enumerate(sorted({int(v) for v in labels.ravel()} - {0}))}
    out = np.zeros(labels.shape, np.uint16)
    for v, r in rank.items():
        out[labels == np.uint64(v)] = r
    return out


# Many touching balls, and two separate pairs of dots near the edges.
SMALL_2D = random_instances((40, 56), 11, radius=(2.0, 7.0), seed=4).astype(np.uint16)
HUGE_2D = _huge(SMALL_2D)
SMALL_3D = random_instances((14, 22, 20), 11, radius=(2.0, 5.0), seed=5).astype(np.uint16)
HUGE_3D = _huge(SMALL_3D, seed=1)


def test_the_masks_hold_every_troublesome_id():
    assert set(np.unique(HUGE_2D).tolist()) == {0, *HUGE_IDS}
    assert set(np.unique(HUGE_3D).tolist()) == {0, *HUGE_IDS}
    assert np.uint64(2**64 - 1).astype(np.int64) == -1  # the kernels' "no label"


def _unet_oracle(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    d1, d2 = reference_two_nearest(labels)
    s = d1 + d2
    term = np.where((labels == 0) & np.isfinite(s), w0 * np.exp(-(s**2) / (2 * sigma**2)), 0.0)
    return 1.0 + term


def test_issue_example_three_instances():
    # Three objects, one id of each half of the uint64 range: the map of the
    # same mask numbered 1..3 (was off by 2.37 with w0 = 10).
    small = np.zeros((12, 30), np.uint16)
    small[3:9, 2:8], small[3:9, 12:17], small[3:9, 22:28] = 1, 2, 3
    huge = np.array([0, 7, 2**63, 2**64 - 1], np.uint64)[small]
    w = unet_weight_map(huge)
    assert w.tobytes() == unet_weight_map(small).tobytes()
    np.testing.assert_allclose(w, _unet_oracle(small), atol=1e-5 * 10)


@pytest.mark.parametrize("huge", [HUGE_2D, HUGE_3D], ids=["2d", "3d"])
def test_unet_numpy_kernel(huge):
    small = _ranked(huge)
    w = unet_weight_map(huge)
    assert w.tobytes() == unet_weight_map(small).tobytes()
    np.testing.assert_allclose(w, _unet_oracle(small), atol=1e-5 * 10)
    ignore = np.zeros(huge.shape, bool)
    ignore.flat[::7] = True
    options = dict(class_weights="balanced", ignore_mask=ignore, sigma=3.0, w0=4.0)
    assert unet_weight_map(huge, **options).tobytes() == unet_weight_map(small, **options).tobytes()


def test_unet_int64_ids_near_the_top():
    # Signed ids up to 2**63 - 1 need no renumbering and still give the map.
    small = SMALL_2D
    huge = np.array([0, *range(2**63 - 11, 2**63)], np.int64)[small]
    assert unet_weight_map(huge).tobytes() == unet_weight_map(small).tobytes()


def test_nearest_two_instances_reports_the_original_ids():
    small = _ranked(HUGE_2D)
    d1, l1, d2, l2 = nearest_two_instances(HUGE_2D)
    s1, k1, s2, k2 = nearest_two_instances(small)
    np.testing.assert_array_equal(d1, s1)
    np.testing.assert_array_equal(d2, s2)
    back = np.zeros(int(small.max()) + 1, np.uint64)
    back[small.ravel()] = HUGE_2D.ravel()
    assert l1.dtype == np.uint64
    np.testing.assert_array_equal(l1, back[k1])
    np.testing.assert_array_equal(l2, back[k2])
    # A mask without background: every pixel is its own nearest id.
    full = np.array([[2**64 - 1, 2**63, 3]], np.uint64)
    _, l1, _, l2 = nearest_two_instances(full)
    np.testing.assert_array_equal(l1, full)
    np.testing.assert_array_equal(l2, np.array([[2**63, 2**64 - 1, 2**63]], np.uint64))


def test_separate_instances_keeps_ids_and_carves_as_small_ids():
    for huge in (HUGE_2D, HUGE_3D):
        small = _ranked(huge)
        carved = separate_instances(huge)
        expected = separate_instances(small)
        assert carved.dtype == np.uint64
        np.testing.assert_array_equal(carved != 0, expected != 0)
        np.testing.assert_array_equal(carved, np.where(expected != 0, huge, 0))
        assert (expected != small).any()  # something was carved


@pytest.mark.parametrize(
    "ids",
    [
        (2**53 + 1, 2**53 + 2, 2**53 + 3),
        (2**62, 2**62 + 1, 2**63 - 1),
        (2**63 - 3, 2**63 - 2, 2**63 - 1),
    ],
)
def test_separate_instances_large_int64_ids(ids):
    # ndimage filters go through float64: these ids used to merge or lose
    # the image edge, carving nothing or everything.
    a, b, c = ids
    row = np.array([[a, a, b, b, 0, c]], np.int64)
    np.testing.assert_array_equal(separate_instances(row), [[a, 0, 0, b, 0, c]])


def test_separate_instances_refuses_negative_ids():
    with pytest.raises(ValueError, match=">= 0"):
        separate_instances(np.array([[1, -1, 0]]))


def test_label_instances_tells_huge_values_apart():
    # Two touching regions of values that are one float64: two instances.
    semantic = np.array([[2**64 - 1, 2**64 - 1, 2**64 - 2, 2**64 - 2, 0, 2**63]], np.uint64)
    np.testing.assert_array_equal(label_instances(semantic), [[1, 1, 2, 2, 0, 3]])
    np.testing.assert_array_equal(
        label_instances(semantic, ignore_value=2**64 - 2), [[1, 1, 0, 0, 0, 2]]
    )
    np.testing.assert_array_equal(label_instances(HUGE_2D), label_instances(_ranked(HUGE_2D)))


def test_stats_count_huge_ids_as_small_ones():
    small = _ranked(HUGE_2D)
    assert touching_pairs(HUGE_2D) == touching_pairs(small) > 0
    settings = MapSettings(mask_type="instance")
    got, want = mask_stats(HUGE_2D, settings), mask_stats(small, settings)
    assert (got.instances, got.touching_pairs) == (want.instances, want.touching_pairs)
    assert got.instances == len(HUGE_IDS)
    assert got.counts == want.counts


# --------------------------------------------------------------------------
# torch kernels (on the CPU here)


def test_torch_kernels_renumber_uint64():
    torch = pytest.importorskip("torch")
    from weightmaps import torch_kernels as tk

    small = _ranked(HUGE_2D)
    reference = tk.unet_weight_map_torch(small)
    for given in (HUGE_2D, torch.from_numpy(HUGE_2D)):
        w = tk.unet_weight_map_torch(given)
        assert w.numpy().tobytes() == reference.numpy().tobytes()
    np.testing.assert_allclose(reference.numpy(), unet_weight_map(small), atol=1e-5 * 10)
    # A batch whose masks hold different huge ids, ids repeated across masks.
    other = _huge(SMALL_2D[::-1].copy(), seed=3)
    batch = np.stack([HUGE_2D, other])
    expected = tk.unet_weight_map_torch_batch(np.stack([small, _ranked(other)]))
    for given in (batch, torch.from_numpy(batch)):
        w = tk.unet_weight_map_torch_batch(given)
        assert w.numpy().tobytes() == expected.numpy().tobytes()
    # 3-D, through slabs (a tiny budget) as well.
    small3 = _ranked(HUGE_3D)
    for max_bytes in (None, 20_000):
        w = tk.unet_weight_map_torch(torch.from_numpy(HUGE_3D), max_bytes=max_bytes)
        ref = tk.unet_weight_map_torch(small3, max_bytes=max_bytes)
        assert w.numpy().tobytes() == ref.numpy().tobytes()


def test_torch_uint64_tensor_within_int64_is_read_as_is():
    torch = pytest.importorskip("torch")
    from weightmaps import torch_kernels as tk

    ids = np.array([0, 3, 2**40, 2**63 - 1], np.uint64)[np.array([[1, 0, 2, 0, 3]])]
    w = tk.unet_weight_map_torch(torch.from_numpy(ids))
    assert w.numpy().tobytes() == tk.unet_weight_map_torch(ids.astype(np.int64)).numpy().tobytes()


def test_torch_class_maps_refuse_uint64_beyond_int64():
    torch = pytest.importorskip("torch")
    from weightmaps import torch_kernels as tk

    mask = np.array([[0, 1, 2**63]], np.uint64)
    for given in (mask, torch.from_numpy(mask)):
        with pytest.raises(ValueError, match="beyond the int64 range"):
            tk.edge_weight_map_torch(given, classes=[0, 1])
        with pytest.raises(ValueError, match="beyond the int64 range"):
            tk.balance_weight_map_torch(given)
    # Within the range a uint64 tensor is read as its values.
    fine = torch.from_numpy(np.array([[0, 1, 2**40]], np.uint64))
    np.testing.assert_array_equal(
        tk.balance_weight_map_torch(fine).numpy(),
        tk.balance_weight_map_torch(fine.numpy().astype(np.int64)).numpy(),
    )


# --------------------------------------------------------------------------
# chunked kernels


def test_chunked_kernels_with_huge_ids():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    chunked = pytest.importorskip("weightmaps.chunked")

    with dask.config.set(scheduler="synchronous"):
        for huge, chunks in ((HUGE_2D, (13, 17)), (HUGE_3D, (5, 9, 8))):
            small = _ranked(huge)
            w = chunked.unet_weight_map(da.from_array(huge, chunks=chunks), sigma=2.0).compute()
            ref = chunked.unet_weight_map(da.from_array(small, chunks=chunks), sigma=2.0).compute()
            assert w.tobytes() == ref.tobytes()
            np.testing.assert_allclose(w, unet_weight_map(small, sigma=2.0), atol=1e-5 * 10)
            carved = chunked.separate_instances(da.from_array(huge, chunks=chunks)).compute()
            np.testing.assert_array_equal(carved, separate_instances(huge))
            labelled = chunked.label_instances(da.from_array(huge, chunks=chunks)).compute()
            expected = label_instances(small)
            # Same regions, maybe numbered differently.
            pairs = np.unique(np.stack([labelled.ravel(), expected.ravel()]), axis=1)
            assert pairs.shape[1] == len(np.unique(expected))


# --------------------------------------------------------------------------
# weightmaps generate on uint64 mask files


def _generate(masks, out, *args):
    result = CliRunner().invoke(
        main,
        ["generate", str(masks), str(out), "--workers", "1", "--mask-type", "instance", *args],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    "args",
    [
        ("--separate-touching",),
        ("--separate-touching", "--device", "torch:cpu"),
        ("--separate-touching", "--chunked-above", "0", "--chunks", "16"),
    ],
    ids=["numpy", "torch", "chunked"],
)
def test_generate_uint64_files(tmp_path, args):
    small = _ranked(HUGE_2D)
    for name, labels in (("big", HUGE_2D), ("small", small)):
        folder = tmp_path / name
        folder.mkdir()
        tifffile.imwrite(folder / "a.tif", labels)
        np.save(folder / "b.npy", labels)
    big = _generate(tmp_path / "big", tmp_path / "out_big", *args)
    ref = _generate(tmp_path / "small", tmp_path / "out_small", *args)
    chunked = "--chunked-above" in args
    for stem, chunked_file in (("a", chunked), ("b", False)):
        for kind in ("unet", "edge", "balance", "target"):
            if chunked_file:
                zarr = pytest.importorskip("zarr")
                got = np.asarray(zarr.open(str(big / f"{stem}.{kind}.zarr"), mode="r"))
                want = np.asarray(zarr.open(str(ref / f"{stem}.{kind}.zarr"), mode="r"))
            else:
                got = tifffile.imread(big / f"{stem}.{kind}.tif")
                want = tifffile.imread(ref / f"{stem}.{kind}.tif")
            if kind == "target":  # the carved target keeps the file's own ids
                assert got.dtype == np.uint64
                np.testing.assert_array_equal(got, np.where(want != 0, HUGE_2D, 0))
            else:
                assert got.dtype == np.float32
                assert got.tobytes() == want.tobytes(), (stem, kind)
