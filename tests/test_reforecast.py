"""The live re-forecast's calibration: what a fit's own runs say of how much a prefix's offset lasts (issue 15)."""

import warnings

import numpy as np
import pytest

import scaling
from scaling.errors import DataError
from scaling.laws.reforecast import SHARES, at_share, calibrate, late_half, valid
from scaling.monitor import reforecast
from scaling.plan import validate_plan


def _runs(n_runs, lasting, seed=0, points=40, noise=0.002, spread=0.03):
    """Residuals of ``n_runs`` runs about a law: each run's offset is ``spread`` * z, of which ``lasting`` of it is
    still there at the run's end (the rest is replaced by a fresh draw), plus independent point noise."""
    rng = np.random.default_rng(seed)
    run, step, res = [], [], []
    for i in range(n_runs):
        early, late = spread * rng.standard_normal(2)
        end = lasting * early + np.sqrt(1 - lasting ** 2) * late
        s = np.arange(1, points + 1) * 10
        share = s / s[-1]
        r = early + (end - early) * share ** 4 + noise * rng.standard_normal(points)  # early level, then its end
        run += [f"r{i}"] * points
        step += list(s)
        res += list(r)
    return np.array(run), np.array(step, float), np.array(res)


def test_beta_is_the_least_squares_slope_through_the_origin_of_the_runs_end_on_their_prefix_offset():
    run, step, res = _runs(12, 0.5, seed=3)
    cal = calibrate(run, step, res)
    assert valid(cal) and cal["shares"] == list(SHARES)
    i = cal["shares"].index(0.25)
    a, e = [], []  # by hand: each run's later half of its points up to 25% (the last point excluded), and its end
    for k in np.unique(run):
        m = run == k
        s, r = step[m] / step[m][-1], res[m]
        seen = r[:-1][s[:-1] <= 0.25]
        a.append(seen[len(seen) // 2:].mean() if len(seen) >= 4 else seen.mean())
        e.append(r[-1])
    a, e = np.array(a), np.array(e)
    slope = float(np.linalg.lstsq(a[:, None], e, rcond=None)[0][0])
    assert cal["beta"][i] == pytest.approx(np.clip(slope, 0, 1), abs=1e-4)
    assert cal["explained"][i] == pytest.approx(1 - np.sum((e - cal["beta"][i] * a) ** 2) / np.sum(e ** 2), abs=1e-4)
    assert cal["range"][i] == pytest.approx(np.abs(a).max(), abs=1e-6)
    assert cal["n_runs"][i] == 12


@pytest.mark.parametrize("lasting, lo, hi", [(1.0, 0.9, 1.0), (0.0, 0.0, 0.25)])
def test_beta_reads_how_much_of_an_offset_lasts(lasting, lo, hi):
    cal = calibrate(*_runs(40, lasting, seed=1))
    beta, explained, span = at_share(cal, 0.25)
    assert lo <= beta <= hi
    assert (explained > 0.8) if lasting == 1.0 else (explained < 0.1)
    assert span > 0.03  # the largest offset of 40 runs drawn with sd 3%


def test_a_run_is_forecast_by_what_lasted_in_the_fits_own_runs():
    """Held-out runs drawn like the fitted ones: when offsets last, the forecast after 25% of a run has a fraction
    of the plan's error; when they wash out, it stays the plan's, and the shipped rule before (offset weighted by
    seen / (seen + 0.1)) was worse than the plan."""
    for lasting in (0.95, 0.0):
        cal = calibrate(*_runs(40, lasting, seed=2))
        run, step, res = _runs(200, lasting, seed=9)
        err_plan, err_new, err_old = [], [], []
        for k in np.unique(run):
            m = run == k
            s, r = step[m] / step[m][-1], res[m]
            seen = s <= 0.25
            expected = np.full(seen.sum(), 2.0)
            got = reforecast(expected, 2.0 * np.exp(r[seen]), 2.0, (1.9, 2.1), 0.25, calibration=cal).final
            err_plan.append(abs(r[-1]))
            err_new.append(abs(np.log(got / 2.0) - r[-1]))
            err_old.append(abs(0.25 / 0.35 * late_half(r[seen]).mean() - r[-1]))
        if lasting:
            assert np.median(err_new) < 0.5 * np.median(err_plan)
        else:
            assert np.median(err_new) < 1.05 * np.median(err_plan) < np.median(err_old)


def test_at_its_end_the_forecast_is_the_runs_own_last_point():
    cal = calibrate(*_runs(20, 0.0, seed=4))
    r = np.full(30, 0.05)
    r[-1] = 0.08
    f = reforecast(np.full(30, 2.0), 2.0 * np.exp(r), 2.0, (1.9, 2.1), 1.0, calibration=cal)
    assert f.final == pytest.approx(2.0 * np.exp(0.08)) and f.weight == 1.0
    early = reforecast(np.full(30, 2.0), 2.0 * np.exp(r), 2.0, (1.9, 2.1), 0.3, calibration=None)
    assert early.final == 2.0 and (early.lo, early.hi) == pytest.approx((1.9, 2.1), rel=1e-3)  # no calibration: the plan


def test_too_few_runs_give_no_calibration():
    run, step, res = _runs(2, 1.0)
    assert calibrate(run, step, res) is None


def test_a_curve_fit_keeps_its_calibration_through_its_file_and_its_plans(tmp_path):
    from scaling.laws.mpl import synthetic_curves
    from test_curve_laws import TRUTH

    pts = synthetic_curves(TRUTH, sizes=(1e5, 4e5), schedules=("cosine", "constant"), every=25, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = scaling.fit(pts, law="mpl", bootstrap=0)
    cal = fit.reforecast_
    assert valid(cal) and max(cal["n_runs"]) == pts["run"].nunique()
    fit.save(tmp_path / "fit.json")
    back = scaling.load(tmp_path / "fit.json")
    assert back.reforecast_ == cal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = scaling.make_plan(back, N=4e5, tokens=800, tokens_per_step=1)
    assert plan["reforecast"] == cal
    bad = dict(plan, reforecast={**cal, "beta": [2.0] * len(cal["shares"])})
    with pytest.raises(DataError, match="reforecast calibration"):
        validate_plan(bad)
    d = fit.to_dict()
    d["reforecast"] = {"shares": [0.5]}  # a file edited by hand: not used, not an error
    assert "reforecast_" not in scaling.FitResult.from_dict(d)._state
