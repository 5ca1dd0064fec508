"""Instance ids at the ends of the integer range: stats and ``weightmaps generate``.

A mask with uint64 ids near 2**63 and 2**64 - 1 must give exactly what the
same mask numbered 1..n gives (see huge_ids.py for why these ids). The
kernels are tested on such ids on every backend in tests/kernels.
"""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from click.testing import CliRunner
from huge_ids import HUGE_2D, HUGE_3D, HUGE_IDS, ranked
from weightmaps.cli.main import main

from weightmaps.settings import MapSettings
from weightmaps.stats import mask_stats, touching_pairs


def test_the_masks_hold_every_troublesome_id():
    assert set(np.unique(HUGE_2D).tolist()) == {0, *HUGE_IDS}
    assert set(np.unique(HUGE_3D).tolist()) == {0, *HUGE_IDS}
    assert np.uint64(2**64 - 1).astype(np.int64) == -1  # the kernels' "no label"


def test_stats_count_huge_ids_as_small_ones():
    small = ranked(HUGE_2D)
    assert touching_pairs(HUGE_2D) == touching_pairs(small) > 0
    settings = MapSettings(mask_type="instance")
    got, want = mask_stats(HUGE_2D, settings), mask_stats(small, settings)
    assert (got.instances, got.touching_pairs) == (want.instances, want.touching_pairs)
    assert got.instances == len(HUGE_IDS)
    assert got.counts == want.counts


# --------------------------------------------------------------------------
# weightmaps generate on uint64 mask files


def _generate(masks, out, *args):
    result = CliRunner().invoke(
        main,
        ["generate", str(masks), str(out), "--workers", "1", "--mask-type", "instance", *args],
    )
    assert result.exit_code == 0, result.output
    return out


@pytest.mark.parametrize(
    "args",
    [
        ("--separate-touching",),
        ("--separate-touching", "--device", "torch:cpu"),
        ("--separate-touching", "--chunked-above", "0", "--chunks", "16"),
    ],
    ids=["numpy", "torch", "chunked"],
)
def test_generate_uint64_files(tmp_path, args):
    small = ranked(HUGE_2D)
    for name, labels in (("big", HUGE_2D), ("small", small)):
        folder = tmp_path / name
        folder.mkdir()
        tifffile.imwrite(folder / "a.tif", labels)
        np.save(folder / "b.npy", labels)
    big = _generate(tmp_path / "big", tmp_path / "out_big", *args)
    ref = _generate(tmp_path / "small", tmp_path / "out_small", *args)
    chunked = "--chunked-above" in args
    for stem, chunked_file in (("a", chunked), ("b", False)):
        for kind in ("unet", "edge", "balance", "target"):
            if chunked_file:
                zarr = pytest.importorskip("zarr")
                got = np.asarray(zarr.open(str(big / f"{stem}.{kind}.zarr"), mode="r"))
                want = np.asarray(zarr.open(str(ref / f"{stem}.{kind}.zarr"), mode="r"))
            else:
                got = tifffile.imread(big / f"{stem}.{kind}.tif")
                want = tifffile.imread(ref / f"{stem}.{kind}.tif")
            if kind == "target":  # the carved target keeps the file's own ids
                assert got.dtype == np.uint64
                np.testing.assert_array_equal(got, np.where(want != 0, HUGE_2D, 0))
            else:
                assert got.dtype == np.float32
                assert got.tobytes() == want.tobytes(), (stem, kind)
