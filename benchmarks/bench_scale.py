"""Beyond one process: chunked volumes and generate on a Dask cluster, as in-run ratios.

Run with ``make bench`` (or ``python benchmarks/bench_scale.py``). Targets
(issue 7):

- a 3D instance volume from zarr to zarr with ``weightmaps.chunked``: time
  against the in-memory kernel on the same cores (<= 1.5x at 256^3 chunks),
  and peak RSS when the volume doubles (grows < 10 %: memory is set by the
  chunk, not the volume);
- ``generate`` over 200 masks with ``--scheduler local:2`` against
  ``--workers 2`` (>= 85 % of its throughput: the engine costs little).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

from bench_generate import make_masks
from bench_kernels import report, row

import weightmaps
from weightmaps.pipeline import generate


def timed_generate(masks: Path, out: Path, **options) -> float:
    shutil.rmtree(out, ignore_errors=True)
    start = time.perf_counter()
    result = generate(masks, out, progress=False, **options)
    elapsed = time.perf_counter() - start
    if result.failed or not result.done:
        raise RuntimeError(f"generate failed: {result.summary()}")
    return elapsed


def scheduler_rows(count: int) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        masks = Path(tmp) / "masks"
        masks.mkdir()
        make_masks(masks, count)
        timed_generate(masks, Path(tmp) / "warm", workers=2)
        local = timed_generate(masks, Path(tmp) / "out", workers=2)
        cluster = timed_generate(masks, Path(tmp) / "out", scheduler="local:2")
    ratio = local / cluster
    return [
        row(
            f"generate {count} masks: --scheduler local:2 / --workers 2",
            f"{ratio:.0%} ({count / cluster:.1f} vs {count / local:.1f} masks/s)",
            ">= 85%",
            ratio >= 0.85,
            "cluster start-up included",
        )
    ]


# Run in a fresh process per size, so that peak RSS belongs to one volume.
_CHUNKED_CHILD = textwrap.dedent(
    """
    import resource, sys, time
    import dask, dask.array as da, numpy as np, zarr
    from weightmaps import chunked, unet_weight_map
    src, dst, mode = sys.argv[1], sys.argv[2], sys.argv[3]
    dask.config.set(scheduler="threads", num_workers=2)
    start = time.perf_counter()
    if mode == "memory":
        labels = zarr.open_array(src, mode="r")[...]
        result = unet_weight_map(labels)
        zarr.save_array(dst, result)
    else:
        labels = da.from_zarr(src)
        chunked.unet_weight_map(labels).to_zarr(dst, overwrite=True)
    elapsed = time.perf_counter() - start
    print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """
)


def _volume(path: Path, shape: tuple[int, int, int], chunk: int) -> None:
    import numpy as np
    import zarr
    from bench_gpu import balls

    n = int(np.prod(shape) / 60_000)  # about one nucleus per 40^3 voxels
    labels = balls(shape, n, radius=8.0, seed=0)
    store = zarr.open_array(path, mode="w", shape=shape, chunks=(chunk,) * 3, dtype=labels.dtype)
    store[...] = labels


def _child(src: Path, dst: Path, mode: str) -> tuple[float, float]:
    out = subprocess.run(
        [sys.executable, "-c", _CHUNKED_CHILD, str(src), str(dst), mode],
        capture_output=True,
        text=True,
        check=True,
    )
    seconds, rss_mb = out.stdout.split()
    return float(seconds), float(rss_mb)


def chunked_rows(side: int, chunk: int) -> list[dict]:
    try:
        import weightmaps.chunked  # noqa: F401
    except ImportError:
        return [row("chunked volumes", "weightmaps.chunked not available", "-", None)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.zarr"
        large = Path(tmp) / "large.zarr"
        _volume(small, (side, side, side), chunk)
        _volume(large, (2 * side, side, side), chunk)
        memory, _ = _child(small, Path(tmp) / "m.zarr", "memory")
        chunked_s, rss_small = _child(small, Path(tmp) / "c.zarr", "chunked")
        _, rss_large = _child(large, Path(tmp) / "c2.zarr", "chunked")
    ratio = chunked_s / memory
    rows.append(
        row(
            f"U-Net {side}^3 zarr->zarr, {chunk}^3 chunks: chunked / in-memory",
            f"{ratio:.2f}x ({chunked_s:.1f} s vs {memory:.1f} s)",
            "<= 1.5x",
            ratio <= 1.5,
            "2 threads",
        )
    )
    growth = rss_large / rss_small - 1
    rows.append(
        row(
            "chunked peak RSS when the volume doubles",
            f"+{growth:.0%} ({rss_small:.0f} MB -> {rss_large:.0f} MB)",
            "< 10%",
            growth < 0.10,
        )
    )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller volume, fewer masks")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    print(f"weightmaps {weightmaps.__version__}")
    rows = chunked_rows(*((128, 64) if args.quick else (512, 256)))
    rows += scheduler_rows(40 if args.quick else 200)
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
