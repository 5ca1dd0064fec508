"""Signed distance and skeleton maps against the usual ways, as in-run ratios.

Run with ``python benchmarks/bench_new_kinds.py``. Per-mask times of the
maps of issue 15 against the code people use today, timed in the same run:

- signed distance map: Kervadec's ``one_hot2dist`` (two full
  ``distance_transform_edt`` per class) against :func:`signed_distance_map`
  (numpy) and :func:`signed_distance_map_torch` on the CPU (one thread, as
  a data-loader worker runs it);
- skeleton map: ``skimage.morphology.skeletonize`` of every instance alone
  on the whole array (what "per instance" means without boxes) against
  :func:`skeleton_map`.

On 512 x 512 with ~300 nuclei and on 64 x 256 x 256 with ~300 nuclei. The
per-instance reference on the volume takes minutes, so it is timed on a
sample of instances and scaled by the instance count (its cost per
instance does not depend on the instance: one pass over the whole volume).

And one training step (loss, backward) of the Hausdorff distance-transform
loss on 8 x 2 x 256 x 256 logits: as MONAI computes it without cuCIM (scipy's
transform of prediction and target, foreground and background, per sample
and channel, written out here; MONAI's own ``HausdorffDTLoss`` too when it is
installed) against :func:`weightmaps.losses.hausdorff_dt_loss` with the
target's distance map precomputed (read from disk once per epoch, as the
Dataset gives it) and the prediction's by the torch transform.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_kernels import best_time, nuclei, report, row
from scipy import ndimage as ndi
from skimage.morphology import skeletonize

import weightmaps
from weightmaps.kernels.sdf import signed_distance_map
from weightmaps.kernels.sdf_torch import signed_distance_map_torch
from weightmaps.kernels.skeleton import skeleton_map


def nuclei_3d(shape: tuple[int, int, int], n: int, radius: float = 7.0, seed: int = 0):
    """n ball-like nuclei; later ones overwrite, so some touch."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(shape, np.int32)
    for label in range(1, n + 1):
        r = rng.uniform(0.6, 1.2) * radius
        c = rng.uniform(0, shape)
        lo = [max(int(ci - r), 0) for ci in c]
        hi = [min(int(ci + r) + 2, n_) for ci, n_ in zip(c, shape, strict=True)]
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        ball = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
        labels[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]][ball] = label
    return labels


def one_hot2dist(labels: np.ndarray, classes) -> np.ndarray:
    """The boundary-loss authors' way: two full transforms per class present."""
    out = np.zeros((len(classes), *labels.shape), np.float32)
    for k, c in enumerate(classes):
        pos = labels == c
        if pos.any():
            neg = ~pos
            out[k] = (
                ndi.distance_transform_edt(neg) * neg - (ndi.distance_transform_edt(pos) - 1) * pos
            )
    return out


def per_instance_skeletons(labels: np.ndarray, ids) -> np.ndarray:
    out = np.zeros(labels.shape, bool)
    for i in ids:
        out |= skeletonize(labels == i)
    return out


def torch_one_thread(fn, *args, **kwargs):
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return fn(*args, **kwargs)
    finally:
        torch.set_num_threads(before)


def sdf_rows(name: str, labels: np.ndarray, classes, repeat: int) -> list[dict]:
    t_ref = best_time(one_hot2dist, labels, classes, repeat=repeat)
    t_np = best_time(lambda: signed_distance_map(labels, classes=classes), repeat=repeat)
    t_t = best_time(
        lambda: torch_one_thread(signed_distance_map_torch, labels, classes=classes),
        repeat=repeat,
    )
    ours = signed_distance_map(labels, classes=classes)
    same = np.array_equal(ours, one_hot2dist(labels, classes))
    same_t = np.array_equal(signed_distance_map_torch(labels, classes=classes).numpy(), ours)
    return [
        row(
            f"sdf {name}: one_hot2dist / numpy",
            f"{t_ref / t_np:.2f}x",
            "-",
            None,
            f"{t_ref * 1e3:.0f} ms vs {t_np * 1e3:.0f} ms; equal: {same}",
        ),
        row(
            f"sdf {name}: one_hot2dist / torch CPU, 1 thread",
            f"{t_ref / t_t:.2f}x",
            "-",
            None,
            f"{t_t * 1e3:.0f} ms; equal to numpy: {same_t}",
        ),
    ]


def skeleton_rows(name: str, labels: np.ndarray, sample: int | None, repeat: int) -> list[dict]:
    ids = [int(i) for i in np.unique(labels) if i != 0]
    t_ours = best_time(skeleton_map, labels, repeat=repeat)
    if sample is None or sample >= len(ids):
        t0 = time.perf_counter()
        ref = per_instance_skeletons(labels, ids)
        t_ref = time.perf_counter() - t0
        same = str(np.array_equal(ref, skeleton_map(labels).astype(bool)))
        note = ""
    else:
        rng = np.random.default_rng(0)
        picked = [int(i) for i in rng.choice(ids, sample, replace=False)]
        t0 = time.perf_counter()
        ref = per_instance_skeletons(labels, picked)
        t_ref = (time.perf_counter() - t0) * len(ids) / sample
        mine = skeleton_map(np.where(np.isin(labels, picked), labels, 0)).astype(bool)
        same = f"{np.array_equal(ref, mine)} (on the sample)"
        note = f", reference timed on {sample} of {len(ids)} instances and scaled"
    return [
        row(
            f"skeleton {name}: per-instance skimage / ours",
            f"{t_ref / t_ours:.0f}x",
            "-",
            None,
            f"{t_ref:.2f} s vs {t_ours * 1e3:.0f} ms, {len(ids)} instances; equal: {same}{note}",
        )
    ]


def scipy_field(mask: np.ndarray) -> np.ndarray:
    """MONAI's distance_field: EDT(m) + EDT(~m), 0 for an empty or full channel."""
    if not mask.any() or mask.all():
        return np.zeros(mask.shape)
    return ndi.distance_transform_edt(mask) + ndi.distance_transform_edt(~mask)


def scipy_fields(x: torch.Tensor) -> torch.Tensor:
    fields = [[scipy_field(channel.numpy() > 0.5) for channel in item] for item in x]
    return torch.from_numpy(np.array(fields)).float()


def monai_way_step(
    logits: torch.Tensor, target: torch.Tensor, d_g: torch.Tensor | None = None, alpha=2.0
):
    """MONAI's HausdorffDTLoss (softmax, include_background=False, mean) written out:
    the distance fields by scipy on the CPU, every step (the target's too unless
    ``d_g`` is given)."""
    p = torch.softmax(logits, 1)[:, 1:]
    g = torch.nn.functional.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].float()
    with torch.no_grad():
        d_p = scipy_fields(p.detach())
        if d_g is None:
            d_g = scipy_fields(g)
    loss = ((p - g) ** 2 * (d_p**alpha + d_g**alpha)).mean()
    loss.backward()
    return loss


def hausdorff_rows(repeat: int) -> list[dict]:
    from weightmaps.kernels.sdf import boundary_distance_map
    from weightmaps.losses import hausdorff_dt_loss

    labels = [nuclei((256, 256), 60, radius=8.0, seed=s) > 0 for s in range(8)]
    target = torch.from_numpy(np.stack(labels).astype(np.int64))
    # Precomputed once (generate): what the Dataset reads for every step.
    distance = torch.from_numpy(
        np.stack([boundary_distance_map(m.astype(np.uint8), classes=[1]) for m in labels])
    )
    generator = torch.Generator().manual_seed(0)
    start = torch.randn(8, 2, 256, 256, generator=generator) + 2.0 * (
        torch.nn.functional.one_hot(target, 2).movedim(-1, 1) - 0.5
    )

    def ours():
        logits = start.clone().requires_grad_(True)
        hausdorff_dt_loss(logits, target, distance).backward()

    def theirs():
        monai_way_step(start.clone().requires_grad_(True), target)

    def theirs_half():
        monai_way_step(start.clone().requires_grad_(True), target, distance)

    t_ours = best_time(ours, repeat=repeat)
    t_ref = best_time(theirs, repeat=repeat)
    t_half = best_time(theirs_half, repeat=repeat)
    mine = float(hausdorff_dt_loss(start, target, distance))
    reference = float(monai_way_step(start.clone().requires_grad_(True), target).detach())
    same = abs(mine - reference) <= 1e-4 * max(1.0, abs(reference))
    threads = torch.get_num_threads()
    rows = [
        row(
            "HausdorffDT step 8x2x256^2: MONAI's way (scipy, both fields) / "
            "the same with the target's field precomputed",
            f"{t_ref / t_half:.1f}x",
            "-",
            None,
            f"{t_ref * 1e3:.0f} ms vs {t_half * 1e3:.0f} ms",
        ),
        row(
            "HausdorffDT step 8x2x256^2: MONAI's way (scipy, both fields) / "
            "ours (target precomputed, prediction's field by torch)",
            f"{t_ref / t_ours:.1f}x",
            "-",
            None,
            f"{t_ours * 1e3:.0f} ms, CPU, {threads} threads; same loss: {same}",
        ),
    ]
    if torch.cuda.is_available():
        on_gpu = start.cuda(), target.cuda(), distance.cuda()

        def ours_gpu():
            logits = on_gpu[0].clone().requires_grad_(True)
            hausdorff_dt_loss(logits, on_gpu[1], on_gpu[2]).backward()
            torch.cuda.synchronize()

        t_gpu = best_time(ours_gpu, repeat=repeat)
        rows.append(
            row(
                "HausdorffDT step 8x2x256^2: MONAI's way (scipy, CPU) / ours on the GPU",
                f"{t_ref / t_gpu:.0f}x",
                "-",
                None,
                f"{t_gpu * 1e3:.1f} ms on {torch.cuda.get_device_name()}",
            )
        )
    try:
        from monai.losses import HausdorffDTLoss
    except ImportError:
        rows.append(row("HausdorffDT step: MONAI itself", "skipped", "-", None, "no MONAI"))
        return rows
    monai_loss = HausdorffDTLoss(softmax=True, include_background=False, to_onehot_y=True)

    def monai_step():
        logits = start.clone().requires_grad_(True)
        monai_loss(logits, target[:, None]).backward()

    t_monai = best_time(monai_step, repeat=repeat)
    rows.append(
        row(
            "HausdorffDT step 8x2x256^2: MONAI itself / ours",
            f"{t_monai / t_ours:.1f}x",
            "-",
            None,
            f"{t_monai * 1e3:.0f} ms vs {t_ours * 1e3:.0f} ms",
        )
    )
    return rows


def run(quick: bool) -> list[dict]:
    rows = []
    labels = nuclei((512, 512), 300, radius=8.0, seed=1)
    foreground = (labels > 0).astype(np.uint8)
    semantic = np.where(labels > 0, (labels - 1) % 4 + 1, 0).astype(np.uint8)
    rows += sdf_rows("512^2 binary", foreground, [1], repeat=3)
    rows += sdf_rows("512^2 4 classes", semantic, [1, 2, 3, 4], repeat=3)
    rows += skeleton_rows("512^2/300", labels, None, repeat=3)

    volume = nuclei_3d((64, 256, 256), 300, seed=2)
    rows += sdf_rows("64x256x256 binary", (volume > 0).astype(np.uint8), [1], repeat=2)
    rows += skeleton_rows("64x256x256/300", volume, 3 if quick else 10, repeat=1)
    rows += hausdorff_rows(repeat=2 if quick else 3)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller reference sample in 3-D")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    args = parser.parse_args()
    print(f"weightmaps {weightmaps.__version__}, numpy {np.__version__}, torch {torch.__version__}")
    report(run(args.quick), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
