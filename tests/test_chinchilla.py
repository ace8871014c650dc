"""Chinchilla Approach 3 against published numbers and exact checks."""

import numpy as np
import pandas as pd
import pytest

from scaling.fitting.bootstrap import resample_weights
from scaling.laws import ChinchillaLaw
from scaling.synthetic import sample_runs


def test_reproduces_besiroglu_best_grid_point(chinchilla_fit):
    # Besiroglu et al. 2024, full 4,500-start grid on the 240 kept rows:
    # A 477.8, B 2143, E 1.8172, alpha 0.3473, beta 0.3672, Huber sum 1.01827e-3
    p = chinchilla_fit.params_
    assert p["A"] == pytest.approx(477.8, rel=2e-3)
    assert p["B"] == pytest.approx(2143, rel=2e-3)
    assert p["E"] == pytest.approx(1.8172, abs=2e-4)
    assert p["alpha"] == pytest.approx(0.3473, abs=2e-4)
    assert p["beta"] == pytest.approx(0.3672, abs=2e-4)
    assert chinchilla_fit.objective_ == pytest.approx(1.01827e-3, rel=1e-5)
    assert chinchilla_fit.converged_
    assert chinchilla_fit.fit_info_["n_starts"] == 4500


def test_allocation_exponent_of_that_fit(chinchilla_fit):
    co = chinchilla_fit.compute_optimal(1e21).iloc[0]  # one row per budget
    assert co["a"] == pytest.approx(0.513, abs=1e-3)
    assert co["a"] + co["b"] == pytest.approx(1.0)


def test_bootstrap_close_to_besiroglu_standard_errors(chinchilla_fit):
    # their bootstrap standard errors: A 124.58, B 1293.23, E 0.03, alpha 0.02, beta 0.02
    se = chinchilla_fit.stderr_
    assert 90 < se["A"] < 160
    assert 900 < se["B"] < 1800
    assert 0.015 < se["E"] < 0.04
    assert 0.01 < se["alpha"] < 0.025
    assert 0.01 < se["beta"] < 0.03


def test_pruning_does_not_lose_the_optimum(chinchilla_df, chinchilla_fit):
    full = ChinchillaLaw(bootstrap=0, prune=False).fit(chinchilla_df)
    assert full.fit_info_["n_pruned"] == 0
    assert chinchilla_fit.objective_ == pytest.approx(full.objective_, rel=1e-9)


@pytest.mark.parametrize("which", ["synthetic-small-E", "muennighoff-single-epoch"])
def test_pruning_keeps_the_optimum_on_other_data(which):
    if which == "synthetic-small-E":
        df = sample_runs(ChinchillaLaw.from_params(E=0.4, A=60.0, B=3000.0, alpha=0.25, beta=0.4),
                         {"N": np.logspace(5, 8, 5), "D": np.logspace(7, 10, 6)}, noise=0.02, seed=5)
    else:
        from scaling.data import DATA_DIR, read_table

        c4 = read_table(DATA_DIR / "muennighoff2023_c4.csv")
        df = c4[c4["D"] <= c4["U"]]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pruned = ChinchillaLaw(bootstrap=0).fit(df)
        full = ChinchillaLaw(bootstrap=0, prune=False).fit(df)
    assert pruned.objective_ == pytest.approx(full.objective_, rel=1e-9)


def test_warm_started_bootstrap_equals_independent_full_grid_fits(chinchilla_df):
    # Each bootstrap refit starts at the full-data optimum; an independent 4,500-start
    # fit of the same resample (rows repeated by their counts) must land on the same optimum.
    law = ChinchillaLaw(bootstrap=3, seed=7).fit(chinchilla_df)
    W = resample_weights(len(chinchilla_df), 3, 7)
    for b in range(3):
        resample = chinchilla_df.loc[np.repeat(np.arange(len(chinchilla_df)), W[b].astype(int))]
        resample = resample.assign(draw=np.arange(len(resample)))  # each draw a run of its own, not a copy
        indep = ChinchillaLaw(bootstrap=0).fit(resample)
        boot = law.bootstrap_params().iloc[b]
        for k in ("E", "alpha", "beta"):
            assert boot[k] == pytest.approx(indep.params_[k], rel=1e-4)


TRUTH = dict(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.30)
GRID = {"N": np.logspace(7, 10, 7), "D": np.logspace(9, 12, 7)}


def test_recovers_known_parameters():
    df = sample_runs(ChinchillaLaw.from_params(**TRUTH), GRID, noise=0.003, seed=1)
    law = ChinchillaLaw(bootstrap=300, level=0.99).fit(df)
    for k, v in TRUTH.items():
        lo, hi = law.ci_[k]
        assert lo <= v <= hi, (k, v, law.ci_[k])
    assert law.params_["alpha"] == pytest.approx(0.33, abs=0.02)
    assert law.params_["beta"] == pytest.approx(0.30, abs=0.02)
    assert law.params_["E"] == pytest.approx(1.7, abs=0.03)


def test_tied_exponents_and_fixed_parameters():
    truth = dict(E=1.8, A=300.0, B=900.0, alpha=0.31, beta=0.31)
    df = sample_runs(ChinchillaLaw.from_params(**truth), GRID, noise=0.002, seed=2)
    tied = ChinchillaLaw(tie_exponents=True, bootstrap=0).fit(df)
    assert tied.params_["alpha"] == tied.params_["beta"]
    assert tied.params_["alpha"] == pytest.approx(0.31, abs=0.01)
    assert tied.fit_info_["free"] == ["E", "A", "B", "alpha=beta"]
    fixed = ChinchillaLaw(fixed={"E": 1.8}, bootstrap=0).fit(df)
    assert fixed.params_["E"] == 1.8
    assert fixed.params_["alpha"] == pytest.approx(0.31, abs=0.01)


def test_lmfit_parameters_express_fixed_bounds_and_ties():
    lmfit = pytest.importorskip("lmfit")
    truth = dict(E=1.8, A=300.0, B=900.0, alpha=0.31, beta=0.31)
    df = sample_runs(ChinchillaLaw.from_params(**truth), GRID, noise=0.002, seed=3)
    params = lmfit.Parameters()
    params.add("E", value=1.8, vary=False)
    params.add("A", value=100, min=1)
    params.add("B", value=100, min=1)
    params.add("alpha", value=0.3, min=0.0, max=1.0)
    params.add("beta", expr="alpha")
    law = ChinchillaLaw(params=params, bootstrap=0).fit(df)
    assert law.params_["E"] == 1.8
    assert law.params_["beta"] == law.params_["alpha"]
    assert law.params_["alpha"] == pytest.approx(0.31, abs=0.01)


def test_bound_hit_is_reported():
    df = sample_runs(ChinchillaLaw.from_params(**TRUTH), GRID, noise=0.003, seed=1)
    with pytest.warns(UserWarning, match="ended on a bound"):
        ChinchillaLaw(bounds={"alpha": (0.0, 0.25)}, bootstrap=0).fit(df)


def test_closed_form_allocation_matches_brute_force_minimum():
    law = ChinchillaLaw.hoffmann2022()
    for C in (1e20, 1e23, 1e26):
        N = np.logspace(6, 14, 400001)
        L = law.predict(N=N, D=C / (6 * N))
        co = law.compute_optimal(C)
        assert co["N_opt"][0] == pytest.approx(N[np.argmin(L)], rel=1e-3)
        assert co["loss"][0] == pytest.approx(L.min(), rel=1e-9)


def test_other_flop_models():
    law = ChinchillaLaw.hoffmann2022()
    k8 = law.compute_optimal(1e23, flops=8.0)
    numeric = law.compute_optimal(1e23, flops=lambda N, D: 8.0 * N * D)
    assert numeric["N_opt"][0] == pytest.approx(k8["N_opt"][0], rel=1e-4)
    # an attention term makes each token dearer, so the optimum trains on fewer tokens
    att = law.compute_optimal(1e23, flops=lambda N, D: 6 * N * D + 6 * 40 * 2048 * 5120 * D)
    assert att["D_opt"][0] < law.compute_optimal(1e23)["D_opt"][0]


def test_published_parameter_sets():
    h = ChinchillaLaw.hoffmann2022()
    assert h.params_ == {"E": 1.69, "A": 406.4, "B": 410.7, "alpha": 0.34, "beta": 0.28}
    # Hoffmann et al. Table 2, Approach 3: a = 0.46, b = 0.54 (from the unrounded exponents)
    co = ChinchillaLaw.hoffmann2022(rounded=False).compute_optimal(1e21).iloc[0]
    assert round(co["a"], 2) == 0.46 and round(co["b"], 2) == 0.54
    assert ChinchillaLaw.besiroglu2024().compute_optimal(1.0)["a"][0] == pytest.approx(0.513, abs=1e-3)


def test_prediction_interval_covers_new_runs_more_than_mean_band(chinchilla_fit):
    lo_m, hi_m = chinchilla_fit.predict_interval(N=1e9, D=2e10, kind="mean")
    lo_p, hi_p = chinchilla_fit.predict_interval(N=1e9, D=2e10)
    assert lo_p < lo_m < hi_m < hi_p


def test_json_round_trip(chinchilla_fit, tmp_path):
    path = tmp_path / "fit.json"
    chinchilla_fit.save(path)
    back = ChinchillaLaw.load(path)
    assert back.params_ == chinchilla_fit.params_
    X = dict(N=[1e9, 7e10], D=[2e10, 1.4e12])
    np.testing.assert_allclose(back.predict(**X), chinchilla_fit.predict(**X))
    for a, b in zip(back.predict_interval(**X), chinchilla_fit.predict_interval(**X)):
        np.testing.assert_allclose(a, b, rtol=1e-9)
    for k, ci in chinchilla_fit.ci_.items():
        assert back.ci_[k] == pytest.approx(ci, rel=1e-9)
