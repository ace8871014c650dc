"""--law auto against the free Chinchilla fit: backtests on published runs, recovery on synthetic sweeps, time.

Prints four tables:

1. Backtests with the same holdout for both: Besiroglu et al.'s extraction of the Chinchilla runs (the
   240 the replication fits; fit N < 2.5e9, predict the rest) and Muennighoff et al.'s single-epoch C4 runs
   (``../shared/ref/muennighoff2023_datablations_c4_runs.csv``, epochs <= 1, seed replicates averaged; fit
   below 2.5B parameters, predict the larger ones): MAPE, max error, and the coverage of nominal 90%
   intervals, noise-only and total (noise + form error). ``--law auto`` runs its whole selection on the
   training part, targeting the largest held-out N.
2. On synthetic sweeps drawn from each candidate form (known parameters, 1% noise), how often the
   selection picks the generating form.
3. Coverage of the total intervals on synthetic sweeps of the right form (the calibration check of
   tests/test_backtest.py, more seeds).
3b. Backtests on the synthetic sweeps of 2. (the same datasets), ``--law auto`` against the free Chinchilla fit
   with the same holdout on each: fit the 6 smallest of the 8 model sizes, predict the 2 largest (as the
   published runs' backtests hold out the largest N), ``--law auto`` selecting on the training part only.
   Per generating form: mean MAPE over the datasets, the largest error, and the coverage of nominal 90%
   intervals over all held-out runs, noise-only and total.
4. Time of ``--law auto`` (selection and the pick's fit with its bootstrap) against one fit of the
   free Chinchilla law with the same bootstrap, in the same process, on the same data.

    python benchmarks/law_auto.py [--seeds 10] [--bootstrap 200] [--only synthetic]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scaling._threads import limit_threads
from scaling.backtest import backtest
from scaling.data import load_chinchilla
from scaling.laws import ChinchillaLaw, KaplanLaw
from scaling.selection import fit_auto, select
from scaling.synthetic import sample_runs

REF = Path(__file__).resolve().parents[1].parent / "shared" / "ref" / "muennighoff2023_datablations_c4_runs.csv"
GRID = {"N": np.logspace(7, 9.5, 8), "D": np.logspace(9, 11.5, 7)}
FORMS = {
    "chinchilla": ChinchillaLaw.from_params(E=1.7, A=400.0, B=1500.0, alpha=0.26, beta=0.40),
    "chinchilla-tied": ChinchillaLaw.from_params(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.33),
    "kaplan": KaplanLaw.from_params(N_c=6.4e13, D_c=1.8e13, alpha_N=0.076, alpha_D=0.103),
}


def muennighoff_single_epoch() -> pd.DataFrame:
    df = pd.read_csv(REF)
    df = df[df["epochs_D_over_U"] <= 1]
    g = df.groupby("normalized_name", sort=False)
    return pd.DataFrame({"N": g["params_N"].first(), "D": g["tokens_D"].first(),
                         "loss": g["val_loss"].mean()}).reset_index(drop=True)


def published(bootstrap: int) -> None:
    sets = [("Chinchilla (Besiroglu)", load_chinchilla(drop_highest_loss=5)[["N", "D", "loss"]])]
    if REF.exists():
        sets.append(("Muennighoff single-epoch", muennighoff_single_epoch()))
    else:
        print(f"(skipping Muennighoff: {REF} not found)")
    print(f"\n1. backtests, fit N <= 2.5e9, predict the rest; nominal 90% intervals, bootstrap {bootstrap}")
    print(f"{'data':<26}{'law':<28}{'train':>6}{'test':>6}{'MAPE':>8}{'max':>8}{'cov noise':>11}{'cov total':>11}")
    for name, df in sets:
        for law in ("chinchilla", "auto"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                r = backtest(df, law, holdout="N > 2.5e9", bootstrap=bootstrap)
            cov = lambda v: "-" if v is None else f"{100 * v:.0f}%"  # noqa: E731
            print(f"{name:<26}{r.law:<28}{r.n_train:>6}{r.n_test:>6}{100 * r.mape:>7.2f}%{100 * r.max_ape:>7.2f}%"
                  f"{cov(r.coverage_noise):>11}{cov(r.coverage_total):>11}")
            if r.selection:
                print(f"{'':<26}  {r.selection['why']}")


def recovery(seeds: int) -> None:
    print(f"\n2. recovery of the generating form, synthetic sweeps (8 N x 7 D, 1% noise), {seeds} seeds per form")
    print(f"{'generating form':<18}{'recovered':>10}  picks")
    total = hits = 0
    for form, law in FORMS.items():
        picks = []
        for seed in range(seeds):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                picks.append(select(sample_runs(law, GRID, noise=0.01, seed=100 + seed), seed=seed).chosen.label)
        k = sum(p == form for p in picks)
        hits, total = hits + k, total + seeds
        counts = pd.Series(picks).value_counts().to_dict()
        print(f"{form:<18}{f'{k}/{seeds}':>10}  {counts}")
    print(f"{'all':<18}{f'{hits}/{total}':>10}  ({100 * hits / total:.0f}%)")


def synthetic_backtests(seeds: int, bootstrap: int) -> None:
    print(f"\n3b. backtests on the synthetic sweeps of 2. (seeds 100-{99 + seeds}), fit the 6 smallest N, predict the "
          f"2 largest; nominal 90% intervals, bootstrap {bootstrap}")
    print(f"{'generating form':<18}{'law':<12}{'sets':>5}{'test':>6}{'MAPE':>8}{'max':>8}{'cov noise':>11}"
          f"{'cov total':>11}{'auto W-T-L':>12}  picks")
    pooled: dict[str, list] = {"chinchilla": [], "auto": []}
    for form, truth in FORMS.items():
        runs: dict[str, list] = {"chinchilla": [], "auto": []}
        for seed in range(seeds):
            df = sample_runs(truth, GRID, noise=0.01, seed=100 + seed)
            for law in runs:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    runs[law].append(backtest(df, law, holdout_top=0.25, by="N", bootstrap=bootstrap, seed=seed))
        better = _wins(runs["auto"], runs["chinchilla"])
        for law, rs in runs.items():
            pooled[law] += rs
            picks = pd.Series([r.law.removeprefix("auto: ") for r in rs]).value_counts().to_dict()
            print(_synthetic_row(form, law, rs, *((better, picks) if law == "auto" else ("", ""))))
    better = _wins(pooled["auto"], pooled["chinchilla"])
    for law, rs in pooled.items():
        print(_synthetic_row("all", law, rs, better if law == "auto" else "", ""))
    missing = sum(r.coverage_total is None for rs in pooled.values() for r in rs)
    print(f"(W-T-L: datasets where auto's MAPE is lower, equal (it picked chinchilla), higher; {missing} backtests "
          "without a form-error model, whose total interval is the noise one)")


def _wins(auto: list, free: list) -> str:
    d = np.array([a.mape - c.mape for a, c in zip(auto, free)])
    return f"{int((d < -1e-9).sum())}-{int((np.abs(d) <= 1e-9).sum())}-{int((d > 1e-9).sum())}"


def _synthetic_row(form: str, law: str, rs: list, better: str, picks) -> str:
    """One line of table 3b: MAPE averaged over the datasets, max over every held-out run, coverage pooled."""
    t = pd.concat([r.table for r in rs])
    y = t["loss"]
    # a fit without a form-error model (too few training sizes to nest) has only the noise interval: its total is that
    lo, hi = t["total_lo"].fillna(t["noise_lo"]), t["total_hi"].fillna(t["noise_hi"])
    cov = {"noise": 100 * ((y >= t["noise_lo"]) & (y <= t["noise_hi"])).mean(),
           "total": 100 * ((y >= lo) & (y <= hi)).mean()}
    mape = 100 * np.mean([r.mape for r in rs])
    return (f"{form:<18}{law:<12}{len(rs):>5}{len(t):>6}{mape:>7.2f}%{100 * t['ape'].max():>7.2f}%"
            f"{cov['noise']:>10.1f}%{cov['total']:>10.1f}%{better:>12}  {picks}")


def calibration(seeds: int, bootstrap: int) -> None:
    truth = ChinchillaLaw.from_params(E=1.7, A=400.0, B=1500.0, alpha=0.33, beta=0.30)
    noise, total = [], []
    for seed in range(seeds):
        df = sample_runs(truth, GRID, noise=0.01, seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            r = backtest(df, "chinchilla", holdout_top=0.25, by="N", bootstrap=bootstrap, seed=seed, starts="coarse")
        t, y = r.table, r.table["loss"]
        noise.append(((y >= t["noise_lo"]) & (y <= t["noise_hi"])).to_numpy())
        total.append(((y >= t["total_lo"]) & (y <= t["total_hi"])).to_numpy())
    print(f"\n3. calibration on {seeds} synthetic sweeps of the right form (fit 6 smallest N, predict 2 largest): "
          f"nominal 90% intervals cover {100 * np.concatenate(noise).mean():.1f}% (noise only), "
          f"{100 * np.concatenate(total).mean():.1f}% (total)")


def timing(bootstrap: int, repeats: int = 3) -> None:
    df = load_chinchilla(drop_highest_loss=5)
    one, auto = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(repeats):
            t = time.perf_counter()
            ChinchillaLaw(bootstrap=bootstrap).fit(df)
            one.append(time.perf_counter() - t)
            t = time.perf_counter()
            fit_auto(df, bootstrap=bootstrap)
            auto.append(time.perf_counter() - t)
    a, o = min(auto), min(one)
    print(f"\n4. time on the 240 Chinchilla runs (best of {repeats}), bootstrap {bootstrap} in both")
    print(f"{'one free Chinchilla fit (4,500 starts)':<44}{o:8.2f} s   1.00x")
    print(f"{'--law auto (3 candidates x 3 levels + the fit)':<44}{a:8.2f} s   {a / o:.2f}x")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--only", choices=["published", "recovery", "calibration", "synthetic", "timing"])
    args = ap.parse_args()
    print(f"machine: {platform.machine()}, {platform.processor() or platform.system()}, numpy {np.__version__}")
    with limit_threads(1):
        if args.only in (None, "published"):
            published(args.bootstrap)
        if args.only in (None, "recovery"):
            recovery(args.seeds)
        if args.only in (None, "calibration"):
            calibration(2 * args.seeds, args.bootstrap)
        if args.only in (None, "synthetic"):
            synthetic_backtests(args.seeds, args.bootstrap)
        if args.only in (None, "timing"):
            timing(args.bootstrap)


if __name__ == "__main__":
    main()
