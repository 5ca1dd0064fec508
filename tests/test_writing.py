"""Compression of the TIFF maps: the option's forms, and values unchanged by any of them."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from weightmaps.cli.main import main as cli

from weightmaps.io.writing import DEFAULT_COMPRESSION, tiff_compression, write_tiff_atomic
from weightmaps.pipeline import generate

# TIFF compression tags (tifffile.COMPRESSION): what a reader sees in the file.
_TAGS = {"zlib": 8, "zstd": 50000, "none": 1}


def _masks(folder: Path) -> Path:
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        labels = np.zeros((64, 80), np.uint16)
        for label in range(1, 9):
            y, x = rng.integers(4, 56), rng.integers(4, 72)
            labels[y - 3 : y + 3, x - 3 : x + 3] = label
        tifffile.imwrite(folder / f"m{i}.tif", labels)
    return folder


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("zlib", {"compression": "zlib"}),
        ("zlib:1", {"compression": "zlib", "compressionargs": {"level": 1}}),
        ("ZLIB:9", {"compression": "zlib", "compressionargs": {"level": 9}}),
        ("none", {}),
    ],
)
def test_compression_forms(spec: str, expected: dict) -> None:
    assert tiff_compression(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("lzw", "one of zlib, zstd, none"),
        ("zlib:0", "zlib levels are 1 to 9, got 0"),
        ("zlib:10", "zlib levels are 1 to 9, got 10"),
        ("zlib:fast", "whole number"),
        ("none:3", "takes no level"),
    ],
)
def test_bad_compression_is_refused(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        tiff_compression(spec)


def test_zstd_without_imagecodecs_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "imagecodecs", None)
    with pytest.raises(ValueError, match="zstd needs imagecodecs"):
        tiff_compression("zstd:3")


@pytest.mark.parametrize("spec", ["zlib", "zlib:1", "zlib:9", "none", "zstd:3"])
def test_every_compression_keeps_the_values(tmp_path: Path, spec: str) -> None:
    if spec.startswith("zstd"):
        pytest.importorskip("imagecodecs")
    array = np.random.default_rng(1).random((3, 40, 50)).astype(np.float32)
    array[:, :20] = 1.0  # runs that compress, as in a weight map
    path = tmp_path / "w.tif"
    write_tiff_atomic(path, array, compression=spec, threads=2)
    with tifffile.TiffFile(path) as tif:
        assert tif.pages[0].compression == _TAGS[spec.partition(":")[0]]
        assert tif.is_imagej  # still a stack for Fiji and napari
        np.testing.assert_array_equal(tif.asarray(), array)


def test_generate_maps_equal_under_any_compression(tmp_path: Path) -> None:
    masks = _masks(tmp_path / "masks")
    specs = ["zlib:1", "zlib:9", "none"]
    for spec in specs:
        report = generate(masks, tmp_path / spec, workers=1, progress=False, compression=spec)
        assert report.exit_code == 0
    reference = tmp_path / specs[0]
    names = sorted(p.name for p in reference.glob("*.tif"))
    assert len(names) == 6
    for spec in specs[1:]:
        for name in names:
            np.testing.assert_array_equal(
                tifffile.imread(tmp_path / spec / name), tifffile.imread(reference / name)
            )
    # Smaller at level 9 than at level 1, and far smaller than uncompressed.
    size = {s: sum(p.stat().st_size for p in (tmp_path / s).glob("*.tif")) for s in specs}
    assert size["zlib:9"] <= size["zlib:1"] < size["none"]


def test_compression_is_no_map_parameter(tmp_path: Path) -> None:
    """Another compression on a rerun redoes nothing: the maps' values are current."""
    masks = _masks(tmp_path / "masks")
    out = tmp_path / "out"
    generate(masks, out, workers=1, progress=False, compression="zlib:1")
    again = generate(masks, out, workers=1, progress=False, compression="none")
    assert not again.done and len(again.skipped) == 2


def test_cli_compression(tmp_path: Path) -> None:
    masks = _masks(tmp_path / "masks")
    runner = CliRunner()
    bad_args = ["generate", str(masks), str(tmp_path / "bad"), "--compression", "lz4"]
    bad = runner.invoke(cli, bad_args)
    assert bad.exit_code == 2 and "compression must be one of" in bad.output
    out = tmp_path / "out"
    ok = runner.invoke(cli, ["generate", str(masks), str(out), "--compression", "none", "-q"])
    assert ok.exit_code == 0, ok.output
    with tifffile.TiffFile(out / "m0.unet.tif") as tif:
        assert tif.pages[0].compression == _TAGS["none"]


def test_default_compression_is_deflate() -> None:
    """Deflate: the one compression ImageJ's own reader, Bio-Formats and tifffile all read."""
    assert tiff_compression(DEFAULT_COMPRESSION)["compression"] == "zlib"
