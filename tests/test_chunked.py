"""Chunked kernels (weightmaps.chunked) against the in-memory ones.

Every chunked map must equal the in-memory map of the whole array for any
chunking: chunks smaller than the objects and than the halo, odd and uneven
chunk shapes, anisotropic spacing, objects on the volume edge.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import random_instances
from scipy import ndimage as ndi

import weightmaps as wm

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
chunked = pytest.importorskip("weightmaps.chunked")
_dask_common = pytest.importorskip("weightmaps.kernels._dask_common")


@pytest.fixture(autouse=True)
def synchronous_scheduler():
    # Deterministic and cheap on a small machine; the chunking is what is tested.
    with dask.config.set(scheduler="synchronous"):
        yield


def _sparse_ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).choice(np.arange(1, 5000), n, replace=False)


# Non-contiguous ids, overlapping balls (many touch), centres up to the edges.
LABELS_2D = random_instances((90, 77), 40, radius=(2.0, 10.0), seed=1, ids=_sparse_ids(40, 1))
LABELS_3D = random_instances((24, 50, 44), 40, radius=(2.0, 7.0), seed=2, ids=_sparse_ids(40, 2))
# Small dots about a cut-off apart: many background pixels whose d1 + d2 is
# just under the cut-off, where a halo a few pixels short would show.
DOTS_2D = random_instances((120, 110), 50, radius=(0.5, 1.5), seed=11, ids=_sparse_ids(50, 11))
DOTS_3D = random_instances((30, 60, 50), 60, radius=(0.5, 1.5), seed=12)


def _random_chunks(shape: tuple[int, ...], rng: np.random.Generator, largest: int = 12):
    """An uneven chunking: every chunk 1..largest pixels."""
    out = []
    for n in shape:
        sizes = []
        while sum(sizes) < n:
            sizes.append(int(min(rng.integers(1, largest + 1), n - sum(sizes))))
        out.append(tuple(sizes))
    return tuple(out)


def _compare(lazy, x, expected, *, rtol=1e-6, atol=0.0):
    """Lazy dask array with the chunks of ``x`` and the in-memory values."""
    assert isinstance(lazy, da.Array)
    assert lazy.chunks == x.chunks
    got = lazy.compute()
    assert got.dtype == expected.dtype
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def _assert_same_partition(got: np.ndarray, expected: np.ndarray) -> None:
    """Same regions, whatever the ids: zero on zero, and a bijection of ids."""
    np.testing.assert_array_equal(got == 0, expected == 0)
    pairs = np.unique(np.stack([got.ravel(), expected.ravel()]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))
    ids = np.unique(got[got != 0])
    np.testing.assert_array_equal(ids, np.arange(1, len(ids) + 1))  # 1..n


def test_import_weightmaps_does_not_import_dask():
    code = "import weightmaps, sys; assert 'dask' not in sys.modules, 'dask imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    ("chunks", "depth", "expected"),
    [
        ((7,) * 9 + (1,), 28, (28, 36)),
        ((3, 3), 10, (6,)),
        ((5, 1, 9), 0, (5, 1, 9)),
        ((30, 1, 40, 19), 12, (30, 41, 19)),
    ],
)
def test_chunks_thinner_than_the_halo_are_merged(chunks, depth, expected):
    assert _dask_common._coarsen(chunks, depth) == expected


def test_halo_depth_follows_the_cutoff_and_spacing():
    cutoff = wm.border_cutoff(2.0)
    assert chunked.halo_depth(2.0, (2.0, 1.0, 0.5), ndim=3) == tuple(
        int(np.ceil(cutoff / s)) + 1 for s in (2.0, 1.0, 0.5)
    )


# ---------------------------------------------------------------- U-Net


UNET_CASES = {
    # sigma 5: halo 28 spans four chunks of 7 (merged for the computation).
    "2d-halo-over-several-chunks": (LABELS_2D, 7, dict(w0=10.0, sigma=5.0)),
    "2d-odd-chunks": (LABELS_2D, (9, 13), dict(w0=7.0, sigma=2.0)),
    "2d-uneven-chunks": (LABELS_2D, ((30, 1, 40, 19), (7, 50, 20)), dict(sigma=2.5)),
    "2d-anisotropic": (LABELS_2D, (11, 5), dict(sigma=2.0, spacing=(0.7, 1.6))),
    "3d": (LABELS_3D, (6, 10, 9), dict(sigma=2.0)),
    "3d-anisotropic": (LABELS_3D, (5, 7, 6), dict(sigma=1.5, spacing=(2.0, 1.0, 0.8))),
    "2d-dots": (DOTS_2D, (9, 13), dict(sigma=2.5)),
    "3d-dots-anisotropic": (DOTS_3D, (5, 7, 6), dict(sigma=2.0, spacing=(2.0, 1.0, 0.8))),
    # sigma 5 on 24 slices: axis 0 stays one chunk, needing no halo.
    "3d-axis-shorter-than-halo": (LABELS_3D, (8, 16, 16), dict(sigma=5.0)),
    "no-border-term": (LABELS_2D, 10, dict(w0=0.0)),
}


@pytest.mark.parametrize("case", list(UNET_CASES))
def test_unet_equals_in_memory(case):
    labels, chunks, kwargs = UNET_CASES[case]
    x = da.from_array(labels, chunks=chunks)
    w0 = kwargs.get("w0", 10.0)
    _compare(
        chunked.unet_weight_map(x, **kwargs),
        x,
        wm.unet_weight_map(labels, **kwargs),
        atol=1e-6 * w0,
    )


def test_unet_ignore_mask_and_balanced_class_weights():
    labels = LABELS_3D
    rng = np.random.default_rng(3)
    ignore = rng.random(labels.shape) < 0.1
    x = da.from_array(labels, chunks=(7, 9, 11))
    # The ignore mask may come chunked differently: it follows the labels.
    ign = da.from_array(ignore, chunks=(5, 20, 13))
    expected = wm.unet_weight_map(labels, sigma=2.0, class_weights="balanced", ignore_mask=ignore)
    got = chunked.unet_weight_map(x, sigma=2.0, class_weights="balanced", ignore_mask=ign)
    _compare(got, x, expected, atol=1e-5)
    assert (got.compute()[ignore] == 0).all()


def test_unet_explicit_class_weights_with_numpy_ignore_mask():
    labels = LABELS_2D
    ignore = np.zeros(labels.shape, bool)
    ignore[:, :5] = True  # along the volume edge
    x = da.from_array(labels, chunks=(8, 12))
    kwargs = dict(sigma=3.0, class_weights={0: 0.5, 1: 2.0}, ignore_mask=ignore)
    _compare(
        chunked.unet_weight_map(x, **kwargs), x, wm.unet_weight_map(labels, **kwargs), atol=1e-5
    )


def test_unet_balanced_counts_the_whole_volume():
    # One chunk is all background: its own counts would give it weight 1.
    labels = np.zeros((40, 40), np.int32)
    labels[25:30, 5:10] = 3
    labels[25:30, 12:20] = 9
    x = da.from_array(labels, chunks=20)
    _compare(
        chunked.unet_weight_map(x, class_weights="balanced"),
        x,
        wm.unet_weight_map(labels, class_weights="balanced"),
        atol=1e-5,
    )


def test_unet_rejects_what_in_memory_rejects():
    x = da.zeros((8, 8), chunks=4)
    with pytest.raises(TypeError, match="integer label array"):
        chunked.unet_weight_map(x)
    labels = x.astype(np.int32)
    with pytest.raises(ValueError, match="class_weights"):
        chunked.unet_weight_map(labels, class_weights="median")
    with pytest.raises(ValueError, match="class_weights keys"):
        chunked.unet_weight_map(labels, class_weights={2: 1.0})
    with pytest.raises(ValueError, match="sigma"):
        chunked.unet_weight_map(labels, sigma=0)
    with pytest.raises(ValueError, match="ignore_mask shape"):
        chunked.unet_weight_map(labels, ignore_mask=np.zeros((8, 7), bool))


# ------------------------------------------------------ separate_instances


@pytest.mark.parametrize(
    ("labels", "chunks", "connectivity"),
    [
        (LABELS_2D, (4, 6), 1),
        (LABELS_2D, (1, 13), 2),
        (LABELS_3D[:, :20, :20], 3, 1),
        (LABELS_3D, (5, 7, 4), 3),
    ],
)
def test_separate_instances_equals_in_memory(labels, chunks, connectivity):
    labels = labels.astype(np.uint16)
    x = da.from_array(labels, chunks=chunks)
    got = chunked.separate_instances(x, connectivity=connectivity)
    assert got.chunks == x.chunks and got.dtype == labels.dtype
    np.testing.assert_array_equal(got.compute(), wm.separate_instances(labels, connectivity))


def test_separate_then_unet_across_chunks():
    x = da.from_array(LABELS_2D, chunks=(6, 9))
    carved = chunked.separate_instances(x)
    expected = wm.unet_weight_map(wm.separate_instances(LABELS_2D), sigma=2.0)
    _compare(chunked.unet_weight_map(carved, sigma=2.0), x, expected, atol=1e-5)


# ---------------------------------------------------------------- edge


def _semantic(labels: np.ndarray, ignore: int | None = 255) -> np.ndarray:
    """Classes 0..3 with touching regions of different classes, an ignore band."""
    out = (labels % 4).astype(np.uint8)
    if ignore is not None:
        out[..., 3:5] = ignore
    return out


def _soft(labels: np.ndarray) -> np.ndarray:
    return np.clip(ndi.gaussian_filter((labels != 0).astype(np.float64), 1.5), 0.0, 1.0)


EDGE_CASES = {
    # k = 31: halo 15, chunks of 7 merged.
    "2d-binary-int": (LABELS_2D, 7, dict()),
    "2d-bool-odd-chunks": (LABELS_2D != 0, (9, 13), dict(kernel_size=11, alpha=3.0)),
    "2d-soft": (_soft(LABELS_2D), (10, 6), dict(kernel_size=9)),
    "2d-binary-ignore": (_semantic(LABELS_2D), (8, 12), dict(kernel_size=7, ignore_index=255)),
    "2d-semantic": (
        _semantic(LABELS_2D),
        ((30, 1, 40, 19), (7, 50, 20)),
        dict(kernel_size=7, num_classes=4, ignore_index=255),
    ),
    "2d-semantic-some-classes": (_semantic(LABELS_2D, None), 11, dict(classes=[0, 2, 3])),
    "3d-bool": (LABELS_3D != 0, (4, 5, 6), dict(kernel_size=5)),
    "3d-soft": (_soft(LABELS_3D).astype(np.float32), (5, 9, 7), dict(kernel_size=7)),
    "3d-semantic": (_semantic(LABELS_3D), (6, 11, 8), dict(kernel_size=5, num_classes=4)),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_edge_equals_in_memory(case):
    mask, chunks, kwargs = EDGE_CASES[case]
    x = da.from_array(mask, chunks=chunks)
    _compare(chunked.edge_weight_map(x, **kwargs), x, wm.edge_weight_map(mask, **kwargs))


def test_edge_rejects_what_in_memory_rejects():
    x = da.zeros((8, 8), dtype=np.uint8, chunks=4)
    with pytest.raises(ValueError, match="odd"):
        chunked.edge_weight_map(x, kernel_size=4)
    with pytest.raises(ValueError, match="not both"):
        chunked.edge_weight_map(x, classes=[0], num_classes=2)
    with pytest.raises(TypeError, match="semantic"):
        chunked.edge_weight_map(x.astype(np.float32), num_classes=2)
    bad = chunked.edge_weight_map(x.astype(np.float32) + 2.0, kernel_size=3)  # lazy
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        bad.compute()


# ---------------------------------------------------------------- balance


@pytest.mark.parametrize("mode", wm.BALANCE_MODES)
@pytest.mark.parametrize("ignore_index", [None, 255])
def test_balance_equals_in_memory(mode, ignore_index):
    mask = _semantic(LABELS_2D)
    x = da.from_array(mask, chunks=(7, 11))
    kwargs = dict(mode=mode, ignore_index=ignore_index)
    _compare(chunked.balance_weight_map(x, **kwargs), x, wm.balance_weight_map(mask, **kwargs))


def test_balance_bool_3d_and_dataset_counts():
    mask = LABELS_3D != 0
    x = da.from_array(mask, chunks=(5, 9, 7))
    _compare(
        chunked.balance_weight_map(x, mode="beta"), x, wm.balance_weight_map(mask, mode="beta")
    )
    other = _semantic(LABELS_2D, None)
    counts = wm.class_counts(mask) + wm.class_counts(other)
    for mode in ("median", "inverse"):
        _compare(
            chunked.balance_weight_map(x, mode=mode, counts=counts),
            x,
            wm.balance_weight_map(mask, mode=mode, counts=counts),
        )


def test_class_counts_of_the_whole_volume():
    mask = _semantic(LABELS_3D)
    x = da.from_array(mask, chunks=(5, 13, 9))
    assert chunked.class_counts(x, ignore_index=255) == wm.class_counts(mask, ignore_index=255)
    assert chunked.class_counts(x) == wm.class_counts(mask)


def test_balance_rejects_a_bad_mode_before_counting():
    x = da.zeros((4, 4), dtype=np.uint8, chunks=2)
    with pytest.raises(ValueError, match="unknown balance mode"):
        chunked.balance_weight_map(x, mode="log")
    with pytest.raises(TypeError, match="integer class ids"):
        chunked.balance_weight_map(x.astype(np.float32))


# ---------------------------------------------------------- label_instances


def _noise(shape, classes: int, density: float, seed: int) -> np.ndarray:
    """Random pixels: long, thin, branching regions that cross many chunks."""
    rng = np.random.default_rng(seed)
    values = rng.integers(1, classes + 1, shape).astype(np.uint8)
    return np.where(rng.random(shape) < density, values, 0).astype(np.uint8)


LABEL_CASES = {
    "2d-binary-noise": (_noise((40, 45), 1, 0.55, 4), (4, 7), {}),
    "2d-binary-noise-faces": (_noise((40, 45), 1, 0.6, 5), (5, 3), dict(connectivity=1)),
    "2d-semantic-noise": (_noise((40, 45), 3, 0.8, 6), 5, {}),
    "2d-semantic-noise-faces": (_noise((40, 45), 3, 0.9, 7), (1, 9), dict(connectivity=1)),
    "2d-semantic-objects": (_semantic(LABELS_2D), ((30, 1, 40, 19), (7, 50, 20)), {}),
    "2d-ignore": (_semantic(LABELS_2D), 8, dict(ignore_value=255)),
    "3d-binary-noise": (_noise((12, 14, 13), 1, 0.4, 8), (3, 4, 5), {}),
    "3d-binary-noise-conn2": (_noise((12, 14, 13), 1, 0.45, 9), (4, 3, 5), dict(connectivity=2)),
    "3d-semantic-noise-faces": (_noise((12, 14, 13), 2, 0.7, 10), 4, dict(connectivity=1)),
    "3d-semantic-objects": (_semantic(LABELS_3D), (5, 9, 7), dict(ignore_value=255)),
}


@pytest.mark.parametrize("case", list(LABEL_CASES))
def test_label_instances_same_partition_as_in_memory(case):
    mask, chunks, kwargs = LABEL_CASES[case]
    x = da.from_array(mask, chunks=chunks)
    got = chunked.label_instances(x, **kwargs)
    assert isinstance(got, da.Array) and got.chunks == x.chunks and got.dtype == np.int32
    _assert_same_partition(got.compute(), wm.label_instances(mask, **kwargs))


def test_label_instances_bool_and_empty():
    mask = LABELS_2D != 0
    x = da.from_array(mask, chunks=(6, 10))
    _assert_same_partition(chunked.label_instances(x).compute(), wm.label_instances(mask))
    empty = chunked.label_instances(da.zeros((9, 9), dtype=np.uint8, chunks=4))
    np.testing.assert_array_equal(empty.compute(), np.zeros((9, 9), np.int32))


def test_label_instances_rejects_what_in_memory_rejects():
    with pytest.raises(TypeError, match="integer or boolean"):
        chunked.label_instances(da.zeros((4, 4), chunks=2))
    with pytest.raises(ValueError, match="connectivity"):
        chunked.label_instances(da.zeros((4, 4), dtype=np.uint8, chunks=2), connectivity=3)


# ----------------------------------------------------------- any chunking


@pytest.mark.parametrize("seed", range(4))
def test_random_chunkings(seed):
    rng = np.random.default_rng(100 + seed)
    labels = LABELS_2D if seed % 2 == 0 else LABELS_3D[:, :30, :30]
    x = da.from_array(labels, chunks=_random_chunks(labels.shape, rng))
    _compare(
        chunked.unet_weight_map(x, sigma=1.5),
        x,
        wm.unet_weight_map(labels, sigma=1.5),
        atol=1e-5,
    )
    mask = _semantic(labels)
    m = da.from_array(mask, chunks=x.chunks)
    _compare(
        chunked.edge_weight_map(m, kernel_size=5, num_classes=4, ignore_index=255),
        m,
        wm.edge_weight_map(mask, kernel_size=5, num_classes=4, ignore_index=255),
    )
    np.testing.assert_array_equal(
        chunked.separate_instances(x).compute(), wm.separate_instances(labels)
    )
    _assert_same_partition(
        chunked.label_instances(m, ignore_value=255).compute(),
        wm.label_instances(mask, ignore_value=255),
    )


def test_threaded_scheduler_gives_the_same_map():
    x = da.from_array(LABELS_2D, chunks=(9, 13))
    got = chunked.unet_weight_map(x, sigma=2.0).compute(scheduler="threads")
    np.testing.assert_allclose(got, wm.unet_weight_map(LABELS_2D, sigma=2.0), atol=1e-5)


def test_halo_maps_read_their_own_blocks_only_from_cheap_inputs(tmp_path):
    """Storage reads with slicing and elementwise ops on top are read again by
    each block task (memory set by the blocks in flight); a labelling or a
    user's map_blocks is computed once and goes through map_overlap."""
    zarr = pytest.importorskip("zarr")
    path = tmp_path / "labels.zarr"
    z = zarr.create_array(str(path), shape=LABELS_3D.shape, chunks=(8, 16, 16), dtype=np.int32)
    z[:] = LABELS_3D
    stored = da.from_zarr(str(path))
    assert _dask_common._rereadable(stored)
    assert _dask_common._rereadable(da.where(stored == 7, 0, stored).astype(np.int64)[2:, :-3])
    assert _dask_common._rereadable(da.from_array(LABELS_3D, chunks=8).rechunk(12))
    assert not _dask_common._rereadable(chunked.label_instances(stored > 0))
    assert not _dask_common._rereadable(stored.map_blocks(lambda b: b + 1))
    w = chunked.unet_weight_map(stored, sigma=2.0)
    assert any(name.startswith("_reread_block") for name in w.dask.layers)
    assert not any("overlap" in name for name in w.dask.layers)
    labelled = chunked.unet_weight_map(chunked.label_instances(stored > 0), sigma=2.0)
    assert any("overlap" in name for name in labelled.dask.layers)
    np.testing.assert_allclose(w.compute(), wm.unet_weight_map(LABELS_3D, sigma=2.0), atol=1e-5)
