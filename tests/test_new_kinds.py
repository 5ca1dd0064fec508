"""The sdf and skeleton kinds and the Falk options of unet, through the pipeline.

Every map ``generate`` writes is compared with an oracle spelled out here:
the signed distance formula with scipy, skimage's skeletonize of every
instance alone, and Falk's kernel (itself tested against the plugin's loop)
on the instances. The device path (torch on the CPU) and the chunked path
must write the maps the in-memory path writes.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import SAMPLE_MASKS, random_instances
from PIL import Image
from scipy import ndimage as ndi
from skimage.morphology import skeletonize
from weightmaps.cli.main import main

import weightmaps
from weightmaps import MapSettings, read_mask
from weightmaps.kernels.falk import unet_weight_map_falk
from weightmaps.kinds import DEFAULT_KINDS, KINDS, REGISTRY
from weightmaps.pipeline.manifest import MANIFEST_NAME, Manifest


def run(masks_dir: Path, out_dir: Path, **options) -> weightmaps.pipeline.GenerateReport:
    options.setdefault("workers", 1)
    options.setdefault("progress", False)
    return weightmaps.generate(masks_dir, out_dir, **options)


def phi(inside: np.ndarray, spacing=None) -> np.ndarray:
    """Kervadec's one_hot2dist for one class, in float64; 0 where undefined."""
    if not inside.any() or inside.all():
        return np.zeros(inside.shape)
    outside = ~inside
    return (
        ndi.distance_transform_edt(outside, sampling=spacing) * outside
        - (ndi.distance_transform_edt(inside, sampling=spacing) - 1) * inside
    )


def oracle_sdf(labels, classes, *, ignore=None, spacing=None, clip=None) -> np.ndarray:
    out = np.stack([phi(labels == c, spacing) for c in classes])
    if clip is not None:
        out = np.clip(out, -clip, clip)
    if ignore is not None:
        out[:, ignore] = 0
    return out.astype(np.float32)


def oracle_skeleton(regions: np.ndarray) -> np.ndarray:
    out = np.zeros(regions.shape, bool)
    for i in np.unique(regions):
        if i != 0:
            out |= skeletonize(regions == i)
    return out.astype(np.uint8)


def read(out: Path, rel: str, kind: str) -> np.ndarray:
    return tifffile.imread(out / f"{rel.rsplit('.', 1)[0]}.{kind}.tif")


def semantic_pair(folder: Path) -> list[str]:
    """Two semantic masks of one shape with different classes present, 255 ignored."""
    folder.mkdir(parents=True)
    a = np.zeros((48, 64), np.uint8)
    a[5:20, 5:30] = 1
    a[25:40, 10:50] = 2
    a[:2] = 255
    b = np.zeros((48, 64), np.uint8)
    b[10:30, 30:60] = 3
    b[30:45, 5:25] = 2
    Image.fromarray(a).save(folder / "a.png")
    Image.fromarray(b).save(folder / "b.png")
    return ["a.png", "b.png"]


def test_new_kinds_are_made_only_when_asked(tmp_path):
    assert DEFAULT_KINDS == ("unet", "edge", "balance")
    assert set(KINDS) == {*DEFAULT_KINDS, "sdf", "distance", "skeleton"}
    run(SAMPLE_MASKS / "binary", tmp_path / "out")
    assert not list((tmp_path / "out").glob("*.sdf.tif"))
    assert not list((tmp_path / "out").glob("*.skeleton.tif"))
    recorded = Manifest.load(tmp_path / "out" / MANIFEST_NAME).settings
    assert recorded["kinds"] == list(DEFAULT_KINDS)
    # A new parameter at its default is not recorded: maps made before it stay current.
    assert "v_bal" not in MapSettings().kind_params("unet")
    assert MapSettings(v_bal=0.5).kind_params("unet")["v_bal"] == 0.5


def test_binary_and_instance_masks(tmp_path):
    out = tmp_path / "out"
    report = run(SAMPLE_MASKS, out, kinds=["sdf", "skeleton"], glob=("binary/*", "nuclei/*"))
    assert report.exit_code == 0
    manifest = Manifest.load(out / MANIFEST_NAME)
    for rel in ["binary/polyp_00.png", "nuclei/nuclei_00.tif", "nuclei/nuclei_02.tif"]:
        mask = read_mask(SAMPLE_MASKS / rel)
        foreground = mask > mask.max() / 2 if rel.startswith("binary") else mask != 0
        sdf = read(out, rel, "sdf")
        assert sdf.shape == (1, *mask.shape) and sdf.dtype == np.float32
        np.testing.assert_allclose(sdf, oracle_sdf(foreground, [True]), rtol=0, atol=1e-5)
        skeleton = read(out, rel, "skeleton")
        assert skeleton.dtype == np.uint8
        regions = foreground if rel.startswith("binary") else mask
        np.testing.assert_array_equal(skeleton, oracle_skeleton(regions))
        outputs = manifest.masks[rel]["outputs"]
        assert outputs["sdf"]["shape"] == [1, *mask.shape]
        assert outputs["sdf"]["dtype"] == "float32"
        assert outputs["skeleton"]["dtype"] == "uint8"


def test_touching_instances_keep_separate_skeletons(tmp_path):
    labels = np.zeros((20, 40), np.uint16)
    labels[4:16, 4:20] = 1
    labels[4:16, 20:36] = 2
    (tmp_path / "m").mkdir()
    tifffile.imwrite(tmp_path / "m" / "cells.tif", labels)
    run(tmp_path / "m", tmp_path / "out", kinds=["skeleton"], mask_type="instance")
    got = read(tmp_path / "out", "cells.tif", "skeleton")
    np.testing.assert_array_equal(got, oracle_skeleton(labels))
    assert not np.array_equal(got, skeletonize(labels > 0).astype(np.uint8))


def test_semantic_masks_classes_present_or_named(tmp_path):
    rels = semantic_pair(tmp_path / "m")
    options = {"mask_type": "semantic", "ignore_value": 255}
    run(tmp_path / "m", tmp_path / "own", kinds=["sdf", "skeleton"], **options)
    run(tmp_path / "m", tmp_path / "named", kinds=["sdf"], sdf_classes=(3, 1, 2), **options)
    for rel in rels:
        mask = read_mask(tmp_path / "m" / rel)
        ignore = mask == 255
        present = [c for c in np.unique(mask) if c not in (0, 255)]
        own = read(tmp_path / "own", rel, "sdf")
        np.testing.assert_allclose(own, oracle_sdf(mask, present, ignore=ignore), rtol=0, atol=1e-5)
        named = read(tmp_path / "named", rel, "sdf")
        assert named.shape == (3, *mask.shape)
        np.testing.assert_allclose(
            named, oracle_sdf(mask, [3, 1, 2], ignore=ignore), rtol=0, atol=1e-5
        )
        regions = np.where(ignore, 0, mask)
        np.testing.assert_array_equal(
            read(tmp_path / "own", rel, "skeleton"), oracle_skeleton(regions)
        )


def test_ignore_value_among_sdf_classes_fails_each_mask(tmp_path):
    semantic_pair(tmp_path / "m")
    report = run(
        tmp_path / "m",
        tmp_path / "out",
        kinds=["sdf"],
        mask_type="semantic",
        ignore_value=255,
        sdf_classes=(1, 255),
    )
    assert report.exit_code == 1
    assert all("ignore value 255" in reason for reason in report.failed.values())


def test_device_path_writes_the_cpu_maps(tmp_path):
    rels = semantic_pair(tmp_path / "m")
    options = {"mask_type": "semantic", "ignore_value": 255, "kinds": ["sdf", "skeleton", "unet"]}
    run(tmp_path / "m", tmp_path / "cpu", **options)
    run(tmp_path / "m", tmp_path / "dev", device="torch:cpu", batch_size=2, **options)
    for rel in rels:
        for kind in ("sdf", "skeleton"):
            np.testing.assert_array_equal(
                read(tmp_path / "dev", rel, kind), read(tmp_path / "cpu", rel, kind)
            )
    # Instance masks in batches, with clipping and spacing.
    nuclei = {"kinds": ["sdf", "skeleton"], "sdf_max": 4.0, "spacing": (0.5, 1.0)}
    run(SAMPLE_MASKS / "nuclei", tmp_path / "ncpu", **nuclei)
    run(SAMPLE_MASKS / "nuclei", tmp_path / "ndev", device="torch:cpu", batch_size=3, **nuclei)
    for path in sorted((tmp_path / "ncpu").glob("*.tif")):
        np.testing.assert_array_equal(
            tifffile.imread(tmp_path / "ndev" / path.name), tifffile.imread(path)
        )
    mask = read_mask(SAMPLE_MASKS / "nuclei" / "nuclei_01.tif")
    np.testing.assert_allclose(
        tifffile.imread(tmp_path / "ncpu" / "nuclei_01.sdf.tif"),
        oracle_sdf(mask != 0, [True], spacing=(0.5, 1.0), clip=4.0),
        rtol=0,
        atol=1e-5,
    )


def test_volume_in_memory_and_chunked(tmp_path):
    options = {"kinds": ["sdf", "skeleton"], "spacing": "auto", "mask_type": "instance"}
    run(SAMPLE_MASKS / "volume", tmp_path / "whole", sdf_max=5.0, **options)
    mask = read_mask(SAMPLE_MASKS / "volume" / "nuclei3d_00.tif")
    manifest = Manifest.load(tmp_path / "whole" / MANIFEST_NAME)
    spacing = manifest.masks["nuclei3d_00.tif"]["spacing"]
    sdf = read(tmp_path / "whole", "nuclei3d_00.tif", "sdf")
    assert sdf.shape == (1, *mask.shape)
    np.testing.assert_allclose(
        sdf, oracle_sdf(mask != 0, [True], spacing=spacing, clip=5.0), rtol=0, atol=1e-5
    )
    np.testing.assert_array_equal(
        read(tmp_path / "whole", "nuclei3d_00.tif", "skeleton"), oracle_skeleton(mask)
    )

    zarr = pytest.importorskip("zarr")
    chunked = {"chunked_above": 0, "chunks": 16, "spacing": "auto", "mask_type": "instance"}
    refused = run(SAMPLE_MASKS / "volume", tmp_path / "c1", kinds=["sdf"], **chunked)
    assert "need --sdf-max" in refused.failed["nuclei3d_00.tif"]
    refused = run(SAMPLE_MASKS / "volume", tmp_path / "c2", kinds=["skeleton"], **chunked)
    assert "not local" in refused.failed["nuclei3d_00.tif"]
    done = run(SAMPLE_MASKS / "volume", tmp_path / "c3", kinds=["sdf"], sdf_max=5.0, **chunked)
    assert done.exit_code == 0
    array = zarr.open_array(tmp_path / "c3" / "nuclei3d_00.sdf.zarr", mode="r")
    assert array.shape == sdf.shape and array.dtype == np.float32
    np.testing.assert_array_equal(array[:], sdf)
    record = Manifest.load(tmp_path / "c3" / MANIFEST_NAME).masks["nuclei3d_00.tif"]
    assert record["outputs"]["sdf"]["shape"] == list(sdf.shape)


def test_a_changed_parameter_makes_only_its_kind_stale(tmp_path):
    out = tmp_path / "out"
    kinds = ["unet", "sdf", "skeleton"]
    run(SAMPLE_MASKS / "binary", out, kinds=kinds)
    again = run(SAMPLE_MASKS / "binary", out, kinds=kinds)
    assert again.reasons == {}
    changed = run(SAMPLE_MASKS / "binary", out, kinds=kinds, sdf_max=3.0)
    assert changed.reasons == {
        rel: {"sdf": "parameters changed"} for rel in ("polyp_00.png", "polyp_01.png")
    }
    report = weightmaps.check(SAMPLE_MASKS / "binary", out, sdf_max=4.0)
    assert {(rel, kind) for rel, kind, _ in report.stale} == {
        ("polyp_00.png", "sdf"),
        ("polyp_01.png", "sdf"),
    }
    assert weightmaps.check(SAMPLE_MASKS / "binary", out).exit_code == 0
    # Falk's options are unet's parameters.
    falk = run(SAMPLE_MASKS / "binary", out, kinds=kinds, sdf_max=3.0, v_bal=0.5)
    assert {kind for reasons in falk.reasons.values() for kind in reasons} == {"unet"}


def test_falk_options_of_the_unet_kind(tmp_path):
    settings = {"v_bal": 0.2, "sigma_bal": 6.0, "sigma": 3.0}
    run(SAMPLE_MASKS / "nuclei", tmp_path / "cpu", kinds=["unet"], **settings)
    run(SAMPLE_MASKS / "nuclei", tmp_path / "dev", kinds=["unet"], device="torch:cpu", **settings)
    for rel in ("nuclei_00.tif", "nuclei_03.tif"):
        mask = read_mask(SAMPLE_MASKS / "nuclei" / rel)
        expected = unet_weight_map_falk(mask, sigma=3.0, sigma_1=6.0, v_bal=0.2)
        np.testing.assert_array_equal(read(tmp_path / "cpu", rel, "unet"), expected)
        np.testing.assert_array_equal(read(tmp_path / "dev", rel, "unet"), expected)
    # Semantic masks: borders between instances of one class only.
    rels = semantic_pair(tmp_path / "m")
    run(
        tmp_path / "m",
        tmp_path / "sem",
        kinds=["unet"],
        mask_type="semantic",
        ignore_value=255,
        v_bal=0.3,
    )
    mask = read_mask(tmp_path / "m" / rels[1])
    instances = weightmaps.label_instances(mask, ignore_value=255)
    expected = unet_weight_map_falk(instances, classes=mask, v_bal=0.3, ignore_mask=mask == 255)
    np.testing.assert_array_equal(read(tmp_path / "sem", rels[1], "unet"), expected)


def test_falk_defaults_keep_the_unet_map(tmp_path):
    run(SAMPLE_MASKS / "nuclei", tmp_path / "a", kinds=["unet"])
    run(SAMPLE_MASKS / "nuclei", tmp_path / "b", kinds=["unet"], v_bal=1.0, sigma_bal=3.0)
    for path in sorted((tmp_path / "a").glob("*.tif")):
        assert path.read_bytes() == (tmp_path / "b" / path.name).read_bytes()
    mask = random_instances((40, 50), 12, seed=3)
    from weightmaps.recipe import compute_maps

    got = compute_maps(mask, MapSettings(), kinds=["unet"]).maps["unet"]
    assert got.tobytes() == weightmaps.unet_weight_map(mask).tobytes()


def test_falk_refuses_class_weights():
    with pytest.raises(ValueError, match="class weights do not apply with v_bal"):
        MapSettings(v_bal=0.5, class_weights="balanced")
    with pytest.raises(ValueError, match="v_bal"):
        MapSettings(v_bal=1.5)
    MapSettings(v_bal=1.0, class_weights="balanced")  # the plain map


def test_falk_on_chunked_volumes(tmp_path):
    pytest.importorskip("zarr")
    import zarr

    options = {
        "kinds": ["unet"],
        "v_bal": 0.3,
        "sigma": 2.0,
        "spacing": "auto",
        "mask_type": "instance",
    }
    run(SAMPLE_MASKS / "volume", tmp_path / "whole", **options)
    run(SAMPLE_MASKS / "volume", tmp_path / "chunked", chunked_above=0, chunks=16, **options)
    whole = read(tmp_path / "whole", "nuclei3d_00.tif", "unet")
    chunked = zarr.open_array(tmp_path / "chunked" / "nuclei3d_00.unet.zarr", mode="r")[:]
    np.testing.assert_array_equal(chunked, whole)


def test_command_line(tmp_path):
    masks = Path(shutil.copytree(SAMPLE_MASKS / "binary", tmp_path / "m"))
    out = tmp_path / "out"
    runner = CliRunner()
    help_text = runner.invoke(main, ["generate", "--help"]).output
    for option in ("--sdf-max", "--sdf-classes", "--v-bal", "--sigma-bal", "skeleton"):
        assert option in help_text
    result = runner.invoke(
        main,
        [
            "generate",
            str(masks),
            str(out),
            "--kinds",
            "skeleton,sdf",
            "--sdf-max",
            "8",
            "--workers",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    recorded = json.loads((out / MANIFEST_NAME).read_text())["settings"]
    assert recorded["kinds"] == ["skeleton", "sdf"]
    assert recorded["sdf_max"] == 8.0
    assert runner.invoke(main, ["check", str(masks), str(out)]).exit_code == 0
    stale = runner.invoke(main, ["check", str(masks), str(out), "--sdf-max", "2"])
    assert stale.exit_code == 1 and "[sdf]" in stale.output
    bad = runner.invoke(main, ["generate", str(masks), str(out), "--sdf-classes", "1,x"])
    assert bad.exit_code == 2
    bad = runner.invoke(
        main, ["generate", str(masks), str(out), "--v-bal", "0.5", "--class-weights", "balanced"]
    )
    assert bad.exit_code == 2 and "v_bal" in bad.output


def test_every_kind_declares_how_it_is_drawn_and_stored():
    from weightmaps.kinds.spec import PREVIEW_STYLES

    for kind in REGISTRY.values():
        assert kind.preview in PREVIEW_STYLES
        assert np.dtype(kind.dtype).kind in "fu"
    assert REGISTRY["sdf"].class_axis and not REGISTRY["skeleton"].class_axis


def test_cluster_path_writes_the_local_maps(tmp_path):
    pytest.importorskip("distributed")
    options = {"kinds": ["sdf", "skeleton", "unet"], "v_bal": 0.5, "sdf_max": 9.0}
    run(SAMPLE_MASKS / "nuclei", tmp_path / "local", **options)
    report = weightmaps.generate(
        SAMPLE_MASKS / "nuclei", tmp_path / "remote", scheduler="local:1", progress=False, **options
    )
    assert report.exit_code == 0
    local = sorted(p.name for p in (tmp_path / "local").glob("*.tif"))
    assert local == sorted(p.name for p in (tmp_path / "remote").glob("*.tif"))
    assert len(local) == 12
    for name in local:
        assert (tmp_path / "local" / name).read_bytes() == (tmp_path / "remote" / name).read_bytes()


def field(inside: np.ndarray, spacing=None) -> np.ndarray:
    """MONAI's distance_field of one class: EDT(S) + EDT(~S), 0 when empty or full."""
    if not inside.any() or inside.all():
        return np.zeros(inside.shape)
    return ndi.distance_transform_edt(inside, sampling=spacing) + ndi.distance_transform_edt(
        ~inside, sampling=spacing
    )


def test_distance_kind_on_every_path(tmp_path):
    rels = semantic_pair(tmp_path / "m")
    options = {"kinds": ["distance"], "mask_type": "semantic", "ignore_value": 255}
    run(tmp_path / "m", tmp_path / "cpu", **options)
    run(tmp_path / "m", tmp_path / "dev", device="torch:cpu", batch_size=2, **options)
    for rel in rels:
        mask = read_mask(tmp_path / "m" / rel)
        present = [c for c in np.unique(mask) if c not in (0, 255)]
        expected = np.stack([field(mask == c) for c in present])
        expected[:, mask == 255] = 0
        got = read(tmp_path / "cpu", rel, "distance")
        np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-5)
        np.testing.assert_array_equal(read(tmp_path / "dev", rel, "distance"), got)
    # Chunked: clipped to sdf_max, equal to the whole volume's map.
    zarr = pytest.importorskip("zarr")
    volume = {"kinds": ["distance"], "spacing": "auto", "mask_type": "instance", "sdf_max": 4.0}
    run(SAMPLE_MASKS / "volume", tmp_path / "whole", **volume)
    run(SAMPLE_MASKS / "volume", tmp_path / "chunked", chunked_above=0, chunks=16, **volume)
    whole = read(tmp_path / "whole", "nuclei3d_00.tif", "distance")
    mask = read_mask(SAMPLE_MASKS / "volume" / "nuclei3d_00.tif")
    spacing = Manifest.load(tmp_path / "whole" / MANIFEST_NAME).masks["nuclei3d_00.tif"]["spacing"]
    expected = np.minimum(field(mask != 0, spacing), 4.0)[None]
    np.testing.assert_allclose(whole, expected, rtol=1e-6, atol=1e-5)
    chunked = zarr.open_array(tmp_path / "chunked" / "nuclei3d_00.distance.zarr", mode="r")[:]
    np.testing.assert_array_equal(chunked, whole)


def test_the_losses_read_the_maps_from_the_dataset(tmp_path):
    """Boundary, Hausdorff and clDice losses with the maps read equal the losses
    with the maps computed from the batch's target."""
    import torch
    from torch.utils.data import DataLoader

    from weightmaps.data import WeightMapDataset
    from weightmaps.losses import boundary_loss, cldice_loss, hausdorff_dt_loss

    kinds = ("sdf", "distance", "skeleton")
    run(SAMPLE_MASKS / "nuclei", tmp_path / "maps", kinds=list(kinds), mask_type="instance")
    dataset = WeightMapDataset(SAMPLE_MASKS / "nuclei", tmp_path / "maps", kinds=kinds)
    batch = next(iter(DataLoader(dataset, batch_size=4)))
    target = batch["mask"]
    logits = torch.randn(4, 2, *target.shape[1:], generator=torch.Generator().manual_seed(0))
    maps = batch["weights"]
    assert maps["sdf"].shape == maps["distance"].shape == (4, 1, *target.shape[1:])
    torch.testing.assert_close(
        hausdorff_dt_loss(logits, target, maps["distance"]), hausdorff_dt_loss(logits, target)
    )
    sdf = torch.stack([torch.from_numpy(oracle_sdf(t.numpy() == 1, [True])) for t in target])
    torch.testing.assert_close(boundary_loss(logits, maps["sdf"]), boundary_loss(logits, sdf))
    skeletons = torch.stack(
        [
            torch.from_numpy(oracle_skeleton(read_mask(SAMPLE_MASKS / "nuclei" / rel)))
            for rel in batch["path"]
        ]
    ).float()
    torch.testing.assert_close(
        cldice_loss(logits, target, maps["skeleton"]), cldice_loss(logits, target, skeletons)
    )
