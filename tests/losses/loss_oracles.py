"""Oracles and data shared by the loss suites.

Per-pixel loops in float64 Python arithmetic (cross-entropy, BCE), the
reduction formulas of the losses' docstring written out, a box mean by
convolution, softmax by hand, MONAI's distance field with scipy; the
random batches the suites draw from; and every loss with its module, for
the checks they all share.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
import torch.nn.functional as F
from conftest import random_instances
from scipy import ndimage as ndi

from weightmaps.losses import (
    BalancedBCEWithLogitsLoss,
    StructureLoss,
    WeightedBCEWithLogitsLoss,
    WeightedCrossEntropyLoss,
    balanced_bce_with_logits,
    structure_loss,
    weighted_bce_with_logits,
    weighted_cross_entropy,
)

REDUCED = ("mean", "image_mean", "pixel_mean", "sum")


REDUCTIONS_ALL = (*REDUCED, "none")


NAN, INF = float("nan"), float("inf")


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def ce_data(shape=(2, 3, 4, 5), *, seed=0, ignore=-100, n_ignored=3):
    """Logits, integer target with some ignored pixels, positive weight map."""
    g = gen(seed)
    b, c, *spatial = shape
    logits = torch.randn(shape, generator=g) * 2
    target = torch.randint(0, c, (b, *spatial), generator=g)
    flat = target.view(-1)
    flat[torch.randperm(flat.numel(), generator=g)[:n_ignored]] = ignore
    weight = torch.rand((b, *spatial), generator=g) * 4 + 0.1
    return logits, target, weight


def bce_data(shape=(2, 1, 6, 7), *, seed=0, soft=False):
    g = gen(seed)
    logits = torch.randn(shape, generator=g) * 2
    if soft:
        target = torch.rand(shape, generator=g)
    else:
        target = (torch.rand(shape, generator=g) < 0.3).float()
    weight = torch.rand(shape, generator=g) * 4 + 0.1
    return logits, target, weight


def ce_records(logits, target, weight=None, *, ignore_index=-100, class_weight=None, ls=0.0):
    """Per image, a list of (w*l, total weight) per counted pixel, by loops in float64."""
    b, c = logits.shape[:2]
    cw = [1.0] * c if class_weight is None else [float(v) for v in class_weight]
    images = []
    for i in range(b):
        recs = []
        for idx in itertools.product(*map(range, logits.shape[2:])):
            t = int(target[(i, *idx)])
            if t == ignore_index:
                continue
            scores = [float(logits[(i, k, *idx)]) for k in range(c)]
            top = max(scores)
            lse = top + math.log(sum(math.exp(s - top) for s in scores))
            nll = [lse - s for s in scores]
            loss = (1 - ls) * cw[t] * nll[t] + ls / c * sum(cw[k] * nll[k] for k in range(c))
            w = 1.0 if weight is None else float(weight[(i, *idx)])
            recs.append((w * loss, w * cw[t]))
        images.append(recs)
    return images


def reduce_records(images, reduction):
    """The reduction formulas of the module docstring, written out."""
    flat = [r for recs in images for r in recs]
    num = sum(r[0] for r in flat)
    if reduction == "sum":
        return num
    if reduction == "mean":
        return num / sum(r[1] for r in flat)
    if reduction == "pixel_mean":
        return num / len(flat)
    per = [sum(r[0] for r in recs) / sum(r[1] for r in recs) for recs in images]
    return sum(per) / len(per)


def bce_records(logits, target, weight=None, pos_weight=1.0):
    """Per image records for BCE, in float64 from the closed form."""
    images = []
    for i in range(logits.shape[0]):
        recs = []
        for x, t, w in zip(
            logits[i].flatten().tolist(),
            target[i].flatten().tolist(),
            (torch.ones_like(logits[i]) if weight is None else weight[i]).flatten().tolist(),
            strict=True,
        ):
            log_p = -math.log1p(math.exp(-x))
            log_q = -math.log1p(math.exp(x))
            loss = -(pos_weight * t * log_p + (1 - t) * log_q)
            recs.append((w * loss, w))
        images.append(recs)
    return images


def box_mean(m: torch.Tensor, k: int = 31) -> torch.Tensor:
    """k**d box mean with zero padding, by convolution (not avg_pool)."""
    d = m.ndim - 2
    conv = F.conv2d if d == 2 else F.conv3d
    kernel = torch.ones((1, 1) + (k,) * d, dtype=m.dtype)
    return conv(F.pad(m, (k // 2,) * (2 * d)), kernel) / k**d


def probabilities_np(logits: torch.Tensor) -> np.ndarray:
    x = logits.detach().double().numpy()
    if x.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def semantic_batch(shape, batch=2, n_classes=3, seed=0) -> np.ndarray:
    out = []
    for b in range(batch):
        inst = random_instances(shape, 4 * n_classes, radius=(2.0, 7.0), seed=seed + b)
        out.append(np.where(inst > 0, (inst - 1) % (n_classes - 1) + 1, 0))
    return np.stack(out).astype(np.int64)


def field_np(mask: np.ndarray, spacing=None) -> np.ndarray:
    """MONAI's distance_field of one channel: EDT(fg) + EDT(bg), 0 if empty or full."""
    if mask.any() and not mask.all():
        return ndi.distance_transform_edt(mask, sampling=spacing) + ndi.distance_transform_edt(
            ~mask, sampling=spacing
        )
    return np.zeros(mask.shape)


# (name, call(logits, target, weight, **kw)) for every loss and its module.
BINARY_CALLS = [
    ("bce", weighted_bce_with_logits),
    ("structure", structure_loss),
    ("balanced", balanced_bce_with_logits),
    ("bce_module", lambda x, t, w, **kw: WeightedBCEWithLogitsLoss(**kw)(x, t, w)),
    ("structure_module", lambda x, t, w, **kw: StructureLoss(**kw)(x, t, w)),
    ("balanced_module", lambda x, t, w, **kw: BalancedBCEWithLogitsLoss(**kw)(x, t, w)),
]


CE_CALLS = [
    ("ce", weighted_cross_entropy),
    ("ce_module", lambda x, t, w, **kw: WeightedCrossEntropyLoss(**kw)(x, t, w)),
]
