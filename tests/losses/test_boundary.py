"""The boundary loss (losses/boundary.py) against its formula and the released schedule.

Oracles: the formula written out in float64 numpy (softmax by hand), with
the signed distance maps of the project's kernel, and the authors' released
schedule stepped by hand.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import blobs
from loss_oracles import gen, probabilities_np, semantic_batch

from weightmaps.kernels.sdf import signed_distance_map
from weightmaps.losses import BoundaryLoss, boundary_loss, boundary_loss_weights


@pytest.mark.parametrize("shape", [(20, 24), (8, 10, 12)])
def test_boundary_loss_formula_multiclass(shape):
    labels = semantic_batch(shape, n_classes=4, seed=1)
    sdf = np.stack([signed_distance_map(m, classes=range(4)) for m in labels])
    logits = torch.randn(2, 4, *shape, generator=gen(0), requires_grad=True)
    p = probabilities_np(logits)
    for classes in (None, [1, 2, 3], [0, 2], [3]):
        chosen = [1, 2, 3] if classes is None else classes
        expected = np.mean(p[:, chosen] * sdf[:, chosen])
        got = boundary_loss(logits, torch.from_numpy(sdf), classes=classes)
        assert got.dtype == torch.float32
        assert float(got.detach()) == pytest.approx(expected, rel=1e-5, abs=1e-6)
        # the map of the chosen classes only, in their order
        only = torch.from_numpy(sdf[:, chosen])
        assert float(boundary_loss(logits, only, classes=classes).detach()) == pytest.approx(
            expected, rel=1e-5, abs=1e-6
        )
    got.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_boundary_loss_sigmoid_and_shapes():
    mask = np.stack([blobs((24, 20), seed=s) for s in range(3)])
    sdf = np.stack([signed_distance_map(m, classes=(1,))[0] for m in mask])
    logits = torch.randn(3, 1, 24, 20, generator=gen(1))
    expected = np.mean(probabilities_np(logits)[:, 0] * sdf)
    for phi in (torch.from_numpy(sdf), torch.from_numpy(sdf)[:, None]):
        assert float(boundary_loss(logits, phi)) == pytest.approx(expected, rel=1e-5)
    assert float(BoundaryLoss()(logits, torch.from_numpy(sdf))) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="sdf shape"):
        boundary_loss(logits, torch.zeros(3, 2, 24, 20))
    with pytest.raises(ValueError, match="not channels"):
        boundary_loss(torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4), classes=[2])


def test_boundary_loss_is_minimal_on_the_target():
    """p = 1 exactly inside the class gives the sum of its (non-positive) inside values."""
    mask = blobs((30, 30), seed=4)
    sdf = torch.from_numpy(signed_distance_map(mask, classes=(1,)))[None]
    right = torch.where(torch.from_numpy(mask), 30.0, -30.0)[None, None]
    wrong = -right
    assert float(boundary_loss(right, sdf)) < 0 < float(boundary_loss(wrong, sdf))


def test_boundary_loss_weights_follow_the_released_scheduler():
    # StealWeight(0.01) from (1, 0.01), one step per epoch, region floored at 0.1
    region, boundary = 1.0, 0.01
    for epoch in range(150):
        assert boundary_loss_weights(epoch) == (region, boundary)
        region, boundary = max(0.1, region - 0.01), boundary + 0.01
    assert boundary_loss_weights(5, schedule="increase") == pytest.approx((1.0, 0.06))
    assert boundary_loss_weights(9, schedule="constant") == (1.0, 0.01)
    with pytest.raises(ValueError, match="schedule"):
        boundary_loss_weights(1, schedule="linear")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_equals_cpu():
    labels = torch.from_numpy(semantic_batch((30, 28), n_classes=3, seed=13))
    logits = torch.randn(2, 3, 30, 28, generator=gen(13)) * 3
    sdf = torch.from_numpy(np.stack([signed_distance_map(m, classes=range(3)) for m in labels]))
    args = (logits, sdf)
    on_gpu = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    assert float(boundary_loss(*on_gpu)) == pytest.approx(float(boundary_loss(*args)), rel=1e-5)
