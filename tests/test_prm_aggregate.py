"""Aggregations against hand-computed values (credit modes: tests/test_credit.py)."""

from __future__ import annotations

import math

import pytest

from openrlhf_visualprm.prm.aggregate import aggregate

S = [0.9, 0.5, 0.8]


@pytest.mark.parametrize(
    "how, expected",
    [("mean", 2.2 / 3), ("min", 0.5), ("last", 0.8), ("product", 0.9 * 0.5 * 0.8)],
)
def test_aggregations(how, expected):
    assert aggregate(S, how) == pytest.approx(expected, abs=1e-12)


def test_softmin_hand_value_and_limits():
    t = 0.2
    expected = -t * math.log(sum(math.exp(-s / t) for s in S) / 3)
    assert aggregate(S, "softmin", t) == pytest.approx(expected, abs=1e-12)
    assert aggregate(S, "softmin", 1e-4) == pytest.approx(0.5, abs=1e-3)
    assert aggregate(S, "softmin", 1e4) == pytest.approx(2.2 / 3, abs=1e-4)


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="unknown aggregation 'median'"):
        aggregate(S, "median")
    with pytest.raises(ValueError, match="zero step scores"):
        aggregate([], "mean")
    with pytest.raises(ValueError, match="temperature"):
        aggregate(S, "softmin", 0)
