"""Boundary, Hausdorff-DT and clDice losses against their formulas, and against MONAI.

Oracles: each formula written out in float64 numpy (softmax by hand, the
distance fields with scipy, the soft skeleton with scipy's min/max filters),
the authors' released schedule stepped by hand, and MONAI's
``HausdorffDTLoss`` / ``SoftclDiceLoss`` where MONAI is installed.
"""

from __future__ import annotations

import inspect

import numpy as np
import pytest
import torch
from conftest import blobs, random_instances
from scipy import ndimage as ndi

from weightmaps.kernels.sdf import boundary_distance_map, signed_distance_map
from weightmaps.kernels.skeleton import skeleton_map
from weightmaps.losses import (
    BoundaryLoss,
    ClDiceLoss,
    HausdorffDTLoss,
    boundary_loss,
    boundary_loss_weights,
    cldice_loss,
    hausdorff_dt_loss,
    soft_skeleton,
)


def gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def probabilities_np(logits: torch.Tensor) -> np.ndarray:
    x = logits.detach().double().numpy()
    if x.shape[1] == 1:
        return 1.0 / (1.0 + np.exp(-x))
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def semantic_batch(shape, batch=2, n_classes=3, seed=0) -> np.ndarray:
    out = []
    for b in range(batch):
        inst = random_instances(shape, 4 * n_classes, radius=(2.0, 7.0), seed=seed + b)
        out.append(np.where(inst > 0, (inst - 1) % (n_classes - 1) + 1, 0))
    return np.stack(out).astype(np.int64)


def field_np(mask: np.ndarray, spacing=None) -> np.ndarray:
    """MONAI's distance_field of one channel: EDT(fg) + EDT(bg), 0 if empty or full."""
    if mask.any() and not mask.all():
        return ndi.distance_transform_edt(mask, sampling=spacing) + ndi.distance_transform_edt(
            ~mask, sampling=spacing
        )
    return np.zeros(mask.shape)


# ----------------------------------------------------------------------------
# boundary loss
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# Hausdorff DT loss
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# clDice
# ----------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------
# MONAI
# ----------------------------------------------------------------------------


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
def test_losses_on_cuda_equal_cpu():
    labels = torch.from_numpy(semantic_batch((30, 28), n_classes=3, seed=13))
    logits = torch.randn(2, 3, 30, 28, generator=gen(13)) * 3
    skel = torch.from_numpy(np.stack([skeleton_map(m, mask_type="semantic") for m in labels]))
    sdf = torch.from_numpy(np.stack([signed_distance_map(m, classes=range(3)) for m in labels]))
    for fn, extra in ((hausdorff_dt_loss, None), (cldice_loss, skel), (boundary_loss, sdf)):
        args = (logits, extra) if fn is boundary_loss else (logits, labels, extra)
        on_gpu = [a.cuda() if isinstance(a, torch.Tensor) else a for a in args]
        assert float(fn(*on_gpu)) == pytest.approx(float(fn(*args)), rel=1e-5)
