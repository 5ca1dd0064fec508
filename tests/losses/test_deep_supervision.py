"""Deep supervision (losses/deep_supervision.py): the weighted sum of the outputs' losses."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from loss_oracles import gen

from weightmaps.losses import (
    BalancedBCEWithLogitsLoss,
    DeepSupervisionLoss,
    StructureLoss,
    WeightedCrossEntropyLoss,
    deep_supervision_loss,
    f3net_factors,
    structure_loss,
    weighted_bce_with_logits,
)


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
        F.interpolate(outputs[1], size=(8, 8), mode="bilinear", align_corners=False), target, weight
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
