"""Final-loss workflows from the command line as a newcomer with their own table runs them (a review, 2026-12-02):
compare averages seeds as fit does, a `Seed` column counts, hparams predictions name lr and batch and a sweep
whose optimum sits on its edge is flagged, and allocation intervals of a tied law say what is by construction."""

import json
import warnings

import numpy as np
import pandas as pd
import pytest

import scaling
from scaling.cli import main
from scaling.compare import compare
from test_law_contract import HP, hparam_runs

TRUTH = dict(E=1.8, A=400.0, B=400.0, alpha=0.34, beta=0.28)


def seeded_grid(seed_column="seed", seeds=3, noise=0.01, rng_seed=0):
    rng = np.random.default_rng(rng_seed)
    rows = []
    for N in np.geomspace(5e7, 3e9, 8):
        for tpp in (5, 10, 20, 40, 80):
            D = tpp * N
            L = TRUTH["E"] + TRUTH["A"] / N ** TRUTH["alpha"] + TRUTH["B"] / D ** TRUTH["beta"]
            for s in range(seeds):
                rows.append({"params": N, "tokens_seen": D, "val/loss": L * np.exp(noise * rng.standard_normal()),
                             seed_column: s})
    return pd.DataFrame(rows)


def quiet(fn, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*a, **k)


COLS = "N=params,D=tokens_seen,loss=val/loss"


def test_a_capitalised_seed_column_replicates_cells_and_compare_averages_them_as_fit_does():
    df = seeded_grid("Seed")
    with pytest.warns(scaling.ScalingWarning, match=r"averaged 3 seeds per cell \(120 runs -> 40 cells\)"):
        fit = scaling.fit(df, law="chinchilla", columns=COLS, bootstrap=30)
    assert fit.fit_info_["averaged_seeds"] == {"runs": 120, "cells": 40}
    table = quiet(compare, df, compute=1e21, columns=COLS, bootstrap=30)
    row = table[table["approach"].str.startswith("3")].iloc[0]
    assert row["a"] == pytest.approx(fit.compute_optimal(1e21)["a"].iloc[0], rel=1e-9)  # the same cells fitted
    assert "averaged 3 seeds per cell" in row["note"]
    assert row["a_ci"] == pytest.approx(fit.allocation_exponent_intervals()["a"], rel=1e-9)


def test_compare_keeps_every_note_whole_and_names_a_grid_that_has_no_isoflop_profiles():
    table = quiet(compare, seeded_grid(), compute=1e21, columns=COLS, bootstrap=0)
    iso = table[table["approach"].str.startswith("2")].iloc[0]["note"]
    assert iso.startswith("not applicable") and "and 37 more: only 1 model size(s)" in iso
    assert "an N x D grid rather than IsoFLOP profiles" in iso and iso.count("C=") == 1


def test_predict_of_an_hparams_fit_gives_lr_and_batch_with_intervals(tmp_path, capsys):
    path = tmp_path / "hp.csv"
    hparam_runs().to_csv(path, index=False)
    fit = tmp_path / "hp.json"
    assert main(["fit", str(path), "--law", "hparams", "--bootstrap", "50", "--out", str(fit)]) == 0
    capsys.readouterr()
    N, D = 3e8, 3e10
    assert main(["predict", str(fit), "--N", str(N), "--D", str(D), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert "loss" not in out  # it once printed the learning rate as "predicted loss"
    assert out["lr"] == pytest.approx(HP["eta0"] * N ** HP["eta_N"] * D ** HP["eta_D"], rel=0.1)
    assert out["batch"] == pytest.approx(HP["B0"] * D ** HP["B_D"], rel=0.1)
    for k in ("lr", "batch"):
        lo, hi = out[f"{k}_interval"]
        assert lo <= out[k] * (1 + 1e-9) and out[k] <= hi * (1 + 1e-9)  # the sweeps hit the optimum: narrow
    assert main(["predict", str(fit), "--N", str(N), "--D", str(D)]) == 0
    text = capsys.readouterr().out
    assert "lr " in text and "batch " in text and "loss" not in text


def test_an_hparams_optimum_on_the_edge_of_the_sweep_is_flagged():
    runs = hparam_runs()
    bowl = hparam_runs()
    cut = runs[runs["batch"] >= runs.groupby(["N", "D"])["batch"].transform("median")]  # the optimum and above
    with pytest.warns(scaling.ScalingWarning, match=r"in 12 of 12 cells the best batch is an edge.*12 at the smallest"):
        scaling.fit(cut, law="hparams", bootstrap=0)
    with warnings.catch_warnings():
        warnings.simplefilter("error", scaling.ScalingWarning)
        scaling.fit(bowl, law="hparams", bootstrap=0)  # the full bowl: no warning


def test_dropna_says_how_many_rows_it_left_out():
    df = seeded_grid(seeds=1)
    df.loc[7, "val/loss"] = np.nan
    with pytest.warns(scaling.ScalingWarning, match=r"1 of 40 row\(s\) have NaN .* left out \(dropna; the first at row 7\)"):
        fit = scaling.fit(df.drop(columns="seed"), law="chinchilla", columns=COLS, bootstrap=0, dropna=True)
    assert fit.n_points_ == 39


def test_a_tied_fit_says_its_exponent_is_by_construction_and_widens_for_a_free_alternative(tmp_path, capsys):
    df = seeded_grid(seeds=1).drop(columns="seed").rename(columns={"params": "N", "tokens_seen": "D",
                                                                   "val/loss": "loss"})
    tied = quiet(scaling.ChinchillaLaw(tie_exponents=True, bootstrap=50).fit, df)
    free = quiet(scaling.ChinchillaLaw(bootstrap=0).fit, df)
    assert "(tied to alpha)" in next(ln for ln in tied.report().splitlines() if ln.strip().startswith("beta"))
    alt = tied._with_state(form_error_={"alternatives": [{"label": "chinchilla", "law": "chinchilla",
                                                         "params": dict(free.params_)}]})
    C = 1e28  # far enough out that the free law allocates outside the tied one's interval
    plain, wide = quiet(tied.compute_optimal, C).iloc[0], quiet(alt.compute_optimal, C)
    n_free = quiet(free.compute_optimal, C, interval=False)["N_opt"].iloc[0]
    assert not plain["N_opt_lo"] <= n_free <= plain["N_opt_hi"]  # the tied law alone excludes the free one's N_opt
    assert wide["N_opt_lo"].iloc[0] <= n_free <= wide["N_opt_hi"].iloc[0]
    assert wide.attrs["alternatives"] == ["chinchilla"]
    path = alt.save(tmp_path / "tied.json")
    assert main(["allocate", str(path), "--compute", "1e28"]) == 0
    text = capsys.readouterr().out
    assert "include the allocations of chinchilla" in text and "a = b = 0.5 by construction" in text


def test_by_with_a_holdout_expression_is_refused(tmp_path, capsys):
    path = tmp_path / "grid.csv"
    seeded_grid(seeds=1).to_csv(path, index=False)
    assert main(["backtest", str(path), "--columns", COLS, "--holdout", "params > 1e9", "--by", "C"]) == 2
    assert "--by ranks the runs for --holdout-top" in capsys.readouterr().err


def test_an_hparams_edge_is_judged_on_the_near_optimal_settings_not_the_row_order():
    # in every cell the two smallest batches tie for the best loss: the optimum lies inside the sweep, whatever the
    # order of the rows (the first of the tied rows once decided it)
    rows = []
    for N in (1e7, 3e7, 1e8, 3e8):
        for D in (1e9, 1e10):
            for i, lr in enumerate((1e-3, 2e-3, 4e-3)):
                for j, batch in enumerate((6.4e4, 1.28e5, 2.56e5)):
                    rows.append(dict(N=N, D=D, lr=lr * (1e8 / N) ** 0.3, batch=batch,
                                     loss=2.0 + 0.01 * (i - 1) ** 2 + 0.02 * max(j - 1, 0)))
    table = pd.DataFrame(rows)
    for order in (table, table.iloc[::-1]):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            scaling.fit(order, law="hparams", bootstrap=0, tolerance=0.0)
        assert not any("best batch is an edge" in str(w.message) for w in caught)
    # the loss only rising with batch: the best is the smallest batch swept, in every cell
    edge = table.assign(loss=2.0 + 0.01 * np.log2(table["batch"] / 6.4e4) + 0.01 * np.log2(table["lr"]) ** 2 / 100)
    with pytest.warns(scaling.ScalingWarning, match=r"in 8 of 8 cells the best batch is an edge.*8 at the smallest"):
        scaling.fit(edge, law="hparams", bootstrap=0, tolerance=0.0)


def test_allocate_says_by_construction_only_where_it_is(tmp_path, capsys):
    path = scaling.get_law("data-constrained").muennighoff2023().save(tmp_path / "dc.json")
    assert main(["allocate", str(path), "--compute", "1e22", "--U", "2e10"]) == 0
    assert "by construction" not in capsys.readouterr().out


def test_compare_reads_a_sweeps_own_curves_export_with_its_runs_table():
    # Approach 1 said the curves table lacked N and loss, though runs.csv + curves.csv is what sweep export writes
    from pathlib import Path

    from scaling.compare import compare

    sweep = Path(__file__).resolve().parents[1] / "data" / "sweeps" / "cpu-chinchilla"
    table = compare(sweep / "runs.csv", compute=1e13, curves=sweep / "curves.csv", bootstrap=0)
    row = table[table["approach"].str.startswith("1:")].iloc[0]
    assert 0 < float(row["a"]) < 1, row.to_dict()
