"""Overoptimization: estimators against exact enumeration, KL bookkeeping, the CI-sized sweep, the laws."""

import io
import itertools
import json
import math
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import DataError, FitError, ScalingError
from scaling.laws import GaoBoN, GaoRL, backtest_largest, get_law
from scaling.overopt import (OveroptSpecError, bon_curve, bon_kl_analytic, bon_kl_empirical, bon_kl_exact,
                             bon_weights, load_spec)

ROOT = Path(__file__).resolve().parents[1]
CI_YAML = ROOT / "sweeps" / "overopt-ci.yaml"


# ------------------------------------------------------------ best-of-n estimator
def brute_force_bon(proxy, gold, n):
    """Mean gold of the proxy-best sample over every n-subset of the samples (ties: average of the tied)."""
    vals = []
    for sub in itertools.combinations(range(len(proxy)), n):
        best = max(proxy[i] for i in sub)
        tied = [gold[i] for i in sub if proxy[i] == best]
        vals.append(sum(tied) / len(tied))
    return float(np.mean(vals))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_unbiased_bon_estimator_equals_enumeration_over_all_subsets(seed):
    rng = np.random.default_rng(seed)
    N = 9
    proxy = rng.standard_normal(N)
    if seed == 2:  # ties in the proxy score
        proxy = np.round(proxy, 0)
    gold = rng.standard_normal(N)
    ns = np.arange(1, N + 1)
    est = bon_curve(proxy, gold, ns)
    for j, n in enumerate(ns):
        assert est["gold"][0, j] == pytest.approx(brute_force_bon(proxy, gold, n), abs=1e-12)
        assert est["proxy"][0, j] == pytest.approx(brute_force_bon(proxy, proxy, n), abs=1e-12)


def test_bon_weights_are_a_distribution_without_overflow_at_large_n():
    for N, n in [(10, 3), (2000, 1000), (5000, 5000), (5000, 1)]:
        w = bon_weights(N, n)
        assert w.sum() == pytest.approx(1.0, abs=1e-9)
        assert np.all(w[: n - 1] == 0) and np.all(np.isfinite(w))
    with pytest.raises(ValueError, match="1 <= n <= N"):
        bon_weights(10, 11)
    with pytest.raises(ValueError, match="n must lie"):
        bon_curve(np.zeros((2, 5)), np.zeros((2, 5)), [1, 6])


# ------------------------------------------------------------------- KL of best-of-n
def brute_force_bon_kl(p, r, n):
    """KL(best-of-n || base) by enumerating every ordered n-tuple of outcomes (ties broken uniformly)."""
    M = len(p)
    q = np.zeros(M)
    for tup in itertools.product(range(M), repeat=n):
        prob = np.prod([p[i] for i in tup])
        best = max(r[i] for i in tup)
        winners = [i for i in tup if r[i] == best]
        for i in winners:
            q[i] += prob / len(winners)
    ok = q > 0
    return float(np.sum(q[ok] * np.log(q[ok] / p[ok])))


@pytest.mark.parametrize("ties", [False, True])
def test_exact_bon_kl_matches_enumeration_on_a_small_discrete_policy(ties):
    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(5))
    r = np.array([0.1, 0.5, 0.5, 0.9, 0.2]) if ties else rng.standard_normal(5)
    for n in (1, 2, 3, 4):
        assert bon_kl_exact(p, r, n) == pytest.approx(brute_force_bon_kl(p, r, n), abs=1e-12)


def test_analytic_bon_kl_is_the_limit_and_an_upper_bound():
    ns = np.array([1, 2, 4, 16, 64, 256, 1000])
    analytic = bon_kl_analytic(ns)
    assert analytic[0] == 0 and analytic[1] == pytest.approx(math.log(2) - 0.5)
    for M in (50, 1000, 200_000):
        exact = np.array([bon_kl_exact(np.full(M, 1 / M), np.arange(M), int(n)) for n in ns])
        assert np.all(exact <= analytic + 1e-9)
        if M == 200_000:  # many equiprobable distinct outcomes: the analytic value
            np.testing.assert_allclose(exact, analytic, atol=2e-3)
    # a discrete policy with a few heavy outcomes stays far below the bound
    assert bon_kl_exact(np.array([0.5, 0.5]), np.array([0.0, 1.0]), 1000) == pytest.approx(math.log(2), abs=1e-9)
    # the empirical estimate is the exact formula on the samples: log N at most
    s = np.random.default_rng(0).standard_normal(1000)
    assert bon_kl_empirical(s, 1000) <= math.log(1000) + 1e-12
    assert bon_kl_empirical(s, 10) == pytest.approx(bon_kl_analytic(10), abs=0.01)


# --------------------------------------------------------------- sequence KL (torch)
def test_sequence_kl_estimators_are_exact_in_expectation_by_enumeration():
    torch = pytest.importorskip("torch")
    from scaling.overopt import models as M

    torch.manual_seed(0)
    V, T = 3, 3
    pi = M.build_policy(V, 8, 1, 2, 8).eval()
    ref = M.build_policy(V, 8, 1, 2, 8).eval()
    prompt = torch.tensor([[1, 0]])
    ys = torch.tensor(list(itertools.product(range(V), repeat=T)))
    P = prompt.expand(len(ys), -1)
    with torch.no_grad():
        lp = M.token_logprobs(pi, P, ys).sum(-1).double()
        lp0 = M.token_logprobs(ref, P, ys).sum(-1).double()
    p = lp.exp()
    assert float(p.sum()) == pytest.approx(1.0, abs=1e-5)
    exact_kl = float((p * (lp - lp0)).sum())
    per_token, sampled = M.sequence_kl(pi, ref, P, ys)
    assert float((p * per_token.double()).sum()) == pytest.approx(exact_kl, rel=1e-4)
    assert float((p * sampled.double()).sum()) == pytest.approx(exact_kl, rel=1e-4)
    assert float(per_token.min()) >= 0  # never negative, unlike the sampled log-ratio
    assert float(sampled.min()) < 0
    # sampling with the KV cache draws from the same distribution the log-probs describe
    g = torch.Generator().manual_seed(1)
    y, lps = M.sample(pi, prompt.expand(4000, -1), T, generator=g)
    idx = (y * torch.tensor([V * V, V, 1])).sum(-1)
    freq = torch.bincount(idx, minlength=V ** T).double() / 4000
    assert float((freq - p).abs().max()) < 0.03
    np.testing.assert_allclose(lps.sum(-1).numpy(), M.token_logprobs(pi, prompt.expand(4000, -1), y).sum(-1).detach().numpy(),
                               atol=1e-4)


# ------------------------------------------------------------------------ the laws
TRUTH = dict(alpha=0.9, alpha_slope=0.25, beta=0.35, beta_slope=-0.08)


def synthetic(law_cls, noise=0.01, prompts=None, seed=3):
    law = law_cls.from_params(n_ref=1e4, **TRUTH)
    rng = np.random.default_rng(seed)
    rows = []
    for N in (1e3, 4e3, 2.5e4, 1e5):  # geometric mean 1e4: the fit's n_ref
        for d in np.linspace(0.15, 4.0, 14):
            g = law.predict(d=d, rm_params=N)[0]
            if prompts:
                rows += [dict(method=law_cls.method, rm_params=N, kl=d * d, gold=g + 0.1 * rng.standard_normal(),
                              prompt=j) for j in range(prompts)]
            else:
                rows.append(dict(method=law_cls.method, rm_params=N, kl=d * d, gold=g + noise * rng.standard_normal()))
    return pd.DataFrame(rows), law


@pytest.mark.parametrize("law_cls", [GaoBoN, GaoRL])
def test_gao_fit_recovers_known_coefficients_and_peaks(law_cls):
    df, truth = synthetic(law_cls)
    law = law_cls(bootstrap=300, level=0.99).fit(df)
    for k, v in TRUTH.items():
        lo, hi = law.ci_[k]
        assert lo <= v <= hi, (k, v, law.ci_[k])
        assert law.params_[k] == pytest.approx(v, abs=0.02)
    for r in law.per_size_:  # per-size fits: alpha(N), beta(N) and the closed-form peak
        a, b = truth.coefficients(r["rm_params"])
        assert r["alpha"] == pytest.approx(a[0], abs=0.03) and r["beta"] == pytest.approx(b[0], abs=0.03)
        d_star = a[0] / (2 * b[0]) if law_cls is GaoBoN else math.exp(a[0] / b[0] - 1)
        assert r["d_star"] == pytest.approx(d_star, rel=0.05)
        assert r["kl_star"] == pytest.approx(r["d_star"] ** 2)
    # a larger RM, outside the data: predicted peak from the size scaling
    pk = law.peak(2.56e5)
    a, b = truth.coefficients(2.56e5)
    d_true = a[0] / (2 * b[0]) if law_cls is GaoBoN else math.exp(a[0] / b[0] - 1)
    assert pk["d_star"][0] == pytest.approx(d_true, rel=0.1)
    lo, hi = pk["d_star_ci"][0]
    assert lo <= d_true <= hi


def test_gao_bootstrap_over_prompts_and_backtest_of_the_largest_rm():
    df, truth = synthetic(GaoBoN, prompts=20, seed=4)
    law = GaoBoN(bootstrap=200, level=0.99).fit(df)
    assert law.fit_info_["bootstrap_over"] == "prompts"
    for k, v in TRUTH.items():
        lo, hi = law.ci_[k]
        assert lo <= v <= hi, (k, v, law.ci_[k])
    bt = backtest_largest(GaoBoN, df, bootstrap=100)
    assert bt["rm_params"] == 100000 and bt["trained_on"] == [1000, 4000, 25000]
    assert bt["mae"] < 0.05
    a, b = truth.coefficients(1e5)
    assert bt["predicted_peak"]["d_star"] == pytest.approx(a[0] / (2 * b[0]), rel=0.1)


def test_gao_shared_alpha_and_round_trip(tmp_path):
    df, _ = synthetic(GaoRL)
    law = GaoRL(bootstrap=50, shared_alpha=True).fit(df)
    assert law.params_["alpha_slope"] == 0.0 and "alpha_slope" not in law.fit_info_["free"]
    law.save(tmp_path / "rl.json")
    from scaling.laws import Law

    back = Law.load(tmp_path / "rl.json")
    assert back.n_ref == law.n_ref and back.shared_alpha
    np.testing.assert_allclose(back.predict(d=[0.5, 2.0], rm_params=[1e3, 1e5]), law.predict(d=[0.5, 2.0], rm_params=[1e3, 1e5]))
    assert back.peak(1e4)["d_star"] == law.peak(1e4)["d_star"]


def test_gao_bad_input_is_explained():
    df, _ = synthetic(GaoBoN)
    with pytest.raises(DataError, match="method == 'bon'.*methods \\['rl'\\]"):
        GaoBoN(bootstrap=0).fit(df.assign(method="rl"))
    neg = df.copy()
    neg.loc[:3, "kl"] = -0.01
    with pytest.warns(Warning, match="negative KL estimate.*left out"):
        law = GaoBoN(bootstrap=0).fit(neg)
    assert law.n_points_ == len(df) - 4
    chance = df.assign(rm_accuracy=np.where(df["rm_params"] == 1e3, 0.51, 0.8), rm_n_eval=500)
    with pytest.warns(Warning, match="at chance.*1,000 params"):
        law = GaoBoN(bootstrap=0).fit(chance)
    assert law.fit_info_["rm_sizes"] == [4000, 25000, 100000]
    with pytest.raises(FitError, match="no reward model beats chance"):
        GaoBoN(bootstrap=0).fit(chance.assign(rm_accuracy=0.5))
    with pytest.raises(DataError, match="missing column 'd'.*or 'kl'"):
        GaoBoN(bootstrap=0).fit(df.drop(columns=["kl"]))
    with pytest.raises(DataError, match="needs more runs"):
        GaoBoN(bootstrap=0).fit(df.iloc[:2])
    # reward models trained on different amounts of data are not one family: pick one
    two = pd.concat([df.assign(rm_data=12000), df.assign(rm_data=48000, gold=df["gold"] * 2)], ignore_index=True)
    with pytest.raises(DataError, match="mixes reward models trained on \\[12000, 48000\\].*--rm-data"):
        GaoBoN(bootstrap=0).fit(two)
    law12 = GaoBoN(bootstrap=0, rm_data=12000).fit(two)
    law48 = GaoBoN(bootstrap=0, rm_data=48000).fit(two)
    assert law48.params_["alpha"] == pytest.approx(2 * law12.params_["alpha"])


def test_a_sweep_may_gain_data_sizes_but_not_change_its_data():
    from scaling.overopt.runner import _core

    spec = load_spec(CI_YAML)
    more = dict(spec, preferences=dict(spec["preferences"], pairs=[500, 1500]))
    assert _core(more) == _core(spec)
    other = dict(spec, preferences=dict(spec["preferences"], pairs=[3000]))
    assert _core(other) != _core(spec)


# ------------------------------------------------------------------------ the sweep
def test_spec_errors_are_caught_before_anything_runs():
    with pytest.raises(OveroptSpecError, match="bon.n must lie"):
        load_spec({"name": "x", "bon": {"samples": 10, "n": [1, 20]}})
    with pytest.raises(OveroptSpecError, match="unknown key 'reward_model'"):
        load_spec({"name": "x", "reward_model": {}})
    with pytest.raises(OveroptSpecError, match="samples_per_prompt must be >= 2"):
        load_spec({"name": "x", "rl": {"samples_per_prompt": 1}})
    with pytest.raises(OveroptSpecError, match="not divisible"):
        load_spec({"name": "x", "reward_models": {"shapes": [[6, 1, 4]]}})


def _run_sweep(tmp_path_factory, yaml, workers):
    """(root, export, per-prompt export) of a sweep run from scratch in a fresh folder."""
    from scaling.overopt import export, run_overopt

    root = tmp_path_factory.mktemp(yaml.stem)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = run_overopt(yaml, root=root, workers=workers, progress=False)
    return root, df, export(load_spec(yaml)["name"], root, per_prompt=True)


@pytest.fixture(scope="module")
def ci_sweep(tmp_path_factory):
    return _run_sweep(tmp_path_factory, CI_YAML, workers=2)


def test_ci_sweep_runs_every_method_and_keeps_the_bookkeeping_exact(ci_sweep):
    root, df, per_prompt = ci_sweep
    for c in ("method", "rm_params", "rm_data", "kl_penalty", "step", "n", "kl", "d", "gold", "proxy", "seed"):
        assert c in df.columns
    assert set(df["method"]) == {"bon", "rl", "dpo"}
    spec = load_spec(CI_YAML)
    bon = df[df["method"] == "bon"]
    assert bon["rm_params"].nunique() == 4
    assert bon["rm_params"].max() / bon["rm_params"].min() >= 30
    # best-of-1 is the initial policy: gold and proxy are recentred to exactly 0
    n1 = bon[bon["n"] == 1]
    np.testing.assert_allclose(n1[["gold", "proxy", "kl"]].to_numpy(), 0, atol=1e-9)
    np.testing.assert_allclose(bon["kl"], bon_kl_analytic(bon["n"]))
    assert np.all(bon["kl_empirical"] <= bon["kl"] + 1e-9)
    # RL and DPO start at the initial policy: exactly zero KL at step 0
    start = df[df["method"].isin(["rl", "dpo"]) & (df["step"] == 0)]
    assert len(start) == 4 * len(spec["rl"]["kl_penalty"]) + len(spec["dpo"]["beta"])
    np.testing.assert_allclose(start["kl"], 0, atol=1e-6)
    later = df[df["method"].isin(["rl", "dpo"]) & (df["step"] > 0)]
    assert (later["kl"] > 0).all()
    assert later.loc[later["method"] == "rl", "step"].max() == spec["rl"]["steps"]
    # the per-prompt table averages back to the summary
    pp = per_prompt[per_prompt["method"] == "bon"].groupby(["rm_params", "n"])["gold"].mean()
    np.testing.assert_allclose(pp.to_numpy(), bon.set_index(["rm_params", "n"])["gold"].sort_index().to_numpy(), atol=1e-12)
    # reward models: trained on the requested pairs, accuracies recorded
    assert set(bon["rm_data"]) <= {1500} and bon["rm_accuracy"].between(0, 1).all()


def _same_table(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    """Same columns, rows and labels exactly; numbers to float32 rounding. The reference was written on an Intel
    CPU; torch's float32 kernels on an AMD EPYC (no AVX-512) round differently (up to 1.1e-6 absolute, 1e-5
    relative, on the same code), while any change to what the runner trains (a seed, an order, a step) moves
    these numbers by 1e-2 or more."""
    got = pd.read_csv(io.StringIO(got.to_csv(index=False)))  # as written and read back, like the reference
    assert list(got.columns) == list(ref.columns) and len(got) == len(ref)
    num = [c for c in ref.columns if pd.api.types.is_float_dtype(ref[c])]
    pd.testing.assert_frame_equal(got.drop(columns=num), ref.drop(columns=num))
    np.testing.assert_allclose(got[num].to_numpy(float), ref[num].to_numpy(float), rtol=1e-4, atol=1e-5)


def test_ci_sweep_export_matches_the_export_before_the_graph_runner(ci_sweep):
    """tests/data/overopt-ci-export/: this sweep's export written by the overopt runner before it moved onto the
    graph runner (scaling/sweep/graph.py), with workers=2 (workers=1 wrote the same bytes)."""
    root, df, per_prompt = ci_sweep
    ref = ROOT / "tests" / "data" / "overopt-ci-export"
    _same_table(df, pd.read_csv(ref / "export.csv"))
    _same_table(per_prompt, pd.read_csv(ref / "export-prompts.csv.gz"))


def test_ci_sweep_results_fit_and_plot_through_the_cli(ci_sweep, tmp_path, capsys):
    root, df, _ = ci_sweep
    csv = tmp_path / "overopt-ci.csv"
    assert main(["overopt", "export", "overopt-ci", "--root", str(root), "--out", str(csv)]) == 0
    assert (tmp_path / "overopt-ci-prompts.csv.gz").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(tmp_path / "overopt-ci-prompts.csv.gz"), "--law", "gao-bon", "--bootstrap", "20"]) == 0
    assert "resamples over prompts" in capsys.readouterr().out
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(csv), "--law", "gao-bon", "--bootstrap", "50", "--json",
                     "--out", str(tmp_path / "bon.json")]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "gao-bon" and set(out["params"]) == {"alpha", "alpha_slope", "beta", "beta_slope"}
    assert {"rm_params", "alpha", "beta", "d_star", "kl_star", "gold_star"} <= set(out["per_size"][-1])
    assert main(["predict", str(tmp_path / "bon.json"), "--d", "1.0", "--rm-params", "1e4", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["inputs"] == {"d": 1.0, "rm_params": 1e4} and pred["interval"][0] < pred["gold"] < pred["interval"][1]
    assert main(["predict", str(tmp_path / "bon.json"), "--N", "1e6"]) == 2
    assert "give --d VALUE --rm_params VALUE" in capsys.readouterr().err
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert main(["fit", str(csv), "--law", "gao-rl", "--kl-penalty", "0", "--bootstrap", "50",
                     "--out", str(tmp_path / "rl.json")]) == 0
        assert main(["overopt", "plot", str(csv), "--fit", str(tmp_path / "bon.json"), "--fit", str(tmp_path / "rl.json"),
                     "--out", str(tmp_path / "fig.png")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 10_000
    capsys.readouterr()
    assert main(["overopt", "backtest", str(csv), "--law", "gao-bon", "--bootstrap", "20", "--json"]) == 0
    bt = json.loads(capsys.readouterr().out)
    assert bt["rm_params"] == int(df["rm_params"].max()) and len(bt["trained_on"]) == 2  # the chance RM is left out
    assert main(["overopt", "status", "overopt-ci", "--root", str(root), "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["total"] == st["done"] == 19 and st["failed"] == 0
    assert main(["fit", str(csv), "--law", "chinchilla", "--shared-alpha"]) == 2
    assert "apply to --law gao-bon" in capsys.readouterr().err


def test_degenerate_preferences_and_a_killed_sweep(tmp_path):
    """All-tie preference data fails with the reason; a killed sweep resumes without redoing finished cells."""
    from scaling.overopt import run_overopt

    spec = load_spec(CI_YAML)
    flat = dict(spec, name="flat", gold=dict(spec["gold"], w_unigram=0.0, w_bigram=0.0, w_repetition=0.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ScalingError, match="degenerate preference data: .* pairs tie"):
            run_overopt(flat, root=tmp_path, workers=1, progress=False)
        # attempts persist in the store: run again, the failed cell is not retried, and the error says how
        with pytest.raises(ScalingError, match="degenerate preference data.*--retry-failed"):
            run_overopt(flat, root=tmp_path, workers=1, progress=False)
    from scaling.overopt.runner import open_store

    data = open_store("flat", tmp_path).runs().set_index("run_id").loc["data"]
    assert data["status"] == "failed" and data["attempts"] == flat["retries"] + 1
    # kill a sweep mid-way, then run it again
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    code = ("import sys\nif __name__ == '__main__':\n    from scaling.overopt import run_overopt\n"
            f"    run_overopt({str(CI_YAML)!r}, root={str(tmp_path)!r}, workers=1, progress=False)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], env=env, start_new_session=True)
    cells = tmp_path / "overopt-ci" / "cells"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cells.glob("*/result.json"))) < 6:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in cells.glob("*/result.json")}
    assert 6 <= len(finished) < 19
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = run_overopt(CI_YAML, root=tmp_path, workers=1, progress=False)
    assert len(list(cells.glob("*/result.json"))) == 19
    for name, mtime in finished.items():  # nothing finished was redone
        assert (cells / name / "result.json").stat().st_mtime_ns == mtime
    assert set(df["method"]) == {"bon", "rl", "dpo"}


def test_bradley_terry_labels_with_noise_and_a_saved_policy_directory(tmp_path):
    """Sampled labels agree with the gold ordering as often as the model says; a save_pretrained policy loads."""
    torch = pytest.importorskip("torch")
    from scaling.overopt.cells import _load, _gold, run_cell

    spec = load_spec(CI_YAML)
    spec = dict(spec, name="bt", preferences=dict(spec["preferences"], labels="bradley-terry", temperature=0.2,
                                                   label_noise=0.1, pairs=[3000], eval_pairs=300))
    for stage in ("policy", "data"):
        run_cell({"id": stage, "stage": stage, "spec": spec}, str(tmp_path))
    data = _load(tmp_path / "data.pt")
    gold = _gold(spec)
    tr = data["train"]
    gw, gl = gold(tr["chosen"].numpy()), gold(tr["rejected"].numpy())
    agree = np.mean(gw > gl) + 0.5 * np.mean(gw == gl)
    p = 1 / (1 + np.exp(-np.abs(gw - gl) / 0.2))
    expected = np.mean(0.9 * p + 0.1 * (1 - p))  # a tie: p = 0.5, counted as half agreeing
    se = math.sqrt(expected * (1 - expected) / len(gw))
    assert abs(agree - expected) < 4 * se + 0.01, (agree, expected)
    assert 0.6 < agree < 0.95
    # a policy saved with save_pretrained is used as the initial policy
    from scaling.overopt import models as M

    model = M.build_policy(32, 16, 1, 2, 25)
    model.save_pretrained(tmp_path / "hf")
    other = dict(spec, name="hf", policy=dict(spec["policy"], dir=str(tmp_path / "hf")))
    res = run_cell({"id": "policy", "stage": "policy", "spec": other}, str(tmp_path / "other"))
    assert res["policy_params"] == M.n_params(model)
    bad = dict(other, policy=dict(other["policy"], vocab=64))
    with pytest.raises(ValueError, match="vocabulary of 32 tokens"):
        run_cell({"id": "policy", "stage": "policy", "spec": bad}, str(tmp_path / "bad"))


def test_overopt_cli_bad_input_is_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nbon: {samples: 10, n: [1, 50]}\n")
    assert main(["overopt", "run", str(bad), "--root", str(tmp_path)]) == 2
    assert "bon.n must lie in [1, bon.samples=10]" in capsys.readouterr().err
    assert main(["sweep", "run", str(CI_YAML), "--root", str(tmp_path)]) == 2
    assert "run it with `scaling overopt run`" in capsys.readouterr().err
    table = tmp_path / "runs.csv"
    table.write_text("N,D,loss\n1e6,1e8,3.0\n")
    assert main(["overopt", "plot", str(table), "--out", str(tmp_path / "x.png")]) == 2
    assert "missing ['method', 'gold', 'proxy', 'd (or kl)']" in capsys.readouterr().err
    assert main(["overopt", "status", "nosuch", "--root", str(tmp_path)]) == 2
    assert "no overoptimization sweep named 'nosuch'" in capsys.readouterr().err


def test_shipped_sweep_shows_what_the_readme_says():
    """data/overopt/overopt-cpu.csv: proxy keeps rising, gold peaks and falls; the largest RM peaks later and higher."""
    df = pd.read_csv(ROOT / "data" / "overopt" / "overopt-cpu.csv")
    for c in ("method", "rm_params", "rm_data", "kl_penalty", "step", "n", "kl", "d", "gold", "proxy", "seed"):
        assert c in df.columns
    bon = df[(df["method"] == "bon") & (df["rm_data"] == 48000)]
    sizes = sorted(bon["rm_params"].unique())
    assert len(sizes) >= 4 and sizes[-1] / sizes[0] >= 30
    curves = {N: bon[bon["rm_params"] == N].sort_values("n") for N in sizes}
    for c in curves.values():
        assert np.all(np.diff(c["proxy"]) > 0)
    small, big = curves[sizes[0]], curves[sizes[-1]]
    i_small, i_big = small["gold"].idxmax(), big["gold"].idxmax()
    n_peak = small.loc[i_small, "n"]
    assert n_peak < small["n"].max()  # an interior peak
    # the fall after it is real: paired over prompts, best-of-1000 is more than 2 standard errors below the peak
    pp = pd.read_csv(ROOT / "data" / "overopt" / "overopt-cpu-prompts.csv.gz")
    pp = pp[(pp["method"] == "bon") & (pp["rm_data"] == 48000) & (pp["rm_params"] == sizes[0])]
    per = pp.pivot_table(index="prompt", columns="n", values="gold")
    drop = per[n_peak] - per[per.columns.max()]
    assert drop.mean() > 2 * drop.std(ddof=1) / math.sqrt(len(drop)), (drop.mean(), drop.std(ddof=1), len(drop))
    assert big.loc[i_big, "n"] > n_peak and big.loc[i_big, "gold"] > small.loc[i_small, "gold"]
    rl = df[(df["method"] == "rl") & (df["kl_penalty"] == 0) & (df["rm_data"] == 48000)]
    for N in sizes:
        c = rl[rl["rm_params"] == N].sort_values("step")
        assert c["gold"].max() > 0.2 and c["gold"].iloc[-1] < 0 < c["proxy"].iloc[-1]


# ------------------------------------------------------------- the RLHF axes (issue 14)
AXES_CI_YAML = ROOT / "sweeps" / "overopt-axes-ci.yaml"
CI_CELL_IDS = ["policy", "data"] + [f"rm-d{d}-l1-h{h}-p1500-s0" for d, h in ((4, 1), (8, 2), (16, 2), (32, 4))] + [
    x for d, h in ((4, 1), (8, 2), (16, 2), (32, 4))
    for x in (f"bon-rm-d{d}-l1-h{h}-p1500-s0", f"rl-rm-d{d}-l1-h{h}-p1500-s0-kl0", f"rl-rm-d{d}-l1-h{h}-p1500-s0-kl0.1")
] + ["dpo-p1500-b0.1-s0"]


def test_without_the_axes_specs_and_cells_are_as_before():
    """Axes absent: no new keys in the spec (so cell configs are unchanged) and exactly the cells of before."""
    from scaling.overopt.runner import _core
    from scaling.overopt.spec import cells

    spec = load_spec(CI_YAML)
    assert "shapes" not in spec["policy"] and "baseline" not in spec["rl"]
    plan = cells(spec)
    assert [c["id"] for c in plan] == CI_CELL_IDS
    assert not any("policy" in c or "samples_per_prompt" in c for c in plan if c["stage"] != "policy")
    assert load_spec(spec) == spec  # a loaded spec passed back in is the same spec
    # the axes may grow in a sweep that has them; a number made a list (or another policy) is a change
    axes = load_spec(AXES_CI_YAML)
    grown = dict(axes, rl=dict(axes["rl"], samples_per_prompt=[1, 2, 4, 8]),
                 policy=dict(axes["policy"], shapes=axes["policy"]["shapes"] + [[64, 1, 2]]))
    assert _core(grown) == _core(axes)
    assert _core(dict(spec, rl=dict(spec["rl"], samples_per_prompt=[4, 8]))) != _core(spec)


def test_axes_bad_input_is_refused_before_anything_trains(tmp_path, capsys):
    ok = load_spec({"name": "x", "rl": {"samples_per_prompt": [1, 2], "baseline": "batch"}})
    assert ok["rl"]["samples_per_prompt"] == [1, 2]
    cases = [({"rl": {"samples_per_prompt": [0, 2], "baseline": "batch"}}, "must be >= 1"),
             ({"rl": {"samples_per_prompt": [1, 2, 4]}}, "must be >= 2 with RLOO.*rl.baseline: batch"),
             ({"rl": {"samples_per_prompt": 1}}, "samples_per_prompt must be >= 2"),
             ({"rl": {"samples_per_prompt": [2, 2.5]}}, "integer or a non-empty list of integers"),
             ({"rl": {"samples_per_prompt": [2], "baseline": "grpo"}}, "rl.baseline is one of"),
             ({"rl": {"samples_per_prompt": 1, "batch_prompts": 1, "baseline": "batch"}}, "must be >= 2: the batch"),
             ({"policy": {"shapes": [[12, 1, 4]]}}, r"policy shape \[12, 1, 4\] cannot be built.*even size"),
             ({"policy": {"shapes": [[30, 1, 4]]}}, r"policy shape \[30, 1, 4\] cannot be built"),
             ({"policy": {"shapes": [[32, 1]]}}, "each policy shape is"),
             ({"policy": {"shapes": []}}, "non-empty list"),
             ({"policy": {"shapes": [[32, 1, 2], [32, 1, 2]]}}, "lists a shape twice")]
    for raw, msg in cases:
        with pytest.raises(OveroptSpecError, match=msg):
            load_spec({"name": "x", **raw})
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\npolicy: {shapes: [[12, 1, 4]]}\n")
    assert main(["overopt", "run", str(bad), "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot be built" in err
    assert not (tmp_path / "x").exists()  # nothing was started


@pytest.fixture(scope="module")
def axes_sweep(tmp_path_factory):
    return _run_sweep(tmp_path_factory, AXES_CI_YAML, workers=1)


def test_axes_sweep_exports_policy_and_samples_per_prompt(axes_sweep, tmp_path, capsys):
    from scaling.overopt.axes import final_gold, fit_samples, peaks_by_policy

    root, df, pp = axes_sweep
    spec = load_spec(AXES_CI_YAML)
    assert list(df.columns[:7]) == ["method", "policy", "policy_params", "rm_params", "rm_data", "kl_penalty",
                                    "samples_per_prompt"]
    assert set(df["policy"]) == {"d16-l1-h2", "d32-l1-h2"} and df["rm_params"].nunique() == 1
    sizes = df.groupby("policy")["policy_params"].first()
    # non-embedding parameters of a 1-layer Llama: 4 d^2 (attention) + 12 d^2 (4x MLP) + 2 d (norms) + d (final norm)
    for name, d in (("d16-l1-h2", 16), ("d32-l1-h2", 32)):
        assert sizes[name] == 16 * d * d + 3 * d
    bon, rl = df[df["method"] == "bon"], df[df["method"] == "rl"]
    assert len(bon) == 2 * len(spec["bon"]["n"]) and bon["samples_per_prompt"].isna().all()
    points = spec["rl"]["steps"] // spec["rl"]["every"] + 1
    assert len(rl) == 2 * 3 * points
    assert rl.groupby(["policy", "samples_per_prompt"]).size().to_dict() == {
        (p, float(k)): points for p in ("d16-l1-h2", "d32-l1-h2") for k in (1, 2, 4)}
    # every policy, the one that made the RM's data and the other, starts at gold = proxy = 0, KL = 0
    np.testing.assert_allclose(bon.loc[bon["n"] == 1, ["gold", "proxy", "kl"]].to_numpy(), 0, atol=1e-9)
    start = rl[rl["step"] == 0]
    np.testing.assert_allclose(start["kl"], 0, atol=1e-6)
    assert np.all(np.abs(start["gold"]) < 1.0)
    assert (rl.loc[rl["step"] > 0, "kl"] > 0).all()
    # k changes the RL runs (different samples, different updates); the curves are not copies
    end = final_gold(df)
    assert len(end) == 6 and end["run_id"].is_unique and (end["step"] == spec["rl"]["steps"]).all()
    assert end.groupby("policy")["gold"].nunique().min() == 3
    # the per-prompt table averages back to the summary, per policy
    got = pp[pp["method"] == "rl"].groupby(["policy", "samples_per_prompt", "step"])["gold"].mean()
    want = rl.set_index(["policy", "samples_per_prompt", "step"])["gold"].sort_index()
    np.testing.assert_allclose(got.sort_index().to_numpy(), want.to_numpy(), atol=1e-12)
    # the analyses run on the sweep's own export
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = fit_samples(df, policy="d32-l1-h2", fixed={"gamma": 1.0}, bootstrap=20)
    assert fit.params["gamma"] == 1.0 and fit.n_points_ == 3
    with pytest.raises(DataError, match="vary policy.*--policy"):
        fit_samples(df)
    peaks = peaks_by_policy(pp, kl_penalty=0, samples_per_prompt=4, bootstrap=50)
    assert list(peaks["policy"]) == ["d16-l1-h2", "d32-l1-h2"] and (peaks["n_prompts"] == 6).all()
    assert (peaks["gold_star_lo"] <= peaks["gold_star"]).all() and (peaks["gold_star"] <= peaks["gold_star_hi"]).all()
    # one policy's gold at the end of RL is a table `scaling fit --law rlhf-samples` fits as it is
    csv = tmp_path / "final.csv"
    end[end["policy"] == "d16-l1-h2"].to_csv(csv, index=False)
    assert main(["fit", str(csv), "--law", "rlhf-samples", "--fix", "gamma=1", "--bootstrap", "0", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "rlhf-samples" and set(out["params"]) == {"R_inf", "c", "gamma"}


def _synthetic_curves(truth_peak, prompts=40, seed=0):
    """Per-prompt RL curves of two policies: gold(d) = a d - b d^2 per prompt (a varies by prompt), KL = d^2."""
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 21)
    rows = []
    for name, params, (a, b) in (("small", 1e4, truth_peak["small"]), ("big", 1e5, truth_peak["big"])):
        a_p = a + 0.2 * rng.standard_normal(prompts)
        for s in steps:
            d = 0.1 * s
            for j in range(prompts):
                rows.append(dict(method="rl", policy=name, policy_params=params, rm_params=1e4, rm_data=1000,
                                 kl_penalty=0.0, samples_per_prompt=4.0, seed=0, step=s, prompt=j,
                                 gold=a_p[j] * d - b * d * d, kl=d * d, kl_prompt=d * d))
    return pd.DataFrame(rows)


def test_peaks_by_policy_finds_known_peaks_with_intervals_over_prompts():
    from scaling.overopt.axes import peaks_by_policy

    truth = {"small": (1.0, 0.5), "big": (0.6, 0.5)}  # peaks at d = a / 2b: 1.0 and 0.6; gold a^2 / 4b
    pp = _synthetic_curves(truth)
    res = peaks_by_policy(pp, bootstrap=400, level=0.95).set_index("policy")
    for name, (a, b) in truth.items():
        r = res.loc[name]
        assert r["d_star"] == pytest.approx(a / (2 * b), abs=0.15)
        assert r["gold_star_lo"] <= a * a / (4 * b) <= r["gold_star_hi"]
        assert r["d_star_lo"] <= a / (2 * b) <= r["d_star_hi"]
        assert r["kl_star"] == pytest.approx(r["d_star"] ** 2)
    assert res.loc["big", "gold_star"] < res.loc["small", "gold_star"]
    assert res["peaked"].all()
    # cut before the peak of "small" (d = 1.0): its best point is the last one, which is no peak
    early = pp[~((pp["policy"] == "small") & (pp["kl"] > 0.5 ** 2))]
    cut = peaks_by_policy(early, bootstrap=0).set_index("policy")
    assert not cut.loc["small", "peaked"] and cut.loc["big", "peaked"]
    # the summary table (no prompts): the same peaks, no intervals
    summary = pp.groupby(["method", "policy", "policy_params", "rm_params", "rm_data", "kl_penalty",
                          "samples_per_prompt", "seed", "step"], as_index=False)[["gold", "kl"]].mean()
    plain = peaks_by_policy(summary).set_index("policy")
    np.testing.assert_allclose(plain["gold_star"], res["gold_star"].loc[plain.index])
    assert plain["gold_star_lo"].isna().all()
    with pytest.raises(DataError, match="vary kl_penalty"):
        peaks_by_policy(pd.concat([pp, pp.assign(kl_penalty=0.1)]))
    with pytest.raises(DataError, match="no policy column"):
        peaks_by_policy(pp.drop(columns=["policy"]))


def test_fit_samples_recovers_a_known_saturating_curve_from_an_export():
    from scaling.laws.rlhf import samples_truth_runs
    from scaling.overopt.axes import final_gold, fit_samples

    truth = dict(R_inf=0.8, c=0.6, gamma=0.9)
    runs = samples_truth_runs(truth, ks=(1, 2, 4, 8, 16, 32), seeds=3, noise=0.01, seed=5)
    rows = []
    for r in runs.itertuples():  # an export: three checkpoints per run, the last one is the run's result
        for step, frac in ((0, 0.0), (10, 0.5), (20, 1.0)):
            rows.append(dict(method="rl", policy="d64-l2-h4", policy_params=1e5, rm_params=1e4, rm_data=1000,
                             kl_penalty=0.0, samples_per_prompt=r.samples_per_prompt, seed=r.seed, step=step,
                             gold=frac * r.gold, kl=frac, proxy=frac))
    export_df = pd.DataFrame(rows + [dict(method="bon", n=1, gold=0.0, kl=0.0, policy="d64-l2-h4")])
    end = final_gold(export_df)
    assert len(end) == len(runs) and (end["step"] == 20).all()
    fit = fit_samples(export_df, bootstrap=200, level=0.95)
    for k, v in truth.items():
        lo, hi = fit.ci[k]
        assert lo <= v <= hi, (k, v, lo, hi)
    assert fit.k_at(0.9)["k"] == pytest.approx(10 ** (1 / truth["gamma"]), rel=0.15)
    with pytest.raises(DataError, match="no samples_per_prompt column"):
        fit_samples(export_df.drop(columns=["samples_per_prompt"]))


def test_the_cpu_axes_definition_loads_and_expands():
    """sweeps/overopt-axes-cpu.yaml (not run in tests): 3 policies x k = 1..32 x 2 KL penalties x 2 seeds, one RM each."""
    from scaling.overopt.spec import cells

    spec = load_spec(ROOT / "sweeps" / "overopt-axes-cpu.yaml")
    plan = cells(spec)
    stages = pd.Series([c["stage"] for c in plan]).value_counts().to_dict()
    assert stages == {"rl": 72, "policy": 3, "bon": 6, "data": 1, "rm": 2}
    rl = [c for c in plan if c["stage"] == "rl"]
    for seed in (0, 1):  # one fixed reward model per seed
        assert {c["rm"] for c in rl if c["seed"] == seed} == {f"rm-d32-l2-h4-p24000-s{seed}"}
    assert sorted({c["samples_per_prompt"] for c in rl}) == [1, 2, 4, 8, 16, 32]
    assert {c["policy"] for c in rl} == {"d32-l2-h2", "d64-l2-h4", "d128-l2-h4"}
    ids = [c["id"] for c in plan]
    assert len(set(ids)) == len(ids)
    # every cell's needs come earlier in the plan
    seen = set()
    for c in plan:
        assert set(c["needs"]) <= seen, c["id"]
        seen.add(c["id"])


def test_axes_sweep_through_the_cli(axes_sweep, tmp_path, capsys):
    root, df, _ = axes_sweep
    csv = tmp_path / "axes.csv"
    assert main(["overopt", "export", "overopt-axes-ci", "--root", str(root), "--out", str(csv)]) == 0
    final = pd.read_csv(tmp_path / "axes-final.csv")  # gold at the end of every RL run
    assert len(final) == 6 and set(final["samples_per_prompt"]) == {1, 2, 4}
    capsys.readouterr()
    assert main(["overopt", "samples", str(csv), "--policy", "d16-l1-h2", "--fix", "gamma=1", "--bootstrap", "0",
                 "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["law"] == "rlhf-samples" and out["params"]["gamma"] == 1.0
    want = final[final["policy"] == "d16-l1-h2"].sort_values("samples_per_prompt")["gold"].to_numpy()
    k = np.array([1.0, 2.0, 4.0])  # gamma fixed: R_inf and c are the least-squares line in k^-1
    c, R = np.polyfit(-1 / k, want, 1)
    assert out["params"]["R_inf"] == pytest.approx(R, abs=1e-9) and out["params"]["c"] == pytest.approx(c, abs=1e-9)
    assert main(["overopt", "samples", str(csv)]) == 2
    assert "vary policy" in capsys.readouterr().err
    assert main(["overopt", "peaks", str(tmp_path / "axes-prompts.csv.gz"), "--samples-per-prompt", "4",
                 "--bootstrap", "50", "--json"]) == 0
    peaks = json.loads(capsys.readouterr().out)
    assert [p["policy"] for p in peaks["policies"]] == ["d16-l1-h2", "d32-l1-h2"]
    assert main(["overopt", "peaks", str(csv), "--method", "bon"]) == 0
    assert "gold*" in capsys.readouterr().out
