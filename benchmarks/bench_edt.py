"""The U-Net weight map against the fastest CPU distance transform, in one run.

Run with ``python benchmarks/bench_edt.py`` after ``pip install -e '.[bench]'``
(seung-lab ``edt``, a benchmark-only dependency). Every figure is a ratio of
medians over interleaved repeats in the same process: these machines are
shared and noisy. Everything runs on one thread.

Targets (issue 16, part 1):
- U-Net map 512^2 with 300 instances / one binary ``edt.edt(labels == 0,
  parallel=1)`` on the same labels: <= 2.5x;
- the same for a 64x256x256 volume with 300 instances: <= 2.5x;
- cost flat in the number of instances: 3000 / 30 on the same image <= 2
  (the per-instance reference grows 100x).

Also printed: the kernel before issue 16 (pixel-at-a-time passes, kept for
short rows) / ours, and with ``--profile`` the time of every pass and axis.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import numpy as np
from bench_kernels import nuclei, report, row

import weightmaps
from weightmaps import unet_weight_map
from weightmaps.kernels.border import border_cutoff

try:
    import edt
except ImportError:  # pragma: no cover - the message is the point
    sys.exit("bench_edt needs seung-lab edt: pip install -e '.[bench]'")


def balls(shape: tuple[int, ...], n: int, radius: float = 8.0, seed: int = 0) -> np.ndarray:
    """n balls with radii 0.6 to 1.2 x ``radius``; later ones overwrite, so some touch."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for label in range(1, n + 1):
        r = rng.uniform(0.6, 1.2) * radius
        centre = rng.uniform(0, shape)
        box = tuple(
            slice(max(int(c - r), 0), min(int(c + r) + 2, size))
            for c, size in zip(centre, shape, strict=True)
        )
        grids = np.ogrid[box]
        inside = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) <= r * r
        labels[box][inside] = label
    return labels


def pixel_at_a_time(fn):
    """``fn`` run with the pixel-at-a-time passes only: the kernel before issue 16."""
    import weightmaps.kernels.nearest as nearest

    def run(*args, **kwargs):
        saved = nearest._MIN_ROW
        nearest._MIN_ROW = 1 << 62
        try:
            return fn(*args, **kwargs)
        finally:
            nearest._MIN_ROW = saved

    return run


def medians(fns: dict, repeat: int) -> dict[str, float]:
    """Median seconds of each function, called in turn ``repeat`` times after a warm-up."""
    for fn in fns.values():
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(repeat):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - t0)
    return {name: float(np.median(t)) for name, t in times.items()}


def against_edt(
    name: str, labels: np.ndarray, repeat: int, spacing=None, sigma: float = 5.0, target=True
) -> list[dict]:
    background = labels == 0
    options = {"spacing": spacing, "sigma": sigma}
    old = pixel_at_a_time(unet_weight_map)
    t = medians(
        {
            "edt": lambda: edt.edt(background, anisotropy=spacing, parallel=1),
            "ours": lambda: unet_weight_map(labels, **options),
            "old": lambda: old(labels, **options),
        },
        repeat,
    )
    same = np.array_equal(unet_weight_map(labels, **options), old(labels, **options))
    ratio = t["ours"] / t["edt"]
    return [
        row(
            f"U-Net {name}: ours / one binary edt",
            f"{ratio:.2f}x",
            "<= 2.5x" if target else "-",
            ratio <= 2.5 if target else None,
            f"ours {t['ours'] * 1e3:.1f} ms, edt {t['edt'] * 1e3:.1f} ms",
        ),
        row(
            f"U-Net {name}: old kernel / ours",
            f"{t['old'] / t['ours']:.2f}x",
            "-",
            None,
            f"old {t['old'] * 1e3:.1f} ms ({t['old'] / t['edt']:.2f}x edt); "
            f"bytes {'identical' if same else 'DIFFER'}",
        ),
    ]


def flatness(name: str, make, counts: tuple[int, ...], repeat: int) -> dict:
    """Time with the most instances / with the fewest, on the same image size.

    The cost follows the geometry (how much background lies within the
    cut-off of two instances), not the count: in between it may be higher
    or lower, so all times are printed.
    """
    masks = {n: make(n) for n in counts}
    t = medians({n: (lambda m=m: unet_weight_map(m)) for n, m in masks.items()}, repeat)
    growth = t[counts[-1]] / t[counts[0]]
    spread = ", ".join(f"{n}: {t[n] * 1e3:.0f} ms" for n in counts)
    return row(
        f"U-Net {name}: time {counts[-1]} / {counts[0]} instances",
        f"{growth:.2f}",
        "<= 2",
        growth <= 2,
        f"{spread}; slowest / fastest {max(t.values()) / min(t.values()):.2f}",
    )


def profile(labels: np.ndarray, sigma: float = 5.0, repeat: int = 3) -> None:
    """Time of every pass of ``add_border_term`` (one slab), rows and pixel at a time."""
    from weightmaps._shared.arrays import line_view
    from weightmaps.kernels import _nearest_nb as kernels
    from weightmaps.kernels import nearest

    labels = np.ascontiguousarray(labels, np.int32)
    spacing = np.ones(labels.ndim)
    cutoff = border_cutoff(sigma)
    cap = cutoff * cutoff
    acc = nearest._accumulator(spacing, cap)
    order = nearest.axis_order(spacing)
    print(f"\nper pass, {labels.shape}, axes in order {order} (ms, median of {repeat}):")
    print("| pass | axis | pixels after the axis | rows | pixel at a time |")
    print("|---|---|---|---|---|")

    def timed(fn) -> float:
        return medians({"x": fn}, repeat)["x"] * 1e3

    first = nearest._PairBuffer(labels.shape, labels.dtype)
    t = timed(
        lambda: kernels.scan_pass(line_view(labels, order[0]), *first.views(order[0]), 1.0, cap)
    )
    inner = math.prod(labels.shape[order[0] + 1 :])
    print(f"| scan | {order[0]} | {inner} | - | {t:.1f} |")
    current = first
    for axis in order[1:-1]:
        inner = math.prod(labels.shape[axis + 1 :])
        out = nearest._PairBuffer(labels.shape, labels.dtype)
        t_rows = timed(
            lambda a=axis, i=current, o=out: kernels.window_pass_rows(
                *i.views(a), *o.views(a), 1.0, acc
            )
        )
        t_pix = timed(
            lambda a=axis, i=current, o=out: kernels.window_pass(*i.views(a), *o.views(a), 1.0)
        )
        print(f"| window | {axis} | {inner} | {t_rows:.1f} | {t_pix:.1f} |")
        current = out
    axis = order[-1]
    inner = math.prod(labels.shape[axis + 1 :])
    weights = np.ones(labels.shape, np.float32)
    args = (
        line_view(labels, axis),
        *current.views(axis),
        line_view(weights, axis),
        0,
        labels.shape[axis],
        1.0,
        10.0,
        1.0 / (2 * sigma * sigma),
        cutoff,
    )
    t_rows = timed(lambda: kernels.border_pass_rows(*args, acc))
    t_pix = timed(lambda: kernels.border_pass(*args))
    print(f"| border | {axis} | {inner} | {t_rows:.1f} | {t_pix:.1f} |")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed calls per figure")
    parser.add_argument("--profile", action="store_true", help="also time every pass")
    args = parser.parse_args()
    print(f"weightmaps {weightmaps.__version__}, numpy {np.__version__}, edt {edt_version()}")
    image = nuclei((512, 512), 300, radius=8.0, seed=1)
    volume = balls((64, 256, 256), 300, radius=8.0, seed=1)
    rows = [
        *against_edt("512^2/300", image, args.repeat),
        *against_edt("64x256x256/300", volume, max(3, args.repeat // 2)),
        # Spacing whose squares are not exact in float32: float64 accumulators.
        *against_edt(
            "64x256x256/300, spacing (2, 0.65, 0.65), sigma 3.25",
            volume,
            max(3, args.repeat // 2),
            spacing=(2.0, 0.65, 0.65),
            sigma=3.25,
            target=False,
        ),
        flatness(
            "512^2",
            lambda n: nuclei((512, 512), n, radius=8.0, seed=2),
            (30, 300, 3000),
            args.repeat,
        ),
        flatness(
            "64x256x256",
            lambda n: balls((64, 256, 256), n, radius=8.0, seed=2),
            (30, 300, 3000),
            max(3, args.repeat // 2),
        ),
    ]
    report(rows, None)
    if args.profile:
        profile(image)
        profile(volume)
    return 0


def edt_version() -> str:
    from importlib.metadata import version

    return version("edt")


if __name__ == "__main__":
    sys.exit(main())
