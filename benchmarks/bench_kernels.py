"""Speed and memory of the weight-map kernels, as ratios measured in one run.

Run with ``make bench`` (or ``python benchmarks/bench_kernels.py``). Every
figure is a ratio against a reference timed in the same process, because
these machines are shared and noisy; absolute times are printed for context.

Targets (issue 2):
- U-Net map >= 100x the per-instance reference at 512x512 with 300 instances,
  and <= 2x one full-image ``scipy.ndimage.distance_transform_edt``;
- time at 1000 instances / time at 50 instances on 1024x1024: <= 2;
- peak RSS for 2048x2048 with 1000 instances: <= 250 MB;
- edge map >= 30x ``F.avg_pool2d`` (k=31) run by torch on the CPU.

The per-instance bounding-box road (one distance transform per instance on
its box grown by the cut-off, with a running two smallest) is measured too,
to show why the library uses the separable transform.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

import weightmaps
from weightmaps import edge_weight_map, read_mask, unet_weight_map
from weightmaps.unet import border_cutoff

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata"


def nuclei(shape: tuple[int, int], n: int, radius: float = 9.0, seed: int = 0) -> np.ndarray:
    """n disk-like nuclei with random radii; later ones overwrite, so some touch."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for label in range(1, n + 1):
        r = rng.uniform(0.6, 1.2) * radius
        cy, cx = rng.uniform(0, shape[0]), rng.uniform(0, shape[1])
        y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 2, shape[0])
        x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 2, shape[1])
        yy, xx = np.ogrid[y0:y1, x0:x1]
        labels[y0:y1, x0:x1][(yy - cy) ** 2 + (xx - cx) ** 2 <= r * r] = label
    return labels


def reference_unet(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """The widely copied snippet: one full transform per instance, stacked and sorted."""
    ids = np.unique(labels)
    ids = ids[ids > 0]
    stack = np.stack([ndi.distance_transform_edt(labels != i) for i in ids])
    stack.sort(axis=0)
    d1, d2 = stack[0], stack[1]
    return 1.0 + w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2)) * (labels == 0)


def reference_unet_lean(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Same formula with a running two smallest, for masks too big to stack."""
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for i in np.unique(labels[labels > 0]):
        d = ndi.distance_transform_edt(labels != i)
        d2 = np.where(d < d1, d1, np.minimum(d2, d))
        d1 = np.minimum(d1, d)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    border[~np.isfinite(d2) | (labels != 0)] = 0
    return 1.0 + border


def bbox_unet(labels: np.ndarray, w0: float = 10.0, sigma: float = 5.0) -> np.ndarray:
    """Road (a): per instance, a transform on its box grown by the cut-off."""
    cut = border_cutoff(sigma)
    grow = int(math.ceil(cut)) + 1
    d1 = np.full(labels.shape, np.inf)
    d2 = np.full(labels.shape, np.inf)
    for i, box in enumerate(ndi.find_objects(labels), start=1):
        if box is None:
            continue
        grown = tuple(
            slice(max(s.start - grow, 0), min(s.stop + grow, n))
            for s, n in zip(box, labels.shape, strict=True)
        )
        d = ndi.distance_transform_edt(labels[grown] != i)
        a1, a2 = d1[grown], d2[grown]
        a2[...] = np.where(d < a1, a1, np.minimum(a2, d))
        np.minimum(a1, d, out=a1)
    border = w0 * np.exp(-((d1 + d2) ** 2) / (2 * sigma**2))
    border[~np.isfinite(d2) | (labels != 0) | (d1 + d2 > cut)] = 0
    return 1.0 + border


def best_time(fn, *args, repeat: int = 5) -> float:
    fn(*args)  # warm-up: JIT compilation and caches
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return min(times)


def once(fn, *args) -> tuple[float, object]:
    t0 = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t0, out


_RSS_CHILD = """
import sys, time
from pathlib import Path
import numpy as np
import weightmaps

def hwm_kb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])

weightmaps.unet_weight_map(np.zeros((8, 8), np.int32))  # compile first
labels = np.load(sys.argv[1], allow_pickle=False)
base = hwm_kb()
t0 = time.perf_counter()
w = weightmaps.unet_weight_map(labels)
dt = time.perf_counter() - t0
print(base, hwm_kb(), dt)
"""


def peak_rss_mb(labels: np.ndarray) -> tuple[float, float, float]:
    """(peak RSS of the whole process, peak above imports + loaded input, seconds).

    Read from /proc/self/status (VmHWM) in a fresh process: ``ru_maxrss``
    would carry over the parent's peak across fork and exec.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "labels.npy"
        np.save(path, labels)
        out = subprocess.run(
            [sys.executable, "-c", _RSS_CHILD, str(path)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    base, peak, dt = int(out[0]), int(out[1]), float(out[2])
    return peak / 1024, (peak - base) / 1024, dt


def torch_edge(mask: np.ndarray, k: int = 31, alpha: float = 5.0):
    import torch
    import torch.nn.functional as F

    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    return 1 + alpha * torch.abs(F.avg_pool2d(m, kernel_size=k, stride=1, padding=k // 2) - m)


def row(name: str, value: str, target: str, ok: bool | None, note: str = "") -> dict:
    return {
        "figure": name,
        "value": value,
        "target": target,
        "ok": "-" if ok is None else ("yes" if ok else "NO"),
        "note": note,
    }


def report(rows: list[dict], json_path: Path | None) -> None:
    """Print the rows as a Markdown table (and write them as JSON when asked)."""
    print("| figure | value | target | met | note |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['figure']} | {r['value']} | {r['target']} | {r['ok']} | {r['note']} |")
    if json_path:
        json_path.write_text(json.dumps(rows, indent=2))


def run(quick: bool) -> list[dict]:
    rows = []

    # 1. U-Net map vs the reference and vs one EDT, 512x512, 300 instances.
    labels = nuclei((512, 512), 300, radius=8.0, seed=1)
    t_ours = best_time(unet_weight_map, labels)
    t_ref, ref = once(reference_unet, labels)
    t_edt = best_time(ndi.distance_transform_edt, labels == 0)
    t_bbox = best_time(bbox_unet, labels, repeat=3)
    err = float(np.abs(unet_weight_map(labels) - ref).max())
    rows.append(
        row(
            "U-Net 512^2/300: reference / ours",
            f"{t_ref / t_ours:.0f}x",
            ">= 100x",
            t_ref / t_ours >= 100,
            f"ref {t_ref:.2f} s, ours {t_ours * 1e3:.1f} ms, max err {err:.1e}",
        )
    )
    rows.append(
        row(
            "U-Net 512^2/300: ours / one full EDT",
            f"{t_ours / t_edt:.2f}x",
            "<= 2x",
            t_ours / t_edt <= 2,
            f"EDT {t_edt * 1e3:.1f} ms",
        )
    )
    rows.append(
        row(
            "U-Net 512^2/300: reference / bbox road (a)",
            f"{t_ref / t_bbox:.0f}x",
            "-",
            None,
            f"bbox {t_bbox * 1e3:.1f} ms",
        )
    )

    # 2. Scaling with the number of instances on the same area.
    few = nuclei((1024, 1024), 50, radius=10.0, seed=2)
    many = nuclei((1024, 1024), 1000, radius=10.0, seed=3)
    t_few, t_many = best_time(unet_weight_map, few), best_time(unet_weight_map, many)
    rows.append(
        row(
            "U-Net 1024^2: time 1000 inst / 50 inst",
            f"{t_many / t_few:.2f}",
            "<= 2",
            t_many / t_few <= 2,
            f"{t_few * 1e3:.0f} ms vs {t_many * 1e3:.0f} ms",
        )
    )
    tb_few, tb_many = best_time(bbox_unet, few, repeat=2), best_time(bbox_unet, many, repeat=2)
    rows.append(
        row(
            "bbox road (a) 1024^2: 1000 inst / 50 inst",
            f"{tb_many / tb_few:.2f}",
            "-",
            None,
            f"{tb_few * 1e3:.0f} ms vs {tb_many * 1e3:.0f} ms",
        )
    )

    # 3. Peak memory, 2048x2048 with 1000 instances (the reference would stack 32 GB).
    big = nuclei((2048, 2048), 1000, radius=14.0, seed=4)
    total, extra, dt = peak_rss_mb(big)
    rows.append(
        row(
            "U-Net 2048^2/1000: peak RSS",
            f"{total:.0f} MB",
            "<= 250 MB",
            total <= 250,
            f"{extra:.0f} MB above imports + input; {dt:.2f} s; "
            f"reference stack would be {1000 * big.size * 8 / 1e9:.0f} GB",
        )
    )

    # 4. Edge map vs avg_pool2d on the CPU.
    mask = nuclei((1024, 1024), 200, radius=20.0, seed=5) > 0
    t_edge = best_time(edge_weight_map, mask)
    t_pool = best_time(torch_edge, mask, repeat=3)
    err = float(np.abs(edge_weight_map(mask) - torch_edge(mask)[0, 0].numpy()).max())
    rows.append(
        row(
            "edge 1024^2 k=31: avg_pool2d / ours",
            f"{t_pool / t_edge:.0f}x",
            ">= 30x",
            t_pool / t_edge >= 30,
            f"avg_pool2d {t_pool * 1e3:.0f} ms, ours {t_edge * 1e3:.1f} ms, max err {err:.1e}",
        )
    )

    # 5. Real nuclei, when ../shared/realdata is there.
    label_dir = REALDATA / "dsb2018" / "labels"
    if label_dir.is_dir():
        files = sorted(label_dir.glob("*.png"))
        if quick:
            files = files[:4]
        t_ours_all = t_ref_all = 0.0
        worst = 0.0
        for path in files:
            lab = read_mask(path)
            t_ours_all += best_time(unet_weight_map, lab, repeat=2)
            t, ref = once(reference_unet_lean, lab)
            t_ref_all += t
            worst = max(worst, float(np.abs(unet_weight_map(lab) - ref).max()))
        rows.append(
            row(
                f"U-Net dsb2018 ({len(files)} masks): reference / ours",
                f"{t_ref_all / t_ours_all:.0f}x",
                "-",
                worst <= 1e-4,
                f"ref {t_ref_all:.1f} s, ours {t_ours_all * 1e3:.0f} ms, "
                f"max err {worst:.1e} (<= 1e-4 = 1e-5 w0)",
            )
        )
    else:
        rows.append(row("dsb2018", "skipped", "-", None, "../shared/realdata absent"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer real masks")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    print(f"weightmaps {weightmaps.__version__}, numpy {np.__version__}")
    report(run(args.quick), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
