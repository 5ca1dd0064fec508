"""Issue 14, "quiet surprises": what the tool did is said, and the API means what it reads."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from weightmaps.cli.main import main

import weightmaps
from weightmaps.settings import PARAMS

ROOT = Path(__file__).resolve().parents[1]


def _env() -> dict[str, str]:
    """This checkout first on the path, for a child started in another folder."""
    path = os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])
    return {**os.environ, "PYTHONPATH": path}


def _python(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _squares(path: Path, shape=(64, 64)) -> None:
    mask = np.zeros(shape, np.uint16)
    h, w = shape[-2:]
    mask[..., h // 8 : h // 2, w // 8 : w * 7 // 16] = 1
    mask[..., h // 8 : h // 2, w * 9 // 16 : w * 7 // 8] = 2
    path.parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(path, mask)


# --- the command line -----------------------------------------------------------


def test_check_help_names_no_default_it_does_not_use():
    import click

    command = main.commands["check"]
    helps = {
        opt.name: opt.get_help_record(click.Context(command))[1] for opt in command.params
    }
    for name in PARAMS:
        assert helps[name].endswith("[default: as last generated].") and helps[name].count(
            "[default"
        ) == 1, helps[name]
    text = CliRunner().invoke(main, ["check", "--help"]).output
    # generate's defaults (w0 10, mask type auto, pixel units) are not check's.
    assert "[default: 10]" not in text
    assert "default: auto" not in text
    assert "pixel units" not in text


@pytest.mark.parametrize("command", ["generate", "check", "stats"])
def test_glob_is_marked_repeatable(command):
    text = CliRunner().invoke(main, [command, "--help"], terminal_width=200).output
    line = next(ln for ln in text.splitlines() if ln.strip().startswith("--glob"))
    assert "--glob PATTERN" in line and "repeat the option" in line


def test_python_dash_m_runs_the_command(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "weightmaps", "--help"],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Usage: weightmaps ")
    assert "generate" in done.stdout and "check" in done.stdout


def test_import_weightmaps_does_not_run_main(tmp_path):
    done = _python(
        "import sys, weightmaps; print('weightmaps.__main__' in sys.modules, "
        "'weightmaps.cli' in sys.modules)",
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["False", "False"]


# --- the Python API -------------------------------------------------------------


def test_generate_takes_one_kind_as_a_string(tmp_path):
    _squares(tmp_path / "masks" / "a.tif")
    report = weightmaps.generate(tmp_path / "masks", tmp_path / "out", kinds="unet", workers=1)
    assert report.exit_code == 0 and report.done == ["a.tif"]
    assert sorted(p.name for p in (tmp_path / "out").glob("*.tif")) == ["a.unet.tif"]
    report = weightmaps.check(tmp_path / "masks", tmp_path / "out", kinds="unet")
    assert report.exit_code == 0 and report.current == [("a.tif", "unet")]


def test_compute_maps_takes_kinds_as_text():
    mask = np.zeros((32, 32), np.uint16)
    mask[4:12, 4:12] = 1
    settings = weightmaps.MapSettings()
    assert list(weightmaps.compute_maps(mask, settings, kinds="edge").maps) == ["edge"]
    assert list(weightmaps.compute_maps(mask, settings, kinds="unet,edge").maps) == [
        "unet",
        "edge",
    ]


@pytest.mark.parametrize("name", ["unet_weight_map", "edge_weight_map", "balance_weight_map"])
def test_a_3d_tensor_to_a_one_mask_kernel_warns(name):
    torch = pytest.importorskip("torch")
    from weightmaps.torch_kernels import VolumeTensorWarning

    batch = torch.zeros((4, 16, 16), dtype=torch.int64)
    batch[:, 2:6, 2:6] = 1
    batch[:, 2:6, 8:12] = 2
    for kernel in (getattr(weightmaps, name), getattr(weightmaps.torch_kernels, name)):
        with pytest.warns(VolumeTensorWarning, match=f"{name}_batch"):
            kernel(batch)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            kernel(batch[0])  # a 2-D tensor: one mask, nothing to say
            kernel(batch.numpy())  # numpy is never a training batch by accident


def test_chunked_without_dask_names_the_extra(tmp_path):
    done = _python(
        """
        import sys
        sys.modules["dask"] = None  # as if dask were not installed
        import weightmaps.chunked
        """,
        tmp_path,
    )
    assert done.returncode != 0
    assert "pip install 'weightmaps[dask]'" in done.stderr.splitlines()[-1]


def test_a_volume_without_dask_fails_with_one_line(tmp_path):
    _squares(tmp_path / "masks" / "a.tif")
    done = _python(
        """
        import sys
        sys.modules["dask"] = None  # as if dask were not installed
        import weightmaps
        report = weightmaps.generate("masks", "out", chunked_above=100, workers=1)
        print(report.failed["a.tif"])
        """,
        tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == (
        "chunked volumes need the dask extra (dask is not installed): "
        "pip install 'weightmaps[dask]'"
    )


# --- throughput -------------------------------------------------------------------


def _report(done: int, skipped: int, elapsed: float, compile_seconds: float = 0.0):
    from weightmaps.pipeline.reports import GenerateReport

    return GenerateReport(
        masks_dir="m",
        out_dir="o",
        done=[f"{i}.png" for i in range(done)],
        skipped=[f"s{i}.png" for i in range(skipped)],
        elapsed=elapsed,
        compile_seconds=compile_seconds,
    )


def test_an_all_skipped_run_reports_no_rate():
    line = _report(0, 8, 0.3).summary().splitlines()[0]
    assert line == "done 0, skipped 8 (current), failed 0 in 0.3 s"


def test_a_slow_mask_is_reported_in_seconds_per_mask():
    line = _report(1, 0, 95.2).summary().splitlines()[0]
    assert line.endswith("in 95.2 s (95.2 s per mask)")
    assert "0.0" not in line


def test_compiling_is_told_apart_from_the_rate():
    # 4 masks in 5 s, 4 s of which compiling: 4 masks/s after, not 0.8.
    line = _report(4, 0, 5.0, compile_seconds=4.0).summary().splitlines()[0]
    assert line.endswith(
        "in 5.0 s, about 4.0 s of it compiling kernels "
        "(first run; `weightmaps compile` does it ahead) (4.0 masks/s)"
    )
    assert "0.8" not in line
    # A fast run keeps masks per second, and a second of compiling is not worth a word.
    assert _report(40, 0, 2.0, 0.5).summary().splitlines()[0].endswith("(20.0 masks/s)")


def test_a_warning_interrupted_while_said_is_still_counted():
    """SIGTERM inside the warning's log line (seen in a killed run): the mask is
    recorded first, and the summary never meets a kind with no mask."""
    from weightmaps.pipeline.generation import _warn

    report = _report(1, 0, 1.0)

    def log(level, text):
        raise KeyboardInterrupt  # the signal lands while the line is written

    with pytest.raises(KeyboardInterrupt):
        _warn(report, "a.png", {"edge": "window too large"}, log)
    assert report.warnings == {"edge": {"a.png": "window too large"}}
    assert "warning: edge maps of a.png: window too large" in report.summary()
    report.warnings["unet"] = {}  # as an older report could hold
    report.summary()


def test_compile_timer_counts_compilation_not_running():
    import numba

    from weightmaps.pipeline.workers import compile_timer

    @numba.njit
    def twice(x):  # new here: compiled on first call, never cached
        return 2 * x

    with compile_timer() as spent:
        twice(1.0)
    assert spent[0] > 0
    with compile_timer() as again:
        twice(2.0)  # compiled already
    assert again[0] == 0


def test_generate_reports_the_compile_time_its_workers_measured(tmp_path, monkeypatch):
    from weightmaps.pipeline import workers

    _squares(tmp_path / "masks" / "a.tif")
    _squares(tmp_path / "masks" / "b.tif")

    @contextlib.contextmanager
    def slow_compiler():
        yield [3.0]  # as if the job had compiled kernels for 3 s

    monkeypatch.setattr(workers, "compile_timer", slow_compiler)
    report = weightmaps.generate(tmp_path / "masks", tmp_path / "out", workers=1)
    assert report.compile_seconds == 6.0
    assert "of it compiling kernels" in report.summary()


def _bench_scale():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import bench_scale
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    return bench_scale


def test_bench_scale_says_noise_rather_than_negative_figures():
    bench = _bench_scale()
    # Over few masks the run over 2N masks may take less time and CPU than over N.
    noisy = [{40: (5.0, 1.2), 80: (4.8, 1.1)}, {40: (5.1, 1.3), 80: (5.0, 1.0)}]
    assert bench._marginal_rate(40, noisy) is None
    client = bench._client_row(40, noisy, None)["value"]
    assert "noise" in client and "-" not in client.split("(")[0]
    engine = bench._engine_row(40, None, None)
    assert "noise" in engine["value"] and engine["ok"] == "-"
    # Clean differences keep their figures.
    clean = [{40: (5.0, 1.0), 80: (9.0, 1.4)}]
    assert bench._marginal_rate(40, clean) == 10.0
    assert bench._client_row(40, clean, 10.0)["value"].startswith("10.0 ms")


# --- spacing: said and recorded as used ------------------------------------------------

VOLUME = ROOT / "sample_data" / "masks" / "volume" / "nuclei3d_00.tif"  # spacing (2, 0.5, 0.5)


def _record(out: Path, rel: str) -> dict:
    return json.loads((out / "weightmaps.json").read_text())["masks"][rel]


def test_the_manifest_records_the_spacing_the_distances_used(tmp_path):
    from weightmaps.io import read_spacing_unit

    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "v.tif").write_bytes(VOLUME.read_bytes())
    pixels = weightmaps.generate(masks, tmp_path / "pixels", kinds="unet", workers=1)
    physical = weightmaps.generate(
        masks, tmp_path / "physical", kinds="unet", workers=1, spacing="auto"
    )
    assert pixels.exit_code == physical.exit_code == 0
    # Computed in pixels: recorded as such, the file's pixel size beside it.
    assert _record(tmp_path / "pixels", "v.tif")["spacing"] is None
    assert _record(tmp_path / "pixels", "v.tif")["file_spacing"] == [2.0, 0.5, 0.5]
    assert _record(tmp_path / "physical", "v.tif")["spacing"] == [2.0, 0.5, 0.5]
    # The maps lie on the mask's grid either way: their files carry its spacing.
    for out in ("pixels", "physical"):
        spacing, _ = read_spacing_unit(tmp_path / out / "v.unet.tif")
        assert spacing == pytest.approx((2.0, 0.5, 0.5))


def test_a_zarr_map_made_in_pixels_still_shows_its_grid(tmp_path):
    pytest.importorskip("dask")
    from weightmaps.map_files import read_map_file

    masks = tmp_path / "masks"
    masks.mkdir()
    (masks / "v.tif").write_bytes(VOLUME.read_bytes())
    report = weightmaps.generate(masks, tmp_path / "out", kinds="unet", chunked_above=100)
    assert report.exit_code == 0, report.summary()
    assert _record(tmp_path / "out", "v.tif")["spacing"] is None
    assert _record(tmp_path / "out", "v.tif")["file_spacing"] == [2.0, 0.5, 0.5]
    # A zarr map carries no spacing of its own: the manifest's grid is shown.
    assert read_map_file(tmp_path / "out" / "v.unet.zarr").spacing == (2.0, 0.5, 0.5)


def test_spacing_auto_without_spacing_in_the_file_says_so(tmp_path):
    masks = tmp_path / "masks"
    for name in ("a.tif", "b.tif"):
        _squares(masks / name, shape=(6, 32, 32))  # tifffile records no spacing
    logged: list[tuple[int, str]] = []
    report = weightmaps.generate(
        masks,
        tmp_path / "out",
        kinds="unet",
        workers=1,
        spacing="auto",
        log=lambda level, message: logged.append((level, message)),
    )
    assert report.pixel_units == ["a.tif", "b.tif"]
    assert (
        "note: 2 masks (e.g. a.tif) record no spacing in the file: --spacing auto "
        "computed their distances in pixels" in report.summary()
    )
    warned = [m for level, m in logged if level >= 30]
    assert warned == [
        "a.tif: its file records no spacing; --spacing auto computes its distances in "
        "pixels (said once; the summary counts them)"
    ]
    assert any("b.tif" in m and "distances in pixels" in m for _, m in logged)
    assert _record(tmp_path / "out", "a.tif")["spacing"] is None
    assert "file_spacing" not in _record(tmp_path / "out", "a.tif")


def test_maps_without_distances_say_nothing_of_spacing(tmp_path):
    _squares(tmp_path / "masks" / "a.tif", shape=(6, 32, 32))
    report = weightmaps.generate(
        tmp_path / "masks", tmp_path / "out", kinds="edge", workers=1, spacing="auto"
    )
    assert report.pixel_units == [] and "spacing" not in report.summary()


# --- the edge window against the objects, and what stats suggests ------------------------


def _disks(radius: float, shape=(200, 200), spacing: int = 40) -> np.ndarray:
    """Apart, away from the border, ids 1..n: objects of a known diameter 2 * radius."""
    rows, cols = np.indices(shape)
    mask = np.zeros(shape, np.uint16)
    centres = range(spacing // 2, shape[0] - spacing // 4, spacing)
    for i, (y, x) in enumerate((y, x) for y in centres for x in centres):
        mask[(rows - y) ** 2 + (cols - x) ** 2 <= radius**2] = i + 1
    return mask


def _edge_warnings(tmp_path: Path, mask: np.ndarray, **options) -> dict[str, str]:
    masks = tmp_path / "masks"
    shutil.rmtree(masks, ignore_errors=True)
    masks.mkdir()
    tifffile.imwrite(masks / "m.tif", mask)
    out = tmp_path / f"out{len(list(tmp_path.glob('out*')))}"
    report = weightmaps.generate(masks, out, kinds="edge", workers=1, **options)
    assert report.exit_code == 0, report.summary()
    return report.warnings.get("edge", {})


def test_the_default_window_on_small_objects_warns(tmp_path):
    said = _edge_warnings(tmp_path, _disks(radius=6.0))  # 12 px across, k = 31
    assert list(said) == ["m.tif"]
    assert "k = 31 covers 25 of 25 objects whole (median diameter 12 px)" in said["m.tif"]
    assert said["m.tif"].endswith("try --edge-kernel 7")
    # The window it suggests leaves the objects a core at weight 1: nothing to say.
    assert _edge_warnings(tmp_path, _disks(radius=6.0), edge_kernel=7) == {}


@pytest.mark.parametrize("threads", [1, 3])
def test_the_window_warning_counts_objects_alike_on_threads(monkeypatch, threads):
    """25 small disks without a core pixel and two 50 px squares with one; the
    count is split over threads however small the mask."""
    import weightmaps._shared.threads
    from weightmaps._shared.threads import kernel_threads

    monkeypatch.setattr(weightmaps._shared.threads, "PARALLEL_PIXELS", 1)
    mask = np.zeros((200, 320), np.uint16)
    mask[:, :200] = _disks(radius=6.0)
    mask[20:70, 230:280] = 26
    mask[120:170, 230:280] = 27
    with kernel_threads(threads):
        result = weightmaps.compute_maps(mask, weightmaps.MapSettings(), kinds="edge")
    assert "k = 31 covers 25 of 27 objects whole (median diameter 12 px)" in result.warnings["edge"]


def test_the_default_window_on_large_objects_says_nothing(tmp_path):
    assert _edge_warnings(tmp_path, _disks(radius=60.0, shape=(512, 512), spacing=170)) == {}


def test_a_thin_volume_warns_of_its_depth(tmp_path):
    volume = np.zeros((24, 160, 160), np.uint16)
    volume[4:20, 20:140, 20:140] = 1  # large across, but 24 slices deep
    said = _edge_warnings(tmp_path, volume)
    assert "k = 31 spans more than half of the mask's 24 slices along axis 0" in said["m.tif"]
    assert said["m.tif"].endswith("try --edge-kernel 11 or less")
    assert _edge_warnings(tmp_path, volume, edge_kernel=11) == {}


def test_a_thin_chunked_volume_warns_too(tmp_path):
    pytest.importorskip("dask")
    volume = np.zeros((24, 160, 160), np.uint16)
    volume[4:20, 20:140, 20:140] = 1
    said = _edge_warnings(tmp_path, volume, chunked_above=100)
    assert "24 slices along axis 0" in said["m.tif"]


def test_generate_says_the_window_warning_once_and_sums_it_up(tmp_path):
    masks = tmp_path / "masks"
    masks.mkdir()
    for name in ("a.tif", "b.tif"):
        tifffile.imwrite(masks / name, _disks(radius=6.0))
    command = ["generate", str(masks), str(tmp_path / "out"), "--workers", "1"]
    result = CliRunner().invoke(main, command)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert sum("k = 31 covers" in line for line in lines) == 2  # once as it comes, once summed
    assert any(line.startswith("  warning: edge maps of 2 masks, e.g. a.tif: ") for line in lines)


def test_stats_suggests_sigma_and_k_from_the_objects(tmp_path):
    from weightmaps.settings import MapSettings
    from weightmaps.stats import mask_stats, object_summary

    for radius in (6.0, 12.0, 25.0):
        mask = _disks(radius, shape=(400, 400), spacing=80)
        objects = object_summary([mask_stats(mask)])
        assert objects["measured"] == 25 and objects["on_border_left_out"] == 0
        assert objects["median_diameter"] == pytest.approx(2 * radius, rel=0.05)
        # The rule: sigma a quarter of the diameter, k about half of it, odd.
        sigma, k = objects["suggested"]["sigma"], objects["suggested"]["edge_kernel"]
        assert sigma == pytest.approx(radius / 2, abs=0.5)
        assert k % 2 == 1 and abs(k - radius) <= 2
        # And generate has nothing to say of the window it suggests, but of the default.
        assert weightmaps.compute_maps(mask, MapSettings(edge_kernel=k)).warnings == {}
        if radius < 20:
            assert "edge" in weightmaps.compute_maps(mask, MapSettings()).warnings


def test_stats_prints_the_suggestions(tmp_path):
    tifffile.imwrite(tmp_path / "m.tif", _disks(radius=12.0))
    result = CliRunner().invoke(main, ["stats", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "object diameter: median 23.7 px (10-90 %: 23.7-23.7, 25 objects)" in result.output
    assert "suggested for them: --sigma 6 (a quarter of the median diameter), --edge-kernel 13" in (
        result.output
    )
    as_json = CliRunner().invoke(main, ["stats", str(tmp_path), "--json"])
    assert json.loads(as_json.output)["objects"]["suggested"] == {"sigma": 6.0, "edge_kernel": 13}


def test_the_window_warning_on_the_device_path_too(tmp_path):
    pytest.importorskip("torch")
    said = _edge_warnings(tmp_path, _disks(radius=6.0), device="torch:cpu")
    assert "k = 31 covers 25 of 25 objects whole" in said["m.tif"]


def test_ignored_pixels_are_no_object_of_the_window_warning(tmp_path):
    mask = _disks(radius=6.0)
    mask[:, :4] = 999  # unlabelled strip: no object
    said = _edge_warnings(tmp_path, mask, ignore_value=999, mask_type="instance")
    assert "covers 25 of 25 objects whole" in said["m.tif"]
