"""``weightmaps generate / check / stats / preview`` end to end, with exit codes.

Exit codes (README, cli/main.py): 0 all done, 1 some masks failed (check:
maps missing or stale), 2 usage error, 3 the run cannot proceed, 130 Ctrl-C.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import ALL_MASKS, SAMPLE_MASKS
from PIL import Image
from weightmaps.cli.main import main

import weightmaps
from weightmaps import read_mask, unet_weight_map
from weightmaps.io.writing import TEMP_SUFFIX, write_tiff_atomic
from weightmaps.pipeline import mask_jobs
from weightmaps.pipeline.lock import output_lock
from weightmaps.pipeline.manifest import MANIFEST_NAME
from weightmaps.preview import panel_details, render_preview

KINDS = ("unet", "edge", "balance")


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def map_files(out: Path) -> list[str]:
    return sorted(p.relative_to(out).as_posix() for p in out.rglob("*.tif"))


def expected_files(rels=ALL_MASKS, kinds=KINDS) -> list[str]:
    return sorted(f"{rel.rsplit('.', 1)[0]}.{kind}.tif" for rel in rels for kind in kinds)


def assert_no_traceback(result) -> None:
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception


# --- generate --------------------------------------------------------------------


def test_generate_end_to_end(masks, tmp_path):
    out = tmp_path / "out"
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "done 8, skipped 0 (current), failed 0" in result.stdout
    assert map_files(out) == expected_files()
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert sorted(manifest["masks"]) == ALL_MASKS
    mask = read_mask(masks / "nuclei/nuclei_02.tif")
    np.testing.assert_array_equal(
        tifffile.imread(out / "nuclei/nuclei_02.unet.tif"), unet_weight_map(mask)
    )

    result = cli("generate", masks, out, "--workers", 1, "-q")
    assert result.exit_code == 0
    assert "done 0, skipped 8 (current), failed 0" in result.stderr
    assert result.stdout == ""


def test_generate_options_reach_the_maps(masks, tmp_path):
    out = tmp_path / "out"
    result = cli(
        "generate",
        masks,
        out,
        "--workers",
        1,
        "--glob",
        "nuclei/*",
        "--kinds",
        "unet,edge",
        "--w0",
        4,
        "--sigma",
        2.5,
        "--separate-touching",
        "-v",
    )
    assert result.exit_code == 0, result.output
    rels = [r for r in ALL_MASKS if r.startswith("nuclei/")]
    assert map_files(out) == expected_files(rels, ("unet", "edge", "target"))
    assert "nuclei/nuclei_00.tif: instance, wrote unet, edge, target" in result.stderr
    mask = read_mask(masks / "nuclei/nuclei_00.tif")
    carved = weightmaps.separate_instances(mask)
    np.testing.assert_array_equal(
        tifffile.imread(out / "nuclei/nuclei_00.unet.tif"),
        unet_weight_map(carved, w0=4.0, sigma=2.5),
    )


def test_generate_subprocess_two_workers(masks, tmp_path):
    """The one real process: the installed module, --workers 2, quiet."""
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "weightmaps.cli.main",
            "generate",
            str(masks),
            str(out),
            "--workers",
            "2",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert "done 8" in proc.stderr
    assert map_files(out) == expected_files()
    reference = tmp_path / "reference"
    assert cli("generate", masks, reference, "--workers", 1, "-q").exit_code == 0
    for name in expected_files():
        np.testing.assert_array_equal(
            tifffile.imread(out / name), tifffile.imread(reference / name), err_msg=name
        )


@pytest.mark.parametrize(
    "args",
    [
        ["--kinds", "unet,nope"],
        ["--sigma", "-1"],
        ["--sigma", "abc"],
        ["--edge-kernel", "4"],
        ["--mask-type", "blobs"],
        ["--balance-scope", "world"],
        ["--class-weights", "1,2,3"],
        ["--workers", "0"],
        ["--device", "cuda"],
        ["--device", "tpu"],
        ["--no-such-option"],
    ],
)
def test_generate_usage_errors_exit_2(masks, tmp_path, args):
    out = tmp_path / "out"
    result = cli("generate", masks, out, *args)
    assert result.exit_code == 2, result.output
    assert_no_traceback(result)
    assert not out.exists()


def test_generate_missing_masks_folder_exit_2(tmp_path):
    result = cli("generate", tmp_path / "nowhere", tmp_path / "out")
    assert result.exit_code == 2
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["generate", "check"])
def test_missing_out_is_named(masks, command):
    for args in ([masks], []):
        result = cli(command, *args)
        assert result.exit_code == 2
        assert "Missing argument 'OUT'" in result.output


def test_device_cuda_fails_clearly(masks, tmp_path):
    result = cli("generate", masks, tmp_path / "out", "--device", "cuda")
    assert result.exit_code == 2
    assert "cuda" in result.output.lower() and "cpu" in result.output


def make_bad_files(folder: Path) -> list[str]:
    folder.mkdir(parents=True)
    data = (SAMPLE_MASKS / "nuclei/nuclei_01.tif").read_bytes()
    (folder / "cut.tif").write_bytes(data[: len(data) // 3])
    (folder / "noise.png").write_bytes(np.random.default_rng(5).bytes(300))
    rgb = np.zeros((12, 12, 3), np.uint8)
    rgb[3:6, 3:6] = (0, 200, 0)
    Image.fromarray(rgb).save(folder / "colour.png")
    np.save(folder / "soft.npy", np.full((12, 12), 0.25, np.float32))
    return ["cut.tif", "noise.png", "colour.png", "soft.npy"]


def test_generate_corrupt_files_exit_1(masks, tmp_path):
    bad = make_bad_files(masks / "m_bad")
    out = tmp_path / "out"
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 1
    assert_no_traceback(result)
    assert "failed 4" in result.stdout
    for name in bad:
        # Each failure with its path and a reason, once, on stderr as it happens.
        lines = [line for line in result.output.splitlines() if f"m_bad/{name}: " in line]
        assert len(lines) == 1, result.output
        assert lines[0].startswith("FAILED") and f"m_bad/{name}: " in result.stderr
        assert len(lines[0].split(": ", 1)[1]) > 5
    assert "m_bad" not in result.stdout
    # Advice in the command's words, not Python's.
    assert "pass --channel or --rgb-rule" in result.stderr
    assert "name --mask-type binary to threshold" in result.stderr
    assert "channel=" not in result.output and "mask_type=" not in result.output
    assert map_files(out) == expected_files()


def test_generate_fail_fast(masks, tmp_path):
    make_bad_files(masks / "m_bad")
    out = tmp_path / "out"
    result = cli("generate", masks, out, "--workers", 1, "--fail-fast")
    assert result.exit_code == 1
    assert "failed 1" in result.stdout and "--fail-fast" in result.stdout
    assert map_files(out) == expected_files(ALL_MASKS[:2])


def test_generate_locked_exit_3(masks, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out):
        result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 3
    assert_no_traceback(result)
    assert "another weightmaps run" in result.stderr
    assert f"pid {os.getpid()}" in result.stderr
    assert map_files(out) == []


@pytest.mark.skipif(
    not hasattr(os, "geteuid") or os.geteuid() == 0, reason="root ignores permissions"
)
def test_generate_read_only_out_exit_3(masks, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = cli("generate", masks, out, "--workers", 1)
    finally:
        out.chmod(0o755)
    assert result.exit_code == 3
    assert_no_traceback(result)
    assert "cannot write" in result.stderr


def test_generate_disk_full_exit_3(masks, tmp_path, monkeypatch):
    def full(path, array, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(mask_jobs, "write_tiff_atomic", full)
    out = tmp_path / "out"
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 3
    assert_no_traceback(result)
    assert "No space left on device" in result.stderr


def test_generate_unsafe_manifest_exit_3(masks, tmp_path):
    out = tmp_path / "out"
    assert cli("generate", masks, out, "--workers", 1, "--glob", "binary/*").exit_code == 0
    victim = tmp_path / "x"
    victim.write_text("keep")
    data = json.loads((out / MANIFEST_NAME).read_text())
    data["masks"]["binary/polyp_01.png"]["outputs"]["edge"]["path"] = "../x"
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    for command in ("generate", "check"):
        result = cli(command, masks, out)
        assert result.exit_code == 3, (command, result.output)
        assert_no_traceback(result)
        assert "unsafe path" in result.stderr
    assert victim.read_text() == "keep"


def test_generate_interrupted_exit_130(masks, tmp_path, monkeypatch):
    calls = []

    def interrupting(path, array, **kwargs):
        calls.append(path)
        if len(calls) == 5:
            raise KeyboardInterrupt
        return write_tiff_atomic(path, array, **kwargs)

    monkeypatch.setattr(mask_jobs, "write_tiff_atomic", interrupting)
    out = tmp_path / "out"
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 130
    assert "interrupted" in result.stderr and "run again to resume" in result.stderr
    assert not list(out.rglob(f"*{TEMP_SUFFIX}"))
    monkeypatch.undo()
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 0
    assert "done 7, skipped 1" in result.stdout


def test_generate_dry_run_writes_nothing(masks, tmp_path):
    out = tmp_path / "out"
    result = cli("generate", masks, out, "--dry-run")
    assert result.exit_code == 0
    assert "would compute 8" in result.stdout
    assert not out.exists()
    assert cli("generate", masks, out, "--workers", 1, "-q").exit_code == 0
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*")}
    result = cli("generate", masks, out, "--dry-run", "--sigma", 2)
    assert result.exit_code == 0
    assert "would compute 8" in result.stdout
    assert "nuclei/nuclei_00.tif: unet: parameters changed" in result.stderr
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*")} == before


def test_generate_out_equal_to_masks(masks):
    result = cli("generate", masks, masks, "--workers", 1, "--separate-touching")
    assert result.exit_code == 0, result.output
    assert "done 8" in result.stdout
    result = cli("generate", masks, masks, "--workers", 1, "--separate-touching")
    assert result.exit_code == 0
    assert "done 0, skipped 8" in result.stdout
    result = cli("stats", masks, "--json")
    assert json.loads(result.stdout)["masks"] == 8  # maps in the folder are not masks
    result = cli("check", masks, masks)
    assert result.exit_code == 0 and "0 stale, 0 missing" in result.stdout


# --- check --------------------------------------------------------------------------


# --- masks from public datasets (issue 14) ------------------------------------------


def _disc(value: int = 255, size: int = 96) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    inside = (yy - size / 2) ** 2 + (xx - size / 3) ** 2 < (size / 4) ** 2
    return np.where(inside, value, 0).astype(np.uint8)


def test_generate_jpeg_masks_thresholded_and_said(tmp_path):
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    Image.fromarray(_disc()).save(masks / "polyp.jpg", quality=75)
    result = cli("generate", masks, out, "--workers", 1, "-v")
    assert result.exit_code == 0, result.output
    assert "polyp.jpg: binary (noise thresholded: foreground > 127.5)" in result.stderr
    assert "note: 1 binary mask with noise (a JPEG's) thresholded, foreground > 127.5" in (
        result.stdout
    )
    record = json.loads((out / MANIFEST_NAME).read_text())["masks"]["polyp.jpg"]
    assert record["mask_type"] == "binary" and record["threshold"] == 127.5
    assert map_files(out) == expected_files(["polyp.jpg"])
    # A rerun finds them current; check agrees.
    assert "skipped 1" in cli("generate", masks, out, "--workers", 1).stdout
    assert cli("check", masks, out).exit_code == 0
    # The device path (torch on the CPU here) reads and records it the same.
    pytest.importorskip("torch")
    result = cli("generate", masks, tmp_path / "out_torch", "--device", "torch:cpu")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "out_torch" / MANIFEST_NAME).read_text())
    assert manifest["masks"]["polyp.jpg"]["threshold"] == 127.5


def test_generate_rgb_jpeg_masks_with_a_channel_or_rule(tmp_path):
    # Some polyp datasets store their masks as RGB JPEGs.
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(_disc()).convert("RGB").save(masks / "polyp.jpg", quality=85)
    result = cli("generate", masks, tmp_path / "out", "--workers", 1)
    assert result.exit_code == 1
    assert "RGB image (3 channels); pass --channel or --rgb-rule" in result.stderr
    result = cli("generate", masks, tmp_path / "out", "--workers", 1, "--channel", 0)
    assert result.exit_code == 0, result.output
    assert "thresholded, foreground > 127.5" in result.stdout
    result = cli("generate", masks, tmp_path / "rule", "--workers", 1, "--rgb-rule", "bright")
    assert result.exit_code == 0, result.output


def test_generate_grey_level_label_set_is_semantic(tmp_path):
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    em = np.full((96, 96), 255, np.uint8)
    for i, level in enumerate([0, 32, 64, 96, 128, 160, 192, 224]):
        row, col = divmod(i, 4)
        em[8 + row * 44 : 38 - i + row * 44, 4 + col * 23 : 22 + col * 23] = level
    Image.fromarray(em).save(masks / "em.png")
    result = cli("generate", masks, out, "--workers", 1, "-v", "--kinds", "balance")
    assert result.exit_code == 0, result.output
    assert "em.png: semantic" in result.stderr
    balance = tifffile.imread(out / "em.balance.tif")
    assert len(np.unique(balance)) == 9  # one weight per class, none merged


def test_generate_refuses_the_raw_image_beside_its_mask(tmp_path):
    masks, out = tmp_path / "masks", tmp_path / "out"
    masks.mkdir()
    labels = np.zeros((64, 64), np.uint16)
    for i in range(20):
        labels[2 + (i // 5) * 15 : 12 + (i // 5) * 15, 2 + (i % 5) * 12 : 10 + (i % 5) * 12] = i + 1
    rng = np.random.default_rng(0)
    image = (400 + 30 * labels + rng.normal(0, 25, labels.shape)).astype(np.uint16)
    tifffile.imwrite(masks / "mask2d.tif", labels)
    tifffile.imwrite(masks / "img2d.tif", image)
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 1
    line = [ln for ln in result.stderr.splitlines() if "img2d.tif" in ln]
    assert len(line) == 1 and "looks like an intensity image" in line[0]
    assert "--glob" in line[0] and "--mask-type instance" in line[0]
    assert map_files(out) == expected_files(["mask2d.tif"])
    # --glob picks the masks.
    result = cli("generate", masks, tmp_path / "out2", "--workers", 1, "--glob", "mask*")
    assert result.exit_code == 0, result.output


def test_generate_nothing_to_do_exits_non_zero_without_out(tmp_path):
    empty, out = tmp_path / "empty", tmp_path / "out"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a mask")
    result = cli("generate", empty, out)
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        f"error: no masks (.tif, .tiff, .png, .npy, .jpg, .jpeg, .bmp, .gif, .zarr) found "
        f"under {empty}"
    ]
    assert not out.exists()
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(_disc(1)).save(masks / "a.png")
    result = cli("generate", masks, out, "--glob", "b*", "--glob", "c*")
    assert result.exit_code == 3
    assert result.stderr.splitlines() == [
        f"error: no mask under {masks} matches the pattern 'b*' or 'c*'"
    ]
    assert not out.exists()
    # An OUT already there keeps its manifest as it was (none here).
    out.mkdir()
    assert cli("generate", masks, out, "--glob", "b*").exit_code == 3
    assert not (out / MANIFEST_NAME).exists()
    assert cli("check", masks, out, "--glob", "b*").exit_code == 3
    with pytest.raises(weightmaps.pipeline.PipelineError, match="no mask"):
        weightmaps.generate(empty, out)


def test_generate_single_and_several_mask_files(tmp_path):
    masks, out = tmp_path / "masks", tmp_path / "out"
    (masks / "sub").mkdir(parents=True)
    Image.fromarray(_disc(1)).save(masks / "a.png")
    Image.fromarray(_disc(255)).save(masks / "sub" / "b.png")
    result = cli("generate", masks / "a.png", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert map_files(out) == expected_files(["a.png"])
    result = cli("generate", masks / "a.png", masks / "sub" / "b.png", out, "--workers", 1)
    assert result.exit_code == 0, result.output
    assert "done 1, skipped 1" in result.stdout
    assert map_files(out) == expected_files(["a.png", "b.png"])
    result = cli("check", masks / "a.png", masks / "sub" / "b.png", out)
    assert result.exit_code == 0 and "6 current" in result.stdout
    # The folder form is unchanged.
    result = cli("generate", masks, tmp_path / "out2", "--workers", 1)
    assert map_files(tmp_path / "out2") == expected_files(["a.png", "sub/b.png"])
    # Two files of one name would write the same maps: the second one fails.
    Image.fromarray(_disc(1)).save(masks / "sub" / "a.png")
    result = cli("generate", masks / "a.png", masks / "sub" / "a.png", tmp_path / "out3")
    assert result.exit_code == 1 and "would overwrite" in result.stderr
    # Python: a file or a list.
    report = weightmaps.generate([masks / "a.png"], tmp_path / "out4", workers=1)
    assert report.done == ["a.png"]


def test_check(masks, tmp_path):
    out = tmp_path / "out"
    result = cli("check", masks, out)
    assert result.exit_code == 1
    assert "0 current, 0 stale, 24 missing" in result.stdout

    assert cli("generate", masks, out, "--workers", 1, "-q").exit_code == 0
    result = cli("check", masks, out)
    assert result.exit_code == 0, result.output
    assert "24 current, 0 stale, 0 missing" in result.stdout
    result = cli("check", masks, out, "-v")
    assert "current  volume/nuclei3d_00.tif [balance]" in result.stdout

    # A parameter other than the one the maps were made with: stale.
    result = cli("check", masks, out, "--sigma", 3)
    assert result.exit_code == 1
    assert "16 current, 8 stale, 0 missing" in result.stdout
    assert "stale    nuclei/nuclei_03.tif [unet]: parameters changed" in result.stdout

    (out / "semantic/street_00.edge.tif").unlink()
    path = masks / "nuclei/nuclei_01.tif"
    mask = read_mask(path)
    mask[:5, :5] = mask.max() + 1
    tifffile.imwrite(path, mask)
    result = cli("check", masks, out)
    assert result.exit_code == 1
    assert "missing  semantic/street_00.png [edge]: output missing" in result.stdout
    for kind in KINDS:
        assert f"stale    nuclei/nuclei_01.tif [{kind}]: mask changed" in result.stdout
    assert "20 current, 3 stale, 1 missing" in result.stdout

    assert cli("generate", masks, out, "--workers", 1, "-q").exit_code == 0
    assert cli("check", masks, out).exit_code == 0


# --- stats --------------------------------------------------------------------------


def neighbour_pairs(instances: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of distinct nonzero ids that are face neighbours, by brute force."""
    pairs = set()
    for axis in range(instances.ndim):
        a = np.moveaxis(instances, axis, 0)[:-1].ravel()
        b = np.moveaxis(instances, axis, 0)[1:].ravel()
        keep = (a != b) & (a != 0) & (b != 0)
        for x, y in zip(a[keep].tolist(), b[keep].tolist(), strict=True):
            pairs.add((min(x, y), max(x, y)))
    return pairs


def test_stats_on_sample_nuclei():
    folder = SAMPLE_MASKS / "nuclei"
    result = cli("stats", folder, "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    arrays = {p.name: read_mask(p) for p in sorted(folder.glob("*.tif"))}
    n0 = sum(int(np.count_nonzero(m == 0)) for m in arrays.values())
    n1 = sum(int(np.count_nonzero(m)) for m in arrays.values())
    total = n0 + n1
    assert stats["masks"] == 4 and stats["mask_types"] == {"instance": 4}
    assert stats["classes"]["0"]["pixels"] == n0
    assert stats["classes"]["1"]["pixels"] == n1
    assert stats["classes"]["1"]["frequency"] == pytest.approx(n1 / total)
    assert stats["classes"]["0"]["inverse_weight"] == pytest.approx(total / (2 * n0))
    assert stats["classes"]["1"]["inverse_weight"] == pytest.approx(total / (2 * n1))
    assert stats["classes"]["1"]["beta_weight"] == pytest.approx(n0 / total)
    assert stats["classes"]["1"]["enet_weight"] == pytest.approx(1 / np.log(1.02 + n1 / total))
    assert stats["instances"] == sum(len(np.unique(m)) - 1 for m in arrays.values())
    assert stats["touching_pairs"] == sum(len(neighbour_pairs(m)) for m in arrays.values())
    assert stats["touching_pairs"] > 0
    for name, mask in arrays.items():
        assert stats["per_mask"][name]["pixels"] == {
            "0": int(np.count_nonzero(mask == 0)),
            "1": int(np.count_nonzero(mask)),
        }
        assert stats["per_mask"][name]["touching_pairs"] == len(neighbour_pairs(mask))
    assert stats["failed"] == {}


def test_stats_on_sample_semantic_with_ignore():
    folder = SAMPLE_MASKS / "semantic"
    result = cli("stats", folder, "--json", "--ignore-value", 255, "--mask-type", "semantic")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    mask = read_mask(folder / "street_00.png")
    counts = np.bincount(mask[mask != 255].ravel())
    assert {c: v["pixels"] for c, v in stats["classes"].items()} == {
        str(c): int(n) for c, n in enumerate(counts) if n
    }
    n = counts.sum()
    for c, pixels in enumerate(counts):
        assert stats["classes"][str(c)]["frequency"] == pytest.approx(pixels / n)
        assert stats["classes"][str(c)]["inverse_weight"] == pytest.approx(n / (4 * pixels))


def test_stats_text_on_all_sample_data():
    result = cli("stats", SAMPLE_MASKS)
    assert result.exit_code == 0, result.output
    assert "8 masks (2 binary, 5 instance, 1 semantic)" in result.stdout
    assert "inverse w" in result.stdout


def test_stats_touching_pairs_hand_made(tmp_path):
    mask = np.array(
        [
            [1, 1, 2, 0, 3, 3],
            [1, 1, 2, 0, 3, 3],
            [0, 0, 0, 0, 0, 6],
            [4, 4, 5, 5, 0, 6],
            [4, 4, 5, 5, 0, 0],
            [0, 0, 0, 0, 7, 0],
        ],
        np.uint16,
    )
    # 1-2, 3-6 and 4-5 share a side; 5 and 7 only a corner.
    assert neighbour_pairs(mask) == {(1, 2), (3, 6), (4, 5)}
    np.save(tmp_path / "tiny.npy", mask)
    result = cli("stats", tmp_path, "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["mask_types"] == {"instance": 1}
    assert stats["instances"] == 7
    assert stats["touching_pairs"] == 3
    assert stats["classes"]["1"]["pixels"] == int(np.count_nonzero(mask))
    result = cli("stats", tmp_path)
    assert "instances: 7, touching instance pairs: 3" in result.stdout


def test_stats_reports_bad_files_exit_1(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png at all")
    np.save(tmp_path / "ok.npy", np.eye(8, dtype=np.uint8))
    result = cli("stats", tmp_path, "--json")
    assert result.exit_code == 1
    stats = json.loads(result.stdout)
    assert stats["masks"] == 1 and list(stats["failed"]) == ["bad.png"]


# --- preview ------------------------------------------------------------------------


def test_preview_from_generated_maps(masks, tmp_path):
    out = tmp_path / "out"
    assert cli("generate", masks, out, "--workers", 1, "-q").exit_code == 0
    for rel in ("nuclei/nuclei_00.tif", "volume/nuclei3d_00.tif"):
        png = tmp_path / "previews" / (Path(rel).stem + ".png")
        result = cli("preview", masks / rel, "--maps", out, "-o", png)
        assert result.exit_code == 0, result.output
        assert "(unet, edge, balance)" in result.stdout
        with Image.open(png) as img:
            assert img.format == "PNG" and img.mode == "RGB"
            picture = np.asarray(img)
        stem = rel.rsplit(".", 1)[0]
        maps = {kind: tifffile.imread(out / f"{stem}.{kind}.tif") for kind in KINDS}
        # Each panel names the parameters the run recorded for it.
        params = {
            k: {**weightmaps.MapSettings().kind_params(k), "channel": None, "rgb_rule": None}
            for k in KINDS
        }
        expected = render_preview(
            read_mask(masks / rel),
            maps,
            title=Path(rel).name,
            details=panel_details(maps, params),
        )
        np.testing.assert_array_equal(picture, expected)
        two = render_preview(read_mask(masks / rel), {k: maps[k] for k in KINDS[:2]})
        assert picture.shape[1] > two.shape[1]  # a third map panel
    assert not list((tmp_path / "previews").glob(f"*{TEMP_SUFFIX}"))


def test_preview_computes_maps_without_out(tmp_path):
    png = tmp_path / "p.png"
    mask_path = SAMPLE_MASKS / "binary/polyp_01.png"
    result = cli("preview", mask_path, "-o", png)
    assert result.exit_code == 0, result.output
    with Image.open(png) as img:
        picture = np.asarray(img)
    mask = read_mask(mask_path)
    settings = weightmaps.MapSettings()
    maps = weightmaps.compute_maps(mask, settings).maps
    details = panel_details(maps, {k: settings.kind_params(k) for k in maps})
    assert details["unet"] == "w0=10 sigma=5"
    expected = render_preview(mask, maps, title=mask_path.name, details=details)
    np.testing.assert_array_equal(picture, expected)


def test_preview_without_maps_in_out_exit_1(tmp_path):
    (tmp_path / "empty_out").mkdir()
    result = cli(
        "preview",
        SAMPLE_MASKS / "binary/polyp_00.png",
        "--maps",
        tmp_path / "empty_out",
        "-o",
        tmp_path / "p.png",
    )
    assert result.exit_code == 1
    assert "no maps" in result.stderr
    assert not (tmp_path / "p.png").exists()


def test_stats_on_a_jpeg_file_and_nothing_found(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(_disc()).save(masks / "polyp.jpg", quality=80)
    # A file as MASKS; a JPEG read as generate reads it (binary, noise cut away).
    result = cli("stats", masks / "polyp.jpg", "--json")
    assert result.exit_code == 0, result.output
    stats = json.loads(result.stdout)
    assert stats["mask_types"] == {"binary": 1} and sorted(stats["classes"]) == ["0", "1"]
    result = cli("stats", masks, "--glob", "*.png")
    assert result.exit_code == 3 and result.stderr.startswith("error: no mask under")
    # Several files, as generate takes them.
    Image.fromarray(_disc()).save(masks / "other.png")
    result = cli("stats", masks / "polyp.jpg", masks / "other.png", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["mask_types"] == {"binary": 2}
    assert sorted(json.loads(result.stdout)["per_mask"]) == ["other.png", "polyp.jpg"]


def test_a_file_named_like_an_option_keeps_its_name_in_messages(tmp_path):
    """The library's advice (sigma=2) becomes an option (--sigma 2); a mask
    named sigma=3.tif, or one in a folder w0=5, is named as it is."""
    masks = tmp_path / "masks"
    (masks / "w0=5").mkdir(parents=True)
    (masks / "sigma=3.tif").write_bytes(b"II*\x00not a tiff")
    (masks / "w0=5" / "m.tif").write_bytes(b"II*\x00not a tiff")
    result = cli("generate", masks, tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert "sigma=3.tif" in result.output and "w0=5/m.tif" in result.output
    assert "--sigma" not in result.output and "--w0" not in result.output
