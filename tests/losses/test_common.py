"""What every loss shares (losses/_common.py): value checks and empty batches.

Each test runs over every loss function and its module.
"""

from __future__ import annotations

import math

import pytest
import torch
from loss_oracles import BINARY_CALLS, CE_CALLS, INF, NAN, REDUCTIONS_ALL, bce_data, ce_data

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


@pytest.mark.parametrize(
    "bad, message", [(-0.5, "negative values"), (NAN, "NaN"), (INF, "infinite"), (-INF, "infinite")]
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
