"""Issue 14's published findings against the package's CPU sweeps: fine-tuning (Zhang et al. 2024) and the RLHF
axes, samples per prompt and policy size (Hou et al. 2024; Gao et al. 2022).

    python benchmarks/finetune_findings.py [--finetune data/finetune/finetune-cpu.csv]
        [--overopt data/overopt/overopt-axes-cpu.csv] [--bootstrap 400] [--json out.json] [--no-figures]

Reads the two exports (the per-prompt overoptimization table beside the summary, NAME-prompts.csv.gz, gives the
peaks their intervals), fits with the library (scaling.laws.finetune, scaling.laws.rlhf, scaling.overopt.axes),
prints a markdown table of the findings with a verdict each and the backtests, and draws
data/figures/finetune-cpu.png and data/figures/overopt-axes-cpu.png.

What is fitted
--------------
- finetune law L = A / X^alpha / D_f^beta + E per method: x = N at the largest D_pretrain; x = D_pretrain at the
  middle base size; x = pet_params (LoRA ranks, prompt lengths) at the middle size and the largest D_pretrain.
  LoRA and prompt tuning are compared at one rank / prompt length for x = N and x = D_pretrain (--lora-rank,
  --prompt-tokens; default: the largest of each).
- critical data size (full vs lora, full vs prompt) from the x = N fits at the middle base size.
- backtests: each method's x = N law fitted on every D_f but the largest, predicting the largest (relative error
  of the prediction against each held-out cell, coverage of the 90% prediction interval); the samples-per-prompt
  law fitted on k <= 8 predicting k >= 16.
- rlhf-samples law R(k) = R_inf - c k^-gamma on gold at the end of RL with the KL penalty (--kl-rl, default the
  largest in the export) for the data policy (--policy, default the middle size), with k90 and its interval.
- peaks by policy: RL without a KL penalty at k = --peak-k (default 4): the best checkpoint's gold, its KL and
  sqrt(KL), intervals over held-out prompts; the gain is gold at the peak minus gold at the start (step 0).

The verdict rules (each is also written in the table's "rule" note)
-------------------------------------------------------------------
Intervals are percentile bootstrap intervals at --level (0.9). Differences between two independent fits pair their
bootstrap resamples in order. "Per doubling" gains are the fitted law's relative loss drop 1 - L(2X)/L(X) at the
geometric middle of the X and D_f ranges fitted.

Z1 law holds (per method): beta's interval above 0, RMS log residual <= 0.02 (twice the ~1% run-to-run noise) and
   the largest-D_f backtest's mean |relative error| <= 0.05. yes: all three methods pass; no: none; else partly.
Z2 base size beats pretraining data (per method): difference of per-doubling gains (x=N minus x=D_pretrain).
   Interval above 0: yes for the method; below 0: no; else inconclusive. yes: every method yes; no: every method
   no or none positive at the point estimate; else partly.
Z3 PET parameters help little (lora, prompt): the per-doubling gain of pet_params is below that of N with the
   difference's interval below 0 -> yes for the method; interval above 0 -> no; else inconclusive (partly overall
   unless every method agrees).
Z4 full overtakes PET with enough data (full vs lora, full vs prompt at the middle N): yes for a pair when the
   fitted curves cross inside the D_f range with full the overtaker and at least half the bootstrap crossings in
   range; partly when they cross with full ahead at the top but the crossing is not resolved (fewer than half in
   range); no when PET is ahead at the top or the curves do not cross (one method lower throughout).
   yes overall: both pairs yes; no: both no; else partly.
Z5 prompt unstable / LoRA stable: an "inversion" is loss rising by more than 1% from one D_f to the next on one
   base model and setting. Prompt is unstable if its inversion rate is >= 5% and at least twice LoRA's, or its
   x=pet_params alpha interval lies below 0 (longer prompts worse), or its x=N beta interval reaches 0. LoRA is
   stable if its inversion rate is <= 5% and its beta interval lies above 0. yes: both; partly: one; no: neither.
H1 samples per prompt help, then plateau: c's interval above 0 (more samples help) and k90's interval finite
   and at most the largest k run (the plateau is reached inside the sweep). yes: both; partly: c > 0 but k90 not
   resolved inside the range; no: c's interval reaches 0.
H2 larger policies gain less from RLHF with a fixed RM (RL with the KL penalty, k = --peak-k): gain decreasing
   with policy size at the point estimates and the largest policy's gold-at-peak interval below the smallest's:
   yes; decreasing but intervals overlap: partly; otherwise no.
G1 larger policy overoptimises at about the same KL and gains less (RL, no KL penalty): same KL = the
   sqrt(KL)-at-peak intervals of all policies share a point; gains less = as H2. yes: both; partly: one; no:
   neither.
Hou et al.'s finding on reward-model size is listed as not tested when the sweep has one reward-model size.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.errors import DataError, FitError, ScalingError, ScalingWarning
from scaling.laws import FinetuneLaw, critical_data_size
from scaling.laws.finetune import backtest_largest_df
from scaling.laws.rlhf import backtest_samples
from scaling.overopt.axes import final_gold, fit_samples, peaks_by_policy

ROOT = Path(__file__).resolve().parent.parent
FT_DEFAULT = ROOT / "data" / "finetune" / "finetune-cpu.csv"
OA_DEFAULT = ROOT / "data" / "overopt" / "overopt-axes-cpu.csv"
FIG_FT = ROOT / "data" / "figures" / "finetune-cpu.png"
FIG_OA = ROOT / "data" / "figures" / "overopt-axes-cpu.png"

#: thresholds of the rules (see the module docstring)
RMS_MAX, BACKTEST_MAX, INVERSION_STEP, INVERSION_RATE = 0.02, 0.05, 0.01, 0.05
METHOD_NAMES = {"full": "FMT", "lora": "LoRA", "prompt": "prompt"}


# ----------------------------------------------------------------------------- helpers
def _q(v, level):
    v = np.asarray(v, float)
    v = v[np.isfinite(v)]
    if v.size < 2:
        return [None, None]
    return [float(x) for x in np.quantile(v, [(1 - level) / 2, (1 + level) / 2])]


def _fmt(v, ci=None, digits=3, pct=False, ends=("-inf", "inf")):
    """'0.123 [0.1, 0.15]' (or percent); ``ends`` are written for an interval end that is None (outside)."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "n/a"
    f = (lambda x: f"{100 * x:.{max(digits - 2, 1)}f}%") if pct else (lambda x: f"{x:.{digits}g}")
    s = f(v)
    if ci is not None and len(ci) == 2:
        lo, hi = (ends[0] if ci[0] is None else f(ci[0])), (ends[1] if ci[1] is None else f(ci[1]))
        s += f" [{lo}, {hi}]"
    return s


def _side(ci):
    """+1: interval above 0, -1: below 0, 0: contains 0 (or no interval)."""
    if ci is None or ci[0] is None or ci[1] is None:
        return 0
    return 1 if ci[0] > 0 else (-1 if ci[1] < 0 else 0)


def _combine(verdicts, *, all_yes="yes", all_no="no"):
    v = [x for x in verdicts if x is not None]
    if v and all(x == "yes" for x in v):
        return all_yes
    if not v or all(x == "no" for x in v):
        return all_no
    return "partly"


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, pd.DataFrame):
        return _jsonable(obj.to_dict(orient="records"))
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_,)):
        return bool(obj)
    return obj


def _law_values(params: pd.DataFrame | dict, X, D):
    """L = A X^-alpha D^-beta + E for one parameter set (dict) or a frame of bootstrap draws."""
    p = params
    return p["A"] * np.power(X, -np.asarray(p["alpha"])) * np.power(D, -np.asarray(p["beta"])) + p["E"]


def fit_summary(res, level) -> dict:
    """Parameters, intervals, fit quality of a finetune or rlhf-samples fit."""
    r = res.residuals
    out = {"params": res.params, "ci": res.ci, "n_points": res._state.get("n_points_"),
           "rms_residual": float(np.sqrt(np.mean(np.square(r)))) if r is not None else None,
           "converged": res._state.get("converged_"), "data_range": res._state.get("data_range_")}
    return out


def per_doubling(res, x_mid, d_mid, level):
    """1 - L(2X)/L(X) at (x_mid, d_mid): point and bootstrap draws."""
    p = res.params
    point = float(1 - _law_values(p, 2 * x_mid, d_mid) / _law_values(p, x_mid, d_mid))
    draws = None
    if res._boot is not None:
        B = res.bootstrap_params()
        draws = (1 - _law_values(B, 2 * x_mid, d_mid) / _law_values(B, x_mid, d_mid)).to_numpy(float)
    return point, draws


def _relative(path) -> str:
    """A path relative to the repository when it lies inside it (the JSON is committed), else as given."""
    try:
        return str(Path(path).resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def k90(res, fraction=0.9, level=None):
    """``res.k_at(fraction)``: the k where that fraction of the gain from k = 1 is reached, with its interval."""
    return res.k_at(fraction, level)


def _gmid(values):
    v = np.asarray(values, float)
    return float(np.sqrt(v.min() * v.max()))


# ----------------------------------------------------------------------------- loading
def load_finetune(path) -> pd.DataFrame:
    df = pd.read_csv(path)
    missing = [c for c in ("method", "N", "D_pretrain", "pet_params", "D_f", "loss") if c not in df.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}; this takes `scaling finetune export`'s table")
    return df


def load_overopt(path, prompts=None):
    path = Path(path)
    df = pd.read_csv(path)
    if prompts is None:
        cand = path.with_name(path.stem + "-prompts.csv.gz")
        prompts = cand if cand.exists() else None
    pp = pd.read_csv(prompts) if prompts is not None and Path(prompts).exists() else None
    return df, pp


def settings(ft: pd.DataFrame, lora_rank=None, prompt_tokens=None) -> dict:
    Ns = np.sort(ft["N"].unique())
    Dps = np.sort(ft["D_pretrain"].unique())
    ranks = np.sort(ft.loc[ft["method"] == "lora", "rank"].dropna().unique()) if "rank" in ft else np.array([])
    vts = (np.sort(ft.loc[ft["method"] == "prompt", "virtual_tokens"].dropna().unique())
           if "virtual_tokens" in ft else np.array([]))
    return {"N_mid": float(Ns[len(Ns) // 2]), "N_all": Ns.tolist(), "D_pretrain_max": float(Dps[-1]),
            "D_pretrain_all": Dps.tolist(),
            "lora_rank": float(lora_rank if lora_rank is not None else ranks[-1]) if len(ranks) else None,
            "prompt_tokens": float(prompt_tokens if prompt_tokens is not None else vts[-1]) if len(vts) else None,
            "methods": [m for m in ("full", "lora", "prompt") if m in set(ft["method"])]}


def method_rows(ft, method, st):
    """One method's rows at its chosen PET setting (every rank / length for x = pet_params is taken elsewhere)."""
    d = ft[ft["method"] == method]
    if method == "lora" and st["lora_rank"] is not None:
        d = d[np.isclose(d["rank"], st["lora_rank"])]
    if method == "prompt" and st["prompt_tokens"] is not None:
        d = d[np.isclose(d["virtual_tokens"], st["prompt_tokens"])]
    return d


def select(ft, method, st, x):
    """The rows of one fit: x = N at the largest D_pretrain, x = D_pretrain at the middle N, x = pet_params at both."""
    if x == "pet_params":
        d = ft[ft["method"] == method]
    else:
        d = method_rows(ft, method, st)
    if x in ("N", "pet_params"):
        d = d[np.isclose(d["D_pretrain"], st["D_pretrain_max"])]
    if x in ("D_pretrain", "pet_params"):
        d = d[np.isclose(d["N"], st["N_mid"])]
    return d.reset_index(drop=True)


# ----------------------------------------------------------------------------- fine-tuning analysis
def analyse_finetune(ft: pd.DataFrame, *, bootstrap=400, level=0.9, seed=0, lora_rank=None, prompt_tokens=None,
                     do_backtests=True) -> dict:
    st = settings(ft, lora_rank, prompt_tokens)
    out = {"settings": st, "fits": {}, "critical": {}, "backtests": {}, "doubling": {}, "inversions": {}}
    fits = {}
    for x in ("N", "D_pretrain", "pet_params"):
        for m in st["methods"]:
            if x == "pet_params" and m == "full":
                continue
            rows = select(ft, m, st, x)
            if rows[x].nunique() < 2:
                continue
            law = FinetuneLaw(x=x, method=m, bootstrap=bootstrap, level=level, seed=seed)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ScalingWarning)
                res = law.fit(rows)
            fits[(x, m)] = res
            s = fit_summary(res, level)
            s["warnings"] = [str(w.message) for w in caught]
            s["rows"] = int(len(rows))
            x_mid, d_mid = _gmid(rows[x]), _gmid(rows["D_f"])
            pt, draws = per_doubling(res, x_mid, d_mid, level)
            s["gain_per_doubling"] = {"at": {x: x_mid, "D_f": d_mid}, "value": pt,
                                      "ci": _q(draws, level) if draws is not None else None}
            s["_draws"] = draws
            out["fits"][f"{m}|{x}"] = s
    out["_results"] = fits
    # differences of per-doubling gains (paired resamples of independent fits, in order)
    for m in st["methods"]:
        for other in ("D_pretrain", "pet_params"):
            a, b = out["fits"].get(f"{m}|N"), out["fits"].get(f"{m}|{other}")
            if a is None or b is None:
                continue
            diff_pt = a["gain_per_doubling"]["value"] - b["gain_per_doubling"]["value"]
            ci = None
            if a["_draws"] is not None and b["_draws"] is not None:
                k = min(len(a["_draws"]), len(b["_draws"]))
                ci = _q(a["_draws"][:k] - b["_draws"][:k], level)
            out["doubling"][f"{m}|N-{other}"] = {"value": diff_pt, "ci": ci}
    # critical data size at the middle N (x = N fits)
    for pet in ("lora", "prompt"):
        a, b = fits.get(("N", "full")), fits.get(("N", pet))
        if a is None or b is None:
            continue
        try:
            c = critical_data_size(a, b, at=st["N_mid"], level=level)
            c["crosses"] = True
        except FitError as e:
            c = {"crosses": False, "message": str(e)}
            # which is lower at the top of the range
            lo, hi = a._state["data_range_"]["D_f"]
            la = float(a.predict(N=np.array([st["N_mid"]]), D_f=np.array([hi]))[0])
            lb = float(b.predict(N=np.array([st["N_mid"]]), D_f=np.array([hi]))[0])
            c["lower_at_top"] = "full" if la < lb else pet
        out["critical"][f"full|{pet}"] = c
    # backtests: x = N, every method
    if do_backtests:
        for m in st["methods"]:
            rows = select(ft, m, st, "N")
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ScalingWarning)
                    bt = backtest_largest_df(rows, x="N", method=m, level=level, bootstrap=bootstrap, seed=seed)
                bt.pop("law")
                out["backtests"][m] = bt
            except ScalingError as e:
                out["backtests"][m] = {"error": str(e)}
    # inversions: loss rising with D_f by more than INVERSION_STEP, per base model and setting (seeds averaged)
    keys = [c for c in ("N", "D_pretrain", "rank", "virtual_tokens") if c in ft.columns]
    for m in st["methods"]:
        d = ft[ft["method"] == m].groupby(keys + ["D_f"], dropna=False)["loss"].mean().reset_index()
        ups, total = 0, 0
        for _, g in d.groupby(keys, dropna=False):
            y = g.sort_values("D_f")["loss"].to_numpy(float)
            r = y[1:] / y[:-1] - 1
            ups += int((r > INVERSION_STEP).sum())
            total += len(r)
        out["inversions"][m] = {"rate": ups / total if total else None, "rising_steps": ups, "steps": total}
    return out


# ----------------------------------------------------------------------------- RLHF-axes analysis
def analyse_axes(oa: pd.DataFrame, prompts: pd.DataFrame | None, *, bootstrap=400, level=0.9, seed=0, policy=None,
                 kl_rl=None, peak_k=4.0, do_backtests=True) -> dict:
    pol = (oa[["policy", "policy_params"]].dropna().drop_duplicates().sort_values("policy_params"))
    policies = pol["policy"].tolist()
    policy = policy or policies[len(policies) // 2]
    rl = oa[oa["method"] == "rl"]
    kls = sorted(rl["kl_penalty"].dropna().unique())
    kl_rl = float(kls[-1]) if kl_rl is None else float(kl_rl)
    ks = sorted(rl["samples_per_prompt"].dropna().unique())
    if peak_k not in ks:
        peak_k = float(ks[len(ks) // 2])
    out = {"settings": {"policies": policies, "policy_params": pol["policy_params"].tolist(), "policy": policy,
                        "kl_penalties": kls, "kl_rl": kl_rl, "samples_per_prompt": ks, "peak_k": float(peak_k),
                        "per_prompt": prompts is not None},
           "samples": {}, "samples_backtest": None, "peaks": {}}
    # the samples-per-prompt law, every policy (the data policy is the headline)
    out["_samples"] = {}
    for p in policies:
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", ScalingWarning)
                res = fit_samples(oa, policy=p, kl_penalty=kl_rl, bootstrap=bootstrap, level=level, seed=seed)
            s = fit_summary(res, level)
            s["k90"] = k90(res)
            s["at_bound"] = res.fit_info.get("at_bound", [])
            s["warnings"] = [str(w.message) for w in caught]
            out["samples"][p] = s
            out["_samples"][p] = res
        except ScalingError as e:
            out["samples"][p] = {"error": str(e)}
    # model-free: mean gold at the end of RL at the largest k minus at the smallest, for the headline policy
    t = final_gold(oa, "rl")
    t = t[(t["policy"] == policy) & np.isclose(t["kl_penalty"], kl_rl)]
    g = t.groupby("samples_per_prompt")["gold"].mean().sort_index()
    out["rise"] = {"value": float(g.iloc[-1] - g.iloc[0]) if len(g) > 1 else float("nan"),
                   "k": [float(g.index[0]), float(g.index[-1])], "runs": int(len(t))}
    if do_backtests:
        try:
            table = final_gold(oa, "rl")
            table = table[(table["policy"] == policy) & np.isclose(table["kl_penalty"], kl_rl)]
            bt = backtest_samples(table.drop(columns=["step"]), fit_max_k=8, test_min_k=16, level=level,
                                  bootstrap=bootstrap, seed=seed)
            bt.pop("law")
            out["samples_backtest"] = bt
        except ScalingError as e:
            out["samples_backtest"] = {"error": str(e)}
    # peaks by policy: RL without / with the KL penalty at k = peak_k, and best-of-n
    data = prompts if prompts is not None else oa
    start = {}
    for name, sel in (("rl_kl0", dict(method="rl", kl_penalty=kls[0], samples_per_prompt=peak_k)),
                      ("rl_klpen", dict(method="rl", kl_penalty=kl_rl, samples_per_prompt=peak_k)),
                      ("bon", dict(method="bon"))):
        if name == "rl_klpen" and kl_rl == kls[0]:
            continue
        try:
            pk = peaks_by_policy(data, bootstrap=bootstrap, level=level, seed=seed, **sel)
        except ScalingError as e:
            out["peaks"][name] = {"error": str(e)}
            continue
        # gold at the start of the optimisation (step 0, or n = 1), seeds averaged, from the summary export
        m = oa[oa["method"] == sel["method"]]
        if sel["method"] == "rl":
            m = m[np.isclose(m["kl_penalty"], sel["kl_penalty"]) & np.isclose(m["samples_per_prompt"], peak_k)]
            first = m[m["step"] == m.groupby("policy")["step"].transform("min")]
        else:
            first = m[m["n"] == m.groupby("policy")["n"].transform("min")]
        start = first.groupby("policy")["gold"].mean()
        pk["gold_start"] = pk["policy"].map(start)
        pk["gain"] = pk["gold_star"] - pk["gold_start"]
        out["peaks"][name] = pk
    return out


# ----------------------------------------------------------------------------- findings
def findings(F: dict, A: dict, level=0.9) -> list[dict]:
    rows = []
    st = F["settings"] if F else {}
    methods = st.get("methods", [])

    def fit(m, x):
        return F["fits"].get(f"{m}|{x}") if F else None

    # Z1
    if F:
        per, parts = [], []
        for m in methods:
            s, bt = fit(m, "N"), F["backtests"].get(m, {})
            if s is None:
                continue
            b_ok = _side(s["ci"]["beta"]) > 0
            rms_ok = s["rms_residual"] is not None and s["rms_residual"] <= RMS_MAX
            bt_err = bt.get("mean_abs_rel_error")
            bt_ok = bt_err is not None and bt_err <= BACKTEST_MAX
            per.append("yes" if (b_ok and rms_ok and bt_ok) else "no")
            parts.append(f"{METHOD_NAMES[m]}: beta {_fmt(s['params']['beta'], s['ci']['beta'], 2)}, alpha "
                         f"{_fmt(s['params']['alpha'], s['ci']['alpha'], 2)}, rms log resid {s['rms_residual']:.3f}, "
                         f"backtest err {_fmt(bt_err, pct=True)}")
        rows.append({"id": "Z1", "source": "Zhang et al. 2024",
                     "finding": "the multiplicative law L = A/X^alpha/D_f^beta + E fits FMT, LoRA and prompt tuning",
                     "shows": "; ".join(parts) + " (x = N)" if parts else "not fitted (fewer than 2 base sizes)",
                     "verdict": _combine(per) if per else "n/a",
                     "rule": f"per method: beta CI > 0, rms log residual <= {RMS_MAX}, largest-D_f backtest "
                             f"|error| <= {BACKTEST_MAX:.0%}; yes if all methods pass"})
        # Z2
        per, parts = [], []
        for m in methods:
            d = F["doubling"].get(f"{m}|N-D_pretrain")
            a, b = fit(m, "N"), fit(m, "D_pretrain")
            if d is None:
                continue
            side = _side(d["ci"])
            per.append("yes" if side > 0 else ("no" if side < 0 or d["value"] <= 0 else "inconclusive"))
            parts.append(f"{METHOD_NAMES[m]}: per doubling, N {_gain(a)} vs D_pretrain {_gain(b)}"
                         f", difference {_fmt(d['value'], d['ci'], 3, True)}"
                         f" (alpha {a['params']['alpha']:.2g} vs {b['params']['alpha']:.2g})")
        if per:
            v = "yes" if all(x == "yes" for x in per) else ("no" if all(x == "no" for x in per) else "partly")
            rows.append({"id": "Z2", "source": "Zhang et al. 2024",
                         "finding": "scaling the base model helps fine-tuning more than scaling its pretraining data",
                         "shows": "; ".join(parts), "verdict": v,
                         "rule": "per method, the loss drop per doubling of N minus that of D_pretrain: CI > 0 yes, "
                                 "CI < 0 (or point <= 0) no; yes/no if every method agrees, else partly"})
        # Z3
        per, parts = [], []
        for m in ("lora", "prompt"):
            d = F["doubling"].get(f"{m}|N-pet_params")
            a, b = fit(m, "N"), fit(m, "pet_params")
            if d is None:
                continue
            side = _side(d["ci"])
            per.append("yes" if side > 0 else ("no" if side < 0 else "inconclusive"))
            parts.append(f"{METHOD_NAMES[m]}: per doubling of PET params {_gain(b)} vs of N {_gain(a)}"
                         f", difference {_fmt(d['value'], d['ci'], 3, True)}")
        if per:
            v = "yes" if all(x == "yes" for x in per) else ("no" if all(x == "no" for x in per) else "partly")
            rows.append({"id": "Z3", "source": "Zhang et al. 2024",
                         "finding": "more PET parameters (LoRA rank, prompt length) help little",
                         "shows": "; ".join(parts), "verdict": v,
                         "rule": "per PET method: gain per doubling of N minus that of PET params, CI > 0 yes, "
                                 "CI < 0 no; yes/no if both methods agree, else partly"})
        # Z4
        per, parts = [], []
        for pet in ("lora", "prompt"):
            c = F["critical"].get(f"full|{pet}")
            if c is None:
                continue
            if c["crosses"]:
                frac = c.get("fraction_in_range")
                ends = (f"<{c['range'][0]:.3g}", f">{c['range'][1]:.3g}")  # a CI end outside the D_f range
                if c["overtaker"] == "full" and frac is not None and frac >= 0.5:
                    v = "yes"
                elif c["overtaker"] == "full":
                    v = "partly"
                else:
                    v = "no"
                per.append(v)
                parts.append(f"FMT vs {METHOD_NAMES[pet]}: {METHOD_NAMES.get(c['overtaker'], c['overtaker'])} "
                             f"overtakes at D_f = {_fmt(c['D_f'], c['ci'], 3, ends=ends)}"
                             + (f" ({frac:.0%} of resamples cross in range)" if frac is not None else ""))
            else:
                per.append("no")
                parts.append(f"FMT vs {METHOD_NAMES[pet]}: no crossing in D_f range, "
                             f"{METHOD_NAMES[c['lower_at_top']]} lower throughout")
        if per:
            rows.append({"id": "Z4", "source": "Zhang et al. 2024",
                         "finding": "FMT needs more data but overtakes PET with enough of it (a critical D_f)",
                         "shows": "; ".join(parts) + f" (N = {st['N_mid']:,.0f})", "verdict": _combine(per),
                         "rule": "x=N fits at the middle N cross in range with FMT ahead at the top and >= 50% of "
                                 "resamples crossing in range: yes; FMT ahead but unresolved: partly; else no"})
        # Z5
        inv = F["inversions"]
        pr, lo = fit("prompt", "N"), fit("lora", "N")
        prp = fit("prompt", "pet_params")
        if pr is not None and lo is not None:
            pr_inv, lo_inv = inv["prompt"]["rate"], inv["lora"]["rate"]
            unstable = ((pr_inv >= INVERSION_RATE and pr_inv >= 2 * lo_inv)
                        or (prp is not None and _side(prp["ci"]["alpha"]) < 0)
                        or _side(pr["ci"]["beta"]) <= 0)
            stable = lo_inv <= INVERSION_RATE and _side(lo["ci"]["beta"]) > 0
            # the finding is about prompt tuning: LoRA's stability alone does not reproduce it
            v = "yes" if unstable and stable else ("partly" if unstable else "no")
            shows = (f"loss rising by more than {INVERSION_STEP:.0%} with more data: prompt {pr_inv:.0%} of steps, "
                     f"LoRA {lo_inv:.0%}, FMT "
                     f"{inv.get('full', {}).get('rate', float('nan')):.0%}; beta prompt "
                     f"{_fmt(pr['params']['beta'], pr['ci']['beta'], 2)}, LoRA {_fmt(lo['params']['beta'], lo['ci']['beta'], 2)}")
            if prp is not None:
                shows += f"; prompt-length alpha {_fmt(prp['params']['alpha'], prp['ci']['alpha'], 2)}"
            rows.append({"id": "Z5", "source": "Zhang et al. 2024",
                         "finding": "prompt tuning can scale inversely; LoRA is more stable", "shows": shows,
                         "verdict": v,
                         "rule": f"prompt unstable: inversion rate >= {INVERSION_RATE:.0%} and >= 2x LoRA's, or "
                                 "prompt-length alpha CI < 0, or beta CI reaching 0; LoRA stable: inversion rate "
                                 f"<= {INVERSION_RATE:.0%} and beta CI > 0; yes both, partly prompt unstable "
                                 "alone, no when prompt tuning is not unstable"})
    if A:
        s_ = A["settings"]
        s = A["samples"].get(s_["policy"], {})
        if "params" in s:
            kq = s["k90"]
            kmax = max(s_["samples_per_prompt"])
            rise = A["rise"]
            edge = "gamma" in (s.get("at_bound") or [])
            # gamma at its search bound: the law degenerates (c is then not identified); the model-free rise decides
            helps = _side(s["ci"]["c"]) > 0 or (edge and rise["value"] > 0)
            resolved = (not edge and kq["k"] is not None and kq["ci"] is not None and kq["ci"][1] is not None
                        and kq["ci"][1] <= kmax)
            v = "yes" if helps and resolved else ("partly" if helps else "no")
            shows = (f"policy {s_['policy']}, KL penalty {s_['kl_rl']:g}: gold at k = {kmax:g} minus at k = 1: "
                     f"{rise['value']:.3g} ({rise['runs']} runs); fit: c = {_fmt(s['params']['c'], s['ci']['c'], 3)}, "
                     f"gamma {_fmt(s['params']['gamma'], s['ci']['gamma'], 3)}"
                     + (" (at its search bound: no plateau in the k run)" if edge else "")
                     + f", k90 = {_fmt(kq['k'], kq['ci'], 3, ends=('-inf', 'unbounded'))} "
                     f"(k run: {', '.join(f'{k:g}' for k in s_['samples_per_prompt'])})")
        else:
            v, shows = "n/a", s.get("error", "not fitted")
        rows.append({"id": "H1", "source": "Hou et al. 2024",
                     "finding": "more samples per prompt help at first, then plateau quickly", "shows": shows,
                     "verdict": v, "rule": "c CI > 0 and k90 CI inside the k run: yes; c CI > 0 only: partly; "
                                           "c CI reaching 0: no"})
        rows.append({"id": "H2", "source": "Hou et al. 2024",
                     "finding": "larger policies gain less from RLHF with a fixed reward model",
                     **_gain_row(A["peaks"].get("rl_klpen", A["peaks"].get("rl_kl0")), level),
                     "rule": "gain (gold at peak - at start) falls with policy size and the largest's gold-at-peak "
                             "CI lies below the smallest's: yes; falls but CIs overlap: partly; else no"})
        rows.append({"id": "H3", "source": "Hou et al. 2024", "finding": "larger reward models give modest gains",
                     "shows": "not tested: the sweep has one reward-model size", "verdict": "not tested",
                     "rule": "-"})
        pk = A["peaks"].get("rl_kl0")
        if isinstance(pk, pd.DataFrame) and len(pk) > 1:
            g = _gain_row(pk, level)
            # a policy whose best point is its last one never peaked: its d* is a lower bound, not a peak
            peaked = pk[pk["peaked"]] if "peaked" in pk else pk
            los, his = peaked["d_star_lo"].to_numpy(float), peaked["d_star_hi"].to_numpy(float)
            same = (len(peaked) > 1 and bool(np.all(np.isfinite(los)))
                    and float(np.max(los)) <= float(np.min(his)))
            ds = ", ".join(f"{r.policy}: {_fmt(r.d_star, [r.d_star_lo, r.d_star_hi], 3)}"
                           + ("" if getattr(r, "peaked", True) else " (no peak by the last step: a lower bound)")
                           for r in pk.itertuples())
            v = "yes" if same and g["verdict"] == "yes" else (
                "partly" if same or g["verdict"] in ("yes", "partly") else "no")
            rows.append({"id": "G1", "source": "Gao et al. 2022",
                         "finding": "a larger policy overoptimises at about the same KL and gains less",
                         "shows": f"sqrt(KL) at peak: {ds}; " + g["shows"], "verdict": v,
                         "rule": "same KL: the sqrt(KL)-at-peak CIs of the policies that peak (at least two) share a "
                                 "point; gains less: as H2 (RL, no KL penalty); yes both, partly one"})
    return rows


def _gain(fit_summary_):
    g = fit_summary_["gain_per_doubling"]
    return _fmt(g["value"], g["ci"], 3, True)


def _gain_row(pk, level):
    if not isinstance(pk, pd.DataFrame) or len(pk) < 2:
        return {"shows": "n/a (needs two policies or more)", "verdict": "n/a"}
    pk = pk.sort_values("policy_params")
    gains = pk["gain"].to_numpy(float)
    falling = bool(np.all(np.diff(gains) < 0))
    sep = bool(pk["gold_star_hi"].iloc[-1] < pk["gold_star_lo"].iloc[0])
    v = "yes" if falling and sep else ("partly" if falling else "no")
    shows = "gain at peak: " + ", ".join(
        f"{r.policy} ({r.policy_params:,.0f}): {r.gain:.3g} (gold {_fmt(r.gold_star, [r.gold_star_lo, r.gold_star_hi], 3)})"
        for r in pk.itertuples())
    return {"shows": shows, "verdict": v}


def _legend(ax, **kw):
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kw)


def markdown_table(rows) -> str:
    lines = ["| finding | what the CPU sweep shows | reproduces? |", "|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['finding']} ({r['source']}) | {r['shows']} | {r['verdict']} |")
    return "\n".join(lines)


def backtest_text(F, A) -> str:
    out = []
    if F:
        out.append("Fine-tuning law (x = N at the largest D_pretrain), fitted on the smaller D_f, predicting the largest:")
        out.append("| method | D_f predicted | mean abs rel error | max abs rel error | coverage of 90% PI |")
        out.append("|---|---|---|---|---|")
        for m, bt in F["backtests"].items():
            if "error" in bt:
                out.append(f"| {METHOD_NAMES[m]} | - | {bt['error']} | | |")
                continue
            out.append(f"| {METHOD_NAMES[m]} | {bt['D_f_predicted']:,.0f} | {bt['mean_abs_rel_error']:.2%} | "
                       f"{bt['max_abs_rel_error']:.2%} | {bt['coverage']:.0%} of {bt['n_test_runs']} runs |")
    if A:
        bt = A.get("samples_backtest")
        out.append("")
        if bt is None or "error" in bt:
            out.append(f"Samples-per-prompt law backtest: {bt['error'] if bt else 'not run'}")
        else:
            out.append(f"Samples-per-prompt law fitted on k <= {bt['fit_max_k']:g}, predicting k >= "
                       f"{bt['test_min_k']:g} (policy {A['settings']['policy']}, KL penalty {A['settings']['kl_rl']:g}):"
                       f" mean abs error {bt['mean_abs_error']:.3g}, max {bt['max_abs_error']:.3g}, coverage of the "
                       f"90% PI {bt['coverage']:.0%} of {bt['n_test_runs']} runs")
            for r in bt["table"].itertuples():
                out.append(f"  k = {r.samples_per_prompt:g}: observed {r.observed:.4g}, predicted {r.pred:.4g} "
                           f"[{r.lo:.4g}, {r.hi:.4g}]")
    return "\n".join(out)


# ----------------------------------------------------------------------------- figures
def _curves(ax, rows, res, by, grid, cmap, fmt, extra=None):
    """Mean loss per D_f (points) and the law's curve (line) for each value of ``by``."""
    vals = sorted(rows[by].unique())
    for i, v in enumerate(vals):
        color = cmap(0.9 * i / max(1, len(vals) - 1))
        sub = rows[np.isclose(rows[by], v)]
        r = sub.groupby("D_f")["loss"].mean()
        ax.plot(r.index, r.values, "o", ms=4, color=color, label=fmt(sub.iloc[0]))
        if res is not None:
            X = {by: np.full_like(grid, v), "D_f": grid}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ScalingWarning)
                ax.plot(grid, res.predict(**X), "-", color=color, lw=1.2)


def plot_finetune(ft, st, fits, critical=None):
    """The fine-tuning law against the runs: loss vs D_f, points the runs (seeds averaged), lines the fitted law.

    Top row: each method against base size N (at the largest D_pretrain), then the methods at the middle size with
    the critical data sizes (dashed; band: interval, clipped to the D_f range). Bottom row: each method against
    D_pretrain (at the middle size), then LoRA ranks and prompt lengths (x = pet_params).

    ``st``: ``settings(ft)``; ``fits``: (x, method) -> finetune fit (missing ones are drawn without a curve);
    ``critical``: "full|lora" -> critical_data_size."""
    from scaling.plotting import _plain_loss_axis, _plt

    plt = _plt()
    methods = st["methods"]
    ncol = len(methods) + 1
    fig, axes = plt.subplots(2, ncol, figsize=(4.2 * ncol, 7.6), squeeze=False)
    cmap = plt.get_cmap("viridis")
    grid = np.logspace(np.log10(ft["D_f"].min()), np.log10(ft["D_f"].max()), 100)
    setting = {"lora": f", rank {st['lora_rank']:g}" if st["lora_rank"] else "",
               "prompt": f", {st['prompt_tokens']:g} tokens" if st["prompt_tokens"] else ""}
    for j, m in enumerate(methods):
        ax = axes[0, j]
        _curves(ax, select(ft, m, st, "N"), fits.get(("N", m)), "N", grid, cmap, lambda r: f"N {r['N']:,.0f}")
        ax.set_title(f"{METHOD_NAMES[m]}{setting.get(m, '')}: x = N (D_pretrain {st['D_pretrain_max']:,.0f})",
                     fontsize=9)
        ax = axes[1, j]
        _curves(ax, select(ft, m, st, "D_pretrain"), fits.get(("D_pretrain", m)), "D_pretrain", grid, cmap,
                lambda r: f"D_pretrain {r['D_pretrain']:,.0f}")
        ax.set_title(f"{METHOD_NAMES[m]}{setting.get(m, '')}: x = D_pretrain (N {st['N_mid']:,.0f})", fontsize=9)
    ax = axes[0, -1]
    for j, m in enumerate(methods):
        res = fits.get(("N", m))
        rows = select(ft, m, st, "N")
        r = rows[np.isclose(rows["N"], st["N_mid"])].groupby("D_f")["loss"].mean()
        ax.plot(r.index, r.values, "o", ms=4, color=f"C{j}")
        if res is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ScalingWarning)
                ax.plot(grid, res.predict(N=np.full_like(grid, st["N_mid"]), D_f=grid), "-", color=f"C{j}",
                        label=METHOD_NAMES[m])
    for key, c in (critical or {}).items():
        if c.get("crosses"):
            ax.axvline(c["D_f"], color="0.4", ls="--", lw=0.8)
            if c.get("ci"):
                lo, hi = (c["ci"][0] or c["range"][0]), (c["ci"][1] or c["range"][1])
                ax.axvspan(lo, hi, color="0.5", alpha=0.12)
            ax.text(c["D_f"], 0.02, " " + key.replace("|", " vs ").replace("full", "FMT"), fontsize=7,
                    va="bottom", rotation=90, transform=ax.get_xaxis_transform())
    crosses = any(c.get("crosses") for c in (critical or {}).values())
    ax.set_title(f"methods at N {st['N_mid']:,.0f}: " + ("critical D_f dashed" if crosses else
                                                          "no crossing in the D_f range"), fontsize=9)
    _legend(ax, fontsize=7)
    ax = axes[1, -1]
    for m, by, cm, name in (("lora", "rank", plt.get_cmap("Oranges"), "LoRA rank"),
                            ("prompt", "virtual_tokens", plt.get_cmap("Greens"), "prompt tokens")):
        if m not in methods or by not in ft.columns:
            continue
        rows = select(ft, m, st, "pet_params")
        res = fits.get(("pet_params", m))
        vals = sorted(rows[by].unique())
        for i, v in enumerate(vals):
            color = cm(0.45 + 0.5 * i / max(1, len(vals) - 1))
            sub = rows[np.isclose(rows[by], v)]
            r = sub.groupby("D_f")["loss"].mean()
            ax.plot(r.index, r.values, "o", ms=4, color=color, label=f"{name} {v:g}")
            if res is not None:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ScalingWarning)
                    pet = float(sub["pet_params"].iloc[0])
                    ax.plot(grid, res.predict(pet_params=np.full_like(grid, pet), D_f=grid), "-", color=color, lw=1.2)
    ax.set_title(f"x = pet_params (N {st['N_mid']:,.0f}, D_pretrain {st['D_pretrain_max']:,.0f})", fontsize=9)
    for ax in axes.ravel():
        _legend(ax, fontsize=7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        _plain_loss_axis(ax)
    for ax in axes[1]:
        ax.set_xlabel("fine-tuning tokens D_f")
    for ax in axes[:, 0]:
        ax.set_ylabel("downstream loss [nats/token]")
    fig.tight_layout()
    return fig


def plot_axes(oa, st, samples, peaks):
    """Gold at the end of RL against samples per prompt with the law (and k90), and gold against sqrt(KL) per
    policy for RL without a KL penalty and for best-of-n (x: the peak, with its interval over prompts).

    ``st``: ``analyse_axes(...)["settings"]`` (policies, policy, kl_rl, kl_penalties, samples_per_prompt, peak_k);
    ``samples``: policy -> its rlhf-samples fit; ``peaks``: "rl_kl0" / "bon" -> peaks_by_policy tables."""
    from scaling.plotting import _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.0))
    cmap = plt.get_cmap("viridis")
    colors = {p: cmap(0.9 * i / max(1, len(st["policies"]) - 1)) for i, p in enumerate(st["policies"])}
    ax = axes[0]
    table = final_gold(oa, "rl")
    table = table[np.isclose(table["kl_penalty"], st["kl_rl"])]
    for p in st["policies"]:
        t = table[table["policy"] == p]
        lw = 2.0 if p == st["policy"] else 1.0
        ax.plot(t["samples_per_prompt"], t["gold"], "o", ms=3, alpha=0.5, color=colors[p])
        res = samples.get(p)
        if res is None:
            continue
        kk = np.logspace(0, np.log2(max(st["samples_per_prompt"])) * np.log10(2), 100)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ScalingWarning)
            ax.plot(kk, res.predict(samples_per_prompt=kk), "-", color=colors[p], lw=lw, label=f"{p}")
            if p == st["policy"] and res._boot is not None:
                lo, hi = res.predict_interval(samples_per_prompt=kk, kind="mean")
                ax.fill_between(kk, lo, hi, color=colors[p], alpha=0.2)
        k_90 = k90(res)["k"]
        if p == st["policy"] and k_90 is not None and k_90 <= max(st["samples_per_prompt"]):
            ax.axvline(k_90, color=colors[p], ls="--", lw=0.8)
            ax.text(k_90, 0.02, " k90", fontsize=7, va="bottom", color=colors[p], transform=ax.get_xaxis_transform())
        elif p == st["policy"]:
            where = "undefined" if k_90 is None else f"{k_90:.3g}, beyond the k run"
            ax.text(0.98, 0.02, f"k90 ({p}): {where}", fontsize=7, ha="right", va="bottom", color=colors[p],
                    transform=ax.transAxes)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("samples per prompt k")
    ax.set_ylabel("gold reward at the end of RL")
    ax.set_title(f"R(k) = R_inf - c k^-gamma (KL penalty {st['kl_rl']:g}; band: {st['policy']})", fontsize=9)
    _legend(ax, fontsize=7)
    for ax, (key, title) in zip(axes[1:], (("rl_kl0", f"RL, no KL penalty, k = {st['peak_k']:g}"),
                                            ("bon", "best-of-n"))):
        m = "rl" if key.startswith("rl") else "bon"
        d = oa[oa["method"] == m]
        if m == "rl":
            d = d[np.isclose(d["kl_penalty"], st["kl_penalties"][0]) & np.isclose(d["samples_per_prompt"], st["peak_k"])]
        point = "step" if m == "rl" else "n"
        pk = peaks.get(key)
        for p in st["policies"]:
            c = d[d["policy"] == p].groupby(point)[["gold", "kl"]].mean().sort_index()
            ax.plot(np.sqrt(c["kl"].clip(lower=0)), c["gold"], "-o", ms=3, color=colors[p], label=p)
            if isinstance(pk, pd.DataFrame):
                r = pk[pk["policy"] == p]
                if len(r):
                    r = r.iloc[0]
                    ax.plot(r["d_star"], r["gold_star"], "x", ms=9, mew=2, color=colors[p])
                    if np.isfinite(r["d_star_lo"]):
                        ax.errorbar(r["d_star"], r["gold_star"],
                                    xerr=[[r["d_star"] - r["d_star_lo"]], [r["d_star_hi"] - r["d_star"]]],
                                    yerr=[[r["gold_star"] - r["gold_star_lo"]], [r["gold_star_hi"] - r["gold_star"]]],
                                    color=colors[p], lw=0.8, capsize=2)
        ax.axhline(0, color="0.6", lw=0.8)
        ax.set_xlabel("d = sqrt(KL(pi || pi_init))  [nats^1/2]")
        ax.set_ylabel("gold reward (vs the initial policy)")
        ax.set_title(f"{title}: x = peak (bars: CI over prompts)", fontsize=9)
        _legend(ax, fontsize=7)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- main
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--finetune", default=str(FT_DEFAULT), help="finetune export (scaling finetune export)")
    ap.add_argument("--overopt", default=str(OA_DEFAULT), help="overoptimization export of the RLHF-axes sweep")
    ap.add_argument("--prompts", default=None, help="its per-prompt export (default: NAME-prompts.csv.gz beside)")
    ap.add_argument("--bootstrap", type=int, default=400)
    ap.add_argument("--level", type=float, default=0.9)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lora-rank", type=float, default=None)
    ap.add_argument("--prompt-tokens", type=float, default=None)
    ap.add_argument("--policy", default=None, help="the policy whose samples-per-prompt law is the headline")
    ap.add_argument("--kl-rl", type=float, default=None, help="KL penalty of the samples-per-prompt fit")
    ap.add_argument("--peak-k", type=float, default=4.0, help="samples per prompt of the RL runs for the peaks")
    ap.add_argument("--json", default=None, help="write every number here")
    ap.add_argument("--no-figures", action="store_true")
    ap.add_argument("--fig-finetune", default=str(FIG_FT))
    ap.add_argument("--fig-overopt", default=str(FIG_OA))
    a = ap.parse_args(argv)

    F = A = None
    oa = ft = None
    if Path(a.finetune).exists():
        ft = load_finetune(a.finetune)
        F = analyse_finetune(ft, bootstrap=a.bootstrap, level=a.level, seed=a.seed, lora_rank=a.lora_rank,
                             prompt_tokens=a.prompt_tokens)
    else:
        print(f"(no fine-tuning table at {a.finetune}: skipped)", file=sys.stderr)
    if Path(a.overopt).exists():
        oa, pp = load_overopt(a.overopt, a.prompts)
        A = analyse_axes(oa, pp, bootstrap=a.bootstrap, level=a.level, seed=a.seed, policy=a.policy, kl_rl=a.kl_rl,
                         peak_k=a.peak_k)
    else:
        print(f"(no RLHF-axes table at {a.overopt}: skipped)", file=sys.stderr)
    if F is None and A is None:
        print("error: neither table exists", file=sys.stderr)
        return 2
    rows = findings(F, A, a.level)
    print(markdown_table(rows))
    print()
    print("Rules:")
    for r in rows:
        print(f"  {r['id']}: {r['rule']}")
    print()
    print(backtest_text(F, A))
    if not a.no_figures:
        from scaling.plotting import save

        if F is not None:
            fig = plot_finetune(ft, F["settings"], F["_results"], F["critical"])
            print(f"\nwrote {save(fig, a.fig_finetune)}")
        if A is not None:
            print(f"wrote {save(plot_axes(oa, A['settings'], A['_samples'], A['peaks']), a.fig_overopt)}")
    if a.json:
        def strip(d):
            return {k: strip(v) if isinstance(v, dict) else v for k, v in d.items()
                    if not str(k).startswith("_")} if isinstance(d, dict) else d
        blob = {"finetune": strip(F) if F else None, "axes": strip(A) if A else None, "findings": rows,
                "inputs": {"finetune": _relative(a.finetune), "overopt": _relative(a.overopt),
                           "bootstrap": a.bootstrap, "level": a.level}}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(_jsonable(blob), indent=1))
        print(f"wrote {a.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
