"""The offline pipeline (``weightmaps.generate`` / ``check``) through its Python API.

Every written map is compared with the kernel functions called directly on
the mask (the oracle is spelled out per mask type here, never through
``compute_maps``); reruns are judged by each file's inode and mtime, which an
atomic rewrite always changes.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import tifffile
from conftest import ALL_MASKS, SAMPLE_MASKS
from PIL import Image

import weightmaps
import weightmaps.pipeline as pipeline
from weightmaps import (
    balance_weight_map,
    edge_weight_map,
    label_instances,
    read_mask,
    separate_instances,
    unet_weight_map,
)
from weightmaps.io.writing import TEMP_SUFFIX, write_tiff_atomic
from weightmaps.pipeline import (
    GenerateInterrupted,
    PipelineError,
    find_masks,
    maps_of,
    mask_jobs,
    output_name,
    plan,
)
from weightmaps.pipeline.lock import output_lock
from weightmaps.pipeline.manifest import MANIFEST_NAME, Manifest

KINDS = ("unet", "edge", "balance")


def run(masks_dir: Path, out_dir: Path, **options) -> pipeline.GenerateReport:
    options.setdefault("workers", 1)
    options.setdefault("progress", False)
    return weightmaps.generate(masks_dir, out_dir, **options)


def read_map(path: Path) -> np.ndarray:
    """A written map: float32, zlib (deflate) compressed, every page."""
    with tifffile.TiffFile(path) as tif:
        assert all(page.compression == tifffile.COMPRESSION.ADOBE_DEFLATE for page in tif.pages), (
            path
        )
        data = tif.asarray()
    assert data.dtype == np.float32, path
    return data


def fingerprints(out: Path) -> dict[str, tuple[int, int]]:
    """(inode, mtime_ns) of every TIFF under ``out``: an atomic rewrite changes both."""
    result = {}
    for path in sorted(out.rglob("*.tif")):
        st = path.stat()
        result[path.relative_to(out).as_posix()] = (st.st_ino, st.st_mtime_ns)
    return result


def out_file(out: Path, rel: str, kind: str) -> Path:
    stem = rel.rsplit(".", 1)[0]
    return out / f"{stem}.{kind}.tif"


def temp_files(*folders: Path) -> list[Path]:
    return [p for folder in folders for p in folder.rglob(f"*{TEMP_SUFFIX}")]


def assert_maps_equal(out: Path, rel: str, expected: dict[str, np.ndarray]) -> None:
    for kind, want in expected.items():
        got = read_map(out_file(out, rel, kind))
        assert got.shape == want.shape, (rel, kind)
        np.testing.assert_array_equal(got, want.astype(np.float32), err_msg=f"{rel} {kind}")


def write_instance_tif(path: Path, mask: np.ndarray) -> None:
    tifffile.imwrite(path, mask, compression="zlib")


def changed_nuclei(mask: np.ndarray) -> np.ndarray:
    """The mask with one more (square) instance in its background."""
    changed = mask.copy()
    free = np.argwhere(np.lib.stride_tricks.sliding_window_view(mask == 0, (9, 9)).all(axis=(2, 3)))
    y, x = free[len(free) // 2]
    changed[y : y + 9, x : x + 9] = int(mask.max()) + 1
    return changed


# --- small pieces -------------------------------------------------------------


def test_output_name():
    assert output_name("a/b.png", "unet") == "a/b.unet.tif"
    assert output_name("b.tif", "balance") == "b.balance.tif"
    assert output_name("a/b.c.npy", "target") == "a/b.c.target.tif"


def test_find_masks_recursive_sorted_and_glob(masks):
    (masks / "notes.txt").write_text("not a mask")
    (masks / ".hidden").mkdir()
    shutil.copy(masks / "nuclei" / "nuclei_00.tif", masks / ".hidden" / "x.tif")
    assert [m.rel for m in find_masks(masks)] == ALL_MASKS
    assert [m.rel for m in find_masks(masks, patterns=["*.png"])] == [
        "binary/polyp_00.png",
        "binary/polyp_01.png",
        "semantic/street_00.png",
    ]
    assert [m.rel for m in find_masks(masks, patterns=["nuclei/*_0[12].tif"])] == [
        "nuclei/nuclei_01.tif",
        "nuclei/nuclei_02.tif",
    ]


# --- outputs equal the kernels ----------------------------------------------------


def test_outputs_equal_kernels_2d(masks, tmp_path):
    out = tmp_path / "out"
    report = run(masks, out)
    assert report.exit_code == 0
    assert sorted(report.done) == ALL_MASKS
    assert report.mask_types == {"binary": 2, "instance": 5, "semantic": 1}

    for rel in ("binary/polyp_00.png", "binary/polyp_01.png"):
        mask = read_mask(masks / rel)
        assert set(np.unique(mask)) == {0, 255}
        fg = mask > 127
        assert_maps_equal(
            out,
            rel,
            {
                "unet": unet_weight_map(label_instances(fg), w0=10.0, sigma=5.0),
                "edge": edge_weight_map(fg, kernel_size=31, alpha=5.0),
                "balance": balance_weight_map(fg, mode="inverse"),
            },
        )
    for i in range(4):
        rel = f"nuclei/nuclei_0{i}.tif"
        mask = read_mask(masks / rel)
        assert_maps_equal(
            out,
            rel,
            {
                "unet": unet_weight_map(mask, w0=10.0, sigma=5.0),
                "edge": edge_weight_map(mask != 0, kernel_size=31, alpha=5.0),
                "balance": balance_weight_map(mask != 0, mode="inverse"),
            },
        )
    # Semantic without an ignore value: 255 is just another class.
    rel = "semantic/street_00.png"
    mask = read_mask(masks / rel)
    classes = [int(c) for c in np.unique(mask)]
    assert classes == [0, 1, 2, 3, 255]
    assert_maps_equal(
        out,
        rel,
        {
            "unet": unet_weight_map(label_instances(mask), w0=10.0, sigma=5.0),
            "edge": edge_weight_map(mask, kernel_size=31, alpha=5.0, classes=classes),
            "balance": balance_weight_map(mask, mode="inverse"),
        },
    )
    # The balance map of a binary mask: inverse frequency by hand.
    fg = read_mask(masks / "binary/polyp_01.png") > 127
    n1, n0 = int(fg.sum()), int((~fg).sum())
    by_hand = np.where(fg, fg.size / (2 * n1), fg.size / (2 * n0))
    np.testing.assert_allclose(read_map(out / "binary/polyp_01.balance.tif"), by_hand, rtol=1e-6)


def test_outputs_equal_kernels_with_parameters(masks, tmp_path):
    out = tmp_path / "out"
    report = run(
        masks,
        out,
        glob=["nuclei/*_01.tif", "semantic/*"],
        mask_type="semantic",
        ignore_value=255,
        w0=7,
        sigma=3,
        edge_kernel=11,
        edge_alpha=2,
        balance_mode="median",
    )
    assert report.exit_code == 0, report.failed
    assert sorted(report.done) == ["nuclei/nuclei_01.tif", "semantic/street_00.png"]
    rel = "semantic/street_00.png"
    mask = read_mask(masks / rel)
    ignored = mask == 255
    assert ignored.any()
    expected = {
        "unet": unet_weight_map(
            label_instances(mask, ignore_value=255), w0=7.0, sigma=3.0, ignore_mask=ignored
        ),
        "edge": edge_weight_map(
            mask, kernel_size=11, alpha=2.0, classes=[0, 1, 2, 3], ignore_index=255
        ),
        "balance": balance_weight_map(mask, mode="median", ignore_index=255),
    }
    assert_maps_equal(out, rel, expected)
    for kind in KINDS:
        assert np.all(read_map(out_file(out, rel, kind))[ignored] == 0), kind


def test_volume_imagej_stack_with_spacing(masks, tmp_path):
    out = tmp_path / "out"
    rel = "volume/nuclei3d_00.tif"
    report = run(masks, out, glob="volume/*")
    assert report.done == [rel]
    mask = read_mask(masks / rel)
    assert mask.ndim == 3
    # Default: distances in pixel units, the file's spacing still in the maps' files.
    assert_maps_equal(
        out,
        rel,
        {
            "unet": unet_weight_map(mask, w0=10.0, sigma=5.0),
            "edge": edge_weight_map(mask != 0, kernel_size=31, alpha=5.0),
            "balance": balance_weight_map(mask != 0),
        },
    )
    for kind in KINDS:
        with tifffile.TiffFile(out_file(out, rel, kind)) as tif:
            assert tif.is_imagej
            assert tif.imagej_metadata["spacing"] == pytest.approx(2.0)
            assert tif.series[0].shape == mask.shape
            assert tif.series[0].axes == "ZYX"
            num, den = tif.pages[0].tags["XResolution"].value
            assert den / num == pytest.approx(0.5)
    record = json.loads((out / MANIFEST_NAME).read_text())["masks"][rel]
    # The manifest records what the distances used (pixels), the file's beside it.
    assert record["spacing"] is None
    assert record["file_spacing"] == [2.0, 0.5, 0.5]
    assert record["shape"] == list(mask.shape)

    # spacing="auto": the U-Net distances follow the file's voxel size (2, 0.5, 0.5).
    report = run(masks, out, glob="volume/*", spacing="auto")
    assert report.reasons == {rel: {"unet": "parameters changed"}}
    np.testing.assert_array_equal(
        read_map(out_file(out, rel, "unet")),
        unet_weight_map(mask, w0=10.0, sigma=5.0, spacing=(2.0, 0.5, 0.5)),
    )


def test_manifest_has_one_line_per_mask(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out, glob="nuclei/*")
    text = (out / MANIFEST_NAME).read_text()
    data = json.loads(text)
    assert len(data["masks"]) == 4
    lines = [line for line in text.splitlines() if line.startswith('  "nuclei/')]
    assert len(lines) == 4
    for line in lines:
        rel, _, record = line.strip().rstrip(",").partition(": ")
        assert json.loads(record) == data["masks"][json.loads(rel)]


def test_manifest_records(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out, glob="nuclei/*_00.tif")
    data = json.loads((out / MANIFEST_NAME).read_text())
    assert data["tool_version"] == weightmaps.__version__
    record = data["masks"]["nuclei/nuclei_00.tif"]
    assert record["size"] == (masks / "nuclei/nuclei_00.tif").stat().st_size
    sha = hashlib.sha256((masks / "nuclei/nuclei_00.tif").read_bytes()).hexdigest()
    assert record["sha256"] == sha
    assert record["mask_type"] == "instance"
    assert record["dtype"] == "uint16"
    assert record["shape"] == [256, 256]
    for kind in KINDS:
        output = record["outputs"][kind]
        assert output["path"] == f"nuclei/nuclei_00.{kind}.tif"
        array = read_map(out / output["path"])
        assert output["bytes"] == (out / output["path"]).stat().st_size
        assert output["sha256"] == hashlib.sha256((out / output["path"]).read_bytes()).hexdigest()
        assert output["min"] == pytest.approx(float(array.min()))
        assert output["max"] == pytest.approx(float(array.max()))
        assert output["mean"] == pytest.approx(float(array.mean(dtype=np.float64)))
        assert data["parameter_sets"][output["params"]]["kind"] == kind
    assert data["parameter_sets"][record["outputs"]["unet"]["params"]]["sigma"] == 5.0


# --- resume and staleness -----------------------------------------------------------


def test_rerun_skips_everything(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out)
    before = fingerprints(out)
    assert len(before) == 3 * len(ALL_MASKS)
    # A touch that keeps the content is no change.
    os.utime(masks / "nuclei/nuclei_00.tif", ns=(1, 1))
    report = run(masks, out)
    assert report.exit_code == 0
    assert report.done == [] and report.failed == {}
    assert sorted(report.skipped) == ALL_MASKS
    assert fingerprints(out) == before


def test_changed_mask_is_redone_alone(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out)
    before = fingerprints(out)
    rel = "nuclei/nuclei_01.tif"
    changed = changed_nuclei(read_mask(masks / rel))
    write_instance_tif(masks / rel, changed)
    report = run(masks, out)
    assert report.done == [rel]
    assert report.reasons == {rel: dict.fromkeys(KINDS, "mask changed")}
    assert sorted(report.skipped) == [m for m in ALL_MASKS if m != rel]
    after = fingerprints(out)
    changed_files = {k for k in before if before[k] != after[k]}
    assert changed_files == {f"nuclei/nuclei_01.{kind}.tif" for kind in KINDS}
    assert_maps_equal(
        out,
        rel,
        {
            "unet": unet_weight_map(changed),
            "edge": edge_weight_map(changed != 0),
            "balance": balance_weight_map(changed != 0),
        },
    )


def test_deleted_output_is_redone_alone(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out)
    (out / "nuclei/nuclei_02.edge.tif").unlink()
    before = fingerprints(out)
    report = run(masks, out)
    assert report.done == ["nuclei/nuclei_02.tif"]
    assert report.reasons == {"nuclei/nuclei_02.tif": {"edge": "output missing"}}
    after = fingerprints(out)
    assert set(after) - set(before) == {"nuclei/nuclei_02.edge.tif"}
    assert {k: after[k] for k in before} == before
    mask = read_mask(masks / "nuclei/nuclei_02.tif")
    assert_maps_equal(out, "nuclei/nuclei_02.tif", {"edge": edge_weight_map(mask != 0)})


def test_output_changed_on_disk_is_redone(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out, glob="nuclei/*")
    tifffile.imwrite(out / "nuclei/nuclei_01.balance.tif", np.zeros((3, 3), np.float32))
    report = run(masks, out, glob="nuclei/*")
    assert report.reasons == {"nuclei/nuclei_01.tif": {"balance": "output changed on disk"}}
    mask = read_mask(masks / "nuclei/nuclei_01.tif")
    assert_maps_equal(out, "nuclei/nuclei_01.tif", {"balance": balance_weight_map(mask != 0)})


def test_parameter_change_redoes_only_affected_kind(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out)
    before = fingerprints(out)
    report = run(masks, out, sigma=3)
    assert sorted(report.done) == ALL_MASKS
    assert report.reasons == {rel: {"unet": "parameters changed"} for rel in ALL_MASKS}
    after = fingerprints(out)
    for name in before:
        if name.endswith(".unet.tif"):
            assert after[name] != before[name], name
        else:
            assert after[name] == before[name], name
    mask = read_mask(masks / "nuclei/nuclei_00.tif")
    assert_maps_equal(out, "nuclei/nuclei_00.tif", {"unet": unet_weight_map(mask, sigma=3.0)})
    # The same again is current; 3 and 3.0 are the same parameter.
    assert run(masks, out, sigma=3.0).done == []
    # Edge parameters touch the edge maps only.
    report = run(masks, out, sigma=3, edge_alpha=2)
    assert report.reasons == {rel: {"edge": "parameters changed"} for rel in ALL_MASKS}


def test_force_redoes_everything(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out)
    before = fingerprints(out)
    report = run(masks, out, force=True)
    assert sorted(report.done) == ALL_MASKS
    assert report.reasons == {rel: dict.fromkeys(KINDS, "forced") for rel in ALL_MASKS}
    after = fingerprints(out)
    assert set(after) == set(before)
    assert all(after[k] != before[k] for k in before)


def test_new_kind_adds_only_that_kind(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out, kinds=["unet"], glob="nuclei/*")
    assert {p.name.split(".")[1] for p in out.rglob("*.tif")} == {"unet"}
    before = fingerprints(out)
    report = run(masks, out, glob="nuclei/*")
    assert all(
        r == {"edge": "not generated yet", "balance": "not generated yet"}
        for r in report.reasons.values()
    )
    after = fingerprints(out)
    assert {k: after[k] for k in before} == before


# --- failures -----------------------------------------------------------------------


def make_bad_files(folder: Path, good_tif: Path) -> dict[str, str]:
    """Bad masks, each with a word its reason must contain."""
    folder.mkdir(parents=True)
    data = good_tif.read_bytes()
    (folder / "truncated.tif").write_bytes(data[: len(data) // 2])
    (folder / "random.png").write_bytes(np.random.default_rng(0).bytes(600))
    rgb = np.zeros((20, 20, 3), np.uint8)
    rgb[5:10, 5:10] = (255, 0, 0)
    Image.fromarray(rgb).save(folder / "rgb.png")
    soft = np.zeros((20, 20), np.float32)
    soft[5:10, 5:10] = 0.5
    soft[2, 2] = 1.0
    np.save(folder / "soft.npy", soft)
    np.save(folder / "empty.npy", np.zeros((20, 20), np.uint8))
    with tifffile.TiffWriter(folder / "pages.tif") as tw:
        tw.write(np.ones((20, 20), np.uint8))
        tw.write(np.ones((30, 20), np.uint8))
    return {
        "truncated.tif": "truncated",
        "random.png": "cannot",
        "rgb.png": "rgb",
        "soft.npy": "fractional",
        "empty.npy": "no foreground",
        "pages.tif": "different shapes",
    }


def test_corrupt_files_among_good_ones(masks, tmp_path):
    bad = make_bad_files(masks / "m_bad", SAMPLE_MASKS / "nuclei/nuclei_00.tif")
    out = tmp_path / "out"
    report = run(masks, out)
    assert report.exit_code == pipeline.EXIT_FAILED == 1
    assert set(report.failed) == {f"m_bad/{name}" for name in bad}
    for name, word in bad.items():
        assert word in report.failed[f"m_bad/{name}"].lower(), report.failed
    assert sorted(report.done) == ALL_MASKS
    for rel in ALL_MASKS:
        for kind in KINDS:
            assert out_file(out, rel, kind).is_file()
    assert not (out / "m_bad").exists() or not any((out / "m_bad").iterdir())
    summary = report.summary()
    for name in bad:
        assert f"FAILED m_bad/{name}: " in summary
    # A rerun retries the failures and skips the rest.
    again = run(masks, out)
    assert set(again.failed) == set(report.failed)
    assert sorted(again.skipped) == ALL_MASKS


def test_fail_fast_stops_at_first_failure(masks, tmp_path):
    # Sorted order: binary/, m_bad/, nuclei/, ...
    make_bad_files(masks / "m_bad", SAMPLE_MASKS / "nuclei/nuclei_00.tif")
    out = tmp_path / "out"
    report = run(masks, out, fail_fast=True)
    assert report.exit_code == 1
    assert report.stopped_early
    assert len(report.failed) == 1
    assert report.done == ["binary/polyp_00.png", "binary/polyp_01.png"]
    assert not (out / "nuclei").exists()
    assert "--fail-fast" in report.summary()


def test_two_masks_with_the_same_outputs(masks, tmp_path):
    mask = read_mask(masks / "binary/polyp_00.png")
    np.save(masks / "binary/polyp_00.npy", mask)  # would also write polyp_00.unet.tif
    report = run(masks, tmp_path / "out", glob="binary/*")
    assert report.exit_code == 1
    assert report.failed == {
        "binary/polyp_00.png": "its maps would overwrite those of binary/polyp_00.npy"
    }
    assert sorted(report.done) == ["binary/polyp_00.npy", "binary/polyp_01.png"]


def test_an_ome_tiff_is_named_without_ome_and_collides_with_its_plain_twin(masks, tmp_path):
    mask = read_mask(masks / "binary/polyp_00.png")
    tifffile.imwrite(masks / "binary/polyp_01.ome.tif", mask)
    report = run(masks, tmp_path / "out", glob="binary/*")
    assert report.failed == {
        "binary/polyp_01.png": "its maps would overwrite those of binary/polyp_01.ome.tif"
    }
    assert (tmp_path / "out/binary/polyp_01.unet.tif").is_file()


def test_symlink_to_file_outside_masks_is_refused(masks, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(masks / "nuclei/nuclei_00.tif", outside / "secret.tif")
    (masks / "nuclei/link.tif").symlink_to(outside / "secret.tif")
    (masks / "nuclei/inner.tif").symlink_to(masks / "nuclei/nuclei_00.tif")
    out = tmp_path / "out"
    report = run(masks, out, glob="nuclei/*")
    assert report.exit_code == 1
    assert set(report.failed) == {"nuclei/link.tif"}
    assert "symbolic link" in report.failed["nuclei/link.tif"]
    assert "outside" in report.failed["nuclei/link.tif"]
    assert not list(out.rglob("link.*"))
    assert "nuclei/inner.tif" in report.done  # a link that stays inside is fine


def test_output_folder_symlinked_outside_out_is_refused(masks, tmp_path):
    out = tmp_path / "out"
    elsewhere = tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "nuclei").symlink_to(elsewhere, target_is_directory=True)
    (masks / "nuclei/deep").mkdir()
    shutil.copy(masks / "nuclei/nuclei_00.tif", masks / "nuclei/deep/n.tif")
    report = run(masks, out, glob=["nuclei/*", "binary/*"])
    nuclei = {f"nuclei/nuclei_0{i}.tif" for i in range(4)}
    assert set(report.failed) == {*nuclei, "nuclei/deep/n.tif"}
    assert all("outside" in reason for reason in report.failed.values())
    assert list(elsewhere.iterdir()) == []
    assert sorted(report.done) == ["binary/polyp_00.png", "binary/polyp_01.png"]


# --- interruption, locking, unwritable output ------------------------------------


def interrupt_of(function, *args, **kwargs) -> GenerateInterrupted:
    """The GenerateInterrupted a call raises; a bare KeyboardInterrupt fails the test
    (rather than stopping the whole pytest session)."""
    try:
        function(*args, **kwargs)
    except GenerateInterrupted as exc:
        return exc
    except KeyboardInterrupt:
        pytest.fail("a bare KeyboardInterrupt escaped, not GenerateInterrupted")
    pytest.fail("the run was not interrupted")


def test_interrupted_run_leaves_no_temp_files_and_resumes(masks, tmp_path, monkeypatch):
    out = tmp_path / "out"
    calls = []

    def half_write(tmp, array, **kwargs):
        with open(tmp, "wb") as fh:
            fh.write(b"II*\x00" + bytes(200))
        raise KeyboardInterrupt

    def interrupting(path, array, **kwargs):
        calls.append(path)
        if len(calls) == 8:  # the second map of the third mask
            return write_tiff_atomic(path, array, writer=half_write, **kwargs)
        return write_tiff_atomic(path, array, **kwargs)

    monkeypatch.setattr(mask_jobs, "write_tiff_atomic", interrupting)
    interrupted = interrupt_of(run, masks, out)
    assert interrupted.report.done == ["binary/polyp_00.png", "binary/polyp_01.png"]
    assert temp_files(out, masks) == []
    manifest = json.loads((out / MANIFEST_NAME).read_text())  # valid JSON
    assert sorted(manifest["masks"]) == ["binary/polyp_00.png", "binary/polyp_01.png"]
    monkeypatch.undo()

    report = run(masks, out)
    assert report.exit_code == 0
    assert sorted(report.skipped) == ["binary/polyp_00.png", "binary/polyp_01.png"]
    assert sorted(report.done) == ALL_MASKS[2:]
    reference = tmp_path / "reference"
    run(masks, reference)
    for rel in ALL_MASKS:
        for kind in KINDS:
            np.testing.assert_array_equal(
                read_map(out_file(out, rel, kind)), read_map(out_file(reference, rel, kind))
            )
    assert temp_files(out) == []
    assert weightmaps.check(masks, out).exit_code == 0


def test_interrupt_while_hashing_masks(masks, tmp_path, monkeypatch):
    calls = []
    real = plan.file_sha256

    def hashing(path):
        calls.append(path)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(path)

    monkeypatch.setattr(plan, "file_sha256", hashing)
    assert interrupt_of(run, masks, tmp_path / "out").report.done == []
    assert not list((tmp_path / "out").rglob("*.tif"))


def test_locked_output_is_refused(masks, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out), pytest.raises(PipelineError, match="another weightmaps run"):
        run(masks, out)
    assert not list(out.rglob("*.tif"))
    assert not (out / MANIFEST_NAME).exists()
    # Released: the next run goes ahead.
    assert run(masks, out, glob="binary/*").exit_code == 0


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions"
)
def test_read_only_output_is_a_run_error(masks, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        with pytest.raises(PipelineError, match="cannot write"):
            run(masks, out)
        with pytest.raises(PipelineError, match="cannot"):
            run(masks, out / "sub")
    finally:
        out.chmod(0o755)


@pytest.mark.parametrize(
    ("code", "text"),
    [(errno.ENOSPC, "No space left on device"), (errno.EACCES, "Permission denied")],
)
def test_full_or_forbidden_output_stops_the_run(masks, tmp_path, monkeypatch, code, text):
    """Simulated, so it runs as root too: the first write fails for good."""
    out = tmp_path / "out"
    calls = []

    def failing(path, array, **kwargs):
        calls.append(path)
        raise OSError(code, text, str(path))

    monkeypatch.setattr(mask_jobs, "write_tiff_atomic", failing)
    with pytest.raises(PipelineError, match=text):
        run(masks, out)
    assert len(calls) == 1  # not retried for every other mask
    assert temp_files(out) == []
    json.loads((out / MANIFEST_NAME).read_text())


def test_dry_run_writes_nothing(masks, tmp_path):
    out = tmp_path / "out"
    report = run(masks, out, dry_run=True)
    assert sorted(report.done) == ALL_MASKS
    assert report.dry_run and "would compute 8" in report.summary()
    assert not out.exists()

    run(masks, out)
    before = fingerprints(out)
    manifest_bytes = (out / MANIFEST_NAME).read_bytes()
    rel = "nuclei/nuclei_03.tif"
    write_instance_tif(masks / rel, changed_nuclei(read_mask(masks / rel)))
    report = run(masks, out, dry_run=True, sigma=2)
    assert sorted(report.done) == ALL_MASKS
    assert report.reasons["nuclei/nuclei_03.tif"] == dict.fromkeys(KINDS, "mask changed")
    assert report.reasons["nuclei/nuclei_00.tif"] == {"unet": "parameters changed"}
    assert fingerprints(out) == before
    assert (out / MANIFEST_NAME).read_bytes() == manifest_bytes


# --- OUT == MASKS -------------------------------------------------------------------


def test_out_equal_to_masks(masks):
    report = run(masks, masks, separate_touching=True)
    assert report.exit_code == 0
    assert sorted(report.done) == ALL_MASKS
    assert (masks / "nuclei/nuclei_00.unet.tif").is_file()
    assert (masks / "nuclei/nuclei_00.target.tif").is_file()
    assert [m.rel for m in find_masks(masks, out_dir=masks)] == ALL_MASKS
    again = run(masks, masks, separate_touching=True)
    assert again.done == [] and again.failed == {}
    assert sorted(again.skipped) == ALL_MASKS
    assert weightmaps.check(masks, masks).exit_code == 0
    # The same folder spelled differently is still the same folder.
    assert run(Path(str(masks) + "/"), masks / ".", separate_touching=True).done == []


def test_out_inside_masks(masks):
    out = masks / "maps"
    run(masks, out)
    again = run(masks, out)
    assert again.done == [] and sorted(again.skipped) == ALL_MASKS


def test_earlier_out_inside_masks_is_not_taken_for_masks(masks, tmp_path):
    run(masks, masks / "maps", separate_touching=True)
    report = run(masks, tmp_path / "out")
    assert report.failed == {}
    assert sorted(report.done) == ALL_MASKS
    stats, failed = pipeline.survey(masks)
    assert failed == {} and sorted(stats) == ALL_MASKS


# --- check ---------------------------------------------------------------------------


def test_check_current_missing_stale(masks, tmp_path):
    out = tmp_path / "out"
    report = weightmaps.check(masks, out)
    assert report.exit_code == 1
    assert len(report.missing) == 3 * len(ALL_MASKS)

    run(masks, out)
    report = weightmaps.check(masks, out)
    assert report.exit_code == 0
    assert report.stale == [] and report.missing == []
    assert len(report.current) == 3 * len(ALL_MASKS)

    (out / "binary/polyp_00.balance.tif").unlink()
    rel = "nuclei/nuclei_01.tif"
    write_instance_tif(masks / rel, changed_nuclei(read_mask(masks / rel)))
    report = weightmaps.check(masks, out)
    assert report.exit_code == 1
    assert report.missing == [("binary/polyp_00.png", "balance", "output missing")]
    assert sorted(report.stale) == [(rel, kind, "mask changed") for kind in sorted(KINDS)]
    # check reads only: nothing was redone.
    assert not (out / "binary/polyp_00.balance.tif").exists()

    run(masks, out)
    assert weightmaps.check(masks, out).exit_code == 0
    report = weightmaps.check(masks, out, sigma=2.5)
    assert report.exit_code == 1
    assert sorted(report.stale) == sorted((m, "unet", "parameters changed") for m in ALL_MASKS)


# --- dataset-scope balance ---------------------------------------------------------


def foreground(rel: str, mask: np.ndarray) -> np.ndarray:
    return mask > 127 if rel.startswith("binary/") else mask != 0


def test_dataset_scope_balance_is_the_formula_on_summed_counts(masks, tmp_path):
    out = tmp_path / "out"
    subset = [m for m in ALL_MASKS if m.startswith(("binary/", "nuclei/"))]
    options = {"glob": ["binary/*", "nuclei/*"], "balance_scope": "dataset"}

    def expected() -> tuple[dict[str, np.ndarray], dict[int, int], dict[int, float]]:
        fgs = {rel: foreground(rel, read_mask(masks / rel)) for rel in subset}
        n1 = sum(int(fg.sum()) for fg in fgs.values())
        n0 = sum(int((~fg).sum()) for fg in fgs.values())
        total = n0 + n1
        weights = {0: total / (2 * n0), 1: total / (2 * n1)}  # N / (K n_c)
        maps = {rel: np.where(fg, weights[1], weights[0]) for rel, fg in fgs.items()}
        return maps, {0: n0, 1: n1}, weights

    report = run(masks, out, **options)
    assert report.exit_code == 0 and sorted(report.done) == subset
    maps, counts, weights = expected()
    for rel in subset:
        np.testing.assert_allclose(
            read_map(out_file(out, rel, "balance")), maps[rel], rtol=1e-6, err_msg=rel
        )
    recorded = json.loads((out / MANIFEST_NAME).read_text())["dataset"]
    assert recorded["counts"]["pixels"] == {"0": counts[0], "1": counts[1]}
    assert recorded["counts"]["images"] == len(subset)
    assert recorded["weights"]["0"] == pytest.approx(weights[0], rel=1e-12)
    assert recorded["weights"]["1"] == pytest.approx(weights[1], rel=1e-12)
    assert report.dataset["weights"] == recorded["weights"]

    # Nothing changed: nothing is redone, balance maps included.
    before = fingerprints(out)
    again = run(masks, out, **options)
    assert again.done == [] and sorted(again.skipped) == subset
    assert fingerprints(out) == before
    assert weightmaps.check(masks, out, glob=options["glob"]).exit_code == 0

    # One mask changes: every balance map follows the new counts.
    rel = "nuclei/nuclei_02.tif"
    write_instance_tif(masks / rel, changed_nuclei(read_mask(masks / rel)))
    report = weightmaps.check(masks, out, glob=options["glob"])
    assert {(m, k) for m, k, _ in report.stale} >= {(m, "balance") for m in subset}
    report = run(masks, out, **options)
    assert sorted(report.done) == subset
    for other in subset:
        if other != rel:
            assert report.reasons[other] == {"balance": "parameters changed"}, other
    after = fingerprints(out)
    for name in before:
        moved = after[name] != before[name]
        redone = name.endswith(".balance.tif") or name.startswith("nuclei/nuclei_02.")
        assert moved == redone, name
    maps, counts, weights = expected()
    for m in subset:
        np.testing.assert_allclose(
            read_map(out_file(out, m, "balance")), maps[m], rtol=1e-6, err_msg=m
        )
    recorded = json.loads((out / MANIFEST_NAME).read_text())["dataset"]
    assert recorded["counts"]["pixels"] == {"0": counts[0], "1": counts[1]}


def test_dataset_scope_with_a_failed_mask(masks, tmp_path):
    """A mask that cannot be read is left out of the counts; check agrees with generate."""
    folder = masks / "nuclei"
    good = (folder / "nuclei_00.tif").read_bytes()
    (folder / "nuclei_09.tif").write_bytes(good[:300])
    out = tmp_path / "out"
    options = {"glob": "nuclei/*", "balance_scope": "dataset"}
    report = run(masks, out, **options)
    assert list(report.failed) == ["nuclei/nuclei_09.tif"]
    assert report.dataset["counts"]["images"] == 4
    check = weightmaps.check(masks, out, glob="nuclei/*")
    assert check.stale == []
    assert {(m, k) for m, k, _ in check.missing} == {("nuclei/nuclei_09.tif", k) for k in KINDS}
    assert run(masks, out, **options).done == []

    (folder / "nuclei_09.tif").write_bytes(good)  # fixed: one more mask in the counts
    check = weightmaps.check(masks, out, glob="nuclei/*")
    assert sorted(check.stale) == [
        (f"nuclei/nuclei_0{i}.tif", "balance", "dataset changed since the maps were made")
        for i in range(4)
    ]
    report = run(masks, out, **options)
    assert report.exit_code == 0 and len(report.done) == 5
    assert report.dataset["counts"]["images"] == 5
    assert weightmaps.check(masks, out, glob="nuclei/*").exit_code == 0


def test_dataset_scope_semantic_with_ignore(masks, tmp_path):
    street = read_mask(masks / "semantic/street_00.png")
    other = np.fliplr(street).copy()
    other[:40, :60] = 2  # more of the rare class
    Image.fromarray(other).save(masks / "semantic/street_01.png")
    out = tmp_path / "out"
    report = run(
        masks,
        out,
        glob="semantic/*",
        kinds=["balance"],
        mask_type="semantic",
        ignore_value=255,
        balance_scope="dataset",
    )
    assert report.exit_code == 0 and len(report.done) == 2
    values = np.concatenate([street.ravel(), other.ravel()])
    values = values[values != 255]
    counts = np.bincount(values)
    present = np.flatnonzero(counts)
    assert present.tolist() == [0, 1, 2, 3]
    weights = np.zeros(256)
    weights[present] = values.size / (len(present) * counts[present])
    for name, mask in (("street_00", street), ("street_01", other)):
        got = read_map(out / f"semantic/{name}.balance.tif")
        np.testing.assert_allclose(got, weights[mask], rtol=1e-6)
        assert np.all(got[mask == 255] == 0)
    recorded = json.loads((out / MANIFEST_NAME).read_text())["dataset"]
    assert recorded["counts"]["pixels"] == {str(c): int(counts[c]) for c in present}


# --- manifest safety ----------------------------------------------------------------


def test_manifest_with_path_outside_out_is_refused(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out, glob="binary/*")
    victim = tmp_path / "x"
    victim.write_bytes(b"keep me")
    path = out / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["masks"]["binary/polyp_00.png"]["outputs"]["unet"]["path"] = "../x"
    path.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match="unsafe path"):
        run(masks, out, glob="binary/*")
    with pytest.raises(PipelineError, match="unsafe path"):
        weightmaps.check(masks, out)
    with pytest.raises(PipelineError, match="unsafe path"):
        maps_of(masks / "binary/polyp_00.png", out)
    assert victim.read_bytes() == b"keep me"
    # --force starts a new manifest and still never follows the old path.
    report = run(masks, out, glob="binary/*", force=True)
    assert report.exit_code == 0
    assert victim.read_bytes() == b"keep me"
    assert "../x" not in (out / MANIFEST_NAME).read_text()
    assert Manifest.load(out / MANIFEST_NAME) is not None


@pytest.mark.parametrize("bad", ["/etc/passwd", "../../x", "a/../../x"])
def test_manifest_mask_key_outside_is_refused(masks, tmp_path, bad):
    out = tmp_path / "out"
    run(masks, out, glob="binary/*")
    path = out / MANIFEST_NAME
    data = json.loads(path.read_text())
    data["masks"][bad] = data["masks"]["binary/polyp_00.png"]
    path.write_text(json.dumps(data))
    with pytest.raises(PipelineError, match="unsafe path"):
        run(masks, out, glob="binary/*")


def test_not_a_manifest_is_refused(masks, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(PipelineError, match="--force"):
        run(masks, out, glob="binary/*")
    assert run(masks, out, glob="binary/*", force=True).exit_code == 0


# --- options --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"kinds": ["unet", "nope"]},
        {"kinds": []},
        {"sigma": -1},
        {"edge_kernel": 4},
        {"mask_type": "blobs"},
        {"balance_scope": "world"},
        {"workers": 0},
        {"device": "tpu"},
        {"device": "cuda"},  # CPU-only version: refused whether or not CUDA is present
    ],
)
def test_invalid_options_raise_and_write_nothing(masks, tmp_path, options):
    out = tmp_path / "out"
    with pytest.raises(ValueError):
        run(masks, out, **options)
    assert not out.exists()


def test_workers_two_equals_workers_one(masks, tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    run(masks, one, separate_touching=True)
    report = run(masks, two, separate_touching=True, workers=2)
    assert report.exit_code == 0 and sorted(report.done) == ALL_MASKS
    files = sorted(p.relative_to(one) for p in one.rglob("*.tif"))
    assert files == sorted(p.relative_to(two) for p in two.rglob("*.tif"))
    for rel in files:
        np.testing.assert_array_equal(tifffile.imread(one / rel), tifffile.imread(two / rel))


def test_maps_of_finds_outputs_by_content(masks, tmp_path):
    out = tmp_path / "out"
    run(masks, out, glob="nuclei/*")
    found = maps_of(masks / "nuclei/nuclei_01.tif", out)
    assert found == {k: out_file(out, "nuclei/nuclei_01.tif", k).resolve() for k in KINDS}
    # A copy elsewhere with the same bytes maps to the same outputs.
    copy = tmp_path / "copy.tif"
    shutil.copy(masks / "nuclei/nuclei_01.tif", copy)
    assert maps_of(copy, out) == found


def test_separate_touching_writes_carved_target(masks, tmp_path):
    out = tmp_path / "out"
    report = run(masks, out, glob=["nuclei/*", "binary/*"], separate_touching=True)
    assert report.exit_code == 0
    for i in range(4):
        rel = f"nuclei/nuclei_0{i}.tif"
        mask = read_mask(masks / rel)
        carved = separate_instances(mask, connectivity=1)
        assert np.count_nonzero(carved != mask) > 0  # the sample has touching nuclei
        target = tifffile.imread(out_file(out, rel, "target"))
        assert target.dtype == mask.dtype
        np.testing.assert_array_equal(target, carved)
        assert_maps_equal(
            out,
            rel,
            {
                "unet": unet_weight_map(carved),
                "edge": edge_weight_map(carved != 0),
                "balance": balance_weight_map(carved != 0),
            },
        )
    # Only instance masks are carved.
    assert not list((out / "binary").glob("*.target.tif"))
    check = weightmaps.check(masks, out, glob=["nuclei/*", "binary/*"])
    assert check.exit_code == 0
    assert ("nuclei/nuclei_00.tif", "target") in check.current
    (out / "nuclei/nuclei_00.target.tif").unlink()
    again = run(masks, out, glob=["nuclei/*", "binary/*"], separate_touching=True)
    assert again.reasons == {"nuclei/nuclei_00.tif": {"target": "output missing"}}


@pytest.mark.parametrize("threads", [1, 2])
def test_map_statistics_on_threads_are_numpys_in_the_same_order(monkeypatch, threads):
    import weightmaps._shared.threads
    from weightmaps._shared.threads import kernel_threads
    from weightmaps.pipeline.mask_jobs import _map_stats

    monkeypatch.setattr(weightmaps._shared.threads, "PARALLEL_PIXELS", 1)
    array = np.random.default_rng(6).random((300, 500), np.float32) * 7 - 2
    with kernel_threads(threads):
        stats = _map_stats(array)
    assert list(stats.items()) == [
        ("min", float(array.min())),
        ("max", float(array.max())),
        ("mean", float(array.mean(dtype=np.float64))),
    ]
