"""Array helpers shared by the kernels: type tests, line views, renumbering.

Renumbering instance ids that a kernel cannot hold as they are: only which
pixels share an id matters to the instance kernels, so ids too large for a
kernel's integer type (uint64 ids at or above 2**63 become negative as
int64; ids above 2**53 lose their identity as float64) are replaced by their
rank. The ranks keep the ids' order, so every comparison a kernel makes
between two ids comes out as it does on the original ids, and the result
equals that of the mask numbered 1..n in the ids' order.
"""

from __future__ import annotations

import math
import sys
from typing import TYPE_CHECKING, TypeAlias

import numpy as np

if TYPE_CHECKING:
    import torch

__all__ = [
    "FLOAT64_EXACT_IDS",
    "ArrayOrTensor",
    "is_torch_tensor",
    "line_view",
    "sequential_ids",
    "steps_within",
]

ArrayOrTensor: TypeAlias = "np.ndarray | torch.Tensor"
"""What the numpy kernels take: an array, or a torch tensor (handed to the torch
kernel of the same name, whose result is a tensor on the input's device). A string
so that importing this module never imports torch."""

# Largest id ndimage's filters (which go through float64) tell apart, with
# room for the one-above sentinel of separate_instances.
FLOAT64_EXACT_IDS = 2**53 - 1


def sequential_ids(labels: np.ndarray) -> np.ndarray:
    """The ids of ``labels`` replaced by their rank: 0 stays 0, others 1..n.

    Returns int32 (int64 for more than 2**31 - 1 distinct ids), same shape.
    Costs a sort: call it only where an id does not fit.

    Examples
    --------
    >>> sequential_ids(np.array([[0, 2**64 - 1, 2**63, 7]], np.uint64))
    array([[0, 3, 2, 1]], dtype=int32)
    """
    labels = np.asarray(labels)
    ids, inverse = np.unique(labels.ravel(), return_inverse=True)
    if ids.size and ids[0] != 0:  # no background: the smallest id is 1, not 0
        inverse += 1
    dtype = np.int32 if ids.size <= np.iinfo(np.int32).max else np.int64
    return inverse.reshape(labels.shape).astype(dtype, copy=False)


def is_torch_tensor(value: object) -> bool:
    """True for a ``torch.Tensor``; never imports torch (if it is not loaded, nothing is one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def line_view(array: np.ndarray, axis: int) -> np.ndarray:
    """``(outer, n, inner)`` view of a C-contiguous array, ``n`` along ``axis``.

    A kernel looping over axis 1 of this view walks lines along ``axis``,
    with the innermost loop over contiguous memory.
    """
    shape = array.shape
    return array.reshape(
        int(np.prod(shape[:axis], dtype=np.int64)),
        shape[axis],
        int(np.prod(shape[axis + 1 :], dtype=np.int64)),
    )


# More pixels than any axis has: a reach this long covers the whole axis.
_ALL_OF_THE_AXIS = 2**62


def steps_within(distance: float, step: float) -> int:
    """``ceil(distance / step)``: the pixels of size ``step`` a reach of ``distance`` spans.

    A quotient too large for an int (a spacing of 1e-320 in a file's
    metadata) is held at 2**62, longer than any axis, instead of raising
    OverflowError: the reach is then the whole axis, and the limits on
    block sizes decide whether the volume is taken.

    Examples
    --------
    >>> steps_within(10.0, 4.0), steps_within(8.0, 4.0), steps_within(1.0, 1e-320)
    (3, 2, 4611686018427387904)
    """
    quotient = float(distance) / float(step)  # inf, not a warning, on overflow
    if not quotient < _ALL_OF_THE_AXIS:  # also NaN and inf
        return _ALL_OF_THE_AXIS
    return math.ceil(quotient)
