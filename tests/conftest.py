from __future__ import annotations

import numpy as np
import pytest
import torch

# Small thread counts keep timings stable on 2-core CI machines.
torch.set_num_threads(2)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
