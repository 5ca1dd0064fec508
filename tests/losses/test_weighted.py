"""Weighted cross-entropy and BCE (losses/weighted.py) against independent oracles.

Oracles: PyTorch's own reduced losses, per-pixel loops in float64 Python
arithmetic, hand-computed values, and the user's seed code (000)
transcribed with its reduction fixed.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from loss_oracles import (
    CE_CALLS,
    INF,
    NAN,
    REDUCED,
    bce_data,
    bce_records,
    ce_data,
    ce_records,
    gen,
    reduce_records,
)

from weightmaps.losses import (
    WeightedBCEWithLogitsLoss,
    WeightedCrossEntropyLoss,
    weighted_bce_with_logits,
    weighted_cross_entropy,
)


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
