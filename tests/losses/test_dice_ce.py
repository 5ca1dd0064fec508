"""weighted_dice_ce against the formula written out, against MONAI's DiceCELoss, and the
losses on MONAI's shapes: (B, 1, *spatial) targets and maps, MetaTensors."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from weightmaps.losses import (
    WeightedDiceCELoss,
    balanced_bce_with_logits,
    structure_loss,
    weighted_bce_with_logits,
    weighted_cross_entropy,
    weighted_dice_ce,
)


def dice_by_hand(logits, ids, weight, *, include_background, batch=False, ignore=-100):
    """The Dice term pixel by pixel in plain Python: softmax, one-hot, weighted sums."""
    b, c = logits.shape[:2]
    p = torch.softmax(logits.double(), dim=1)
    channels = range(c) if include_background else range(1, c)
    terms = []
    groups = [list(range(b))] if batch else [[i] for i in range(b)]
    for images in groups:
        for k in channels:
            inter = denom_p = denom_g = 0.0
            for i in images:
                for y in range(logits.shape[2]):
                    for x in range(logits.shape[3]):
                        label = int(ids[i, y, x])
                        if label == ignore:
                            continue
                        w = 1.0 if weight is None else float(weight[i, y, x])
                        g = 1.0 if label == k else 0.0
                        inter += w * float(p[i, k, y, x]) * g
                        denom_p += w * float(p[i, k, y, x])
                        denom_g += w * g
            terms.append(1 - (2 * inter + 1e-5) / (denom_p + denom_g + 1e-5))
    return sum(terms) / len(terms)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [False, True])
def test_weighted_dice_against_the_formula(include_background, batch):
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 5, 6, generator=gen)
    ids = torch.randint(0, 3, (2, 5, 6), generator=gen)
    ids[0, 0, :3] = -100
    weight = torch.rand(2, 5, 6, generator=gen) * 4
    got = weighted_dice_ce(
        logits,
        ids[:, None],
        weight[:, None],
        include_background=include_background,
        batch=batch,
        weight_dice=True,
        lambda_ce=0.0,
    )
    want = dice_by_hand(logits, ids, weight, include_background=include_background, batch=batch)
    assert got.item() == pytest.approx(want, abs=1e-6)


def test_cross_entropy_term_is_the_weighted_cross_entropy():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    ids = torch.randint(0, 3, (2, 4, 4), generator=gen)
    weight = torch.rand(2, 4, 4, generator=gen) + 0.5
    ce = weighted_cross_entropy(logits, ids, weight)
    got = weighted_dice_ce(logits, ids, weight, lambda_dice=0.0)
    assert got.item() == pytest.approx(ce.item(), abs=1e-6)
    # the map on the CE only by default: the Dice term ignores it
    dice_only = weighted_dice_ce(logits, ids, weight, lambda_ce=0.0)
    unweighted = weighted_dice_ce(logits, ids, None, lambda_ce=0.0)
    assert dice_only.item() == pytest.approx(unweighted.item(), abs=1e-7)
    want = dice_by_hand(logits, ids, None, include_background=True)
    assert dice_only.item() == pytest.approx(want, abs=1e-6)


def test_target_forms_agree_and_float_labels_are_read_as_ids():
    gen = torch.Generator().manual_seed(2)
    logits = torch.randn(2, 4, 3, 5, generator=gen)
    ids = torch.randint(0, 4, (2, 3, 5), generator=gen)
    weight = torch.rand(2, 3, 5, generator=gen)
    ref = weighted_dice_ce(logits, ids, weight)
    for target, w in [(ids[:, None], weight[:, None]), (ids.float()[:, None], weight)]:
        assert weighted_dice_ce(logits, target, w).item() == pytest.approx(ref.item(), abs=1e-7)
    with pytest.raises(ValueError, match="whole class ids"):
        weighted_dice_ce(logits, ids.float() + 0.5, weight)
    with pytest.raises(ValueError, match="target shape"):
        weighted_dice_ce(logits, ids[:, :2], weight)
    with pytest.raises(ValueError, match="ce_reduction 'none'"):
        weighted_dice_ce(logits, ids, weight, ce_reduction="none")
    with pytest.raises(ValueError, match="lambda_dice"):
        WeightedDiceCELoss(lambda_dice=-1.0)(logits, ids, weight)


def test_single_channel_is_sigmoid_dice_plus_weighted_bce():
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 1, 4, 4, generator=gen)
    target = (torch.rand(2, 1, 4, 4, generator=gen) > 0.5).float()
    weight = torch.rand(2, 1, 4, 4, generator=gen) + 0.1
    p = torch.sigmoid(logits)
    dice = 1 - (2 * (p * target).sum((2, 3)) + 1e-5) / (p.sum((2, 3)) + target.sum((2, 3)) + 1e-5)
    bce = weighted_bce_with_logits(logits, target, weight)
    got = weighted_dice_ce(logits, target, weight)
    assert got.item() == pytest.approx(dice.mean().item() + bce.item(), abs=1e-6)


@pytest.mark.parametrize("include_background", [True, False])
@pytest.mark.parametrize("batch", [False, True])
def test_without_a_map_equals_monai_dice_ce(include_background, batch):
    losses = pytest.importorskip("monai.losses")
    gen = torch.Generator().manual_seed(4)
    logits = torch.randn(3, 4, 6, 5, generator=gen)
    label = torch.randint(0, 4, (3, 1, 6, 5), generator=gen).float()  # as MONAI loads it
    theirs = losses.DiceCELoss(
        to_onehot_y=True, softmax=True, include_background=include_background, batch=batch
    )(logits, label)
    ours = weighted_dice_ce(logits, label, None, include_background=include_background, batch=batch)
    ones = weighted_dice_ce(
        logits, label, torch.ones(3, 1, 6, 5), include_background=include_background, batch=batch
    )
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)
    assert ones.item() == pytest.approx(theirs.item(), abs=1e-6)
    binary = (label > 1).float()
    theirs = losses.DiceCELoss(sigmoid=True, batch=batch)(logits[:, :1], binary)
    ours = weighted_dice_ce(logits[:, :1], binary, None, batch=batch)
    assert ours.item() == pytest.approx(theirs.item(), abs=1e-6)


def test_cross_entropy_takes_channel_first_targets():
    gen = torch.Generator().manual_seed(5)
    logits = torch.randn(2, 3, 4, 4, generator=gen)
    ids = torch.randint(0, 3, (2, 4, 4), generator=gen)
    weight = torch.rand(2, 1, 4, 4, generator=gen)
    ref = weighted_cross_entropy(logits, ids, weight[:, 0])
    assert weighted_cross_entropy(logits, ids[:, None], weight).item() == pytest.approx(ref.item())
    plain = F.cross_entropy(logits, ids, reduction="none")
    want = (plain * weight[:, 0]).sum() / weight.sum()
    assert ref.item() == pytest.approx(want.item(), abs=1e-6)
    with pytest.raises(TypeError, match="EnsureTyped"):
        weighted_cross_entropy(logits, ids[:, None].float(), weight)


LOSSES = {
    "weighted_cross_entropy": lambda lg, t, w: weighted_cross_entropy(lg, t.long(), w),
    "weighted_dice_ce": weighted_dice_ce,
    "weighted_bce_with_logits": lambda lg, t, w: weighted_bce_with_logits(lg[:, :1], t > 0, w),
    "structure_loss": lambda lg, t, w: structure_loss(lg[:, :1], (t > 0).float(), w + 1),
    "balanced_bce_with_logits": lambda lg, t, w: balanced_bce_with_logits(lg[:, :1], t > 0, w),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_metatensors_give_plain_tensors_and_gradients(name):
    data = pytest.importorskip("monai.data")
    gen = torch.Generator().manual_seed(6)
    logits = torch.randn(2, 2, 6, 6, generator=gen)
    label = torch.randint(0, 2, (2, 1, 6, 6), generator=gen).float()
    weight = torch.rand(2, 1, 6, 6, generator=gen)
    affine = torch.diag(torch.tensor([0.5, 0.5, 1.0, 1.0]))
    meta_logits = data.MetaTensor(logits.clone(), affine=affine).requires_grad_()
    got = LOSSES[name](meta_logits, data.MetaTensor(label), data.MetaTensor(weight))
    want = LOSSES[name](logits, label, weight)
    assert type(got) is torch.Tensor
    assert math.isclose(got.item(), want.item(), abs_tol=1e-6)
    got.backward()
    assert meta_logits.grad is not None and torch.isfinite(meta_logits.grad).all()
