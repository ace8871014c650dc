"""The samples-per-prompt law of RLHF (issue #14; Hou et al. 2024): R(k) = R_inf - c k^-gamma, k90, backtest."""

import json
import warnings

import numpy as np
import pytest

from scaling.errors import DataError, SettingsError
from scaling.laws import SamplesPerPromptLaw, get_law
from scaling.laws.rlhf import backtest_samples, samples_truth_runs

TRUTH = dict(R_inf=1.2, c=0.8, gamma=0.7)


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


# the third saturates slowly with a small gain (0.2 against noise 0.01): gamma is pinned less tightly
@pytest.mark.parametrize("truth, tol", [(TRUTH, 0.1), (dict(R_inf=-0.3, c=1.5, gamma=1.6), 0.1),
                                        (dict(R_inf=0.5, c=0.2, gamma=0.25), 0.2)])
def test_recovers_known_parameters_and_k90(truth, tol):
    df = samples_truth_runs(truth, noise=0.01, seed=2)
    res = SamplesPerPromptLaw(bootstrap=300, level=0.99).fit(df)
    assert get_law("rlhf-samples") is SamplesPerPromptLaw
    for k, v in truth.items():
        lo, hi = res.ci[k]
        assert lo <= v <= hi, (k, v, lo, hi)
    assert res.params["gamma"] == pytest.approx(truth["gamma"], rel=tol)
    k90 = 10 ** (1 / truth["gamma"])  # 90% of the gain c: k^-gamma = 0.1
    got = res.k_at(0.9)
    assert np.log(got["k"]) == pytest.approx(np.log(k90), rel=tol)  # log k90 = ln 10 / gamma
    assert got["ci"][0] <= k90 <= got["ci"][1]
    s = res.summary()
    assert s["k90"] == got["k"] and s["k90_ci"] == got["ci"]
    # a reward that can be negative is fitted on its own scale, and predicts there
    assert res.predict(samples_per_prompt=[1.0])[0] == pytest.approx(truth["R_inf"] - truth["c"], abs=0.02)
    back = SamplesPerPromptLaw.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.k_at(0.9)["k"] == pytest.approx(got["k"], rel=1e-9)


def test_fixed_parameters_and_bad_input():
    df = samples_truth_runs(TRUTH, noise=0.01, seed=2)
    res = SamplesPerPromptLaw(bootstrap=50, fixed={"gamma": 0.7}).fit(df)
    assert res.params["gamma"] == 0.7 and res.ci["gamma"] is None
    assert res.params["R_inf"] == pytest.approx(1.2, abs=0.01)
    with pytest.raises(DataError, match="at least 1"):
        SamplesPerPromptLaw(bootstrap=0).fit(df.assign(samples_per_prompt=0.5))
    with pytest.raises(DataError, match=r"vary rm_params"):
        SamplesPerPromptLaw(bootstrap=0).fit(df.assign(rm_params=np.where(df.index % 2, 1e3, 1e4)))
    with pytest.raises(DataError, match="at least 3"):
        SamplesPerPromptLaw(bootstrap=0).fit(df[df.samples_per_prompt <= 2])
    with pytest.raises(SettingsError, match="does not take bounds"):
        SamplesPerPromptLaw(bounds={"gamma": (0, 1)})
    with pytest.raises(SettingsError, match="fraction"):
        res.k_at(1.5)
    # a gamma at its lower bound puts k90 beyond any float: no k, not an OverflowError
    flat = SamplesPerPromptLaw(bootstrap=0, fixed={"gamma": 1e-3}).fit(df)
    assert flat.k_at(0.9)["k"] is None and flat.summary()["k90"] is None


def test_backtest_fit_small_k_predict_large_k():
    df = samples_truth_runs(TRUTH, ks=(1, 2, 4, 8, 16, 32, 64), seeds=6, noise=0.02, seed=4)
    bt = _quiet(backtest_samples, df, bootstrap=300)
    assert bt["n_test_runs"] == 18 and list(bt["table"]["samples_per_prompt"]) == [16, 32, 64]
    assert bt["mean_abs_error"] < 0.03  # the plateau is 1.2; the gain 0.8
    assert bt["coverage"] >= 0.7
    # a curve that keeps climbing past k = 8 (here: 0.15 more at k >= 16) is not what the law predicts
    bent = df.copy()
    bent.loc[bent.samples_per_prompt >= 16, "gold"] += 0.15
    bad = _quiet(backtest_samples, bent, bootstrap=300)
    assert bad["mean_abs_error"] > 0.1 and bad["coverage"] < 0.3
