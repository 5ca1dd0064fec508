"""All maps of one mask from one set of settings (``compute_maps``), and what
``generate`` writes for the options that shape them: separating touching
instances, the edge map at a training size, the ignore value, empty masks."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import SAMPLE_MASKS
from skimage import transform

import weightmaps
from weightmaps import (
    balance_weight_map,
    edge_weight_map,
    label_instances,
    read_mask,
    separate_instances,
    unet_weight_map,
)
from weightmaps.recipe import compute_maps
from weightmaps.settings import MapSettings


def touching_instances() -> np.ndarray:
    """Instances 4 and 7 share a side; 9 stands alone."""
    mask = np.zeros((32, 40), np.uint16)
    mask[6:16, 4:12] = 4
    mask[6:16, 12:20] = 7
    mask[20:28, 26:36] = 9
    return mask


# --- separating touching instances ------------------------------------------------


def test_separate_touching_carves_target_and_maps_follow_it():
    mask = touching_instances()
    carved = separate_instances(mask, connectivity=1)
    assert np.all(carved[6:16, 11:13] == 0)  # both sides of the contact are carved
    result = compute_maps(mask, MapSettings(separate_touching=True))
    assert result.mask_type == "instance"
    assert result.target is not None and result.target.dtype == mask.dtype
    np.testing.assert_array_equal(result.target, carved)
    np.testing.assert_array_equal(result.maps["unet"], unet_weight_map(carved))
    np.testing.assert_array_equal(result.maps["edge"], edge_weight_map(carved != 0))
    np.testing.assert_array_equal(result.maps["balance"], balance_weight_map(carved != 0))
    # The point of carving: the border term now acts in the gap.
    plain = compute_maps(mask, MapSettings())
    assert plain.target is None
    assert np.all(plain.maps["unet"][6:16, 11:13] == 1.0)
    assert np.all(result.maps["unet"][7:15, 11:13] > 5.0)


def test_separate_touching_leaves_other_types_alone():
    semantic = np.zeros((20, 40), np.uint8)
    semantic[2:8, 2:8] = 1
    semantic[2:8, 8:14] = 2
    semantic[12:18, 2:8] = 1
    semantic[12:18, 20:26] = 2
    result = compute_maps(semantic, MapSettings(separate_touching=True))
    assert result.mask_type == "semantic"
    assert result.target is None
    np.testing.assert_array_equal(result.maps["balance"], balance_weight_map(semantic))


def test_generate_writes_target_of_sample_nuclei(tmp_path):
    masks = Path(shutil.copytree(SAMPLE_MASKS / "nuclei", tmp_path / "masks"))
    out = tmp_path / "out"
    report = weightmaps.generate(masks, out, workers=1, progress=False, separate_touching=True)
    assert report.exit_code == 0 and len(report.done) == 4
    for path in sorted(masks.glob("*.tif")):
        mask = read_mask(path)
        carved = separate_instances(mask, connectivity=1)
        target = tifffile.imread(out / f"{path.stem}.target.tif")
        assert target.dtype == np.uint16
        np.testing.assert_array_equal(target, carved)
        assert np.count_nonzero(target != mask) > 0


# --- edge map at a training size -------------------------------------------------


def test_edge_size_block_aligned_binary_equals_edge_of_downsampled_mask():
    # Blobs aligned to 2x2 blocks: halving the size is exact, so the map at
    # the training size is the edge map of the mask drawn at that size.
    small = np.zeros((24, 30), bool)
    small[4:12, 5:17] = True
    small[15:20, 20:27] = True
    mask = np.repeat(np.repeat(small, 2, axis=0), 2, axis=1).astype(np.uint8) * 255
    settings = MapSettings(edge_size=(24, 30), edge_kernel=5, edge_alpha=3)
    result = compute_maps(mask, settings)
    assert result.maps["edge"].shape == (24, 30)
    assert result.maps["unet"].shape == mask.shape
    assert result.maps["balance"].shape == mask.shape
    np.testing.assert_allclose(
        result.maps["edge"], edge_weight_map(small, kernel_size=5, alpha=3), rtol=1e-6
    )


def test_edge_size_block_aligned_semantic_and_3d():
    small = np.zeros((4, 12, 16), np.uint8)
    small[1:3, 2:6, 2:8] = 1
    small[:, 6:10, 4:14] = 2
    small[2:, 0:4, 10:16] = 1
    mask = small.repeat(2, 0).repeat(2, 1).repeat(2, 2)
    settings = MapSettings(mask_type="semantic", edge_size=small.shape, edge_kernel=3)
    result = compute_maps(mask, settings, kinds=["edge"])
    np.testing.assert_allclose(
        result.maps["edge"],
        edge_weight_map(small, kernel_size=3, alpha=5.0, classes=[0, 1, 2]),
        rtol=1e-6,
    )


def test_edge_size_soft_resize_like_pranet():
    mask = np.zeros((50, 70), np.uint8)
    mask[9:31, 13:40] = 1
    size = (32, 32)
    result = compute_maps(mask, MapSettings(edge_size=size, edge_kernel=7), kinds=["edge"])
    # PraNet resizes the mask bilinearly and keeps it soft.
    soft = transform.resize(
        mask.astype(np.float32), size, order=1, mode="edge", anti_aliasing=False
    )
    soft = np.clip(soft, 0, 1).astype(np.float32)
    assert np.any((soft > 0) & (soft < 1))
    np.testing.assert_allclose(
        result.maps["edge"], edge_weight_map(soft, kernel_size=7, alpha=5.0), rtol=1e-5
    )
    # The requested size equal to the mask's gives the plain edge map.
    same = compute_maps(mask, MapSettings(edge_size=mask.shape, edge_kernel=7), kinds=["edge"])
    np.testing.assert_allclose(same.maps["edge"], edge_weight_map(mask, kernel_size=7), rtol=1e-6)


def test_edge_size_of_wrong_dimension_is_refused():
    with pytest.raises(ValueError, match="edge size"):
        compute_maps(touching_instances(), MapSettings(edge_size=(8, 8, 8)), kinds=["edge"])


def test_generate_with_edge_size_writes_edge_at_that_size(tmp_path):
    masks = Path(shutil.copytree(SAMPLE_MASKS / "binary", tmp_path / "masks"))
    out = tmp_path / "out"
    report = weightmaps.generate(
        masks, out, workers=1, progress=False, edge_size=(144, 176), edge_kernel=15
    )
    assert report.exit_code == 0
    for path in sorted(masks.glob("*.png")):
        mask = read_mask(path)
        edge = tifffile.imread(out / f"{path.stem}.edge.tif")
        assert edge.shape == (144, 176) and edge.dtype == np.float32
        soft = transform.resize(
            (mask > 127).astype(np.float32), (144, 176), order=1, mode="edge", anti_aliasing=False
        )
        expected = edge_weight_map(np.clip(soft, 0, 1).astype(np.float32), kernel_size=15)
        np.testing.assert_allclose(edge, expected, rtol=1e-5)
        assert tifffile.imread(out / f"{path.stem}.unet.tif").shape == mask.shape
    again = weightmaps.generate(
        masks, out, workers=1, progress=False, edge_size=(144, 176), edge_kernel=15
    )
    assert again.done == []


# --- ignore value -----------------------------------------------------------------


def test_ignore_value_zero_in_every_map_instance():
    mask = touching_instances()
    mask[:, 30:] = 500  # unlabelled strip, crossing instance 9
    ignored = mask == 500
    settings = MapSettings(ignore_value=500, separate_touching=True)
    result = compute_maps(mask, settings)
    assert result.mask_type == "instance"
    for kind, weights in result.maps.items():
        assert np.all(weights[ignored] == 0), kind
        assert np.all(weights[~ignored] > 0), kind
    # Balance: the inverse formula on the labelled pixels only, after carving.
    carved = separate_instances(np.where(ignored, 0, mask))
    fg = (carved != 0) & ~ignored
    bg = (carved == 0) & ~ignored
    n = int(fg.sum() + bg.sum())
    expected = np.where(fg, n / (2 * fg.sum()), np.where(bg, n / (2 * bg.sum()), 0.0))
    np.testing.assert_allclose(result.maps["balance"], expected, rtol=1e-6)
    np.testing.assert_array_equal(result.maps["unet"], unet_weight_map(carved, ignore_mask=ignored))
    # The target keeps the ignore value where it was.
    assert np.all(result.target[ignored] == 500)


def test_ignore_value_zero_in_every_map_binary_with_edge_size():
    mask = np.zeros((40, 40), np.uint8)
    mask[8:24, 8:24] = 1
    mask[30:, :] = 9
    settings = MapSettings(ignore_value=9, edge_size=(20, 20), edge_kernel=5)
    result = compute_maps(mask, settings)
    assert result.mask_type == "binary"
    for kind in ("unet", "balance"):
        assert np.all(result.maps[kind][30:] == 0), kind
        assert np.all(result.maps[kind][:30] > 0), kind
    assert np.all(result.maps["edge"][15:] == 0)
    assert np.all(result.maps["edge"][:15] >= 1)


def test_ignore_value_semantic_sample(tmp_path):
    masks = Path(shutil.copytree(SAMPLE_MASKS / "semantic", tmp_path / "masks"))
    out = tmp_path / "out"
    report = weightmaps.generate(
        masks,
        out,
        workers=1,
        progress=False,
        ignore_value=255,
        mask_type="semantic",
        separate_touching=True,
        class_weights="balanced",
    )
    assert report.exit_code == 0
    mask = read_mask(masks / "street_00.png")
    ignored = mask == 255
    for kind in ("unet", "edge", "balance"):
        weights = tifffile.imread(out / f"street_00.{kind}.tif")
        assert np.all(weights[ignored] == 0), kind
        assert np.all(weights[~ignored] > 0), kind
    assert not (out / "street_00.target.tif").exists()  # semantic: nothing carved


# --- other options ----------------------------------------------------------------


def test_connectivity_decides_instances_of_binary_masks():
    mask = np.zeros((30, 30), np.uint8)
    mask[5:14, 5:14] = 255
    mask[14:22, 14:22] = 255  # touches the first block at a corner only
    for connectivity, n in ((1, 2), (2, 1)):
        instances = label_instances(mask > 127, connectivity=connectivity)
        assert instances.max() == n
        result = compute_maps(mask, MapSettings(connectivity=connectivity), kinds=["unet"])
        np.testing.assert_array_equal(result.maps["unet"], unet_weight_map(instances))


def test_unet_class_weights_and_parameters():
    mask = touching_instances()
    settings = MapSettings(w0=3, sigma=2, class_weights=(0.5, 2.0))
    result = compute_maps(mask, settings, kinds=["unet"])
    expected = unet_weight_map(mask, w0=3.0, sigma=2.0, class_weights={0: 0.5, 1: 2.0})
    np.testing.assert_array_equal(result.maps["unet"], expected)
    assert set(np.unique(result.maps["unet"][mask != 0])) == {2.0}


def test_spacing_must_match_dimensions(tmp_path):
    masks = Path(shutil.copytree(SAMPLE_MASKS / "volume", tmp_path / "masks"))
    report = weightmaps.generate(
        masks, tmp_path / "out", workers=1, progress=False, spacing=(0.5, 0.5)
    )
    assert report.exit_code == 1
    assert "spacing" in report.failed["nuclei3d_00.tif"]


def test_allow_empty_accepts_empty_masks(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    np.save(masks / "empty.npy", np.zeros((16, 20), np.uint8))
    refused = weightmaps.generate(masks, tmp_path / "out", workers=1, progress=False)
    assert refused.exit_code == 1
    assert "no foreground" in refused.failed["empty.npy"]
    report = weightmaps.generate(
        masks, tmp_path / "out", workers=1, progress=False, allow_empty=True
    )
    assert report.exit_code == 0 and report.done == ["empty.npy"]
    for kind in ("unet", "edge", "balance"):
        weights = tifffile.imread(tmp_path / "out" / f"empty.{kind}.tif")
        np.testing.assert_array_equal(weights, np.ones((16, 20), np.float32))


@pytest.mark.parametrize(
    "options",
    [
        {"sigma": 0},
        {"w0": float("nan")},
        {"edge_kernel": 2},
        {"class_weights": (1.0,)},
        {"class_weights": "unbalanced"},
        {"spacing": (1.0, -1.0)},
        {"balance_mode": "log"},
        {"connectivity": 0},
        {"edge_size": (0, 5)},
    ],
)
def test_invalid_settings(options):
    with pytest.raises(ValueError):
        MapSettings(**options)


def test_numbers_normalised_for_digests():
    assert MapSettings(sigma=3).kind_params("unet") == MapSettings(sigma=3.0).kind_params("unet")
    assert MapSettings(sigma=3).kind_params("edge") == MapSettings(sigma=4).kind_params("edge")
