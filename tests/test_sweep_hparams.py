"""Hyperparameters per size and as grid axes, --best-hparams, and fits on replicate means (issue #12, sections 2-3)."""

import itertools
import json
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml

import scaling
from scaling.cli import main
from scaling.data import best_hparams, replicate_means
from scaling.errors import ScalingWarning
from scaling.laws import ChinchillaLaw, HyperparameterLaw
from scaling.sweep import expand, load_spec, run_sweep
from scaling.sweep.spec import SpecError, changed_settings

from test_law_contract import HP, hparam_runs
from test_sweep import TOY, toy_spec

SHAPES = [{"n_layer": 2, "d_model": 32}, {"n_layer": 2, "d_model": 64}, {"n_layer": 2, "d_model": 128}]


def shaped(**overrides):
    return toy_spec(model={"sizes": None, "shapes": SHAPES, "seq_len": 64}, **overrides)


def lr_by_width(runs):
    return {r["d_model"]: r["optimizer"]["lr"] for r in runs}


# ------------------------------------------------------------------ learning-rate rules
def test_width_rule_is_base_times_width_ratio_to_the_exponent():
    runs = expand(load_spec(shaped(optimizer={"lr": {"base": 3e-3, "ref_width": 64, "exponent": -1}})))
    assert lr_by_width(runs) == {32: 6e-3, 64: 3e-3, 128: 1.5e-3}
    assert all(type(r["optimizer"]["lr"]) is float and r["optimizer"]["weight_decay"] == 0.1 for r in runs)
    half = expand(load_spec(shaped(optimizer={"lr": {"base": 1e-3, "ref_width": 48, "exponent": -0.5}})))
    for width, lr in lr_by_width(half).items():
        assert lr == pytest.approx(1e-3 * (width / 48) ** -0.5, rel=1e-9)
    # the exponent defaults to -1 (muP's width scaling for Adam); YAML's 3e-3 without a dot is text
    default = expand(load_spec(shaped(optimizer={"lr": {"base": "3e-3", "ref_width": 64}})))
    assert lr_by_width(default) == lr_by_width(runs)


def test_a_shape_with_its_own_lr_overrides_the_sweep_lr():
    shapes = [SHAPES[0], {**SHAPES[1], "lr": 0.02}, SHAPES[2]]
    spec = toy_spec(model={"sizes": None, "shapes": shapes, "seq_len": 64})
    assert lr_by_width(expand(load_spec(spec))) == {32: 3e-3, 64: 0.02, 128: 3e-3}  # 3e-3: the default
    ruled = toy_spec(spec, optimizer={"lr": {"base": 4e-3, "ref_width": 32}})
    assert lr_by_width(expand(load_spec(ruled))) == {32: 4e-3, 64: 0.02, 128: 1e-3}


def _hparams_fit(tmp_path, form="steplaw"):
    """A fit of the hparams law on runs whose optima follow HP exactly (noise-free bowls): it recovers HP."""
    df = hparam_runs(noise=0.0)
    if form == "deepseek":
        df = df.assign(C=6 * df["N"] * df["D"]).drop(columns=["N", "D"])
    law = HyperparameterLaw(form=form, bootstrap=0).fit(df)
    path = tmp_path / f"{form}.json"
    law.save(path)
    return path, law


def test_lr_from_a_fitted_hparams_law_is_its_eta_opt_at_each_runs_N_and_D(tmp_path):
    path, law = _hparams_fit(tmp_path)
    for k, v in HP.items():
        assert law.params_[k] == pytest.approx(v, rel=1e-9, abs=1e-9)
    spec = load_spec(toy_spec(optimizer={"lr": {"from": str(path)}}))
    with pytest.warns(ScalingWarning, match=r"extrapolate the fit .*N 1.65e\+04-3.08e\+05 \(fitted on 1e\+07-1e\+09\)"):
        runs = expand(spec)  # the toy's sizes lie far below the fitted ones: said once
    assert len({r["optimizer"]["lr"] for r in runs}) == len(runs)  # one per (N, D)
    for r in runs:
        assert r["optimizer"]["lr"] == pytest.approx(HP["eta0"] * r["N"] ** HP["eta_N"] * r["D"] ** HP["eta_D"],
                                                     rel=1e-8)
    # the spec records the fitted parameters: a refitted file is a changed setting, not more runs of the same
    assert spec["optimizer"]["lr"]["fitted"]["params"] == pytest.approx(HP)
    assert load_spec(spec)["optimizer"]["lr"] == spec["optimizer"]["lr"]  # a loaded spec passed back in


def test_lr_from_a_deepseek_fit_uses_compute(tmp_path):
    path, law = _hparams_fit(tmp_path, "deepseek")
    with pytest.warns(ScalingWarning, match=r"extrapolate the fit .*: C "):
        runs = expand(load_spec(toy_spec(optimizer={"lr": {"from": str(path)}})))
    p = law.params_
    for r in runs:
        assert r["optimizer"]["lr"] == pytest.approx(p["eta0"] * (6 * r["N"] * r["D"]) ** p["eta_C"], rel=1e-8)


def test_changing_the_lr_setting_of_a_sweep_is_a_change(tmp_path):
    plain = load_spec(shaped())
    rule = load_spec(shaped(optimizer={"lr": {"base": 3e-3, "ref_width": 64}}))
    assert any(c.startswith("optimizer.lr:") for c in changed_settings(plain, rule))
    path, _ = _hparams_fit(tmp_path)
    first = load_spec(toy_spec(optimizer={"lr": {"from": str(path)}}))
    HyperparameterLaw(bootstrap=0).fit(hparam_runs(noise=0.0, truth={**HP, "eta_N": -0.5})).save(path)
    second = load_spec(toy_spec(optimizer={"lr": {"from": str(path)}}))
    assert any(c.startswith("optimizer.lr:") for c in changed_settings(first, second))
    assert changed_settings(second, load_spec(toy_spec(optimizer={"lr": {"from": str(path)}}))) == []


@pytest.mark.parametrize("lr,msg", [
    ({"base": -3e-3, "ref_width": 64}, r"optimizer.lr.base must be a number > 0; got -0.003"),
    ({"base": 3e-3}, r"missing \['ref_width'\]"),
    ({"base": 3e-3, "ref_width": 64, "slope": -1}, r"unknown key\(s\) \['slope'\]"),
    ({"base": 3e-3, "ref_width": 0}, r"optimizer.lr.ref_width must be a number > 0"),
    ({"base": 3e-3, "ref_width": 64, "exponent": "fast"}, r"optimizer.lr.exponent must be a number"),
    ({"from": "FIT", "base": 1}, r"'from' takes no other keys, got \['base'\]"),
    ({"from": "no/such/fit.json"}, r"optimizer.lr.from: no such fit file .*no/such/fit.json; write one with "
                                   r"`scaling fit RUNS --law hparams"),
    ({"from": "CHINCHILLA"}, r"optimizer.lr.from: .*chinchilla.json is a chinchilla fit, not an hparams law"),
    ({"from": "NOT_JSON"}, r"optimizer.lr.from: .*not a fit file \(invalid JSON"),
    ("fast", r"optimizer.lr must be a number > 0; got 'fast'"),
])
def test_bad_lr_rules_are_one_clear_error_before_anything_trains(tmp_path, lr, msg):
    fits = {"FIT": str(tmp_path / "fit.json"), "CHINCHILLA": str(tmp_path / "chinchilla.json"),
            "NOT_JSON": str(tmp_path / "broken.json")}
    ChinchillaLaw.hoffmann2022().save(fits["CHINCHILLA"])
    (tmp_path / "broken.json").write_text("{not json")
    if isinstance(lr, dict) and lr.get("from") in fits:
        lr = {**lr, "from": fits[lr["from"]]}
    with pytest.raises(SpecError, match=msg):
        run_sweep(toy_spec(optimizer={"lr": lr}), root=tmp_path / "sweeps", progress=False)
    assert not (tmp_path / "sweeps").exists()  # refused before a store or a worker


@pytest.mark.parametrize("change,msg", [
    ({"grid": {"lr": [1e-3, 1e-3]}}, r"grid.lr lists a value twice"),
    ({"grid": {"lr": [1e-3, -1e-3]}}, r"grid.lr must be a non-empty list of numbers > 0"),
    ({"grid": {"warmup": [-0.1]}}, r"grid.warmup must be a non-empty list of numbers >= 0"),
    ({"grid": {"batch_tokens": 1024}}, r"grid.batch_tokens must be a non-empty list"),
    ({"grid": {"batch_tokens": [1024, 4096]}}, r"grid.batch_tokens and batch.tokens_per_step both set the batch"),
    ({"grid": {"lr": [1e-3]}, "optimizer": {"lr": {"base": 1e-3, "ref_width": 64}}},
     r"optimizer.lr is a rule and grid.lr lists the learning rates of every run"),
    ({"model": {"sizes": None, "shapes": [{**SHAPES[0], "lr": -1}], "seq_len": 64}},
     r"model.shapes entry .*: lr must be a number > 0; got -1"),
    ({"model": {"sizes": None, "shapes": [{**SHAPES[0], "lr": 1e-3}], "seq_len": 64}, "grid": {"lr": [1e-3]}},
     r"sets lr, and grid.lr lists the learning rates of every run"),
])
def test_bad_axes_and_per_shape_values(change, msg):
    spec = toy_spec(**{k: v for k, v in change.items() if k != "grid"})
    spec["grid"] = {**spec["grid"], **change.get("grid", {})}  # TOY sets batch.tokens_per_step: 4096
    with pytest.raises(SpecError, match=msg):
        expand(load_spec(spec))


# ------------------------------------------------------------------ axes
def test_lr_warmup_and_batch_axes_cross_the_grid_and_seeds_with_distinct_stable_ids():
    base = toy_spec(seeds=[0, 1])
    base.pop("batch")
    spec = toy_spec(base, grid={"lr": [1e-3, 3e-3], "warmup": [0, 0.1], "batch_tokens": [1024, 4096]})
    runs = expand(load_spec(spec))
    assert len(runs) == 3 * 2 * 2 * 2 * 2 * 2  # sizes x tokens x lr x warmup x batch x seeds
    assert len({r["run_id"] for r in runs}) == len(runs)
    settings = {(r["N"], r["D_grid"], r["optimizer"]["lr"], r["schedule"]["warmup"], r["tokens_per_step"], r["seed"])
                for r in runs}
    assert len(settings) == len(runs)
    r = next(r for r in runs if r["optimizer"]["lr"] == 3e-3 and r["schedule"]["warmup"] == 0.1
             and r["tokens_per_step"] == 1024 and r["seed"] == 1)
    assert "-b1024-lr0.003-w0.1-s1-" in r["run_id"]
    assert [x["run_id"] for x in expand(load_spec(spec))] == [x["run_id"] for x in runs]  # stable
    iso = toy_spec(grid={"tokens": None, "compute": [1e12, 4e12]})
    n_iso = len(expand(load_spec(iso)))
    assert len(expand(load_spec(toy_spec(iso, grid={"tokens": None, "compute": [1e12, 4e12],
                                                    "lr": [1e-3, 2e-3, 4e-3]})))) == 3 * n_iso


#: the ids of TOY's runs before the axes and rules existed: a store resumes its runs by these
TOY_IDS = ['N16528-D200704-s0-c62a2550', 'N16528-D798720-s0-ce84e724', 'N73968-D200704-s0-6d3137a4',
           'N73968-D798720-s0-1818a6ea', 'N307760-D200704-s0-ea961598', 'N307760-D798720-s0-7a3ffefd']


def test_existing_definitions_keep_their_run_ids():
    assert [r["run_id"] for r in expand(load_spec(toy_spec()))] == TOY_IDS
    assert [r["run_id"] for r in expand(load_spec(toy_spec(optimizer={"lr": 3e-3})))] == TOY_IDS
    # grid.batch_tokens is a batch.tokens_per_step list by another name: the same runs
    listed = expand(load_spec({**TOY, "batch": {"tokens_per_step": [1024, 4096]}}))
    aliased = expand(load_spec({**TOY, "batch": {}, "grid": {**TOY["grid"], "batch_tokens": [1024, 4096]}}))
    assert [r["run_id"] for r in aliased] == [r["run_id"] for r in listed]


# ------------------------------------------------------------------ replicates and the best setting
def test_replicate_means_exact_numbers():
    df = pd.DataFrame({
        "run_id": ["a", "b", "c", "d", "e", "f"], "N": [1e6, 1e6, 1e6, 2e6, 2e6, 2e6],
        "D": [1e8] * 6, "budget": [np.nan] * 6, "lr": [1e-3] * 6, "seed": [0, 1, 2, 0, 1, 2],
        "loss": [3.0, 3.3, 3.6, 2.5, np.nan, 2.7], "eval_se": [0.01] * 6, "status": ["done"] * 4 + ["failed", "done"]})
    m = replicate_means(df)
    assert list(m.columns) == ["N", "D", "budget", "lr", "loss", "loss_sd", "n_seeds"]
    assert m["N"].tolist() == [1e6, 2e6] and m["budget"].isna().all()
    np.testing.assert_allclose(m["loss"], [3.3, 2.6])
    np.testing.assert_allclose(m["loss_sd"], [0.3, np.sqrt(0.02)])  # sample sd over the finite seeds
    assert m["n_seeds"].tolist() == [3, 2]
    one = replicate_means(df.iloc[:1])
    assert one["n_seeds"].tolist() == [1] and one["loss_sd"].isna().all()
    by_n = replicate_means(df.drop(columns=["run_id", "status", "eval_se"]), by=["N"])
    np.testing.assert_allclose(by_n["loss"], [3.3, 2.6])
    with pytest.warns(ScalingWarning, match="repeat another row exactly"):
        dup = replicate_means(pd.concat([df, df.iloc[:1]]))
    assert dup["n_seeds"].tolist() == [3, 2]


def test_best_hparams_is_the_argmin_of_the_means_by_enumeration():
    rng = np.random.default_rng(3)
    rows = []
    for N, D, lr, batch, seed in itertools.product([1e6, 4e6], [1e8, 4e8], [1e-3, 2e-3, 4e-3], [512, 2048],
                                                   [0, 1, 2]):
        rows.append(dict(N=N, D=D, D_grid=D, lr=lr, batch=batch, warmup=0.05, seed=seed,
                         loss=3 + 0.05 * rng.standard_normal()))
    df = pd.DataFrame(rows)
    best = best_hparams(df)
    assert len(best) == 4 and list(best[["N", "D_grid"]].itertuples(index=False)) == sorted(
        itertools.product([1e6, 4e6], [1e8, 4e8]))
    for row in best.itertuples():
        cell = df[(df["N"] == row.N) & (df["D_grid"] == row.D_grid)]
        means = {k: g["loss"].mean() for k, g in cell.groupby(["lr", "batch"])}
        (lr, batch), low = min(means.items(), key=lambda kv: kv[1])
        second = sorted(means.values())[1]
        assert (row.lr, row.batch) == (lr, batch)
        assert row.loss == pytest.approx(low) and row.gap == pytest.approx(second - low)
        assert row.n_seeds == 3 and row.n_settings == 6
        assert row.loss_sd == pytest.approx(cell[(cell["lr"] == lr) & (cell["batch"] == batch)]["loss"].std())
    # the best seed alone would pick another setting somewhere: the mean is what decides
    single = df.loc[df.groupby(["N", "D_grid"])["loss"].idxmin()]
    assert list(single[["lr", "batch"]].itertuples(index=False)) != list(best[["lr", "batch"]].itertuples(index=False))


def test_a_best_setting_at_the_end_of_its_axis_is_named():
    from scaling.data import settings_at_edge

    rows = [dict(N=N, D=1e8, D_grid=1e8, lr=lr, batch=512, seed=0, loss=3 - (lr if N == 1e6 else -abs(lr - 2e-3)))
            for N in (1e6, 4e6) for lr in (1e-3, 2e-3, 4e-3)]
    df = pd.DataFrame(rows)
    notes = settings_at_edge(df, best_hparams(df))
    # N=1e6: loss falls with lr to the largest tried; N=4e6: best in the middle; batch: one value, no axis
    assert notes == ["in 1 of 2 cell(s) the best lr is the largest tried (0.004): the optimum may lie beyond the "
                     "grid; extend grid.lr"]
    two = df[df["lr"] != 2e-3]  # two values: an end is all there is, nothing to say
    assert settings_at_edge(two, best_hparams(two)) == []
    # a cell whose runs have not finished (no loss) is not judged, and does not break the others
    partial = pd.concat([df, df.assign(D=4e8, D_grid=4e8, loss=np.nan)], ignore_index=True)
    assert settings_at_edge(partial, best_hparams(partial)) == notes


def test_sweep_export_best_hparams_and_the_table_fits_the_hparams_law(tmp_path, capsys):
    spec = toy_spec(name="toyhp", model={"sizes": [20000, 80000, 300000], "seq_len": 64}, seeds=[0, 1],
                    grid={"tokens": [200000, 800000], "lr": [1e-3, 3e-3], "batch_tokens": [1024, 4096]})
    spec.pop("batch")
    run_sweep(spec, root=tmp_path, workers=2, progress=False)
    out = tmp_path / "runs.csv"
    assert main(["sweep", "export", "toyhp", "--out", str(out), "--root", str(tmp_path), "--best-hparams"]) == 0
    printed = capsys.readouterr().out
    runs = pd.read_csv(out)
    assert len(runs) == 3 * 2 * 2 * 2 * 2 and {"lr", "batch", "warmup", "D_grid", "seed"} <= set(runs.columns)
    assert set(runs["lr"]) == {1e-3, 3e-3} and set(runs["batch"]) == {1024, 4096}
    best = pd.read_csv(tmp_path / "best_hparams.csv")
    pd.testing.assert_frame_equal(best, best_hparams(runs), check_dtype=False)
    assert len(best) == 6 and (best["n_settings"] == 4).all() and (best["n_seeds"] == 2).all()
    assert "best setting per (N, D) cell" in printed and "wrote" in printed
    # the export fits as it is: N, D, lr, batch, loss; seeds averaged, each cell at the grid's D
    code = main(["fit", str(out), "--law", "hparams", "--bootstrap", "0", "--json"])
    captured = capsys.readouterr()
    assert code == 0 and set(json.loads(captured.out)["params"]) == {"eta0", "eta_N", "eta_D", "B0", "B_D"}
    assert "averaged 2 seeds per cell (48 runs -> 24 cells)" in captured.err
    assert "fitted at the grid's D (column D_grid)" in captured.err


def test_fit_averages_replicated_seeds_unless_told_not_to(tmp_path, capsys):
    rng = np.random.default_rng(0)
    truth = ChinchillaLaw.hoffmann2022()
    rows = []
    for N, D in itertools.product(np.logspace(7, 9, 5), np.logspace(9, 11, 5)):
        for seed in range(3):
            loss = float(truth.predict(N=N, D=D)[0]) * np.exp(0.004 * rng.standard_normal())
            rows.append(dict(N=N, D=D, seed=seed, loss=loss))
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(path), "--bootstrap", "0", "--json"]) == 0
        out = capsys.readouterr()
        assert json.loads(out.out)["n_points"] == 25
        assert "averaged 3 seeds per cell (75 runs -> 25 cells)" in out.err
        assert "seed-to-seed sd of the loss" in out.err and "the fit's residuals on the means" in out.err
        assert main(["fit", str(path), "--bootstrap", "0", "--json", "--no-average-seeds"]) == 0
        out = capsys.readouterr()
    assert json.loads(out.out)["n_points"] == 75 and "averaged" not in out.err
    law = scaling.fit(replicate_means(pd.read_csv(path)), bootstrap=0)
    assert law.params_["alpha"] == pytest.approx(truth.params_["alpha"], rel=0.05)


# ------------------------------------------------------------------ review fixes (issue #12 follow-up)
ONE = dict(name="one", model={"sizes": [20000], "seq_len": 64}, grid={"tokens": [200000]})


@pytest.mark.parametrize("axis", [{"grid": {"lr": [1e-3, 3e-3]}}, {"grid": {"warmup": [0, 0.05]}},
                                  {"batch": {"tokens_per_step": [1024, 4096]}}])
def test_adding_an_axis_through_the_sweeps_own_value_does_not_train_that_run_again(tmp_path, axis):
    from scaling.sweep import export

    first = toy_spec(**ONE, seeds=[0, 1])
    run_sweep(first, root=tmp_path, workers=1, progress=False)
    trained = sorted(p.name for p in (tmp_path / "one" / "runs").iterdir())
    assert len(trained) == 2
    second = toy_spec(first, grid={**first["grid"], **axis.get("grid", {})})
    if "batch" in axis:
        second["batch"] = axis["batch"]
    table = run_sweep(second, root=tmp_path, workers=1, progress=False)
    # the axis's value equal to the sweep's (3e-3, 0.05, 4096) is the runs the store has, under their ids
    assert len(table) == 4 and set(trained) <= set(table["run_id"])
    assert len(list((tmp_path / "one" / "runs").iterdir())) == 4
    assert (table["status"] == "done").all()
    runs, _ = export("one", tmp_path)
    assert replicate_means(runs, by=["N", "D", "lr", "batch", "warmup"])["n_seeds"].tolist() == [2, 2]
    # run again: nothing to do
    assert len(run_sweep(second, root=tmp_path, workers=1, progress=False)) == 4


def test_duplicate_rows_of_one_seed_are_not_replicates():
    df = pd.DataFrame({"run_id": ["a", "b", "c"], "N": [1e6] * 3, "D": [1e8] * 3, "seed": [0, 0, 1],
                       "loss": [3.0, 3.0, 3.4]})
    m = replicate_means(df)
    assert m["n_seeds"].tolist() == [2]
    np.testing.assert_allclose(m["loss"], [3.2])  # each seed once: (3.0 + 3.4) / 2
    same = replicate_means(df.iloc[:2])
    assert same["n_seeds"].tolist() == [1] and same["loss_sd"].isna().all()  # not sd 0 over "2 seeds"


def test_best_hparams_csv_fits_the_hparams_law_as_it_is(tmp_path, capsys):
    from test_law_contract import hparam_runs

    df = hparam_runs(noise=0.0).assign(seed=0)
    df = df.assign(D_grid=df["D"], warmup=0.05)
    path = tmp_path / "best_hparams.csv"
    best_hparams(df).to_csv(path, index=False)
    code = main(["fit", str(path), "--law", "hparams", "--bootstrap", "0", "--json"])
    assert code == 0 and set(json.loads(capsys.readouterr().out)["params"]) == {"eta0", "eta_N", "eta_D", "B0", "B_D"}


@pytest.mark.parametrize("lr,msg", [
    ({"base": 3e-3, "ref_width": 1, "exponent": 400}, r"optimizer.lr .* gives lr = inf for the shape .*d_model"),
    ({"base": 3e-3, "ref_width": 1, "exponent": 3}, r"optimizer.lr .* gives lr = 98\.3 for the shape"),
    ({"base": 3e-3, "ref_width": 1, "exponent": -400}, r"optimizer.lr .* gives lr = 0 for the shape"),
    (0, r"optimizer.lr must be a number > 0; got 0"),
])
def test_learning_rates_that_cannot_train_are_one_clear_error(tmp_path, lr, msg):
    with pytest.raises(SpecError, match=msg):
        run_sweep(shaped(optimizer={"lr": lr}), root=tmp_path / "sweeps", progress=False)
    assert not (tmp_path / "sweeps").exists()


def test_lr_from_a_relative_path_is_read_beside_the_yaml_file(tmp_path, monkeypatch):
    import yaml

    fit, _ = _hparams_fit(tmp_path)
    folder = tmp_path / "defs"
    folder.mkdir()
    (folder / "fit.json").write_text(fit.read_text())
    (folder / "s.yaml").write_text(yaml.safe_dump(toy_spec(optimizer={"lr": {"from": "fit.json"}})))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    spec = load_spec(folder / "s.yaml")
    assert spec["optimizer"]["lr"]["from"] == str((folder / "fit.json").resolve())
    # a dict has no folder: the current directory; missing in both: the error names what was tried
    (elsewhere / "cwd.json").write_text(fit.read_text())
    assert load_spec(toy_spec(optimizer={"lr": {"from": "cwd.json"}}))["optimizer"]["lr"]["from"] == str(
        (elsewhere / "cwd.json").resolve())
    (folder / "t.yaml").write_text(yaml.safe_dump(toy_spec(optimizer={"lr": {"from": "none.json"}})))
    with pytest.raises(SpecError, match=r"no such fit file .*defs/none.json \(nor .*elsewhere/none.json\)"):
        load_spec(folder / "t.yaml")


def _noisy_cells(rng, wall_time=False, jitter=0.0, nan=()):
    truth = ChinchillaLaw.hoffmann2022()
    rows = []
    for i, (N, D) in enumerate(itertools.product(np.logspace(7, 9, 5), np.logspace(9, 11, 5))):
        for seed in range(3):
            loss = float(truth.predict(N=N, D=D)[0]) * np.exp(0.004 * rng.standard_normal())
            row = dict(N=N, D=D * (1 + jitter * seed), seed=seed, loss=np.nan if (i, seed) in nan else loss)
            if wall_time:
                row["wall_time"] = rng.uniform(10, 20)
            rows.append(row)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("kind", ["wall_time", "jitter"])
def test_fit_averages_seeds_despite_per_run_columns_and_float_noise(tmp_path, capsys, kind):
    df = _noisy_cells(np.random.default_rng(0), wall_time=kind == "wall_time", jitter=1e-12 if kind == "jitter" else 0)
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(path), "--bootstrap", "0", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n_points"] == 25 and "averaged 3 seeds per cell (75 runs -> 25 cells)" in out.err


def test_fit_says_why_seeds_were_not_averaged(tmp_path, capsys):
    df = _noisy_cells(np.random.default_rng(0), jitter=1e-3)  # each seed trained its own D
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(path), "--bootstrap", "0", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n_points"] == 75
    assert "not averaged over seeds" in out.err and "column D" in out.err


def test_fit_leaves_diverged_seeds_out_of_a_cells_mean_and_names_an_all_diverged_cell(tmp_path, capsys):
    df = _noisy_cells(np.random.default_rng(0), nan={(0, 1), (3, 0), (3, 2)})
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(path), "--bootstrap", "0", "--json"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n_points"] == 25
    assert "averaged 1-3 seeds per cell (75 runs -> 25 cells)" in out.err
    assert "3 run(s) with a NaN or infinite loss (diverged or failed) left out" in out.err
    every = _noisy_cells(np.random.default_rng(0), nan={(4, 0), (4, 1), (4, 2)})
    every.to_csv(path, index=False)
    assert main(["fit", str(path), "--bootstrap", "0"]) != 0
    assert re.search(r"1 cell\(s\) have no finite loss in any seed: N=1e\+07, D=1e\+11 \(rows 12, 13, 14 of the "
                     r"table\), counting the table's rows from 0", capsys.readouterr().err)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(path), "--bootstrap", "0", "--json", "--dropna"]) == 0
    out = capsys.readouterr()
    assert json.loads(out.out)["n_points"] == 24 and "left out 1 cell(s) where every seed diverged" in out.err
    # --no-average-seeds: every run is a point, and NaN rows are refused as before, by the table's row
    assert main(["fit", str(path), "--bootstrap", "0", "--no-average-seeds"]) != 0
    assert re.search(r"3 row\(s\) have NaN or infinite values in \['loss'\] \(first at row 12, counting the "
                     r"table's rows from 0.*--dropna", capsys.readouterr().err)


@pytest.mark.parametrize("ratio,word", [(0.1, "below the seed noise"), (1.0, "about the seed noise"),
                                        (10.0, "10.0x the seed noise")])
def test_replicate_note_phrases_the_residuals_by_their_ratio_to_the_seed_noise(ratio, word):
    from types import SimpleNamespace

    from scaling.data import replicate_note

    means = pd.DataFrame({"loss": [3.0] * 4, "loss_sd": [0.03] * 4, "n_seeds": [4] * 4})  # se 0.5%
    r = np.array([-1, 1, -1, 1, 0.0]) * 0.005 * ratio / 1.4826
    law = SimpleNamespace(predicts_loss=True, residuals_=r)
    assert word in replicate_note(means, 16, law=law)


def test_best_hparams_printout_counts_settings_once_and_reports_ties(tmp_path, capsys):
    spec = toy_spec(**{**ONE, "grid": {"tokens": [200000], "lr": [1e-3, 3e-3]}})  # the toy's loss ignores lr: ties
    run_sweep(spec, root=tmp_path, workers=1, progress=False)
    out = tmp_path / "runs.csv"
    assert main(["sweep", "export", "one", "--out", str(out), "--root", str(tmp_path), "--best-hparams"]) == 0
    printed = capsys.readouterr().out
    assert "(2 settings a cell;" in printed and "2-2 settings" not in printed
    assert "tie" in printed and "N=16528, D=2e+05" in printed


def test_best_hparams_on_a_sweep_without_an_axis_says_so(tmp_path, capsys):
    run_sweep(toy_spec(**ONE), root=tmp_path, workers=1, progress=False)
    out = tmp_path / "runs.csv"
    assert main(["sweep", "export", "one", "--out", str(out), "--root", str(tmp_path), "--best-hparams"]) == 0
    printed = capsys.readouterr().out
    assert "no hyperparameter axis" in printed and "gap" not in printed
    assert not (tmp_path / "best_hparams.csv").exists()


def test_grid_batch_tokens_errors_name_grid_batch_tokens():
    spec = toy_spec(grid={"tokens": [200000], "batch_tokens": [0]})
    spec.pop("batch")
    with pytest.raises(SpecError, match=r"grid.batch_tokens must be a non-empty list of numbers > 0; got \[0\]"):
        load_spec(spec)
    spec["grid"]["batch_tokens"] = [1024, 1024.0]
    with pytest.raises(SpecError, match=r"grid.batch_tokens lists a value twice"):
        load_spec(spec)


def test_a_batch_rounded_to_whole_sequences_is_said_once():
    spec = toy_spec(batch={"tokens_per_step": 1000})
    with pytest.warns(ScalingWarning, match=r"batch.tokens_per_step 1000 is not a whole number of 64-token "
                                            r"sequences: its runs train 1024 tokens a step") as rec:
        runs = expand(load_spec(spec))
    assert len([w for w in rec if "whole number" in str(w.message)]) == 1
    assert {r["tokens_per_step"] for r in runs} == {1024}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        expand(load_spec(toy_spec()))  # 4096: whole sequences, nothing said
        expand(load_spec(toy_spec(batch={"tokens_per_step": "auto"})))  # the rule rounds by design


# ------------------------------------------------------------------ lr multipliers and a fitted batch rule
def test_lr_mult_scales_each_runs_own_learning_rate_and_is_recorded():
    rule = {"base": 3e-3, "ref_width": 64, "exponent": -1}
    runs = expand(load_spec(shaped(optimizer={"lr": rule}, grid={"tokens": [200000], "lr_mult": [0.5, 1, 2]})))
    by = {(r["d_model"], r["lr_mult"]): r["optimizer"]["lr"] for r in runs}
    assert len(runs) == 3 * 3
    for width in (32, 64, 128):
        for m in (0.5, 1, 2):
            assert by[(width, m)] == pytest.approx(3e-3 * 64 / width * m, rel=1e-12)
    assert len({r["run_id"] for r in runs}) == len(runs)
    assert all(f"-x{r['lr_mult']:g}-" in r["run_id"] for r in runs)
    # a plain optimizer.lr is multiplied too; a sweep without the axis keeps its ids (no lr_mult key)
    plain = expand(load_spec(toy_spec(grid={"lr_mult": [0.25, 4]})))
    assert sorted({r["optimizer"]["lr"] for r in plain}) == [7.5e-4, 1.2e-2]
    assert "lr_mult" not in expand(load_spec(toy_spec()))[0]


@pytest.mark.parametrize("grid, msg", [
    ({"lr_mult": [1, 1.0]}, r"grid.lr_mult lists a value twice"),
    ({"lr_mult": [0, 1]}, r"grid.lr_mult must be a non-empty list of numbers > 0"),
    ({"lr_mult": [1, 2], "lr": [1e-3]}, r"grid.lr \(absolute learning rates\) and grid.lr_mult .* give one"),
    ({"lr_mult": [5000]}, r"grid.lr_mult 5000 gives lr = 15 for N=\d+; a learning rate must be"),
])
def test_bad_lr_multipliers_are_one_clear_error(grid, msg):
    with pytest.raises(SpecError, match=msg):
        expand(load_spec(toy_spec(grid=grid)))


def test_batch_from_a_fitted_hparams_law_is_its_B_opt_in_whole_sequences(tmp_path):
    path, law = _hparams_fit(tmp_path)
    spec = load_spec(toy_spec(batch={"tokens_per_step": {"from": str(path)}}))
    assert spec["batch"]["tokens_per_step"]["fitted"]["params"] == pytest.approx(HP)
    assert load_spec(spec)["batch"] == spec["batch"]  # a loaded spec passed back in
    with pytest.warns(ScalingWarning, match=r"the batch sizes of this sweep extrapolate the fit"):
        runs = expand(spec)
    seq = 64
    for r in runs:
        B = HP["B0"] * r["D_grid"] ** HP["B_D"]
        assert r["tokens_per_step"] == max(seq, round(B / seq) * seq)
        assert r["steps"] == round(r["D_grid"] / r["tokens_per_step"])
    assert sorted({r["tokens_per_step"] for r in runs}) == [1664, 3520]  # 2 * D^0.55 at D = 2e5, 8e5
    with pytest.raises(SpecError, match=r"batch.tokens_per_step.from: no such fit file"):
        load_spec(toy_spec(batch={"tokens_per_step": {"from": str(tmp_path / "nope.json")}}))
    with pytest.raises(SpecError, match=r"batch.tokens_per_step is a number, a list .* got the keys \['base'\]"):
        load_spec(toy_spec(batch={"tokens_per_step": {"base": 3}}))


def test_batch_from_a_fit_in_sequences_is_multiplied_by_seq_len_and_a_wrong_unit_is_refused(tmp_path):
    # a fit whose batch column counted sequences (StepLaw's table does): B_opt = 0.02 D^0.55 sequences
    df = hparam_runs(noise=0.0, truth={**HP, "B0": 0.02})
    path = tmp_path / "seqs.json"
    HyperparameterLaw(bootstrap=0).fit(df).save(path)
    with pytest.warns(ScalingWarning, match=r"batch.tokens_per_step.from: the batch sizes of this sweep extrapolate "
                                            r"the fit .*D 2e\+05-8e\+05 \(fitted on 1e\+09-1e\+11\)"):
        runs = expand(load_spec(toy_spec(batch={"tokens_per_step": {"from": str(path), "unit": "sequences"}})))
    for r in runs:
        B = 0.02 * r["D_grid"] ** HP["B_D"] * 64  # sequences of 64 tokens
        assert r["tokens_per_step"] == max(64, round(B / 64) * 64)
    # read as tokens, the same fit asks for a fraction of one sequence: refused, not clamped to one sequence
    with pytest.raises(SpecError, match=r"predicts a batch of 16.\d+ tokens .*less than one sequence of 64\. Was "
                                        r"the fit's batch in sequences\? Say so with unit: sequences"):
        expand(load_spec(toy_spec(batch={"tokens_per_step": {"from": str(path)}})))
    with pytest.raises(SpecError, match=r"batch.tokens_per_step.unit is the unit of the fitted batch, one of "
                                        r"\['tokens', 'sequences'\]; got 'seqs'"):
        load_spec(toy_spec(batch={"tokens_per_step": {"from": str(path), "unit": "seqs"}}))


def test_yaml_reads_3e_minus_3_as_a_number_and_an_old_store_holding_text_is_not_a_change(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(toy_spec()) + "optimizer:\n  lr: 3e-3\n")
    spec = load_spec(path)
    assert spec["optimizer"]["lr"] == 0.003 and type(spec["optimizer"]["lr"]) is float
    runs = expand(spec)
    assert all(type(r["optimizer"]["lr"]) is float for r in runs)
    # a store written when PyYAML's 1.1 rules made it the text '3e-3': the same setting, not a change
    old = json.loads(json.dumps(spec))
    old["optimizer"]["lr"] = "3e-3"
    assert changed_settings(old, spec) == []
    old["optimizer"]["lr"] = "4e-3"
    assert changed_settings(old, spec) == ["optimizer.lr: '4e-3' -> 0.003"]
