"""WeightMapDataset on maps that ``weightmaps.generate`` writes from copies of sample_data.

Every test works in its own tmp folder (module fixtures for the read-only ones);
nothing is written into sample_data/. Expected values are read from the files on
disk independently (tifffile, PIL), not through the dataset's readers.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shlex
import shutil
import subprocess
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
import torch
from click.testing import CliRunner
from PIL import Image
from torch.utils.data import DataLoader
from weightmaps.cli.main import main as cli_main

import weightmaps
from weightmaps.data import StaleMapsError, WeightMapDataset
from weightmaps.transforms import Compose, RandomCrop, RandomFlip, RandomRot90

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
NUCLEI = [f"nuclei_0{i}.tif" for i in range(4)]


def make_maps(root: Path, name: str, kinds=("unet",), **options) -> SimpleNamespace:
    """Copy sample_data/{masks,images}/NAME under ROOT and generate maps into ROOT/maps."""
    masks, images, out = root / "masks", root / "images", root / "maps"
    shutil.copytree(SAMPLE / "masks" / name, masks)
    shutil.copytree(SAMPLE / "images" / name, images)
    report = weightmaps.generate(masks, out, kinds=kinds, workers=1, progress=False, **options)
    assert report.exit_code == 0, report.summary()
    return SimpleNamespace(masks=masks, images=images, out=out)


def map_file(d: SimpleNamespace, rel: str, kind: str) -> np.ndarray:
    return tifffile.imread(d.out / f"{Path(rel).stem}.{kind}.tif")


def plain_sample(item: dict, kinds: tuple[str, ...]) -> dict[str, np.ndarray]:
    """An untransformed item back as the numpy sample a transform receives."""
    sample = {"image": np.moveaxis(item["image"].numpy(), 0, -1), "mask": item["mask"].numpy()}
    if len(kinds) == 1:
        sample["weight"] = item["weight"].numpy()
    else:
        sample.update({f"weight_{k}": item["weights"][k].numpy() for k in kinds})
    return sample


def assert_items_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert a["path"] == b["path"]
    for key in a.keys() - {"path", "weights"}:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)
    for kind in a.get("weights", {}):
        torch.testing.assert_close(a["weights"][kind], b["weights"][kind], rtol=0, atol=0)


@pytest.fixture(scope="module")
def nuclei(tmp_path_factory) -> SimpleNamespace:
    """Nuclei with all three kinds, default settings (no carving). Read only."""
    return make_maps(tmp_path_factory.mktemp("nuclei"), "nuclei", kinds=("unet", "edge", "balance"))


@pytest.fixture(scope="module")
def carved(tmp_path_factory) -> SimpleNamespace:
    """Nuclei generated with separate_touching: a .target.tif per mask. Read only."""
    root = tmp_path_factory.mktemp("carved")
    return make_maps(root, "nuclei", kinds=("unet", "balance"), separate_touching=True)


@pytest.fixture
def fresh(tmp_path) -> SimpleNamespace:
    """Nuclei unet maps with separate_touching, for tests that break them."""
    return make_maps(tmp_path, "nuclei", kinds=("unet",), separate_touching=True)


# --------------------------------------------------------------------------
# Items


def test_item_one_kind_equals_the_files(nuclei):
    ds = WeightMapDataset(nuclei.masks, nuclei.out, images_dir=nuclei.images)
    assert len(ds) == 4 and ds.paths == NUCLEI
    for index, rel in enumerate(NUCLEI):
        item = ds[index]
        assert set(item) == {"image", "mask", "weight", "path"}
        assert item["path"] == rel
        assert item["image"].dtype == torch.float32 and item["image"].shape == (1, 256, 256)
        assert item["mask"].dtype == torch.int64 and item["mask"].shape == (256, 256)
        assert item["weight"].dtype == torch.float32 and item["weight"].shape == (256, 256)
        np.testing.assert_array_equal(item["image"][0], tifffile.imread(nuclei.images / rel))
        raw = tifffile.imread(nuclei.masks / rel)
        assert len(np.unique(raw)) > 3  # instance ids...
        np.testing.assert_array_equal(item["mask"], (raw != 0).astype(np.int64))  # ...become 0/1
        np.testing.assert_array_equal(item["weight"], map_file(nuclei, rel, "unet"))


def test_item_several_kinds_is_a_dict_by_kind(nuclei):
    kinds = ("edge", "unet", "balance")
    ds = WeightMapDataset(nuclei.masks, nuclei.out, kinds=kinds)
    item = ds[1]
    assert set(item) == {"mask", "weights", "path"}  # no images_dir: no "image"
    assert set(item["weights"]) == set(kinds)
    for kind in kinds:
        weight = item["weights"][kind]
        assert weight.dtype == torch.float32 and weight.shape == (256, 256)
        np.testing.assert_array_equal(weight, map_file(nuclei, NUCLEI[1], kind))
    assert not torch.equal(item["weights"]["edge"], item["weights"]["unet"])


def test_binary_png_0_255_becomes_0_1(tmp_path):
    d = make_maps(tmp_path, "binary", kinds=("edge",))
    ds = WeightMapDataset(d.masks, d.out, images_dir=d.images, kinds=("edge",))
    assert ds.paths == ["polyp_00.png", "polyp_01.png"]
    for index, rel in enumerate(ds.paths):
        item = ds[index]
        raw = np.asarray(Image.open(d.masks / rel))
        assert set(np.unique(raw)) == {0, 255}
        assert item["mask"].shape == (288, 352)
        np.testing.assert_array_equal(item["mask"], (raw == 255).astype(np.int64))
        np.testing.assert_array_equal(item["image"][0], np.asarray(Image.open(d.images / rel)))
        np.testing.assert_array_equal(item["weight"], map_file(d, rel, "edge"))


def test_rgb_image_gives_three_channels(tmp_path):
    d = make_maps(tmp_path, "binary", kinds=("edge",))
    grey = np.asarray(Image.open(d.images / "polyp_00.png"))
    rgb = np.stack([grey, grey // 2, 255 - grey], axis=-1)
    (d.images / "polyp_00.png").unlink()
    (d.images / "polyp_01.png").unlink()
    Image.fromarray(rgb).save(d.images / "polyp_00.jpeg", quality=100)
    np.save(d.images / "polyp_01.npy", rgb[::2].astype(np.float32))  # wrong shape: refused
    ds = WeightMapDataset(d.masks, d.out, images_dir=d.images, kinds=("edge",))
    image = ds[0]["image"]
    assert image.shape == (3, 288, 352) and image.dtype == torch.float32
    np.testing.assert_array_equal(
        image, np.moveaxis(np.asarray(Image.open(d.images / "polyp_00.jpeg")), -1, 0)
    )
    with pytest.raises(ValueError, match="polyp_01.png: image shape"):
        ds[1]


def test_palette_image_gives_its_colours(tmp_path):
    d = make_maps(tmp_path, "binary", kinds=("edge",))
    rgb = Image.open(d.images / "polyp_00.png").convert("RGB")
    palette = rgb.quantize(16)
    palette.save(d.images / "polyp_00.png")
    assert Image.open(d.images / "polyp_00.png").mode == "P"
    image = WeightMapDataset(d.masks, d.out, images_dir=d.images, kinds=("edge",))[0]["image"]
    expected = np.asarray(palette.convert("RGB"))
    assert np.asarray(palette).max() < 16 < expected.max()  # colours, not palette indices
    np.testing.assert_array_equal(image, np.moveaxis(expected, -1, 0))


def test_maps_beside_the_masks(tmp_path):
    masks = tmp_path / "masks"
    shutil.copytree(SAMPLE / "masks" / "nuclei", masks)
    weightmaps.generate(masks, masks, kinds=("unet",), workers=1, progress=False)
    ds = WeightMapDataset(masks, masks)  # the .unet.tif files are not taken for masks
    assert ds.paths == NUCLEI
    np.testing.assert_array_equal(ds[0]["weight"], tifffile.imread(masks / "nuclei_00.unet.tif"))


def test_semantic_keeps_ids_and_ignore_becomes_ignore_index(tmp_path):
    d = make_maps(tmp_path, "semantic", kinds=("balance",), mask_type="semantic", ignore_value=255)
    raw = np.asarray(Image.open(d.masks / "street_00.png")).astype(np.int64)
    ignored = raw == 255
    assert ignored.any() and set(np.unique(raw[~ignored])) == {0, 1, 2, 3}

    item = WeightMapDataset(d.masks, d.out, kinds=("balance",))[0]
    np.testing.assert_array_equal(item["mask"], np.where(ignored, -100, raw))
    assert (item["weight"][torch.from_numpy(ignored)] == 0).all()  # ignored: weight 0

    other = WeightMapDataset(d.masks, d.out, kinds=("balance",), ignore_index=-1)[0]
    np.testing.assert_array_equal(other["mask"], np.where(ignored, -1, raw))
    as_stored = WeightMapDataset(d.masks, d.out, kinds=("balance",), mask_values="raw")[0]
    np.testing.assert_array_equal(as_stored["mask"], raw)


def test_volume_3d_items_and_transform(tmp_path):
    d = make_maps(tmp_path, "volume", kinds=("unet", "edge"), sigma=2, spacing="auto")
    kinds = ("unet", "edge")
    ds = WeightMapDataset(d.masks, d.out, images_dir=d.images, kinds=kinds)
    item = ds[0]
    assert item["image"].shape == (1, 24, 96, 96) and item["image"].dtype == torch.float32
    assert item["mask"].shape == (24, 96, 96) and item["mask"].dtype == torch.int64
    raw = tifffile.imread(d.masks / "nuclei3d_00.tif")
    np.testing.assert_array_equal(item["mask"], (raw != 0).astype(np.int64))
    np.testing.assert_array_equal(item["image"][0], tifffile.imread(d.images / "nuclei3d_00.tif"))
    for kind in kinds:
        np.testing.assert_array_equal(item["weights"][kind], map_file(d, "nuclei3d_00.tif", kind))

    augment = Compose([RandomFlip(), RandomCrop((16, 48, 48))])
    aug = WeightMapDataset(d.masks, d.out, images_dir=d.images, kinds=kinds, transform=augment)
    torch.manual_seed(3)
    got = aug[0]
    assert got["image"].shape == (1, 16, 48, 48) and got["mask"].shape == (16, 48, 48)
    torch.manual_seed(3)
    expected = augment(**plain_sample(item, kinds))
    np.testing.assert_array_equal(got["mask"], expected["mask"])
    np.testing.assert_array_equal(got["image"], np.moveaxis(expected["image"], -1, 0))
    for kind in kinds:
        np.testing.assert_array_equal(got["weights"][kind], expected[f"weight_{kind}"])


def test_bad_arguments_are_refused(nuclei, tmp_path):
    with pytest.raises(ValueError, match="kinds"):
        WeightMapDataset(nuclei.masks, nuclei.out, kinds=("unet", "nope"))
    with pytest.raises(ValueError, match="target"):
        WeightMapDataset(nuclei.masks, nuclei.out, target="both")
    with pytest.raises(FileNotFoundError, match="no image for mask nuclei_00.tif"):
        WeightMapDataset(nuclei.masks, nuclei.out, images_dir=tmp_path)


# --------------------------------------------------------------------------
# Verification against the manifest


def regenerate(message: str) -> None:
    """Run the ``weightmaps generate ...`` command an error message suggests."""
    command = message.split("Regenerate with: ", 1)[1]
    words = shlex.split(command)
    assert words[:2] == ["weightmaps", "generate"]
    result = CliRunner().invoke(cli_main, [*words[1:], "--workers", "1", "--quiet"])
    assert result.exit_code == 0, result.output


def test_verify_refuses_a_missing_map_and_its_command_fixes_it(fresh):
    (fresh.out / "nuclei_01.unet.tif").unlink()
    with pytest.raises(StaleMapsError) as info:
        WeightMapDataset(fresh.masks, fresh.out)
    message = str(info.value)
    assert "nuclei_01.tif" in message and "missing" in message
    assert "nuclei_00.tif" not in message
    assert f"weightmaps generate {fresh.masks} {fresh.out}" in message
    # The command repeats the recorded settings: rerunning it keeps the carving.
    assert "--separate-touching" in message
    regenerate(message)
    ds = WeightMapDataset(fresh.masks, fresh.out, settings={"separate_touching": True})
    target = tifffile.imread(fresh.out / "nuclei_01.target.tif")
    np.testing.assert_array_equal(ds[1]["mask"], (target != 0).astype(np.int64))
    np.testing.assert_array_equal(ds[1]["weight"], map_file(fresh, NUCLEI[1], "unet"))


def test_verify_refuses_a_mask_changed_since(fresh):
    path = fresh.masks / "nuclei_02.tif"
    mask = tifffile.imread(path)
    mask[:40, :40] = 0
    mask[10:20, 10:20] = mask.max() + 1
    tifffile.imwrite(path, mask)
    with pytest.raises(StaleMapsError) as info:
        WeightMapDataset(fresh.masks, fresh.out)
    message = str(info.value)
    assert "nuclei_02.tif: mask changed" in message
    assert "nuclei_01.tif" not in message and "weightmaps generate" in message
    regenerate(message)
    item = WeightMapDataset(fresh.masks, fresh.out)[2]
    assert item["mask"][10:20, 10:20].eq(1).all() and item["mask"][:10, :10].eq(0).all()


def test_verify_refuses_a_mask_without_maps(fresh):
    shutil.copy(fresh.masks / "nuclei_00.tif", fresh.masks / "nuclei_new.tif")
    with pytest.raises(StaleMapsError, match="nuclei_new.tif: no maps recorded"):
        WeightMapDataset(fresh.masks, fresh.out)


def test_verify_refuses_other_parameters(fresh):
    # Made with the default sigma=5; asking for what was made passes.
    WeightMapDataset(fresh.masks, fresh.out, settings={"sigma": 5, "w0": 10.0})
    made = weightmaps.MapSettings(separate_touching=True)
    WeightMapDataset(fresh.masks, fresh.out, settings=made)
    with pytest.raises(StaleMapsError) as info:
        WeightMapDataset(fresh.masks, fresh.out, settings={"sigma": 3})
    message = str(info.value)
    assert "sigma=5.0 (asked 3.0)" in message
    assert "nuclei_00.tif" in message  # names the files made so
    assert "weightmaps generate" in message and "--sigma 3" in message
    with pytest.raises(StaleMapsError, match="sigma"):
        WeightMapDataset(fresh.masks, fresh.out, settings=weightmaps.MapSettings(sigma=3))
    before = map_file(fresh, NUCLEI[0], "unet")
    regenerate(message)
    ds = WeightMapDataset(fresh.masks, fresh.out, settings={"sigma": 3})
    assert not np.array_equal(ds[0]["weight"].numpy(), before)


def test_verify_refuses_a_carved_target_that_was_not_made(nuclei):
    with pytest.raises(StaleMapsError, match="no target map"):
        WeightMapDataset(nuclei.masks, nuclei.out, target="carved")


def test_no_manifest(fresh, tmp_path):
    with pytest.raises(StaleMapsError, match="no manifest.*weightmaps generate"):
        WeightMapDataset(fresh.masks, tmp_path / "never_made")
    expected = WeightMapDataset(fresh.masks, fresh.out)
    (fresh.out / "weightmaps.json").unlink()
    with pytest.raises(StaleMapsError, match="no manifest"):
        WeightMapDataset(fresh.masks, fresh.out)
    # Without verification the maps are read by name; the mask type is inferred.
    ds = WeightMapDataset(fresh.masks, fresh.out, verify=False)
    assert len(ds) == 4
    for index in range(4):
        assert_items_equal(ds[index], expected[index])


def impostor(path: Path) -> np.ndarray:
    """Replace the map at ``path`` by other pixels in a valid TIFF of the same byte size."""
    size = path.stat().st_size
    other = np.ones_like(tifffile.imread(path))
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, other, compression="zlib")
    data = buffer.getvalue()
    assert len(data) < size
    path.write_bytes(data + bytes(size - len(data)))  # TIFF readers ignore the tail
    np.testing.assert_array_equal(tifffile.imread(path), other)
    return other


def test_verify_refuses_another_masks_map_at_construction(fresh):
    out = fresh.out
    sizes = [(out / f"nuclei_0{i}.unet.tif").stat().st_size for i in (0, 1)]
    assert sizes[0] != sizes[1]
    shutil.copy(out / "nuclei_01.unet.tif", out / "nuclei_00.unet.tif")
    with pytest.raises(StaleMapsError) as info:
        WeightMapDataset(fresh.masks, out)
    message = str(info.value)
    assert f"nuclei_00.tif: unet map {out.resolve() / 'nuclei_00.unet.tif'} changed" in message
    assert "nuclei_01.tif" not in message
    # generate sees the size too: the command in the message redoes that map.
    regenerate(message)
    ds = WeightMapDataset(fresh.masks, out)
    np.testing.assert_array_equal(ds[0]["weight"], map_file(fresh, NUCLEI[0], "unet"))
    assert not np.array_equal(ds[0]["weight"], map_file(fresh, NUCLEI[1], "unet"))


@pytest.mark.parametrize("kind", ["unet", "target"])
def test_verify_refuses_a_same_size_map_when_read(fresh, kind):
    ds = WeightMapDataset(fresh.masks, fresh.out)  # sizes only: constructs
    expected = ds[2]
    path = fresh.out / f"nuclei_02.{kind}.tif"
    impostor(path)
    with pytest.raises(StaleMapsError) as info:
        ds[2]
    message = str(info.value)
    assert f"{kind} map {path.resolve()} of mask nuclei_02.tif" in message
    assert "SHA-256 differs" in message and "delete it" in message
    for index in (0, 1, 3):  # the others still load
        ds[index]
    # A new dataset constructs (same size) and refuses the same item.
    with pytest.raises(StaleMapsError, match="SHA-256"):
        WeightMapDataset(fresh.masks, fresh.out)[2]
    # What the message says to do gives back the map that was made.
    path.unlink()
    regenerate(message)
    assert_items_equal(WeightMapDataset(fresh.masks, fresh.out)[2], expected)


def test_verify_refuses_a_map_changed_after_construction(fresh):
    ds = WeightMapDataset(fresh.masks, fresh.out)
    shutil.copy(fresh.out / "nuclei_01.unet.tif", fresh.out / "nuclei_00.unet.tif")
    with pytest.raises(StaleMapsError, match="unet map .*nuclei_00.unet.tif of mask nuclei_00.tif"):
        ds[0]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
def test_verify_does_not_wait_on_a_fifo_in_a_maps_place(fresh):
    ds = WeightMapDataset(fresh.masks, fresh.out)
    path = fresh.out / "nuclei_03.unet.tif"
    path.unlink()
    os.mkfifo(path)
    with pytest.raises(StaleMapsError, match="nuclei_03.unet.tif of mask nuclei_03.tif is not a"):
        ds[3]
    with pytest.raises(StaleMapsError, match="nuclei_03.tif: unet map file missing"):
        WeightMapDataset(fresh.masks, fresh.out)


def test_without_verify_maps_are_not_hashed(fresh):
    other = impostor(fresh.out / "nuclei_02.unet.tif")
    item = WeightMapDataset(fresh.masks, fresh.out, verify=False)[2]
    np.testing.assert_array_equal(item["weight"], other)


def test_manifest_without_digests_checks_sizes(fresh):
    """A manifest written before map digests: sizes are checked, same-size content is not."""
    path = fresh.out / "weightmaps.json"
    data = json.loads(path.read_text())
    for record in data["masks"].values():
        for output in record["outputs"].values():
            del output["sha256"]
    path.write_text(json.dumps(data))
    ds = WeightMapDataset(fresh.masks, fresh.out)
    other = impostor(fresh.out / "nuclei_01.unet.tif")
    np.testing.assert_array_equal(ds[1]["weight"], other)
    shutil.copy(fresh.out / "nuclei_00.unet.tif", fresh.out / "nuclei_01.unet.tif")
    with pytest.raises(StaleMapsError, match="nuclei_01.tif: unet map .* changed"):
        WeightMapDataset(fresh.masks, fresh.out)
    with pytest.raises(StaleMapsError, match="is not the [0-9]+ bytes generate wrote"):
        ds[1]


# --------------------------------------------------------------------------
# Target


def test_target_auto_uses_the_carved_target(carved):
    auto = WeightMapDataset(carved.masks, carved.out)
    plain = WeightMapDataset(carved.masks, carved.out, target="mask")
    differs = False
    for index, rel in enumerate(NUCLEI):
        target = tifffile.imread(carved.out / f"{Path(rel).stem}.target.tif")
        raw = tifffile.imread(carved.masks / rel)
        np.testing.assert_array_equal(auto[index]["mask"], (target != 0).astype(np.int64))
        np.testing.assert_array_equal(plain[index]["mask"], (raw != 0).astype(np.int64))
        differs |= bool((auto[index]["mask"] != plain[index]["mask"]).any())
    assert differs  # the sample nuclei touch: carving removed pixels
    forced = WeightMapDataset(carved.masks, carved.out, target="carved")
    assert_items_equal(forced[0], auto[0])


# --------------------------------------------------------------------------
# Transforms


def test_transforms_keep_balance_maps_constant_per_class(carved):
    """A balance map is one weight per class: after joint transforms still the same."""
    plain = WeightMapDataset(carved.masks, carved.out, kinds=("balance",))
    per_class = []
    for item in plain:
        mask, weight = item["mask"], item["weight"]
        values = {c: weight[mask == c].unique() for c in (0, 1)}
        assert all(len(v) == 1 for v in values.values())
        assert values[0] != values[1]
        per_class.append(values)
    augment = Compose([RandomFlip(), RandomRot90(), RandomCrop((96, 112))])
    aug = WeightMapDataset(carved.masks, carved.out, kinds=("balance",), transform=augment)
    torch.manual_seed(0)
    for _ in range(3):
        for index in range(len(aug)):
            item = aug[index]
            assert item["mask"].shape in ((96, 112),)
            for c, value in per_class[index].items():
                assert (item["weight"][item["mask"] == c] == value).all()


def test_transform_gets_the_same_draws_as_by_hand(nuclei):
    kinds = ("unet", "edge")
    augment = Compose([RandomFlip(), RandomRot90(), RandomCrop(128)])
    plain = WeightMapDataset(nuclei.masks, nuclei.out, images_dir=nuclei.images, kinds=kinds)
    aug = WeightMapDataset(
        nuclei.masks, nuclei.out, images_dir=nuclei.images, kinds=kinds, transform=augment
    )
    for seed in range(3):
        torch.manual_seed(seed)
        got = aug[seed]
        torch.manual_seed(seed)
        expected = augment(**plain_sample(plain[seed], kinds))
        assert got["image"].shape == (1, 128, 128)
        np.testing.assert_array_equal(got["image"], np.moveaxis(expected["image"], -1, 0))
        np.testing.assert_array_equal(got["mask"], expected["mask"])
        for kind in kinds:
            np.testing.assert_array_equal(got["weights"][kind], expected[f"weight_{kind}"])


def test_albumentations_signature_callable(nuclei):
    def flip_rows(image, mask, weight):  # a plain function, as albumentations calls it
        return {"image": image[::-1] * 2.0, "mask": mask[::-1], "weight": weight[::-1]}

    def flip_cols(image, mask, weight_unet, weight_edge):
        return {
            "image": image[:, ::-1],
            "mask": mask[:, ::-1],
            "weight_unet": weight_unet[:, ::-1],
            "weight_edge": weight_edge[:, ::-1],
        }

    args = (nuclei.masks, nuclei.out)
    plain = WeightMapDataset(*args, images_dir=nuclei.images)[1]
    got = WeightMapDataset(*args, images_dir=nuclei.images, transform=flip_rows)[1]
    torch.testing.assert_close(got["image"], plain["image"].flip(1) * 2)
    torch.testing.assert_close(got["mask"], plain["mask"].flip(0))
    torch.testing.assert_close(got["weight"], plain["weight"].flip(0))

    kinds = ("unet", "edge")
    plain = WeightMapDataset(*args, images_dir=nuclei.images, kinds=kinds)[1]
    got = WeightMapDataset(*args, images_dir=nuclei.images, kinds=kinds, transform=flip_cols)[1]
    torch.testing.assert_close(got["image"], plain["image"].flip(2))
    for kind in kinds:
        torch.testing.assert_close(got["weights"][kind], plain["weights"][kind].flip(1))


# --------------------------------------------------------------------------
# DataLoader and pickling


def test_dataloader_with_workers_and_pickle(nuclei):
    kinds = ("unet", "edge")
    ds = WeightMapDataset(nuclei.masks, nuclei.out, images_dir=nuclei.images, kinds=kinds)
    loader = DataLoader(ds, batch_size=2, num_workers=2, pin_memory=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pin_memory without an accelerator warns
        batches = list(loader)
    assert len(batches) == 2
    for b, batch in enumerate(batches):
        assert batch["path"] == NUCLEI[2 * b : 2 * b + 2]
        assert batch["image"].shape == (2, 1, 256, 256) and batch["image"].dtype == torch.float32
        assert batch["mask"].shape == (2, 256, 256) and batch["mask"].dtype == torch.int64
        for i in range(2):
            item = ds[2 * b + i]
            torch.testing.assert_close(batch["mask"][i], item["mask"], rtol=0, atol=0)
            torch.testing.assert_close(batch["image"][i], item["image"], rtol=0, atol=0)
            for kind in kinds:
                torch.testing.assert_close(batch["weights"][kind][i], item["weights"][kind])

    augmented = WeightMapDataset(
        nuclei.masks, nuclei.out, kinds=kinds, transform=Compose([RandomFlip(), RandomCrop(64)])
    )
    clone = pickle.loads(pickle.dumps(augmented))
    assert clone.paths == augmented.paths
    torch.manual_seed(5)
    a = augmented[3]
    torch.manual_seed(5)
    assert_items_equal(clone[3], a)


# --------------------------------------------------------------------------
# Edge maps made at a training size


def test_edge_size_maps_resize_mask_and_image(tmp_path):
    d = make_maps(tmp_path, "nuclei", kinds=("edge", "unet"), edge_size=(64, 64))
    ds = WeightMapDataset(d.masks, d.out, images_dir=d.images, kinds=("edge",))
    for index, rel in enumerate(NUCLEI):
        item = ds[index]
        assert item["image"].shape == (1, 64, 64) and item["image"].dtype == torch.float32
        assert item["mask"].shape == (64, 64) and item["mask"].dtype == torch.int64
        np.testing.assert_array_equal(item["weight"], map_file(d, rel, "edge"))
        # Pixel centres aligned, factor 4: output pixel i sits at input 4i + 1.5.
        image = tifffile.imread(d.images / rel).astype(np.float64)
        expected = sum(image[a::4, b::4] for a in (1, 2) for b in (1, 2)) / 4  # linear
        np.testing.assert_allclose(item["image"][0], expected, atol=1e-3)
        fg = tifffile.imread(d.masks / rel) != 0
        candidates = np.stack([fg[a::4, b::4] for a in (1, 2) for b in (1, 2)])  # nearest
        assert set(np.unique(item["mask"])) == {0, 1}
        assert (candidates == item["mask"].numpy().astype(bool)).any(axis=0).all()
    with pytest.raises(ValueError, match="maps of different shapes"):
        WeightMapDataset(d.masks, d.out, kinds=("edge", "unet"))[0]


# --------------------------------------------------------------------------
# Examples


@pytest.mark.parametrize("script", ["train_unet.py", "train_polyp.py"])
def test_example_runs(script, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), "--steps", "3", "--out", str(tmp_path)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    assert "mean loss of the first 3 steps" in result.stdout
    assert (tmp_path / "weightmaps.json").is_file()


def test_jpeg_mask_target_is_cut_where_generate_cut_it(tmp_path):
    """A 0/1 mask saved as JPEG holds 0..2: generate cuts it at half its top level
    (recorded as the manifest's threshold), not at half its maximum, and so must
    the Dataset's target."""
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    yy, xx = np.mgrid[:96, :96]
    disk = ((yy - 48) ** 2 + (xx - 44) ** 2 < 30**2).astype(np.uint8)
    Image.fromarray(disk).save(masks / "polyp.jpg", quality=75)
    raw = np.asarray(Image.open(masks / "polyp.jpg"))
    weightmaps.generate(masks, out, kinds=("edge",), workers=1, progress=False)
    record = json.loads((out / "weightmaps.json").read_text())["masks"]["polyp.jpg"]
    threshold = record["threshold"]
    assert (raw > threshold).sum() != (raw > raw.max() / 2).sum()  # the two cuts differ here
    item = WeightMapDataset(masks, out, kinds=("edge",))[0]
    np.testing.assert_array_equal(item["mask"].numpy(), (raw > threshold).astype(np.int64))
