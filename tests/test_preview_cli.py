"""``weightmaps preview`` and ``stats`` on what masks come with: RGBA images, colour
masks read by a recorded rule, zarr, a chosen slice, parameters and the carved target."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner
from conftest import SAMPLE_MASKS, random_instances
from PIL import Image
from weightmaps.cli.inspection import preview, stats
from weightmaps.cli.main import main

import weightmaps
from weightmaps.io import read_mask
from weightmaps.kinds import DEFAULT_KINDS
from weightmaps.preview import label_colours, map_panels, panel_details, render_preview

NUCLEI = SAMPLE_MASKS / "nuclei" / "nuclei_01.tif"
VOLUME = SAMPLE_MASKS / "volume" / "nuclei3d_00.tif"


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def picture(path: Path) -> np.ndarray:
    with Image.open(path) as img:
        return np.asarray(img)


def count(rgb: np.ndarray, colour) -> int:
    return int(np.all(rgb == np.asarray(colour, np.uint8), axis=-1).sum())


def expected(mask, maps, params, **kwargs) -> np.ndarray:
    """What preview should draw: each kind by its rule, each panel with its parameters."""
    panels, styles = map_panels(maps)
    return render_preview(
        mask, panels, styles=styles, details=panel_details(panels, params), **kwargs
    )


def computed(mask, settings, kinds=DEFAULT_KINDS):
    result = weightmaps.compute_maps(mask, settings, kinds=kinds)
    maps, params = dict(result.maps), {k: settings.kind_params(k) for k in result.maps}
    if result.target is not None:
        maps["target"], params["target"] = result.target, settings.kind_params("target")
    return maps, params


def test_every_preview_and_stats_option_has_help():
    for command in (preview, stats):
        missing = [
            p.name
            for p in command.params
            if isinstance(p, click.Option) and not (p.help or "").strip()
        ]
        assert not missing, f"{command.name}: {missing}"


def test_rgba_image_is_shown(tmp_path):
    # A microscopy image saved as RGBA (opaque alpha), as the masks came with it.
    mask = read_mask(NUCLEI)
    rgba = np.zeros(mask.shape + (4,), np.uint8)
    rgba[..., 1] = np.where(mask > 0, 220, 20)
    rgba[..., 3] = 255
    Image.fromarray(rgba).save(tmp_path / "image.png")
    result = cli("preview", NUCLEI, "--image", tmp_path / "image.png", "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    maps, params = computed(mask, weightmaps.MapSettings())
    want = expected(mask, maps, params, image=rgba[..., :3], title=NUCLEI.name)
    np.testing.assert_array_equal(picture(tmp_path / "p.png"), want)
    assert count(want, (0, 255, 0)) > 0  # the foreground's green, alpha not drawn


def test_maps_folder_gives_the_recorded_rgb_rule(tmp_path):
    rgb = np.zeros((40, 48, 3), np.uint8)
    rgb[5:15, 5:20] = (200, 30, 30)
    rgb[20:35, 10:40] = (10, 200, 10)
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(rgb).save(masks / "colour.png")
    report = weightmaps.generate(
        masks, tmp_path / "out", rgb_rule="nonblack", workers=1, progress=False
    )
    assert report.exit_code == 0
    png = tmp_path / "p.png"
    # Without the maps folder the rule must be named ...
    refused = cli("preview", masks / "colour.png", "-o", png)
    assert refused.exit_code == 1 and "rgb_rule" in refused.output and not png.exists()
    # ... with it, the run's rule is used.
    result = cli("preview", masks / "colour.png", "--maps", tmp_path / "out", "-o", png)
    assert result.exit_code == 0, result.output
    assert picture(png).shape[0] > 0
    binary = read_mask(masks / "colour.png", rgb_rule="nonblack")
    maps, params = computed(binary, weightmaps.MapSettings())
    for p in params.values():
        p.update(channel=None, rgb_rule="nonblack")
    want = expected(binary, maps, params, title="colour.png")
    np.testing.assert_allclose(picture(png), want, atol=1)  # maps stored as float32


def test_chosen_slice_of_a_volume(tmp_path):
    png = tmp_path / "p.png"
    result = cli("preview", VOLUME, "--kinds", "unet", "--slice", 3, "--axis", "y", "-o", png)
    assert result.exit_code == 0, result.output
    mask = read_mask(VOLUME)
    maps, params = computed(mask, weightmaps.MapSettings(), kinds=("unet",))
    want = expected(mask, maps, params, title=VOLUME.name, slice_index=3, axis=1)
    np.testing.assert_array_equal(picture(png), want)
    middle = expected(mask, maps, params, title=VOLUME.name)
    assert want.shape != middle.shape  # a (z, x) slice, not the middle (y, x) one
    # Out of range, or a slice of a 2-D mask: usage errors.
    assert cli("preview", VOLUME, "--slice", 999, "-o", png).exit_code == 2
    assert cli("preview", NUCLEI, "--slice", 0, "-o", png).exit_code == 2


def test_parameters_and_carved_target_from_a_maps_folder(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    shutil.copy(NUCLEI, masks)
    out = tmp_path / "out"
    assert (
        cli("generate", masks, out, "--separate-touching", "--w0", 3, "--sigma", 2, "-q").exit_code
        == 0
    )
    png = tmp_path / "p.png"
    result = cli("preview", masks / NUCLEI.name, "--maps", out, "-o", png)
    assert result.exit_code == 0, result.output
    assert "(unet, edge, balance, target)" in result.stdout
    settings = weightmaps.MapSettings(separate_touching=True, w0=3, sigma=2)
    mask = read_mask(NUCLEI)
    maps, params = computed(mask, settings)
    for p in params.values():
        p.update(channel=None, rgb_rule=None)
    assert panel_details(maps, params)["unet"] == "w0=3 sigma=2"
    want = expected(mask, maps, params, title=NUCLEI.name)
    np.testing.assert_allclose(picture(png), want, atol=1)
    # The target panel: the carved instances in their label colours.
    target = maps["target"]
    assert not np.array_equal(target, mask)  # carving changed it
    drawn = picture(png)
    for colour in label_colours(np.unique(target[target > 1]))[:5]:
        assert count(drawn, colour) > 0
    # Map options do not apply to maps already made: said, not silently dropped.
    ignored = cli("preview", masks / NUCLEI.name, "--maps", out, "--w0", 5, "-o", png)
    assert ignored.exit_code == 0 and "--w0 ignored" in ignored.stderr
    # Without --maps, --separate-touching computes the target now.
    now = cli("preview", masks / NUCLEI.name, "--separate-touching", "-o", tmp_path / "n.png")
    assert now.exit_code == 0 and "target" in now.stdout


@pytest.fixture
def zarr_masks(tmp_path):
    zarr = pytest.importorskip("zarr")
    labels = random_instances((12, 40, 40), 12, seed=5).astype(np.uint16)
    masks = tmp_path / "zmasks"
    masks.mkdir()
    z = zarr.create_array(
        str(masks / "vol.zarr"), shape=labels.shape, chunks=(6, 20, 20), dtype=labels.dtype
    )
    z[:] = labels
    return masks, labels


def test_preview_reads_a_zarr_mask_and_its_zarr_maps(tmp_path, zarr_masks):
    masks, labels = zarr_masks
    png = tmp_path / "p.png"
    result = cli("preview", masks / "vol.zarr", "--kinds", "unet", "--slice", 2, "-o", png)
    assert result.exit_code == 0, result.output
    maps, params = computed(labels, weightmaps.MapSettings(), kinds=("unet",))
    want = expected(labels, maps, params, title="vol.zarr", slice_index=2)
    np.testing.assert_array_equal(picture(png), want)
    # Maps made the chunked way are zarr arrays too.
    out = tmp_path / "out"
    made = cli("generate", masks, out, "--kinds", "unet", "--mask-type", "instance", "-q")
    assert made.exit_code == 0, made.output
    assert (out / "vol.unet.zarr").is_dir()
    result = cli("preview", masks / "vol.zarr", "--maps", out, "--slice", 2, "-o", png)
    assert result.exit_code == 0, result.output
    assert "(unet)" in result.stdout
    np.testing.assert_allclose(picture(png), want, atol=1)  # chunked: within float32


def test_stats_reads_a_zarr_mask(tmp_path, zarr_masks):
    masks, labels = zarr_masks
    plain = tmp_path / "plain"
    plain.mkdir()
    np.save(plain / "vol.npy", labels)
    from_zarr = cli("stats", masks, "--json")
    assert from_zarr.exit_code == 0, from_zarr.output
    got, want = json.loads(from_zarr.stdout), json.loads(cli("stats", plain, "--json").stdout)
    assert got["failed"] == {} and got["masks"] == 1
    for key in ("classes", "instances", "touching_pairs", "mask_types"):
        assert got[key] == want[key]
    # Over --max-pixels (Python API): one line, nothing read.
    per_mask, failed = weightmaps.pipeline.survey(masks, max_pixels=100, progress=False)
    assert not per_mask and "max_pixels" in failed["vol.zarr"]


def test_channels_first_tiff_image_is_turned_channels_last(tmp_path):
    import tifffile

    mask = read_mask(NUCLEI)
    planes = np.zeros((3,) + mask.shape, np.uint8)
    planes[2] = np.where(mask > 0, 250, 0)  # blue nuclei, stored C, Y, X
    tifffile.imwrite(tmp_path / "image.tif", planes, photometric="minisblack")
    result = cli(
        "preview",
        NUCLEI,
        "--kinds",
        "unet",
        "--image",
        tmp_path / "image.tif",
        "-o",
        tmp_path / "p.png",
    )
    assert result.exit_code == 0, result.output
    assert count(picture(tmp_path / "p.png"), (0, 0, 255)) > 0


def test_zarr_without_the_dask_extra_is_one_line(tmp_path, zarr_masks, monkeypatch):
    import sys

    masks, _ = zarr_masks
    monkeypatch.setitem(sys.modules, "dask.array", None)  # as if dask were not installed
    result = cli("stats", masks, "--json")
    assert result.exit_code == 1
    assert "[dask] extra" in json.loads(result.stdout)["failed"]["vol.zarr"]
    shown = cli("preview", masks / "vol.zarr", "-o", tmp_path / "p.png")
    assert shown.exit_code == 1 and "[dask] extra" in shown.stderr
    assert "Traceback" not in shown.output


def test_auto_spacing_is_shown_as_the_mask_used_it(tmp_path):
    """--spacing auto: the parameter line shows the pixel size the distances used
    (from the file, or pixels where it records none), not the word auto."""
    from weightmaps.pipeline.surveying import find_maps

    volume = SAMPLE_MASKS / "volume" / "nuclei3d_00.tif"  # records 2 x 0.5 x 0.5 um
    flat = tmp_path / "flat.tif"
    flat_labels = random_instances((64, 64), 6, radius=(4, 7), seed=1).astype(np.uint16)
    Image.fromarray(flat_labels).save(flat)  # no pixel size in the file
    out = tmp_path / "out"
    report = weightmaps.generate(
        [volume, flat], out, kinds=("unet", "edge"), spacing="auto", workers=1, progress=False
    )
    assert report.exit_code == 0, report.summary()
    found = find_maps(volume, out)
    assert found.params["unet"]["spacing"] == [2.0, 0.5, 0.5]
    assert panel_details({"unet": 0}, found.params)["unet"] == "w0=10 sigma=5 spacing=2x0.5x0.5"
    assert "spacing" not in found.params["edge"]  # the edge map has no distances
    assert find_maps(flat, out).params["unet"]["spacing"] == "pixels"


def test_a_jpeg_mask_is_previewed_as_generate_reads_it(tmp_path):
    """Without --maps, a JPEG mask's maps are computed from the mask cut as generate
    cuts it (binary, noise away), not refused as a noisy PNG would be."""
    yy, xx = np.mgrid[:96, :96]
    disk = (((yy - 48) ** 2 + (xx - 40) ** 2) < 30**2).astype(np.uint8) * 255
    Image.fromarray(disk).save(tmp_path / "polyp.jpg", quality=80)
    result = cli("preview", tmp_path / "polyp.jpg", "-o", tmp_path / "p.png")
    assert result.exit_code == 0, result.output
    out = tmp_path / "out"
    weightmaps.generate(tmp_path / "polyp.jpg", out, workers=1, progress=False)
    shown = cli("preview", tmp_path / "polyp.jpg", "--maps", out, "-o", tmp_path / "q.png")
    assert shown.exit_code == 0, shown.output
    np.testing.assert_array_equal(picture(tmp_path / "p.png"), picture(tmp_path / "q.png"))
