"""The losses against independent oracles.

Oracles: PyTorch's own reduced losses, per-pixel loops in float64 Python
arithmetic, hand-computed values, and the user's seed code (000, 003, 004)
transcribed with its reduction fixed.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from weightmaps.losses import (
    BalancedBCEWithLogitsLoss,
    DeepSupervisionLoss,
    StructureLoss,
    WeightedBCEWithLogitsLoss,
    WeightedCrossEntropyLoss,
    balanced_bce_with_logits,
    deep_supervision_loss,
    f3net_factors,
    structure_loss,
    weighted_bce_with_logits,
    weighted_cross_entropy,
)

REDUCED = ("mean", "image_mean", "pixel_mean", "sum")


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


# ----------------------------------------------------------------------------
# Oracles
# ----------------------------------------------------------------------------


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


def structure_loop(pred, mask, weit=None):
    """The intended structure loss, one image at a time in float64."""
    total = 0.0
    for i in range(pred.shape[0]):
        x = pred[i : i + 1].double()
        m = mask[i : i + 1].double()
        w = 1 + 5 * (box_mean(m) - m).abs() if weit is None else weit[i : i + 1].double()
        p = torch.sigmoid(x)
        bce = -(m * torch.log(p) + (1 - m) * torch.log(1 - p))
        wbce = (w * bce).sum() / w.sum()
        inter = (p * m * w).sum()
        union = ((p + m) * w).sum()
        total = total + wbce + 1 - (inter + 1) / (union - inter + 1)
    return total / pred.shape[0]


def seed004_structure_loss(pred, mask, reduction):
    # Seed 004 as published, except the deprecated reduce='none' is spelled
    # out as the reduction it really produces ("mean"), or as intended ("none").
    weit = 1 + 5 * torch.abs(F.avg_pool2d(mask, kernel_size=31, stride=1, padding=15) - mask)
    wbce = F.binary_cross_entropy_with_logits(pred, mask, reduction=reduction)
    wbce = (weit * wbce).sum(dim=(2, 3)) / weit.sum(dim=(2, 3))
    pred = torch.sigmoid(pred)
    inter = ((pred * mask) * weit).sum(dim=(2, 3))
    union = ((pred + mask) * weit).sum(dim=(2, 3))
    wiou = 1 - (inter + 1) / (union - inter + 1)
    return (wbce + wiou).mean()


def seed003_loop(input, target):
    # Seed 003, first version (double loop); input holds probabilities.
    input = input.view(input.shape[0], -1)
    target = target.view(target.shape[0], -1)
    loss = 0.0
    for i in range(input.shape[0]):
        beta = 1 - torch.sum(target[i]) / target.shape[1]
        for j in range(input.shape[1]):
            loss += -(
                beta * target[i][j] * torch.log(input[i][j])
                + (1 - beta) * (1 - target[i][j]) * torch.log(1 - input[i][j])
            )
    return loss


def seed003_v2(input, target):
    # Seed 003, second version (per image, log clamped at -100).
    input = input.view(input.shape[0], -1)
    target = target.view(target.shape[0], -1)
    floor = torch.tensor([-100.0], dtype=input.dtype)
    loss = 0.0
    for i in range(input.shape[0]):
        beta = 1 - torch.sum(target[i]) / target.shape[1]
        x = torch.max(torch.log(input[i]), floor)
        y = torch.max(torch.log(1 - input[i]), floor)
        loss += torch.sum(-(beta * target[i] * x + (1 - beta) * (1 - target[i]) * y))
    return loss


# ----------------------------------------------------------------------------
# Weighted cross-entropy
# ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {},
        {"ignore_index": -100},
        {"class_weight": torch.tensor([0.5, 2.0, 1.3])},
        {"label_smoothing": 0.2},
        {"class_weight": torch.tensor([0.5, 2.0, 1.3]), "label_smoothing": 0.1},
    ],
    ids=["plain", "ignore", "class_weight", "smoothing", "class_weight+smoothing"],
)
def test_ce_ones_map_equals_pytorch(kw):
    logits, target, _ = ce_data()
    ref_kw = {("weight" if k == "class_weight" else k): v for k, v in kw.items()}
    expected = F.cross_entropy(logits, target, **ref_kw)
    ones = torch.ones(target.shape)
    got = weighted_cross_entropy(logits, target, ones, **kw)
    torch.testing.assert_close(got, expected, rtol=1e-6, atol=1e-6)
    # None means the same map of ones.
    torch.testing.assert_close(weighted_cross_entropy(logits, target, None, **kw), got)


@pytest.mark.parametrize("reduction", REDUCED)
@pytest.mark.parametrize(
    "kw",
    [{}, {"class_weight": torch.tensor([0.5, 2.0, 1.3])}, {"label_smoothing": 0.3}],
    ids=["plain", "class_weight", "smoothing"],
)
def test_ce_reductions_against_loop(reduction, kw):
    logits, target, weight = ce_data()
    expected = reduce_records(
        ce_records(
            logits,
            target,
            weight,
            class_weight=kw.get("class_weight"),
            ls=kw.get("label_smoothing", 0.0),
        ),
        reduction,
    )
    got = weighted_cross_entropy(logits, target, weight, reduction=reduction, **kw)
    assert got.dtype == torch.float32 and got.ndim == 0
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_ce_reductions_differ():
    # The names must select different formulas on a non-uniform map.
    logits, target, weight = ce_data()
    values = [weighted_cross_entropy(logits, target, weight, reduction=r).item() for r in REDUCED]
    assert len({round(v, 5) for v in values}) == len(REDUCED)


def test_ce_none_is_per_pixel_weighted_loss():
    logits, target, weight = ce_data(ignore=255)
    got = weighted_cross_entropy(logits, target, weight, reduction="none", ignore_index=255)
    assert got.shape == target.shape
    assert torch.all(got[target == 255] == 0)
    per_pixel = F.cross_entropy(logits, target, reduction="none", ignore_index=255)
    torch.testing.assert_close(got, weight * per_pixel)


def test_ce_by_hand():
    # Two pixels, two classes. Pixel 1: logits (0, 0), target 1 -> ln 2.
    # Pixel 2: logits (ln 3, 0), target 0 -> -ln(3/4). Weights 1 and 3.
    logits = torch.tensor([[[[0.0, math.log(3.0)]], [[0.0, 0.0]]]])  # (1, 2, 1, 2)
    target = torch.tensor([[[1, 0]]])
    weight = torch.tensor([[[1.0, 3.0]]])
    l1, l2 = math.log(2), math.log(4 / 3)
    mean = weighted_cross_entropy(logits, target, weight)
    assert mean.item() == pytest.approx((l1 + 3 * l2) / 4, rel=1e-6)
    total = weighted_cross_entropy(logits, target, weight, reduction="sum")
    assert total.item() == pytest.approx(l1 + 3 * l2, rel=1e-6)
    pixel = weighted_cross_entropy(logits, target, weight, reduction="pixel_mean")
    assert pixel.item() == pytest.approx((l1 + 3 * l2) / 2, rel=1e-6)
    # Class weight 2 on class 1: w_total = (2, 3).
    cw = torch.tensor([1.0, 2.0])
    got = weighted_cross_entropy(logits, target, weight, class_weight=cw)
    assert got.item() == pytest.approx((2 * l1 + 3 * l2) / 5, rel=1e-6)


def test_ce_image_mean_is_seed000():
    # Seed 000 (the per-image rescaled version it quotes), run as written.
    logits, target, _ = ce_data(n_ignored=0)
    batch_size, _, h, w = logits.shape
    weights = torch.rand(batch_size, 1, h, w, generator=gen(5)) * 2 + 1
    logp = F.log_softmax(logits, dim=1)
    logp = logp.gather(1, target.view(batch_size, 1, h, w))
    weighted_logp = (logp * weights).view(batch_size, -1)
    weighted_loss = weighted_logp.sum(1) / weights.view(batch_size, -1).sum(1)
    weighted_loss = -1.0 * weighted_loss.mean()
    got = weighted_cross_entropy(logits, target, weights, reduction="image_mean")
    torch.testing.assert_close(got, weighted_loss)
    # Without the per-image step the value differs: the test can tell them apart.
    assert weighted_cross_entropy(logits, target, weights).item() != pytest.approx(
        weighted_loss.item(), rel=1e-4
    )


def test_ce_weight_with_channel_dim_and_integer_targets():
    logits, target, weight = ce_data()
    base = weighted_cross_entropy(logits, target, weight, ignore_index=-100)
    torch.testing.assert_close(weighted_cross_entropy(logits, target, weight[:, None]), base)
    t8 = target.masked_fill(target < 0, 255).to(torch.uint8)
    got = weighted_cross_entropy(logits, t8, weight, ignore_index=255)
    torch.testing.assert_close(got, base)


def test_ce_ignored_pixels_count_nowhere():
    logits, target, weight = ce_data(n_ignored=6)
    ignored = target == -100
    # Garbage weights on ignored pixels (even NaN) change nothing.
    noisy = weight.clone()
    noisy[ignored] = float("nan")
    noisy.view(-1)[ignored.view(-1).nonzero()[0]] = 1e6
    for r in REDUCED:
        a = weighted_cross_entropy(logits, target, weight, reduction=r)
        b = weighted_cross_entropy(logits, target, noisy, reduction=r)
        torch.testing.assert_close(a, b)
    # pixel_mean divides by the counted pixels only.
    total = weighted_cross_entropy(logits, target, weight, reduction="sum")
    pixel = weighted_cross_entropy(logits, target, weight, reduction="pixel_mean")
    assert pixel.item() == pytest.approx(total.item() / (~ignored).sum().item(), rel=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "image_mean", "pixel_mean"])
def test_ce_zero_weight_gives_zero_not_nan(reduction):
    logits, target, weight = ce_data()
    logits.requires_grad_(True)
    got = weighted_cross_entropy(logits, target, torch.zeros_like(weight), reduction=reduction)
    assert got.item() == 0.0 and got.requires_grad
    got.backward()
    assert torch.all(logits.grad == 0)
    # Every pixel ignored: PyTorch's own mean is NaN, ours is 0.
    all_ignored = torch.full_like(target, -100)
    got = weighted_cross_entropy(logits, all_ignored, weight, reduction=reduction)
    assert got.item() == 0.0


def test_ce_image_mean_skips_images_without_weight():
    logits, target, weight = ce_data(n_ignored=0)
    weight[1] = 0
    got = weighted_cross_entropy(logits, target, weight, reduction="image_mean")
    alone = weighted_cross_entropy(logits[:1], target[:1], weight[:1], reduction="mean")
    torch.testing.assert_close(got, alone)


def test_ce_gradient_matches_formula():
    logits, target, weight = ce_data()
    cw = torch.tensor([0.5, 2.0, 1.3])
    x = logits.clone().requires_grad_(True)
    weighted_cross_entropy(x, target, weight, class_weight=cw).backward()

    x64 = logits.double().requires_grad_(True)
    valid = target != -100
    t = target.clamp(min=0)
    nll = -torch.log_softmax(x64, dim=1).gather(1, t[:, None])[:, 0]
    w = weight.double() * cw.double()[t] * valid
    ((w * nll).sum() / w.sum()).backward()
    torch.testing.assert_close(x.grad, x64.grad.float(), rtol=1e-5, atol=1e-7)


def test_ce_3d_against_loop():
    logits, target, weight = ce_data((2, 3, 3, 4, 2), seed=3)
    for r in REDUCED:
        expected = reduce_records(ce_records(logits, target, weight), r)
        got = weighted_cross_entropy(logits, target, weight[:, None], reduction=r)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_ce_bf16_and_autocast_compute_in_float32():
    logits, target, weight = ce_data()
    lb = logits.bfloat16().requires_grad_(True)
    got = weighted_cross_entropy(lb, target, weight.bfloat16())
    assert got.dtype == torch.float32
    # Exactly the float32 computation on the same (bf16-rounded) inputs...
    ref = weighted_cross_entropy(lb.detach().float(), target, weight.bfloat16().float())
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    # ...and close to the unrounded float32 one.
    full = weighted_cross_entropy(logits, target, weight)
    assert got.item() == pytest.approx(full.item(), rel=2e-2)
    got.backward()
    assert lb.grad.dtype == torch.bfloat16
    with torch.autocast("cpu", dtype=torch.bfloat16):
        lin = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            lin.weight.copy_(torch.eye(3)[:, :, None, None])
            lin.bias.zero_()
        out = lin(logits)
        assert out.dtype == torch.bfloat16
        inside = weighted_cross_entropy(out, target, weight)
    assert inside.dtype == torch.float32
    torch.testing.assert_close(inside, weighted_cross_entropy(out.float(), target, weight))


def test_ce_errors():
    logits = torch.zeros(2, 3, 32, 32)
    target = torch.zeros(2, 32, 32, dtype=torch.long)
    with pytest.raises(
        ValueError,
        match=r"weight shape \(2, 1, 30, 32\) does not match "
        r"target shape \(2, 32, 32\)",
    ):
        weighted_cross_entropy(logits, target, torch.ones(2, 1, 30, 32))
    with pytest.raises(ValueError, match=r"target shape \(2, 30, 32\) does not match logits"):
        weighted_cross_entropy(logits, target[:, :30], None)
    with pytest.raises(TypeError, match="integer class ids"):
        weighted_cross_entropy(logits, target.float(), None)
    with pytest.raises(TypeError, match="floating-point"):
        weighted_cross_entropy(logits.long(), target, None)
    with pytest.raises(ValueError, match="reduction must be one of"):
        weighted_cross_entropy(logits, target, None, reduction="average")
    with pytest.raises(ValueError, match=r"class_weight shape \(2,\) does not match the 3"):
        weighted_cross_entropy(logits, target, None, class_weight=torch.ones(2))
    with pytest.raises(ValueError, match="reduction must be one of"):
        WeightedCrossEntropyLoss(reduction="avg")


def test_ce_module_matches_function():
    logits, target, weight = ce_data(ignore=255)
    cw = torch.tensor([0.5, 2.0, 1.3])
    kw = {
        "reduction": "image_mean",
        "ignore_index": 255,
        "class_weight": cw,
        "label_smoothing": 0.1,
    }
    module = WeightedCrossEntropyLoss(**kw)
    assert "class_weight" in module.state_dict()
    torch.testing.assert_close(
        module(logits, target, weight), weighted_cross_entropy(logits, target, weight, **kw)
    )


# ----------------------------------------------------------------------------
# Weighted BCE
# ----------------------------------------------------------------------------


@pytest.mark.parametrize("pos_weight", [None, 3.0])
def test_bce_ones_map_equals_pytorch(pos_weight):
    logits, target, _ = bce_data(soft=True)
    pw = None if pos_weight is None else torch.tensor([pos_weight])
    expected = F.binary_cross_entropy_with_logits(logits, target, pos_weight=pw)
    got = weighted_bce_with_logits(logits, target, torch.ones_like(target), pos_weight=pos_weight)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(weighted_bce_with_logits(logits, target, None, pos_weight=pw), got)


@pytest.mark.parametrize("reduction", REDUCED)
@pytest.mark.parametrize("soft", [False, True])
def test_bce_reductions_against_closed_form(reduction, soft):
    logits, target, weight = bce_data(soft=soft)
    expected = reduce_records(bce_records(logits, target, weight, pos_weight=2.0), reduction)
    got = weighted_bce_with_logits(logits, target, weight, reduction=reduction, pos_weight=2.0)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected, rel=1e-5)


def test_bce_shape_forms_agree():
    logits, target, weight = bce_data()
    base = weighted_bce_with_logits(logits, target, weight)
    forms = [
        (logits, target[:, 0], weight),
        (logits, target, weight[:, 0]),
        (logits[:, 0], target[:, 0], weight[:, 0]),
        (logits[:, 0], target, weight),
        (logits[:, 0], target[:, 0], weight),
    ]
    for x, t, w in forms:
        torch.testing.assert_close(weighted_bce_with_logits(x, t, w), base)
        none = weighted_bce_with_logits(x, t, w, reduction="none")
        assert none.shape == x.shape
    none = weighted_bce_with_logits(logits, target, weight, reduction="none")
    per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    torch.testing.assert_close(none, weight * per_pixel)
    # A bool target is a binary one.
    torch.testing.assert_close(weighted_bce_with_logits(logits, target.bool(), weight), base)


def test_bce_gradient_matches_formula():
    logits, target, weight = bce_data(soft=True)
    x = logits.clone().requires_grad_(True)
    weighted_bce_with_logits(x, target, weight, reduction="image_mean").backward()
    x64 = logits.double().requires_grad_(True)
    p = torch.sigmoid(x64)
    w = weight.double()
    loss = -w * (target * torch.log(p) + (1 - target) * torch.log(1 - p))
    (loss.sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3))).mean().backward()
    torch.testing.assert_close(x.grad, x64.grad.float(), rtol=1e-5, atol=1e-7)


def test_bce_zero_weight_and_3d():
    logits, target, weight = bce_data((2, 1, 3, 4, 5), seed=2, soft=True)
    for r in REDUCED:
        expected = reduce_records(bce_records(logits, target, weight), r)
        got = weighted_bce_with_logits(logits, target[:, 0], weight, reduction=r)
        assert got.item() == pytest.approx(expected, rel=1e-5)
    x = logits.clone().requires_grad_(True)
    got = weighted_bce_with_logits(x, target, torch.zeros_like(weight))
    assert got.item() == 0.0
    got.backward()
    assert torch.all(x.grad == 0)


def test_bce_bf16_computes_in_float32():
    logits, target, weight = bce_data()
    got = weighted_bce_with_logits(logits.half(), target.half(), weight.bfloat16())
    assert got.dtype == torch.float32
    ref = weighted_bce_with_logits(logits.half().float(), target, weight.bfloat16().float())
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)


def test_bce_errors():
    logits = torch.zeros(2, 1, 32, 32)
    target = torch.zeros(2, 32, 32)
    with pytest.raises(ValueError, match=r"weight shape \(2, 1, 30, 32\) does not match"):
        weighted_bce_with_logits(logits, target, torch.ones(2, 1, 30, 32))
    with pytest.raises(ValueError, match=r"target shape \(2, 31, 32\) does not match"):
        weighted_bce_with_logits(logits, target[:, :31], None)
    with pytest.raises(TypeError, match="0/255"):
        weighted_bce_with_logits(logits, target.to(torch.uint8), None)
    with pytest.raises(TypeError, match="floating-point"):
        weighted_bce_with_logits(logits.int(), target, None)


def test_bce_module_matches_function():
    logits, target, weight = bce_data(soft=True)
    module = WeightedBCEWithLogitsLoss(reduction="pixel_mean", pos_weight=2.5)
    expected = weighted_bce_with_logits(
        logits, target, weight, reduction="pixel_mean", pos_weight=2.5
    )
    torch.testing.assert_close(module(logits, target, weight), expected)


# ----------------------------------------------------------------------------
# Structure loss
# ----------------------------------------------------------------------------


def blob_data(shape=(3, 1, 24, 20), seed=0):
    """Logits and a binary mask with a blob and some foreground on the border."""
    g = gen(seed)
    mask = torch.zeros(shape)
    for i in range(shape[0]):
        mask[i, :, 4 + i : 14 + i, 3 : 12 + 2 * i] = 1.0
    mask[0, :, 0:3, -5:] = 1.0
    logits = torch.randn(shape, generator=g) + 3 * (2 * mask - 1) * 0.5
    return logits, mask


def test_structure_intended_against_loop_and_seed():
    logits, mask = blob_data()
    got = structure_loss(logits, mask)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(structure_loop(logits, mask).item(), rel=1e-5)
    # Seed 004 with the reduction it meant ("none") is the intended loss.
    seed = seed004_structure_loss(logits, mask, reduction="none")
    torch.testing.assert_close(got, seed)
    # Target without the channel dimension.
    torch.testing.assert_close(structure_loss(logits, mask[:, 0]), got)


def test_structure_legacy_reduce_matches_seed004():
    logits, mask = blob_data()
    got = structure_loss(logits, mask, legacy_reduce=True)
    seed = seed004_structure_loss(logits, mask, reduction="mean")
    torch.testing.assert_close(got, seed)
    # The switch changes the value here, so the two paths are distinguishable.
    assert got.item() != pytest.approx(structure_loss(logits, mask).item(), rel=1e-3)
    # Hand form: unweighted batch-mean BCE plus the weighted IoU term.
    bce = F.binary_cross_entropy_with_logits(logits, mask)
    wiou = structure_loss(logits, mask) - structure_loop_wbce(logits, mask)
    assert got.item() == pytest.approx((bce + wiou).item(), rel=1e-5)


def structure_loop_wbce(logits, mask):
    """Batch mean of the per-image weighted BCE alone (float64)."""
    m = mask.double()
    w = 1 + 5 * (box_mean(m) - m).abs()
    bce = F.binary_cross_entropy_with_logits(logits.double(), m, reduction="none")
    return ((w * bce).sum(dim=(1, 2, 3)) / w.sum(dim=(1, 2, 3))).mean().float()


def test_legacy_reduce_argument_really_means_mean():
    # Why legacy_reduce exists: the original's reduce='none' gives back a scalar mean.
    logits, mask = blob_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            legacy = F.binary_cross_entropy_with_logits(logits, mask, reduce="none")
        except TypeError:
            pytest.skip("this torch no longer accepts the legacy reduce argument")
    assert legacy.ndim == 0
    torch.testing.assert_close(legacy, F.binary_cross_entropy_with_logits(logits, mask))


def test_structure_precomputed_weight():
    logits, mask = blob_data()
    weit = 1 + 5 * (box_mean(mask.double()) - mask.double()).abs()
    got = structure_loss(logits, mask, weit.float())
    torch.testing.assert_close(got, structure_loss(logits, mask), rtol=1e-5, atol=1e-6)
    # Any other map is used as given.
    other = torch.rand(mask.shape, generator=gen(9)) + 0.5
    expected = structure_loop(logits, mask, other)
    assert structure_loss(logits, mask, other[:, 0]).item() == pytest.approx(
        expected.item(), rel=1e-5
    )


def test_structure_with_project_edge_map():
    from weightmaps import edge_weight_map

    logits, mask = blob_data()
    weit = np.stack([edge_weight_map(m[0].numpy() > 0) for m in mask])
    got = structure_loss(logits, mask, torch.from_numpy(weit))
    torch.testing.assert_close(got, structure_loss(logits, mask), rtol=1e-5, atol=1e-5)


def test_structure_3d_against_loop():
    g = gen(4)
    mask = (torch.rand(2, 1, 6, 7, 8, generator=g) < 0.4).float()
    logits = torch.randn(mask.shape, generator=g)
    got = structure_loss(logits, mask)
    assert got.item() == pytest.approx(structure_loop(logits, mask).item(), rel=1e-5)


def test_structure_soft_target_and_options():
    g = gen(6)
    mask = torch.rand(2, 1, 10, 12, generator=g)
    logits = torch.randn(mask.shape, generator=g)
    assert structure_loss(logits, mask).item() == pytest.approx(
        structure_loop(logits, mask).item(), rel=1e-5
    )
    m = mask.double()
    weit = 1 + 2.0 * (box_mean(m, 5) - m).abs()
    expected = structure_loop(logits, mask, weit)
    got = structure_loss(logits, mask, kernel_size=5, alpha=2.0)
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_structure_gradient_and_zero_map():
    logits, mask = blob_data()
    x = logits.clone().requires_grad_(True)
    structure_loss(x, mask).backward()
    x64 = logits.double().requires_grad_(True)
    structure_loop(x64, mask).backward()
    torch.testing.assert_close(x.grad, x64.grad.float(), rtol=1e-4, atol=1e-7)
    x.grad = None
    got = structure_loss(x, mask, torch.zeros_like(mask))
    assert got.item() == 0.0
    got.backward()
    assert torch.isfinite(x.grad).all()


def test_structure_bf16_and_module():
    logits, mask = blob_data()
    got = StructureLoss()(logits.bfloat16(), mask.bfloat16())
    assert got.dtype == torch.float32
    ref = structure_loss(logits.bfloat16().float(), mask)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-6)
    module = StructureLoss(legacy_reduce=True, kernel_size=7, alpha=3.0)
    expected = structure_loss(logits, mask, legacy_reduce=True, kernel_size=7, alpha=3.0)
    torch.testing.assert_close(module(logits, mask), expected)


def test_structure_errors():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\).*got shape \(2, 8, 8\)"):
        structure_loss(torch.zeros(2, 8, 8), torch.zeros(2, 8, 8))
    with pytest.raises(ValueError, match="kernel_size must be a positive odd"):
        structure_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), kernel_size=4)
    with pytest.raises(ValueError, match=r"weight shape \(1, 1, 7, 8\) does not match"):
        structure_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 7, 8))


# ----------------------------------------------------------------------------
# Balanced BCE
# ----------------------------------------------------------------------------


def balanced_data(soft=False, seed=0):
    g = gen(seed)
    logits = torch.randn(3, 1, 5, 6, generator=g) * 2
    if soft:
        target = torch.rand(logits.shape, generator=g)
    else:
        target = (
            torch.rand(logits.shape, generator=g) < torch.tensor([0.1, 0.4, 0.7]).view(3, 1, 1, 1)
        ).float()
    return logits, target


@pytest.mark.parametrize("soft", [False, True])
def test_balanced_matches_seed003_loop(soft):
    logits, target = balanced_data(soft=soft)
    expected = seed003_loop(torch.sigmoid(logits.double()), target.double())
    got = balanced_bce_with_logits(logits, target)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    expected_v2 = seed003_v2(torch.sigmoid(logits.double()), target.double())
    assert got.item() == pytest.approx(expected_v2.item(), rel=1e-5)


def test_balanced_by_hand():
    # 1 foreground of 4 pixels: beta = 3/4; p = 0.5 everywhere.
    logits = torch.zeros(1, 1, 2, 2)
    target = torch.tensor([[[[1.0, 0.0], [0.0, 0.0]]]])
    ln2 = math.log(2)
    assert balanced_bce_with_logits(logits, target).item() == pytest.approx(1.5 * ln2)
    assert balanced_bce_with_logits(logits, target, reduction="pixel_mean").item() == (
        pytest.approx(1.5 * ln2 / 4)
    )
    # sum(w) = 3/4 + 3 * 1/4 = 1.5, so "mean" is ln 2.
    assert balanced_bce_with_logits(logits, target, reduction="mean").item() == (pytest.approx(ln2))
    none = balanced_bce_with_logits(logits, target, reduction="none")
    torch.testing.assert_close(none, torch.tensor([[[[0.75, 0.25], [0.25, 0.25]]]]) * ln2)


def test_balanced_empty_image_weighs_nothing():
    logits, target = balanced_data()
    target[1] = 0
    got = balanced_bce_with_logits(logits, target, reduction="none")
    assert torch.all(got[1] == 0)
    per_image = balanced_bce_with_logits(logits, target, reduction="image_mean")
    kept = [0, 2]
    alone = [
        balanced_bce_with_logits(logits[i : i + 1], target[i : i + 1], reduction="mean")
        for i in kept
    ]
    assert per_image.item() == pytest.approx(sum(a.item() for a in alone) / 2, rel=1e-6)


def test_balanced_with_beta_map_weight():
    from weightmaps import balance_weight_map

    logits, target = balanced_data()
    beta = torch.stack(
        [torch.from_numpy(balance_weight_map(t[0].numpy() > 0, mode="beta")) for t in target]
    )
    on_the_fly = balanced_bce_with_logits(logits, target)
    given = balanced_bce_with_logits(logits, target, beta)
    torch.testing.assert_close(given, on_the_fly, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        given, weighted_bce_with_logits(logits, target, beta, reduction="sum")
    )
    for r in ("mean", "image_mean", "pixel_mean"):
        torch.testing.assert_close(
            balanced_bce_with_logits(logits, target, beta, reduction=r),
            balanced_bce_with_logits(logits, target, reduction=r),
            rtol=1e-5,
            atol=1e-6,
        )


def test_balanced_gradient_bf16_and_module():
    logits, target = balanced_data(soft=True)
    x = logits.clone().requires_grad_(True)
    balanced_bce_with_logits(x, target).backward()
    x64 = logits.double().requires_grad_(True)
    seed003_v2(torch.sigmoid(x64), target.double()).backward()
    torch.testing.assert_close(x.grad, x64.grad.float(), rtol=1e-5, atol=1e-6)

    got = BalancedBCEWithLogitsLoss()(logits.bfloat16(), target[:, 0])
    assert got.dtype == torch.float32
    ref = balanced_bce_with_logits(logits.bfloat16().float(), target)
    torch.testing.assert_close(got, ref, rtol=1e-6, atol=1e-5)
    module = BalancedBCEWithLogitsLoss(reduction="image_mean")
    torch.testing.assert_close(
        module(logits, target), balanced_bce_with_logits(logits, target, reduction="image_mean")
    )


# ----------------------------------------------------------------------------
# Deep supervision
# ----------------------------------------------------------------------------


def ds_data(seed=0):
    g = gen(seed)
    mask = torch.zeros(2, 1, 16, 16)
    mask[0, :, 3:11, 5:13] = 1.0
    mask[1, :, 8:16, 0:7] = 1.0
    weight = torch.rand(2, 16, 16, generator=g) + 0.5
    outputs = [torch.randn(2, 1, s, s, generator=g) for s in (16, 8, 4)]
    return outputs, mask, weight


def block_mean(w, s):
    """Mean over s x s blocks of the last two dimensions."""
    *lead, h, wd = w.shape
    return w.reshape(*lead, h // s, s, wd // s, s).mean(dim=(-3, -1))


def test_f3net_factors():
    assert f3net_factors(5) == [1.0, 0.5, 0.25, 0.125, 0.0625]
    with pytest.raises(ValueError):
        f3net_factors(0)


@pytest.mark.parametrize("weighted", [False, True])
def test_deep_supervision_upsample_by_hand(weighted):
    outputs, mask, weight = ds_data()
    w = weight if weighted else None
    factors = [1.0, 0.5, 0.25]
    expected = sum(
        f * structure_loss(F.interpolate(o, size=(16, 16), mode="bilinear"), mask, w)
        for f, o in zip(factors, outputs, strict=True)
    )
    got = deep_supervision_loss(outputs, mask, w, structure_loss, factors)
    torch.testing.assert_close(got, expected)
    module = DeepSupervisionLoss(StructureLoss(), factors)
    torch.testing.assert_close(module(outputs, mask, w), expected)
    # PraNet: equal factors by default.
    equal = sum(
        structure_loss(F.interpolate(o, size=(16, 16), mode="bilinear"), mask, w) for o in outputs
    )
    torch.testing.assert_close(deep_supervision_loss(outputs, mask, w, structure_loss), equal)


def test_deep_supervision_downsample_by_hand():
    outputs, mask, weight = ds_data()
    factors = f3net_factors(3)
    # Nearest with an integer factor s picks the first pixel of each s x s block.
    expected = sum(
        f * weighted_bce_with_logits(o, mask[..., ::s, ::s], block_mean(weight, s))
        for f, o, s in zip(factors, outputs, (1, 2, 4), strict=True)
    )
    got = deep_supervision_loss(
        outputs, mask, weight, weighted_bce_with_logits, factors, mode="downsample"
    )
    torch.testing.assert_close(got, expected)
    # Without a weight, the structure loss computes its map at each size.
    expected = sum(
        f * structure_loss(o, mask[..., ::s, ::s])
        for f, o, s in zip(factors, outputs, (1, 2, 4), strict=True)
    )
    module = DeepSupervisionLoss(structure_loss, factors, mode="downsample")
    torch.testing.assert_close(module(outputs, mask), expected)


def test_deep_supervision_cross_entropy_keeps_labels():
    g = gen(1)
    big = 2**30 + 1  # not representable in float32: the resize must not round it
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    target[:, :2, :2] = big
    outputs = [torch.randn(2, 3, 8, 8, generator=g), torch.randn(2, 3, 4, 4, generator=g)]
    seen = []

    def record(x, t, w):
        seen.append((t, w))
        return x.sum() * 0

    deep_supervision_loss(outputs, target, torch.ones(2, 1, 8, 8), record, mode="downsample")
    assert seen[0][0] is target
    assert seen[1][0].dtype == torch.int64
    torch.testing.assert_close(seen[1][0], target[:, ::2, ::2])
    assert seen[1][1].shape == (2, 1, 4, 4)

    weight = torch.rand(2, 8, 8, generator=g) + 0.5
    criterion = WeightedCrossEntropyLoss(ignore_index=big)
    factors = [1.0, 0.4]
    expected = criterion(outputs[0], target, weight) + 0.4 * criterion(
        outputs[1], target[:, ::2, ::2], block_mean(weight, 2)
    )
    got = DeepSupervisionLoss(criterion, factors, mode="downsample")(outputs, target, weight)
    torch.testing.assert_close(got, expected)
    expected = criterion(outputs[0], target, weight) + 0.4 * criterion(
        F.interpolate(outputs[1], size=(8, 8), mode="bilinear", align_corners=False),
        target,
        weight,
    )
    torch.testing.assert_close(
        DeepSupervisionLoss(criterion, factors)(outputs, target, weight), expected
    )


def test_deep_supervision_3d_trilinear():
    g = gen(2)
    mask = (torch.rand(1, 1, 8, 8, 8, generator=g) < 0.3).float()
    outputs = [torch.randn(1, 1, 8, 8, 8, generator=g), torch.randn(1, 1, 4, 4, 4, generator=g)]
    expected = structure_loss(outputs[0], mask) + 0.5 * structure_loss(
        F.interpolate(outputs[1], size=(8, 8, 8), mode="trilinear", align_corners=False), mask
    )
    got = deep_supervision_loss(outputs, mask, None, structure_loss, [1, 0.5])
    torch.testing.assert_close(got, expected)
    expected = structure_loss(outputs[0], mask) + 0.5 * structure_loss(
        outputs[1], mask[..., ::2, ::2, ::2]
    )
    got = deep_supervision_loss(outputs, mask, None, structure_loss, [1, 0.5], mode="downsample")
    torch.testing.assert_close(got, expected)


def test_deep_supervision_gradient_reaches_every_output():
    outputs, mask, weight = ds_data()
    outputs = [o.requires_grad_(True) for o in outputs]
    deep_supervision_loss(outputs, mask, weight, structure_loss, f3net_factors(3)).backward()
    assert all(o.grad is not None and o.grad.abs().sum() > 0 for o in outputs)


def test_deep_supervision_errors():
    outputs, mask, weight = ds_data()
    with pytest.raises(ValueError, match="3 outputs but 2 factors"):
        deep_supervision_loss(outputs, mask, weight, structure_loss, [1, 1])
    with pytest.raises(ValueError, match="mode must be one of"):
        deep_supervision_loss(outputs, mask, weight, structure_loss, mode="bilinear")
    with pytest.raises(ValueError, match="mode must be one of"):
        DeepSupervisionLoss(structure_loss, mode="nearest")
    with pytest.raises(ValueError, match=r"channel-first.*output 0 has shape \(2, 16, 16\)"):
        deep_supervision_loss([mask[:, 0]], mask, None, structure_loss)
    with pytest.raises(ValueError, match="at least one"):
        deep_supervision_loss([], mask, None, structure_loss)


# ----------------------------------------------------------------------------
# Value checks (check_inputs) and empty batches, for every loss and module
# ----------------------------------------------------------------------------

NAN, INF = float("nan"), float("inf")


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


@pytest.mark.parametrize(
    "bad, message",
    [(-0.5, "negative values"), (NAN, "NaN"), (INF, "infinite"), (-INF, "infinite")],
)
@pytest.mark.parametrize("name, call", BINARY_CALLS + CE_CALLS, ids=lambda v: str(v))
def test_bad_weights_are_refused(name, call, bad, message):
    if name.startswith("ce"):
        logits, target, weight = ce_data(n_ignored=0)
    else:
        logits, target, weight = bce_data()
    weight.view(-1)[5] = bad
    with pytest.raises(ValueError, match=f"weight holds {message}"):
        call(logits, target, weight)
    # Unchecked, the value goes into the formula: a NaN or inf weight makes
    # the loss NaN (inf * l / inf), which is at least not silent.
    got = call(logits, target, weight, check_inputs=False)
    if math.isnan(bad) or math.isinf(bad):
        assert math.isnan(got.item()) or math.isinf(got.item())


def test_ce_weights_of_ignored_pixels_are_not_checked():
    logits, target, weight = ce_data(n_ignored=6)
    noisy = weight.clone()
    ignored = (target == -100).nonzero()
    noisy[tuple(ignored[0])] = NAN
    noisy[tuple(ignored[1])] = -3.0
    noisy[tuple(ignored[2])] = INF
    for r in REDUCED:
        torch.testing.assert_close(
            weighted_cross_entropy(logits, target, noisy, reduction=r),
            weighted_cross_entropy(logits, target, weight, reduction=r),
        )


@pytest.mark.parametrize("reduction", ["mean", "image_mean"])
def test_unchecked_negative_weights_follow_the_formula_not_the_sum(reduction):
    # The quotient used to fall back to the sum whenever sum(w) <= 0.
    logits, target, weight = ce_data(n_ignored=0)
    weight = weight - 3.0  # mostly negative: every image's sum(w) < 0
    images = ce_records(logits, target, weight)
    assert all(sum(r[1] for r in recs) < 0 for recs in images)
    got = weighted_cross_entropy(logits, target, weight, reduction=reduction, check_inputs=False)
    assert got.item() == pytest.approx(reduce_records(images, reduction), rel=1e-5)
    total = weighted_cross_entropy(logits, target, weight, reduction="sum", check_inputs=False)
    assert got.item() != pytest.approx(total.item(), rel=1e-3)

    logits, target, weight = bce_data()
    weight = weight - 3.0
    images = bce_records(logits, target, weight)
    got = weighted_bce_with_logits(logits, target, weight, reduction=reduction, check_inputs=False)
    assert got.item() == pytest.approx(reduce_records(images, reduction), rel=1e-5)


@pytest.mark.parametrize(
    "bad, message",
    [(255.0, r"\[0, 255\]; divide a 0/255 mask by 255"), (-0.25, r"\[-0.25, 1\]"), (NAN, "NaN")],
)
@pytest.mark.parametrize("name, call", BINARY_CALLS, ids=lambda v: str(v))
def test_targets_outside_0_1_are_refused(name, call, bad, message):
    logits, target, weight = bce_data()
    target.view(-1)[3] = 1.0
    target.view(-1)[7] = bad
    with pytest.raises(ValueError, match=message):
        call(logits, target, weight)
    with pytest.raises(ValueError, match=message):
        call(logits, target, None)


def test_unchecked_0_255_target_gives_the_formula():
    # What the issue saw: a 0/255 float target makes BCE a large negative number.
    logits, target, weight = bce_data()
    target = target * 255
    got = weighted_bce_with_logits(logits, target, weight, reduction="sum", check_inputs=False)
    expected = reduce_records(bce_records(logits, target, weight), "sum")
    assert got.item() == pytest.approx(expected, rel=1e-5)
    assert got.item() < -1000
    # Bool and in-range soft targets pass the check untouched.
    logits, soft, weight = bce_data(soft=True)
    for t in (soft, soft > 0.5):
        torch.testing.assert_close(
            weighted_bce_with_logits(logits, t, weight),
            weighted_bce_with_logits(logits, t, weight, check_inputs=False),
        )


@pytest.mark.parametrize("name, call", CE_CALLS, ids=lambda v: str(v))
def test_ce_class_ids_out_of_range_are_refused(name, call):
    logits, target, weight = ce_data(ignore=255)
    for bad in (3, -1):
        t = target.clone()
        t.view(-1)[0] = bad
        with pytest.raises(ValueError, match=rf"class id {bad}; .*\[0, 3\).*ignore_index \(255\)"):
            call(logits, t, weight, ignore_index=255)
    # ignore_index itself (here out of [0, C)) is fine.
    call(logits, target, weight, ignore_index=255)


@pytest.mark.parametrize("bad, message", [(-1.0, "negative"), (NAN, "NaN"), (INF, "infinite")])
def test_ce_class_weight_is_checked(bad, message):
    logits, target, weight = ce_data()
    cw = torch.tensor([1.0, bad, 2.0])
    with pytest.raises(ValueError, match=f"class_weight holds {message}"):
        weighted_cross_entropy(logits, target, weight, class_weight=cw)
    with pytest.raises(ValueError, match=f"class_weight holds {message}"):
        WeightedCrossEntropyLoss(class_weight=cw)(logits, target, weight)
    # Unchecked: PyTorch's own per-pixel loss with that class weight.
    WeightedCrossEntropyLoss(class_weight=cw, check_inputs=False)(logits, target, weight)


def test_check_inputs_changes_nothing_on_good_inputs():
    logits, target, weight = ce_data()
    for r in REDUCTIONS_ALL:
        a = weighted_cross_entropy(logits, target, weight, reduction=r)
        b = weighted_cross_entropy(logits, target, weight, reduction=r, check_inputs=False)
        assert torch.equal(a, b)
    logits, target, weight = bce_data(soft=True)
    for call in (weighted_bce_with_logits, balanced_bce_with_logits):
        for r in REDUCTIONS_ALL:
            a = call(logits, target, weight, reduction=r)
            assert torch.equal(a, call(logits, target, weight, reduction=r, check_inputs=False))
    a = structure_loss(logits, target, weight)
    assert torch.equal(a, structure_loss(logits, target, weight, check_inputs=False))
    for module in (
        WeightedCrossEntropyLoss(check_inputs=False),
        WeightedBCEWithLogitsLoss(check_inputs=False),
        StructureLoss(check_inputs=False),
        BalancedBCEWithLogitsLoss(check_inputs=False),
    ):
        assert module.check_inputs is False
        assert "check_inputs=False" in repr(module)


REDUCTIONS_ALL = (*REDUCED, "none")


def _empty_cases(shape):
    """(name, call(logits), expected 'none' shape or None) on an empty batch."""
    b, _, *spatial = shape
    g = torch.zeros(shape)
    w = torch.ones(shape)
    tc = torch.zeros((b, *spatial), dtype=torch.long)
    cases = []
    for r in REDUCTIONS_ALL:
        none = r == "none"
        cases += [
            (
                f"ce-{r}",
                lambda x, r=r: weighted_cross_entropy(x, tc, w[:, 0], reduction=r),
                3,
                (b, *spatial) if none else (),
            ),
            (
                f"ce_module-{r}",
                lambda x, r=r: WeightedCrossEntropyLoss(reduction=r)(x, tc, None),
                3,
                (b, *spatial) if none else (),
            ),
            (
                f"bce-{r}",
                lambda x, r=r: weighted_bce_with_logits(x, g, w, reduction=r),
                1,
                shape if none else (),
            ),
            (
                f"bce_module-{r}",
                lambda x, r=r: WeightedBCEWithLogitsLoss(reduction=r)(x, g, None),
                1,
                shape if none else (),
            ),
            (
                f"balanced-{r}",
                lambda x, r=r: balanced_bce_with_logits(x, g, reduction=r),
                1,
                shape if none else (),
            ),
            (
                f"balanced_w-{r}",
                lambda x, r=r: balanced_bce_with_logits(x, g, w, reduction=r),
                1,
                shape if none else (),
            ),
            (
                f"balanced_module-{r}",
                lambda x, r=r: BalancedBCEWithLogitsLoss(reduction=r)(x, g),
                1,
                shape if none else (),
            ),
        ]
    cases += [
        ("structure", lambda x: structure_loss(x, g), 1, ()),
        ("structure_w", lambda x: structure_loss(x, g, w), 1, ()),
        ("structure_legacy", lambda x: structure_loss(x, g, legacy_reduce=True), 1, ()),
        ("structure_module", lambda x: StructureLoss()(x, g), 1, ()),
    ]
    return cases


@pytest.mark.parametrize("shape", [(0, 1, 8, 8), (0, 1, 4, 6, 5), (2, 1, 0, 8)])
def test_empty_batch_gives_zero_with_a_graph(shape):
    for name, call, channels, expected_shape in _empty_cases(shape):
        x = torch.zeros((shape[0], channels, *shape[2:]), requires_grad=True)
        got = call(x)
        assert got.dtype == torch.float32, name
        assert tuple(got.shape) == expected_shape, name
        assert got.requires_grad, name
        if got.ndim == 0:
            assert got.item() == 0.0, name
        got.sum().backward()
        assert x.grad is not None and x.grad.shape == x.shape, name


@pytest.mark.parametrize("mode", ["upsample", "downsample"])
def test_deep_supervision_empty_batch(mode):
    outputs = [torch.zeros(0, 1, s, s, requires_grad=True) for s in (16, 8)]
    target, weight = torch.zeros(0, 1, 16, 16), torch.ones(0, 16, 16)
    for loss in (structure_loss, StructureLoss(), BalancedBCEWithLogitsLoss(reduction="mean")):
        got = deep_supervision_loss(outputs, target, weight, loss, f3net_factors(2), mode)
        assert got.item() == 0.0 and got.requires_grad
        got.backward()
        assert all(o.grad is not None for o in outputs)


def test_deep_supervision_checks_come_from_the_wrapped_loss():
    outputs, mask, weight = ds_data()
    weight[0, 0, 0] = -1.0
    with pytest.raises(ValueError, match="negative"):
        DeepSupervisionLoss(StructureLoss())(outputs, mask, weight)
    got = DeepSupervisionLoss(StructureLoss(check_inputs=False))(outputs, mask, weight)
    assert math.isfinite(got.item())
