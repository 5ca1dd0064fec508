r"""Segmentation losses that read the precomputed per-pixel weight maps.

Every loss takes raw network outputs (logits, never probabilities) and gets
its per-pixel term ``l(x)`` from PyTorch itself (:func:`F.cross_entropy` or
:func:`F.binary_cross_entropy_with_logits` with ``reduction="none"``), so the
log-sum-exp stability of those functions carries over. The work is done in
float32 even when the logits are bfloat16/float16 or the call sits inside an
``autocast`` region; the result is a float32 tensor.

This module imports torch; ``import weightmaps`` does not. Use it as
``from weightmaps.losses import weighted_cross_entropy``.

Reductions
----------
With ``w`` the weight map (times the class weight of the target, when one is
given) and ``l`` the per-pixel loss, over the pixels that count (for
cross-entropy: not ``ignore_index``):

``"mean"`` (default)
    ``sum(w * l) / sum(w)`` over the whole batch. This is what PyTorch means
    by ``weight=``: with a map of ones it equals ``F.cross_entropy`` /
    ``F.binary_cross_entropy_with_logits`` with ``reduction="mean"``.
``"image_mean"``
    ``sum(w * l) / sum(w)`` per image, then the mean over the images whose
    ``sum(w)`` is not 0 (the per-image rescaling of many U-Net recipes).
``"pixel_mean"``
    ``sum(w * l) / n``, ``n`` the number of counted pixels: the plain mean of
    ``w * l`` of pytorch-3dunet and pytorch_connectomics.
``"sum"``
    ``sum(w * l)``.
``"none"``
    The per-pixel ``w * l`` (0 on ignored pixels), unreduced.

A quotient whose denominator is 0 (all weights 0, or every pixel ignored) is
returned as 0, still attached to the graph, instead of NaN: such a batch
contributes no gradient. An empty batch (``B == 0``, or no pixels) is the
same case: every reduced loss is 0 with a graph, ``"none"`` an empty tensor.
It is a value, not an error, because nothing counts there exactly as when
every pixel is ignored, and because a training loop can meet it legitimately
(an uneven last shard, a loss over the images of a batch that have a mask);
``backward()`` then still runs and gives zero gradients.

Input checks
------------
Every loss function and module takes ``check_inputs`` (default True). It
checks the values, not only the shapes, and raises a ValueError that names
the problem: weights must be finite and ``>= 0`` (where they count: pixels
of ``ignore_index`` are exempt), BCE-style targets must lie in [0, 1] (a
0/255 mask is the usual mistake), cross-entropy targets must be class ids in
``[0, C)`` or ``ignore_index``, ``class_weight`` finite and ``>= 0``. This
reads the minima and maxima back from the device: one synchronisation per
call, under a millisecond on the CPU for a (8, 1, 352, 352) batch.
Pass ``check_inputs=False`` in a hot loop whose data are known to be good;
unchecked values then enter the formulas as given: a NaN or infinite weight
makes the loss NaN, negative weights give numbers without meaning (the
quotients are still ``sum(w * l) / sum(w)``, never silently the sum), and a
target outside [0, 1] gives a BCE that is not a loss (it can go far below 0).

Also here: the F3Net/PraNet structure loss (:func:`structure_loss`), balanced
BCE (:func:`balanced_bce_with_logits`), a deep supervision wrapper
(:func:`deep_supervision_loss`), and the losses that read distance and
skeleton maps: the boundary loss (:func:`boundary_loss`), the Hausdorff
distance-transform loss (:func:`hausdorff_dt_loss`) and soft clDice
(:func:`cldice_loss`), and MONAI's Dice plus cross-entropy with the map on
the cross-entropy (:func:`weighted_dice_ce`). Each has a thin
:class:`torch.nn.Module`; each lives in a module of its own (``weighted``,
``structure``, ``balanced``, ``deep_supervision``, ``boundary``,
``hausdorff``, ``cldice``, ``dice_ce``).

Targets and maps may carry MONAI's channel axis, ``(B, 1, *spatial)``, and
may be MONAI ``MetaTensor``\ s: they are read as plain tensors (the result
is a plain tensor).
"""

from __future__ import annotations

from weightmaps.losses._common import REDUCTIONS
from weightmaps.losses.balanced import BalancedBCEWithLogitsLoss, balanced_bce_with_logits
from weightmaps.losses.boundary import (
    BOUNDARY_SCHEDULES,
    BoundaryLoss,
    boundary_loss,
    boundary_loss_weights,
)
from weightmaps.losses.cldice import ClDiceLoss, cldice_loss, soft_skeleton
from weightmaps.losses.deep_supervision import (
    DS_MODES,
    DeepSupervisionLoss,
    deep_supervision_loss,
    f3net_factors,
)
from weightmaps.losses.dice_ce import WeightedDiceCELoss, weighted_dice_ce
from weightmaps.losses.hausdorff import HausdorffDTLoss, hausdorff_dt_loss
from weightmaps.losses.structure import StructureLoss, structure_loss
from weightmaps.losses.weighted import (
    WeightedBCEWithLogitsLoss,
    WeightedCrossEntropyLoss,
    weighted_bce_with_logits,
    weighted_cross_entropy,
)

__all__ = [
    "BOUNDARY_SCHEDULES",
    "DS_MODES",
    "REDUCTIONS",
    "BalancedBCEWithLogitsLoss",
    "BoundaryLoss",
    "ClDiceLoss",
    "DeepSupervisionLoss",
    "HausdorffDTLoss",
    "StructureLoss",
    "WeightedBCEWithLogitsLoss",
    "WeightedCrossEntropyLoss",
    "WeightedDiceCELoss",
    "balanced_bce_with_logits",
    "boundary_loss",
    "boundary_loss_weights",
    "cldice_loss",
    "deep_supervision_loss",
    "f3net_factors",
    "hausdorff_dt_loss",
    "soft_skeleton",
    "structure_loss",
    "weighted_bce_with_logits",
    "weighted_cross_entropy",
    "weighted_dice_ce",
]
