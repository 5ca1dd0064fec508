"""Issue 14, "quiet surprises": what the tool did is said, and the API means what it reads."""

from __future__ import annotations

import os
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
    mask[8:28, 8:28] = 1
    mask[8:28, 34:54] = 2
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
