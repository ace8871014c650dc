"""The issue-14 laws on synthetic data with known parameters: recovery, backtests, critical data size, fit time.

    python benchmarks/finetune_laws.py [--bootstrap 1000]

- ``finetune`` (Zhang et al. 2024): runs drawn from L = A / N^alpha / D_f^beta + E (5 sizes x 6 D_f x 3 seeds,
  0.5% log-normal noise); fitted on the five smaller D_f, predicting the largest (error of the prediction
  against each held-out cell's mean, coverage of the 90% prediction interval over held-out runs).
- critical data size: two methods whose curves cross at D_f = 1e6 (full fine-tuning: beta 0.3, LoRA 0.15).
- ``rlhf-samples`` (Hou et al. 2024): R(k) = R_inf - c k^-gamma at k = 1..64 (6 seeds, noise 0.02); fitted on
  k <= 8, predicting k >= 16.
- fit time with the bootstrap, against a Chinchilla fit (243-start grid) on the same number of runs in the same
  process (the baseline of the ratio).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from scaling.laws import ChinchillaLaw, FinetuneLaw, SamplesPerPromptLaw, critical_data_size
from scaling.laws.finetune import backtest_largest_df, finetune_truth_runs
from scaling.laws.rlhf import backtest_samples, samples_truth_runs
from scaling.synthetic import sample_runs

TRUTH = dict(A=4000.0, alpha=0.3, beta=0.2, E=1.5)
FULL = dict(A=47.6 * 1e8 ** 0.3 * (1e6 ** 0.15 / 7.9433), alpha=0.3, beta=0.3, E=1.5)
LORA = dict(A=600.0, alpha=0.25, beta=0.15, E=1.5)
RS = dict(R_inf=1.2, c=0.8, gamma=0.7)


def timed(f, *a, **k):
    t = time.perf_counter()
    out = f(*a, **k)
    return out, time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--bootstrap", type=int, default=1000)
    B = ap.parse_args().bootstrap
    warnings.simplefilter("ignore")
    df = finetune_truth_runs(TRUTH, xs=np.logspace(6, 8, 5), dfs=np.logspace(4, 6, 6), seeds=3, noise=0.005, seed=5)
    fit, t_ft = timed(FinetuneLaw(bootstrap=B).fit, df)
    chin = sample_runs(ChinchillaLaw.from_params(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.3),
                       {"N": np.logspace(7, 9, 9), "D": np.logspace(9, 11, 10)}, noise=0.005, seed=5)
    _, t_ch = timed(ChinchillaLaw(bootstrap=B, starts="coarse").fit, chin)
    print(f"finetune fit, {len(df)} runs, bootstrap {B}: {t_ft:.2f} s; chinchilla (coarse) on {len(chin)} runs: "
          f"{t_ch:.2f} s; ratio {t_ft / t_ch:.2f}")
    print("  param   truth   fit     90% CI")
    for k, v in TRUTH.items():
        lo, hi = fit.ci[k]
        print(f"  {k:<6}{v:>8.4g}{fit.params[k]:>9.4g}   [{lo:.4g}, {hi:.4g}]")
    bt = backtest_largest_df(df, bootstrap=B)
    print(f"backtest (fit D_f <= {bt['D_f_fitted'][-1]:.3g}, predict {bt['D_f_predicted']:.3g}): mean |rel error| "
          f"{bt['mean_abs_rel_error']:.4f}, max {bt['max_abs_rel_error']:.4f}, 90% interval coverage "
          f"{bt['coverage']:.2f} of {bt['n_test_runs']} runs")
    two = [finetune_truth_runs(t, xs=np.logspace(7, 9, 5), dfs=np.logspace(5, 7, 7), seeds=2, seed=s, method=m)
           for t, s, m in ((FULL, 3, "full"), (LORA, 4, "lora"))]
    import pandas as pd

    both = pd.concat(two, ignore_index=True)
    a, b = (FinetuneLaw(method=m, bootstrap=B).fit(both) for m in ("full", "lora"))
    cds = critical_data_size(a, b, at=1e8)
    print(f"critical data size at N = 1e8 (truth 1.00e+06): {cds['D_f']:.3g} [{cds['ci'][0]:.3g}, "
          f"{cds['ci'][1]:.3g}], {cds['overtaker']} overtakes {cds['behind']}")
    runs = samples_truth_runs(RS, seeds=6, noise=0.02, seed=4)
    res, t_rs = timed(SamplesPerPromptLaw(bootstrap=B).fit, runs)
    k90 = res.k_at(0.9)
    print(f"rlhf-samples fit, {len(runs)} runs, bootstrap {B}: {t_rs:.2f} s; k90 {k90['k']:.3g} "
          f"[{k90['ci'][0]:.3g}, {k90['ci'][1]:.3g}] (truth {10 ** (1 / RS['gamma']):.3g})")
    bs = backtest_samples(runs, bootstrap=B)
    print(f"backtest (fit k <= 8, predict k >= 16): mean |error| {bs['mean_abs_error']:.4f} (gain c = 0.8), "
          f"coverage {bs['coverage']:.2f} of {bs['n_test_runs']} runs")


if __name__ == "__main__":
    main()
