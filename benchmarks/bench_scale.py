"""Beyond one process: chunked volumes and generate on a Dask cluster, as in-run ratios.

Run with ``make bench`` (or ``python benchmarks/bench_scale.py``). Targets
(issue 7):

- a 3D instance volume from zarr to zarr with ``weightmaps.chunked``: time
  against the in-memory kernel on the same cores (<= 1.5x at 256^3 chunks),
  and peak RSS when the volume doubles (grows < 10 %: memory is set by the
  chunk, not the volume);
- the same for a 2-D whole-slide mask of 8192^2 in 2048^2 chunks (issue 16:
  <= 1.3x the in-memory time);
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
from bench_kernels import nuclei, report, row

import weightmaps
from weightmaps.pipeline import generate


def timed_generate(masks: Path, out: Path, **options) -> float:
    return _timed_generate(masks, out, **options)[0]


def _timed_generate(masks: Path, out: Path, **options) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of one generate run from scratch."""
    shutil.rmtree(out, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    result = generate(masks, out, progress=False, **options)
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    if result.failed or not result.done:
        raise RuntimeError(f"generate failed: {result.summary()}")
    return elapsed, cpu


def _engine_times(masks: dict[int, Path], out: Path, options: dict) -> dict[int, tuple]:
    return {count: _timed_generate(folder, out, **options) for count, folder in masks.items()}


def scheduler_rows(count: int, repeats: int = 2) -> list[dict]:
    """Throughput of generate on a local Dask cluster against local worker processes.

    Each engine runs over ``count`` and ``2 * count`` masks; the difference
    is the time of ``count`` masks with every fixed cost (starting and
    stopping the cluster, importing on the workers, planning) cancelled out,
    which is what decides a run over 10^5 masks. Best of ``repeats``.
    """
    engines = {"--workers 2": {"workers": 2}, "--scheduler local:2": {"scheduler": "local:2"}}
    with tempfile.TemporaryDirectory() as tmp:
        masks = {n: Path(tmp) / f"masks{n}" for n in (count, 2 * count)}
        for n, folder in masks.items():
            folder.mkdir()
            make_masks(folder, n)
        timed_generate(masks[count], Path(tmp) / "warm", workers=2)
        times: dict[str, list[dict[int, float]]] = {name: [] for name in engines}
        for _ in range(repeats):
            for name, options in engines.items():
                times[name].append(_engine_times(masks, Path(tmp) / "out", options))
    marginal = {name: _marginal_rate(count, runs) for name, runs in times.items()}
    whole = {name: max(2 * count / t[2 * count][0] for t in runs) for name, runs in times.items()}
    local, cluster = marginal["--workers 2"], marginal["--scheduler local:2"]
    return [
        _engine_row(count, local, cluster),
        _whole_row(count, whole, cluster),
        _client_row(count, times["--scheduler local:2"], local),
    ]


def _marginal_rate(count: int, runs: list[dict[int, tuple]]) -> float | None:
    """Masks/s of ``count`` more masks, best of the runs where 2N masks took longer than N.

    Over few masks (``--quick``) the noise of the fixed costs can exceed the
    time of the extra masks: a difference <= 0 measures nothing, and is not a
    negative rate. None when no run measured anything.
    """
    gaps = [t[2 * count][0] - t[count][0] for t in runs]
    rates = [count / gap for gap in gaps if gap > 0]
    return max(rates) if rates else None


_NOISE = "within noise at this count: run without --quick"


def _engine_row(count: int, local: float | None, cluster: float | None) -> dict:
    name = f"generate, {count} more masks: --scheduler local:2 / --workers 2"
    if local is None or cluster is None:
        return row(name, _NOISE, ">= 85%", None, "fixed costs cancelled")
    return row(
        name,
        f"{cluster / local:.0%} ({cluster:.1f} vs {local:.1f} masks/s)",
        ">= 85%",
        cluster / local >= 0.85,
        "fixed costs cancelled",
    )


def _whole_row(count: int, whole: dict[str, float], cluster: float | None) -> dict:
    ratio = f"{whole['--scheduler local:2'] / whole['--workers 2']:.0%}"
    if cluster is not None:
        fixed = 2 * count / whole["--scheduler local:2"] - 2 * count / cluster
        # The fixed cost is the whole run less its masks at the marginal rate;
        # a negative one is the marginal rate's noise, not time given back.
        ratio += f" (cluster fixed cost {fixed:.1f} s)" if fixed > 0 else f" ({_NOISE})"
    return row(
        f"generate {2 * count} masks end to end: --scheduler local:2 / --workers 2",
        ratio,
        "reported",
        None,
        "start-up and shutdown included",
    )


def _client_row(count: int, runs: list[dict[int, tuple]], local: float | None) -> dict:
    """CPU of the client process per extra mask: the client, and with local:N the
    scheduler and nannies too. One client feeds at most 1 / this masks/s.

    From the difference of the runs over 2N and N masks, as the rates; where
    no difference is positive (noise, ``--quick``), the whole run's CPU per
    mask, fixed costs included, which bounds it from above.
    """
    gaps = [(t[2 * count][1] - t[count][1]) / count for t in runs]
    positive = [gap for gap in gaps if gap > 0]
    if positive:
        client_ms = 1000 * min(positive)
        text = f"{client_ms:.1f} ms: one client feeds <= {1000 / client_ms:.0f} masks/s"
    else:
        client_ms = 1000 * min(t[2 * count][1] / (2 * count) for t in runs)
        feeds = 1000 / client_ms
        text = f"<= {client_ms:.1f} ms ({_NOISE}): one client feeds >= {feeds:.0f} masks/s"
    if local is not None:
        per_worker = local / 2
        text += f" = {1000 / client_ms / per_worker:.0f} workers at {per_worker:.1f} masks/s each"
    name = "client + scheduler CPU per mask (local:2)"
    return row(name, text, "reported", None, "the ceiling at 100 workers")


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
        from weightmaps._shared.threads import kernel_threads
        labels = zarr.open_array(src, mode="r")[...]
        with kernel_threads(2):  # as generate gives one mask every core
            result = unet_weight_map(labels)
        zarr.save_array(dst, result)
    else:
        labels = da.from_zarr(src)
        chunked.unet_weight_map(labels).to_zarr(dst, overwrite=True)
    elapsed = time.perf_counter() - start
    print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    """
)


def _volume(path: Path, shape: tuple[int, ...], chunk: int) -> None:
    import numpy as np
    import zarr
    from bench_gpu import balls

    if len(shape) == 2:  # a whole-slide mask: one nucleus per ~42^2 pixels
        labels = nuclei(shape, int(np.prod(shape) / 1750), radius=9.0, seed=0).astype(np.uint16)
    else:
        n = int(np.prod(shape) / 60_000)  # about one nucleus per 40^3 voxels
        labels = balls(shape, n, radius=8.0, seed=0)
    store = zarr.open_array(
        path, mode="w", shape=shape, chunks=(chunk,) * len(shape), dtype=labels.dtype
    )
    store[...] = labels


def _child(src: Path, dst: Path, mode: str) -> tuple[float, float]:
    import os

    # A fixed glibc mmap threshold, for every child alike. With glibc's
    # dynamic one, buffers under 32 MiB come from per-thread malloc arenas
    # after the first large frees, and the memory those arenas keep moves the
    # peak RSS of one and the same 512^3 run between 1.90 and 2.24 GB; fixed,
    # buffers of 1 MiB and more go back to the system when freed and the
    # peak is the memory in use (within 2 % from run to run).
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    out = subprocess.run(
        [sys.executable, "-c", _CHUNKED_CHILD, str(src), str(dst), mode],
        capture_output=True,
        text=True,
        check=True,
        env=env,
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
            "glibc mmap threshold fixed at 1 MiB",
        )
    )
    return rows


def chunked_2d_rows(side: int, chunk: int) -> list[dict]:
    """The 2-D rows beside the 3-D ones: a whole-slide mask chunked against in memory.

    Both children run the U-Net map with 2 threads: the chunked one on
    ``chunk``^2 blocks (the default for a 2-D TIFF), the in-memory kernel
    with its passes split across 2 threads.
    """
    try:
        import weightmaps.chunked  # noqa: F401
    except ImportError:
        return [row("chunked 2-D masks", "weightmaps.chunked not available", "-", None)]
    with tempfile.TemporaryDirectory() as tmp:
        small = Path(tmp) / "small.zarr"
        large = Path(tmp) / "large.zarr"
        _volume(small, (side, side), chunk)
        _volume(large, (2 * side, side), chunk)
        memory, _ = _child(small, Path(tmp) / "m.zarr", "memory")
        chunked_s, rss_small = _child(small, Path(tmp) / "c.zarr", "chunked")
        _, rss_large = _child(large, Path(tmp) / "c2.zarr", "chunked")
    ratio = chunked_s / memory
    growth = rss_large / rss_small - 1
    return [
        row(
            f"U-Net {side}^2 zarr->zarr, {chunk}^2 chunks: chunked / in-memory",
            f"{ratio:.2f}x ({chunked_s:.1f} s vs {memory:.1f} s)",
            "<= 1.3x",
            ratio <= 1.3,
            "2 threads each",
        ),
        row(
            "chunked 2-D peak RSS when the mask doubles",
            f"+{growth:.0%} ({rss_small:.0f} MB -> {rss_large:.0f} MB)",
            "< 10%",
            growth < 0.10,
            "glibc mmap threshold fixed at 1 MiB",
        ),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller volume, fewer masks")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    print(f"weightmaps {weightmaps.__version__}")
    rows = chunked_rows(*((128, 64) if args.quick else (512, 256)))
    rows += chunked_2d_rows(*((2048, 1024) if args.quick else (8192, 2048)))
    rows += scheduler_rows(40 if args.quick else 200)
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
