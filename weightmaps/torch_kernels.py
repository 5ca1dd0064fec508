"""Torch kernels of the three weight maps: any torch device, one mask or a batch.

The same maps as :func:`weightmaps.unet_weight_map`,
:func:`weightmaps.edge_weight_map` and :func:`weightmaps.balance_weight_map`,
written as whole-tensor torch operations so that they run on a GPU (or on the
CPU through torch) and on a stack of same-shape masks at once. Results equal
the numpy/numba kernels within ``1e-5 * w0`` (U-Net) and ``1e-5`` (edge,
balance).

This module imports torch; ``import weightmaps`` does not import it.

Every kernel takes a torch tensor (the result stays on its device) or a numpy
array (the result is on the CPU, or on ``device=``), and comes in two forms:
``*_torch(mask)`` for one ``(*spatial)`` mask and ``*_torch_batch(masks)`` for a
``(B, *spatial)`` stack; the batched result equals the per-mask results
stacked. Results are float32.

U-Net border term
-----------------
The two nearest *distinct* labels are separable like the plain distance
transform (see :mod:`weightmaps.nearest` for the proof). For every pixel each
pass keeps the two nearest sites with different labels, packed into one int64
key per site: the float32 squared distance's bit pattern in the high word
(non-negative floats order like their bits) and the label in the low word, so
"nearer" is one integer comparison and "same label" one comparison of the low
words. Missing sites are ``+inf`` with label ``-1`` (all ones).

- The first pass, along the axis with the finest spacing, finds for each
  pixel the nearest site on each side and the nearest one behind it with
  another label with running maxima (``cummax``) of positions: its cost does
  not depend on the cut-off.
- Every later pass merges, offset by offset, the pairs of the lines within
  the cut-off radius, ``ceil(cutoff / spacing)`` pixels each way, with
  elementwise operations on shifted slices: memory is a few tensors of the
  mask's size, whatever the number of offsets or instances.

A computed pair is always a pair of real sites with their exact distances,
so it can only be farther than the true pair; restricting the offsets to the
cut-off box leaves every pair with ``d1 + d2 < cutoff`` exact, and the term
is added exactly where ``d1 + d2 < cutoff`` (:func:`weightmaps.border_cutoff`),
as on the CPU.

Memory
------
:func:`estimate_bytes` gives the peak working memory of each kernel
(:data:`BYTES_PER_PIXEL` per pixel of the batch, besides the input). The
U-Net and edge kernels bound it by ``max_bytes``: a batch is split into
groups of masks, and a mask too large alone into slabs along one axis with
halos of the kernel's reach, which changes no value. The default budget is
half the free memory of a CUDA device, and 2 GiB on the CPU.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import torch

from weightmaps.balance import BALANCE_MODES, ClassCounts, class_weights
from weightmaps.edge import _check_kernel_size
from weightmaps.nearest import _as_label_array, _axis_order, _normalized_spacing
from weightmaps.unet import border_cutoff, explicit_class_weights

__all__ = [
    "BYTES_PER_PIXEL",
    "balance_weight_map_torch",
    "balance_weight_map_torch_batch",
    "class_counts_torch_batch",
    "default_max_bytes",
    "edge_weight_map_torch",
    "edge_weight_map_torch_batch",
    "estimate_bytes",
    "unet_weight_map_torch",
    "unet_weight_map_torch_batch",
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

# Pair keys: float32 bits of the squared distance << 32 | label (low 32 bits).
_LOW = 0xFFFFFFFF
_INF_BITS = 0x7F800000
_MISSING = (_INF_BITS << 32) | _LOW
# int64 with only the sign bit set: XOR with it orders uint64 bits as int64.
_SIGN_BIT = -(2**63)
# Position of the high (distance) word in an int64 viewed as two int32/float32.
_HIGH_WORD = 1 if sys.byteorder == "little" else 0


# ----------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------


def _target_device(x: object, device: DeviceLike) -> torch.device:
    if device is not None:
        return torch.device(device)
    if isinstance(x, torch.Tensor):
        return x.device
    return torch.device("cpu")


def _label_tensor(instances: ArrayLike, device: torch.device) -> torch.Tensor:
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
        labels = torch.from_numpy(_as_label_array(instances)).to(device, torch.int64)
    lo, hi = (int(v) for v in torch.aminmax(labels))
    if lo < 0:
        raise ValueError("instance labels must be >= 0 (0 is background)")
    if hi >= _LOW:
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


def _bool_tensor(mask: ArrayLike, shape: torch.Size, device: torch.device, name: str):
    t = mask if isinstance(mask, torch.Tensor) else torch.from_numpy(np.asarray(mask, bool))
    t = t.to(device, torch.bool)
    if t.shape != shape:
        raise ValueError(f"{name} shape {tuple(t.shape)} differs from the mask's {tuple(shape)}")
    return t


def _any_tensor(mask: ArrayLike, device: torch.device) -> torch.Tensor:
    if isinstance(mask, torch.Tensor):
        return mask.to(device)
    array = np.asarray(mask)
    if array.dtype in (np.uint16, np.uint32, np.uint64):
        # torch has little arithmetic on these; widen on the host.
        if array.dtype == np.uint64 and array.size and int(array.max()) > np.iinfo(np.int64).max:
            raise ValueError("uint64 ids beyond the int64 range are not supported")
        array = array.astype(np.int64)
    return torch.from_numpy(np.ascontiguousarray(array)).to(device)


def _widen(mask: torch.Tensor) -> torch.Tensor:
    """Unsigned 16/32/64-bit tensors to int64 (torch lacks most ops on them)."""
    if mask.dtype == torch.uint64:
        signed = mask.view(torch.int64)
        if bool((signed < 0).any()):  # a cast would turn them negative
            raise ValueError("uint64 ids beyond the int64 range are not supported")
        return signed
    if mask.dtype in (torch.uint16, torch.uint32):
        return mask.to(torch.int64)
    return mask


def _check_batch(masks: torch.Tensor) -> None:
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


def _budget_pixels(kind: str, device: torch.device, max_bytes: int | None) -> int:
    budget = default_max_bytes(device) if max_bytes is None else int(max_bytes)
    return max(budget // BYTES_PER_PIXEL[kind], 1)


def _in_groups(
    batch: torch.Tensor,
    out: torch.Tensor,
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


def _slabs(length: int, per_row: int, halo: int, budget_pixels: int):
    """``(lo, hi, a, b)``: output rows ``[lo, hi)`` computed from rows ``[a, b)``.

    A slab holds at least one halo's worth of rows of output, so the work
    redone on halos stays below three times.
    """
    rows = max(budget_pixels // max(per_row, 1) - 2 * halo, halo, 1)
    for lo in range(0, length, rows):
        hi = min(lo + rows, length)
        yield lo, hi, max(lo - halo, 0), min(hi + halo, length)


# ----------------------------------------------------------------------------
# U-Net border weights
# ----------------------------------------------------------------------------


def _pack(squared: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """One int64 key per site: float32 bits of the distance, then the label."""
    bits = squared.to(torch.float32).view(torch.int32).to(torch.int64)
    return bits.bitwise_left_shift_(32).bitwise_or_(labels & _LOW)


def _squared_distance(keys: torch.Tensor) -> torch.Tensor:
    return (keys >> 32).to(torch.int32).view(torch.float32)


def _low_words(keys: torch.Tensor) -> torch.Tensor:
    """The labels of ``keys`` as a strided int32 view (no copy)."""
    return keys.view(torch.int32)[..., 1 - _HIGH_WORD :: 2]


def _plus_distance(keys: torch.Tensor, offset: float) -> torch.Tensor:
    """A copy of ``keys`` with ``offset`` added to every squared distance.

    Added to the float32 high words in place: +inf (missing) stays +inf and
    the labels are not touched.
    """
    out = keys.clone()
    out.view(torch.float32)[..., _HIGH_WORD::2].add_(offset)
    return out


def _merge_into(a1: torch.Tensor, a2: torch.Tensor, b1: torch.Tensor, b2: torch.Tensor) -> None:
    """``(a1, a2)`` becomes the two nearest distinct labels of ``(a1, a2, b1, b2)``.

    Both pairs hold different labels and ``key1 < key2``. The nearest is
    ``min(a1, b1)``. If ``a1`` and ``b1`` share a label, the second is
    ``min(a2, b2)``; else it is ``min(loser, a2, b2)`` with ``loser =
    max(a1, b1)``: the loser's own second may share the winner's label, but
    it is farther than the loser and never wins. So minima and maxima only,
    no ``where`` (slow on CPU); ``a1`` and ``a2`` may be views, written in place.
    """
    same = _low_words(a1) == _low_words(b1)
    loser = torch.maximum(a1, b1)
    torch.minimum(a1, b1, out=a1)
    torch.minimum(a2, b2, out=a2)
    # A loser with the winner's label is no candidate: lift it to "missing".
    torch.maximum(loser, same * _MISSING, out=loser)
    torch.minimum(a2, loser, out=a2)


def _shift_one(x: torch.Tensor, dim: int, fill: int) -> torch.Tensor:
    """``out[i] = x[i - 1]`` along ``dim``, ``fill`` at ``i = 0``."""
    out = torch.full_like(x, fill)
    n = x.shape[dim]
    out.narrow(dim, 1, n - 1).copy_(x.narrow(dim, 0, n - 1))
    return out


def _scan_side(labels: torch.Tensor, dim: int, step2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of the nearest site at or before each pixel along ``dim``, and of
    the nearest one before it with another label.

    The foreground sites of a line fall into runs of one label; the second
    site is the last site before the start of the run holding the first.
    Both come from running maxima of positions, so the cost is linear.
    Positions are ``-1`` where there is none.
    """
    n = labels.shape[dim]
    view = [1] * labels.ndim
    view[dim] = n
    after = torch.arange(1, n + 1, device=labels.device).view(view)  # position + 1
    foreground = labels != 0
    p1 = torch.cummax(foreground * after - 1, dim).values
    # Labels with a -1 in front: gathering at position + 1 reads -1 for "none".
    pad_shape = list(labels.shape)
    pad_shape[dim] = 1
    padded = torch.cat([labels.new_full(pad_shape, -1), labels], dim)
    q1 = torch.gather(padded, dim, p1 + 1)
    del padded
    p1_before = _shift_one(p1, dim, -1)
    q1_before = _shift_one(q1, dim, -1)
    run_start = foreground & (labels != q1_before)
    del foreground
    start = torch.cummax(run_start * after - 1, dim).values.clamp_(min=0)
    del run_start
    # Before any run (start clamped to 0) both read the fill at i = 0: none.
    p2 = torch.gather(p1_before, dim, start)
    q2 = torch.gather(q1_before, dim, start)
    del start, p1_before, q1_before
    key1 = _site_keys(p1, q1, after, step2)
    del p1, q1
    return key1, _site_keys(p2, q2, after, step2)


def _site_keys(
    position: torch.Tensor, label: torch.Tensor, after: torch.Tensor, step2: float
) -> torch.Tensor:
    """Keys of the sites at ``position`` (-1: none) seen from each pixel of
    the line (``after`` = pixel position + 1)."""
    # float64 then rounded once to float32, as the numba kernel does.
    d = (after - 1 - position).to(torch.float64).square_().mul_(step2)
    return _pack(d.masked_fill_(position < 0, math.inf), label)


def _scan_pass(labels: torch.Tensor, dim: int, step2: float) -> tuple[torch.Tensor, torch.Tensor]:
    """First pass: the pair of each pixel along its line, from both sides."""
    k1, k2 = _scan_side(labels, dim, step2)
    r1, r2 = _scan_side(labels.flip(dim), dim, step2)
    _merge_into(k1, k2, r1.flip(dim), r2.flip(dim))
    return k1, k2


def _window_pass(
    k1: torch.Tensor, k2: torch.Tensor, dim: int, reach: int, step2: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Later pass: merge the pairs of the lines at offsets ``1..reach`` along
    ``dim`` into each pixel's pair. Elementwise work on shifted slices: a
    site beyond the edge is simply not offered (the "missing" padding)."""
    n = k1.shape[dim]
    o1, o2 = k1.clone(), k2.clone()
    for o in range(1, min(reach, n - 1) + 1):
        c1 = _plus_distance(k1, o * o * step2)
        c2 = _plus_distance(k2, o * o * step2)
        m = n - o
        # Pixel i sees the line at i - o, then the one at i + o.
        lo1, lo2 = o1.narrow(dim, o, m), o2.narrow(dim, o, m)
        _merge_into(lo1, lo2, c1.narrow(dim, 0, m), c2.narrow(dim, 0, m))
        hi1, hi2 = o1.narrow(dim, 0, m), o2.narrow(dim, 0, m)
        _merge_into(hi1, hi2, c1.narrow(dim, o, m), c2.narrow(dim, o, m))
        del c1, c2
    return o1, o2


def _pair_keys(
    labels: torch.Tensor, spacing: np.ndarray, cutoff: float, axes: list[int]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Keys of the two nearest distinct sites after the passes along ``axes``
    (spatial axes; the batch axis 0 is never crossed)."""
    first = axes[0]
    k1, k2 = _scan_pass(labels, first + 1, float(spacing[first] ** 2))
    for axis in axes[1:]:
        reach = math.ceil(cutoff / spacing[axis])
        k1, k2 = _window_pass(k1, k2, axis + 1, reach, float(spacing[axis] ** 2))
    return k1, k2


def _add_border(
    labels: torch.Tensor,
    out: torch.Tensor,
    spacing: np.ndarray,
    w0: float,
    sigma: float,
    cutoff: float,
    axes: list[int],
) -> None:
    """``out += w0 exp(-(d1 + d2)^2 / 2 sigma^2)`` where ``d1 + d2 < cutoff``,
    on background pixels with a second instance."""
    k1, k2 = _pair_keys(labels, spacing, cutoff, axes)
    s = _squared_distance(k1).sqrt() + _squared_distance(k2).sqrt()
    del k1
    found = (k2 != _MISSING) & (labels == 0) & (s < cutoff)
    del k2
    term = s.square_().mul_(-1.0 / (2.0 * sigma * sigma)).exp_().mul_(w0)
    out.add_(torch.where(found, term, 0.0))


def _border_term(
    labels: torch.Tensor,
    out: torch.Tensor,
    *,
    w0: float,
    sigma: float,
    spacing: np.ndarray,
    budget_pixels: int,
) -> None:
    """Add the border term to ``out`` (both ``(B, *spatial)``), in groups of
    masks or in slabs along the last pass's axis that fit ``budget_pixels``.

    Every pass but the last is independent along the last pass's axis, which
    looks at most ``reach`` lines away: a slab grown by that halo gives the
    same values as the whole mask.
    """
    cutoff = border_cutoff(sigma)
    axes = _axis_order(spacing)
    ndim = labels.ndim - 1

    def run_group(items: slice) -> None:
        _add_border(labels[items], out[items], spacing, w0, sigma, cutoff, axes)

    def run_slabbed(b: int) -> None:
        if ndim == 1:  # a line: the scan pass only, nothing to split across
            run_group(slice(b, b + 1))
            return
        axis = axes[-1]
        length = labels.shape[axis + 1]
        halo = math.ceil(cutoff / spacing[axis])
        per_row = labels[b].numel() // length
        for lo, hi, a, z in _slabs(length, per_row, halo, budget_pixels):
            slab = labels[b : b + 1].narrow(axis + 1, a, z - a).contiguous()
            part = torch.zeros(slab.shape, dtype=torch.float32, device=slab.device)
            _add_border(slab, part, spacing, w0, sigma, cutoff, axes)
            out[b : b + 1].narrow(axis + 1, lo, hi - lo).add_(
                part.narrow(axis + 1, lo - a, hi - lo)
            )
            del slab, part

    _in_groups(labels, out, budget_pixels, run_group, run_slabbed)


def _per_class_values(
    foreground: torch.Tensor,
    class_weights_: Mapping[int, float] | str | None,
    ignore: torch.Tensor | None,
) -> tuple[list[float], list[float]] | None:
    """Background and foreground ``w_c`` of every mask (None: 1 everywhere),
    as the CPU kernel's ``_base_weights`` computes them."""
    batch = foreground.shape[0]
    if class_weights_ is None:
        return None
    if isinstance(class_weights_, str):
        if class_weights_ != "balanced":
            raise ValueError(
                f"class_weights must be a mapping, 'balanced' or None, got {class_weights_!r}"
            )
        counted = torch.ones_like(foreground) if ignore is None else ~ignore
        dims = tuple(range(1, foreground.ndim))
        n1 = (foreground & counted).sum(dims)
        n0 = counted.sum(dims) - n1
        counts = torch.stack([n0, n1], 1).tolist()  # tiny: to the host
        bg, fg = [], []
        for n0_, n1_ in counts:
            w = {0: 1.0, 1: 1.0, **class_weights({0: n0_, 1: n1_}, "inverse")}
            bg.append(w[0])
            fg.append(w[1])
        return bg, fg
    weights = explicit_class_weights(class_weights_)
    return [weights[0]] * batch, [weights[1]] * batch


def unet_weight_map_torch_batch(
    instances: ArrayLike,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | str | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: ArrayLike | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """U-Net border weight maps of a stack of same-shape instance masks.

    Parameters
    ----------
    instances : Tensor or ndarray of int, shape (B, *spatial)
        Instance labels, 0 = background, ids need not be contiguous; each
        mask is independent (ids may repeat across masks).
    w0, sigma, class_weights, spacing
        As :func:`weightmaps.unet_weight_map`; ``spacing`` is per spatial
        axis and shared by the batch, ``"balanced"`` counts each mask alone.
    ignore_mask : Tensor or ndarray of bool, shape (B, *spatial), optional
        Pixels that get weight 0.
    device : torch.device or str, optional
        Where to compute. Default: the input tensor's device (CPU for numpy).
    max_bytes : int, optional
        Working-memory budget (default :func:`default_max_bytes`): masks are
        done in groups, and a mask too large alone in slabs, to fit it.

    Returns
    -------
    Tensor of float32, shape (B, *spatial)
        Equal to ``unet_weight_map`` on every mask within ``1e-5 * w0``.

    Examples
    --------
    >>> import torch
    >>> labels = torch.tensor([[[1, 0, 2]], [[3, 0, 0]]])
    >>> w = unet_weight_map_torch_batch(labels)
    >>> round(float(w[0, 0, 1]), 4), float(w[1, 0, 1])
    (10.2312, 1.0)
    """
    target = _target_device(instances, device)
    labels = _label_tensor(instances, target)
    _check_batch(labels)
    ignore = None
    if ignore_mask is not None:
        ignore = _bool_tensor(ignore_mask, labels.shape, target, "ignore_mask")
    return _unet_batch(labels, ignore, w0, sigma, class_weights, spacing, max_bytes)


def _unet_batch(
    labels: torch.Tensor,
    ignore: torch.Tensor | None,
    w0: float,
    sigma: float,
    class_weights_: Mapping[int, float] | str | None,
    spacing: float | Sequence[float] | None,
    max_bytes: int | None,
) -> torch.Tensor:
    """The U-Net maps of validated ``(B, *spatial)`` int64 labels."""
    if w0 < 0 or not math.isfinite(w0):
        raise ValueError(f"w0 must be finite and >= 0, got {w0}")
    if not sigma > 0 or not math.isfinite(sigma):
        raise ValueError(f"sigma must be finite and > 0, got {sigma}")
    spacing_ = _normalized_spacing(spacing, labels.ndim - 1)
    foreground = labels != 0
    values = _per_class_values(foreground, class_weights_, ignore)
    if values is None:
        out = torch.ones(labels.shape, dtype=torch.float32, device=labels.device)
    else:
        view = (-1,) + (1,) * (labels.ndim - 1)
        bg = torch.tensor(values[0], dtype=torch.float32, device=labels.device).view(view)
        fg = torch.tensor(values[1], dtype=torch.float32, device=labels.device).view(view)
        out = torch.where(foreground, fg, bg)
    del foreground
    if w0 > 0:
        budget = _budget_pixels("unet", labels.device, max_bytes)
        _border_term(labels, out, w0=w0, sigma=sigma, spacing=spacing_, budget_pixels=budget)
    if ignore is not None:
        out.masked_fill_(ignore, 0.0)
    return out


def unet_weight_map_torch(
    instances: ArrayLike,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: Mapping[int, float] | str | None = None,
    spacing: float | Sequence[float] | None = None,
    ignore_mask: ArrayLike | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """U-Net border weight map of one instance mask, on a torch device.

    ``w_c + w0 * exp(-(d1 + d2)^2 / (2 sigma^2))`` on background pixels with
    at least two instances, ``w_c`` elsewhere, 0 on ignored pixels: the map
    of :func:`weightmaps.unet_weight_map`, equal to it within ``1e-5 * w0``
    (the term is dropped where ``d1 + d2 >= border_cutoff(sigma)``, as there).

    Parameters
    ----------
    instances : Tensor or ndarray of int, shape (*spatial)
        2-D or 3-D instance labels, 0 = background.
    w0, sigma, class_weights, spacing, ignore_mask
        As :func:`weightmaps.unet_weight_map`.
    device, max_bytes
        As :func:`unet_weight_map_torch_batch`.

    Returns
    -------
    Tensor of float32
        Same shape as ``instances``, on the input tensor's device (the CPU
        for a numpy array) unless ``device`` says otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> w = unet_weight_map_torch(np.array([[1, 0, 2]]), w0=10, sigma=5)
    >>> w.dtype, float(w[0, 0]), round(float(w[0, 1]), 4)
    (torch.float32, 1.0, 10.2312)
    """
    target = _target_device(instances, device)
    labels = _label_tensor(instances, target)
    ignore = None
    if ignore_mask is not None:
        ignore = _bool_tensor(ignore_mask, labels.shape, target, "ignore_mask")[None]
    return _unet_batch(labels[None], ignore, w0, sigma, class_weights, spacing, max_bytes)[0]


# ----------------------------------------------------------------------------
# Edge weights
# ----------------------------------------------------------------------------


def _box_sum_axis(x: torch.Tensor, dim: int, k: int) -> torch.Tensor:
    """Sum over ``k`` entries centred on each along ``dim``, zero outside:
    the difference of two running sums, so the cost does not depend on k."""
    half = k // 2
    n = x.shape[dim]
    pad_shape = list(x.shape)
    pad_shape[dim] = half + 1  # one more leading zero: the sum "before" entry 0
    front = x.new_zeros(pad_shape)
    pad_shape[dim] = half
    sums = torch.cat([front, x, x.new_zeros(pad_shape)], dim).cumsum_(dim)
    return sums.narrow(dim, k, n) - sums.narrow(dim, 0, n)


def _box_sum(x: torch.Tensor, k: int) -> torch.Tensor:
    for dim in range(1, x.ndim):
        x = _box_sum_axis(x, dim, k)
    return x


def _exact_int_dtype(shape: Sequence[int], k: int) -> torch.dtype:
    """int32 running sums of a 0/1 mask are exact while the largest partial
    sum, (line + k) * k^(axes before), stays below 2^31."""
    worst = max((n + k) * k ** (len(shape) - 1) for n in shape)
    return torch.int32 if worst < 2**31 else torch.int64


def _edge_term(m: torch.Tensor, k: int, scale: float) -> torch.Tensor:
    """``|box_k(m) - m|`` in float32. An integer (0/1) ``m`` is summed exactly
    in integers; a soft one in float64, as the numba kernel accumulates."""
    box = _box_sum(m, k)
    if m.dtype.is_floating_point:
        return box.mul_(scale).sub_(m).abs_().to(torch.float32)
    return box.to(torch.float32).mul_(scale).sub_(m).abs_()


def _foreground_t(mask: torch.Tensor, ignore_index: int | None, int_dtype: torch.dtype):
    if mask.dtype == torch.bool:
        return mask.to(int_dtype)
    if mask.dtype.is_complex:
        raise TypeError(f"mask must be bool, integer or float, got dtype {mask.dtype}")
    if not mask.dtype.is_floating_point:
        fg = mask != 0
        if ignore_index is not None:
            fg &= mask != ignore_index
        return fg.to(int_dtype)
    lo, hi = torch.aminmax(mask)
    finite = bool(torch.isfinite(mask).all())
    if not finite or float(lo) < 0 or float(hi) > 1:
        raise ValueError("a float mask must be a soft foreground in [0, 1]")
    # Rounded to float32 first, as the CPU kernel reads it, summed in float64.
    return mask.to(torch.float32).to(torch.float64)


def _edge_batch(
    mask: torch.Tensor, k: int, alpha: float, classes: list[int] | None, ignore_index: int | None
) -> torch.Tensor:
    spatial = mask.shape[1:]
    scale = 1.0 / float(k) ** len(spatial)
    int_dtype = _exact_int_dtype(spatial, k)
    if classes is None:
        edge = _edge_term(_foreground_t(mask, ignore_index, int_dtype), k, scale)
    else:
        edge = torch.zeros(mask.shape, dtype=torch.float32, device=mask.device)
        for c in classes:
            torch.maximum(edge, _edge_term((mask == c).to(int_dtype), k, scale), out=edge)
    weights = edge.mul_(alpha).add_(1.0)
    if ignore_index is not None and not mask.dtype.is_floating_point and mask.dtype != torch.bool:
        weights.masked_fill_(mask == ignore_index, 0.0)
    return weights


def edge_weight_map_torch_batch(
    masks: ArrayLike,
    *,
    kernel_size: int = 31,
    alpha: float = 5.0,
    classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Edge weights ``1 + alpha * |box_k(m) - m|`` of a stack of same-shape masks.

    Parameters
    ----------
    masks : Tensor or ndarray, shape (B, *spatial)
        Binary (bool or int, nonzero = foreground), a soft float foreground
        in [0, 1], or with ``classes`` / ``num_classes`` integer class ids.
    kernel_size, alpha, classes, num_classes, ignore_index
        As :func:`weightmaps.edge_weight_map`.
    device, max_bytes
        As :func:`unet_weight_map_torch_batch`; slabs are cut along the first
        spatial axis with halos of ``kernel_size // 2``.

    Returns
    -------
    Tensor of float32, shape (B, *spatial)
        Equal to ``edge_weight_map`` on every mask within 1e-5 (the box is
        ``avg_pool{2,3}d(m, k, 1, k // 2)`` with zero padding counted).

    Examples
    --------
    >>> import torch
    >>> m = torch.zeros(2, 5, 5, dtype=torch.bool); m[0, 2, 2] = True
    >>> w = edge_weight_map_torch_batch(m, kernel_size=3, alpha=9.0)
    >>> float(w[0, 2, 2]), float(w[0, 1, 1]), float(w[1, 2, 2])
    (9.0, 2.0, 1.0)
    """
    target = _target_device(masks, device)
    mask = _widen(_any_tensor(masks, target))
    _check_batch(mask)
    if classes is not None and num_classes is not None:
        raise ValueError("give classes or num_classes, not both")
    if num_classes is not None:
        classes = range(num_classes)
    _check_kernel_size(kernel_size)
    class_list: list[int] | None = None
    if classes is not None:
        if mask.dtype.is_floating_point or mask.dtype == torch.bool:
            raise TypeError(f"a semantic mask must hold integer class ids, got {mask.dtype}")
        # An absent class has box(m) = m = 0 everywhere: skip it (one sync).
        present = set(torch.unique(mask).tolist())
        class_list = [
            int(c)
            for c in classes
            if int(c) in present and (ignore_index is None or c != ignore_index)
        ]
    out = torch.empty(mask.shape, dtype=torch.float32, device=target)
    budget = _budget_pixels("edge", target, max_bytes)
    halo = kernel_size // 2

    def run_group(items: slice) -> None:
        out[items] = _edge_batch(mask[items], kernel_size, alpha, class_list, ignore_index)

    def run_slabbed(b: int) -> None:
        length = mask.shape[1]
        per_row = mask[b].numel() // length
        for lo, hi, a, z in _slabs(length, per_row, halo, budget):
            part = _edge_batch(mask[b : b + 1, a:z], kernel_size, alpha, class_list, ignore_index)
            out[b, lo:hi] = part[0, lo - a : hi - a]

    _in_groups(mask, out, budget, run_group, run_slabbed)
    return out


def edge_weight_map_torch(
    mask: ArrayLike,
    *,
    kernel_size: int = 31,
    alpha: float = 5.0,
    classes: Sequence[int] | None = None,
    num_classes: int | None = None,
    ignore_index: int | None = None,
    device: DeviceLike = None,
    max_bytes: int | None = None,
) -> torch.Tensor:
    """Edge weights of one mask on a torch device: :func:`weightmaps.edge_weight_map`.

    The box filter is two running sums per axis (exact integer sums for a
    0/1 mask), so its cost does not depend on ``kernel_size``. Parameters as
    :func:`edge_weight_map_torch_batch`, for a ``(*spatial)`` mask.

    Examples
    --------
    >>> import numpy as np
    >>> m = np.zeros((5, 5), bool); m[2, 2] = True
    >>> w = edge_weight_map_torch(m, kernel_size=3, alpha=9.0)
    >>> float(w[2, 2]), float(w[1, 1]), float(w[0, 0])
    (9.0, 2.0, 1.0)
    """
    target = _target_device(mask, device)
    t = _any_tensor(mask, target)
    if t.ndim == 0 or t.numel() == 0:
        raise ValueError(f"mask must be a non-empty array, got shape {tuple(t.shape)}")
    return edge_weight_map_torch_batch(
        t[None],
        kernel_size=kernel_size,
        alpha=alpha,
        classes=classes,
        num_classes=num_classes,
        ignore_index=ignore_index,
        max_bytes=max_bytes,
    )[0]


# ----------------------------------------------------------------------------
# Class-balance weights
# ----------------------------------------------------------------------------

# Class ids below this are counted with bincount (linear); others are sorted.
_DENSE_IDS = 1 << 16


def _class_tensor(masks: ArrayLike, device: torch.device) -> torch.Tensor:
    mask = _widen(_any_tensor(masks, device))
    if mask.dtype == torch.bool:
        return mask.to(torch.int64)
    if mask.dtype.is_floating_point or mask.dtype.is_complex:
        raise TypeError(
            f"class-balance weights need integer class ids, got dtype {mask.dtype}; "
            "threshold a float mask first"
        )
    return mask.to(torch.int64)


def _bins(mask: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """The class ids of the batch (sorted) and every pixel's index among them."""
    lo, hi = (int(v) for v in torch.aminmax(mask))
    if lo >= 0 and hi < _DENSE_IDS:
        return list(range(hi + 1)), mask
    classes, inverse = torch.unique(mask, return_inverse=True)
    return classes.tolist(), inverse


def _histograms(index: torch.Tensor, n_bins: int, counted: torch.Tensor | None) -> list[list[int]]:
    """Pixels per bin of every mask: one bincount over (mask, bin), one sync."""
    batch = index.shape[0]
    flat = index.reshape(batch, -1) + torch.arange(batch, device=index.device)[:, None] * n_bins
    if counted is not None:
        flat = torch.where(counted.reshape(batch, -1), flat, batch * n_bins)  # a spare bin
    counts = torch.bincount(flat.reshape(-1), minlength=batch * n_bins + 1)
    return counts[: batch * n_bins].view(batch, n_bins).tolist()


def _counts_of(classes: list[int], histogram: list[int]) -> ClassCounts:
    """``class_counts`` of one mask from its histogram."""
    pixels = {c: n for c, n in zip(classes, histogram, strict=True) if n > 0}
    total = int(sum(pixels.values()))
    return ClassCounts(pixels=pixels, image_pixels={c: total for c in pixels})


def class_counts_torch_batch(
    masks: ArrayLike, *, ignore_index: int | None = None, device: DeviceLike = None
) -> list[ClassCounts]:
    """:func:`weightmaps.class_counts` of every mask of a ``(B, *spatial)`` stack.

    Counted on the device; the counts (a few numbers per class) come to the
    host in one transfer. Sum them for dataset scope.

    Examples
    --------
    >>> import torch
    >>> [c.pixels for c in class_counts_torch_batch(torch.tensor([[0, 1, 1], [0, 0, 255]]),
    ...                                             ignore_index=255)]
    [{0: 1, 1: 2}, {0: 2}]
    """
    mask = _class_tensor(masks, _target_device(masks, device))
    _check_batch(mask)
    classes, index = _bins(mask)
    counted = None if ignore_index is None else mask != ignore_index
    return [_counts_of(classes, h) for h in _histograms(index, len(classes), counted)]


def _lookup_table(
    classes: list[int],
    weights: Mapping[int, float],
    present: list[bool],
    ignore_index: int | None,
) -> list[float]:
    """Weight per bin, 0 for the ignore value; refuse a present class without one."""
    table, missing = [], []
    for c, here in zip(classes, present, strict=True):
        if ignore_index is not None and c == ignore_index:
            table.append(0.0)
        elif c in weights:
            table.append(float(weights[c]))
        else:
            table.append(0.0)
            if here:
                missing.append(c)
    if missing:
        raise ValueError(
            f"class(es) {missing} occur in the mask but have no count or weight; "
            "dataset counts must include every mask they are applied to"
        )
    return table


def balance_weight_map_torch_batch(
    masks: ArrayLike,
    *,
    mode: str = "inverse",
    ignore_index: int | None = None,
    counts: ClassCounts | Mapping[int, int] | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Class-balance weights ``w(x) = w_class(x)`` of a stack of same-shape masks.

    Parameters
    ----------
    masks : Tensor or ndarray of int or bool, shape (B, *spatial)
        Class ids.
    mode, ignore_index
        As :func:`weightmaps.balance_weight_map`.
    counts : ClassCounts or mapping, optional
        Counts shared by every mask (dataset scope). Default: each mask's own
        counts (image scope), as ``balance_weight_map`` without ``counts``.
    device : torch.device or str, optional
        As :func:`unet_weight_map_torch_batch`.

    Returns
    -------
    Tensor of float32, shape (B, *spatial)
        Equal to ``balance_weight_map`` on every mask. The per-class weights
        come from :func:`weightmaps.class_weights` on the host (the counts
        are a few numbers); the map is painted on the device from a table.

    Examples
    --------
    >>> import torch
    >>> balance_weight_map_torch_batch(torch.tensor([[0, 0, 0, 1], [0, 1, 1, 1]]))
    tensor([[0.6667, 0.6667, 0.6667, 2.0000],
            [2.0000, 0.6667, 0.6667, 0.6667]])
    """
    if mode not in BALANCE_MODES:
        raise ValueError(f"unknown balance mode {mode!r}; expected one of {BALANCE_MODES}")
    target = _target_device(masks, device)
    mask = _class_tensor(masks, target)
    _check_batch(mask)
    classes, index = _bins(mask)
    counted = None if ignore_index is None else mask != ignore_index
    histograms = _histograms(index, len(classes), counted)
    batch = mask.shape[0]
    if counts is not None:
        weights = class_weights(counts, mode)
        anywhere = [any(h[i] > 0 for h in histograms) for i in range(len(classes))]
        table = _lookup_table(classes, weights, anywhere, ignore_index)
        lut = torch.tensor(table, dtype=torch.float32, device=target)
        return lut[index]
    rows = []
    for h in histograms:
        weights = class_weights(_counts_of(classes, h), mode)
        rows.append(_lookup_table(classes, weights, [n > 0 for n in h], ignore_index))
    lut = torch.tensor(rows, dtype=torch.float32, device=target)
    flat = index.reshape(batch, -1)
    return torch.gather(lut, 1, flat).view(mask.shape)


def balance_weight_map_torch(
    mask: ArrayLike,
    *,
    mode: str = "inverse",
    ignore_index: int | None = None,
    counts: ClassCounts | Mapping[int, int] | None = None,
    device: DeviceLike = None,
) -> torch.Tensor:
    """Class-balance weights of one mask on a torch device: :func:`weightmaps.balance_weight_map`.

    Parameters as :func:`balance_weight_map_torch_batch`, for one ``(*spatial)``
    mask; without ``counts`` the mask's own counts are used.

    Examples
    --------
    >>> import numpy as np
    >>> balance_weight_map_torch(np.array([[0, 0, 0, 1]]))
    tensor([[0.6667, 0.6667, 0.6667, 2.0000]])
    """
    target = _target_device(mask, device)
    t = _class_tensor(mask, target)
    if t.ndim == 0 or t.numel() == 0:
        raise ValueError(f"mask must be a non-empty array, got shape {tuple(t.shape)}")
    return balance_weight_map_torch_batch(
        t[None], mode=mode, ignore_index=ignore_index, counts=counts
    )[0]
