"""core.metrics: the Wilson interval against hand-computed values, and its edge cases."""

from __future__ import annotations

import math

import pytest

from supertiny.core.metrics import proportion_text, wilson_interval


def test_zero_of_ten_has_the_closed_form_upper_bound():
    # k = 0: centre = half = (z^2 / 2n) / (1 + z^2 / n), so the upper bound is z^2 / (n + z^2).
    low, high = wilson_interval(0, 10)
    assert low == 0.0
    assert high == pytest.approx(1.96**2 / (10 + 1.96**2))


def test_all_of_n_mirrors_none_of_n():
    low, high = wilson_interval(10, 10)
    assert high == 1.0 and low == pytest.approx(1 - wilson_interval(0, 10)[1])


def test_nine_of_forty_by_hand():
    # p = 0.225, z^2 = 3.8416: centre = (0.225 + 0.04802) / 1.09604, half from the formula.
    z2 = 1.96**2
    centre = (0.225 + z2 / 80) / (1 + z2 / 40)
    half = 1.96 * math.sqrt(0.225 * 0.775 / 40 + z2 / 6400) / (1 + z2 / 40)
    assert wilson_interval(9, 40) == pytest.approx((centre - half, centre + half))
    assert wilson_interval(9, 40) == pytest.approx((0.1233, 0.3749), abs=5e-4)


def test_the_interval_narrows_with_n_and_contains_the_share():
    small, large = wilson_interval(5, 10), wilson_interval(50, 100)
    assert small[0] < 0.5 < small[1] and large[0] < 0.5 < large[1]
    assert large[1] - large[0] < small[1] - small[0]


def test_no_trials_is_the_whole_range():
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_proportion_text():
    assert proportion_text(9, 40) == "9/40 = 22.5% [12-38]"
