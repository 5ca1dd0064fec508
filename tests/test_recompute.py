"""The Dataset with the new kinds, and maps recomputed per batch from augmented labels.

Expected values are read from the files ``generate`` wrote (tifffile), or
computed by the kernels on the labels the batch holds.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import SAMPLE_MASKS, random_instances
from torch.utils.data import DataLoader

import weightmaps
from weightmaps import MapSettings
from weightmaps.data import WeightMapDataset
from weightmaps.kernels.sdf import signed_distance_map
from weightmaps.recipe import compute_maps
from weightmaps.recompute import RecomputeMaps
from weightmaps.settings import settings_from_record
from weightmaps.transforms import Compose, RandomCrop, RandomElastic, RandomFlip, RandomRot90

KINDS = ("unet", "edge", "sdf", "skeleton")


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("nuclei")
    masks = Path(shutil.copytree(SAMPLE_MASKS / "nuclei", root / "masks"))
    report = weightmaps.generate(
        masks, root / "maps", kinds=KINDS, workers=1, progress=False, mask_type="instance"
    )
    assert report.exit_code == 0
    return masks, root / "maps"


def test_items_hold_the_files(nuclei):
    masks, maps = nuclei
    dataset = WeightMapDataset(masks, maps, kinds=("sdf", "skeleton"))
    item = dataset[1]
    stem = Path(dataset.paths[1]).stem
    sdf = tifffile.imread(maps / f"{stem}.sdf.tif")
    assert item["weights"]["sdf"].shape == (1, *item["mask"].shape)
    np.testing.assert_array_equal(item["weights"]["sdf"].numpy(), sdf)
    skeleton = tifffile.imread(maps / f"{stem}.skeleton.tif")
    np.testing.assert_array_equal(item["weights"]["skeleton"].numpy(), skeleton)
    assert item["weights"]["skeleton"].dtype == torch.float32
    one = WeightMapDataset(masks, maps, kinds=("sdf",))[1]
    assert one["weight"].shape == (1, *item["mask"].shape)


def test_transforms_move_the_sdf_channels_with_the_mask(nuclei):
    masks, maps = nuclei
    plain = WeightMapDataset(masks, maps, kinds=("sdf", "skeleton"), labels=True)[0]
    generator = torch.Generator().manual_seed(3)
    transform = Compose(
        [RandomFlip(generator=generator), RandomRot90(generator=generator), RandomCrop(96)]
    )
    torch.manual_seed(0)
    moved = WeightMapDataset(
        masks, maps, kinds=("sdf", "skeleton"), labels=True, transform=transform
    )[0]
    # Exact moves: the sdf of the moved labels is the moved sdf (up to the crop's edge).
    labels = moved["labels"].numpy()
    assert moved["weights"]["sdf"].shape == (1, 96, 96)
    assert set(np.unique(moved["weights"]["skeleton"].numpy())) <= {0.0, 1.0}
    assert labels.dtype == np.int64
    assert moved["mask"].equal(torch.from_numpy((labels != 0).astype(np.int64)))
    # Every sdf value is one of the untransformed map's at the same label.
    before = plain["labels"].numpy().ravel(), plain["weights"]["sdf"][0].numpy().ravel()
    after = labels.ravel(), moved["weights"]["sdf"][0].numpy().ravel()
    pairs = set(zip(before[0].tolist(), before[1].tolist(), strict=True))
    assert set(zip(after[0].tolist(), after[1].tolist(), strict=True)) <= pairs


def test_recomputed_maps_equal_the_written_ones(nuclei):
    masks, maps = nuclei
    dataset = WeightMapDataset(masks, maps, kinds=KINDS, labels=True)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    settings = settings_from_record(dataset.manifest_settings)
    for device in ("cpu", "torch:cpu"):
        recompute = RecomputeMaps(KINDS, settings=settings, device=device)
        out = recompute({"labels": batch["labels"], "mask": batch["mask"]})
        assert out["mask"] is batch["mask"]
        for kind in KINDS:
            got, written = out["weights"][kind], batch["weights"][kind]
            assert got.dtype == torch.float32 and got.shape == written.shape
            atol = 1e-4 if kind == "unet" else 1e-5
            torch.testing.assert_close(got, written, rtol=0, atol=atol)


def test_recompute_after_an_elastic_warp():
    """Recomputed maps are those of the warped labels; the warped map is not."""
    labels = random_instances((64, 64), 12, radius=(4.0, 9.0), seed=2)
    settings = MapSettings(mask_type="instance", allow_empty=True)
    written = compute_maps(labels, settings, kinds=["sdf"]).maps["sdf"]
    warp = RandomElastic(std=6.0, generator=torch.Generator().manual_seed(1))
    sample = warp(labels=labels.astype(np.int64), weight_sdf=np.moveaxis(written, 0, -1))
    recompute = RecomputeMaps(("sdf", "unet"), settings={"mask_type": "instance"})
    maps = recompute.maps(torch.from_numpy(sample["labels"][None]))
    expected = signed_distance_map(sample["labels"] != 0, classes=[True])
    np.testing.assert_array_equal(maps["sdf"][0].numpy(), expected)
    unet = weightmaps.unet_weight_map(sample["labels"])
    np.testing.assert_array_equal(maps["unet"][0].numpy(), unet)
    warped = np.moveaxis(sample["weight_sdf"], -1, 0)
    assert np.abs(warped - expected).max() > 0.5


def test_one_kind_and_merging_and_refusals():
    labels = torch.zeros((2, 24, 24), dtype=torch.int64)
    labels[0, 3:9, 3:9] = 1
    labels[1, 10:20, 4:8] = 5
    one = RecomputeMaps(("edge",))({"labels": labels})
    assert one["weight"].shape == (2, 24, 24)
    merged = RecomputeMaps(("edge",))({"labels": labels, "weights": {"unet": 1}})
    assert sorted(merged["weights"]) == ["edge", "unet"]
    empty = torch.zeros((1, 24, 24), dtype=torch.int64)
    assert RecomputeMaps(("unet",))({"labels": empty})["weight"].eq(1).all()
    with pytest.raises(ValueError, match="kinds"):
        RecomputeMaps(("nope",))
    semantic = torch.zeros((2, 24, 24), dtype=torch.int64)
    semantic[0, :5] = 1
    semantic[1, :5] = 2
    semantic[1, 10:] = 3
    recompute = RecomputeMaps(("sdf",), settings={"mask_type": "semantic"})
    with pytest.raises(ValueError, match="sdf_classes"):
        recompute({"labels": semantic})
    named = RecomputeMaps(("sdf",), settings={"mask_type": "semantic", "sdf_classes": (1, 2, 3)})
    assert named({"labels": semantic})["weight"].shape == (2, 3, 24, 24)


def test_dataset_without_maps_gives_labels(nuclei):
    masks, maps = nuclei
    dataset = WeightMapDataset(masks, maps, kinds=(), labels=True)
    item = dataset[0]
    assert sorted(item) == ["labels", "mask", "path"]
    np.testing.assert_array_equal(
        item["labels"].numpy(), tifffile.imread(masks / dataset.paths[0])
    )
    with pytest.raises(ValueError, match="kinds"):
        WeightMapDataset(masks, maps, kinds=())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_recompute_on_cuda_equals_the_cpu(nuclei):
    masks, maps = nuclei
    dataset = WeightMapDataset(masks, maps, kinds=(), labels=True)
    labels = next(iter(DataLoader(dataset, batch_size=4)))["labels"]
    kinds = ("unet", "edge", "sdf", "distance", "skeleton")
    settings = {"mask_type": "instance", "sdf_max": 20.0}
    on_gpu = RecomputeMaps(kinds, settings=settings, device="cuda").maps(labels)
    on_cpu = RecomputeMaps(kinds, settings=settings, device="cpu").maps(labels)
    for kind in kinds:
        assert on_gpu[kind].device.type == "cuda"
        torch.testing.assert_close(on_gpu[kind].cpu(), on_cpu[kind], rtol=0, atol=1e-4)
