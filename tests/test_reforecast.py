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


def test_beta_explained_and_range_on_a_hand_built_sweep():
    """Ten runs of four points each at steps 10, 20, 30, 40 (shares 0.25, 0.5, 0.75, 1): by 25% the first point is
    seen, by 50% the first two (under four points, a run's offset is the mean of all it has seen), never the last.
    Offsets a_i and ends e_i are chosen so the slope, its standard error and the explained share are known."""
    a = np.array([0.02, -0.01, 0.03, -0.02, 0.01, 0.0, 0.015, -0.025, 0.005, -0.005])
    noise = np.array([0.001, -0.002, 0.0, 0.002, -0.001, 0.001, -0.001, 0.0, 0.002, -0.002])
    e = 0.5 * a + noise
    run, step, res = [], [], []
    for i in range(10):
        run += [i] * 4
        step += [10, 20, 30, 40]
        res += [a[i], a[i], 0.3, e[i]]  # by 50%: the first two points, both a_i; the third is never seen by 50%
    cal = calibrate(np.array(run), np.array(step, float), np.array(res))
    k25, k50, k90 = (cal["shares"].index(x) for x in (0.25, 0.5, 0.9))
    b = np.sum(a * e) / np.sum(a * a)
    se2 = np.sum((e - b * a) ** 2) / 9 / np.sum(a * a)
    shrunk = b * (1 - se2 / b ** 2)
    for k in (k25, k50):
        assert cal["beta"][k] == pytest.approx(shrunk, abs=1e-4)
        assert cal["explained"][k] == pytest.approx(1 - np.sum((e - shrunk * a) ** 2) / np.sum(e * e) * 10 / 9, abs=1e-4)
        assert cal["range"][k] == pytest.approx(0.03)
        assert cal["n_runs"][k] == 10
    # by 90% the third point (0.3 for every run) is seen too: offsets (2 a_i + 0.3) / 3, which say little of the end
    assert cal["range"][k90] == pytest.approx((0.3 + 2 * 0.03) / 3) and cal["beta"][k90] < 0.05
    assert cal["beta"][0] == 0.0 and cal["range"][0] is None and cal["n_runs"][0] == 0  # nothing seen by 5%


def test_at_share_interpolates_and_has_no_steps():
    cal = {"shares": [0.1, 0.2, 0.3], "beta": [0.2, 0.6, 0.6], "explained": [0.1, 0.5, 0.5],
           "range": [None, 0.04, 0.02]}
    assert at_share(cal, 0.05) == pytest.approx((0.1, 0.05, 0.04))  # range from its first learnt value
    assert at_share(cal, 0.25) == pytest.approx((0.6, 0.5, 0.03))
    b0, _, q0 = at_share(cal, 0.2 - 1e-6)
    b1, _, q1 = at_share(cal, 0.2 + 1e-6)
    assert abs(b1 - b0) < 1e-4 and abs(q1 - q0) < 1e-4
    assert at_share(None, 0.5) == (0.0, 0.0, np.inf)


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
    assert calibrate(*_runs(7, 1.0)) is None
    assert calibrate(*_runs(8, 1.0)) is not None
    noise = [at_share(calibrate(*_runs(8, 0.0, seed=k)), 0.5)[0] for k in range(40)]  # ends unrelated to offsets
    assert np.mean(np.array(noise) > 0.5) < 0.1  # the slope, shrunk by its error, seldom follows the noise


def test_an_offset_beyond_the_fitted_runs_counts_whole_beyond_their_range_either_way():
    cal = {"shares": [0.25, 0.5], "beta": [0.0, 0.0], "explained": [0.0, 0.0], "range": [0.01, 0.01]}
    for sign in (1, -1):
        r = np.full(20, sign * 0.05)
        f = reforecast(np.full(20, 2.0), 2.0 * np.exp(r), 2.0, (1.9, 2.1), 0.3, calibration=cal)
        assert np.log(f.final / 2.0) == pytest.approx(sign * 0.04)  # the 0.01 inside the range counts 0
        assert f.weight == pytest.approx(0.8)
        assert f.lo < 2.0 * np.exp(sign * 0.04 - 0.019) and f.hi > 2.0 * np.exp(sign * 0.04 + 0.019)  # +- half of 0.04
        small = reforecast(np.full(20, 2.0), 2.0 * np.exp(r / 10), 2.0, (1.9, 2.1), 0.3, calibration=cal)
        assert small.final == pytest.approx(2.0) and small.weight == 0.0  # within the range: beta, here 0


def test_the_last_stretch_moves_to_the_runs_own_level_averaged_over_it():
    cal = {"shares": [0.5], "beta": [0.0], "explained": [0.0], "range": [0.1]}
    shares = np.linspace(0.01, 0.975, 100)
    rng = np.random.default_rng(0)
    r = 0.03 + 0.01 * rng.standard_normal(100)  # a noisy training loss 3% above its plan throughout
    args = (np.full(100, 2.0), 2.0 * np.exp(r), 2.0, (1.9, 2.1))
    mid = reforecast(*args, 0.975, calibration=cal, shares=shares)  # half way through the last 5%
    tail = r[shares >= 0.975 - 0.05].mean()
    assert np.log(mid.final / 2.0) == pytest.approx(0.5 * tail, abs=1e-9) and mid.weight == pytest.approx(0.5)
    last = np.append(shares[:-1], 1.0)
    end = reforecast(*args, 1.0, calibration=cal, shares=last)
    assert np.log(end.final / 2.0) == pytest.approx(r[last >= 0.95].mean(), abs=1e-9)  # not one point's noise
    assert (last >= 0.95).sum() == 3 and end.weight == 1.0
    for bad in (float("nan"), 0.0, -1.0):
        assert reforecast(*args, bad, calibration=cal).final == 2.0
    assert reforecast(*args, 1.7, calibration=cal).final == pytest.approx(reforecast(*args, 1.0, calibration=cal).final)


def test_a_curve_fit_keeps_its_calibration_through_its_file_and_its_plans(tmp_path):
    from scaling.laws.mpl import synthetic_curves
    from scaling.monitor import Monitor
    from scaling.plan import load_plan, save_plan
    from test_curve_laws import TRUTH

    pts = synthetic_curves(TRUTH, sizes=(1e5, 4e5, 1.6e6), schedules=("cosine", "constant", "wsd"), every=25, seed=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = scaling.fit(pts, law="mpl", bootstrap=0)
    cal = fit.reforecast_
    assert valid(cal) and max(cal["n_runs"]) == pts["run"].nunique() == 9
    fit.save(tmp_path / "fit.json")
    back = scaling.load(tmp_path / "fit.json")
    assert back.reforecast_ == cal
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = scaling.make_plan(back, N=8e5, tokens=800, tokens_per_step=1)
    save_plan(plan, tmp_path / "plan.json")
    plan = load_plan(tmp_path / "plan.json")
    assert plan["reforecast"] == cal
    # the Monitor reads it: a run 30% above its plan, far beyond any fitted run's offset, is forecast from its level
    c = plan["curve"]
    mon = Monitor(plan)
    for st in (mon.update(k, 1.3 * float(np.interp(k, c["step"], c["loss"]))) for k in range(100, 401, 10)):
        pass
    assert st.forecast == pytest.approx(1.3 * plan["final_loss"], rel=0.02)
    assert not any("no re-forecast calibration" in n for n in mon.notes)
    old = Monitor({k: v for k, v in plan.items() if k != "reforecast"})  # a plan written before the calibration
    for k in range(100, 401, 10):
        st = old.update(k, 1.3 * float(np.interp(k, c["step"], c["loss"])))
    assert st.forecast == pytest.approx(plan["final_loss"]) and any("no re-forecast calibration" in n for n in old.notes)
    bad = dict(plan, reforecast={**cal, "beta": [2.0] * len(cal["shares"])})
    with pytest.raises(DataError, match="reforecast calibration"):
        validate_plan(bad)
    d = fit.to_dict()
    d["reforecast"] = {"shares": [0.5]}  # a file edited by hand: not used, and said so
    with pytest.warns(scaling.ScalingWarning, match="reforecast calibration"):
        assert "reforecast_" not in scaling.FitResult.from_dict(d)._state
