"""Issue 16's rows, in one run: this tree against the version before issue 16, and the limits.

Run with ``make bench`` (or ``python benchmarks/bench_before.py``). The
version before issue 16 is commit 6cca98c, unpacked from this repository's
history (``git archive``) into a temporary folder and imported from there
(``PYTHONPATH``) by child processes of this same virtualenv; without git
history its rows are skipped. Every figure comes from fresh child processes,
compared runs interleaved and medians taken (the machine is shared):

- ``generate``, all three maps, 200 masks of 512x512, default workers:
  masks/s against the version before (as it was installed: without
  imagecodecs, so deflate by Python's zlib; and in this environment, with
  it), and the bytes written;
- a 96x512x512 uint16 instance volume generated in memory: peak RSS above
  the imports (and compiled kernels), per voxel;
- a 4096^2 2-D mask generated chunked (forced by ``chunked_above``) against
  in memory, both with the cores of the machine;
- one large mask, all three maps (``compute_maps``) and the U-Net map alone:
  2 threads against 1, for a 2048^2 mask and a 64x256x256 volume; and
  ``generate`` of one 4096^2 mask and one 96x256x256 volume pinned to one
  core against two;
- cold start: the first mask of a fresh process whose numba cache is empty
  (a fresh install) and whose cache is full, per kind asked for, and the
  first mask after `weightmaps compile` (which `make install` runs).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import numpy as np
import tifffile
from bench_generate import make_masks
from bench_gpu import balls
from bench_kernels import nuclei, report, row

import weightmaps

ROOT = Path(__file__).resolve().parents[1]
BEFORE = "6cca98c"

_CHILD = textwrap.dedent(
    """
    import json, os, resource, sys, time
    args = json.loads(sys.argv[1])
    if args.get("cores"):  # before any import starts a thread
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args["cores"]])
    if args.get("no_imagecodecs"):
        sys.modules["imagecodecs"] = None
    t_start = time.perf_counter()
    from weightmaps.pipeline import generate

    def rss():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    result = {}
    if args["mode"] == "threads":
        import numpy as np
        import tifffile
        from weightmaps import MapSettings, compute_maps, unet_weight_map
        from weightmaps._shared.threads import kernel_threads
        mask = tifffile.imread(args["mask"])
        if args.get("unet_only"):
            work = lambda: unet_weight_map(mask)
        else:
            work = lambda: compute_maps(mask, MapSettings())
        times = {1: [], 2: []}
        for t in (1, 2):
            with kernel_threads(t):
                work()
        for _ in range(args["repeat"]):
            for t in (1, 2):
                with kernel_threads(t):
                    start = time.perf_counter()
                    work()
                    times[t].append(time.perf_counter() - start)
        result = {str(t): sorted(v)[len(v) // 2] for t, v in times.items()}
    else:
        options = args.get("options", {})
        if args.get("warm"):
            generate(args["warm"], args["out"] + "_warm", progress=False, **options)
        base = rss()
        start = time.perf_counter()
        report = generate(args["masks"], args["out"], progress=False, **options)
        seconds = time.perf_counter() - start
        if report.failed or not report.done:
            raise SystemExit(report.summary())
        size = sum(
            os.path.getsize(os.path.join(d, f))
            for d, _, names in os.walk(args["out"]) for f in names
        )
        result = {
            "seconds": seconds,
            "since_start": time.perf_counter() - t_start,
            "masks": len(report.done),
            "bytes": size,
            "peak": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
            "base": base,
        }
    print(json.dumps(result))
    """
)


def _child(tree: Path, args: dict, env: dict | None = None, *, fixed_mmap: bool = True) -> dict:
    environment = {**os.environ, "PYTHONPATH": str(tree)}
    if fixed_mmap:
        # A fixed mmap threshold: freed buffers of 1 MiB and more go back to
        # the system, so peak RSS is the memory in use (see bench_scale).
        # Not for the thread rows: every large buffer then comes back as
        # fresh pages whose faults cost two threads more than one (a 2048^2
        # compute_maps: 1.4x on two threads with it, 1.6x with glibc's
        # default, which is what users run with).
        environment["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    else:
        environment.pop("MALLOC_MMAP_THRESHOLD_", None)
    environment.update(env or {})
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, json.dumps(args)],
        capture_output=True,
        text=True,
        env=environment,
        cwd=tempfile.gettempdir(),
    )
    if out.returncode:
        raise RuntimeError(f"child failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def before_tree(tmp: Path) -> Path | None:
    """The version before issue 16, unpacked from git history, or None."""
    target = tmp / "before"
    target.mkdir()
    try:
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", BEFORE], capture_output=True, check=True
        )
        subprocess.run(["tar", "-x", "-C", str(target)], input=archive.stdout, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return target


def _median(values: list[float]) -> float:
    return statistics.median(values)


def throughput_rows(tmp: Path, before: Path | None, count: int, repeat: int) -> list[dict]:
    masks = tmp / "masks"
    masks.mkdir()
    make_masks(masks, count)
    warm = tmp / "warm_masks"
    warm.mkdir()
    make_masks(warm, 2)
    runs = {"ours": (ROOT, False)}
    if before is not None:
        runs["before, as installed then"] = (before, True)
        runs["before, with imagecodecs"] = (before, False)
    got: dict[str, list[dict]] = {name: [] for name in runs}
    for _ in range(repeat):
        for name, (tree, no_codecs) in runs.items():
            args = {
                "mode": "generate",
                "masks": str(masks),
                "warm": str(warm),
                "out": str(tmp / "out"),
                "no_imagecodecs": no_codecs,
            }
            got[name].append(_child(tree, args))
            shutil.rmtree(tmp / "out")
    ours = _median([r["seconds"] for r in got["ours"]])
    rows = []
    for name in runs:
        if name == "ours":
            continue
        theirs = _median([r["seconds"] for r in got[name]])
        size = got["ours"][0]["bytes"] / got[name][0]["bytes"]
        ratio = theirs / ours
        main = name.endswith("then")
        rows.append(
            row(
                f"generate, 3 maps, {count} masks 512^2, default workers: ours / {name}",
                f"{ratio:.2f}x ({count / ours:.1f} vs {count / theirs:.1f} masks/s); "
                f"bytes {size:.2f}x",
                ">= 1.6x, bytes <= 1.25x" if main else "reported",
                (ratio >= 1.6 and size <= 1.25) if main else None,
                f"medians of {repeat}",
            )
        )
    return rows


def memory_rows(tmp: Path, before: Path | None) -> list[dict]:
    shape = (96, 512, 512)
    volume, warm = tmp / "volume", tmp / "volume_warm"
    volume.mkdir()
    warm.mkdir()
    n = int(np.prod(shape) / 60_000)
    tifffile.imwrite(volume / "v.tif", balls(shape, n, 8.0, 0), compression="zlib")
    tifffile.imwrite(warm / "v.tif", balls((16, 64, 64), 5, 8.0, 0), compression="zlib")
    per_voxel = {}
    for name, tree in (("ours", ROOT), ("before", before)):
        if tree is None:
            continue
        args = {
            "mode": "generate",
            "masks": str(volume),
            "warm": str(warm),
            "out": str(tmp / f"vol_{name}"),
            "options": {"workers": 1},
        }
        r = _child(tree, args)
        per_voxel[name] = (r["peak"] - r["base"]) / np.prod(shape)
    note = f"before {per_voxel['before']:.1f} B" if "before" in per_voxel else ""
    return [
        row(
            f"{'x'.join(map(str, shape))} uint16 instance volume in memory: "
            "peak RSS above the imports, per voxel",
            f"{per_voxel['ours']:.1f} B",
            "<= 24 B",
            per_voxel["ours"] <= 24,
            note,
        )
    ]


def chunked_2d_rows(tmp: Path, before: Path | None, side: int, repeat: int) -> list[dict]:
    masks, warm = tmp / "big2d", tmp / "warm2d"
    masks.mkdir()
    warm.mkdir()
    labels = nuclei((side, side), side * side // 1750, radius=9.0, seed=3).astype(np.uint16)
    tifffile.imwrite(masks / "b.tif", labels, compression="zlib")
    tifffile.imwrite(warm / "b.tif", labels[:300, :300], compression="zlib")
    rows = []
    for name, tree in (("ours", ROOT), ("before", before)):
        if tree is None:
            continue
        times: dict[str, list[float]] = {"memory": [], "chunked": []}
        for _ in range(repeat):
            for mode, options in (("memory", {}), ("chunked", {"chunked_above": 1000})):
                args = {
                    "mode": "generate",
                    "masks": str(masks),
                    "warm": str(warm),
                    "out": str(tmp / "out2d"),
                    "options": {"workers": 1, **options},
                }
                times[mode].append(_child(tree, args)["seconds"])
                shutil.rmtree(tmp / "out2d")
        memory, chunked = _median(times["memory"]), _median(times["chunked"])
        ours = name == "ours"
        rows.append(
            row(
                f"2D {side}^2 mask chunked / in memory ({name})",
                f"{chunked / memory:.2f}x ({chunked:.1f} s vs {memory:.1f} s)",
                "<= 1.3x" if ours else "reported",
                chunked / memory <= 1.3 if ours else None,
                "generate, --workers 1: every core for the one mask",
            )
        )
    return rows


_SPIN = textwrap.dedent(
    """
    import threading, time
    import numba
    @numba.njit(nogil=True)
    def spin(n):
        s = 0.0
        for i in range(n):
            s += i ** 0.5
        return s
    spin(10)
    n = 100_000_000
    start = time.perf_counter(); spin(n); one = time.perf_counter() - start
    threads = [threading.Thread(target=spin, args=(n,)) for _ in range(2)]
    start = time.perf_counter()
    for t in threads: t.start()
    for t in threads: t.join()
    print(2 * one / (time.perf_counter() - start))
    """
)


def effective_cores() -> float:
    """Two CPU-bound nogil loops on two threads against one: what the machine gives now."""
    out = subprocess.run([sys.executable, "-c", _SPIN], capture_output=True, text=True)
    return float(out.stdout.strip()) if out.returncode == 0 else float("nan")


def thread_rows(tmp: Path, repeat: int) -> list[dict]:
    cases = {
        "2048^2 mask, 1000 nuclei": nuclei((2048, 2048), 1000, seed=2).astype(np.uint16),
        "64x256x256 volume, 300 nuclei": balls((64, 256, 256), 300, 8.0, 0),
    }
    cores = effective_cores()
    rows = [
        row(
            "this machine now: two nogil loops on 2 threads / one",
            f"{cores:.2f} cores",
            "reported",
            None,
            "other sessions' load: the ceiling of the rows below",
        )
    ]
    for name, labels in cases.items():
        path = tmp / "threads.tif"
        tifffile.imwrite(path, labels)
        for what, unet_only in (("three maps", False), ("U-Net map alone", True)):
            args = {"mode": "threads", "mask": str(path), "repeat": repeat, "unet_only": unet_only}
            t = _child(ROOT, args, fixed_mmap=False)
            speedup = t["1"] / t["2"]
            rows.append(
                row(
                    f"{name}, {what}: 2 threads / 1 thread",
                    f"{speedup:.2f}x faster ({t['2'] * 1e3:.0f} vs {t['1'] * 1e3:.0f} ms)",
                    ">= 1.7x",
                    speedup >= 1.7,
                    f"{'unet_weight_map' if unet_only else 'compute_maps'}, medians of {repeat}",
                )
            )
    rows += generate_core_rows(tmp, repeat)
    return rows


def generate_core_rows(tmp: Path, repeat: int) -> list[dict]:
    """``generate`` of one large mask, as a user runs it, on one core and on two.

    The process is pinned to its cores (``sched_setaffinity``), so every
    thread of the run (kernels, tifffile's strips) shares them; generate gives
    a lone mask all the cores it may use.
    """
    if not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2:
        return []
    cases = {
        "4096^2 mask, 4000 nuclei": (
            nuclei((4096, 4096), 4000, seed=3),
            nuclei((512, 512), 100, seed=4),
        ),
        "96x256x256 volume, 450 nuclei": (
            balls((96, 256, 256), 450, 8.0, 1),
            balls((32, 128, 128), 60, 8.0, 2),
        ),
    }
    rows = []
    for name, (labels, small) in cases.items():
        masks, warm = tmp / "one_large", tmp / "one_small"
        masks.mkdir(exist_ok=True)
        warm.mkdir(exist_ok=True)
        tifffile.imwrite(masks / "mask.tif", labels.astype(np.uint16))
        # The kernels of the same dtypes loaded (or compiled) before the clock starts.
        tifffile.imwrite(warm / "mask.tif", small.astype(np.uint16))
        times: dict[int, list[float]] = {1: [], 2: []}
        for _ in range(repeat):
            for cores in (1, 2):
                out = tmp / f"one_large_out_{cores}"
                args = {
                    "mode": "generate",
                    "masks": str(masks),
                    "out": str(out),
                    "warm": str(warm),
                    "cores": cores,
                }
                times[cores].append(_child(ROOT, args, fixed_mmap=False)["seconds"])
                shutil.rmtree(out)
                shutil.rmtree(f"{out}_warm")
        shutil.rmtree(masks)
        shutil.rmtree(warm)
        one, two = (statistics.median(times[c]) for c in (1, 2))
        rows.append(
            row(
                f"generate one {name}, three maps: 2 cores / 1 core",
                f"{one / two:.2f}x faster ({two:.2f} vs {one:.2f} s)",
                ">= 1.7x",
                one / two >= 1.7,
                f"whole run (read, type, maps, write), medians of {repeat}",
            )
        )
    return rows


def cold_rows(tmp: Path, before: Path | None) -> list[dict]:
    masks = tmp / "cold"
    masks.mkdir()
    make_masks(masks, 1)
    rows = []
    trees = {"ours": ROOT, **({"before": before} if before is not None else {})}
    for name, tree in trees.items():
        for kinds in (("unet", "edge", "balance"), ("edge",)):
            if name == "before" and kinds != ("unet", "edge", "balance"):
                continue
            cache = tmp / f"numba_{name}_{len(kinds)}"
            figures = []
            for state in ("fresh install", "cached"):
                args = {
                    "mode": "generate",
                    "masks": str(masks),
                    "out": str(tmp / f"cold_out_{state}"),
                    "options": {"workers": 1, "kinds": list(kinds)},
                }
                r = _child(tree, args, env={"NUMBA_CACHE_DIR": str(cache)})
                figures.append(r["since_start"])
                shutil.rmtree(tmp / f"cold_out_{state}")
            rows.append(
                row(
                    f"first mask of a process ({name}), --kinds {','.join(kinds)}",
                    f"{figures[0]:.1f} s on a fresh install, {figures[1]:.1f} s cached",
                    "reported",
                    None,
                    "imports, numba compilation or cache loading, one 512^2 mask",
                )
            )
    rows.append(_after_compile_row(tmp, masks))
    return rows


def _after_compile_row(tmp: Path, masks: Path) -> dict:
    """The first mask once ``weightmaps compile`` (which ``make install`` runs) has run."""
    cache = tmp / "numba_compiled"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NUMBA_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "weightmaps", "compile"], env=env, cwd=tmp, check=True,
        capture_output=True,
    )  # fmt: skip
    compiling = time.perf_counter() - start
    args = {
        "mode": "generate",
        "masks": str(masks),
        "out": str(tmp / "cold_out_compiled"),
        "options": {"workers": 1, "kinds": ["unet", "edge", "balance"]},
    }
    first = _child(ROOT, args, env={"NUMBA_CACHE_DIR": str(cache)})["since_start"]
    shutil.rmtree(tmp / "cold_out_compiled")
    return row(
        "first mask of a process (ours) after `weightmaps compile`, --kinds unet,edge,balance",
        f"{first:.1f} s; `weightmaps compile` itself {compiling:.1f} s",
        "reported",
        None,
        "the compile step as make install runs it: every kind, 2-D and 3-D",
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer masks, one repeat")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    count, repeat = (40, 1) if args.quick else (200, 3)
    print(f"weightmaps {weightmaps.__version__} against {BEFORE} (before issue 16)")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        before = before_tree(tmp)
        if before is None:
            print(f"no git history with {BEFORE}: rows against it skipped")
        rows = throughput_rows(tmp, before, count, repeat)
        rows += memory_rows(tmp, before)
        rows += chunked_2d_rows(tmp, before, 2048 if args.quick else 4096, repeat)
        rows += thread_rows(tmp, 3 if args.quick else 7)
        rows += cold_rows(tmp, before)
    report(rows, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
