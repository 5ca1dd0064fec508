"""Blocks grown by a halo are held to --max-chunk-bytes, from the metadata and settings.

A chunked map computes every processing chunk grown by its halo (chunks
thinner than the halo merged first), so the block a task holds can be far
larger than the processing chunk the limits allowed: a large sigma, a fine
spacing, thin chunks. The grown block is sized by the code the kernels run
(:mod:`weightmaps.kernels.blocks`) and refused before any block is read.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("dask")
zarr = pytest.importorskip("zarr")

import dask  # noqa: E402
import dask.array as da  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from weightmaps.cli.main import main  # noqa: E402

from weightmaps import recipe  # noqa: E402
from weightmaps.io import volume_source  # noqa: E402
from weightmaps.io.volumes import VolumeLimits, VolumeRefused, check_halo_blocks  # noqa: E402
from weightmaps.kernels import _dask_common  # noqa: E402
from weightmaps.kernels.blocks import halo_chunks, largest_grown_block  # noqa: E402
from weightmaps.pipeline import generate  # noqa: E402
from weightmaps.settings import MapSettings  # noqa: E402

OPTIONS = {"sigma": 1.5, "kinds": ["unet"], "mask_type": "instance"}
# sigma 1.5: the U-Net halo is ceil(border_cutoff(1.5)) + 1 = 9 pixels per axis.
HALO = 9


def run(masks: Path, out: Path, **kwargs):
    options = {"workers": 1, "device": "cpu", "progress": False, **OPTIONS, **kwargs}
    return generate(masks, out, **options)


def labels(shape=(16, 64, 64)) -> np.ndarray:
    out = np.zeros(shape, np.uint16)
    out[2:8, 3:12, 3:12] = 1
    out[9:15, 18:30, 16:28] = 2
    out[4:12, 40:60, 2:9] = 3
    return out[: shape[0], : shape[1], : shape[2]]


def write_zarr(path: Path, array: np.ndarray, chunks) -> None:
    z = zarr.create_array(
        str(path), shape=array.shape, dtype=array.dtype, chunks=chunks,
        config={"write_empty_chunks": True},
    )  # fmt: skip
    z[:] = array


def refused_unread(monkeypatch, masks: Path, out: Path, **kwargs):
    """``run``, failing on any read of stored data (the refusal must come first)."""
    with monkeypatch.context() as patch:
        patch.setattr(volume_source._GuardedArray, "__getitem__", no_read)
        report = run(masks, out, **kwargs)
    assert not list(out.glob("*.zarr"))
    return report


def no_read(self, key):
    raise AssertionError(f"stored data read at {key} for a volume to be refused")


# 16x64x64 uint16 in chunks of 8x16x16: processing chunks of 8192 bytes as maps.
# Axis 0 (8, 8) is merged into one chunk by the halo of 9 (no halo left there);
# axes 1 and 2 keep chunks of 16, an inner one grown to 16 + 2 * 9 = 34.
GROWN = (16, 34, 34)
GROWN_BYTES = 16 * 34 * 34 * 4  # 73984
REFUSAL = (
    "the unet map grows processing chunks by a halo of 9x9x9 into blocks of up to 16x34x34, "
    "73984 bytes each as maps, more than the limit of 20000; give smaller --chunks, a smaller "
    "halo (--sigma, --sigma-bal, --spacing) or raise --max-chunk-bytes"
)


def test_grown_blocks_over_the_limit_are_refused_before_any_read(tmp_path, monkeypatch):
    masks, out = tmp_path / "masks", tmp_path / "out"
    write_zarr(masks / "vol.zarr", labels(), (8, 16, 16))
    # The processing chunks (8192 bytes) pass this limit.
    report = refused_unread(monkeypatch, masks, out, max_chunk_bytes=20000)
    assert report.exit_code == 1 and not report.done
    assert report.failed["vol.zarr"] == REFUSAL


def test_the_same_volume_passes_at_the_grown_size(tmp_path):
    masks = tmp_path / "masks"
    write_zarr(masks / "vol.zarr", labels(), (8, 16, 16))
    report = run(masks, tmp_path / "out", max_chunk_bytes=GROWN_BYTES)
    assert report.done == ["vol.zarr"] and not report.failed
    assert (tmp_path / "out" / "vol.unet.zarr").is_dir()


def test_a_fine_spacing_grows_the_halo(tmp_path, monkeypatch):
    masks = tmp_path / "masks"
    write_zarr(masks / "vol.zarr", labels(), (8, 16, 16))
    # Accepted in pixel units at this limit (73984 bytes); a spacing 10x finer makes the
    # halo 80 pixels wide: every axis merged into one chunk, the whole volume one block.
    assert run(masks, tmp_path / "pixels", max_chunk_bytes=200000).done == ["vol.zarr"]
    fine = {"max_chunk_bytes": 200000, "spacing": (0.1, 0.1, 0.1)}
    report = refused_unread(monkeypatch, masks, tmp_path / "out", **fine)
    expected = "halo of 80x80x80 into blocks of up to 16x64x64, 262144 bytes"
    assert expected in report.failed["vol.zarr"]


def test_the_carving_halo_is_checked_in_the_dataset_pass_too(tmp_path, monkeypatch):
    masks = tmp_path / "masks"
    write_zarr(masks / "vol.zarr", labels(), (8, 16, 16))
    # The carving grows chunks of 8x16x16 by one pixel a side: 9 along axis 0 (two
    # chunks, each grown on its inner side only), 18 along the others: 11664 bytes.
    options = {"separate_touching": True, "kinds": ["balance"], "balance_scope": "dataset"}
    report = refused_unread(monkeypatch, masks, tmp_path / "out", max_chunk_bytes=11000, **options)
    assert report.failed["vol.zarr"].startswith(
        "the carving of touching instances grows processing chunks by a halo of 1x1x1 into "
        "blocks of up to 9x18x18, 11664 bytes each as maps, more than the limit of 11000; "
        "give smaller --chunks or raise"
    )
    assert run(masks, tmp_path / "ok", max_chunk_bytes=11664, **options).done == ["vol.zarr"]


def test_the_run_goes_on_after_the_refusal(tmp_path):
    masks = tmp_path / "masks"
    write_zarr(masks / "a_grown.zarr", labels(), (8, 16, 16))
    write_zarr(masks / "b_small.zarr", labels((8, 16, 16)), (8, 16, 16))  # one chunk: no halo
    result = CliRunner().invoke(
        main,
        ["generate", str(masks), str(tmp_path / "out"), "--workers", "1", "--device", "cpu",
         "--kinds", "unet", "--mask-type", "instance", "--sigma", "1.5",
         "--max-chunk-bytes", "20000"],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    assert f"FAILED a_grown.zarr: {REFUSAL}" in result.output
    assert "done 1, skipped 0 (current), failed 1" in result.output
    assert (tmp_path / "out" / "b_small.unet.zarr").is_dir()
    assert not (tmp_path / "out" / "a_grown.unet.zarr").exists()


def test_the_grown_limit_on_the_cluster_path(tmp_path):
    pytest.importorskip("distributed")
    masks = tmp_path / "masks"
    write_zarr(masks / "a_grown.zarr", labels(), (8, 16, 16))
    write_zarr(masks / "b_small.zarr", labels((8, 16, 16)), (8, 16, 16))
    report = run(masks, tmp_path / "out", max_chunk_bytes=20000, scheduler="local:1")
    assert report.done == ["b_small.zarr"]
    assert report.failed["a_grown.zarr"] == REFUSAL


# --- the grown block's size, and that it is what the kernels hold -------------------


@pytest.mark.parametrize(
    ("chunks", "depth", "expected"),
    [
        # Inner chunks grow by the halo on both sides, the outer ones on one side.
        (((10, 10, 10),), (3,), (16,)),
        # Two chunks: each grows on its inner side only (the volume's edge clips).
        (((10, 10),), (3,), (13,)),
        # A tail thinner than the halo joins the last chunk: (10, 15); that one grows
        # by 8 towards the first and is clipped at the volume's end: 25 - 2 = 23.
        (((10, 10, 5),), (8,), (23,)),
        # Chunks thinner than the halo are merged first: (4, 4, 4, 4, 2) by 5 -> (8, 10),
        # the second grown by 5 on its inner side only: 15.
        (((4, 4, 4, 4, 2),), (5,), (15,)),
        # Merged into one chunk: no halo at all on that axis.
        (((3, 3),), (10,), (6,)),
        # Per axis independently, depth 0 leaves the chunks as they are.
        (((8, 8), (16, 16, 16, 16)), (9, 9), (16, 34)),
        (((5, 1, 9), (7,)), (0, 4), (9, 7)),
    ],
)
def test_largest_grown_block(chunks, depth, expected):
    assert largest_grown_block(chunks, depth) == expected


@pytest.mark.parametrize("rereadable", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_the_kernels_hold_blocks_of_at_most_that_size(seed, rereadable):
    """Whichever way map_with_halo reads (its own blocks or map_overlap), the
    largest block handed to a kernel is the one the limit sizes."""
    rng = np.random.default_rng(seed)
    shape = (23, 41)
    chunks = tuple(
        tuple(int(c) for c in np.diff(np.unique([0, *rng.integers(1, n, 4), n]))) for n in shape
    )
    depth = tuple(int(d) for d in rng.integers(0, 9, 2))
    x = da.from_array(np.arange(np.prod(shape)).reshape(shape), chunks=chunks)
    if not rereadable:
        x = x.map_blocks(lambda b: b + 0)
    seen = []

    def record(block):
        seen.append(block.shape)
        return block.astype(np.float32)

    with dask.config.set(scheduler="synchronous"):
        _dask_common.map_with_halo(record, [x], depth, np.float32).compute()
    largest = tuple(max(s[axis] for s in seen) for axis in range(2))
    assert largest == largest_grown_block(chunks, depth)
    assert len(seen) == np.prod([len(c) for c in halo_chunks(chunks, depth)[0]])


def test_check_halo_blocks_counts_the_mask_item_or_float32():
    halo = recipe.VolumeHalo("the edge map", (2, 2), ("--edge-kernel",))
    chunks = ((10, 10), (10, 10))  # grown to 12x12
    check_halo_blocks(chunks, np.dtype(np.uint8), [halo], VolumeLimits(max_chunk_bytes=576))
    with pytest.raises(VolumeRefused, match=r"12x12, 576 bytes .* limit of 575; .*edge-kernel"):
        check_halo_blocks(chunks, np.dtype(np.uint8), [halo], VolumeLimits(max_chunk_bytes=575))
    # 8-byte labels are held as 8 bytes a voxel, as the processing chunks are counted.
    with pytest.raises(VolumeRefused, match="1152 bytes each"):
        check_halo_blocks(chunks, np.dtype(np.int64), [halo], VolumeLimits(max_chunk_bytes=600))


# --- the halos the check sizes are the kernels' own ---------------------------------


SETTINGS = [
    {},
    {"sigma": 3.0},
    {"w0": 0.0},  # no border term: no halo
    {"v_bal": 0.2, "sigma_bal": 4.0},  # Falk's fall
    {"v_bal": 0.2, "sigma_bal": 4.0, "w0": 0.0},
    {"edge_kernel": 9},
    {"sdf_max": 3.5},
    {"separate_touching": True},
]


@pytest.mark.parametrize("options", SETTINGS)
@pytest.mark.parametrize("spacing", [None, (2.0, 0.5, 0.75)])
def test_the_checked_halos_are_the_kernels_own(options, spacing, monkeypatch):
    settings = MapSettings(mask_type="instance", **{"sdf_max": 2.0, **options})
    kinds = ["unet", "edge", "balance", "sdf", "distance"]
    used: list[tuple[int, ...]] = []
    real = _dask_common.halo_chunks

    def spy(chunks, depth):
        used.append(tuple(depth))
        return real(chunks, depth)

    monkeypatch.setattr(_dask_common, "halo_chunks", spy)
    volume = da.from_array(labels((16, 32, 32)), chunks=8)
    with dask.config.set(scheduler="synchronous"):
        recipe.compute_volume_maps(volume, settings, kinds=kinds, spacing=spacing)
    halos = recipe.volume_halos(settings, kinds, spacing, 3)
    checked = {h.depth for h in halos if any(h.depth)}
    assert checked == {d for d in used if any(d)}
    carving = [h for h in halos if "carving" in h.name]
    assert bool(carving) == settings.separate_touching


def test_volume_halos_without_a_chunked_map():
    settings = MapSettings(separate_touching=True, mask_type="semantic")
    assert recipe.volume_halos(settings, ["balance"], None, 2) == [
        recipe.VolumeHalo("the balance map", (0, 0), ())
    ]
    unet = recipe.volume_halos(MapSettings(sigma=1.5), ["unet"], None, 2)
    assert unet == [recipe.VolumeHalo("the unet map", (HALO, HALO), unet[0].options)]


# --- reported when the run is planned: --dry-run and check --------------------------


def test_dry_run_and_check_report_the_refusal(tmp_path):
    """Planned from the metadata and the spacing given: nothing is scheduled."""
    masks, out = tmp_path / "masks", tmp_path / "out"
    write_zarr(masks / "a_grown.zarr", labels(), (8, 16, 16))
    write_zarr(masks / "b_small.zarr", labels((8, 16, 16)), (8, 16, 16))
    options = ["--kinds", "unet", "--mask-type", "instance", "--sigma", "1.5",
               "--max-chunk-bytes", "20000"]  # fmt: skip
    dry = CliRunner().invoke(main, ["generate", str(masks), str(out), "--dry-run", *options])
    assert dry.exit_code == 1, dry.output
    assert f"FAILED a_grown.zarr: {REFUSAL}" in dry.output
    assert not out.exists() or not list(out.glob("*.zarr"))
    # check plans with the limits of the last generate run, which made b_small's map.
    made = CliRunner().invoke(main, ["generate", str(masks), str(out), "--workers", "1", *options])
    assert made.exit_code == 1 and f"FAILED a_grown.zarr: {REFUSAL}" in made.output
    checked = CliRunner().invoke(main, ["check", str(masks), str(out)])
    assert checked.exit_code == 1, checked.output
    assert f"unreadable a_grown.zarr: {REFUSAL}" in checked.output
    assert "1 current, 0 stale, 0 missing, 1 unreadable" in checked.output


def test_a_tiff_is_planned_with_its_own_spacing(tmp_path):
    """--spacing auto on a TIFF: its resolution tags, read at planning, grow the halo."""
    import tifffile

    masks = tmp_path / "masks"
    masks.mkdir()
    # 0.1 pixels a unit along y and x (resolution 10 per unit), 1 along z.
    tifffile.imwrite(
        masks / "fine.tif", labels((16, 64, 64)), imagej=True, resolution=(10.0, 10.0),
        metadata={"spacing": 1.0, "axes": "ZYX"},
    )  # fmt: skip
    options = {"chunked_above": 1, "chunks": 16, "max_chunk_bytes": 200000, "dry_run": True}
    in_pixels = run(masks, tmp_path / "pixels", spacing=None, **options)
    assert not in_pixels.failed
    fine = run(masks, tmp_path / "fine", spacing="auto", **options)
    assert "into blocks of up to 16x64x64" in fine.failed["fine.tif"]


def write_ome(path: Path, array: np.ndarray, chunks, scale) -> None:
    image = zarr.create_group(str(path))
    axes = "tczyx"[-array.ndim :]
    image.attrs["multiscales"] = [
        {
            "version": "0.4",
            "axes": [{"name": a} for a in axes],
            "datasets": [
                {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
            ],
        }
    ]
    image.create_array("0", shape=array.shape, chunks=chunks, dtype=array.dtype)[:] = array


def test_an_ome_zarr_is_planned_with_its_own_scale(tmp_path):
    """--spacing auto on an OME-Zarr: its scale, read from the metadata at planning,
    grows the halo; a plain zarr array has none (pixels)."""
    masks = tmp_path / "masks"
    write_ome(masks / "fine.ome.zarr", labels(), (8, 16, 16), [0.1, 0.1, 0.1])
    write_zarr(masks / "plain.zarr", labels(), (8, 16, 16))
    options = {"max_chunk_bytes": 200000, "dry_run": True}
    planned = run(masks, tmp_path / "dry", spacing="auto", **options)
    assert "halo of 80x80x80 into blocks of up to 16x64x64" in planned.failed["fine.ome.zarr"]
    assert "plain.zarr" not in planned.failed


@pytest.mark.parametrize(
    ("shape", "chunks", "scale"),
    [
        ((16, 64, 64), (8, 16, 16), [2.0, 0.5, 0.25]),
        ((1, 1, 16, 40, 40), (1, 1, 8, 16, 16), [1.0, 3.0, 2.0, 0.5, 0.25]),
        ((1, 40, 50), (1, 16, 16), [5.0, 0.5, 0.25]),
        ((40, 50), (16, 16), [0.5, 0.25]),
    ],
)
def test_the_planned_spacing_is_the_jobs(tmp_path, shape, chunks, scale):
    from weightmaps.io.volume_source import open_volume
    from weightmaps.io.volumes import inspect_volume, processing_grid
    from weightmaps.pipeline.plan import planned_file_spacing

    path = tmp_path / "v.ome.zarr"
    write_ome(path, np.zeros(shape, np.uint16), chunks, scale)
    volume, job_scale, _ = open_volume(str(path), VolumeLimits(), None)
    info = inspect_volume(path)
    grid = processing_grid(info, None)
    assert grid == volume.chunks
    assert planned_file_spacing(path, info, len(grid)) == job_scale


@pytest.mark.parametrize(
    ("shape", "stored", "chunks"),
    [
        ((16, 64, 64), (8, 16, 16), None),
        ((16, 64, 64), (8, 16, 16), 10),
        ((1, 1, 16, 40, 40), (1, 1, 8, 16, 16), None),  # leading axes of one dropped
        ((1, 40, 50), (1, 16, 16), 7),
        ((40, 50), (40, 50), None),
    ],
)
def test_the_planned_grid_is_the_jobs(tmp_path, shape, stored, chunks):
    """processing_grid from the metadata gives the chunks open_volume's array has."""
    from weightmaps.io.volume_source import open_volume
    from weightmaps.io.volumes import inspect_volume, processing_grid

    path = tmp_path / "v.zarr"
    write_zarr(path, np.zeros(shape, np.uint16), stored)
    volume, _, _ = open_volume(str(path), VolumeLimits(), chunks)
    assert processing_grid(inspect_volume(path), chunks) == volume.chunks


def test_the_planned_grid_of_a_tiff_is_the_jobs(tmp_path):
    import tifffile

    from weightmaps.io.volume_source import open_volume
    from weightmaps.io.volumes import inspect_volume, processing_grid

    for shape in [(40, 300, 270), (1, 5000, 300)]:
        path = tmp_path / f"{len(shape)}_{shape[0]}.tif"
        tifffile.imwrite(path, np.zeros(shape, np.uint8))
        for chunks in (None, 100):
            volume, _, _ = open_volume(str(path), VolumeLimits(), chunks)
            assert processing_grid(inspect_volume(path), chunks) == volume.chunks, (shape, chunks)


def test_hostile_ome_scales_leave_planning_to_the_job(tmp_path):
    """Scales the distances cannot use: planning passes them on (no crash, nothing
    refused that it cannot size) and each job fails its volume in one line."""
    masks = tmp_path / "masks"
    scales = [[-1, 1, 1], [float("nan"), 1, 1], [0, 1, 1], ["x", 1, 1], [1, 1], None, [[1], 1, 1]]
    for i, scale in enumerate(scales):
        write_ome(masks / f"v{i}.ome.zarr", labels(), (8, 16, 16), scale)
    planned = run(masks, tmp_path / "dry", spacing="auto", dry_run=True)
    assert not planned.failed
    report = run(masks, tmp_path / "out", spacing="auto")
    assert sorted(report.failed) == [f"v{i}.ome.zarr" for i in range(len(scales))]
    assert not any("\n" in reason for reason in report.failed.values())
