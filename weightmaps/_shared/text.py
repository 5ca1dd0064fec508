"""Text helpers for messages: one line each, whatever a file name holds."""

from __future__ import annotations

__all__ = ["first_line", "printable"]


def first_line(text: str) -> str:
    """The first non-empty line of ``text``, stripped (``"unknown error"`` if none)."""
    for line in str(text).splitlines():
        if line.strip():
            return line.strip()
    return "unknown error"


def printable(text: str) -> str:
    """``text`` with control characters escaped, so that a message stays one line.

    File names come from strangers: a newline or a terminal escape in one
    must not split a report line or drive the terminal.

    Examples
    --------
    >>> printable("a\\nb.png")
    'a\\\\nb.png'
    >>> printable("noyau_é.tif")
    'noyau_é.tif'
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
