"""The napari plugin, headless: npe2's manifest validation, the reader's layers and the
widget's maps, called as napari would call them; napari itself is not needed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import tifffile
from conftest import sample_zarr_volume

import weightmaps
from weightmaps import MapSettings
from weightmaps.io.names import OUTPUT_KINDS
from weightmaps.napari.reader import get_reader, read_layers
from weightmaps.napari.widget import compute_maps

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "sample_data"
MANIFEST = ROOT / "weightmaps" / "napari" / "napari.yaml"


def test_manifest_validates_and_its_commands_import():
    npe2 = pytest.importorskip("npe2")
    manifest = npe2.PluginManifest.from_file(MANIFEST)
    assert manifest.name == "weightmaps"
    manifest.validate_imports()  # every python_name resolves to a callable
    patterns = set(manifest.contributions.readers[0].filename_patterns)
    for kind in OUTPUT_KINDS:  # a new kind needs its patterns here
        assert {f"*.{kind}.tif", f"*.{kind}.zarr"} <= patterns, kind
    (widget,) = manifest.contributions.widgets
    assert widget.autogenerate


def test_manifest_is_installed_through_the_entry_point():
    npe2 = pytest.importorskip("npe2")
    try:
        manifest = npe2.PluginManifest.from_distribution("weightmaps")
    except ValueError as exc:  # an install older than the entry point
        pytest.skip(f"reinstall the package for its entry points: {exc}")
    assert manifest.name == "weightmaps"
    assert {c.id for c in manifest.contributions.commands} == {
        "weightmaps.get_reader",
        "weightmaps.compute_maps",
    }


def test_plugin_modules_import_no_qt_napari_or_magicgui():
    code = (
        "import sys, weightmaps.napari.reader, weightmaps.napari.widget; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('napari', 'magicgui', 'qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'vispy')))"
    )
    ran = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert ran.stdout.strip() == "[]"


@pytest.fixture(scope="module")
def volume(tmp_path_factory):
    root = tmp_path_factory.mktemp("volume")
    shutil.copytree(SAMPLE / "masks" / "volume", root / "masks")
    report = weightmaps.generate(
        root / "masks",
        root / "out",
        kinds=["unet", "edge", "balance"],
        spacing="auto",
        sigma=2.0,
        separate_touching=True,
        workers=1,
        progress=False,
    )
    assert report.exit_code == 0, report.summary()
    return root


def test_reader_claims_maps_only(volume):
    out = volume / "out"
    assert get_reader(str(out / "nuclei3d_00.unet.tif")) is read_layers
    assert get_reader([str(out / "nuclei3d_00.edge.tif"), str(out / "nuclei3d_00.target.tif")])
    assert get_reader(str(volume / "masks" / "nuclei3d_00.tif")) is None
    assert get_reader(str(out / "weightmaps.json")) is None


def test_reader_layers_have_spacing_style_and_parameters(volume):
    out = volume / "out"
    with tifffile.TiffFile(out / "nuclei3d_00.unet.tif") as tif:
        z = tif.imagej_metadata["spacing"]
        y_res, x_res = (tif.pages[0].tags[f"{a}Resolution"].value for a in "YX")
    spacing = [z, y_res[1] / y_res[0], x_res[1] / x_res[0]]
    assert spacing != [1.0, 1.0, 1.0]
    manifest = weightmaps.pipeline.manifest.Manifest.load(out / "weightmaps.json")
    outputs = manifest.masks["nuclei3d_00.tif"]["outputs"]

    layers = read_layers([str(out / f"nuclei3d_00.{k}.tif") for k in ("unet", "edge", "target")])
    (unet, unet_kw, unet_type), (_, edge_kw, _), (target, target_kw, target_type) = layers
    assert unet_type == "image" and target_type == "labels"
    np.testing.assert_array_equal(unet, tifffile.imread(out / "nuclei3d_00.unet.tif"))
    np.testing.assert_array_equal(target, tifffile.imread(out / "nuclei3d_00.target.tif"))
    np.testing.assert_allclose(unet_kw["scale"], spacing)
    np.testing.assert_allclose(target_kw["scale"], spacing)
    assert unet_kw["colormap"] == "inferno" and edge_kw["colormap"] == "magma"
    assert unet_kw["contrast_limits"] == [outputs["unet"]["min"], outputs["unet"]["max"]]
    assert unet_kw["metadata"]["weightmaps_params"]["sigma"] == 2.0
    assert edge_kw["metadata"]["weightmaps_params"]["kernel_size"] == 31
    assert unet_kw["metadata"]["weightmaps_mask"] == "nuclei3d_00.tif"
    assert unet_kw["name"] == "nuclei3d_00.unet"


def test_reader_keeps_zarr_maps_lazy_with_the_manifest_spacing(tmp_path):
    zarr = pytest.importorskip("zarr")
    da = pytest.importorskip("dask.array")
    masks = tmp_path / "masks"
    masks.mkdir()
    sample_zarr_volume(masks)
    report = weightmaps.generate(
        masks,
        tmp_path / "out",
        kinds=["unet", "balance"],
        spacing=(2.0, 0.5, 0.5),
        separate_touching=True,
        workers=1,
        progress=False,
    )
    assert report.exit_code == 0, report.summary()
    paths = [str(tmp_path / "out" / f"vol.{kind}.zarr") for kind in ("unet", "target")]
    (unet, kwargs, kind), (target, target_kw, target_kind) = read_layers(paths)
    assert isinstance(unet, da.Array) and kind == "image" and target_kind == "labels"
    np.testing.assert_array_equal(unet.compute(), zarr.open_array(paths[0])[:])
    assert kwargs["scale"] == [2.0, 0.5, 0.5] and target_kw["scale"] == [2.0, 0.5, 0.5]
    assert kwargs["metadata"]["weightmaps_params"]["w0"] == 10.0


def test_widget_computes_what_generate_would():
    labels = tifffile.imread(SAMPLE / "masks" / "nuclei" / "nuclei_00.tif")
    layer = SimpleNamespace(data=labels, name="nuclei", scale=(1.0, 1.0))
    layers = compute_maps(layer, unet=True, edge=True, balance=True, separate_touching=True)
    assert [(kw["name"], kind) for _, kw, kind in layers] == [
        ("nuclei unet", "image"),
        ("nuclei edge", "image"),
        ("nuclei balance", "image"),
        ("nuclei target", "labels"),
    ]
    carved = weightmaps.separate_instances(labels)
    np.testing.assert_array_equal(layers[3][0], carved)
    np.testing.assert_allclose(layers[0][0], weightmaps.unet_weight_map(carved), atol=1e-5)
    np.testing.assert_allclose(
        layers[1][0], weightmaps.edge_weight_map(carved > 0, kernel_size=31, alpha=5), atol=1e-6
    )
    assert layers[0][1]["metadata"]["weightmaps_params"]["w0"] == 10.0
    low, high = layers[0][1]["contrast_limits"]
    assert low == float(layers[0][0].min()) and high == float(layers[0][0].max())


def test_widget_reads_the_layer_scale_as_spacing():
    labels = tifffile.imread(SAMPLE / "masks" / "volume" / "nuclei3d_00.tif")
    layer = SimpleNamespace(data=labels, name="vol", scale=(2.0, 0.5, 0.5))
    ((unet, kwargs, _),) = compute_maps(layer, edge=False, sigma=2.0)
    want = weightmaps.compute_maps(
        labels, MapSettings(sigma=2.0), kinds=["unet"], spacing=(2.0, 0.5, 0.5)
    ).maps["unet"]
    np.testing.assert_array_equal(unet, want)
    assert kwargs["scale"] == [2.0, 0.5, 0.5]
    ((flat, _, _),) = compute_maps(layer, edge=False, sigma=2.0, use_layer_scale=False)
    assert not np.array_equal(flat, unet)


def test_widget_needs_a_map():
    layer = SimpleNamespace(data=np.zeros((8, 8), np.uint8), name="x", scale=(1.0, 1.0))
    with pytest.raises(ValueError, match="at least one map"):
        compute_maps(layer, unet=False, edge=False, balance=False)
