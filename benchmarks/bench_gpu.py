"""``weightmaps generate`` on the GPU against the CPU path of the same machine.

Run with ``make bench-gpu`` (or ``python benchmarks/bench_gpu.py``) on a
machine with CUDA. For three sets of generated instance masks (512x512 with
~300 nuclei, 2048x2048 with ~1000, and 3D volumes 64x256x256) it reports
masks per second of ``generate`` per kind and for all three kinds, with
``--device cuda`` and with ``--device cpu`` (all cores), their ratio, the
fraction of wall time spent computing batches on the GPU, and the I/O-only
throughput (one process reads every mask and writes as many real maps,
computing nothing). Target (issue 5): GPU >= 10x the CPU path for the U-Net
map, or the pipeline is I/O-bound.

Without CUDA the GPU rows are skipped (said in the output) and the CPU-side
figures, with the torch path on the CPU for comparison, still come out.
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
import torch
from bench_generate import io_only
from bench_kernels import nuclei, report, row

import weightmaps
from weightmaps.pipeline import default_workers, generate

KIND_SETS = {
    "unet": ("unet",),
    "edge": ("edge",),
    "balance": ("balance",),
    "all three": ("unet", "edge", "balance"),
}


def balls(shape: tuple[int, int, int], n: int, radius: float, seed: int) -> np.ndarray:
    """n ball-like nuclei in a volume; later ones overwrite, so some touch."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.uint16)
    for label in range(1, n + 1):
        r = rng.uniform(0.6, 1.2) * radius
        centre = rng.uniform(0, shape)
        lo = [max(int(c - r), 0) for c in centre]
        hi = [min(int(c + r) + 2, s) for c, s in zip(centre, shape, strict=True)]
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        inside = (zz - centre[0]) ** 2 + (yy - centre[1]) ** 2 + (xx - centre[2]) ** 2 <= r * r
        labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][inside] = label
    return labels


def make_sets(root: Path, quick: bool) -> dict[str, Path]:
    counts = {"512x512, 300 nuclei": 16 if quick else 96, "2048x2048, 1000": 3 if quick else 12}
    sets = {}
    for name, count in counts.items():
        folder = root / name.split(",")[0]
        folder.mkdir()
        size, n, radius = (512, 300, 9.0) if name.startswith("512") else (2048, 1000, 18.0)
        for i in range(count):
            labels = nuclei((size, size), n, radius=radius, seed=i).astype(np.uint16)
            tifffile.imwrite(folder / f"mask_{i:04d}.tif", labels, compression="zlib")
        sets[name] = folder
    folder = root / "volume"
    folder.mkdir()
    for i in range(2 if quick else 8):
        volume = balls((64, 256, 256), 150, 8.0, seed=i)
        tifffile.imwrite(folder / f"volume_{i:02d}.tif", volume, compression="zlib")
    sets["3D 64x256x256, 150 nuclei"] = folder
    return sets


def timed(masks: Path, out: Path, kinds: tuple[str, ...], device: str) -> tuple[float, float]:
    """Wall seconds of generate from scratch, and seconds spent computing on the device."""
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = generate(masks, out, kinds=kinds, device=device, progress=False, batch_size=8)
    elapsed = time.perf_counter() - start
    if result.failed or not result.done:
        raise RuntimeError(f"generate failed: {result.summary()}")
    return elapsed, result.device_seconds


def run(quick: bool) -> list[dict]:
    rows = []
    cuda = torch.cuda.is_available()
    workers = default_workers()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        sets = make_sets(root, quick)
        for name, masks in sets.items():
            count = len(list(masks.glob("*.tif")))
            # Compile the CPU kernels and warm the file cache outside the timings.
            timed(masks, root / "warm", KIND_SETS["all three"], "cpu")
            if cuda:
                timed(masks, root / "warm", KIND_SETS["all three"], "cuda")
            io = io_only(masks, root / "io", KIND_SETS["all three"])
            rows.append(
                row(
                    f"{name}: I/O only (3 maps)",
                    f"{count / io:.1f} masks/s",
                    "-",
                    None,
                    "1 process",
                )
            )
            for kinds_name, kinds in KIND_SETS.items():
                cpu, _ = timed(masks, root / "out", kinds, "cpu")
                label = f"{name}: {kinds_name}"
                if not cuda:
                    rows.append(
                        row(
                            f"{label}, CPU path ({workers} workers)",
                            f"{count / cpu:.1f} masks/s",
                            "-",
                            None,
                            "no CUDA device: GPU not measured",
                        )
                    )
                    continue
                gpu, busy = timed(masks, root / "out", kinds, "cuda")
                target = kinds_name == "unet"
                rows.append(
                    row(
                        f"{label}, GPU / CPU path ({workers} workers)",
                        f"{cpu / gpu:.1f}x ({count / gpu:.1f} vs {count / cpu:.1f} masks/s)",
                        ">= 10x or I/O-bound" if target else "-",
                        (cpu / gpu >= 10 or gpu <= 1.25 * io) if target else None,
                        f"GPU busy {busy / gpu:.0%} of wall time",
                    )
                )
            if not cuda:
                slow, busy = timed(masks, root / "out", KIND_SETS["all three"], "torch:cpu")
                cpu, _ = timed(masks, root / "out", KIND_SETS["all three"], "cpu")
                rows.append(
                    row(
                        f"{name}: all three, torch:cpu / CPU path",
                        f"{slow / cpu:.2f}x slower",
                        "-",
                        None,
                        f"torch kernels {busy / slow:.0%} of wall time",
                    )
                )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer masks")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no CUDA device"
    print(
        f"weightmaps {weightmaps.__version__}, torch {torch.__version__}, {device}, "
        f"{default_workers()} CPU workers"
    )
    report(run(args.quick), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
