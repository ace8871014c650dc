"""Backtests: the split, the scores, ranking, and calibrated intervals (issue #3)."""

import json

import numpy as np
import pandas as pd
import pytest

from scaling.backtest import applicable_laws, backtest, split
from scaling.cli import main
from scaling.errors import DataError, ScalingError, ScalingWarning
from scaling.laws import ChinchillaLaw
from scaling.synthetic import sample_runs

TRUTH = ChinchillaLaw.from_params(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.30)
GRID = {"N": np.logspace(7, 9.5, 8), "D": np.logspace(9, 11.5, 7)}


@pytest.fixture(scope="module")
def runs():
    return sample_runs(TRUTH, GRID, noise=0.01, seed=0)


def test_nominal_90_percent_intervals_cover_85_to_95_percent_of_held_out_runs():
    # 20 synthetic sweeps with 1% log-normal noise; fit on the 6 smallest sizes, predict the 2 largest
    covered = []
    for seed in range(20):
        df = sample_runs(TRUTH, GRID, noise=0.01, seed=seed)
        res = backtest(df, "chinchilla", holdout_top=0.25, by="N", bootstrap=200, seed=seed, starts="coarse")
        assert res.n_test == 14 and res.n_train == 42
        covered.append(res.table["covered"].to_numpy(bool))
    coverage = np.concatenate(covered).mean()
    assert 0.85 <= coverage <= 0.95, coverage


def test_scores_are_what_they_say(runs):
    res = backtest(runs, "chinchilla", holdout="N > 1e9", bootstrap=100, starts="coarse")
    t = res.table
    assert res.n_test == int((runs["N"] > 1e9).sum())
    assert res.mape == pytest.approx(np.mean(np.abs(t["predicted"] - t["loss"]) / t["loss"]))
    assert res.max_ape == pytest.approx(t["ape"].max())
    assert res.coverage == pytest.approx(np.mean((t["loss"] >= t["lo"]) & (t["loss"] <= t["hi"])))
    assert res.mape < 0.02


def test_all_ranks_applicable_laws(runs):
    assert applicable_laws(runs) == ["chinchilla", "kaplan"]
    ranked = backtest(runs, "all", holdout_top=0.25, bootstrap=0)  # the ranking is by MAPE: no intervals needed
    assert [r.law for r in ranked] == ["chinchilla", "kaplan"]  # data come from the Chinchilla form
    assert ranked[0].mape < ranked[1].mape


@pytest.mark.parametrize("kw,msg", [
    (dict(holdout="N > 1e12"), "both must be non-empty"),
    (dict(holdout="N +"), "could not evaluate"),
    (dict(holdout="N * 2"), "must be a comparison"),
    (dict(holdout_top=1.5), "fraction in"),
    (dict(), "exactly one of"),
])
def test_bad_splits(runs, kw, msg):
    with pytest.raises(DataError, match=msg):
        split(runs, **kw)


def test_allocation_laws_cannot_backtest_single_runs(runs):
    with pytest.raises(ScalingError, match="compute-optimal loss"):
        backtest(runs, "isoflop", holdout_top=0.25)


def test_cli_backtest_json_keys(capsys, runs, tmp_path):
    p = tmp_path / "runs.csv"
    runs.to_csv(p, index=False)
    png = tmp_path / "bt.png"
    code = main(["backtest", str(p), "--law", "chinchilla", "--holdout", "N > 1e9", "--bootstrap", "50", "--json",
                 "--plot", str(png)])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and png.stat().st_size > 10_000
    for k in ("n_train", "n_test", "mape", "max_ape", "coverage"):
        assert k in d
    assert len(d["runs"]) == d["n_test"] and {"loss", "predicted", "lo", "hi"} <= set(d["runs"][0])
    code = main(["backtest", str(p), "--law", "all", "--holdout-top", "0.25", "--by", "C", "--bootstrap", "30", "--json"])
    d = json.loads(capsys.readouterr().out)
    assert [r["law"] for r in d["ranking"]][0] == "chinchilla"


def test_auto_selects_on_the_training_runs_only(runs):
    # the held-out runs are poisoned (losses doubled): the selection, made inside the training runs, must not move
    mask = (runs["N"] > 1e9).to_numpy()
    poisoned = runs.copy()
    poisoned.loc[mask, "loss"] *= 2.0
    a = backtest(runs, "auto", holdout="N > 1e9", bootstrap=20, starts="coarse")
    b = backtest(poisoned, "auto", holdout="N > 1e9", bootstrap=20, starts="coarse")
    assert a.selection == b.selection
    assert a.selection["target"] == pytest.approx(runs["N"].max())  # the held-out runs' size is the target
    assert a.law == f"auto: {a.selection['chosen']}" and a.n_test == int(mask.sum())
    assert b.mape > 0.4 and a.mape < 0.05  # the poison does reach the scores


def test_total_intervals_are_reported_beside_noise_only_ones(runs):
    res = backtest(runs, "kaplan", holdout="N > 1e9", bootstrap=40)  # the wrong form: a large form error
    t = res.table
    assert res.interval == "total" and res.fitted.form_error_["kappa"] > 0.03
    assert (t["total_lo"] <= t["noise_lo"]).all() and (t["total_hi"] >= t["noise_hi"]).all()
    assert (t["lo"] == t["total_lo"]).all() and res.coverage == res.coverage_total
    assert res.coverage_total > res.coverage_noise  # the wider band covers what noise alone missed
    # too few sizes in the training part to nest: noise-only intervals, said so
    few = backtest(runs[runs["N"] < 3e8], "chinchilla", holdout="N > 1e8", bootstrap=30, starts="coarse")
    assert few.interval == "noise" and few.coverage_total is None and few.coverage == few.coverage_noise


def test_cli_backtest_takes_every_fit_setting(capsys, runs, tmp_path):
    p = tmp_path / "runs.csv"
    runs.to_csv(p, index=False)
    base = ["backtest", str(p), "--holdout", "N > 1e9", "--bootstrap", "20", "--json"]
    code = main(base + ["--law", "chinchilla", "--tie-exponents", "--loss", "squared", "--fix", "E=1.7",
                        "--bound", "alpha=0:1", "--drop-highest-loss", "1", "--dropna", "--no-prune",
                        "--no-average-seeds"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and d["n_train"] + d["n_test"] == len(runs) - 1
    assert d["interval"] == "total" and {"coverage_noise", "coverage_total"} <= set(d)
    assert {"noise_lo", "noise_hi", "total_lo", "total_hi"} <= set(d["runs"][0])
    code = main(base + ["--law", "auto", "--candidates", "chinchilla,kaplan"])
    d = json.loads(capsys.readouterr().out)
    assert code == 0 and {r["candidate"] for r in d["selection"]["candidates"]} == {"chinchilla", "kaplan"}
    assert d["law"] == "auto: chinchilla"
    assert main(base + ["--law", "auto", "--candidates", "nope"]) == 2
    assert "unknown candidate 'nope'" in capsys.readouterr().err
    assert main(base + ["--law", "chinchilla", "--candidates", "kaplan"]) == 2
    assert "--candidates applies to --law auto" in capsys.readouterr().err


def test_tie_exponents_reaches_the_backtested_fit(runs):
    res = backtest(runs, "chinchilla", holdout="N > 1e9", bootstrap=0, tie_exponents=True, loss="squared",
                   fixed={"E": 1.7}, starts="coarse")
    p = res.fitted.params_
    assert p["alpha"] == p["beta"] and p["E"] == 1.7 and res.fitted.law.loss == "squared"
    assert res.coverage is None and res.interval == "noise"  # no bootstrap: no intervals at all


def test_seed_replicates_are_averaged_as_scaling_fit_does(runs, tmp_path, capsys):
    # two seeds a cell; their means, worked out by hand, are the independent truth
    two = pd.concat([sample_runs(TRUTH, GRID, noise=0.01, seed=s).assign(seed=s) for s in (1, 2)], ignore_index=True)
    means = two.groupby(["N", "D"], as_index=False)["loss"].mean()
    kw = dict(holdout="N > 1e9", bootstrap=0, starts="coarse")
    with pytest.warns(ScalingWarning, match=r"backtest chinchilla: averaged 2 seeds per cell \(112 runs -> 56 cells\)"):
        avg = backtest(two, "chinchilla", **kw)
    ref = backtest(means, "chinchilla", **kw)
    assert (avg.n_train, avg.n_test) == (ref.n_train, ref.n_test) == (42, 14)
    assert avg.mape == pytest.approx(ref.mape, rel=1e-6) and avg.fitted.n_points_ == 42
    assert avg.to_dict()["averaged_seeds"] == {"runs": 112, "cells": 56} and "averaged_seeds" not in ref.to_dict()
    every = backtest(two, "chinchilla", average_seeds=False, **kw)
    assert (every.n_train, every.n_test) == (84, 28) and every.fitted.n_points_ == 84
    # --law auto: the cells are averaged once, before the split; the selection inside the training part keeps
    # every run when asked to (one cheap candidate: what is checked is which rows reach the fits)
    with pytest.warns(ScalingWarning, match="averaged 2 seeds per cell"):
        auto = backtest(two, "auto", candidates="chinchilla-tied", **kw)
    assert auto.n_train == 42 and auto.fitted.n_points_ == 42 and auto.selection["n_folds"] >= 2
    auto_every = backtest(two, "auto", candidates="chinchilla-tied", average_seeds=False, **kw)
    assert auto_every.n_train == 84 and auto_every.fitted.n_points_ == 84
    # the CLI: the same, and --no-average-seeds (kaplan-n, L(N) alone, is the cheapest fit; it misfits these runs,
    # but what is checked here is which rows reach it)
    p = tmp_path / "two.csv"
    two.to_csv(p, index=False)
    base = ["backtest", str(p), "--law", "kaplan-n", "--holdout", "N > 1e9", "--bootstrap", "0", "--json"]
    assert main(base) == 0
    out = capsys.readouterr()
    d = json.loads(out.out)
    assert d["n_train"] == 42 and d["averaged_seeds"] == {"runs": 112, "cells": 56} and "averaged 2 seeds" in out.err
    assert main(base + ["--no-average-seeds"]) == 0
    assert json.loads(capsys.readouterr().out)["n_train"] == 84


def test_auto_backtest_of_a_split_that_holds_out_no_larger_size(runs):
    # held out by D, measured in N: the held-out runs are no larger in N than the training ones, so the selection
    # inside the training runs aims one decade beyond them (its default) instead of refusing a target
    res = backtest(runs, "auto", holdout="D > 1e11", bootstrap=0, candidates="chinchilla-tied", starts="coarse")
    train_max = runs.loc[runs["D"] <= 1e11, "N"].max()
    assert res.selection["by"] == "N" and res.selection["distance"] == 1.0
    assert res.selection["target"] == pytest.approx(10 * train_max)
    assert res.n_test == int((runs["D"] > 1e11).sum()) and res.mape < 0.05
    assert res.coverage is None and res.interval == "noise"  # no bootstrap: no intervals, of either kind


def test_intervals_that_cover_clearly_less_than_their_level_are_called_too_narrow():
    from scaling.backtest import BacktestResult

    def result(coverage, n_test=20, interval="noise"):
        return BacktestResult(law="mpl", n_train=50, n_test=n_test, mape=0.01, max_ape=0.02, coverage=coverage,
                              level=0.9, table=pd.DataFrame(), interval=interval)

    assert "covered 55% of the held-out points: too narrow" in result(0.55).coverage_note()
    assert "noise only" in result(0.55).coverage_note() and "even with" in result(0.55, interval="total").coverage_note()
    assert result(0.80).coverage_note() is None  # within 15 points of the level
    assert result(0.50, n_test=5).coverage_note() is None  # too few held-out points to say
    assert result(None).coverage_note() is None  # no bootstrap, no interval
