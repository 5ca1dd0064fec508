"""Hostile volumes: metadata claiming huge sizes, damaged chunks, deep JSON, missing chunks.

Every refusal is one line for that mask, made from metadata before anything
is read, and the run goes on with the other masks.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")

import tifffile  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from weightmaps.cli.main import main  # noqa: E402

import weightmaps  # noqa: E402
from weightmaps.io import volume_source, volumes  # noqa: E402
from weightmaps.io.volumes import (  # noqa: E402
    VolumeInfo,
    VolumeLimits,
    VolumeRefused,
    check_volume,
    inspect_volume,
)
from weightmaps.io.writing import TEMP_SUFFIX  # noqa: E402
from weightmaps.pipeline import generate, plan  # noqa: E402
from weightmaps.pipeline.manifest import MANIFEST_NAME  # noqa: E402

OPTIONS = {"sigma": 1.5, "edge_kernel": 5, "kinds": ["unet"], "mask_type": "instance"}
HUGE = [100_000, 1_000_000, 1_000]  # 10^14 voxels


def run(masks: Path, out: Path, **kwargs):
    options = {"workers": 1, "device": "cpu", "progress": False, **OPTIONS, **kwargs}
    return generate(masks, out, **options)


def small_labels() -> np.ndarray:
    labels = np.zeros((16, 32, 32), np.uint16)
    labels[2:8, 3:12, 3:12] = 1
    labels[9:15, 18:30, 16:28] = 2
    labels[4:12, 20:28, 2:9] = 3
    return labels


def write_zarr(path: Path, array: np.ndarray, **kwargs) -> None:
    kwargs.setdefault("chunks", (8, 16, 16))
    z = zarr.create_array(
        str(path),
        shape=array.shape,
        dtype=array.dtype,
        config={"write_empty_chunks": True},
        **kwargs,
    )
    z[:] = array


def zarr_json(path: Path, shape, chunks, dtype="uint8", **extra) -> None:
    """A zarr v3 array of metadata only: a few hundred bytes claiming any size."""
    path.mkdir(parents=True)
    meta = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        **extra,
    }
    (path / "zarr.json").write_text(json.dumps(meta))


def header_only_tiff(path: Path, height: int, width: int, tile: tuple[int, int] | None) -> None:
    """A deflate uint8 TIFF of a few bytes claiming height x width pixels, in
    tiles or in one strip: every tile (strip) points at one small block of zeros."""
    block_shape = (height, width) if tile is None else tile
    count = 1 if tile is None else math.ceil(height / tile[0]) * math.ceil(width / tile[1])
    block = zlib.compress(bytes(min(math.prod(block_shape), 4096)))
    short, long_ = 3, 4
    entries = [
        (256, long_, [width]),
        (257, long_, [height]),
        (258, short, [8]),
        (259, short, [8]),  # deflate
        (262, short, [1]),
        (277, short, [1]),
        (339, short, [1]),
    ]
    if tile is None:
        entries += [(273, long_, [None]), (278, long_, [height]), (279, long_, [len(block)])]
    else:
        entries += [(322, long_, [tile[1]]), (323, long_, [tile[0]])]
        entries += [(324, long_, [None] * count), (325, long_, [len(block)] * count)]
    entries.sort()
    arrays_at = 8 + 2 + 12 * len(entries) + 4
    arrays = [(t, v) for _, t, v in entries if len(v) > 1]
    data_at = arrays_at + sum(4 * len(v) for _, v in arrays)

    def pack(kind: int, values: list) -> bytes:
        values = [data_at if v is None else v for v in values]
        return struct.pack(f"<{len(values)}{'H' if kind == short else 'I'}", *values)

    ifd = struct.pack("<H", len(entries))
    offset = arrays_at
    for tag, kind, values in entries:
        if len(values) > 1:
            value = struct.pack("<I", offset)
            offset += 4 * len(values)
        else:
            value = pack(kind, values).ljust(4, b"\0")
        ifd += struct.pack("<HHI", tag, kind, len(values)) + value
    body = b"".join(pack(kind, values) for kind, values in arrays)
    path.write_bytes(b"II*\0" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0) + body + block)


@pytest.fixture
def no_zarr_reads(monkeypatch):
    """Fail the test if zarr opens anything: refusals come from the metadata alone."""
    opened: list[str] = []

    def refuse(*args, **kwargs):
        opened.append(str(args[0] if args else kwargs))
        raise AssertionError("zarr opened a volume that should be refused from its metadata")

    monkeypatch.setattr(zarr, "open", refuse)
    monkeypatch.setattr(zarr, "open_array", refuse)
    return opened


# --- 1. size limits, from metadata, before anything is read or scheduled ------------


def test_header_only_tiff_helper_is_a_readable_tiff(tmp_path):
    header_only_tiff(tmp_path / "t.tif", 300, 500, (64, 64))
    header_only_tiff(tmp_path / "s.tif", 30, 50, None)
    with tifffile.TiffFile(tmp_path / "t.tif") as tif:
        assert tif.series[0].shape == (300, 500) and tif.pages[0].chunks == (64, 64)
    assert not tifffile.imread(tmp_path / "t.tif").any()
    assert tifffile.imread(tmp_path / "s.tif").shape == (30, 50)


def test_zarr_metadata_claiming_a_huge_volume_is_refused(tmp_path, no_zarr_reads):
    masks = tmp_path / "masks"
    zarr_json(masks / "huge.zarr", HUGE, [64, 64, 64])
    zarr_json(masks / "one_chunk.zarr", [60000, 60000], [60000, 60000])
    report = run(masks, tmp_path / "out")
    assert report.exit_code == 1 and not report.done
    assert report.failed["huge.zarr"] == (
        "volume of 100000x1000000x1000 has 100000000000000 voxels, more than the limit of "
        "2147483648 for a chunked volume; raise --max-volume-voxels to accept it"
    )
    assert "3600000000 voxels" in report.failed["one_chunk.zarr"]
    # Raising the voxel limit on purpose: the one 60000^2 chunk is still too big.
    raised = run(masks, tmp_path / "out", max_volume_voxels=10**15)
    assert raised.failed["one_chunk.zarr"] == (
        "zarr chunks of 60000x60000 are 3600000000 bytes each decoded, more than the limit "
        "of 268435456; raise --max-chunk-bytes to accept them"
    )
    assert "processing chunks of 64x64x64 are 1048576 bytes" not in raised.failed["huge.zarr"]
    assert not no_zarr_reads


def test_the_limits_hold_with_the_others_done(tmp_path):
    """The good volume after the refused ones is done; the run exits 1."""
    masks = tmp_path / "masks"
    zarr_json(masks / "a_huge.zarr", HUGE, [64, 64, 64])
    write_zarr(masks / "b_good.zarr", small_labels())
    result = CliRunner().invoke(
        main,
        ["generate", str(masks), str(tmp_path / "out"), "--workers", "1", "--device", "cpu",
         "--kinds", "unet", "--mask-type", "instance", "--sigma", "1.5"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert "FAILED a_huge.zarr: volume of 100000x1000000x1000 has" in result.output
    assert "done 1, skipped 0 (current), failed 1" in result.output
    assert (tmp_path / "out" / "b_good.unet.zarr").is_dir()


def test_the_job_checks_again(tmp_path, monkeypatch):
    """A volume that grew after planning is refused in the job, before zarr reads it."""
    masks = tmp_path / "masks"
    zarr_json(masks / "huge.zarr", HUGE, [64, 64, 64])
    monkeypatch.setattr(plan, "check_volume", lambda *args, **kwargs: None)
    opened = []
    monkeypatch.setattr(volume_source, "_open_node", lambda path: opened.append(path))
    for workers in (1, 2):
        report = run(masks, tmp_path / f"out{workers}", workers=workers)
        assert "100000000000000 voxels" in report.failed["huge.zarr"]
    assert not opened


def test_the_job_checks_what_zarr_read(tmp_path, monkeypatch):
    """Even were the inspection fooled, zarr's own reading of the metadata is checked."""
    masks = tmp_path / "masks"
    zarr_json(masks / "huge.zarr", HUGE, [64, 64, 64])
    monkeypatch.setattr(plan, "check_volume", lambda *args, **kwargs: None)
    small = VolumeInfo((16, 16), np.dtype(np.uint8), (16, 16), "zarr chunks")
    monkeypatch.setattr(volume_source, "inspect_volume", lambda path: small)
    report = run(masks, tmp_path / "out")
    assert "100000000000000 voxels" in report.failed["huge.zarr"]


def test_big_tiffs_are_refused_from_their_header(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    header_only_tiff(masks / "tiled.tif", 60000, 60000, (256, 256))  # 442 kB
    header_only_tiff(masks / "strip.tif", 40000, 40000, None)  # 1.6e9 pixels in one strip
    report = run(masks, tmp_path / "out")
    assert report.failed["tiled.tif"] == (
        "volume of 60000x60000 has 3600000000 voxels, more than the limit of 2147483648 "
        "for a chunked volume; raise --max-volume-voxels to accept it"
    )
    assert report.failed["strip.tif"] == (
        "TIFF strips of 40000x40000 are 1600000000 bytes each decoded, more than the limit "
        "of 268435456; raise --max-chunk-bytes to accept them"
    )
    # Read whole instead (above --chunked-above never): --max-pixels decides.
    whole = run(masks, tmp_path / "whole", chunked_above=10**12)
    assert "3600000000 pixels, more than the limit of 1073741824" in whole.failed["tiled.tif"]


def test_tiff_above_chunked_above_has_the_volume_limit(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "vol.tif", small_labels())
    report = run(masks, tmp_path / "out", chunked_above=1000, max_volume_voxels=10000)
    assert report.failed["vol.tif"] == (
        "volume of 16x32x32 has 16384 voxels, more than the limit of 10000 for a chunked "
        "volume; raise --max-volume-voxels to accept it"
    )
    assert run(masks, tmp_path / "out", chunked_above=1000, chunks=16).done == ["vol.tif"]


def test_processing_chunks_are_limited_too(tmp_path):
    masks = tmp_path / "masks"
    write_zarr(masks / "vol.zarr", small_labels())  # uint16 chunks of 8x16x16: 4096 bytes
    report = run(masks, tmp_path / "out", max_chunk_bytes=5000)
    assert report.failed["vol.zarr"] == (
        "processing chunks of 8x16x16 are 8192 bytes each as maps, more than the limit of "
        "5000; give smaller --chunks or raise --max-chunk-bytes"
    )
    # A map without a halo (balance): the processing chunks are its blocks. The U-Net
    # map's halo grows them further (tests/test_halo_blocks.py).
    smaller = run(masks, tmp_path / "out", max_chunk_bytes=5000, chunks=8, kinds=["balance"])
    assert smaller.done == ["vol.zarr"]


def test_tiny_chunks_are_refused_before_a_graph_is_built(tmp_path, no_zarr_reads):
    masks = tmp_path / "masks"
    zarr_json(masks / "dust.zarr", [1024, 1024], [1, 2])
    report = run(masks, tmp_path / "out")
    assert report.failed["dust.zarr"] == (
        "524288 processing chunks of 1x2, more than the 65536 a volume is split into; "
        "give bigger --chunks"
    )


def test_limits_on_the_cluster_path(tmp_path):
    pytest.importorskip("distributed")
    masks = tmp_path / "masks"
    zarr_json(masks / "a_huge.zarr", HUGE, [64, 64, 64])
    write_zarr(masks / "b_good.zarr", small_labels())
    report = run(masks, tmp_path / "out", scheduler="local:1")
    assert report.done == ["b_good.zarr"]
    assert "100000000000000 voxels" in report.failed["a_huge.zarr"]


def test_check_and_the_dataset_allocate_nothing(tmp_path, no_zarr_reads):
    masks, out = tmp_path / "masks", tmp_path / "out"
    zarr_json(masks / "huge.zarr", HUGE, [64, 64, 64])
    report = weightmaps.check(masks, out)
    assert "100000000000000 voxels" in report.failed["huge.zarr"]
    torch = pytest.importorskip("torch")
    del torch
    from weightmaps.data import WeightMapDataset

    # The Dataset leaves volumes alone: it never reads their metadata's claims.
    with pytest.warns(UserWarning, match="a zarr volume"):
        with pytest.raises(FileNotFoundError, match="no masks found"):
            WeightMapDataset(masks, out, verify=False)
    assert not no_zarr_reads


def test_dataset_refuses_a_map_tiff_claiming_a_huge_image(tmp_path):
    pytest.importorskip("torch")
    from weightmaps.data import WeightMapDataset

    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    out.mkdir()
    tifffile.imwrite(masks / "m.tif", small_labels()[0])
    header_only_tiff(out / "m.unet.tif", 60000, 60000, (256, 256))
    dataset = WeightMapDataset(masks, out, verify=False)
    with pytest.raises(ValueError, match="3600000000 pixels, more than the limit of 1073741824"):
        dataset[0]


def test_bad_limits_are_usage_errors(tmp_path):
    (tmp_path / "masks").mkdir()
    with pytest.raises(ValueError, match="max-volume-voxels must be a positive integer"):
        run(tmp_path / "masks", tmp_path / "out", max_volume_voxels=0)
    with pytest.raises(ValueError, match="missing-chunks must be one of fill, error"):
        run(tmp_path / "masks", tmp_path / "out", missing_chunks="zero")
    result = CliRunner().invoke(
        main, ["generate", str(tmp_path / "masks"), str(tmp_path / "out"), "--max-chunk-bytes", "0"]
    )
    assert result.exit_code == 2


def test_limits_are_recorded_and_change_no_map(tmp_path):
    masks, out = tmp_path / "masks", tmp_path / "out"
    write_zarr(masks / "vol.zarr", small_labels())
    assert run(masks, out).done == ["vol.zarr"]
    settings = json.loads((out / MANIFEST_NAME).read_text())["settings"]
    assert settings["max_volume_voxels"] == 2**31 and settings["max_chunk_bytes"] == 2**28
    assert settings["missing_chunks"] == "fill" and settings["chunks"] is None
    again = run(masks, out, max_volume_voxels=10**6, max_chunk_bytes=10**6, missing_chunks="error")
    assert again.skipped == ["vol.zarr"] and not again.done
    assert weightmaps.check(masks, out).exit_code == 0
    # A current volume is never refused (nor its record dropped) by tighter limits:
    # it is not read.
    tight = run(masks, out, max_volume_voxels=10)
    assert tight.skipped == ["vol.zarr"] and not tight.failed


def test_check_volume_messages():
    info = VolumeInfo((40, 64, 64), np.dtype(np.uint8), (8, 64, 64), "zarr chunks")
    assert check_volume(info, VolumeLimits()) is None
    with pytest.raises(VolumeRefused, match=r"^empty volume \(shape 0x64\)$"):
        check_volume(VolumeInfo((0, 64), np.dtype(np.uint8), (8, 8), "zarr chunks"), VolumeLimits())
    # The processing chunks are float32 maps: 4 bytes a voxel for a uint8 mask.
    with pytest.raises(VolumeRefused, match="processing chunks of 8x64x64 are 131072 bytes"):
        check_volume(info, VolumeLimits(max_chunk_bytes=100_000))
    assert check_volume(info, VolumeLimits(max_chunk_bytes=100_000), chunks=16) is None
    sharded = VolumeInfo((64, 64), np.dtype(np.uint8), (1, 1), "zarr chunks", shard_entries=4096)
    with pytest.raises(VolumeRefused, match="shards of 4096 chunks have an index of 65536 bytes"):
        check_volume(sharded, VolumeLimits(max_chunk_bytes=60000), chunks=64)


# --- 2. damaged chunks: that mask fails, the run completes -----------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("workers", [1, 2])
def test_corrupt_chunks_fail_their_mask_only(tmp_path, workers):
    masks = tmp_path / "masks"
    labels = small_labels()
    write_zarr(masks / "a_zstd.zarr", labels)
    _truncate(masks / "a_zstd.zarr" / "c" / "0" / "0" / "0")
    z = zarr.open_array(
        str(masks / "b_zlib.zarr"),
        mode="w",
        shape=labels.shape,
        chunks=(8, 16, 16),
        dtype=labels.dtype,
        zarr_format=2,
        compressor={"id": "zlib", "level": 1},
        config={"write_empty_chunks": True},
    )
    z[:] = labels
    (masks / "b_zlib.zarr" / "1.1.1").write_bytes(b"not zlib at all")
    write_zarr(masks / "c_good.zarr", labels)
    out = tmp_path / "out"
    report = run(masks, out, workers=workers)
    assert report.done == ["c_good.zarr"]
    assert report.failed["a_zstd.zarr"].startswith(
        "cannot read the stored data at [0:8, 0:16, 0:16]: RuntimeError: "
    )
    assert report.failed["b_zlib.zarr"].startswith("cannot read the stored data at [8:16, 16:32")
    assert all("\n" not in reason for reason in report.failed.values())
    assert not list(out.rglob(f"*{TEMP_SUFFIX}")), "no partial maps left of a damaged source"
    assert not list(out.glob("a_zstd.*")) and not list(out.glob("b_zlib.*"))


@pytest.mark.parametrize("workers", [1, 2])
def test_out_of_memory_while_decoding_fails_that_mask(tmp_path, monkeypatch, workers):
    masks = tmp_path / "masks"
    write_zarr(masks / "a_oom.zarr", small_labels())
    write_zarr(masks / "b_good.zarr", small_labels())
    getitem = zarr.Array.__getitem__

    def out_of_memory(self, selection):
        if "a_oom" in str(self.store):
            raise MemoryError
        return getitem(self, selection)

    monkeypatch.setattr(zarr.Array, "__getitem__", out_of_memory)
    report = run(masks, tmp_path / "out", workers=workers)
    assert report.failed == {"a_oom.zarr": "out of memory"}
    assert report.done == ["b_good.zarr"]


def test_corrupt_tiff_tiles_fail_their_mask_only(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    tifffile.imwrite(masks / "a.tif", small_labels(), tile=(16, 16), compression="zlib")
    with tifffile.TiffFile(masks / "a.tif") as tif:
        offset = tif.pages[3].dataoffsets[0]
    with open(masks / "a.tif", "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\xff" * 16)
    tifffile.imwrite(masks / "b.tif", small_labels())
    report = run(masks, tmp_path / "out", chunked_above=1000, chunks=16)
    assert report.done == ["b.tif"]
    assert report.failed["a.tif"].startswith("cannot read the stored data at [0:16, 0:16, 0:16]")


# --- 3. deeply nested metadata -------------------------------------------------------


def test_deeply_nested_metadata_is_a_one_line_refusal(tmp_path):
    masks = tmp_path / "masks"
    (masks / "a_deep.zarr").mkdir(parents=True)
    (masks / "a_deep.zarr" / "zarr.json").write_text("[" * 100_000)
    # A v2 array whose attributes (read by zarr, not by the inspection) are deep.
    z = zarr.open_array(
        str(masks / "b_deep_attrs.zarr"), mode="w", shape=(16, 16), chunks=(8, 8),
        dtype="uint8", zarr_format=2,
    )  # fmt: skip
    z[:] = 1
    (masks / "b_deep_attrs.zarr" / ".zattrs").write_text('{"a": ' + "[" * 100_000)
    # An OME-Zarr image whose level 0 is deep.
    image = zarr.create_group(str(masks / "c_ome.zarr"))
    image.attrs["multiscales"] = [{"version": "0.4", "datasets": [{"path": "0"}]}]
    (masks / "c_ome.zarr" / "0").mkdir()
    (masks / "c_ome.zarr" / "0" / "zarr.json").write_text('{"shape": ' + "[" * 100_000)
    write_zarr(masks / "d_good.zarr", small_labels())
    report = run(masks, tmp_path / "out", allow_empty=True, mask_type="binary")
    assert report.done == ["d_good.zarr"]
    assert report.failed["a_deep.zarr"] == "not a zarr array or OME-Zarr image"
    assert report.failed["b_deep_attrs.zarr"].startswith(
        "cannot open the volume's metadata: RecursionError"
    )
    assert report.failed["c_ome.zarr"] == "zarr.json is nested too deeply; refused"
    assert all("\n" not in reason for reason in report.failed.values())
    with pytest.raises(VolumeRefused, match=r"^zarr.json is nested too deeply; refused$"):
        inspect_volume(masks / "a_deep.zarr")


def test_metadata_that_is_no_regular_file_or_leads_out_is_refused(tmp_path):
    masks = tmp_path / "masks"
    write_zarr(masks / "a_link.zarr", small_labels())
    chunk = masks / "a_link.zarr" / "c" / "0" / "0" / "0"
    chunk.unlink()
    (tmp_path / "elsewhere").write_bytes(b"outside MASKS")
    chunk.symlink_to(tmp_path / "elsewhere")
    write_zarr(masks / "b_fifo.zarr", small_labels())
    (masks / "b_fifo.zarr" / "zarr.json").unlink()
    os.mkfifo(masks / "b_fifo.zarr" / "zarr.json")
    write_zarr(masks / "c_bad_path.zarr", small_labels())
    image = zarr.create_group(str(masks / "d_ome.zarr"))
    image.attrs["multiscales"] = [{"datasets": [{"path": "../c_bad_path.zarr"}]}]
    report = run(masks, tmp_path / "out")
    assert report.done == ["c_bad_path.zarr"]
    assert report.failed["a_link.zarr"] == "holds a symbolic link (c/0/0/0); refused"
    assert report.failed["b_fifo.zarr"] == "not a zarr array or OME-Zarr image"
    assert report.failed["d_ome.zarr"] == (
        "OME-Zarr dataset path '../c_bad_path.zarr' is not inside the image"
    )
    with pytest.raises(VolumeRefused, match="zarr.json is not a regular file; refused"):
        volumes._load_json(masks / "b_fifo.zarr" / "zarr.json")


# --- 4. missing chunks ---------------------------------------------------------------


def _remove_chunks(root: Path, keys: list[str]) -> None:
    for key in keys:
        (root / key).unlink()


@pytest.mark.parametrize(
    ("layout", "keys"),
    [
        ("v3", ["c/0/0/0", "c/1/1/1", "c/1/0/1"]),
        ("v3-dot", ["c.0.0.0", "c.1.1.1", "c.1.0.1"]),
        ("v3-v2-keys", ["0.0.0", "1.1.1", "1.0.1"]),
        ("v2", ["0.0.0", "1.1.1", "1.0.1"]),
        ("v2-slash", ["0/0/0", "1/1/1", "1/0/1"]),
        ("ome-v2", ["0/0.0.0", "0/1.1.1", "0/1.0.1"]),
        ("ome-v3", ["s0/c/0/0/0", "s0/c/1/1/1", "s0/c/1/0/1"]),
    ],
)
def test_missing_chunks_are_counted_from_the_listing(tmp_path, layout, keys):
    labels = np.zeros((16, 32, 64), np.uint16)  # 2x2x4 = 16 chunks of 8x16x16
    labels[2:14, 4:28, 4:60] = 7
    labels[4:12, 8:24, 30:50] = 9
    root = tmp_path / "masks" / "vol.zarr"
    chunks = (8, 16, 16)
    common = {"chunks": chunks, "dtype": labels.dtype, "config": {"write_empty_chunks": True}}
    if layout == "v3":
        z = zarr.create_array(str(root), shape=labels.shape, **common)
    elif layout == "v3-dot":
        encoding = {"name": "default", "separator": "."}
        z = zarr.create_array(str(root), shape=labels.shape, chunk_key_encoding=encoding, **common)
    elif layout == "v3-v2-keys":
        z = zarr.create_array(
            str(root), shape=labels.shape, chunk_key_encoding={"name": "v2"}, **common
        )
    elif layout.startswith("v2"):
        separator = "/" if layout == "v2-slash" else "."
        z = zarr.open_array(
            str(root), mode="w", shape=labels.shape, zarr_format=2,
            dimension_separator=separator, **common,
        )  # fmt: skip
    else:
        image = zarr.create_group(str(root), zarr_format=2 if layout == "ome-v2" else 3)
        path = "0" if layout == "ome-v2" else "s0"
        multiscales = [{"version": "0.4", "datasets": [{"path": path}]}]
        if layout == "ome-v2":
            image.attrs["multiscales"] = multiscales
        else:
            image.attrs["ome"] = {"version": "0.5", "multiscales": multiscales}
        z = image.create_array(path, shape=labels.shape, **common)
    z[:] = labels
    (root / "README").write_text("not a chunk")  # neither is anything out of the grid
    _remove_chunks(root, keys)
    info = inspect_volume(root)
    assert (info.chunks_expected, info.chunks_present) == (16, 13)
    messages: list[str] = []
    out = tmp_path / "out"
    report = run(
        tmp_path / "masks", out, mask_type="semantic", log=lambda level, m: messages.append(m)
    )
    assert report.done == ["vol.zarr"], report.failed
    assert (
        "vol.zarr: semantic, wrote unet (3 of 16 source chunks missing, read as fill value 0)"
        in (messages)
    )
    refused = run(tmp_path / "masks", tmp_path / "out2", missing_chunks="error")
    assert refused.failed["vol.zarr"] == (
        "3 of 16 source chunks missing (they would read as fill value 0); refused by "
        "--missing-chunks error"
    )


def test_missing_chunk_note_with_the_cli_and_its_fill_value(tmp_path):
    masks = tmp_path / "masks"
    labels = small_labels()
    write_zarr(masks / "vol.zarr", labels, fill_value=0)
    write_zarr(masks / "whole.zarr", labels)
    _remove_chunks(masks / "vol.zarr", ["c/1/1/1"])
    (masks / "vol.zarr" / "c" / "1" / "1" / "9").write_bytes(b"")  # out of the grid
    base = ["generate", str(masks), str(tmp_path / "out"), "--workers", "1", "--device", "cpu",
            "--kinds", "unet", "--mask-type", "instance", "--sigma", "1.5"]  # fmt: skip
    result = CliRunner().invoke(main, [*base, "-v"])
    assert result.exit_code == 0, result.output
    assert (
        "vol.zarr: instance, wrote unet (1 of 8 source chunks missing, read as fill value 0)"
        in (result.output)
    )
    assert "whole.zarr: instance, wrote unet\n" in result.output
    meta = json.loads((masks / "vol.zarr" / "zarr.json").read_text())
    meta["fill_value"] = 3
    (masks / "vol.zarr" / "zarr.json").write_text(json.dumps(meta))
    result = CliRunner().invoke(main, [*base, "--missing-chunks", "error"])
    assert result.exit_code == 1
    assert (
        "FAILED vol.zarr: 1 of 8 source chunks missing (they would read as fill value 3); "
        "refused by --missing-chunks error"
    ) in result.output


def test_dataset_refuses_an_npy_image_claiming_a_huge_image(tmp_path):
    pytest.importorskip("torch")
    from weightmaps.data import WeightMapDataset

    masks, out, images = tmp_path / "masks", tmp_path / "out", tmp_path / "images"
    masks.mkdir()
    images.mkdir()
    tifffile.imwrite(masks / "m.tif", small_labels()[5])
    assert weightmaps.generate(masks, out, workers=1).exit_code == 0
    # A header claiming 60000^2 pixels in front of a few bytes.
    header = np.lib.format.header_data_from_array_1_0(np.zeros((1, 1), np.uint8))
    header["shape"] = (60000, 60000)
    with open(images / "m.npy", "wb") as fh:
        np.lib.format.write_array_header_1_0(fh, header)
        fh.write(b"\0" * 64)
    dataset = WeightMapDataset(masks, out, images_dir=images)
    with pytest.raises(ValueError, match="more than the limit|mmap length"):
        dataset[0]


def test_a_vanishing_ome_scale_is_no_crash(tmp_path):
    """A scale of 1e-320 makes every halo longer than any int (cut-off / spacing
    overflows): the halo becomes the whole axis and the block limit decides."""
    masks = tmp_path / "masks"
    labels = np.concatenate([small_labels()] * 3)  # 48 slices
    image = zarr.create_group(str(masks / "a_tiny.ome.zarr"))
    image.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a} for a in "zyx"],
            "datasets": [
                {
                    "path": "0",
                    "coordinateTransformations": [{"type": "scale", "scale": [1e-320, 1, 1]}],
                }
            ],
        }
    ]
    image.create_array("0", shape=labels.shape, chunks=(8, 16, 16), dtype=labels.dtype)[:] = labels
    write_zarr(masks / "b_good.zarr", labels)
    # Blocks of b_good: 8 slices (+9 each way) by 16 x 16 (+9), at most 25 x 25 x 25,
    # 62500 bytes as maps; those of a_tiny span all 48 slices, 120000 bytes.
    report = run(masks, tmp_path / "out", spacing="auto", max_chunk_bytes=100_000)
    assert report.done == ["b_good.zarr"]
    assert report.failed["a_tiny.ome.zarr"].startswith("the unet map grows processing chunks")
    assert "\n" not in report.failed["a_tiny.ome.zarr"]
