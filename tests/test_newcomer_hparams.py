"""The hyperparameter law and the post-training commands as a newcomer tried them (review of 2026-12-02,
afternoon): cells that a logged D splits, loss laws fitted across learning rates, predictions and plots of
hparams and Gao fits, and the errors a first try hits."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.cli import main
from scaling.errors import DataError, FitError, ScalingWarning, SettingsError
from scaling.laws import HyperparameterLaw

from test_law_contract import HP, hparam_runs
from test_post_training_cli import error_line


def test_a_D_logged_as_tokens_trained_does_not_split_a_cell():
    # each batch setting of a cell trained D rounded its own way (within 0.2%): still one cell, the same exponents
    df = hparam_runs(noise=0.0)
    j = np.round(np.log2(df["batch"] / (HP["B0"] * df["D"] ** HP["B_D"]))).astype(int)
    jittered = df.assign(D=df["D"] * (1 + 0.001 * j))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exact = HyperparameterLaw(bootstrap=0).fit(df)
        got = HyperparameterLaw(bootstrap=0).fit(jittered)
    assert got.fit_info_["n_cells"] == exact.fit_info_["n_cells"] == 12
    for k in ("eta_N", "eta_D", "B_D"):
        assert got.params_[k] == pytest.approx(HP[k], abs=0.01)
    # half of one cell's runs 5% apart in D are two cells; 0.5% apart, one
    one = (df["N"] == df["N"].min()) & (df["D"] == df["D"].min()) & (df["batch"] > df["batch"].median())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for shift, cells in ((1.05, 13), (1.005, 12)):
            split = df.assign(D=np.where(one, df["D"] * shift, df["D"]))
            assert HyperparameterLaw(bootstrap=0).fit(split).fit_info_["n_cells"] == cells


def test_a_loss_law_on_a_table_sweeping_lr_in_each_cell_says_so(capsys, tmp_path):
    df = hparam_runs(noise=0.0).rename(columns={"batch": "bs"})
    with pytest.warns(ScalingWarning, match=r"lr and bs vary within 12 of 12 cell\(s\) of \(N, D\), up to 7 values in "
                                            r"one: every setting is fitted as a run of the same model.*--best-hparams"):
        scaling.fit(df, law="chinchilla", columns={"batch": "bs"}, bootstrap=0)
    # one setting per cell: nothing to say
    best = df[(df["lr"] == df.groupby(["N", "D"])["lr"].transform("median"))
              & (df["bs"] == df.groupby(["N", "D"])["bs"].transform("median"))]
    assert len(best) == 12
    with warnings.catch_warnings():
        warnings.simplefilter("error", ScalingWarning)
        try:
            scaling.fit(best, law="chinchilla", columns={"batch": "bs"}, bootstrap=0)
        except ScalingWarning as w:
            assert "vary within" not in str(w), w


def test_best_hparams_table_fits_without_the_every_setting_is_near_optimal_warning():
    df = hparam_runs(noise=0.0)
    best = df.loc[df.groupby(["N", "D"])["loss"].idxmin()]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit = HyperparameterLaw(bootstrap=0).fit(best)
    assert not [w for w in caught if "near-optimal" in str(w.message)], [str(w.message) for w in caught]
    for k in ("eta_N", "eta_D", "B_D"):
        assert fit.params_[k] == pytest.approx(HP[k], abs=1e-9)


def test_two_values_a_cell_with_the_largest_always_best_is_warned_of():
    df = hparam_runs(noise=0.0)
    lr_opt = HP["eta0"] * df["N"] ** HP["eta_N"] * df["D"] ** HP["eta_D"]
    two = df[np.isclose(df["lr"], lr_opt / 4) | np.isclose(df["lr"], lr_opt / 2)]  # both below the optimum
    with pytest.warns(ScalingWarning, match=r"every cell swept only two values of lr, and in all 12 the largest is "
                                            r"the best: the optimum may lie beyond the sweep"):
        HyperparameterLaw(bootstrap=0).fit(two)


def test_hparams_predict_warns_outside_the_fitted_range_and_deepseek_takes_N_and_D(tmp_path, capsys):
    fit = HyperparameterLaw(bootstrap=0).fit(hparam_runs(noise=0.0))
    with pytest.warns(ScalingWarning, match=r"hparams: predicting at N=1e\+03, 10,000x below the smallest N fitted"):
        fit.predict(N=1e3, D=1e10)
    df = hparam_runs(noise=0.0)
    df = df.assign(C=6 * df["N"] * df["D"]).drop(columns=["N", "D"])
    path = tmp_path / "ds.json"
    HyperparameterLaw(form="deepseek", bootstrap=0).fit(df).save(path)
    assert main(["predict", str(path), "--N", "1e8", "--D", "1e10", "--json"]) == 0
    cap = capsys.readouterr()
    assert json.loads(cap.out)["inputs"] == {"C": pytest.approx(6e18)} and "C = 6 N D = 6e+18" in cap.err
    assert main(["predict", str(path), "--C", "6e18"]) == 0
    assert "in the unit of the fitted table's batch column" in capsys.readouterr().out


def test_single_D_is_fine_when_its_exponents_are_fixed():
    df = hparam_runs(noise=0.0)
    one = df[df["D"] == df["D"].min()]
    with pytest.raises(DataError, match=r"all runs share one value of D.*--fix eta_D=0,B_D=0"):
        HyperparameterLaw(bootstrap=0).fit(one)
    fit = HyperparameterLaw(bootstrap=0, fixed={"eta_D": 0.0, "B_D": 0.0}).fit(one)
    assert fit.params_["eta_N"] == pytest.approx(HP["eta_N"], abs=1e-9)


def test_hparams_backtest_is_refused_in_one_line_and_plot_draws_both_forms(tmp_path, capsys):
    table = tmp_path / "hp.csv"
    hparam_runs(noise=0.0).to_csv(table, index=False)
    err = error_line(capsys, ["backtest", str(table), "--law", "hparams", "--holdout", "N > 5e8"])
    assert "does not predict a run's loss, so it cannot be backtested" in err
    with pytest.raises(SettingsError):
        scaling.backtest.backtest(table, law="hparams", holdout="N > 5e8")
    from scaling.plotting import plot_fit

    fit = HyperparameterLaw(bootstrap=20).fit(hparam_runs(noise=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fig = plot_fit(fit, hparam_runs(noise=0.0))
    lr_ax, b_ax = fig.axes
    assert lr_ax.get_title() == "eta_opt" and b_ax.get_title() == "B_opt"
    assert len([ln for ln in lr_ax.get_lines()]) == 4  # one line per N of the data
    n_points = sum(len(c.get_offsets()) for c in lr_ax.collections if hasattr(c, "get_offsets")
                   and c.get_offsets().ndim == 2 and c.get_offsets().shape[1] == 2 and c.get_offsets().shape[0] < 100)
    assert n_points >= 12  # at least each cell's best setting
    x, y = lr_ax.get_lines()[0].get_data()
    N0 = float(lr_ax.get_lines()[0].get_label().split("= ")[1])
    assert np.allclose(y, HP["eta0"] * N0 ** HP["eta_N"] * x ** HP["eta_D"], rtol=1e-2)
    path = tmp_path / "hp.json"
    fit.save(path)
    for argv in ([str(path)], [str(path), str(table)]):
        png = tmp_path / f"hp{len(argv)}.png"
        assert main(["plot", *argv, "--out", str(png)]) == 0 and png.stat().st_size > 10_000
    df = hparam_runs(noise=0.0)
    ds = tmp_path / "ds.json"
    HyperparameterLaw(form="deepseek", bootstrap=20).fit(
        df.assign(C=6 * df["N"] * df["D"]).drop(columns=["N", "D"])).save(ds)
    assert main(["plot", str(ds), "--out", str(tmp_path / "ds.png")]) == 0


def test_laws_lists_the_hparams_forms(capsys):
    assert main(["laws"]) == 0
    assert "--form deepseek: eta_opt = eta0 C^eta_C" in capsys.readouterr().out
    assert main(["laws", "--json"]) == 0
    assert set(json.loads(capsys.readouterr().out)["hparams"]["forms"]) == {"steplaw", "deepseek"}


def test_gao_predictions_beyond_the_data_are_warned_of_and_filters_list_what_exists(tmp_path, capsys):
    from test_overopt import synthetic
    from scaling.laws.gao import GaoBoN, GaoRL

    df, _ = synthetic(GaoBoN)
    fit = GaoBoN(bootstrap=0).fit(df)
    d_max = float(np.sqrt(df["kl"].max()))
    with pytest.warns(ScalingWarning, match=r"beyond the largest d measured"):
        fit.predict(d=3 * d_max, rm_params=float(df["rm_params"].max()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fit.predict(d=d_max, rm_params=float(df["rm_params"].max()))  # within the data: no warning
    with pytest.warns(ScalingWarning, match=r"rm_params=1e\+09, 10,000x beyond the largest rm_params fitted"):
        fit.predict(d=1.0, rm_params=1e9)
    rl = synthetic(GaoRL)[0].assign(kl_penalty=0.0)
    with pytest.raises(DataError, match=r"no rl rows with kl_penalty == 0.5; the rl rows have kl_penalty 0$"):
        GaoRL(bootstrap=0, kl_penalty=0.5).fit(rl)


def test_warmups_that_last_the_whole_run_or_are_fractional_steps_are_refused():
    from scaling.sweep import expand, load_spec
    from scaling.sweep.spec import SpecError
    from test_sweep import toy_spec

    with pytest.raises(SpecError, match=r"a warmup of 100 step\(s\) lasts the whole run for 3 run\(s\) of 49 steps"):
        expand(load_spec(toy_spec(schedule={"warmup": 100})))
    with pytest.raises(SpecError, match=r"grid.warmup lists 1.5: give fractions of the run below 1"):
        load_spec(toy_spec(grid={"warmup": [1.5, 0.1]}))
    assert {r["schedule"]["warmup"] for r in expand(load_spec(toy_spec(schedule={"warmup": 10})))} == {10}


def test_overopt_plot_of_a_penalty_the_table_lacks_is_an_error(tmp_path, capsys):
    rows = [{"method": "rl", "rm_params": 1e5, "kl_penalty": pen, "step": step, "d": 0.5 * step, "gold": 0.1 * step,
             "proxy": 0.3 * step} for pen in (0.0, 0.1) for step in range(4)]
    table = tmp_path / "oo.csv"
    pd.DataFrame(rows).to_csv(table, index=False)
    err = error_line(capsys, ["overopt", "plot", str(table), "--kl-penalty", "0.3", "--out", str(tmp_path / "x.png")])
    assert "no rl rows with kl_penalty == 0.3; the table has kl_penalty 0, 0.1" in err
    from scaling.plotting import plot_overopt

    assert plot_overopt(pd.DataFrame(rows), kl_penalty=0.1).axes[0].get_title().startswith("RL (RLOO), kl_penalty 0.1:")
    assert plot_overopt(pd.DataFrame(rows)).axes[0].get_title().startswith("RL (RLOO), kl_penalty 0:")


def test_exports_named_parquet_are_parquet_files_and_a_store_of_another_kind_is_named(tmp_path, capsys, monkeypatch):
    import scaling.finetune.runner as ft

    df = pd.DataFrame({"method": ["lora"], "N": [1e5], "D_f": [1e4], "loss": [2.0]})
    monkeypatch.setattr(ft, "export", lambda name, root: df)
    out = tmp_path / "ft.parquet"
    assert main(["finetune", "export", "x", "--out", str(out)]) == 0
    assert out.is_file() and pd.read_parquet(out).equals(df)
    capsys.readouterr()
    (tmp_path / "out" / "overopt" / "oo").mkdir(parents=True)
    (tmp_path / "out" / "overopt" / "oo" / "sweep.sqlite").write_bytes(b"")
    monkeypatch.chdir(tmp_path)
    err = error_line(capsys, ["sweep", "export", "oo", "--out", "runs.csv"])
    assert "'oo' is an overoptimization sweep (under out/overopt): `scaling overopt status oo`" in err


def test_a_fine_tuning_definition_given_to_sweep_run_points_to_finetune_run(tmp_path, capsys):
    from pathlib import Path

    ci = Path(__file__).resolve().parents[1] / "sweeps" / "finetune-ci.yaml"
    assert "defines a fine-tuning sweep: run it with `scaling finetune run`" in error_line(
        capsys, ["sweep", "run", str(ci), "--root", str(tmp_path)])


def test_a_fit_that_did_not_converge_gives_no_interval_for_what_its_starts_disagree_on():
    # a 3 x 2 grid of a real sweep on a user's corpus (review of 2026-12-02): B runs off to 1e37, and a bootstrap
    # from where the fit stopped stays there, so its intervals (a in [0.986, 1.000]) looked precise
    df = pd.DataFrame({"N": [12400, 12400, 32928, 32928, 8272, 8272], "D": [299008.0, 600064.0] * 3,
                       "loss": [4.8301877251360565, 4.238718669163063, 4.444635122898035, 3.868122959975153,
                                4.648526086006314, 4.237145100953057]})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = scaling.fit(df, law="chinchilla", bootstrap=100)
    assert not fit.converged_
    assert "B" in fit.fit_info_["not_identified"] and fit.ci_["B"] is None
    assert "did not converge" in fit.fit_info_["not_identified"]["B"]
    co = fit.summary()["compute_optimal"]
    assert "ci" not in co and co["note"].startswith("not identified: B is not")
    assert fit.allocation_exponent_intervals() == {}
    assert "neither are a and b; no interval" in fit.report()


def test_isoflop_on_an_N_by_D_export_with_an_empty_budget_column_groups_by_compute():
    from scaling.laws import IsoFlopLaw

    df = pd.DataFrame({"N": [12400, 12400, 32928, 32928, 8272, 8272], "D": [299008.0, 600064.0] * 3,
                       "loss": [4.83, 4.24, 4.44, 3.87, 4.65, 4.24], "budget": [np.nan] * 6})
    # every NaN budget was one budget at the runs' mean C; now each run is its own C, which the advice names
    with pytest.raises(FitError, match=r"each budget holds about one run: an N x D grid rather than IsoFLOP "
                                        r"profiles \(fit the parametric law, --law chinchilla\)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            IsoFlopLaw(bootstrap=0).fit(df)


def test_a_sweeps_batch_axis_is_named_though_it_rounds_each_cells_D_apart(tmp_path):
    from scaling.data import seed_means
    from scaling.laws import ChinchillaLaw
    from scaling.sweep import export, run_sweep
    from test_sweep import toy_spec

    run_sweep(toy_spec(batch={"tokens_per_step": [2048, 8192]}), root=tmp_path, workers=1, progress=False)
    table = export("toy", tmp_path)[0]
    assert table.groupby("D_grid")["D"].nunique().max() == 2  # the batch axis rounded D apart
    notes = seed_means(table, ChinchillaLaw)[3]
    assert any(n.startswith("batch vary within 6 of 6 cell(s) of (N, D_grid), up to 2 values") for n in notes), notes
