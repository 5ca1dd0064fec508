"""Balanced BCE (losses/balanced.py) against the user's seed code (003) and by hand."""

from __future__ import annotations

import math

import pytest
import torch
from loss_oracles import gen

from weightmaps.losses import (
    BalancedBCEWithLogitsLoss,
    balanced_bce_with_logits,
    weighted_bce_with_logits,
)


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
