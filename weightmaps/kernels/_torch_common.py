"""What every torch kernel shares: inputs as tensors, memory budgets, batches and slabs.

:func:`estimate_bytes` gives the peak working memory of each kernel
(:data:`BYTES_PER_PIXEL` per pixel of the batch, besides the input). The
U-Net and edge kernels bound it by ``max_bytes``: a batch is split into
groups of masks, and a mask too large alone into slabs along one axis with
halos of the kernel's reach, which changes no value. The default budget is
half the free memory of a CUDA device, and 2 GiB on the CPU.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch

from weightmaps.kernels.nearest import as_label_array

__all__ = [
    "BYTES_PER_PIXEL",
    "LABEL_WORD",
    "ArrayLike",
    "DeviceLike",
    "VolumeTensorWarning",
    "any_tensor",
    "bool_tensor",
    "budget_pixels",
    "check_batch",
    "default_max_bytes",
    "estimate_bytes",
    "in_groups",
    "label_tensor",
    "slabs",
    "target_device",
    "warn_if_volume_tensor",
    "widen",
]

ArrayLike = torch.Tensor | np.ndarray
DeviceLike = torch.device | str | None

# Peak working memory per pixel of the batch, on top of the input mask: the
# tensors alive at each kernel's peak, checked against the peak resident memory
# on the CPU (2048^2 and 128^3 masks) and against the CUDA allocator's peak in
# the gpu tests. Measured: unet ~98, edge ~17 (0/1 mask, int32 sums), ~36
# (semantic), ~45 (soft mask, float64 sums), balance ~8.
# - unet: labels int64 (8), output float32 (4), the pass's input and output
#   pair keys (4 x 8), shifted candidates (2 x 8), merge temporaries (~17); the
#   first pass holds instead a handful of int64 positions and labels.
# - edge: foreground or one-hot (4, or 8 when soft), running sums padded by k
#   and their difference (2 x 4 or 2 x 8), the class maximum and the output.
# - balance: the class index (8), bin ids (8) and the output (4).
BYTES_PER_PIXEL: dict[str, int] = {"unet": 128, "edge": 48, "balance": 24}

# Default budget off CUDA; the numpy kernels bound their buffers likewise.
_CPU_MAX_BYTES = 2 << 30

# All ones: the label word of a missing site in a U-Net pair key; larger
# ids are renumbered.
LABEL_WORD = 0xFFFFFFFF
# int64 with only the sign bit set: XOR with it orders uint64 bits as int64.
_SIGN_BIT = -(2**63)


class VolumeTensorWarning(UserWarning):
    """A 3-D tensor given to a one-mask kernel, which reads it as one volume.

    A training loop's ``(B, H, W)`` batch of 2-D labels is also a 3-D tensor:
    read as a volume, its masks' distances and windows reach across the
    batch. The ``*_batch`` kernels take a batch. Working on volumes, silence it
    with ``warnings.simplefilter("ignore", VolumeTensorWarning)``.
    """


def warn_if_volume_tensor(x: object, name: str) -> None:
    """Warn (:class:`VolumeTensorWarning`) when ``x`` is a 3-D tensor given to the
    one-mask kernel ``name``: it may be a batch of 2-D masks."""
    if isinstance(x, torch.Tensor) and x.ndim == 3:
        warnings.warn(
            f"{name}: a 3-D tensor of shape {tuple(x.shape)} is read as one volume (D, H, W); "
            f"a batch of 2-D masks (B, H, W) goes to {name}_batch (weightmaps.torch_kernels). "
            "For volumes: warnings.simplefilter('ignore', "
            "weightmaps.torch_kernels.VolumeTensorWarning)",
            VolumeTensorWarning,
            stacklevel=3,
        )


def target_device(x: object, device: DeviceLike) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return torch.device("cpu")


def label_tensor(instances: ArrayLike, device: torch.device) -> torch.Tensor:
    """Instance labels as int64 on ``device``, validated like the CPU kernel.

    Ids that do not fit the 32-bit label word of a pair key are renumbered
    (only identity matters). One device sync.
    """
    if isinstance(instances, torch.Tensor):
        if instances.dtype.is_floating_point or instances.dtype.is_complex:
            raise TypeError(
                f"instances must be an integer label array, got dtype {instances.dtype}; "
                "turn a binary or semantic mask into instances with label_instances()"
            )
        if instances.ndim == 0 or instances.numel() == 0:
            raise ValueError(
                f"instances must be a non-empty array, got shape {tuple(instances.shape)}"
            )
        if instances.dtype == torch.uint64:
            labels = _uint64_labels(instances.to(device))
        else:
            labels = instances.to(device, torch.int64)
    else:
        labels = torch.from_numpy(as_label_array(instances)).to(device, torch.int64)
    lo, hi = (int(v) for v in torch.aminmax(labels))
    if lo < 0:
        raise ValueError("instance labels must be >= 0 (0 is background)")
    if hi >= LABEL_WORD:
        # All ones in the low word means "missing": renumber huge ids.
        _, inverse = torch.unique(labels, return_inverse=True)
        labels = torch.where(labels == 0, 0, inverse + (1 if lo > 0 else 0))
    return labels


def _uint64_labels(instances: torch.Tensor) -> torch.Tensor:
    """uint64 labels as int64, renumbered by rank when an id is 2**63 or more.

    A plain cast would turn those ids negative. Their bits read as int64 with
    the sign bit flipped order like the unsigned ids, in int64 operations
    that torch has on every device (it lacks most on uint64); their ranks
    keep identity and order, so the map is that of the original ids.
    """
    signed = instances.view(torch.int64)
    if not bool((signed < 0).any()):
        return signed
    _, rank = torch.unique(signed ^ _SIGN_BIT, return_inverse=True)
    # 0 has the smallest key, so it is rank 0 when present.
    return rank if bool((signed == 0).any()) else rank + 1


def bool_tensor(mask: ArrayLike, shape: torch.Size, device: torch.device, name: str):
    t = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask, bool))
    t = t.to(device, torch.bool)
    if t.shape != shape:
        raise ValueError(f"{name} shape {tuple(t.shape)} differs from the mask's {tuple(shape)}")
    return t


def any_tensor(mask: ArrayLike, device: torch.device) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        return mask.to(device)
    array = np.asarray(mask)
    if array.dtype in (np.uint16, np.uint32, np.uint64):
        # torch has little arithmetic on these; widen on the host.
        if array.dtype == np.uint64 and array.size and int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError("uint64 ids beyond the int64 range are not supported")
        array = array.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def widen(mask: torch.Tensor) -> torch.Tensor:
    """Unsigned 16/32/64-bit tensors to int64 (torch lacks most ops on them)."""
    if mask.dtype == torch.uint64:
        signed = mask.view(torch.int64)
        if bool((signed < 0).any()):  # a cast would turn them negative
            raise ValueError("uint64 ids beyond the int64 range are not supported")
        return signed
    if mask.dtype in (torch.uint16, torch.uint32):
        return mask.to(torch.int64)
    return mask


def check_batch(masks: torch.Tensor) -> None:
    if masks.ndim < 2:
        raise ValueError(
            f"a batch is (B, *spatial) with at least one spatial axis, got shape "
            f"{tuple(masks.shape)}"
        )
    if masks.numel() == 0:
        raise ValueError(f"masks must be non-empty, got shape {tuple(masks.shape)}")


def default_max_bytes(device: DeviceLike) -> int:
    """Working-memory budget used when ``max_bytes`` is None.

    Half the free memory of a CUDA device (others' allocations and the
    caching allocator's reserve count as used), 2 GiB elsewhere.

    Examples
    --------
    >>> default_max_bytes("cpu") == 2 << 30
    True
    """
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return max(int(free) // 2, 1)
    return _CPU_MAX_BYTES


def estimate_bytes(
    shape: Sequence[int], kind: str, *, batch: int = 1, kernel_size: int = 31
) -> int:
    """Peak working memory of one kernel call without chunking, in bytes.

    Parameters
    ----------
    shape : sequence of int
        Spatial shape of one mask.
    kind : {"unet", "edge", "balance", "all"}
        The kernel; ``"all"`` is the largest of the three (they run one after
        the other).
    batch : int
        Masks processed together.
    kernel_size : int
        Edge window: the padded running sums grow each line by it.

    Returns
    -------
    int
        ``BYTES_PER_PIXEL[kind] * pixels * batch`` (plus the edge padding),
        besides the input itself. Compare with free device memory to choose
        the device, or pass a budget as ``max_bytes`` and let the kernels
        split the work (same result).

    Examples
    --------
    >>> estimate_bytes((512, 512), "unet", batch=16) // 2**20
    512
    """
    if kind == "all":
        return max(
            estimate_bytes(shape, k, batch=batch, kernel_size=kernel_size) for k in BYTES_PER_PIXEL
        )
    if kind not in BYTES_PER_PIXEL:
        raise ValueError(f"unknown kind {kind!r}; expected one of {sorted(BYTES_PER_PIXEL)}")
    pixels = int(np.prod([int(n) for n in shape], dtype=np.int64)) * int(batch)
    extra = 0
    if kind == "edge":
        # The running sums of the widest pass hold k more entries per line.
        longest = max(int(n) for n in shape)
        extra = 16 * pixels * kernel_size // max(longest, 1)
    return BYTES_PER_PIXEL[kind] * pixels + extra


def budget_pixels(kind: str, device: torch.device, max_bytes: int | None) -> int:
    budget = default_max_bytes(device) if max_bytes is None else int(max_bytes)
    return max(budget // BYTES_PER_PIXEL[kind], 1)


def in_groups(
    batch: torch.Tensor,
    budget_pixels: int,
    run_group: Callable[[slice], None],
    run_slabbed: Callable[[int], None],
) -> None:
    """Run ``run_group(items)`` on groups of masks that fit the budget, or
    ``run_slabbed(item)`` on a mask that does not fit alone."""
    per_mask = batch[0].numel()
    if per_mask > budget_pixels:
        for b in range(batch.shape[0]):
            run_slabbed(b)
        return
    step = max(budget_pixels // per_mask, 1)
    for lo in range(0, batch.shape[0], step):
        run_group(slice(lo, min(lo + step, batch.shape[0])))


def slabs(length: int, per_row: int, halo: int, budget_pixels: int):
    """``(lo, hi, a, b)``: output rows ``[lo, hi)`` computed from rows ``[a, b)``.

    A slab holds at least one halo's worth of rows of output, so the work
    redone on halos stays below three times.
    """
    rows = max(budget_pixels // max(per_row, 1) - 2 * halo, halo, 1)
    for lo in range(0, length, rows):
        hi = min(lo + rows, length)
        yield lo, hi, max(lo - halo, 0), min(hi + halo, length)
