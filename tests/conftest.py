from __future__ import annotations

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

# One thread for torch and for numpy/scikit-learn's BLAS and OpenMP pools: the problems
# in tests are tiny, and workers spinning on a loaded 2-core machine can slow them by an
# order of magnitude.
torch.set_num_threads(1)
threadpool_limits(1)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
