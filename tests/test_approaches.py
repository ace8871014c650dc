"""Approaches 1 and 2, the data-constrained law, compare, and their bad-input handling (issue #3)."""

import warnings

import numpy as np
import pandas as pd
import pytest

from scaling.compare import compare
from scaling.curves import prepare_curves
from scaling.data import DATA_DIR, read_table
from scaling.errors import DataError, FitError, ScalingWarning
from scaling.fitting.optimize import RobustObjective, newton_lm
from scaling.laws import ChinchillaLaw, DataConstrainedLaw, EnvelopeLaw, IsoFlopLaw
from test_law_contract import CHIN, chinchilla_allocation_truth, curves, isoflop_runs


# ------------------------------------------------------------------ Approach 2
def test_isoflop_recovers_the_exponent_and_budget_optima():
    law = IsoFlopLaw(bootstrap=100).fit(isoflop_runs())
    truth = chinchilla_allocation_truth()
    assert law.params_["a"] == pytest.approx(truth["a"], abs=0.01)
    assert law.params_["b"] == pytest.approx(truth["b"], abs=0.01)
    chin = ChinchillaLaw.from_params(**CHIN)
    ok = law.profiles_[law.profiles_["status"] == "ok"]
    np.testing.assert_allclose(ok["N_opt"], chin.compute_optimal(ok["C"].to_numpy())["N_opt"], rtol=0.1)
    lo, hi = law.ci_["a"]
    assert lo < law.params_["a"] < hi


def test_isoflop_rejects_bad_budgets_and_uses_the_rest():
    df = isoflop_runs()
    budgets = np.sort(df["C"].unique())
    two_sizes = df[df["C"] == budgets[0]].iloc[:2]  # fewer than three sizes
    one_sided = df[df["C"] == budgets[1]]
    one_sided = one_sided[one_sided["N"] < one_sided["N"].median()]  # minimum beyond the largest size
    rest = df[df["C"] > budgets[1]]
    with pytest.warns(ScalingWarning) as rec:
        law = IsoFlopLaw(bootstrap=0).fit(pd.concat([two_sizes, one_sided, rest]))
    msg = " ".join(str(w.message) for w in rec)
    assert "only 2 model size(s)" in msg and "above the largest size sampled" in msg
    assert (law.profiles_["status"] == "ok").sum() == len(budgets) - 2
    assert law.params_["a"] == pytest.approx(chinchilla_allocation_truth()["a"], abs=0.015)


def test_isoflop_with_too_few_budgets_fails_clearly():
    df = isoflop_runs()
    one = df[df["C"] == df["C"].max()]
    with pytest.raises(FitError, match="only 1 usable compute budget"):
        IsoFlopLaw(bootstrap=0).fit(one)


def test_isoflop_budget_column_and_loose_C():
    df = isoflop_runs()
    df["budget"] = df["C"]
    df["C"] = df["C"] * np.exp(np.random.default_rng(0).uniform(-0.02, 0.02, len(df)))  # rounding in N
    df = df.drop(columns=["D"])
    law = IsoFlopLaw(bootstrap=0).fit(df)
    assert law.fit_info_["n_budgets"] == 6


# ------------------------------------------------------------------ Approach 1
def test_envelope_recovers_the_exponent():
    law = EnvelopeLaw(bootstrap=50).fit(curves())
    assert law.params_["a"] == pytest.approx(chinchilla_allocation_truth()["a"], abs=0.03)


def test_curves_bad_input_drops_only_the_bad_runs():
    df = curves()
    single = pd.DataFrame([dict(run="lonely", N=5e7, tokens=1e9, loss=4.0, step=0)])
    backwards = df[df["run"] == "r3"].copy()
    backwards["run"] = "restarted"
    backwards["tokens"] = backwards["tokens"].to_numpy()[::-1]
    dup = df[df["run"] == "r4"].iloc[:5].copy()
    broken = pd.concat([df, single, backwards, dup])
    with pytest.warns(ScalingWarning) as rec:
        clean = prepare_curves(broken)
    msg = " ".join(str(w.message) for w in rec)
    assert "'lonely': a single point" in msg
    assert "'restarted': tokens decrease" in msg
    assert "'r4': 5 duplicated step(s)" in msg
    assert set(clean["run"]) == set(df["run"])
    assert len(clean) == len(df)


def test_curves_missing_columns():
    with pytest.raises(DataError, match="missing column.*tokens"):
        prepare_curves(curves().drop(columns=["tokens"]))


def test_envelope_does_not_interpolate_across_gaps():
    df = curves()
    law = EnvelopeLaw(bootstrap=0, max_gap=4.0)
    full = law._optima(law._prepare_data(df))
    gappy = df[~((df["run"] == "r6") & (df["tokens"] > 1e9) & (df["tokens"] < 1e11))]  # 100x gap mid-curve
    cut = law._optima(law._prepare_data(gappy))
    assert (cut["n_runs"] <= full["n_runs"]).all() and (cut["n_runs"] < full["n_runs"]).any()


# ------------------------------------------------------------ data-constrained
@pytest.fixture(scope="module")
def c4():
    return read_table(DATA_DIR / "muennighoff2023_c4.csv")


def _stage2_objective(df):
    law = DataConstrainedLaw(base=DataConstrainedLaw.muennighoff2023_base())
    X = {c: df[c].to_numpy(float) for c in law.inputs}
    model = law._stage2_model(DataConstrainedLaw.muennighoff2023_base().theta_, X)
    return RobustObjective(model, np.log(df["loss"].to_numpy(float)))


def test_published_parameters_reproduce_the_papers_objective(c4):
    # the notebook's fit reports a Huber sum of 0.015825936 on its 182 runs at R_D* 15.388, R_N* 5.310
    obj = _stage2_objective(c4[c4["paper_fit"]])
    assert c4["paper_fit"].sum() == 182
    f = obj.value(np.log([[15.387756, 5.309743]]), np.arange(1))[0]
    assert f == pytest.approx(0.015825936, rel=1e-5)


def test_published_repetition_parameters_are_a_local_optimum_of_our_fit(c4):
    obj = _stage2_objective(c4[c4["paper_fit"]])
    res = newton_lm(obj, np.log([[15.387756, 5.309743]]))
    R_D, R_N = np.exp(res.x[0])
    assert R_D == pytest.approx(15.39, rel=0.01) and R_N == pytest.approx(5.31, rel=0.01)


def test_global_fit_is_at_least_as_good_and_says_it_is_weakly_identified(c4):
    with pytest.warns(ScalingWarning, match="R_D_star.*weakly identified"):
        law = DataConstrainedLaw(base=DataConstrainedLaw.muennighoff2023_base(), bootstrap=60).fit(c4[c4["paper_fit"]])
    assert law.objective_ <= 0.015825936 * (1 + 1e-6)
    for k in ("E", "A", "B", "alpha", "beta"):  # held at the paper's base law
        assert law.params_[k] == pytest.approx(DataConstrainedLaw.muennighoff2023_base().params_[k])


def test_published_allocation_example():
    # 1e22 FLOPs with 25B unique tokens -> about 7.0B parameters on about 237B tokens
    co = DataConstrainedLaw.muennighoff2023().compute_optimal(1e22, U=25e9)
    assert co["N_opt"][0] == pytest.approx(7.0e9, rel=0.01)
    assert co["D_opt"][0] == pytest.approx(237e9, rel=0.01)
    brute = np.logspace(9, 10.5, 20001)
    L = DataConstrainedLaw.muennighoff2023().predict(N=brute, D=1e22 / (6 * brute), U=np.full(brute.size, 25e9))
    assert co["N_opt"][0] == pytest.approx(brute[np.argmin(L)], rel=1e-3)


def test_repetition_is_worth_less_than_new_data():
    law = DataConstrainedLaw.muennighoff2023()
    fresh = law.predict(N=1e9, D=100e9, U=100e9)
    repeated = law.predict(N=1e9, D=100e9, U=25e9)  # 4 epochs
    assert repeated > fresh
    assert repeated - fresh < 0.05 * fresh  # a few epochs cost little (the paper's headline)


def test_unique_tokens_above_tokens_is_refused(c4):
    bad = c4.copy()
    bad.loc[0, "U"] = bad.loc[0, "D"] * 2
    with pytest.raises(DataError, match="U <= D"):
        DataConstrainedLaw(bootstrap=0).fit(bad)


# --------------------------------------------------------------------- compare
def test_compare_three_approaches():
    table = compare(isoflop_runs(), compute=1e22, curves=curves(), bootstrap=30)
    assert list(table["approach"].str[0]) == ["1", "2", "3"]
    a = chinchilla_allocation_truth()["a"]
    assert np.allclose(table["a"], a, atol=0.03)
    assert all(lo <= hi for lo, hi in table["a_ci"])
    # the intervals come from different resampling, and the table says so
    over = dict(zip(table["approach"].str[0], table["interval_over"]))
    assert over["2"].startswith("residuals of the per-budget parabolas") and over["3"] == "runs"
    from scaling.compare import format_comparison

    text = format_comparison(table, 1e22, 0.9)
    assert "bootstraps of different kinds" in text and "2: IsoFLOP profiles: residuals" in text


def test_compare_says_why_an_approach_does_not_apply():
    runs = ChinchillaLaw.from_params(**CHIN)
    df = isoflop_runs()
    df = df[df["C"] == df["C"].max()]  # one budget: Approach 2 cannot run
    table = compare(df, compute=1e22, bootstrap=0)
    note = table.set_index("approach").loc["2: IsoFLOP profiles", "note"]
    assert note.startswith("not applicable") and "usable compute budget" in note


# ------------------------------------------------------------------ curve law
def test_curve_law_recovers_known_parameters_across_schedules():
    from scaling.laws import LossCurveLaw
    from test_law_contract import CURVE, curve_runs

    law = LossCurveLaw(bootstrap=0).fit(curve_runs())
    for k, v in CURVE.items():
        assert law.params_[k] == pytest.approx(v, rel=0.05), k


def test_schedule_areas():
    from scaling.schedules import areas, schedule

    lr = schedule(100, {"lr": 1.0}, {"type": "constant", "warmup": 0})
    S1, S2 = areas(lr, 10)
    assert S1[-1] == pytest.approx(1000) and S2[-1] == 0
    lr = schedule(100, {"lr": 2.0}, {"type": "wsd", "warmup": 10, "decay_frac": 0.2, "final_lr_frac": 0.0})
    S1, S2 = areas(lr, 1, lam=0.0)  # no momentum: S2 is the total drop so far, in units of the peak
    assert S2[79] == 0 and S2[-1] == pytest.approx(1.0)
    assert S1[-1] == pytest.approx(lr.sum() / 2.0)
