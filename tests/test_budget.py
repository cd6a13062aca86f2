"""max_time counts from the call to fit (ldelib._budget)."""

import time

import numpy as np
import pytest

from ldelib import GMM
from ldelib._budget import fit_clock, fit_deadline


def test_outside_a_fit_the_budget_counts_from_now():
    assert fit_deadline(None) is None
    before = time.perf_counter()
    assert before + 5 <= fit_deadline(5) <= time.perf_counter() + 5


def test_inside_a_fit_it_counts_from_the_start_and_a_nested_fit_has_its_own_clock():
    with fit_clock():
        outer = fit_deadline(1.0)
        time.sleep(0.01)
        assert fit_deadline(1.0) == outer
        with fit_clock():
            assert fit_deadline(1.0) > outer
        assert fit_deadline(1.0) == outer


def test_work_before_the_model_hook_counts_against_max_time(monkeypatch):
    from ldelib._sources import Standardizer

    slow = Standardizer.of_array

    def standardize(X):
        time.sleep(0.3)  # a file of millions of rows takes seconds here
        return slow(X)

    seen = []
    fit = GMM._fit

    def spy(self, Z, rng):
        seen.append(self._deadline())
        return fit(self, Z, rng)

    monkeypatch.setattr(Standardizer, "of_array", staticmethod(standardize))
    monkeypatch.setattr(GMM, "_fit", spy)
    called = time.perf_counter()
    GMM(2, max_time=10.0, random_state=0).fit(np.random.default_rng(0).normal(size=(50, 2)))
    assert seen[0] == pytest.approx(called + 10.0, abs=0.1)
