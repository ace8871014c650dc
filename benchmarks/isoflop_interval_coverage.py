"""How honest is the IsoFLOP exponent's 90% interval? (issue #12)

Simulates sweeps with the exact designs (which (N, D) runs at which budget) of the package's committed IsoFLOP
sweeps, from a known Chinchilla law (each design's own parametric fit on its runs or cell means, so its allocation
exponent a = beta / (alpha + beta) is the truth), with multiplicative noise per run, and fits each with IsoFlopLaw
and each way of resampling:

- ``runs``: resample runs within each budget (``resample="runs"``, the default until 2026-12-01);
- ``residuals``: the design held fixed, the parabolas' relative residuals (leverage-corrected, pooled) resampled,
  and each resample's noise scale drawn from its sampling distribution (``resample="residuals"``, the default);
- ``residuals, fixed scale``: the same without the scale draw (the experiment of the first version of this script).

    python benchmarks/isoflop_interval_coverage.py [--sims 50] [--noise 0.0035 0.007 0.014] [--workers 2]

Prints, per design and noise level, the point estimate's spread across simulated sweeps, and each interval's
coverage of the truth and median width.
"""

from __future__ import annotations

import argparse
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from scaling._threads import limit_threads
from scaling.data import replicate_means
from scaling.laws import ChinchillaLaw, IsoFlopLaw

ROOT = Path(__file__).resolve().parent.parent
DESIGNS = ("quickstart-cosine", "qs-cosine-dense2", "cpu-isoflop-seeds", "cpu-synthetic")


class FixedScale(IsoFlopLaw):
    """The residual bootstrap without the draw of the noise scale (experiment, not in the package)."""

    name = "isoflop-fixed-scale-experiment"
    _scale_draw = False


METHODS = {"runs": (IsoFlopLaw, {"resample": "runs"}), "residuals": (IsoFlopLaw, {}),
           "residuals, fixed scale": (FixedScale, {})}


def design_and_truth(name: str) -> tuple[pd.DataFrame, tuple[float, ...]]:
    runs = pd.read_csv(ROOT / "data" / "sweeps" / name / "runs.csv")
    if "seed" in runs.columns and runs["seed"].nunique() > 1:
        runs = replicate_means(runs)
    p = ChinchillaLaw(bootstrap=0).fit(runs).params_
    return runs[["N", "D", "C", "budget"]].reset_index(drop=True), tuple(p[k] for k in ("E", "A", "B", "alpha", "beta"))


def one(job) -> dict:
    design, truth, noise, i, n_boot = job
    warnings.simplefilter("ignore")
    E, A, B, al, be = truth
    rng = np.random.default_rng(i)
    d = design.assign(loss=(E + A / design["N"] ** al + B / design["D"] ** be)
                      * np.exp(rng.normal(0.0, noise, len(design))))
    row = {}
    with limit_threads(1):
        for name, (cls, kw) in METHODS.items():
            try:
                fit = cls(bootstrap=n_boot, seed=i, **kw).fit(d)
                row["a"] = fit.params_["a"]
                row[f"{name} lo"], row[f"{name} hi"] = fit.ci_["a"]
            except Exception:  # a simulated sweep whose profiles have too few usable minima
                row[f"{name} lo"] = row[f"{name} hi"] = np.nan
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--designs", nargs="+", default=list(DESIGNS), help="sweeps under data/sweeps/")
    ap.add_argument("--noise", type=float, nargs="+", default=[0.0035, 0.007, 0.014],
                    help="multiplicative noise of one run's (or cell mean's) final loss")
    ap.add_argument("--sims", type=int, default=50)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    print("| design (runs, budgets) | noise | truth a | estimate sd | " +
          " | ".join(f"{m}: coverage, median width" for m in METHODS) + " |")
    print("|---|---|---|---|" + "---|" * len(METHODS))
    totals = {m: [] for m in METHODS}
    t0 = time.time()
    with ProcessPoolExecutor(args.workers) as pool:
        for name in args.designs:
            design, truth = design_and_truth(name)
            a_true = truth[4] / (truth[3] + truth[4])
            for noise in args.noise:
                rows = list(pool.map(one, [(design, truth, noise, i, args.bootstrap) for i in range(args.sims)]))
                df = pd.DataFrame(rows)
                cells = []
                for m in METHODS:
                    lo, hi = df[f"{m} lo"], df[f"{m} hi"]
                    ok = lo.notna()
                    cov = ((lo <= a_true) & (a_true <= hi))[ok]
                    totals[m].append(cov.to_numpy())
                    cells.append(f"{cov.mean():.0%}, {(hi - lo)[ok].median():.3f}")
                print(f"| {name} ({len(design)}, {design['budget'].nunique()}) | {noise:.2%} | {a_true:.3f} | "
                      f"{df['a'].std():.3f} | " + " | ".join(cells) + " |", flush=True)
    print("| all | | | | " + " | ".join(f"{np.concatenate(totals[m]).mean():.1%} (n={np.concatenate(totals[m]).size})"
                                       for m in METHODS) + " |")
    print(f"({time.time() - t0:.0f} s, {args.sims} simulated sweeps per row, {args.bootstrap} resamples per fit)")


if __name__ == "__main__":
    main()
