"""``weightmaps compile``: after it, masks of the dtypes and types it covers compile nothing."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parents[1]

# Masks unlike the made-up ones of weightmaps.warmup (other sizes, round
# objects, other ids), each type and dtype on one thread and on two, in memory
# and through generate; the child prints the seconds numba spent compiling.
_USE_THE_CACHE = """
    import numpy as np, tifffile
    from numba.core import event
    from skimage.draw import disk
    import weightmaps
    from weightmaps._shared.threads import kernel_threads

    rng = np.random.default_rng(11)
    labels = np.zeros((530, 610), np.int64)
    for i in range(1, 121):
        y, x = rng.integers(0, 530), rng.integers(0, 610)
        labels[disk((y, x), rng.uniform(4, 12), shape=labels.shape)] = i * 7
    cases = [
        (labels.astype(np.uint16), "instance"),
        (labels.astype(np.int32), "instance"),
        (labels.astype(np.uint32), "instance"),
        (labels, "instance"),
        (labels > 0, "binary"),
        ((labels % 5).astype(np.uint8), "semantic"),
    ]
    spent = [0.0]
    with event.install_timer("numba:compile", lambda s: spent.__setitem__(0, spent[0] + s)):
        for mask, mask_type in cases:
            for threads in (1, 2):
                with kernel_threads(threads):
                    weightmaps.compute_maps(
                        mask, weightmaps.MapSettings(mask_type=mask_type), kinds="unet,edge,balance"
                    )
        tifffile.imwrite("masks/a.tif", labels.astype(np.uint16))
        report = weightmaps.generate("masks", "out", workers=1, progress=False)
        assert report.exit_code == 0, report.summary()
    print(f"compiled {spent[0]:.3f}")
"""


def _run(args: list[str], cwd: Path, cache: Path) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "NUMBA_CACHE_DIR": str(cache),
    }
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
    )


def test_after_compile_the_first_masks_compile_nothing(tmp_path):
    cache = tmp_path / "numba_cache"  # empty: a fresh install
    (tmp_path / "masks").mkdir()
    compiled = _run(
        ["-m", "weightmaps", "compile", "--kinds", "unet,edge,balance", "--ndim", "2"],
        tmp_path,
        cache,
    )
    assert compiled.returncode == 0, compiled.stderr
    assert compiled.stdout.startswith("kernels ready in ")
    assert "0.0 s of it compiling" not in compiled.stdout  # it did compile

    used = _run(["-c", textwrap.dedent(_USE_THE_CACHE)], tmp_path, cache)
    assert used.returncode == 0, used.stderr
    assert used.stdout.strip().splitlines()[-1] == "compiled 0.000"

    again = _run(["-m", "weightmaps", "compile", "--kinds", "edge", "--ndim", "2"], tmp_path, cache)
    assert again.returncode == 0, again.stderr
    assert "(0.0 s of it compiling" in again.stdout


def test_compile_refuses_what_it_cannot_compile():
    from weightmaps.cli.main import main

    from weightmaps.warmup import warm_up

    result = CliRunner().invoke(main, ["compile", "--kinds", "nope"])
    assert result.exit_code == 2 and "choose from" in result.output
    result = CliRunner().invoke(main, ["compile", "--ndim", "4"])
    assert result.exit_code == 2
    with pytest.raises(ValueError, match="ndims must be 2 and/or 3"):
        warm_up("edge", ndims=(2, 4))
