"""How honest is the IsoFLOP exponent's 90% interval on the quickstart's design? (issue #12)

Simulates sweeps with the quickstart's exact design (the 18 (N, D) runs over 4 budgets of
data/sweeps/quickstart-cosine/runs.csv) from a known Chinchilla law (by default the quickstart's own parametric fit,
whose allocation exponent a = beta / (alpha + beta) = 0.781 is the truth), with multiplicative noise of the size
measured between seeds (0.7% by default), and fits each with IsoFlopLaw two ways:

- ``runs``: the shipped bootstrap, which resamples runs within each budget;
- ``residuals``: an experiment kept here, not in the package: the design (which sizes at which budget) held
  fixed and the residuals of the per-budget parabolas resampled (pooled, scaled by sqrt(n / (n - 3))).

    python benchmarks/isoflop_interval_coverage.py [--sims 60] [--noise 0.007]   # ~6 min for 60 on one core

Prints the point estimate's spread across simulated sweeps, and each interval's coverage of the truth and width.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scaling._threads import limit_threads
from scaling.laws import IsoFlopLaw

ROOT = Path(__file__).resolve().parent.parent
#: the quickstart's parametric fit (seed 0): E, A, B, alpha, beta
TRUTH = (0.0006, 6.4, 858.0, 0.1506, 0.5383)


class ResidualBootstrapIsoFlop(IsoFlopLaw):
    """IsoFlopLaw whose bootstrap keeps the design and resamples the per-budget parabolas' residuals."""

    name = "isoflop-residual-bootstrap-experiment"

    def _resample(self, df, rng):
        fitted, resid = [], []
        for _, g in df.groupby("_budget"):
            x, y = np.log(g["N"].to_numpy(float)), g["loss"].to_numpy(float)
            p = np.polyfit(x, y, 2 if len(np.unique(x)) >= 3 else 1)
            f = np.polyval(p, x)
            fitted.append((g, f))
            resid.append((y - f) * np.sqrt(len(x) / max(len(x) - len(p), 1)))
        pool = np.concatenate(resid)
        return pd.concat([g.assign(loss=f + rng.choice(pool, len(g))) for g, f in fitted], ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--design", default=str(ROOT / "data" / "sweeps" / "quickstart-cosine" / "runs.csv"))
    ap.add_argument("--noise", type=float, default=0.007, help="multiplicative noise of one run's final loss")
    ap.add_argument("--sims", type=int, default=60)
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    design = pd.read_csv(args.design)[["N", "D", "C", "budget"]]
    E, A, B, al, be = TRUTH
    a_true = be / (al + be)
    rng = np.random.default_rng(0)
    rows, t = [], time.time()
    with limit_threads(1):
        for i in range(args.sims):
            d = design.assign(loss=(E + A / design["N"] ** al + B / design["D"] ** be)
                              * np.exp(rng.normal(0.0, args.noise, len(design))))
            row = {}
            for name, cls in (("runs", IsoFlopLaw), ("residuals", ResidualBootstrapIsoFlop)):
                try:
                    fit = cls(bootstrap=args.bootstrap, seed=i).fit(d)
                    row["a"] = fit.params_["a"]
                    row[f"{name} lo"], row[f"{name} hi"] = fit.ci_["a"]
                except Exception:  # a simulated sweep whose profiles have no usable minimum
                    row[f"{name} lo"] = row[f"{name} hi"] = np.nan
            rows.append(row)
    df = pd.DataFrame(rows)
    print(f"{args.sims} simulated sweeps of the quickstart's design, noise {args.noise:.2%}, truth a = {a_true:.3f} "
          f"({time.time() - t:.0f} s)")
    print(f"point estimate: median {df['a'].median():.3f}, sd {df['a'].std():.3f}; within 0.1 of the truth in "
          f"{np.mean(np.abs(df['a'] - a_true) < 0.1):.0%}")
    print("| bootstrap | coverage of the truth (nominal 90%) | median width | width < 0.3 |\n|---|---|---|---|")
    for name in ("runs", "residuals"):
        lo, hi = df[f"{name} lo"], df[f"{name} hi"]
        print(f"| {name} | {np.mean((lo <= a_true) & (a_true <= hi)):.0%} | {(hi - lo).median():.3f} | "
              f"{np.mean(hi - lo < 0.3):.0%} |")


if __name__ == "__main__":
    main()
