"""The Hausdorff distance-transform loss (losses/hausdorff.py) against its formula and MONAI.

Oracles: the formula written out in float64 numpy with the distance fields
from scipy, and MONAI's ``HausdorffDTLoss`` where MONAI is installed.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import blobs
from loss_oracles import field_np, gen, probabilities_np, semantic_batch

from weightmaps.kernels.sdf import boundary_distance_map
from weightmaps.losses import HausdorffDTLoss, hausdorff_dt_loss


def hausdorff_np(logits, target, classes, alpha=2.0, spacing=None) -> float:
    p = probabilities_np(logits)[:, classes]
    t = target.numpy()
    if logits.shape[1] == 1:
        g = t.reshape(p.shape).astype(float)
    else:
        g = np.stack([t == c for c in classes], 1).astype(float)
    total = 0.0
    for b in range(p.shape[0]):
        for k in range(p.shape[1]):
            d_p = field_np(p[b, k] > 0.5, spacing)
            d_g = field_np(g[b, k] > 0.5, spacing)
            total += np.mean((p[b, k] - g[b, k]) ** 2 * (d_p**alpha + d_g**alpha))
    return total / (p.shape[0] * p.shape[1])


@pytest.mark.parametrize("shape", [(20, 26), (9, 12, 11)])
@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_hausdorff_formula_multiclass(shape, alpha):
    labels = torch.from_numpy(semantic_batch(shape, n_classes=3, seed=2))
    logits = torch.randn(2, 3, *shape, generator=gen(2)) * 3
    logits.requires_grad_(True)
    expected = hausdorff_np(logits, labels, [1, 2], alpha)
    got = hausdorff_dt_loss(logits, labels, alpha=alpha)
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    # with the target's field precomputed, per class or per channel
    d_g = np.stack([boundary_distance_map(m, classes=range(3)) for m in labels.numpy()])
    for given in (torch.from_numpy(d_g), torch.from_numpy(d_g[:, 1:])):
        assert float(
            hausdorff_dt_loss(logits, labels, given, alpha=alpha).detach()
        ) == pytest.approx(expected, rel=1e-5)
    got.backward()
    assert torch.isfinite(logits.grad).all()


def test_hausdorff_sigmoid_spacing_and_module():
    mask = torch.from_numpy(np.stack([blobs((22, 18), seed=s) for s in range(2)]))
    logits = torch.randn(2, 1, 22, 18, generator=gen(3)) * 4
    sp = (1.0, 0.6)
    expected = hausdorff_np(logits, mask, [0], 2.0, sp)
    assert float(hausdorff_dt_loss(logits, mask.float(), spacing=sp)) == pytest.approx(
        expected, rel=1e-5
    )
    assert float(HausdorffDTLoss(spacing=sp)(logits, mask[:, None])) == pytest.approx(
        expected, rel=1e-5
    )
    with pytest.raises(TypeError, match="float foreground"):
        hausdorff_dt_loss(logits, mask.long())
    with pytest.raises(TypeError, match="integer class ids"):
        hausdorff_dt_loss(torch.zeros(2, 3, 22, 18), mask.float())


def test_hausdorff_zero_on_a_perfect_confident_prediction():
    mask = torch.from_numpy(blobs((16, 16), seed=1))[None]
    logits = torch.where(mask, 50.0, -50.0)[:, None]
    assert float(hausdorff_dt_loss(logits, mask.float())) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.parametrize("shape", [(24, 20), (8, 12, 10)])
def test_hausdorff_equals_monai(shape):
    monai_losses = pytest.importorskip("monai.losses")
    labels = torch.from_numpy(semantic_batch(shape, n_classes=3, seed=8))
    logits = torch.randn(2, 3, *shape, generator=gen(8)) * 3
    theirs = monai_losses.HausdorffDTLoss(
        alpha=2.0, include_background=False, softmax=True, to_onehot_y=True
    )(logits, labels[:, None])
    d_g = np.stack([boundary_distance_map(m, classes=range(3)) for m in labels.numpy()])
    for given in (None, torch.from_numpy(d_g)):
        ours = hausdorff_dt_loss(logits, labels, given)
        assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    mask = labels > 0
    single = torch.randn(2, 1, *shape, generator=gen(9)) * 3
    theirs = monai_losses.HausdorffDTLoss(sigmoid=True, include_background=True)(
        single, mask[:, None].float()
    )
    assert float(hausdorff_dt_loss(single, mask.float())) == pytest.approx(float(theirs), rel=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_equals_cpu():
    labels = torch.from_numpy(semantic_batch((30, 28), n_classes=3, seed=13))
    logits = torch.randn(2, 3, 30, 28, generator=gen(13)) * 3
    args = (logits, labels, None)
    on_gpu = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    assert float(hausdorff_dt_loss(*on_gpu)) == pytest.approx(
        float(hausdorff_dt_loss(*args)), rel=1e-5
    )
