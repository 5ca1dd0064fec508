"""Runs that are killed, and trees that try to make a run block, crash or write elsewhere.

Real processes and real signals where the behaviour depends on them: a run
killed by SIGKILL or SIGTERM must leave no worker behind and no lock held; a
FIFO, a symbolic link loop, an unreadable folder or a file name with a
newline gets one line and the rest of the run completes.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from conftest import random_instances
from hypothesis import given, settings
from hypothesis import strategies as st
from weightmaps.cli.main import main

import weightmaps
from weightmaps.data import StaleMapsError, WeightMapDataset
from weightmaps.io.writing import TEMP_SUFFIX, remove_leftover_temporaries
from weightmaps.pipeline import find_masks, printable
from weightmaps.pipeline.lock import LOCK_NAME, OutputLocked, output_lock
from weightmaps.pipeline.manifest import MANIFEST_NAME, Manifest, file_sha256

psutil = pytest.importorskip("psutil")

COMMAND = [sys.executable, "-m", "weightmaps.cli.main"]


def cli(*args: object):
    return CliRunner().invoke(main, [str(a) for a in args])


def small_masks(folder: Path, count: int = 3, shape=(48, 48)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for i in range(count):
        name = f"m{i}.tif"
        tifffile.imwrite(folder / name, random_instances(shape, 6, seed=i).astype(np.uint16))
        names.append(name)
    return names


def temporaries(root: Path) -> list[Path]:
    return [p for p in root.rglob(f"*{TEMP_SUFFIX}")]


def start_generate(masks: Path, out: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [*COMMAND, "generate", str(masks), str(out), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        # A test runner may start us with SIGINT ignored; the run must see Ctrl-C.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def wait_for_workers(proc: subprocess.Popen, count: int, out: Path) -> list:
    """The run's worker processes, once they exist and the first maps are written."""
    parent = psutil.Process(proc.pid)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it could be stopped"
        children = parent.children(recursive=True)
        if len(children) >= count and any(out.rglob("*.unet.tif")):
            return children
        time.sleep(0.05)
    pytest.fail("the run did not start its workers")


@pytest.fixture(scope="module")
def busy_masks(tmp_path_factory) -> Path:
    """Enough 512x512 masks that a two-worker run lasts several seconds."""
    folder = tmp_path_factory.mktemp("busy") / "masks"
    folder.mkdir()
    for i in range(48):
        labels = random_instances((512, 512), 150, radius=(4, 9), seed=i)
        tifffile.imwrite(folder / f"m{i:02d}.tif", labels.astype(np.uint16))
    return folder


def assert_gone(processes: list) -> None:
    _, alive = psutil.wait_procs(processes, timeout=15)
    alive = [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]
    assert not alive, f"processes left running: {alive}"


# --- killed runs ----------------------------------------------------------------


def test_sigkill_leaves_no_worker_and_no_lock(busy_masks, tmp_path):
    out = tmp_path / "out"
    proc = start_generate(busy_masks, out, "--workers", "2", "--device", "cpu")
    workers = wait_for_workers(proc, 2, out)
    proc.kill()
    proc.wait(timeout=30)
    assert_gone(workers)
    with output_lock(out):  # free at once: no orphan holds it
        pass
    rerun = subprocess.run(
        [*COMMAND, "generate", str(busy_masks), str(out), "--workers", "2", "--device", "cpu"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert rerun.returncode == 0, rerun.stderr + rerun.stdout
    assert "done" in rerun.stdout
    assert not temporaries(out)
    assert len(list(out.glob("*.unet.tif"))) == 48


def test_sigterm_stops_like_ctrl_c_exit_143(busy_masks, tmp_path):
    out = tmp_path / "out"
    proc = start_generate(busy_masks, out, "--workers", "2", "--device", "cpu")
    workers = wait_for_workers(proc, 2, out)
    proc.terminate()
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "terminated: finished masks are recorded" in stderr
    assert "Traceback" not in stderr
    assert_gone(workers)
    assert not temporaries(out)
    manifest = Manifest.load(out / MANIFEST_NAME)
    assert manifest is not None
    for rel, record in manifest.masks.items():  # what it recorded is on disk
        for output in record["outputs"].values():
            assert (out / output["path"]).is_file(), rel
    result = cli("generate", busy_masks, out, "--workers", 1, "--device", "cpu")
    assert result.exit_code == 0, result.output
    assert f"skipped {len(manifest.masks)}" in result.output


def test_ctrl_c_under_local_cluster_prints_no_worker_tracebacks(busy_masks, tmp_path):
    pytest.importorskip("distributed")
    out = tmp_path / "out"
    proc = start_generate(busy_masks, out, "--scheduler", "local:2", "--device", "cpu")
    wait_for_workers(proc, 2, out)
    os.killpg(proc.pid, signal.SIGINT)  # as a terminal's Ctrl-C: the whole group
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr + stdout, stderr + stdout
    assert "KeyboardInterrupt" not in stderr + stdout


def test_forked_child_does_not_keep_the_lock(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with output_lock(out):
        child = os.fork()
        if child == 0:  # pragma: no cover - the child
            time.sleep(20)
            os._exit(0)
    try:
        # The child closes its copy as it starts (a fork hook): give it a moment.
        deadline = time.monotonic() + 10
        while True:
            try:
                with output_lock(out):  # the child still runs, yet the lock is free
                    break
            except OutputLocked:
                assert time.monotonic() < deadline, "the forked child keeps the lock"
                time.sleep(0.05)
        assert os.waitpid(child, os.WNOHANG) == (0, 0)  # still running
    finally:
        os.kill(child, signal.SIGKILL)
        os.waitpid(child, 0)


def test_worker_dies_with_its_parent(tmp_path):
    """A grandchild that called die_with_parent ends when its parent is killed."""
    pid_file = tmp_path / "grandchild"
    script = f"""
import os, time
from weightmaps.pipeline.lock import die_with_parent
parent = os.getpid()
if os.fork() == 0:
    die_with_parent(parent)
    open({str(pid_file)!r}, "w").write(str(os.getpid()))
    time.sleep(60)
    os._exit(0)
time.sleep(60)
"""
    proc = subprocess.Popen([sys.executable, "-c", script])
    deadline = time.monotonic() + 30
    while not pid_file.exists() or not pid_file.read_text():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = psutil.Process(int(pid_file.read_text()))
    proc.kill()
    proc.wait()
    assert_gone([grandchild])


def test_die_with_parent_exits_when_the_parent_is_already_gone():
    # The process that started it is not its parent any more (it died first).
    script = (
        "from weightmaps.pipeline.lock import die_with_parent; die_with_parent(999999999); print(1)"
    )
    ran = subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    assert ran.returncode == 1 and ran.stdout == b""


# --- the lock file --------------------------------------------------------------


def test_lock_symlink_is_refused_and_its_target_untouched(tmp_path):
    masks = tmp_path / "masks"
    small_masks(masks)
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).symlink_to(precious)
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 3, result.output
    assert "symbolic link" in result.output
    assert precious.read_text() == "keep me\n"
    assert not list(out.glob("*.tif"))


def test_lock_fifo_is_refused_without_blocking(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / LOCK_NAME)
    with pytest.raises(OutputLocked, match="not a regular file"):
        with output_lock(out):
            pass


# --- trees that would block or crash a run -------------------------------------


def test_fifo_mask_is_skipped_with_one_line(tmp_path):
    masks = tmp_path / "masks"
    small_masks(masks)
    os.mkfifo(masks / "pipe.png")
    out = tmp_path / "out"
    runs = {
        "generate": [*COMMAND, "generate", str(masks), str(out), "--workers", "1"],
        "check": [*COMMAND, "check", str(masks), str(out)],
        "stats": [*COMMAND, "stats", str(masks)],
    }
    for name, command in runs.items():
        ran = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert ran.returncode == 1, (name, ran.stdout, ran.stderr)
        text = ran.stdout + ran.stderr
        assert "pipe.png" in text and "FIFO" in text, (name, text)
        assert "Traceback" not in text
    assert len(list(out.glob("*.unet.tif"))) == 3


def test_file_sha256_refuses_a_fifo_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(OSError, match="not a regular file"):
        file_sha256(tmp_path / "pipe.png")


@pytest.mark.parametrize("link", ["loop", "dangling"])
def test_symlink_loop_or_dangling_link_is_one_line_everywhere(tmp_path, link):
    masks = tmp_path / "masks"
    small_masks(masks)
    bad = masks / "bad.png"
    bad.symlink_to("bad.png" if link == "loop" else "missing.png")
    out = tmp_path / "out"
    result = cli("generate", masks, out, "--workers", 1)
    assert result.exit_code == 1, result.output
    assert "bad.png" in result.output and "Traceback" not in result.output
    assert len(list(out.glob("*.unet.tif"))) == 3
    for command in (["check", masks, out], ["stats", masks]):
        result = cli(*command)
        assert result.exit_code == 1, (command, result.output)
        assert "bad.png" in result.output
        assert result.exception is None or isinstance(result.exception, SystemExit)
    with pytest.raises(StaleMapsError, match="bad.png"):
        WeightMapDataset(masks, out)
    with pytest.warns(UserWarning, match="bad.png"):
        dataset = WeightMapDataset(masks, out, verify=False)
    assert len(dataset) == 3


def test_unreadable_folder_is_a_failure_not_a_silent_skip(tmp_path, monkeypatch):
    masks = tmp_path / "masks"
    small_masks(masks)
    small_masks(masks / "locked", count=1)
    real_scandir = os.scandir

    def scandir(path="."):
        if Path(path).name == "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)  # root ignores permissions: simulate
    found = {m.rel: m.error for m in find_masks(masks)}
    assert found["locked"] == "cannot read folder: Permission denied"
    report = weightmaps.generate(masks, tmp_path / "out", workers=1)
    assert report.exit_code == 1
    assert report.failed == {"locked": "cannot read folder: Permission denied"}
    assert len(report.done) == 3


def test_newline_in_a_file_name_keeps_messages_on_one_line(tmp_path):
    masks = tmp_path / "masks"
    small_masks(masks, count=1)
    tifffile.imwrite(masks / "two\nlines.tif", random_instances((32, 32), 4).astype(np.uint16))
    (masks / "bad\nname.png").write_bytes(b"not a png")
    (masks / "esc\x1b[31m.png").write_bytes(b"not a png")
    out = tmp_path / "out"
    ran = subprocess.run(
        [*COMMAND, "generate", str(masks), str(out), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1
    failed = [line for line in (ran.stdout + ran.stderr).splitlines() if "FAILED" in line]
    assert len(failed) == 2  # two masks, each once (the log; the summary counts them)
    assert all("bad\\nname.png" in line or "esc\\x1b[31m.png" in line for line in failed)
    assert "\x1b" not in ran.stdout + ran.stderr
    assert (out / "two\nlines.unet.tif").is_file()
    check = subprocess.run(
        [*COMMAND, "check", str(masks), str(out)], capture_output=True, text=True, timeout=120
    )
    *lines, total = check.stdout.splitlines()
    assert all(line.startswith(("missing", "stale")) for line in lines), check.stdout
    assert "1 current" in total or "current," in total


def test_printable_escapes_only_control_characters():
    assert printable("a\nb\tc\x1b") == "a\\nb\\tc\\x1b"
    assert printable("cellules_été/µm.tif") == "cellules_été/µm.tif"


# --- leftovers of a killed run ---------------------------------------------------


def test_leftover_temporaries_are_removed_under_the_lock(tmp_path):
    masks = tmp_path / "masks"
    small_masks(masks)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    stale = [out / f".m0.unet.tif.x1y2{TEMP_SUFFIX}", out / "sub" / f".a.tif.zz{TEMP_SUFFIX}"]
    for path in stale:
        path.write_bytes(b"half a tiff")
    resumable = out / f".v.unet.zarr{TEMP_SUFFIX}"
    resumable.mkdir()
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    planted = out / f".planted{TEMP_SUFFIX}"
    planted.symlink_to(outside)
    result = cli("generate", masks, out, "--workers", 1, "-v")
    assert result.exit_code == 0, result.output
    assert "removed 2 temporary files left by an interrupted run" in result.output
    assert not any(path.exists() for path in stale)
    assert resumable.is_dir()  # a volume's resumable array is kept
    assert planted.is_symlink() and outside.read_text() == "keep"
    assert remove_leftover_temporaries(out) == 0


@pytest.mark.parametrize("planted", ["fifo", "link out"])
def test_zarr_volume_with_a_fifo_or_a_link_out_is_refused(tmp_path, planted):
    zarr = pytest.importorskip("zarr")
    masks = tmp_path / "masks"
    small_masks(masks, count=1)
    volume = zarr.create_array(
        store=str(masks / "v.zarr"), shape=(8, 32, 32), chunks=(4, 16, 16), dtype="uint16"
    )
    volume[:] = random_instances((8, 32, 32), 20).astype(np.uint16)
    chunk = next(
        p for p in (masks / "v.zarr").rglob("*") if p.is_file() and p.parent.name != "v.zarr"
    )
    chunk.unlink()
    if planted == "fifo":
        os.mkfifo(chunk)
    else:
        secret = tmp_path / "secret"
        secret.write_bytes(b"x" * 64)
        chunk.symlink_to(secret)
    ran = subprocess.run(
        [*COMMAND, "generate", str(masks), str(tmp_path / "out"), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ran.returncode == 1, ran.stderr
    failed = [line for line in ran.stderr.splitlines() if "FAILED v.zarr" in line]
    assert failed and "refused" in failed[0], ran.stderr
    assert (tmp_path / "out" / "m0.unet.tif").is_file()


# --- a real full disk, and no write outside OUT whatever the tree ---------------------


def test_file_size_limit_stops_the_run_exit_3_without_partial_files(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: writes fail with EFBIG past the limit."""
    import resource

    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(3):
        labels = random_instances((512, 512), 120, seed=i).astype(np.uint16)
        tifffile.imwrite(masks / f"m{i}.tif", labels)
    out = tmp_path / "out"

    def limit_file_size():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a kill
        resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, 20_000))

    ran = subprocess.run(
        [*COMMAND, "generate", str(masks), str(out), "--workers", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=limit_file_size,
    )
    assert ran.returncode == 3, ran.stdout + ran.stderr
    assert "Traceback" not in ran.stderr
    assert "File too large" in ran.stderr
    assert not temporaries(out)
    for path in out.glob("*.tif"):  # whatever was written is whole
        tifffile.imread(path)


def _snapshot(root: Path) -> dict[str, tuple]:
    entries = {}
    for path in sorted(root.rglob("*")):
        info = path.lstat()
        content = b""
        if path.is_file() and not path.is_symlink():
            content = path.read_bytes()
        link = os.readlink(path) if path.is_symlink() else None
        entries[path.relative_to(root).as_posix()] = (
            info.st_mode,
            info.st_size,
            info.st_mtime_ns,
            content,
            link,
        )
    return entries


_PLANTS_IN_MASKS = ("loop", "dangling", "file out", "dir out", "zarr out", "fifo", "corrupt")
_PLANTS_IN_OUT = ("lock", "folder", "map", "manifest", "tampered")


def _plant_tree(root: Path, mask_folders, masks_plants, out_plants, out_is_masks) -> Path:
    outside = root / "outside"
    (outside / "dir").mkdir(parents=True)
    (outside / "victim.txt").write_text("victim")
    tifffile.imwrite(outside / "dir" / "inner.tif", random_instances((24, 24), 3).astype(np.uint8))
    masks = root / "masks"
    for i, folder in enumerate(mask_folders):
        (masks / folder).mkdir(parents=True, exist_ok=True)
        labels = random_instances((24, 24), 4, seed=i).astype(np.uint16)
        tifffile.imwrite(masks / folder / f"m{i}.tif", labels)
    masks.mkdir(exist_ok=True)
    for plant in masks_plants:
        if plant == "loop":
            (masks / "loop.png").symlink_to("loop.png")
        elif plant == "dangling":
            (masks / "dangling.tif").symlink_to(root / "nowhere.tif")
        elif plant == "file out":
            (masks / "out_file.tif").symlink_to(outside / "dir" / "inner.tif")
        elif plant == "dir out":
            (masks / "linked").symlink_to(outside / "dir")
        elif plant == "zarr out":
            (masks / "linked.zarr").symlink_to(outside / "dir")
        elif plant == "fifo":
            os.mkfifo(masks / "pipe.tif")
        elif plant == "corrupt":
            (masks / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    out = masks if out_is_masks else root / "out"
    out.mkdir(exist_ok=True)
    for plant in out_plants:
        if plant == "lock":
            (out / LOCK_NAME).symlink_to(outside / "victim.txt")
        elif plant == "folder" and mask_folders and mask_folders[0] and not out_is_masks:
            (out / mask_folders[0].split("/")[0]).symlink_to(outside / "dir")
        elif plant == "map":
            (out / "m0.unet.tif").unlink(missing_ok=True)
            (out / "m0.unet.tif").symlink_to(outside / "victim.txt")
        elif plant == "manifest":
            (out / MANIFEST_NAME).unlink(missing_ok=True)
            (out / MANIFEST_NAME).symlink_to(outside / "victim.txt")
        elif plant == "tampered":
            record = {"sha256": "0", "outputs": {"unet": {"path": "../outside/victim.txt"}}}
            manifest = {"format": "weightmaps-manifest/1", "masks": {"m0.tif": record}}
            (out / MANIFEST_NAME).unlink(missing_ok=True)
            (out / MANIFEST_NAME).write_text(__import__("json").dumps(manifest))
    return out


@given(
    mask_folders=st.lists(st.sampled_from(["", "a", "a/b", "c"]), min_size=0, max_size=3),
    masks_plants=st.sets(st.sampled_from(_PLANTS_IN_MASKS)),
    out_plants=st.sets(st.sampled_from(_PLANTS_IN_OUT)),
    out_is_masks=st.booleans(),
    separate=st.booleans(),
)
@settings(max_examples=30, deadline=None)
def test_no_run_writes_outside_out(mask_folders, masks_plants, out_plants, out_is_masks, separate):
    import tempfile

    from weightmaps.pipeline import PipelineError

    with tempfile.TemporaryDirectory() as name:
        root = Path(name)
        out = _plant_tree(root, mask_folders, masks_plants, out_plants, out_is_masks)
        masks = root / "masks"
        outside_before = _snapshot(root / "outside")
        masks_before = {
            k: v for k, v in _snapshot(masks).items() if not out_is_masks or ".unet." not in k
        }
        for run in ("generate", "generate again", "check", "stats"):
            try:
                if run.startswith("generate"):
                    weightmaps.generate(masks, out, workers=1, separate_touching=separate)
                elif run == "check":
                    weightmaps.check(masks, out)
                else:
                    from weightmaps.pipeline import survey

                    survey(masks)
            except PipelineError:
                pass  # refused as a whole (an unsafe lock or manifest): fine
        assert _snapshot(root / "outside") == outside_before
        masks_after = _snapshot(masks)
        for rel, entry in masks_before.items():
            if out_is_masks and (stat.S_ISDIR(entry[0]) or rel == MANIFEST_NAME):
                continue  # OUT is MASKS: its folders and manifest do change
            assert masks_after.get(rel) == entry, rel


def test_dataset_skips_a_zarr_volume_with_a_warning(tmp_path):
    zarr = pytest.importorskip("zarr")
    masks = tmp_path / "masks"
    small_masks(masks, count=2)
    volume = zarr.create_array(
        store=str(masks / "v.zarr"), shape=(4, 16, 16), chunks=(4, 16, 16), dtype="uint16"
    )
    volume[:] = random_instances((4, 16, 16), 5).astype(np.uint16)
    out = tmp_path / "out"
    assert weightmaps.generate(masks, out, workers=1, mask_type="instance").exit_code == 0
    for verify in (True, False):
        with pytest.warns(UserWarning, match="v.zarr: a zarr volume"):
            dataset = WeightMapDataset(masks, out, verify=verify)
        assert dataset.paths == ["m0.tif", "m1.tif"]
