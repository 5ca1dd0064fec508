"""What the SHA-256 of every written map costs, against the step it is part of, in one run.

Run with ``python benchmarks/bench_digests.py`` (``make bench``). On ~200
generated 512x512 instance masks (uint16 TIFF, zlib, ~150 nuclei each), maps
of all three kinds (float32, zlib):

- generate: writing a map with its digest (``write_tiff_atomic(hasher=...)``,
  which reads the temporary file back) against writing it without, on the
  same arrays; the difference per map, and three maps' worth as a share of
  ``generate``'s wall time per mask;
- ``WeightMapDataset.__getitem__`` with ``verify=True`` (read the bytes, hash
  them, decode from memory) against ``verify=False`` (tifffile reads the path);
- ``check`` with ``hash_maps=True`` against ``hash_maps=False`` (sizes only):
  hashing every map against the rest of check (finding and hashing the masks,
  reading the manifest, stat of every map).

Every figure is CPU time of this process, the best of a few repeats with the
file cache warm (a cold cache adds reading the maps from disk to check's
hashing). Reported, no target: they are what decided that check hashes maps
by default and generate does not.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import tifffile
from bench_kernels import nuclei, report, row

import weightmaps
from weightmaps.data import WeightMapDataset
from weightmaps.io.writing import write_tiff_atomic
from weightmaps.pipeline import check, generate

KINDS = ("unet", "edge", "balance")


def best(function: Callable[[], object], repeat: int = 3) -> float:
    """Least CPU time of this process (all its threads) over ``repeat`` calls.

    CPU rather than wall time: on a shared machine the wall time of a step of
    a few milliseconds varies more than the digest costs.
    """
    times = []
    for _ in range(repeat):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return min(times)


def make_masks(folder: Path, count: int) -> None:
    folder.mkdir()
    for i in range(count):
        labels = nuclei((512, 512), 150, radius=9.0, seed=i).astype(np.uint16)
        tifffile.imwrite(folder / f"mask_{i:04d}.tif", labels, compression="zlib")


def run(count: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        masks, out = Path(tmp) / "masks", Path(tmp) / "out"
        make_masks(masks, count)
        start = time.process_time()
        report_ = generate(masks, out, kinds=KINDS, workers=1, progress=False)
        t_generate = time.process_time() - start
        assert report_.exit_code == 0, report_.summary()
        files = sorted(out.glob("*.tif"))
        n_maps = len(files)

        # generate: write with and without the digest, the same arrays.
        arrays = [tifffile.imread(path) for path in files[: min(n_maps, 60)]]
        scratch = Path(tmp) / "scratch"
        scratch.mkdir()

        def write(with_digest: bool) -> None:
            for i, array in enumerate(arrays):
                hasher = hashlib.sha256() if with_digest else None
                write_tiff_atomic(scratch / f"{i}.tif", array, hasher=hasher)

        plain = best(lambda: write(False)) / len(arrays)
        hashed = best(lambda: write(True)) / len(arrays)
        digest_only = best(
            lambda: [hashlib.sha256(p.read_bytes()) for p in sorted(scratch.glob("*.tif"))]
        ) / len(arrays)
        per_mask = t_generate / count
        rows.append(
            row(
                "generate: digest per map (write with / without)",
                f"{1e3 * (hashed - plain):.2f} ms ({1e3 * hashed:.1f} vs {1e3 * plain:.1f} ms)",
                "reported",
                None,
                f"read back + SHA-256 alone {1e3 * digest_only:.2f} ms",
            )
        )
        rows.append(
            row(
                "generate: 3 digests / CPU time per mask (3 kinds)",
                f"{3 * digest_only / per_mask:.1%} ({1e3 * per_mask:.0f} ms per mask)",
                "reported",
                None,
            )
        )

        # WeightMapDataset.__getitem__, all three kinds.
        checked = WeightMapDataset(masks, out, kinds=KINDS, verify=True)
        unchecked = WeightMapDataset(masks, out, kinds=KINDS, verify=False)
        n_items = min(count, 100)
        t_checked = best(lambda: [checked[i] for i in range(n_items)]) / n_items
        t_unchecked = best(lambda: [unchecked[i] for i in range(n_items)]) / n_items
        map_bytes = [p.read_bytes() for p in files[:n_maps]]
        t_hash = best(lambda: [hashlib.sha256(b) for b in map_bytes]) / n_maps
        rows.append(
            row(
                "Dataset item (3 maps): verify=True / verify=False",
                f"{t_checked / t_unchecked:.2f}x ({1e3 * t_checked:.1f} vs "
                f"{1e3 * t_unchecked:.1f} ms)",
                "reported",
                None,
                f"SHA-256 of one map's bytes {1e3 * t_hash:.2f} ms = "
                f"{3 * t_hash / t_checked:.1%} of an item",
            )
        )

        # check: every map hashed, or sizes only.
        t_sizes = best(lambda: check(masks, out, hash_maps=False))
        t_hashes = best(lambda: check(masks, out, hash_maps=True))
        total = sum(len(b) for b in map_bytes) / 2**20
        rows.append(
            row(
                "check: hash_maps=True / hash_maps=False",
                f"{t_hashes / t_sizes:.2f}x ({t_hashes:.2f} vs {t_sizes:.2f} s)",
                "reported",
                None,
                f"{n_maps} maps, {total:.0f} MiB; hashing {t_hashes - t_sizes:.2f} s",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=200, help="number of masks")
    parser.add_argument("--quick", action="store_true", help="40 masks instead of 200")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    count = 40 if args.quick else args.count
    print(f"weightmaps {weightmaps.__version__}: map digests on {count} masks of 512x512")
    report(run(count), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
