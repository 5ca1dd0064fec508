"""What a transform receives from WeightMapDataset and what it must give back;
the albumentations 2.x example, run against the library itself."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script
from PIL import Image

import weightmaps
from weightmaps.data import WeightMapDataset

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
EXAMPLE = ROOT / "examples" / "albumentations_pipeline.py"


def generate(root: Path, name: str, kinds, **options) -> tuple[Path, Path, Path]:
    masks, images, out = root / "masks", root / "images", root / "maps"
    shutil.copytree(SAMPLE / "masks" / name, masks)
    shutil.copytree(SAMPLE / "images" / name, images)
    report = weightmaps.generate(masks, out, kinds=kinds, workers=1, progress=False, **options)
    assert report.exit_code == 0, report.summary()
    return masks, images, out


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("nuclei"), "nuclei", ("unet", "balance"))


class Recorder:
    """A transform that keeps what it was given and returns it unchanged."""

    def __init__(self):
        self.seen = {}

    def __call__(self, **sample):
        self.seen = {key: (value.dtype, value.shape) for key, value in sample.items()}
        return sample


def test_mask_reaches_the_transform_in_its_stored_dtype(nuclei):
    masks, images, out = nuclei
    stored = np.asarray(Image.open(masks / "nuclei_00.tif")).dtype  # uint16 instance ids
    for values, expected in [("classes", stored), ("raw", stored)]:
        recorder = Recorder()
        ds = WeightMapDataset(
            masks,
            out,
            images_dir=images,
            kinds=("unet", "balance"),
            transform=recorder,
            mask_values=values,
        )
        item = ds[0]
        assert recorder.seen["mask"][0] == expected, values
        assert recorder.seen["weight_unet"][0] == np.float32
        assert recorder.seen["weight_balance"][0] == np.float32
        assert item["mask"].dtype == torch.int64  # the item itself is unchanged


def test_ignored_pixels_widen_the_dtype_just_enough(tmp_path):
    masks, _, out = generate(
        tmp_path, "semantic", ("balance",), mask_type="semantic", ignore_value=255
    )
    raw = np.asarray(Image.open(masks / "street_00.png"))
    assert raw.dtype == np.uint8 and (raw == 255).any()
    recorder = Recorder()
    item = WeightMapDataset(masks, out, kinds=("balance",), transform=recorder)[0]
    assert recorder.seen["mask"][0] == np.int16  # uint8 ids and -100
    want = np.where(raw == 255, -100, raw.astype(np.int64))
    np.testing.assert_array_equal(item["mask"].numpy(), want)
    recorder = Recorder()
    WeightMapDataset(masks, out, kinds=("balance",), transform=recorder, ignore_index=0)[0]
    assert recorder.seen["mask"][0] == np.uint8


def test_a_transform_that_leaves_a_map_behind_is_refused(nuclei):
    masks, images, out = nuclei

    def crop_but_not_the_map(image, mask, weight):
        return {"image": image[:64, :64], "mask": mask[:64, :64], "weight": weight}

    ds = WeightMapDataset(masks, out, images_dir=images, transform=crop_but_not_the_map)
    with pytest.raises(ValueError) as info:
        ds[0]
    text = str(info.value)
    assert "nuclei_00.tif" in text and "weight (256, 256)" in text and "mask (64, 64)" in text
    assert "additional_targets" in text

    def crop_the_image_only(image, mask, weight):
        return {"image": image[:64, :64], "mask": mask, "weight": weight}

    ds = WeightMapDataset(masks, out, images_dir=images, transform=crop_the_image_only)
    with pytest.raises(ValueError, match=r"image \(64, 64\)"):
        ds[0]

    def drop_the_map(image, mask, weight):
        return {"image": image, "mask": mask}

    ds = WeightMapDataset(masks, out, images_dir=images, transform=drop_the_map)
    with pytest.raises(ValueError, match="returned no weight"):
        ds[0]


# --------------------------------------------------------------------------
# albumentations 2.x


def load_example():
    return load_script(EXAMPLE)


def test_albumentations_without_additional_targets_is_caught(nuclei):
    A = pytest.importorskip("albumentations")
    masks, images, out = nuclei
    naive = A.Compose([A.RandomCrop(96, 96)])  # "weight" is not a key it knows
    ds = WeightMapDataset(masks, out, images_dir=images, transform=naive)
    with pytest.raises(ValueError, match=r"weight \(256, 256\)"):
        ds[0]


def test_albumentations_example_keeps_image_mask_and_maps_aligned(nuclei):
    pytest.importorskip("albumentations")
    example = load_example()
    masks, images, out = nuclei
    # An image that is the mask: aligned pixels two inside a class keep its value.
    aligned_images = out.parent / "mask_images"
    aligned_images.mkdir()
    for path in sorted(masks.glob("*.tif")):
        labels = np.asarray(Image.open(path))
        Image.fromarray(((labels > 0) * 200).astype(np.uint8)).save(aligned_images / path.name)
    transform = example.make_transform(128, ("weight_unet", "weight_balance"))
    ds = WeightMapDataset(
        masks, out, images_dir=aligned_images, kinds=("unet", "balance"), transform=transform
    )
    values = set()
    for index in range(8):
        item = ds[index % len(ds)]
        mask = item["mask"].numpy()
        balance = item["weights"]["balance"].numpy()
        assert mask.shape == balance.shape == item["weights"]["unet"].shape == (128, 128)
        assert item["image"].shape == (1, 128, 128)
        assert set(np.unique(mask)) <= {0, 1}
        # Near 0, not 0: a one-pixel gap between touching nuclei can vanish from the
        # mask (nearest) while the map keeps a trace of it (seen: at most 0.4 %).
        assert example.off_weight_share(mask, balance) < 0.02
        values.update(np.unique(balance).tolist())
    # Resampled linearly: values between the two class weights appear at class edges;
    # nearest resampling would give the two weights (and the fill) only.
    assert len(values) > 3


def test_a_map_left_unaligned_shows_in_the_example_check(nuclei):
    pytest.importorskip("albumentations")  # the example imports it
    example = load_example()
    masks, _, out = nuclei
    item = WeightMapDataset(masks, out, kinds=("unet", "balance"))[0]
    mask, balance = item["mask"].numpy(), item["weights"]["balance"].numpy()
    assert example.off_weight_share(mask, balance) == 0
    assert example.off_weight_share(mask, np.roll(balance, 7, axis=1)) > 0.1


def test_albumentations_example_runs(tmp_path):
    pytest.importorskip("albumentations")
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path / "maps"), "--items", "4"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    share = re.search(r"largest share off the class weight: ([0-9.]+)%", result.stdout)
    assert share is not None, result.stdout
    assert float(share.group(1)) < 2.0


def test_file_dicts_are_the_pairing_as_monai_lists_it(nuclei, tmp_path):
    masks, images, out = nuclei
    files = WeightMapDataset(masks, out, images_dir=images, kinds=("unet", "balance")).file_dicts()
    assert [f["path"] for f in files] == [f"nuclei_0{i}.tif" for i in range(4)]
    first = files[0]
    assert first == {
        "image": str(images / "nuclei_00.tif"),
        "label": str(masks / "nuclei_00.tif"),
        "weight_unet": str((out / "nuclei_00.unet.tif").resolve()),
        "weight_balance": str((out / "nuclei_00.balance.tif").resolve()),
        "path": "nuclei_00.tif",
    }
    carved_masks, _, carved_out = generate(tmp_path, "nuclei", ("unet",), separate_touching=True)
    (entry, *_) = WeightMapDataset(carved_masks, carved_out).file_dicts()
    assert entry["label"] == str((carved_out / "nuclei_00.target.tif").resolve())
    assert set(entry) == {"label", "weight", "path"}
