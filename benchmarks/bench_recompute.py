"""Precompute or recompute: the two ways to train with weight maps, measured in one run.

Run with ``python benchmarks/bench_recompute.py`` (part of ``make bench``).
On 8 instance masks of 512 x 512 with ~300 nuclei each (one batch):

- the cost of a batch's U-Net + edge maps: read from disk by the Dataset
  (the maps' share of the batch: items with maps less items with labels
  only) against recomputed from the batch's labels by
  :class:`weightmaps.recompute.RecomputeMaps` on the CPU (the numpy kernels;
  the torch kernels too) and on a GPU when there is one;
- the error of precomputed maps warped with their mask by the U-Net paper's
  elastic deformation (:class:`weightmaps.transforms.RandomElastic`, 3 x 3
  grid, 10 pixels) against the maps recomputed from the warped labels, for
  the U-Net, edge and signed distance maps.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import torch
from bench_kernels import best_time, nuclei, report, row
from torch.utils.data import default_collate

import weightmaps
from weightmaps.data import WeightMapDataset
from weightmaps.recipe import compute_maps
from weightmaps.recompute import RecomputeMaps
from weightmaps.settings import MapSettings
from weightmaps.transforms import RandomElastic

BATCH = 8
SHAPE = (512, 512)
SETTINGS = {"mask_type": "instance"}


def make_masks(folder: Path) -> list[np.ndarray]:
    folder.mkdir(parents=True)
    masks = [nuclei(SHAPE, 300, seed=seed) for seed in range(BATCH)]
    for i, mask in enumerate(masks):
        tifffile.imwrite(folder / f"m{i}.tif", mask.astype(np.uint16))
    return masks


def batch_of(dataset: WeightMapDataset) -> dict:
    return default_collate([dataset[i] for i in range(BATCH)])


def cost_rows(root: Path, repeat: int) -> list[dict]:
    masks_dir, maps_dir = root / "masks", root / "maps"
    weightmaps.generate(
        masks_dir, maps_dir, kinds=["unet", "edge"], workers=1, progress=False, **SETTINGS
    )
    with_maps = WeightMapDataset(masks_dir, maps_dir, kinds=("unet", "edge"), labels=True)
    labels_only = WeightMapDataset(masks_dir, maps_dir, kinds=(), labels=True)
    t_read = best_time(lambda: batch_of(with_maps), repeat=repeat)
    t_labels = best_time(lambda: batch_of(labels_only), repeat=repeat)
    t_maps = max(t_read - t_labels, 1e-9)
    labels = batch_of(labels_only)["labels"]
    written = batch_of(with_maps)["weights"]

    rows = [
        row(
            "batch 8x512^2: reading U-Net + edge maps (Dataset, SHA-256 checked)",
            f"{t_maps * 1e3:.0f} ms",
            "-",
            None,
            f"items with maps {t_read * 1e3:.0f} ms, labels only {t_labels * 1e3:.0f} ms",
        )
    ]
    devices = [("CPU, numpy kernels", "cpu"), ("CPU, torch kernels", "torch:cpu")]
    if torch.cuda.is_available():
        devices.append((f"GPU ({torch.cuda.get_device_name()})", "cuda"))
    for name, device in devices:
        recompute = RecomputeMaps(("unet", "edge"), settings=SETTINGS, device=device)

        def step(recompute=recompute, device=device):
            maps = recompute.maps(labels)
            if device == "cuda":
                torch.cuda.synchronize()
            return maps

        t = best_time(step, repeat=repeat)
        got = step()
        error = max(
            float((got[k].cpu() - written[k]).abs().max()) for k in ("unet", "edge")
        )
        rows.append(
            row(
                f"batch 8x512^2: recomputing U-Net + edge, {name} / reading them",
                f"{t / t_maps:.1f}x",
                "-",
                None,
                f"{t * 1e3:.0f} ms per batch ({torch.get_num_threads()} torch threads); "
                f"largest difference from the written maps {error:.1e}",
            )
        )
    return rows


def warp_error_rows(masks: list[np.ndarray]) -> list[dict]:
    """Warped precomputed maps against maps recomputed from the warped labels."""
    settings = MapSettings(**SETTINGS, allow_empty=True)
    kinds = ["unet", "edge", "sdf"]
    errors: dict[str, list[np.ndarray]] = {k: [] for k in kinds}
    scale: dict[str, list[float]] = {k: [] for k in kinds}
    generator = torch.Generator().manual_seed(0)
    warp = RandomElastic(grid=3, std=10.0, generator=generator)
    for mask in masks:
        maps = compute_maps(mask, settings, kinds=kinds).maps
        sample = warp(
            labels=mask.astype(np.int64),
            weight_unet=maps["unet"],
            weight_edge=maps["edge"],
            weight_sdf=np.moveaxis(maps["sdf"], 0, -1),
        )
        exact = compute_maps(sample["labels"], settings, kinds=kinds).maps
        warped = {
            "unet": sample["weight_unet"],
            "edge": sample["weight_edge"],
            "sdf": np.moveaxis(sample["weight_sdf"], -1, 0),
        }
        for kind in kinds:
            errors[kind].append(np.abs(warped[kind] - exact[kind]).ravel())
            scale[kind].append(float(np.abs(exact[kind] - (0 if kind == "sdf" else 1)).mean()))
    rows = []
    notes = {
        "unet": ("border term w - 1, w0 = 10", 1.0),
        "edge": ("edge term w - 1, alpha = 5", 0.5),
        "sdf": ("|phi|, pixels", 1.0),
    }
    for kind in kinds:
        error = np.concatenate(errors[kind])
        what, threshold = notes[kind]
        rows.append(
            row(
                f"elastic 3x3 grid, 10 px: warped {kind} map against recomputed, mean |error|",
                f"{error.mean():.3f}",
                "-",
                None,
                f"max {error.max():.2f}; {100 * (error > threshold).mean():.2f}% of pixels off "
                f"by > {threshold}; mean {what} {np.mean(scale[kind]):.3f}",
            )
        )
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    print(f"weightmaps {weightmaps.__version__}, torch {torch.__version__}")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        masks = make_masks(Path(tmp) / "masks")
        rows = cost_rows(Path(tmp), repeat=2 if args.quick else 3)
    rows += warp_error_rows(masks)
    report(rows, args.json)
    print(f"({time.perf_counter() - start:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
