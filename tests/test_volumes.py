"""Volumes on disk in ``generate``: zarr / OME-Zarr / big TIFF in, zarr maps out.

Every volume here is small (40x64x64 at most) with chunks of 16, so halos
cross chunks and the whole run stays quick.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")

import tifffile  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from conftest import random_instances  # noqa: E402
from weightmaps.cli.main import main  # noqa: E402

import weightmaps  # noqa: E402
from weightmaps.io.writing import TEMP_SUFFIX  # noqa: E402
from weightmaps.kernels import unet_dask  # noqa: E402
from weightmaps.pipeline import GenerateInterrupted, find_masks, generate  # noqa: E402
from weightmaps.pipeline.manifest import MANIFEST_NAME  # noqa: E402
from weightmaps.recipe import compute_maps  # noqa: E402
from weightmaps.settings import MapSettings  # noqa: E402

SHAPE = (40, 64, 64)
OPTIONS = {"sigma": 1.5, "edge_kernel": 5, "w0": 10.0}
KINDS = ("unet", "edge", "balance")


@pytest.fixture(scope="module")
def labels() -> np.ndarray:
    return random_instances(SHAPE, 60, seed=3)


def write_zarr(path: Path, array: np.ndarray, chunks: int = 16) -> None:
    """Every chunk written, empty ones too: no chunk is missing from the store."""
    z = zarr.create_array(
        str(path),
        shape=array.shape,
        chunks=(chunks,) * array.ndim,
        dtype=array.dtype,
        config={"write_empty_chunks": True},
    )
    z[:] = array


def read_zarr(path: Path) -> np.ndarray:
    return zarr.open_array(str(path), mode="r")[:]


def run(masks: Path, out: Path, **kwargs):
    return generate(masks, out, workers=1, device="cpu", progress=False, **{**OPTIONS, **kwargs})


def manifest(out: Path) -> dict:
    return json.loads((out / MANIFEST_NAME).read_text())


def assert_maps(out: Path, stem: str, labels: np.ndarray, **options) -> None:
    settings = MapSettings(**{**OPTIONS, **options})
    ref = compute_maps(labels, settings)
    unet = weightmaps.unet_weight_map(labels, w0=settings.w0, sigma=settings.sigma)
    np.testing.assert_allclose(read_zarr(out / f"{stem}.unet.zarr"), unet, atol=1e-5 * settings.w0)
    np.testing.assert_allclose(read_zarr(out / f"{stem}.edge.zarr"), ref.maps["edge"], atol=1e-5)
    np.testing.assert_allclose(
        read_zarr(out / f"{stem}.balance.zarr"), ref.maps["balance"], rtol=1e-6
    )


def test_zarr_volume_in_zarr_maps_out_chunk_by_chunk(tmp_path, labels, monkeypatch):
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels)
    # What the run reads from zarr, and the blocks the U-Net kernel is given.
    reads: list[int] = []
    blocks: list[tuple[int, ...]] = []
    getitem = zarr.Array.__getitem__
    kernel = unet_dask.numpy_unet_weight_map

    def counting_getitem(self, selection):
        result = getitem(self, selection)
        reads.append(np.asarray(result).size)
        return result

    def recording_kernel(instances, **kwargs):
        blocks.append(instances.shape)
        return kernel(instances, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(zarr.Array, "__getitem__", counting_getitem)
        patch.setattr(unet_dask, "numpy_unet_weight_map", recording_kernel)
        report = run(masks, out)
    assert report.exit_code == 0 and report.done == ["vol.zarr"]
    # Never the whole volume: each zarr read is at most one 16^3 chunk, and each
    # U-Net block is a chunk with its halo, well below the volume.
    assert reads and max(reads) <= 16**3
    assert blocks and max(np.prod(b) for b in blocks) <= np.prod(SHAPE) // 4
    assert_maps(out, "vol", labels)

    unet = zarr.open_array(str(out / "vol.unet.zarr"), mode="r")
    assert unet.dtype == np.float32 and unet.chunks == (16, 16, 16)
    assert unet.compressors  # the zarr default codec
    attrs = dict(unet.attrs)
    assert attrs["weightmaps_kind"] == "unet"
    assert attrs["weightmaps_params"] == MapSettings(**OPTIONS).kind_params("unet")
    assert attrs["weightmaps_source_fingerprint"].startswith("stat:")
    assert attrs["weightmaps_version"] == weightmaps.__version__

    record = manifest(out)["masks"]["vol.zarr"]
    assert record["sha256"] == attrs["weightmaps_source_fingerprint"]
    assert record["mask_type"] == "instance" and record["shape"] == list(SHAPE)
    assert sorted(record["outputs"]) == sorted(KINDS)
    output = record["outputs"]["unet"]
    assert output["path"] == "vol.unet.zarr" and output["dtype"] == "float32"
    assert output["bytes"] == sum(
        p.stat().st_size for p in out.rglob("vol.unet.zarr/**/*") if p.is_file()
    )
    w = read_zarr(out / "vol.unet.zarr")
    assert output["min"] == pytest.approx(w.min()) and output["max"] == pytest.approx(w.max())
    assert output["mean"] == pytest.approx(w.mean(dtype=np.float64))
    assert weightmaps.check(masks, out).exit_code == 0

    again = run(masks, out)
    assert again.skipped == ["vol.zarr"] and not again.done

    # Rewrite one chunk with other labels: the volume is redone, and right.
    z = zarr.open_array(str(masks / "vol.zarr"), mode="r+")
    changed = labels.copy()
    changed[16:32, 16:32, 16:32] = np.where(changed[16:32, 16:32, 16:32] > 0, 0, 77)
    z[16:32, 16:32, 16:32] = changed[16:32, 16:32, 16:32]
    redo = run(masks, out)
    assert redo.done == ["vol.zarr"] and redo.reasons["vol.zarr"]["unet"] == "mask changed"
    assert_maps(out, "vol", changed)


def _interrupt_after_first_chunk_row(monkeypatch, masks: Path, out: Path, **options) -> None:
    """Run until every map has its first row of chunks written, then Ctrl-C."""
    import dask.array as da

    def first_row_then_ctrl_c(sources, targets, regions=None, **kwargs):
        for source, target in zip(sources, targets, strict=True):
            target[:16] = source[:16].compute()  # whole chunks, as store writes them
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(da, "store", first_row_then_ctrl_c)
        with pytest.raises(GenerateInterrupted):
            run(masks, out, **options)


def test_interrupted_volume_is_resumed_chunk_by_chunk(tmp_path, labels, monkeypatch, caplog):
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels)
    _interrupt_after_first_chunk_row(monkeypatch, masks, out)
    assert not list(out.glob("*.zarr")), "no output under its final name"
    assert len(list(out.glob(f".*.zarr{TEMP_SUFFIX}"))) == 3, "resumable temporaries kept"
    assert not manifest(out)["masks"].get("vol.zarr", {}).get("outputs")

    blocks: list[tuple[int, ...]] = []
    kernel = unet_dask.numpy_unet_weight_map

    def recording_kernel(instances, **kwargs):
        blocks.append(instances.shape)
        return kernel(instances, **kwargs)

    with monkeypatch.context() as patch, caplog.at_level("INFO", logger="weightmaps"):
        patch.setattr(unet_dask, "numpy_unet_weight_map", recording_kernel)
        report = run(masks, out)
    assert report.done == ["vol.zarr"]
    assert "vol.zarr: instance, wrote unet, edge, balance (resumed: 48 of 144 chunks kept)" in (
        caplog.messages
    )
    # The kernel runs on chunks of (16, 24) x 16 x 16 along z (the last chunk of 8
    # is below the halo and merged with its neighbour): 32 blocks in all, of
    # which the first row of 16 was kept, so only the other 16 are computed.
    assert len(blocks) == 16 and all(b[0] == 24 + 9 for b in blocks)
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    assert_maps(out, "vol", labels)
    record = manifest(out)["masks"]["vol.zarr"]["outputs"]["unet"]
    w = read_zarr(out / "vol.unet.zarr")
    assert record["mean"] == pytest.approx(w.mean(dtype=np.float64))
    assert record["min"] == pytest.approx(w.min()) and record["max"] == pytest.approx(w.max())
    assert weightmaps.check(masks, out, **OPTIONS).exit_code == 0


def test_leftover_of_other_settings_or_junk_is_started_afresh(tmp_path, labels, monkeypatch):
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels)
    _interrupt_after_first_chunk_row(monkeypatch, masks, out, sigma=3.0)
    # A leftover of a run that was killed outright while creating its array.
    leftover = out / f".vol.edge.zarr{TEMP_SUFFIX}"
    _remove_tree(leftover)
    (leftover / "c").mkdir(parents=True)
    (leftover / "c" / "junk").write_bytes(b"x" * 10)
    report = run(masks, out)  # sigma 1.5: the kept U-Net chunks are of sigma 3
    assert report.done == ["vol.zarr"]
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    assert_maps(out, "vol", labels)


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path)


def test_out_equal_to_masks_never_takes_maps_for_masks(tmp_path, labels):
    masks = tmp_path / "masks"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels[:16, :32, :32])
    first = run(masks, masks, kinds=["unet", "edge"], mask_type="instance")
    assert first.done == ["vol.zarr"] and not first.failed
    assert (masks / "vol.unet.zarr").is_dir()
    assert [m.rel for m in find_masks(masks, out_dir=masks)] == ["vol.zarr"]
    second = run(masks, masks, kinds=["unet", "edge"], mask_type="instance")
    assert second.skipped == ["vol.zarr"] and not second.done and not second.failed


def test_big_tiff_goes_the_chunked_way_with_the_same_maps(tmp_path, labels):
    masks = tmp_path / "masks"
    masks.mkdir()
    volume = labels[:24].astype(np.uint16)
    tifffile.imwrite(masks / "big.tif", volume)
    memory = run(masks, tmp_path / "memory")
    assert memory.done == ["big.tif"]
    result = CliRunner().invoke(
        main,
        ["generate", str(masks), str(tmp_path / "chunked"), "--workers", "1", "--device", "cpu",
         "--sigma", "1.5", "--edge-kernel", "5", "--chunked-above", "1000", "--chunks", "16"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    chunked = tmp_path / "chunked"
    assert not list(chunked.glob("*.tif"))
    for kind in KINDS:
        stored = zarr.open_array(str(chunked / f"big.{kind}.zarr"), mode="r")
        assert stored.chunks == (16, 16, 16)
        np.testing.assert_allclose(
            stored[:], tifffile.imread(tmp_path / "memory" / f"big.{kind}.tif"), atol=1e-4
        )
    record = manifest(chunked)["masks"]["big.tif"]
    assert record["sha256"].startswith("stat:") and record["dtype"] == "uint16"
    assert manifest(tmp_path / "memory")["masks"]["big.tif"]["sha256"] != record["sha256"]
    again = run(masks, chunked, chunked_above=1000, chunks=16)
    assert again.skipped == ["big.tif"]


def test_ome_zarr_full_resolution_level(tmp_path, labels):
    masks = tmp_path / "masks"
    image = zarr.create_group(str(masks / "img.ome.zarr"))
    full = labels[:16]
    image.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a} for a in "zyx"],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [2, 1, 1]}]},
                {"path": "1", "coordinateTransformations": [{"type": "scale", "scale": [4, 2, 2]}]},
            ],
        }
    ]
    image.create_array("0", shape=full.shape, chunks=(8, 16, 16), dtype=full.dtype)[:] = full
    half = full[::2, ::2, ::2]
    image.create_array("1", shape=half.shape, chunks=(8, 16, 16), dtype=half.dtype)[:] = half
    out = tmp_path / "out"
    report = run(masks, out, kinds=["unet"], spacing="auto")
    assert report.done == ["img.ome.zarr"], report.failed
    record = manifest(out)["masks"]["img.ome.zarr"]
    assert record["shape"] == list(full.shape) and record["spacing"] == [2.0, 1.0, 1.0]
    expected = weightmaps.unet_weight_map(full, w0=10.0, sigma=1.5, spacing=(2.0, 1.0, 1.0))
    np.testing.assert_allclose(read_zarr(out / "img.unet.zarr"), expected, atol=1e-4)


def test_semantic_volume_equals_the_in_memory_maps(tmp_path):
    """Classes split into several regions, crossing chunks, with an ignore value."""
    rng = np.random.default_rng(5)
    semantic = np.zeros((24, 48, 48), np.uint8)
    for _ in range(40):
        z, y, x = rng.integers(0, 40, 3)
        semantic[z % 24 : z % 24 + 5, y : y + 9, x : x + 9] = rng.integers(1, 4)
    semantic[:3, :5] = 255
    masks = tmp_path / "masks"
    masks.mkdir()
    write_zarr(masks / "sem.zarr", semantic)
    options = {"mask_type": "semantic", "ignore_value": 255}
    out = tmp_path / "out"
    report = run(masks, out, **options)
    assert report.done == ["sem.zarr"], report.failed
    record = manifest(out)["masks"]["sem.zarr"]
    assert record["mask_type"] == "semantic"
    ref = compute_maps(semantic, MapSettings(**{**OPTIONS, **options}))
    assert ref.mask_type == "semantic"
    for kind in KINDS:
        np.testing.assert_allclose(
            read_zarr(out / f"sem.{kind}.zarr"), ref.maps[kind], atol=1e-4, err_msg=kind
        )
    assert record["count_cache"]["counts"] == ref.counts.to_dict()


def test_auto_type_of_a_volume(tmp_path, labels):
    """Many ids: instance; one nonzero value: binary; a few: refused as ambiguous."""
    masks = tmp_path / "masks"
    masks.mkdir()
    write_zarr(masks / "many.zarr", labels)
    write_zarr(masks / "one.zarr", (labels > 0).astype(np.uint8) * 7)
    write_zarr(masks / "few.zarr", labels[:16, :32, :32])
    report = run(masks, tmp_path / "out", kinds=["edge"])
    assert report.mask_types == {"instance": 1, "binary": 1}
    assert sorted(report.done) == ["many.zarr", "one.zarr"]
    assert "ambiguous volume: 7 nonzero values" in report.failed["few.zarr"]
    assert "mask_type='instance' or mask_type='semantic'" in report.failed["few.zarr"]


def test_unknown_volumes_and_edge_size_fail_with_a_reason(tmp_path, labels):
    masks = tmp_path / "masks"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels[:16, :32, :32])
    (masks / "notzarr.zarr").mkdir()
    report = run(masks, tmp_path / "out", edge_size=(8, 16, 16))
    assert "edge size is not supported for chunked volumes" in report.failed["vol.zarr"]
    assert "not a zarr array" in report.failed["notzarr.zarr"]


def test_volume_on_a_dask_cluster(tmp_path, labels):
    masks = tmp_path / "masks"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels[:16, :32, :32])
    report = run(masks, tmp_path / "out", scheduler="local:1", mask_type="instance")
    assert report.done == ["vol.zarr"], report.failed
    assert_maps(tmp_path / "out", "vol", labels[:16, :32, :32])


def test_binary_volume_and_dataset_scope(tmp_path, labels):
    masks = tmp_path / "masks"
    masks.mkdir()
    binary = ((labels[:16] > 0) * 255).astype(np.uint8)
    write_zarr(masks / "bin.zarr", binary)
    tifffile.imwrite(masks / "small.tif", labels[:8, :32, :32].astype(np.uint16))
    out = tmp_path / "out"
    report = run(masks, out, balance_scope="dataset")
    assert sorted(report.done) == ["bin.zarr", "small.tif"], report.failed
    assert manifest(out)["masks"]["bin.zarr"]["mask_type"] == "binary"
    weights = {int(c): w for c, w in manifest(out)["dataset"]["weights"].items()}
    ref = compute_maps(binary, MapSettings(**OPTIONS))
    np.testing.assert_allclose(read_zarr(out / "bin.unet.zarr"), ref.maps["unet"], atol=1e-4)
    np.testing.assert_allclose(read_zarr(out / "bin.edge.zarr"), ref.maps["edge"], atol=1e-5)
    expected = np.where(binary > 0, weights[1], weights[0]).astype(np.float32)
    np.testing.assert_allclose(read_zarr(out / "bin.balance.zarr"), expected, rtol=1e-6)
    assert run(masks, out, balance_scope="dataset").skipped == ["bin.zarr", "small.tif"]


def test_volume_on_the_device_path_is_computed_on_the_cpu(tmp_path, labels):
    pytest.importorskip("torch")
    masks = tmp_path / "masks"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels[:16, :32, :32])
    report = generate(
        masks,
        tmp_path / "out",
        workers=1,
        device="torch:cpu",
        progress=False,
        mask_type="instance",
        **OPTIONS,
    )
    assert report.done == ["vol.zarr"], report.failed
    assert_maps(tmp_path / "out", "vol", labels[:16, :32, :32])


def test_a_volume_job_gets_its_share_of_the_cores(monkeypatch):

    from weightmaps.pipeline import workers

    monkeypatch.setattr(workers, "default_workers", lambda: 8)
    share = workers.volume_threads
    assert share(None, 1) == 8
    assert share(None, 3) == 2
    assert share("local:4", 1) == 2
    assert share(None, 16) == 1
    assert share("tcp://host:8786", 1) is None


def test_volume_job_runs_its_threads(tmp_path, labels, monkeypatch):
    import dask

    from weightmaps.pipeline import volume_jobs

    seen: list[object] = []
    compute = volume_jobs._compute

    def recording(job):
        seen.append((job.threads, dask.config.get("num_workers", None)))
        return compute(job)

    monkeypatch.setattr(volume_jobs, "_compute", recording)
    monkeypatch.setattr(
        "weightmaps.pipeline.generation.volume_threads", lambda scheduler, workers: 3, raising=True
    )
    masks = tmp_path / "masks"
    masks.mkdir()
    write_zarr(masks / "vol.zarr", labels[:16, :32, :32])
    assert run(masks, tmp_path / "out", kinds=["edge"], mask_type="instance").done == ["vol.zarr"]
    assert seen == [(3, 3)]


@pytest.mark.realdata
def test_realdata_deflate_tiff_volume_chunked_equals_in_memory(realdata, tmp_path):
    """stardist's 3D nuclei (deflate TIFF, 44 touching), read lazily in chunks of 16."""
    import shutil

    masks = tmp_path / "masks"
    masks.mkdir()
    shutil.copy(realdata / "stardist" / "mask3d.tif", masks / "nuclei3d.tif")
    options = {"separate_touching": True, "mask_type": "instance", "sigma": 2.0}
    memory = run(masks, tmp_path / "memory", **options)
    chunked = run(masks, tmp_path / "chunked", chunked_above=1000, chunks=16, **options)
    assert memory.done == chunked.done == ["nuclei3d.tif"], (memory.failed, chunked.failed)
    for kind in (*KINDS, "target"):
        expected = tifffile.imread(tmp_path / "memory" / f"nuclei3d.{kind}.tif")
        got = read_zarr(tmp_path / "chunked" / f"nuclei3d.{kind}.zarr")
        np.testing.assert_allclose(got, expected, atol=1e-4 * OPTIONS["w0"], err_msg=kind)
