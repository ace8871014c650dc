"""The IsoFLOP law's interval: the residual bootstrap with the design fixed (issue #12).

The truth here is known: simulated sweeps from a Chinchilla law, whose allocation exponent
a = beta / (alpha + beta) the IsoFLOP estimate and its interval are checked against.
"""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import SettingsError, ScalingWarning
from scaling.laws import FitResult, IsoFlopLaw
from scaling.laws.isoflop import residual_sampler

#: a Chinchilla law whose compute-optimal sizes fall inside the design below; a = 0.6 exactly
TRUTH = dict(E=1.5, A=300.0, B=1200.0, alpha=0.3, beta=0.45)
A_TRUE = TRUTH["beta"] / (TRUTH["alpha"] + TRUTH["beta"])


def sweep(seed: int, noise: float = 0.007, sizes: int = 5, budgets=(1e17, 1e18, 1e19, 1e20)) -> pd.DataFrame:
    """A quickstart-sized IsoFLOP design (4 budgets x 5 sizes, factor 2 apart around the optimum) with
    multiplicative noise per run."""
    E, A, B, al, be = (TRUTH[k] for k in ("E", "A", "B", "alpha", "beta"))
    G = (al * A / (be * B)) ** (1 / (al + be))
    rng = np.random.default_rng(seed)
    rows = []
    for C in budgets:
        n_opt = G * (C / 6) ** A_TRUE
        for f in 2.0 ** (np.arange(sizes) - (sizes - 1) / 2 + 0.3):  # optimum off-centre, as in a real grid
            N, D = n_opt * f, C / (6 * n_opt * f)
            rows.append(dict(N=N, D=D, C=C, loss=(E + A / N**al + B / D**be) * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows)


def quiet_fit(law, df):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return law.fit(df)


def test_residual_resamples_keep_the_design_and_redraw_losses_near_the_parabolas():
    law = IsoFlopLaw(window=5)
    big = sweep(0, sizes=7)  # 7 sizes: the parabola uses the 5 around the best, the 2 outside keep their loss
    df = law._prepare_data(big)
    draws = residual_sampler(df, law._window)(np.random.default_rng(0), 200)
    base = df.sort_values(["_budget", "N"], kind="stable").reset_index(drop=True)
    for d in draws[:5]:
        pd.testing.assert_frame_equal(d.drop(columns="loss"), base.drop(columns="loss"))
    y = np.stack([d["loss"].to_numpy() for d in draws])
    moved = np.ptp(y, axis=0) > 0
    assert moved.sum() == 4 * 5  # the window of every budget, and nothing else
    np.testing.assert_array_equal(y[:, ~moved][0], base["loss"].to_numpy()[~moved])
    # the redrawn losses scatter around the parabolas by about the noise put in (0.7%)
    rel = (y[:, moved] / y[:, moved].mean(axis=0)).std()
    assert 0.004 < rel < 0.012


def test_residual_interval_covers_the_true_exponent_at_about_its_level():
    fits = [quiet_fit(IsoFlopLaw(bootstrap=60, seed=i), sweep(100 + i)) for i in range(20)]
    a = np.array([f.params_["a"] for f in fits])
    lo, hi = np.array([f.ci_["a"] for f in fits]).T
    covered = int(np.sum((lo <= A_TRUE) & (A_TRUE <= hi)))
    assert covered >= 16, covered  # nominal 90% of 20 is 18; 16 or more has probability 0.96 if honest
    # its width matches the estimator's real spread, from 40 more sweeps fitted without a bootstrap
    spread = np.std([quiet_fit(IsoFlopLaw(bootstrap=0), sweep(500 + i)).params_["a"] for i in range(40)], ddof=1)
    honest = 2 * 1.645 * spread  # the width of a 90% normal interval
    assert abs(np.mean(a) - A_TRUE) < 0.03
    assert 0.6 * honest < np.median(hi - lo) < 1.6 * honest, (np.median(hi - lo), honest)


def test_residual_interval_is_narrower_than_resampling_runs_on_the_same_sweep():
    df = sweep(3)
    res = quiet_fit(IsoFlopLaw(bootstrap=100), df)
    runs = quiet_fit(IsoFlopLaw(bootstrap=100, resample="runs"), df)
    assert res.params_["a"] == runs.params_["a"]  # the estimate does not depend on the bootstrap
    assert np.diff(res.ci_["a"])[0] < np.diff(runs.ci_["a"])[0]
    assert res.fit_info_["bootstrap_over"].startswith("residuals")
    assert runs.fit_info_["bootstrap_over"] == "runs within each budget"


def test_no_residual_degrees_of_freedom_gives_a_fit_without_intervals():
    df = sweep(1, sizes=3)  # three sizes a budget: every parabola passes through its points
    with pytest.warns(ScalingWarning, match="nothing about their own noise"):
        fit = IsoFlopLaw(bootstrap=50).fit(df)
    assert fit.ci_["a"] is None and fit.fit_info_["bootstrap_over"].startswith("nothing")
    assert fit.params_["a"] == pytest.approx(A_TRUE, abs=0.1)


def test_resample_setting_is_checked_saved_and_old_fit_files_load_as_runs(tmp_path):
    with pytest.raises(SettingsError, match="resample must be 'residuals'.*or 'runs'"):
        IsoFlopLaw(resample="cells")
    fit = quiet_fit(IsoFlopLaw(bootstrap=20, window=4, resample="runs"), sweep(2))
    fit.save(tmp_path / "fit.json")
    back = FitResult.load(tmp_path / "fit.json")
    assert (back.law.resample, back.law.window) == ("runs", 4)
    d = json.loads((tmp_path / "fit.json").read_text())
    del d["settings"]["resample"], d["settings"]["window"]  # a file written before these were saved
    old = FitResult.from_dict(d)
    assert (old.law.resample, old.law.window) == ("runs", 5)


def test_cli_resample_flag(tmp_path, capsys):
    path = tmp_path / "runs.csv"
    sweep(4).to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "isoflop", "--resample", "runs", "--bootstrap", "20", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["fit_info"]["bootstrap_over"] == "runs within each budget"
    assert main(["fit", str(path), "--law", "chinchilla", "--resample", "runs"]) != 0
    assert "--resample does not apply to --law chinchilla" in capsys.readouterr().err


def test_seed_means_are_named_as_cells_in_what_the_bootstrap_resamples():
    from scaling.data import replicate_means

    runs = pd.concat([sweep(7 + s).assign(seed=s) for s in range(3)], ignore_index=True)
    means = replicate_means(runs)
    assert len(means) == 20 and (means["n_seeds"] == 3).all()
    by_runs = quiet_fit(IsoFlopLaw(bootstrap=20, resample="runs"), means)
    assert by_runs.fit_info_["bootstrap_over"] == "cells (seed means) within each budget"
    by_resid = quiet_fit(IsoFlopLaw(bootstrap=20), means)
    assert by_resid.fit_info_["bootstrap_over"].startswith("residuals of the per-budget parabolas")
    assert by_resid.fit_info_["averaged_seeds"] == {"runs": 60, "cells": 20}


def test_a_budget_the_fit_leaves_out_neither_sets_the_noise_nor_comes_back_in_resamples():
    good = sweep(5)
    bad = sweep(6, budgets=(1e21,))
    bad.loc[bad["N"] == bad["N"].min(), "loss"] *= 0.8  # the smallest size best by far: no minimum inside
    with pytest.warns(ScalingWarning, match="1 budget\\(s\\) not used"):
        both = IsoFlopLaw(bootstrap=200).fit(pd.concat([good, bad], ignore_index=True))
    alone = quiet_fit(IsoFlopLaw(bootstrap=200), good)
    assert both.params_["a"] == pytest.approx(alone.params_["a"], abs=1e-12)
    w_both, w_alone = np.diff(both.ci_["a"])[0], np.diff(alone.ci_["a"])[0]
    assert w_both < 1.3 * w_alone, (w_both, w_alone)  # the left-out budget's misfit would make it several times wider
    law = IsoFlopLaw()
    df = law._prepare_data(pd.concat([good, bad], ignore_index=True))
    draws = residual_sampler(df, law._window, used={0, 1, 2, 3})(np.random.default_rng(1), 20)
    last = df["_budget"].max()
    observed = df[df["_budget"] == last].sort_values("N")["loss"].to_numpy()
    for d in draws:
        np.testing.assert_array_equal(d.loc[d["_budget"] == last, "loss"].to_numpy(), observed)
        assert not np.array_equal(d.loc[d["_budget"] == 0, "loss"].to_numpy(),
                                  df[df["_budget"] == 0].sort_values("N")["loss"].to_numpy())


def test_settings_and_files_new_users_trip_on(tmp_path):
    import scaling

    for w in (0, 2, 2.5, True):
        with pytest.raises(SettingsError, match="window .* must be a whole number >= 3"):
            IsoFlopLaw(window=w)
    with pytest.raises(SettingsError, match="bootstrap=1 gives no interval"):
        IsoFlopLaw(bootstrap=1)
    with pytest.raises(SettingsError, match="chinchilla does not take resample; its settings are"):
        scaling.fit(sweep(0), law="chinchilla", resample="runs")
    # a bootstrap's tiny values survive the file (12 significant figures, not 12 decimals)
    fit = quiet_fit(IsoFlopLaw(bootstrap=30), sweep(0))
    fit.save(tmp_path / "f.json")
    back = FitResult.load(tmp_path / "f.json")
    np.testing.assert_allclose(back.bootstrap_params().to_numpy(), fit.bootstrap_params().to_numpy(), rtol=1e-10)
    # no residual degrees of freedom: the report gives that reason, not "bootstrap=0"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        thin = IsoFlopLaw(bootstrap=50).fit(sweep(1, sizes=3))
    assert "uncertainty: none (no budget the fit uses has more sizes" in thin.report()


def test_the_isoflop_plot_of_seeded_runs_draws_each_parabola_through_the_seed_means(tmp_path):
    """4 seeds a cell: the drawn parabola spans every size of its budget (it once took a window of 5 rows, two
    sizes' seeds, and drew a near-straight line between them) and passes through the per-size means."""
    from scaling.plotting import plot_isoflop

    df = pd.concat([sweep(s).assign(seed=s) for s in range(4)], ignore_index=True)
    fit = quiet_fit(IsoFlopLaw(bootstrap=0), df)
    fig = plot_isoflop(fit, df)
    lines = [ln for ln in fig.axes[0].get_lines() if len(ln.get_xdata()) == 100]
    assert len(lines) == 4
    for ln, (C, g) in zip(lines, df.groupby("C")):
        x, y = np.asarray(ln.get_xdata()), np.asarray(ln.get_ydata())
        assert x.min() == pytest.approx(g["N"].min()) and x.max() == pytest.approx(g["N"].max())
        means = g.groupby("N")["loss"].mean()
        drawn = np.interp(np.log(means.index), np.log(x), y)
        assert np.abs(drawn / means.to_numpy() - 1).max() < 0.01


def test_the_parabola_window_counts_sizes_not_rows():
    """7 sizes a budget, 3 replicate rows a size (no seed column, so nothing averages them): the window of 5 takes
    every row of the 5 sizes around the best mean (it once took 5 rows, under two sizes, and found 1 usable budget),
    and the least-squares parabola through all of them has the vertex of the one through the per-size means."""
    rows = pd.concat([sweep(s, sizes=7) for s in range(3)], ignore_index=True)
    means = rows.groupby(["C", "N"], as_index=False).agg(D=("D", "first"), loss=("loss", "mean"))
    every, mean = (quiet_fit(IsoFlopLaw(bootstrap=0), d) for d in (rows, means))
    assert (every.profiles_["status"] == "ok").all()
    assert every.params_["a"] == pytest.approx(mean.params_["a"], rel=1e-9)


def test_plot_takes_dropna_as_the_fit_did(tmp_path, capsys):
    df = sweep(3)
    df.loc[4, "loss"] = np.nan  # a run that never finished
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    fit = tmp_path / "iso.json"
    assert main(["fit", str(path), "--law", "isoflop", "--dropna", "--bootstrap", "0", "--out", str(fit)]) == 0
    capsys.readouterr()
    assert main(["plot", str(fit), str(path), "--out", str(tmp_path / "a.png")]) == 2
    assert "--dropna" in capsys.readouterr().err
    assert main(["plot", str(fit), str(path), "--dropna", "--out", str(tmp_path / "b.png")]) == 0
    assert (tmp_path / "b.png").stat().st_size > 10_000
