"""Bad input and faults on the fitting side (issue #10): each case failed before its fix.

Items: 2 (a '#' inside CSV fields), 7 (negative exponents), 8 (edited fit files), 9 (allocate far
outside the fitted range), 10 (a typo'd size, duplicated rows), 11 (--out checked first), 12
(messages: negative bootstrap, huge ratios, delimiters, spaced column names), 13 (reports that
contradict themselves), 14 (a form that misses the data without replicates).
"""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.data import DATA_DIR, load_chinchilla, prepare, read_table
from scaling.errors import DataError, FitError, ScalingError, ScalingWarning
from scaling.laws import ChinchillaLaw, GaoBoN, Law

DATA = str(DATA_DIR / "chinchilla_besiroglu2024.csv")


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def law_runs(seed=0, noise=0.005, E=1.8, A=400.0, B=2000.0, alpha=0.34, beta=0.37):
    """An IsoFLOP grid from a known Chinchilla law (5 budgets x 9 sizes)."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in np.logspace(18, 21, 5):
        for N in np.logspace(np.log10(C) / 2 - 2.6, np.log10(C) / 2 - 0.6, 9):
            D = C / (6 * N)
            rows.append((N, D, (E + A / N**alpha + B / D**beta) * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["N", "D", "loss"])


def fit_quiet(law, df, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        result = law.fit(df, **kw)
    return result, [str(x.message) for x in w]


# ------------------------------------------------------------------ 2. '#' in CSV fields
def test_hash_inside_fields_is_data_not_a_comment(tmp_path, capsys):
    # Epoch's extraction carries hex colours: every row has a '#'
    src = load_chinchilla()
    df = pd.DataFrame({"x": np.arange(len(src)), "color": "#faebdd", "Model Size": src["N"],
                       "Training FLOP": src["C"], "hex_color": "#f8d1b8", "loss": src["loss"]})
    path = tmp_path / "epoch.csv"
    df.to_csv(path, index=False)
    back = read_table(path)
    assert len(back) == len(src) and (back["hex_color"] == "#f8d1b8").all()
    code, out, _ = run(capsys, "fit", path, "--columns", "N=Model Size,C=Training FLOP", "--bootstrap", "0",
                       "--drop-highest-loss", "5", "--json")
    assert code == 0 and json.loads(out)["n_points"] == 240


def test_a_note_with_a_hash_keeps_its_row(tmp_path):
    df = load_chinchilla()[["N", "D", "loss"]].head(30).copy()
    df["notes"] = ""
    df.loc[3, "notes"] = "rerun #2"
    path = tmp_path / "notes.csv"
    df.to_csv(path, index=False)
    back = prepare(path, ["N", "D", "loss"])
    assert len(back) == 30 and back.loc[3, "notes"] == "rerun #2"


def test_a_header_column_named_hash_and_header_comments(tmp_path):
    path = tmp_path / "hash_header.csv"
    path.write_text("#,N,D,loss\n1,1e8,1e9,3.0\n2,2e8,1e9,2.9\n3,4e8,2e9,2.8\n")
    back = read_table(path)
    assert list(back.columns) == ["#", "N", "D", "loss"] and len(back) == 3
    commented = tmp_path / "commented.csv"
    commented.write_text("# source: somewhere, 2024\n# second line\nN,D,loss\n1e8,1e9,3.0\n2e8,1e9,2.9\n")
    back = read_table(commented)
    assert list(back.columns) == ["N", "D", "loss"] and len(back) == 2
    assert len(read_table(DATA)) == 245  # the package's own data files keep their header comments


# ------------------------------------------------------------ 12. delimiters, spaced names
@pytest.mark.parametrize("sep,decimal", [("\t", "."), (";", "."), (";", ",")])
def test_a_csv_with_another_delimiter_is_read(tmp_path, sep, decimal):
    df = load_chinchilla()[["N", "D", "loss"]].head(20)
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False, sep=sep, decimal=decimal)
    back = prepare(path, ["N", "D", "loss"])
    np.testing.assert_allclose(back["loss"], df["loss"])


def test_column_names_with_spaces_can_be_mapped(tmp_path, capsys):
    df = load_chinchilla().head(60)
    path = tmp_path / "spaced.csv"
    path.write_text(" params , tokens ,  val loss \n"
                    + "".join(f"{n},{d},{l}\n" for n, d, l in zip(df["N"], df["D"], df["loss"])))
    code, out, err = run(capsys, "fit", path, "--columns", "N=params,D=tokens,loss=val loss", "--bootstrap", "0",
                         "--json")
    assert code == 0, err
    assert json.loads(out)["n_points"] == 60
    spaced = pd.DataFrame({" N ": df["N"], "D": df["D"], "loss": df["loss"]})  # a DataFrame in a notebook
    assert len(prepare(spaced, ["N", "D", "loss"], columns={"N": "N"})) == 60


def test_negative_bootstrap_is_refused_before_fitting(capsys):
    with pytest.raises(SystemExit) as exc:  # argparse's usage error, before any work
        main(["fit", DATA, "--bootstrap", "-5"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and "--bootstrap" in err and "0 or more" in err
    with pytest.raises(ValueError, match="bootstrap must be a whole number"):
        ChinchillaLaw(bootstrap=-5).fit(law_runs())


def test_extrapolation_warnings_never_print_a_300_digit_number():
    law, _ = fit_quiet(ChinchillaLaw(bootstrap=0, starts="coarse"), law_runs())
    with pytest.warns(ScalingWarning) as rec:
        law.predict(N=1e300, D=1e12)
    msg = " ".join(str(r.message) for r in rec)
    assert "beyond the largest N" in msg and len(msg) < 400 and "e+2" in msg


# ------------------------------------------------------------------ 7. negative exponents
def rising_runs():
    """Loss that rises with N (a mislabelled column, a broken sweep): the best free alpha is -0.2."""
    df = law_runs(noise=0.002)
    df["loss"] = 1.8 + 0.02 * df["N"] ** 0.2 + 2000 / df["D"] ** 0.37
    return df


def test_losses_that_rise_with_N_hit_the_default_bound_and_say_so():
    df = rising_runs()
    law, msgs = fit_quiet(ChinchillaLaw(bootstrap=50, starts="coarse"), df)
    assert law.params_["alpha"] >= 0
    assert any("show no fall of loss with N" in m for m in msgs)
    law.summary(), law.report()  # no complex number, no traceback
    assert law.compute_optimal(1e21)["N_opt_lo"].notna().all()


def test_an_exponent_on_its_default_bound_is_reported_and_has_no_allocation():
    df = law_runs(noise=0.002)
    df["loss"] = 1.8 + 0.02 * df["N"] ** 0.2 + 2000 / df["D"] ** 0.37
    law, msgs = fit_quiet(ChinchillaLaw(bootstrap=50, starts="coarse", fixed={"E": 1.8, "A": 0.02}), df)
    assert law.params_["alpha"] == 0.0
    assert any("alpha ended on its default bound" in m and "--bound alpha=-inf:inf" in m for m in msgs)
    s = law.summary()  # no complex number, no traceback
    assert s["compute_optimal"]["a"] is None and "not positive" in s["compute_optimal"]["note"]
    assert "(on a bound)" in law.report()
    with pytest.raises(FitError, match="exponents positive"):
        law.compute_optimal(1e21)
    # resamples at the bound give their limit, not an error
    assert law.allocation_exponent_intervals()["a"][1] == pytest.approx(1.0)


def test_the_bound_can_be_lifted_and_a_negative_exponent_never_reaches_a_complex_number():
    law, _ = fit_quiet(ChinchillaLaw(bootstrap=0, starts="coarse", bounds={"alpha": (None, None)}), rising_runs())
    assert law.params_["alpha"] < 0
    with pytest.raises(FitError, match="alpha = -"):
        law.compute_optimal(1e21)


def test_six_rows_and_flops_mapped_as_tokens_give_a_message_not_a_traceback(tmp_path, capsys):
    df = load_chinchilla()
    small = df.iloc[[0, 40, 80, 120, 160, 200]]
    path = tmp_path / "six.csv"
    small.to_csv(path, index=False)
    code, out, err = run(capsys, "fit", path, "--bootstrap", "0")
    assert code == 0 and "Traceback" not in err
    code, out, err = run(capsys, "fit", DATA, "--columns", "D=C", "--bootstrap", "0", "--json")
    assert code == 0 and "Traceback" not in err
    d = json.loads(out)
    assert d["params"]["alpha"] >= 0 and d["params"]["beta"] >= 0


# ----------------------------------------------------------------- 8. edited fit files
@pytest.fixture(scope="module")
def fit_dict(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    assert main(["fit", DATA, "--drop-highest-loss", "5", "--bootstrap", "100", "--out", str(path)]) == 0
    return json.loads(path.read_text())


@pytest.mark.parametrize("edit,expect", [
    (lambda d: d["params"].update(alpha=-0.5), "alpha = -0.5 lies outside its bounds"),
    (lambda d: d["params"].update(alpha=float("nan")), "alpha is nan, not a finite number"),
    (lambda d: d["params"].update(E=None), "E is None, not a finite number"),
    (lambda d: d["params"].pop("beta"), "missing ['beta']"),
    (lambda d: d.update(law="chinchila"), "unknown law 'chinchila'"),
    (lambda d: d["params"].update(A=-3.0), "A must be positive"),
    (lambda d: d["bootstrap"].update(params=[[1.0, 2.0]]), "bootstrap section does not match"),
])
def test_an_edited_fit_file_is_refused_naming_what_is_wrong(fit_dict, tmp_path, capsys, edit, expect):
    d = json.loads(json.dumps(fit_dict))
    edit(d)
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(d).replace("NaN", "NaN"))
    code, out, err = run(capsys, "predict", path, "--N", "1e9", "--D", "2e10")
    assert code == 2, (out, err)
    assert expect in err and "Traceback" not in err


def test_a_point_estimate_outside_its_stored_resamples_is_reported(fit_dict, tmp_path):
    d = json.loads(json.dumps(fit_dict))
    d["params"]["alpha"] = 0.6  # within bounds, but not what these resamples describe
    path = tmp_path / "edited.json"
    path.write_text(json.dumps(d))
    with pytest.warns(ScalingWarning, match=r"\['alpha'\] lie outside every one of the 100 bootstrap"):
        Law.load(path)


# ------------------------------------------------------- 9. allocate far outside the data
def test_allocate_far_outside_the_fitted_range_warns(tmp_path, capsys):
    path = tmp_path / "fit.json"
    assert main(["fit", DATA, "--drop-highest-loss", "5", "--bootstrap", "0", "--out", str(path)]) == 0
    capsys.readouterr()
    code, out, err = run(capsys, "allocate", path, "--compute", "1e30")
    assert code == 0 and "the allocation for C=1e+30 FLOPs puts N=" in err and "beyond the largest N fitted" in err
    code, out, err = run(capsys, "allocate", path, "--compute", "1e22")
    assert code == 0 and "beyond" not in err


# ---------------------------------------------------- 10. a typo'd size, duplicated rows
def test_a_size_ten_decades_from_the_rest_is_refused():
    df = law_runs()
    df.loc[7, "N"] = 1e300
    with pytest.raises(DataError, match=r"N = 1e\+300 \(row 7\) lies 2\d\d decades above every other N"):
        ChinchillaLaw(bootstrap=0).fit(df)


def test_a_size_far_from_the_rest_is_warned_about():
    df = law_runs()
    df.loc[7, "N"] = df["N"].max() * 1e8
    with pytest.warns(ScalingWarning, match="decades above every other N"):
        prepare(df, ["N", "D", "loss"])


def test_duplicated_rows_are_counted_once_so_intervals_stay_honest():
    df = law_runs()
    once, _ = fit_quiet(ChinchillaLaw(bootstrap=200, starts="coarse"), df)
    twice = ChinchillaLaw(bootstrap=200, starts="coarse")
    with pytest.warns(ScalingWarning, match="45 row\\(s\\) repeat another row exactly"):
        twice = twice.fit(pd.concat([df, df], ignore_index=True))
    assert twice.n_points_ == 45
    for k in once.params_:
        assert twice.ci_[k] == pytest.approx(once.ci_[k], rel=1e-9)
    # replicates are not copies: a seed column keeps them apart
    seeds = pd.concat([df.assign(seed=0), df.assign(seed=1)], ignore_index=True)
    assert len(prepare(seeds, ["N", "D", "loss"])) == 90


# ------------------------------------------------------------ 11. --out checked first
def test_fit_out_onto_a_directory_fails_before_the_fit(tmp_path, capsys, monkeypatch):
    import scaling.laws.base as base

    def no_fit(*a, **k):
        raise AssertionError("the fit ran although --out could not be written")

    monkeypatch.setattr(base.Law, "fit", no_fit)
    code, _, err = run(capsys, "fit", DATA, "--out", tmp_path)
    assert code == 2 and "is a directory" in err
    monkeypatch.undo()
    target = tmp_path / "new" / "deeper" / "fit.json"
    code, _, err = run(capsys, "fit", DATA, "--bootstrap", "0", "--out", target)
    assert code == 0 and target.exists()


# ---------------------------------------------------- 13. reports that contradict themselves
def test_an_interval_never_excludes_its_estimate():
    result, _ = fit_quiet(ChinchillaLaw(bootstrap=100, starts="coarse"), law_runs())
    from scaling.laws.result import FitResult, uncertainty

    # a result is frozen: build one from its state with the resamples of E all drifted below the
    # estimate (E heading to 0 along a flat direction) to reach the widening branch
    state = {k: getattr(result, k) for k in ("params_", "theta_", "fit_info_", "residuals_", "bootstrap_theta_",
                                              "objective_", "n_points_", "converged_")}
    i = result.param_names().index("E")
    state["bootstrap_theta_"][:, i] = (np.log(result.params_["E"]) - 1
                                       - np.abs(np.random.default_rng(0).normal(size=100)))
    with pytest.warns(ScalingWarning, match=r"resamples of \['E'\] all moved away from the estimate"):
        uncertainty(result.law, state)
    law = FitResult(result.law, state)
    lo, hi = law.ci_["E"]
    assert lo <= law.params_["E"] <= hi
    assert "not identified" in law.report()
    for k, ci in law.ci_.items():
        assert ci[0] <= law.params_[k] <= ci[1]


def test_a_handful_of_resamples_on_one_side_is_called_too_few_not_unidentified():
    result, _ = fit_quiet(ChinchillaLaw(bootstrap=4, starts="coarse"), law_runs())
    from scaling.laws.result import FitResult, uncertainty

    state = {k: getattr(result, k) for k in ("params_", "theta_", "fit_info_", "residuals_", "bootstrap_theta_",
                                              "objective_", "n_points_", "converged_")}
    state["fit_info_"] = dict(state["fit_info_"])
    i = result.param_names().index("E")
    state["bootstrap_theta_"][:, i] = np.log(result.params_["E"]) + np.array([0.1, 0.2, 0.3, 0.4])  # all above
    with pytest.warns(ScalingWarning, match=r"only 4 bootstrap resamples: too few for a 90% interval"):
        uncertainty(result.law, state)
    report = FitResult(result.law, state).report()
    assert "4 resamples are too few to tell" in report and "not identified: the resamples" not in report


def test_the_report_counts_resamples_that_failed():
    from scaling.laws.result import FitResult

    result, _ = fit_quiet(ChinchillaLaw(bootstrap=40, starts="coarse"), law_runs())
    state = {k: getattr(result, k) for k in ("params_", "theta_", "fit_info_", "residuals_", "bootstrap_theta_",
                                              "objective_", "n_points_", "converged_", "stderr_", "ci_")}
    state["bootstrap_theta_"] = state["bootstrap_theta_"][:38]  # as if 2 refits had failed
    assert "38 bootstrap resamples over runs (2 of 40 failed to fit and were left out)" in FitResult(result.law, state).report()
    assert "left out" not in result.report()


def test_gao_with_one_reward_model_size_says_the_slopes_are_not_estimated():
    rng = np.random.default_rng(0)
    d = np.repeat(np.linspace(0.2, 4.0, 20), 3)
    df = pd.DataFrame({"d": d, "rm_params": 5000, "gold": d * (0.9 - 0.3 * d) + 0.01 * rng.standard_normal(d.size)})
    with pytest.warns(ScalingWarning, match="one reward-model size .* cannot be estimated"):
        law = GaoBoN(bootstrap=100).fit(df)
    for k in ("alpha_slope", "beta_slope"):
        assert law.ci_[k] is None and law.stderr_[k] is None
    assert law.ci_["alpha"] is not None
    rep = law.report()
    assert rep.count("(not estimated)") == 2 and "[0, 0]" not in rep


# ----------------------------------------------- 14. a form that misses, without replicates
def kaplan_runs(seed, noise=0.002):
    """Kaplan et al.'s L(N, D) on an IsoFLOP grid: a form the Chinchilla law cannot follow exactly."""
    rng = np.random.default_rng(seed)
    rows = []
    for C in np.logspace(18, 21, 5):
        for N in np.logspace(np.log10(C) / 2 - 2.6, np.log10(C) / 2 - 0.6, 9):
            D = C / (6 * N)
            L = ((8.8e13 / N) ** (0.076 / 0.095) + 5.4e13 / D) ** 0.095
            rows.append((N, D, L * np.exp(noise * rng.standard_normal())))
    return pd.DataFrame(rows, columns=["N", "D", "loss"])


def test_profiles_that_curve_against_the_form_are_flagged_without_replicates():
    flagged = []
    for seed in range(5):
        _, msgs = fit_quiet(ChinchillaLaw(bootstrap=0, starts="coarse"), kaplan_runs(seed))
        flagged.append(any("residuals curve systematically along each compute budget" in m for m in msgs))
    assert all(flagged)


def test_the_right_form_is_not_flagged():
    false = 0
    for seed in range(20):
        _, msgs = fit_quiet(ChinchillaLaw(bootstrap=0, starts="coarse"), law_runs(seed, noise=0.002))
        false += any("curve systematically" in m or "trend with" in m for m in msgs)
    assert false == 0


# ------------------------------------------------- found by a newcomer review after the changes
def test_fixing_an_isoflop_exponent_keeps_each_allocation_on_its_budget():
    from scaling.laws import IsoFlopLaw

    runs = law_runs(noise=0.002)
    runs["C"] = 6 * runs["N"] * runs["D"]
    for fixed in ({"a": 0.5}, {"b": 0.4}):
        law, _ = fit_quiet(IsoFlopLaw(bootstrap=20, fixed=fixed), runs)
        co = law.compute_optimal([1e19, 1e23], interval=False)
        np.testing.assert_allclose(6 * co["N_opt"] * co["D_opt"], co["C"], rtol=1e-9)
        assert law.params_["a"] + law.params_["b"] == pytest.approx(1.0)
    with pytest.raises(ScalingError, match="a \\+ b = 1"):
        IsoFlopLaw(fixed={"a": 0.5, "b": 0.6})


def test_repeated_fix_and_bound_flags_add_up(capsys):
    code, out, _ = run(capsys, "fit", DATA, "--bootstrap", "0", "--fix", "E=1.8", "--fix", "A=400", "--json")
    assert code == 0 and json.loads(out)["params"]["E"] == pytest.approx(1.8) and json.loads(out)["params"]["A"] == pytest.approx(400)
    code, out, _ = run(capsys, "fit", DATA, "--bootstrap", "0", "--bound", "alpha=0.2:0.3", "--bound", "beta=0.2:0.3",
                       "--json")
    p = json.loads(out)["params"]
    assert code == 0 and p["alpha"] <= 0.3 + 1e-9 and p["beta"] <= 0.3 + 1e-9
    code, _, err = run(capsys, "fit", DATA, "--fix", "E=1.8", "--fix", "E=1.7")
    assert code == 2 and "more than once" in err


@pytest.mark.parametrize("kw,expect", [
    (dict(fixed={"alpha": 0.3, "beta": 0.4}, tie_exponents=True), "tied but fixed to different values"),
    (dict(fixed={"alpha": 0.3}, bounds={"beta": (0.5, 0.6)}, tie_exponents=True), "beta is tied to a fixed 0.3"),
    (dict(fixed={"E": 3.0}, bounds={"E": (1.0, 2.0)}), "fixed E = 3, outside the bounds"),
])
def test_contradictory_settings_are_refused(kw, expect):
    with pytest.raises(ScalingError, match=re.escape(expect)):
        ChinchillaLaw(**kw)


def test_more_inputs_that_gave_a_traceback(tmp_path, capsys):
    empty = tmp_path / "header_only.csv"
    empty.write_text("N,D,loss\n")
    code, _, err = run(capsys, "fit", empty)
    assert code == 2 and "no rows" in err
    edited = tmp_path / "range.json"
    assert main(["fit", DATA, "--bootstrap", "30", "--out", str(edited)]) == 0
    capsys.readouterr()
    d = json.loads(edited.read_text())
    d["data_range"]["N"] = "abc"
    edited.write_text(json.dumps(d))
    code, _, err = run(capsys, "predict", edited, "--N", "1e9", "--D", "1e10")
    assert code == 2 and "data_range" in err
    d = json.loads((tmp_path / "range.json").read_text())
    d.pop("data_range")
    d["bootstrap"]["params"] = d["bootstrap"]["params"][:1]
    edited.write_text(json.dumps(d))
    code, _, err = run(capsys, "predict", edited, "--N", "1e9", "--D", "1e10")
    assert code == 2 and "bootstrap section" in err
    with pytest.raises(ScalingError, match="max_d"):
        GaoBoN(max_d=-1)


def test_an_irreducible_loss_driven_to_zero_is_said_to_be_unidentified():
    # the package's own byte-level sweep: its losses (1.4 and up) show no floor, and the fit puts E at ~1e-6
    df = pd.read_csv(Path(DATA_DIR).parent.parent / "data" / "sweeps" / "cpu-chinchilla" / "runs.csv")
    _, msgs = fit_quiet(ChinchillaLaw(bootstrap=0), df)
    assert any("is driven to 0" in m and "not identified" in m for m in msgs)


def test_compare_says_why_an_approach_did_not_run_and_fails_when_none_did(tmp_path, capsys):
    df = law_runs()
    path = tmp_path / "runs.csv"
    df.to_csv(path, index=False)
    bad = tmp_path / "curves.csv"
    pd.DataFrame({"run": ["a"], "step": [1], "train_loss": [3.0]}).to_csv(bad, index=False)
    code, out, _ = run(capsys, "compare", path, "--curves", bad, "--compute", "1e21", "--bootstrap", "0")
    assert code == 0 and "not applicable: " in out and "no intervals" in out
    tiny = tmp_path / "tiny.csv"
    df.head(3).to_csv(tiny, index=False)
    code, out, err = run(capsys, "compare", tiny, "--curves", bad, "--compute", "1e21", "--bootstrap", "0")
    assert code == 2 and "no approach could run" in err


def test_a_plan_of_a_few_steps_is_one_line_not_a_numpy_error():
    from test_law_contract import curve_runs

    from scaling.laws import LossCurveLaw
    from scaling.plan import make_plan

    law, _ = fit_quiet(LossCurveLaw(bootstrap=0), curve_runs())
    with pytest.raises(DataError, match="optimizer step\\(s\\); a plan needs at least 10"):
        make_plan(law, N=1e6, tokens=10, tokens_per_step=4096)
    plan = make_plan(law, N=1e6, tokens=4096 * 200, tokens_per_step=4096)  # a real one still works
    assert plan["steps"] == 200 and len(plan["curve"]["loss"]) > 10


def test_a_stderr_set_by_a_few_extreme_resamples_is_flagged_and_a_normal_spread_is_not():
    from scaling.laws.result import HEAVY_TAIL_RATIO, FitResult, heavy_tailed, uncertainty

    rng = np.random.default_rng(0)
    bulk = rng.normal(size=(200, 2))
    assert heavy_tailed(bulk, ["x", "y"], dict(zip("xy", bulk.std(axis=0, ddof=1)))) == []
    tail = bulk.copy()
    tail[:4, 1] = 1e3  # 2% of the resamples run away: the sd becomes ~140, the bulk's half-width stays ~1
    sd = dict(zip("xy", tail.std(axis=0, ddof=1)))
    assert sd["y"] > 30 * HEAVY_TAIL_RATIO and heavy_tailed(tail, ["x", "y"], sd) == ["y"]

    result, _ = fit_quiet(ChinchillaLaw(bootstrap=100, starts="coarse"), law_runs())
    assert "long tail of the resamples" not in result.report()
    state = {k: getattr(result, k) for k in ("params_", "theta_", "fit_info_", "residuals_", "bootstrap_theta_",
                                              "objective_", "n_points_", "converged_")}
    state["fit_info_"] = dict(state["fit_info_"])
    i = result.param_names().index("B")
    state["bootstrap_theta_"] = state["bootstrap_theta_"].copy()
    state["bootstrap_theta_"][:3, i] += 8  # three resamples with B e^8 times the rest
    uncertainty(result.law, state)
    assert state["fit_info_"]["heavy_tailed"] == ["B"]
    line = next(ln for ln in FitResult(result.law, state).report().splitlines() if ln.strip().startswith("B "))
    assert "stderr set by a long tail of the resamples" in line


def test_a_nan_in_one_methods_rows_is_placed_by_its_row_in_the_file(tmp_path, capsys):
    rows = [{"method": m, "rm_params": p, "d": d, "gold": 0.1 * d - 0.01 * d * d, "proxy": 0.2 * d}
            for m in ("rl", "bon") for p in (1e6, 1e7) for d in (0.5, 1.0, 2.0, 3.0)]
    df = pd.DataFrame(rows)
    df.loc[13, "gold"] = np.nan  # the 6th bon row, row 13 of the file
    path = tmp_path / "overopt.csv"
    df.to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "gao-bon"]) == 2
    assert "first at row 13" in capsys.readouterr().err
