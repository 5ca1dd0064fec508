"""WeightMapReader in MONAI's LoadImaged, and MONAI's dictionary transforms keeping
image, label and maps aligned. Skipped without MONAI (the [monai] extra)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
from conftest import load_script, sample_zarr_volume
from PIL import Image

import weightmaps

monai = pytest.importorskip("monai")
from monai.data import DataLoader, Dataset, MetaTensor  # noqa: E402
from monai.transforms import LoadImage, LoadImaged  # noqa: E402

from weightmaps.monai import WeightMapReader  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
EXAMPLE = ROOT / "examples" / "monai_pipeline.py"


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    root = tmp_path_factory.mktemp("volume")
    shutil.copytree(SAMPLE / "masks" / "volume", root / "masks")
    report = weightmaps.generate(
        root / "masks",
        root / "out",
        kinds=["unet", "edge"],
        spacing="auto",
        sigma=2.0,
        workers=1,
        progress=False,
    )
    assert report.exit_code == 0, report.summary()
    return root


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory):
    root = tmp_path_factory.mktemp("nuclei")
    masks = root / "masks"
    shutil.copytree(SAMPLE / "masks" / "nuclei", masks)
    report = weightmaps.generate(
        masks,
        root / "out",
        kinds=["unet", "balance"],
        separate_touching=True,
        workers=1,
        progress=False,
    )
    assert report.exit_code == 0, report.summary()
    # Images that are the mask: aligned, they are constant two pixels inside a class.
    (root / "images").mkdir()
    for path in sorted(masks.glob("*.tif")):
        labels = tifffile.imread(path)
        tifffile.imwrite(root / "images" / path.name, ((labels > 0) * 200).astype(np.uint8))
    return root


def imagej_spacing(path: Path) -> tuple[float, float, float]:
    """z from ImageJ's metadata, y and x from the resolution tags, read with tifffile."""
    with tifffile.TiffFile(path) as tif:
        z = tif.imagej_metadata["spacing"]
        tags = tif.pages[0].tags
        y = tags["YResolution"].value[1] / tags["YResolution"].value[0]
        x = tags["XResolution"].value[1] / tags["XResolution"].value[0]
    return z, y, x


def test_3d_tiff_map_has_its_spacing_kind_and_parameters(volume):
    path = volume / "out" / "nuclei3d_00.unet.tif"
    want = imagej_spacing(path)
    assert want != (1.0, 1.0, 1.0)
    item = LoadImaged(["weight"], reader=WeightMapReader(), ensure_channel_first=True)(
        {"weight": str(path)}
    )
    weight = item["weight"]
    assert isinstance(weight, MetaTensor)
    np.testing.assert_array_equal(weight[0].numpy(), tifffile.imread(path))  # every slice
    np.testing.assert_allclose(weight.pixdim.numpy(), want)
    assert weight.meta["weightmaps_kind"] == "unet"
    params = json.loads(weight.meta["weightmaps_params"])
    assert params["sigma"] == 2.0 and params["w0"] == 10.0
    assert weight.meta["weightmaps_mask"] == "nuclei3d_00.tif"
    assert weight.meta.get("spacing_unit") in ("um", "micron", "\\u00B5m", "µm")


def test_zarr_map_spacing_comes_from_the_manifest(tmp_path):
    zarr = pytest.importorskip("zarr")
    masks = tmp_path / "masks"
    masks.mkdir()
    sample_zarr_volume(masks)
    report = weightmaps.generate(
        masks,
        tmp_path / "out",
        kinds=["unet"],
        spacing=(2.0, 0.5, 0.5),
        workers=1,
        progress=False,
    )
    assert report.exit_code == 0, report.summary()
    image = LoadImage(reader=WeightMapReader(), ensure_channel_first=True)(
        str(tmp_path / "out" / "vol.unet.zarr")
    )
    np.testing.assert_array_equal(
        image[0].numpy(), zarr.open_array(str(tmp_path / "out" / "vol.unet.zarr"))[:]
    )
    np.testing.assert_allclose(image.pixdim.numpy(), [2.0, 0.5, 0.5])
    assert json.loads(image.meta["weightmaps_params"])["spacing"] == [2.0, 0.5, 0.5]


def test_axes_as_stored_or_reversed(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 255, (5, 7, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "image.png")
    loaded = LoadImage(reader=WeightMapReader(), ensure_channel_first=True)(
        str(tmp_path / "image.png")
    )
    np.testing.assert_array_equal(loaded.numpy(), np.moveaxis(rgb, -1, 0).astype(np.float32))

    spaced = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    tifffile.imwrite(
        tmp_path / "w.tif",
        spaced,
        imagej=True,
        resolution=(1 / 0.5, 1 / 0.25),
        metadata={"spacing": 3.0, "axes": "ZYX"},
    )
    stored = LoadImage(reader=WeightMapReader())(str(tmp_path / "w.tif"))
    np.testing.assert_allclose(stored.pixdim.numpy(), [3.0, 0.25, 0.5])
    reverse = LoadImage(reader=WeightMapReader(reverse_indexing=True))(str(tmp_path / "w.tif"))
    np.testing.assert_array_equal(reverse.numpy(), spaced.transpose(2, 1, 0))
    np.testing.assert_allclose(reverse.pixdim.numpy(), [0.5, 0.25, 3.0])


def test_suffixes_and_size_limit(tmp_path):
    reader = WeightMapReader(max_pixels=100)
    assert reader.verify_suffix(["a.unet.tif", "b.ZARR/", "c.png", "d.npy"])
    assert not reader.verify_suffix(["a.nii.gz"])
    tifffile.imwrite(tmp_path / "big.unet.tif", np.zeros((20, 20), np.float32))
    with pytest.raises(ValueError, match="400 pixels, more than the limit of 100"):
        LoadImage(reader=reader)(str(tmp_path / "big.unet.tif"))
    np.save(tmp_path / "big.npy", np.zeros((20, 20), np.float32))
    with pytest.raises(ValueError, match="more than the limit"):
        LoadImage(reader=reader)(str(tmp_path / "big.npy"))


def load_example():
    return load_script(EXAMPLE)


def test_monai_transforms_keep_image_label_and_maps_aligned(nuclei):
    example = load_example()
    cv2 = pytest.importorskip("cv2")
    files = example.file_list(nuclei / "masks", nuclei / "images", nuclei / "out")
    transform = example.make_transforms(crop=96, patch=64, samples=2)
    monai.utils.set_determinism(seed=0)
    patches = [patch for item in files for patch in transform(item)]
    assert len(patches) == 2 * len(files)
    values = set()
    for patch in patches:
        label = patch["label"][0].numpy()
        shapes = {key: tuple(patch[key].shape) for key in example.KEYS}
        assert set(shapes.values()) == {(1, 64, 64)}, shapes
        assert patch["label"].dtype == torch.int64 and set(np.unique(label)) <= {0, 1}
        image, balance = patch["image"][0].numpy(), patch["weight_balance"][0].numpy()
        for value in np.unique(label):
            inside = (
                cv2.erode(
                    (label == value).astype(np.uint8),
                    np.ones((5, 5), np.uint8),
                    borderType=cv2.BORDER_CONSTANT,
                    borderValue=0,
                )
                > 0
            )
            if inside.any():
                assert np.ptp(balance[inside]) < 1e-4  # the map moved with the label
                np.testing.assert_allclose(image[inside], float(value), atol=1e-4)
        values.update(np.round(balance, 4).ravel().tolist())
    assert len(values) > 2  # bilinear: values between the class weights at edges
    # RandWeightedCropd samples where the U-Net map is high, near the borders (a
    # negative crop of RandCropByPosNegLabeld may hold none).
    weights = torch.stack([patch["weight_unet"].as_tensor() for patch in patches])
    assert int((weights.amax(dim=(1, 2, 3)) > 2.0).sum()) >= len(patches) // 2


def test_batches_collate_metatensors_and_metadata(nuclei):
    example = load_example()
    files = example.file_list(nuclei / "masks", nuclei / "images", nuclei / "out")
    loader = DataLoader(Dataset(files, example.make_transforms()), batch_size=4)
    batch = next(iter(loader))
    # 4 files, 2 patches each, flattened by MONAI's collation
    weight = batch["weight_unet"]
    assert weight.shape == (8, 1, 64, 64) and batch["label"].shape == (8, 1, 64, 64)
    assert weight.meta["weightmaps_kind"] == ["unet"] * 8
    from weightmaps.losses import weighted_dice_ce

    logits = torch.zeros(8, 2, 64, 64, requires_grad=True)
    loss = weighted_dice_ce(logits, batch["label"], weight)
    assert type(loss) is torch.Tensor and torch.isfinite(loss)
    loss.backward()


def test_monai_example_runs(tmp_path):
    result = subprocess.run(
        [sys.executable, str(EXAMPLE), "--out", str(tmp_path / "maps"), "--steps", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "unet map" in result.stdout and "mean loss of the first 2 steps" in result.stdout
