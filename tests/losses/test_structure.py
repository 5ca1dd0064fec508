"""The F3Net/PraNet structure loss (losses/structure.py) against its formula and seed 004.

Oracles: the intended loss one image at a time in float64 with the box mean
by convolution, and the user's seed code (004) as published, with its
``reduce='none'`` spelled out as the reduction it produces or as intended.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from loss_oracles import box_mean, gen

from weightmaps.losses import StructureLoss, structure_loss


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
