"""Soft clDice (losses/cldice.py) against its formula and MONAI.

Oracles: the soft skeleton with scipy's min/max filters and the clDice
formula in float64 numpy, and MONAI's ``SoftclDiceLoss`` where MONAI is
installed.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import blobs
from loss_oracles import gen, probabilities_np, semantic_batch
from scipy import ndimage as ndi

from weightmaps.kernels.skeleton import skeleton_map
from weightmaps.losses import ClDiceLoss, cldice_loss, soft_skeleton


def soft_skeleton_np(x: np.ndarray, iters: int) -> np.ndarray:
    """clDice's soft skeleton per (b, c) channel with scipy filters (edges ignored)."""
    spatial = x.ndim - 2

    def erode(a):
        out = None
        for axis in range(spatial):
            size = [1, 1] + [1] * spatial
            size[2 + axis] = 3
            along = ndi.minimum_filter(a, size=size, mode="constant", cval=np.inf)
            out = along if out is None else np.minimum(out, along)
        return out

    def dilate(a):
        return ndi.maximum_filter(a, size=(1, 1) + (3,) * spatial, mode="constant", cval=-np.inf)

    def relu(a):
        return np.maximum(a, 0)

    skel = relu(x - dilate(erode(x)))
    for _ in range(iters):
        x = erode(x)
        delta = relu(x - dilate(erode(x)))
        skel = skel + relu(delta - skel * delta)
    return skel


def cldice_np(p, g, s_g, iters=3, smooth=1.0, eps=1e-4) -> float:
    s_p = soft_skeleton_np(p, iters)
    dims = tuple(range(1, p.ndim))
    t_prec = ((s_p * g).sum(dims) + smooth) / (s_p.sum(dims) + smooth)
    t_sens = ((s_g * p).sum(dims) + smooth) / (s_g.sum(dims) + smooth)
    return float(np.mean(1 - 2 * t_prec * t_sens / (t_prec + t_sens + eps)))


@pytest.mark.parametrize("shape", [(24, 30), (10, 14, 12)])
def test_soft_skeleton_matches_filters(shape):
    x = torch.rand(2, 2, *shape, generator=gen(5), dtype=torch.float64)
    np.testing.assert_allclose(
        soft_skeleton(x, 3).numpy(), soft_skeleton_np(x.numpy(), 3), rtol=1e-12, atol=1e-12
    )


@pytest.mark.parametrize("shape", [(28, 32), (10, 16, 14)])
def test_cldice_with_exact_skeleton_formula(shape):
    labels = semantic_batch(shape, n_classes=3, seed=6)
    logits = torch.randn(2, 3, *shape, generator=gen(6)) * 3
    logits.requires_grad_(True)
    p = probabilities_np(logits)[:, 1:]
    g = np.stack([np.stack([m == c for c in (1, 2)]) for m in labels]).astype(float)
    skel = np.stack([skeleton_map(m, mask_type="semantic") for m in labels])
    s_g = g * skel[:, None]
    expected = cldice_np(p, g, s_g)
    target = torch.from_numpy(labels)
    # one skeleton map for all classes, or one per class
    got = cldice_loss(logits, target, torch.from_numpy(skel))
    assert float(got.detach()) == pytest.approx(expected, rel=1e-5)
    per_class = torch.from_numpy(s_g)
    assert float(cldice_loss(logits, target, per_class).detach()) == pytest.approx(
        expected, rel=1e-5
    )
    got.backward()
    assert torch.isfinite(logits.grad).all()


def test_cldice_single_channel_and_soft_target():
    mask = np.stack([blobs((26, 26), seed=s) for s in range(2)])
    logits = torch.randn(2, 1, 26, 26, generator=gen(7)) * 2
    p = probabilities_np(logits)
    g = mask[:, None].astype(float)
    skel = np.stack([skeleton_map(m, mask_type="binary") for m in mask])
    expected = cldice_np(p, g, skel[:, None].astype(float), iters=2)
    target = torch.from_numpy(mask)
    assert float(
        cldice_loss(logits, target.float(), torch.from_numpy(skel), iters=2)
    ) == pytest.approx(expected, rel=1e-5)
    soft = cldice_np(p, g, soft_skeleton_np(g, 2), iters=2)
    assert float(ClDiceLoss(iters=2)(logits, target)) == pytest.approx(soft, rel=1e-5)


def test_cldice_bad_input():
    with pytest.raises(ValueError, match="2-D or 3-D"):
        cldice_loss(torch.zeros(1, 1, 5), torch.zeros(1, 5))
    with pytest.raises(ValueError, match="target_skeleton shape"):
        cldice_loss(
            torch.zeros(1, 3, 5, 5), torch.zeros(1, 5, 5, dtype=torch.long), torch.zeros(1, 2, 4, 5)
        )
    with pytest.raises(ValueError, match="iters"):
        ClDiceLoss(iters=-1)


def monai_cldice():
    monai_losses = pytest.importorskip("monai.losses")
    cls = monai_losses.SoftclDiceLoss
    if "smooth_nr" not in inspect.signature(cls).parameters:
        pytest.skip("this MONAI's SoftclDiceLoss predates the per-image form")
    return cls


@pytest.mark.parametrize("shape", [(26, 30), (10, 12, 14)])
def test_cldice_with_soft_target_equals_monai(shape):
    cls = monai_cldice()
    labels = torch.from_numpy(semantic_batch(shape, n_classes=3, seed=10))
    logits = torch.randn(2, 3, *shape, generator=gen(10)) * 3
    for include_background, classes in ((True, range(3)), (False, None)):
        theirs = cls(
            iter_=3, softmax=True, to_onehot_y=True, include_background=include_background
        )(logits, labels[:, None])
        ours = cldice_loss(logits, labels, None, iters=3, classes=classes)
        assert float(ours) == pytest.approx(float(theirs), rel=1e-5)
    single = torch.randn(2, 1, *shape, generator=gen(11)) * 3
    mask = (labels > 0).float()[:, None]
    theirs = cls(iter_=2, sigmoid=True)(single, mask)
    assert float(cldice_loss(single, mask, None, iters=2)) == pytest.approx(float(theirs), rel=1e-5)


def test_cldice_soft_skeleton_equals_monai():
    monai_cldice()
    from monai.losses.cldice import soft_skel

    x = torch.rand(2, 3, 9, 11, 10, generator=gen(12))
    torch.testing.assert_close(soft_skeleton(x, 4), soft_skel(x, 4), rtol=0, atol=0)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_equals_cpu():
    labels = torch.from_numpy(semantic_batch((30, 28), n_classes=3, seed=13))
    logits = torch.randn(2, 3, 30, 28, generator=gen(13)) * 3
    skel = torch.from_numpy(np.stack([skeleton_map(m, mask_type="semantic") for m in labels]))
    args = (logits, labels, skel)
    on_gpu = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
    assert float(cldice_loss(*on_gpu)) == pytest.approx(float(cldice_loss(*args)), rel=1e-5)
