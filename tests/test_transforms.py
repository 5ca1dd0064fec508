"""Joint transforms keep image, mask and weight maps aligned.

Most tests make every array a deterministic function of the mask (weight =
mask * 10 + 1, image channels = mask, 2 * mask, -mask): any geometric step
applied to one array and not another, or differently, breaks the relation.
"""

from __future__ import annotations

import multiprocessing
import pickle

import numpy as np
import pytest
import torch
from scipy import ndimage as ndi
from skimage.transform import resize as sk_resize
from torch.utils.data import DataLoader, Dataset

from weightmaps.transforms import (
    Compose,
    RandomCrop,
    RandomElastic,
    RandomFlip,
    RandomRescale,
    RandomRot90,
    Resize,
)


def random_mask(shape, n_labels=50, seed=0):
    """Labels that differ from pixel to pixel, so any misalignment shows."""
    return np.random.default_rng(seed).integers(0, n_labels, shape).astype(np.int32)


def blocky_mask(shape, block=6, n_labels=5, seed=0):
    """Piecewise constant labels in blocks: rescaling keeps block interiors exact."""
    coarse = [-(-n // block) for n in shape]
    small = np.random.default_rng(seed).integers(0, n_labels, coarse).astype(np.int32)
    big = small
    for axis in range(len(shape)):
        big = np.repeat(big, block, axis=axis)
    return np.ascontiguousarray(big[tuple(slice(n) for n in shape)])


def make_sample(mask, channels=3):
    m = mask.astype(np.float32)
    image = np.stack([m, 2 * m, -m][:channels], axis=-1)
    return {
        "image": image,
        "mask": mask,
        "weight": m * 10 + 1,
        "weight_edge": m * 0.5 + 2,
    }


def assert_aligned(out, channels=3):
    m = out["mask"].astype(np.float32)
    assert out["image"].shape == out["mask"].shape + (channels,)
    np.testing.assert_array_equal(out["weight"], m * 10 + 1)
    np.testing.assert_array_equal(out["weight_edge"], m * 0.5 + 2)
    np.testing.assert_array_equal(out["image"][..., 0], m)
    if channels > 1:
        np.testing.assert_array_equal(out["image"][..., 1], 2 * m)


def run(transform, sample, seed):
    torch.manual_seed(seed)
    return transform(**sample)


# ---------------------------------------------------------------------------
# Exact geometric steps: flips, rot90, crops


def test_flip_rot90_crop_keep_alignment_2d():
    mask = random_mask((32, 40))
    sample = make_sample(mask)
    aug = Compose([RandomFlip(), RandomRot90(), RandomCrop((24, 20))])
    masks = set()
    for seed in range(24):
        out = run(aug, sample, seed)
        assert out.keys() == sample.keys()
        assert out["mask"].shape == (24, 20)
        assert out["mask"].dtype == mask.dtype
        assert out["weight"].dtype == np.float32
        assert_aligned(out)
        masks.add(out["mask"].tobytes())
    assert len(masks) > 20  # the random state does vary


def test_flip_rot90_crop_keep_alignment_3d():
    mask = random_mask((10, 14, 12), seed=1)
    sample = make_sample(mask, channels=2)
    aug = Compose([RandomFlip(), RandomRot90(), RandomRot90(axes=(0, 2)), RandomCrop(8)])
    for seed in range(16):
        out = run(aug, sample, seed)
        assert out["mask"].shape == (8, 8, 8)
        assert_aligned(out, channels=2)


def dihedral_candidates(mask, axes=(0, 1)):
    flips = [mask, np.flip(mask, axes[0]), np.flip(mask, axes[1]), np.flip(mask, axes)]
    return [np.rot90(f, k, axes) for f in flips for k in range(4)]


def test_rot90_and_flip_are_rearrangements_of_the_input():
    mask = random_mask((6, 9), seed=2)
    aug = Compose([RandomFlip(), RandomRot90()])
    for seed in range(12):
        out = run(aug, {"mask": mask}, seed)["mask"]
        assert any(
            c.shape == out.shape and np.array_equal(c, out) for c in dihedral_candidates(mask)
        )


def test_one_flip_state_for_all_arrays():
    mask = random_mask((8, 8), seed=3)
    image = np.arange(64, dtype=np.float32).reshape(8, 8)  # unrelated to the mask
    weight = np.arange(64, dtype=np.float32).reshape(8, 8) ** 2
    flip = RandomFlip(axes=(1,), p=0.5)
    seen = set()
    for seed in range(20):
        out = run(flip, {"image": image, "mask": mask, "weight": weight}, seed)
        done = [
            np.array_equal(out[k], np.flip(a, 1))
            for k, a in (("image", image), ("mask", mask), ("weight", weight))
        ]
        kept = [
            np.array_equal(out[k], a)
            for k, a in (("image", image), ("mask", mask), ("weight", weight))
        ]
        assert all(done) or all(kept)
        seen.add(all(done))
    assert seen == {True, False}


def test_flip_probability_extremes_and_axes():
    mask = random_mask((4, 5, 6))
    assert np.array_equal(RandomFlip(p=0.0)(mask=mask)["mask"], mask)
    np.testing.assert_array_equal(RandomFlip(p=1.0)(mask=mask)["mask"], mask[::-1, ::-1, ::-1])
    np.testing.assert_array_equal(RandomFlip(axes=(-1,), p=1.0)(mask=mask)["mask"], mask[..., ::-1])
    # The channel axis is never flipped: -1 means the last *spatial* axis.
    image = np.stack([mask, mask + 100], axis=-1)
    out = RandomFlip(axes=(-1,), p=1.0)(image=image, mask=mask)
    np.testing.assert_array_equal(out["image"][..., 1], mask[..., ::-1] + 100)


def test_outputs_are_positive_strided_for_torch():
    mask = random_mask((6, 7))
    out = Compose([RandomFlip(p=1.0), RandomRot90()])(**make_sample(mask))
    for arr in out.values():
        torch.from_numpy(arr)  # refuses negative strides


def test_rot90_draws_every_k():
    mask = random_mask((3, 5))
    found = set()
    for seed in range(40):
        out = run(RandomRot90(), {"mask": mask}, seed)["mask"]
        found.add(next(k for k in range(4) if np.array_equal(np.rot90(mask, k), out)))
    assert found == {0, 1, 2, 3}
    np.testing.assert_array_equal(RandomRot90(p=0.0)(mask=mask)["mask"], mask)


# ---------------------------------------------------------------------------
# Cropping with padding


def test_crop_pads_short_axes_with_documented_fills():
    mask = np.full((5, 30), 3, np.uint8)
    sample = {
        "image": np.full((5, 30, 3), 7, np.uint8),
        "mask": mask,
        "weight": np.full((5, 30), 2.0, np.float32),
    }
    for seed in range(8):
        out = run(RandomCrop((8, 10)), sample, seed)
        assert out["image"].shape == (8, 10, 3) and out["mask"].shape == (8, 10)
        real = out["mask"] == 3
        # The 5 real rows sit at one random offset, contiguous, across the width.
        rows = np.flatnonzero(real.all(axis=1))
        assert len(rows) == 5 and np.all(np.diff(rows) == 1)
        assert not real[~np.isin(np.arange(8), rows)].any()
        np.testing.assert_array_equal(out["weight"], np.where(real, 2.0, 0.0))
        np.testing.assert_array_equal(out["image"][..., 0], np.where(real, 7, 0))
    out = RandomCrop((8, 10), image_fill=1, mask_fill=255, weight_fill=0.5)(**sample)
    pad = out["mask"] != 3
    assert pad.sum() == 30
    assert (out["mask"][pad] == 255).all()
    assert (out["weight"][pad] == 0.5).all()
    assert (out["image"][pad] == 1).all()


def test_crop_offsets_cover_the_range():
    mask = np.arange(10, dtype=np.int32)[:, None].repeat(3, axis=1)
    starts = set()
    for seed in range(60):
        starts.add(int(run(RandomCrop((4, 3)), {"mask": mask}, seed)["mask"][0, 0]))
    assert starts == set(range(7))  # offsets 0..6 inclusive


def test_crop_size_must_match_spatial_axes():
    with pytest.raises(ValueError, match="axes"):
        RandomCrop((4, 4, 4))(mask=np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="positive"):
        RandomCrop((0, 4))


# ---------------------------------------------------------------------------
# Rescale and resize: nearest mask, linear maps


def reference_linear(arr, shape):
    return sk_resize(arr, shape, order=1, mode="edge", anti_aliasing=False, preserve_range=True)


@pytest.mark.parametrize("shape", [(30, 42), (12, 14, 10)])
def test_rescale_nearest_mask_linear_maps(shape):
    mask = blocky_mask(shape, block=6, seed=4)
    sample = make_sample(mask)
    sample["weight_rand"] = np.random.default_rng(5).random(shape).astype(np.float32)
    values = set(np.unique(mask).tolist())
    shapes = set()
    for seed in range(6):
        out = run(RandomRescale(), sample, seed)
        out_shape = out["mask"].shape
        shapes.add(out_shape)
        assert all(0.75 * n - 1 <= m <= 1.25 * n + 1 for n, m in zip(shape, out_shape, strict=True))
        assert out["image"].shape == out_shape + (3,)
        assert out["mask"].dtype == mask.dtype
        assert set(np.unique(out["mask"]).tolist()) <= values
        np.testing.assert_array_equal(
            out["mask"],
            sk_resize(mask, out_shape, order=0, preserve_range=True, anti_aliasing=False).astype(
                mask.dtype
            ),
        )
        for key in ("weight", "weight_edge", "weight_rand"):
            got = out[key]
            assert got.dtype == np.float32
            assert sample[key].min() - 1e-5 <= got.min() and got.max() <= sample[key].max() + 1e-5
            np.testing.assert_allclose(got, reference_linear(sample[key], out_shape), atol=1e-5)
        np.testing.assert_allclose(
            out["image"], reference_linear(sample["image"], out_shape + (3,)), atol=1e-5
        )
        # Nearest mask and linear maps share one mapping: where the mask is constant
        # around a pixel, the maps take exactly the value the mask's label gives.
        interior = ndi.minimum_filter(out["mask"], 3) == ndi.maximum_filter(out["mask"], 3)
        assert interior.mean() > 0.3
        m = out["mask"].astype(np.float32)
        np.testing.assert_allclose(out["weight"][interior], (m * 10 + 1)[interior], atol=1e-4)
        np.testing.assert_allclose(out["image"][interior, 0], m[interior], atol=1e-5)
    assert len(shapes) > 1


def test_rescale_matches_scipy_zoom():
    weight = np.random.default_rng(6).random((20, 24)).astype(np.float32)
    out = RandomRescale(scale=(1.5, 1.5))(mask=np.zeros((20, 24), np.uint8), weight=weight)
    assert out["weight"].shape == (30, 36)
    expected = ndi.zoom(weight, 1.5, order=1, mode="nearest", grid_mode=True)
    np.testing.assert_allclose(out["weight"], expected, atol=1e-6)


def test_rescale_in_plane_only_and_p():
    mask = blocky_mask((6, 20, 20))
    out = RandomRescale(scale=(0.5, 0.5), axes=(-2, -1))(mask=mask)
    assert out["mask"].shape == (6, 10, 10)
    assert RandomRescale(p=0.0)(mask=mask)["mask"].shape == mask.shape
    with pytest.raises(ValueError, match="scale"):
        RandomRescale(scale=(1.2, 0.8))


def test_resize_fixed_size_and_dtypes():
    mask = blocky_mask((16, 24)).astype(np.uint16)
    image = np.random.default_rng(7).integers(0, 256, (16, 24, 3)).astype(np.uint8)
    weight_int = mask.astype(np.int64)
    weight_half = mask.astype(np.float16)
    out = Resize((10, 30))(image=image, mask=mask, weight=weight_int, weight_half=weight_half)
    assert out["mask"].shape == (10, 30) and out["mask"].dtype == np.uint16
    assert out["image"].shape == (10, 30, 3) and out["image"].dtype == np.uint8
    # An integer map (a skeleton, labels) is resampled as the mask: nearest, same dtype.
    assert out["weight"].dtype == np.int64
    np.testing.assert_array_equal(out["weight"], out["mask"])
    assert out["weight_half"].dtype == np.float32
    expected = reference_linear(image.astype(np.float64), (10, 30, 3))
    assert np.abs(out["image"].astype(np.float64) - expected).max() <= 0.5 + 1e-6
    bool_mask = Resize(8)(mask=mask > 2)["mask"]
    assert bool_mask.dtype == bool and bool_mask.shape == (8, 8)


# ---------------------------------------------------------------------------
# Randomness: torch seeding, explicit generators, DataLoader workers

PIPELINE = Compose(
    [RandomFlip(), RandomRot90(), RandomRescale(scale=(0.8, 1.2)), RandomCrop((16, 16))]
)


def test_reproducible_under_manual_seed_and_varies_with_seed():
    sample = make_sample(random_mask((32, 32), seed=8))
    a = run(PIPELINE, sample, 123)
    b = run(PIPELINE, sample, 123)
    for key in sample:
        np.testing.assert_array_equal(a[key], b[key])
    others = [run(PIPELINE, sample, s)["mask"] for s in range(5)]
    assert len({o.tobytes() for o in others}) > 1


def test_explicit_generator_is_independent_of_the_global_seed():
    sample = {"mask": random_mask((20, 20), seed=9)}
    aug = Compose(
        [
            RandomFlip(generator=torch.Generator().manual_seed(1)),
            RandomCrop((8, 8), generator=torch.Generator().manual_seed(2)),
        ]
    )
    twin = pickle.loads(pickle.dumps(aug))  # the copied generators carry the same state
    torch.manual_seed(0)
    a = aug(**sample)["mask"]
    torch.manual_seed(99)
    b = twin(**sample)["mask"]
    np.testing.assert_array_equal(a, b)


def test_pickle_round_trip():
    aug = Compose(
        [
            RandomFlip(axes=(0,), p=0.3),
            RandomRot90(p=0.9),
            RandomRescale((0.9, 1.1), axes=(-1,)),
            RandomCrop((12, 10), mask_fill=255, weight_fill=0.25),
            Resize((9, 9)),
        ]
    )
    loaded = pickle.loads(pickle.dumps(aug))
    assert repr(loaded) == repr(aug)
    sample = make_sample(random_mask((14, 11), seed=10))
    a, b = run(aug, sample, 5), run(loaded, sample, 5)
    for key in sample:
        np.testing.assert_array_equal(a[key], b[key])


class _AugmentedDataset(Dataset):
    def __init__(self, mask, transform):
        self.mask = mask
        self.transform = transform

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return self.transform(**make_sample(self.mask))


@pytest.mark.skipif(
    "fork" not in multiprocessing.get_all_start_methods(), reason="needs fork for speed"
)
def test_dataloader_workers_draw_different_augmentations():
    dataset = _AugmentedDataset(random_mask((24, 24), seed=11), PIPELINE)

    def epoch(seed):
        torch.manual_seed(seed)
        loader = DataLoader(dataset, batch_size=None, num_workers=2, multiprocessing_context="fork")
        return [item["mask"].numpy() for item in loader]

    first = epoch(0)
    # Items 0 and 1 are each the first draw of a different worker.
    assert not np.array_equal(first[0], first[1])
    for item in first:
        assert item.shape == (16, 16)
    again = epoch(0)
    for x, y in zip(first, again, strict=True):
        np.testing.assert_array_equal(x, y)


# ---------------------------------------------------------------------------
# Sample validation


def test_shape_mismatch_names_the_shapes():
    with pytest.raises(ValueError, match=r"\(4, 4\).*\(4, 5\)"):
        RandomFlip()(mask=np.zeros((4, 4), np.uint8), weight=np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match=r"\(5, 4\)"):
        Resize(3)(image=np.zeros((5, 4, 3)), mask=np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="2D or 3D"):
        RandomFlip()(mask=np.zeros((2, 2, 2, 2), np.uint8))
    with pytest.raises(ValueError, match="spatial"):
        RandomFlip()(image=np.zeros((4, 4, 3)))
    with pytest.raises(ValueError, match="weight"):
        RandomFlip()(mask=np.zeros((4, 4), np.uint8), weight=np.zeros((4, 4, 1, 2)))
    with pytest.raises(ValueError, match=r"weight_sdf \(4, 5\)"):
        RandomFlip()(mask=np.zeros((4, 4), np.uint8), weight_sdf=np.zeros((4, 5, 2)))


def test_missing_keys_and_grey_image():
    mask = random_mask((9, 7), seed=12)
    out = Compose([RandomFlip(), RandomCrop((5, 5))])(mask=mask)
    assert list(out) == ["mask"]
    # A map alone fixes the spatial axes; a grey image has no channel axis.
    w = mask.astype(np.float32)
    out = run(RandomRot90(), {"image": w.copy(), "weight": w}, 3)
    np.testing.assert_array_equal(out["image"], out["weight"])


def test_bad_arguments():
    with pytest.raises(ValueError, match="p must"):
        RandomFlip(p=1.5)
    with pytest.raises(ValueError, match="range"):
        RandomFlip(axes=(2,))(mask=np.zeros((3, 3), np.uint8))
    with pytest.raises(ValueError, match="repeat"):
        RandomRot90(axes=(0, -2))(mask=np.zeros((3, 3), np.uint8))
    with pytest.raises(TypeError):
        Compose([RandomFlip(), "flip"])


# ---------------------------------------------------------------------------
# Maps with a channel axis (signed distance maps), integer maps, elastic warps


def test_channel_maps_follow_every_transform():
    """A (*spatial, K) map: each channel transforms as a (*spatial) map does."""
    mask = blocky_mask((30, 36))
    m = mask.astype(np.float32)
    sdf = np.stack([m * 3 - 1, -m, m + 0.5], axis=-1)
    skeleton = (mask % 2).astype(np.uint8)
    aug = Compose(
        [RandomFlip(), RandomRot90(), RandomRescale(scale=(0.7, 1.4)), RandomCrop((20, 24))]
    )
    for seed in range(8):
        out = run(aug, {"mask": mask, "weight_sdf": sdf, "weight_skeleton": skeleton}, seed)
        alone = run(aug, {"mask": mask, "a": sdf[..., 0], "b": sdf[..., 2]}, seed)
        assert out["weight_sdf"].shape == out["mask"].shape + (3,)
        np.testing.assert_allclose(out["weight_sdf"][..., 0], alone["a"], rtol=0, atol=1e-6)
        np.testing.assert_allclose(out["weight_sdf"][..., 2], alone["b"], rtol=0, atol=1e-6)
        # the skeleton by nearest: still 0/1, uint8, and the mask's parity
        assert out["weight_skeleton"].dtype == np.uint8
        np.testing.assert_array_equal(out["weight_skeleton"], out["mask"] % 2)


def reference_elastic_coords(shape, grid, std, seed):
    """The deformation written out: the coarse draws, cubic splines, displaced indices."""
    generator = torch.Generator().manual_seed(seed)
    torch.rand((), generator=generator)  # the p draw
    coarse = torch.randn((len(shape),) + (grid,) * len(shape), generator=generator).double()
    coords = np.indices(shape, dtype=np.float64)
    for axis in range(len(shape)):
        field = coarse[axis].numpy() * std
        zoom = [n / grid for n in shape]
        coords[axis] += ndi.zoom(field, zoom, order=3, mode="nearest", grid_mode=False)
    return coords


@pytest.mark.parametrize("shape", [(40, 52), (12, 20, 18)])
def test_elastic_samples_every_array_at_the_same_displaced_points(shape):
    mask = random_mask(shape, seed=3)
    weight = np.random.default_rng(4).random(shape).astype(np.float32)
    coords = reference_elastic_coords(shape, 3, 4.0, seed=9)
    out = RandomElastic(std=4.0, generator=torch.Generator().manual_seed(9))(
        mask=mask, weight=weight, labels=mask.astype(np.int64)
    )
    clamped = [
        np.clip(np.rint(c), 0, n - 1).astype(int) for c, n in zip(coords, shape, strict=True)
    ]
    np.testing.assert_array_equal(out["mask"], mask[tuple(clamped)])
    np.testing.assert_array_equal(out["labels"], mask[tuple(clamped)])
    # linear: the weighted mean of the 2^nd corners, written out
    base = [np.clip(np.floor(c), 0, n - 1) for c, n in zip(coords, shape, strict=True)]
    frac = [np.clip(c, 0, n - 1) - b for c, b, n in zip(coords, base, shape, strict=True)]
    expected = np.zeros(shape)
    for corner in np.ndindex(*(2,) * len(shape)):
        index, w = [], np.ones(shape)
        for axis, up in enumerate(corner):
            index.append(np.minimum(base[axis].astype(int) + up, shape[axis] - 1))
            w = w * (frac[axis] if up else 1 - frac[axis])
        expected += w * weight[tuple(index)]
    np.testing.assert_allclose(out["weight"], expected, rtol=0, atol=1e-5)
    assert out["weight"].dtype == np.float32


def test_elastic_std_zero_p_zero_and_draws():
    mask = random_mask((20, 24), seed=5)
    sample = make_sample(mask)
    assert_aligned(RandomElastic(std=0.0)(**sample))
    np.testing.assert_array_equal(RandomElastic(std=0.0)(mask=mask)["mask"], mask)
    assert RandomElastic(p=0.0)(**sample)["mask"] is sample["mask"]
    # p does not shift later draws
    a = torch.Generator().manual_seed(2)
    b = torch.Generator().manual_seed(2)
    RandomElastic(p=0.0, generator=a)(mask=mask)
    RandomElastic(p=1.0, generator=b)(mask=mask)
    assert torch.rand((), generator=a) == torch.rand((), generator=b)
    with pytest.raises(ValueError, match="grid"):
        RandomElastic(grid=1)
    with pytest.raises(ValueError, match="elastic axis"):
        RandomElastic(axes=(2,))(mask=mask)
    out = RandomElastic(std=3.0, axes=(-1,))(mask=random_mask((6, 10, 12), seed=1))
    assert out["mask"].shape == (6, 10, 12)
    assert pickle.loads(pickle.dumps(RandomElastic())).std == 10.0
