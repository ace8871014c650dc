"""The Python front door as a newcomer uses it from a notebook (a review, 2026-12-02): curve laws take the plain
curves table the README promises, plot_fit draws any fit from the table it was fitted on, and the monitor keeps a
spike or a bad value out of what it judges the run by."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

import scaling
from scaling import plotting
from scaling.curves import prepare_curve_points
from scaling.errors import DataError
from scaling.laws.mpl import synthetic_curves

from test_curve_laws import TRUTH, quiet

matplotlib.use("Agg")


@pytest.fixture(scope="module")
def raw():
    d = synthetic_curves(TRUTH, sizes=(1e5, 4e5, 1.6e6), schedules=("cosine", "constant", "wsd"), every=25, seed=4,
                         first=0)
    return d[["run", "N", "step", "lr", "loss"]].rename(columns={"run": "Name", "loss": "train/loss"})


COLS = "run=Name,loss=train/loss"


def test_curve_laws_fit_and_predict_a_plain_curves_table_from_python(raw):
    pts = prepare_curve_points(raw, columns=COLS)
    for law in ("mpl", "tissue"):
        from_raw = quiet(scaling.fit, raw, law=law, columns=COLS, bootstrap=0)
        from_pts = quiet(scaling.fit, pts, law=law, bootstrap=0)
        assert from_raw.params_ == pytest.approx(from_pts.params_, rel=1e-9), law
        # predictions come back in the table's own row order, whatever it is, and without a loss column
        shuffled = raw.drop(columns="train/loss").sample(frac=1, random_state=0).rename(columns={"Name": "run"})
        got = quiet(from_raw.predict, shuffled)
        want = pd.Series(quiet(from_pts.predict, pts), index=pd.MultiIndex.from_frame(pts[["run", "step"]]))
        np.testing.assert_allclose(got, want.loc[list(zip(shuffled["run"], shuffled["step"]))].to_numpy(), rtol=1e-12)
        if law == "mpl":  # and the fit is the law that made the curves
            assert from_raw.params_["alpha"] == pytest.approx(TRUTH["alpha"], abs=0.03)


def test_a_table_a_curve_law_cannot_read_says_what_it_needs(raw):
    with pytest.raises(DataError, match="plain curves table with columns run, N, step, lr, loss"):
        scaling.fit(raw[["N", "train/loss"]], law="mpl", columns=COLS)
    with pytest.raises(DataError, match=r"missing column\(s\) \['lr'\]"):
        scaling.fit(raw.drop(columns="lr"), law="mpl", columns=COLS)


def test_plot_fit_draws_a_table_without_C_under_its_own_names_and_a_curve_law_from_a_plain_table(raw, tmp_path):
    rng = np.random.default_rng(0)
    N = np.repeat([1e7, 3e7, 1e8, 3e8], 4)
    D = np.tile([1e9, 3e9, 1e10, 3e10], 4)
    df = pd.DataFrame({"params": N, "tokens": D,
                       "val": (1.7 + 400 / N ** 0.34 + 410 / D ** 0.28) * np.exp(rng.normal(0, 0.003, 16))})
    cols = "N=params,D=tokens,loss=val"
    r = quiet(scaling.fit, df, law="chinchilla", bootstrap=20, columns=cols)
    fig = plotting.plot_fit(r, df, columns=cols)  # was KeyError: 'C'
    xs = max((c.get_offsets()[:, 0] for c in fig.axes[0].collections), key=len)  # the runs' scatter
    np.testing.assert_allclose(np.sort(xs), np.sort(6 * N * D))  # runs placed at C = 6 N D
    m = quiet(scaling.fit, raw, law="mpl", columns=COLS, bootstrap=0)
    plain = raw.rename(columns={"Name": "run", "train/loss": "loss"})
    for fig in (quiet(plotting.plot_fit, m, plain), quiet(plotting.plot_curves, m, plain)):
        runs = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) > 1]
        assert len(runs) == 2 * plain["run"].nunique()  # each run's curve and the law's through its schedule


@pytest.fixture(scope="module")
def plan():
    law = quiet(scaling.fit, synthetic_curves(TRUTH, sizes=(1e5, 4e5), schedules=("cosine", "constant"), every=25,
                                              seed=1), law="mpl", bootstrap=30)
    return scaling.make_plan(law, N=8e5, tokens=800, tokens_per_step=1)  # the curves count steps, not tokens


def test_a_spike_is_judged_alone_and_leaves_the_forecast_and_the_average_alone(plan):
    c = plan["curve"]
    exp = lambda s: float(np.interp(s, c["step"], c["loss"]))  # noqa: E731
    mon = scaling.Monitor(plan)
    for s in range(50, 300, 10):
        mon.update(s, exp(s))
    assert mon.update(300, 2.5 * exp(300)).state == "spike"
    after = [mon.update(s, exp(s)) for s in range(310, 801, 10)]
    assert all(st.state == "ok" for st in after)  # the spike once made the next on-plan points "drift"
    # on plan everywhere else: the forecast stays the plan's final (it was 5% high with a band 60x as wide)
    assert after[4].forecast == pytest.approx(plan["final_loss"], rel=1e-3)
    lo, hi = plan["final_interval"]
    assert after[4].forecast_hi - after[4].forecast_lo <= (hi - lo) * (1 + 1e-9)  # not wider than the plan's


def test_a_loss_at_or_below_zero_is_invalid_and_a_non_number_is_one_error(plan):
    mon = scaling.Monitor(plan)
    c = plan["curve"]
    for s, loss in ((300, -1.0), (310, 0.0)):
        st = mon.update(s, loss)
        assert st.state == "invalid" and st.off_track and "not positive" in st.message
    assert mon.update(320, float(np.interp(320, c["step"], c["loss"]))).state == "ok"
    assert mon.forecast().final == pytest.approx(plan["final_loss"], rel=1e-3)
    for bad in (None, "2.1x", [1.0]):
        with pytest.raises(DataError, match="needs numbers"):
            mon.update(330, bad)
    with pytest.raises(DataError, match="whole number"):
        mon.update(2.5, 2.0)


def test_a_fit_file_that_kept_intervals_but_not_resamples_loads_with_them(tmp_path):
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "data" / "sweeps" / "cpu-chinchilla" / "fits.json"
    stored = json.loads(path.read_text())["isoflop"]
    assert "bootstrap" not in stored and stored["ci"]
    iso = scaling.load(path, key="isoflop")
    assert iso.ci_ == stored["ci"] and iso.stderr_ == pytest.approx(stored["stderr"])
    assert "intervals as stored in the file" in iso.report()
    again = scaling.load(iso.save(tmp_path / "iso.json"))  # and they survive a round trip
    assert again.ci_ == stored["ci"]


def test_from_params_refuses_values_a_saved_fit_could_not_load():
    with pytest.raises(scaling.SettingsError, match=r"alpha = -0.34 lies outside \[0.0, None\]"):
        scaling.ChinchillaLaw.from_params(E=1.69, A=406.4, B=410.7, alpha=-0.34, beta=0.28)
    with pytest.raises(scaling.SettingsError, match="E is nan, not a finite number"):
        scaling.ChinchillaLaw.from_params(E=float("nan"), A=406.4, B=410.7, alpha=0.34, beta=0.28)


def test_save_makes_its_folders_and_refuses_a_folder(tmp_path):
    fit = scaling.ChinchillaLaw.hoffmann2022()
    path = fit.save(tmp_path / "new" / "sub" / "fit.json")
    assert scaling.load(path).params_ == fit.params_
    with pytest.raises(DataError, match="is a folder"):
        fit.save(tmp_path)


def test_each_run_of_a_plain_table_is_predicted_from_its_own_history(raw):
    """Two runs of one size, the second logged only late (its first S1 beyond the first run's last): predicted
    together they once shared the first run's learning-rate drops (14% off)."""
    m = quiet(scaling.fit, raw, law="mpl", columns=COLS, bootstrap=0)
    plain = raw.rename(columns={"Name": "run", "train/loss": "loss"})
    a = plain[plain["run"] == "N4e+05-wsd"].assign(run="a")
    b = plain[(plain["run"] == "N4e+05-constant")].assign(run="b")
    b_late = b[b["step"] >= a["step"].max()]
    alone = quiet(m.predict, b_late)
    together = quiet(m.predict, pd.concat([a, b_late]))[len(a):]
    np.testing.assert_allclose(together, alone, rtol=1e-12)
    with pytest.raises(DataError, match=r"1 row\(s\) of the curves table have no run"):
        m.predict(plain.assign(run=plain["run"].where(plain.index != 5)))


def test_a_run_that_stays_far_above_its_plan_is_forecast_from_its_level(plan):
    c = plan["curve"]
    mon = scaling.Monitor(plan)
    assert plan["reforecast"] is None  # 4 fitted runs: too few to learn how much of an offset lasts
    for s in range(50, 801, 10):
        st = mon.update(s, 1.6 * float(np.interp(s, c["step"], c["loss"])))
        if s == 400:
            assert st.forecast == pytest.approx(plan["final_loss"])  # so the plan stands until the last 5%
    assert st.state == "spike" and "not a blip" in st.message
    # at its end the forecast is the run's own last point (it once stopped at 1.6^0.91 = 1.53x the plan)
    assert st.forecast == pytest.approx(1.6 * plan["final_loss"], rel=1e-3)


def test_predict_maps_columns_as_the_fit_did():
    runs = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "sweeps" / "cpu-chinchilla" / "runs.csv")
    r = quiet(scaling.fit, runs, law="chinchilla", columns="N=N_total", bootstrap=0)
    want = r.predict(N=runs["N_total"], D=runs["D"])
    np.testing.assert_allclose(r.predict(runs, columns="N=N_total"), want)  # the table's own N is replaced
    with pytest.raises(DataError, match=r"names \['N_totl'\]"):
        r.predict(runs, columns="N=N_totl")


def test_a_follower_waits_for_the_newline_of_a_half_written_csv_row(tmp_path):
    from scaling.monitor import follow

    log = tmp_path / "log.csv"
    log.write_text("step,loss\n1000,2.41\n1100,2.40\n1200,0.")  # the writer stopped mid-number
    g = follow(log, reader="csv", interval=0.05, timeout=1.0)
    got = [next(g), next(g)]
    log.write_text("step,loss\n1000,2.41\n1100,2.40\n1200,0.98\n")
    got += list(g)
    assert [(s, v) for s, v, _ in got] == [(1000, 2.41), (1100, 2.40), (1200, 0.98)]  # never (1200, 0.0)


def test_predict_takes_the_fits_own_columns_mapping():
    runs = pd.read_csv(Path(__file__).resolve().parents[1] / "data" / "sweeps" / "cpu-chinchilla" / "runs.csv")
    cols = {"N": "params", "D": "tokens", "loss": "val_loss"}
    table = runs.rename(columns={"N": "params", "D": "tokens", "loss": "val_loss"})
    r = quiet(scaling.fit, table, law="chinchilla", columns=cols, bootstrap=0)
    new = pd.DataFrame({"params": [3e5], "tokens": [1e7]})  # no loss column: the mapping's loss is not needed
    assert r.predict(new, columns=cols)[0] == pytest.approx(r.predict(N=3e5, D=1e7)[0])


def test_one_blip_with_consecutive_one_is_not_taken_as_the_runs_level(plan):
    c = plan["curve"]
    mon = scaling.Monitor(plan, consecutive=1)
    states = [mon.update(s, (3.0 if s == 300 else 1.0) * float(np.interp(s, c["step"], c["loss"]))).state
              for s in range(50, 801, 10)]
    assert states.count("spike") == 1 and "drift" not in states


def test_a_points_table_with_runs_is_predicted_run_by_run(raw):
    m = quiet(scaling.fit, raw, law="mpl", columns=COLS, bootstrap=20)
    plain = raw.rename(columns={"Name": "run", "train/loss": "loss"})
    a = plain[plain["run"] == "N4e+05-wsd"].assign(run="a")
    b = plain[plain["run"] == "N4e+05-constant"].assign(run="b")
    pts = prepare_curve_points(pd.concat([a, b[b["step"] >= a["step"].max()]]))
    b_pts = pts[pts["run"] == "b"].reset_index(drop=True)
    np.testing.assert_allclose(quiet(m.predict, pts)[pts["run"].to_numpy() == "b"], quiet(m.predict, b_pts),
                               rtol=1e-12)
    lo, hi = quiet(m.predict_interval, pts)
    b_lo, b_hi = quiet(m.predict_interval, b_pts)
    np.testing.assert_allclose(lo[pts["run"].to_numpy() == "b"], b_lo, rtol=1e-12)
