from __future__ import annotations

import numpy as np
import pytest
import torch

# One thread: the networks in tests are tiny, and OpenMP workers spinning on a
# loaded 2-core machine can slow them by an order of magnitude.
torch.set_num_threads(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
