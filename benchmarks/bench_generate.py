"""Throughput of ``weightmaps generate`` against an I/O-only baseline, in one run.

Run with ``make bench`` (or ``python benchmarks/bench_generate.py``). On
~200 generated 512x512 instance masks (uint16 TIFF, zlib, ~150 nuclei each):

- I/O-only baseline: read each mask with ``read_mask`` and write as many
  float32 zlib TIFFs as the kind set has, atomically, computing nothing. The
  bytes written are real maps computed before the clock starts (those of the
  first masks, cycled), because zlib's speed depends on the data: a mask cast
  to float32 compresses about twice as fast as a weight map;
- ``generate`` with the same number of workers, per kind set, from scratch.

Targets (issue 3): edge+balance >= 70 % of the I/O-only throughput, all three
kinds >= 35 %; and ``--workers 2`` against ``--workers 1``. Throughput is
masks per second of wall time; every ratio compares runs of this process.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
from bench_kernels import nuclei, report, row

import weightmaps
from weightmaps import MapSettings, compute_maps, read_mask
from weightmaps.io.writing import write_tiff_atomic
from weightmaps.pipeline import find_masks, generate, output_name

KIND_SETS = {
    "edge+balance": ("edge", "balance"),
    "unet": ("unet",),
    "all three": ("unet", "edge", "balance"),
}


def make_masks(folder: Path, count: int, n_nuclei: int = 150) -> None:
    for i in range(count):
        labels = nuclei((512, 512), n_nuclei, radius=9.0, seed=i).astype(np.uint16)
        tifffile.imwrite(folder / f"mask_{i:04d}.tif", labels, compression="zlib")


def io_only(masks: Path, out: Path, kinds: tuple[str, ...], cycle: int = 8) -> float:
    """Seconds to read every mask and write len(kinds) float32 TIFFs each."""
    files = find_masks(masks)
    payloads = [
        compute_maps(read_mask(f.path), MapSettings(), kinds=kinds).maps for f in files[:cycle]
    ]
    start = time.perf_counter()
    for i, mask_file in enumerate(files):
        read_mask(mask_file.path)
        maps = payloads[i % len(payloads)]
        for kind in kinds:
            target = out / output_name(mask_file.rel, kind)
            target.parent.mkdir(parents=True, exist_ok=True)
            write_tiff_atomic(target, maps[kind])
    return time.perf_counter() - start


def timed_generate(masks: Path, out: Path, kinds: tuple[str, ...], workers: int) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    report = generate(masks, out, kinds=kinds, workers=workers, progress=False)
    elapsed = time.perf_counter() - start
    if report.failed or not report.done:
        raise RuntimeError(f"generate failed: {report.summary()}")
    return elapsed


def run(count: int) -> list[dict]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        masks = Path(tmp) / "masks"
        masks.mkdir()
        make_masks(masks, count)
        # Warm the compiled kernels and the file cache outside the timings.
        timed_generate(masks, Path(tmp) / "warm", ("unet", "edge", "balance"), 1)
        for name, kinds in KIND_SETS.items():
            baseline = io_only(masks, Path(tmp) / f"io_{len(kinds)}", kinds)
            ours = timed_generate(masks, Path(tmp) / "out", kinds, workers=1)
            ratio = baseline / ours
            target = {"edge+balance": 0.70, "all three": 0.35}.get(name)
            rows.append(
                row(
                    f"generate {name} / I/O only, 1 worker",
                    f"{ratio:.0%} ({count / ours:.1f} vs {count / baseline:.1f} masks/s)",
                    f">= {target:.0%}" if target else "-",
                    None if target is None else ratio >= target,
                )
            )
        one = timed_generate(masks, Path(tmp) / "out", KIND_SETS["all three"], workers=1)
        two = timed_generate(masks, Path(tmp) / "out", KIND_SETS["all three"], workers=2)
        rows.append(
            row(
                "generate all three: --workers 2 / --workers 1",
                f"{one / two:.2f}x ({count / two:.1f} vs {count / one:.1f} masks/s)",
                "reported",
                None,
                "2-core machine",
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
    print(f"weightmaps {weightmaps.__version__}: generate on {count} masks of 512x512")
    report(run(count), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
