"""``bench/reno_model.py``'s CUBIC follows RFC 9438 round trip by round trip (β = 0.7, the
Reno-friendly estimate at alpha = 3(1-β)/(1+β) until the window before the reduction, then
1, fast convergence), and with its rules stays below the Mathis figure at 5% random loss
with whole segments even when recovery costs nothing: the finding docs/performance.md
records."""

from __future__ import annotations

import importlib
import math
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
ALPHA = 3 * (1 - 0.7) / (1 + 0.7)


@pytest.fixture
def model(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("reno_model")


def test_cubic_reduces_by_beta_then_grows_by_alpha_until_the_prior_window(
    model: ModuleType,
) -> None:
    cc = model.Cubic(0.002)
    cc.reduce()  # from the initial 10 segments
    assert cc.w == pytest.approx(7.0)
    assert (cc.prior, cc.w_max) == (10.0, 10.0)
    cc.grow(7)
    assert cc.w == pytest.approx(7.0 + ALPHA)  # the cubic part is far below at 2 ms
    while cc.w_est < cc.prior:
        cc.grow(math.floor(cc.w))
    w = cc.w
    cc.grow(math.floor(w))
    assert cc.w == pytest.approx(w + math.floor(w) / w)  # alpha = 1 from the prior window on


def test_cubic_fast_convergence_lowers_w_max_for_a_loss_below_it(model: ModuleType) -> None:
    cc = model.Cubic(0.02)
    cc.reduce()
    cc.grow(7)
    cc.reduce()  # at 7.53, below W_max = 10
    assert cc.w_max == pytest.approx((7.0 + ALPHA) * (1 + 0.7) / 2)
    assert cc.w == pytest.approx((7.0 + ALPHA) * 0.7)


def _cubic_at_5_percent(model: ModuleType, *, recovery_round: bool, early: bool) -> float:
    """Segments per round trip of the model's CUBIC at 2 ms, 5% Bernoulli loss, whole
    segments."""
    got = model.run(
        0.05,
        model.Cubic(0.002),
        recovery_round=recovery_round,
        early=early,
        whole=True,
        periodic=False,
        rounds=30_000,
    )
    return float(got)


def test_early_growth_counts_the_acks_before_the_first_loss(model: ModuleType) -> None:
    late = _cubic_at_5_percent(model, recovery_round=False, early=False)
    assert _cubic_at_5_percent(model, recovery_round=False, early=True) > late


def test_correct_cubic_stays_below_the_mathis_figure_at_5_percent(model: ModuleType) -> None:
    mathis = 1.22 / math.sqrt(0.05)
    for recovery_round in (False, True):
        got = _cubic_at_5_percent(model, recovery_round=recovery_round, early=True)
        assert 0.8 * mathis < got < mathis
