"""Recognise torch tensors without importing torch."""

from __future__ import annotations

import sys


def is_torch_tensor(value: object) -> bool:
    """True for a ``torch.Tensor``; never imports torch (if it is not loaded, nothing is one)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)
