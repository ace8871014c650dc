"""Whole-curve laws on published and on the package's own curves, and live re-forecasting (issue 15).

    python benchmarks/curve_laws.py [--skip-luo] [--skip-reforecast] [--bootstrap 100]

1. Luo et al. 2025's curves (../shared/ref/luo2025_multipower_curves/, MIT): 25M, 100M and 400M models
   under nine schedules. With their split (fit cosine_24000, constant_24000, wsdcon_9; predict
   constant_72000, cosine_72000, wsd_20000_24000, wsdld_20000_24000, wsdcon_3, wsdcon_18), the mean and
   max relative error over every held-out logged point, for `mpl` and `tissue`, fitted per size and
   jointly over the three sizes. The curves go in as a plain table (run, N, step, lr, loss).
2. The package's own sweeps (data/sweeps/*): fit each curve law on the smoothed training loss of every
   run but the two largest models', forecast those runs' final training loss from their configuration
   (the prior), then re-forecast it from their first 10%, 25% and 50% of steps (scaling.monitor.reforecast,
   what `watch` and `Monitor` print at each point). Errors are |forecast - final| / final.
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scaling._threads import limit_threads
from scaling.curves import prepare_curve_points
from scaling.laws import LossCurveLaw, MultiPowerLaw
from scaling.laws.curve import curve_points
from scaling.laws.mpl import fit_each_size
from scaling.monitor import reforecast

ROOT = Path(__file__).resolve().parent.parent
LUO = ROOT.parent / "shared" / "ref" / "luo2025_multipower_curves"
FIT_ON = ("cosine_24000", "constant_24000", "wsdcon_9")
PREDICT = ("constant_72000", "cosine_72000", "wsd_20000_24000", "wsdld_20000_24000", "wsdcon_3", "wsdcon_18")


def luo_points() -> pd.DataFrame:
    frames = []
    for f in sorted(LUO.glob("*.csv")):
        size, sched = f.stem.split("_", 1)
        frames.append(pd.read_csv(f).assign(run=f.stem, N=float(size[:-1]) * 1e6, schedule=sched))
    pts = prepare_curve_points(pd.concat(frames, ignore_index=True))
    return pts.assign(schedule=pts["run"].str.split("_", n=1).str[1])


def per_size(name: str, train: pd.DataFrame) -> dict:
    if name == "mpl":
        return fit_each_size(train, bootstrap=0)
    return {float(N): LossCurveLaw(bootstrap=0, fixed={"A": 1e-12, "alpha": 0.0}).fit(g.reset_index(drop=True))
            for N, g in train.groupby("N")}


def file_weighted(e: pd.Series, runs: pd.Series) -> tuple[float, float]:
    """Luo et al.'s PredE and WorstE: per held-out curve (file) the mean and the max relative error, each averaged
    over the curves, so every schedule counts once (the pooled mean weights the 72k-step curves 3x)."""
    by = e.groupby(runs.to_numpy())
    return float(by.mean().mean()), float(by.max().mean())


def luo() -> None:
    pts = luo_points()
    train = pts[pts["schedule"].isin(FIT_ON)].reset_index(drop=True)
    test = pts[pts["schedule"].isin(PREDICT)].reset_index(drop=True)
    print(f"Luo et al. 2025: fit on {', '.join(FIT_ON)} ({len(train)} points), predict {len(test)} points of "
          f"{', '.join(PREDICT)}")
    print("mean / max: over every held-out point; PredE / WorstE: Luo et al.'s metrics, the per-curve mean and max "
          "averaged over the held-out curves")
    print(f"{'law':<8}{'fit':<10}{'size':>6}{'mean err':>10}{'max err':>9}{'PredE':>9}{'WorstE':>9}{'fit s':>7}")
    for name, cls in (("mpl", MultiPowerLaw), ("tissue", LossCurveLaw)):
        t = time.time()
        fits = per_size(name, train)
        t_each = time.time() - t
        for N, fit in fits.items():
            g = test[test["N"] == N]
            e = np.abs(fit.predict(g) - g["loss"]) / g["loss"]
            pe, we = file_weighted(e, g["run"])
            print(f"{name:<8}{'per size':<10}{N / 1e6:>5.0f}M{100 * e.mean():>9.3f}%{100 * e.max():>8.3f}%"
                  f"{100 * pe:>8.3f}%{100 * we:>8.3f}%{t_each / len(fits):>7.0f}")
        for label, kwargs in (("joint", {}),) + ((("joint, decay by size", {"decay_by_size": True}),)
                                                 if name == "mpl" else ()):
            t = time.time()
            joint = cls(bootstrap=0, **kwargs).fit(train)
            t_joint = time.time() - t
            e_all = np.abs(joint.predict(test) - test["loss"]) / test["loss"]
            for N in sorted(test["N"].unique()):
                e = e_all[test["N"] == N]
                pe, we = file_weighted(e, test["run"][test["N"] == N])
                print(f"{name:<8}{label:<10}{N / 1e6:>5.0f}M{100 * e.mean():>9.3f}%{100 * e.max():>8.3f}%"
                      f"{100 * pe:>8.3f}%{100 * we:>8.3f}%")
            pe, we = file_weighted(e_all, test["run"])
            print(f"{name:<8}{label:<10}{'all':>6}{100 * e_all.mean():>9.3f}%{100 * e_all.max():>8.3f}%"
                  f"{100 * pe:>8.4f}%{100 * we:>8.3f}%{t_joint:>7.0f}")
            print(f"  {label} {name} parameters: " + ", ".join(f"{k}={v:.4g}" for k, v in joint.params_.items()))


def held_out_split(sweep: Path, loss: str = "train_loss"):
    """(runs, points, sizes, held, train) of a committed sweep folder: the finished runs, their curve points,
    the model sizes in order, the runs of the two largest sizes (held out) and the other runs' points."""
    runs = pd.read_csv(sweep / "runs.csv")
    runs = runs[runs["status"] == "done"]
    curves = next(f for f in (sweep / "curves.csv", sweep / "curves.csv.gz") if f.exists())  # exports gzip large ones
    pts = curve_points(pd.read_csv(curves), runs, loss=loss)
    sizes = np.sort(runs["N"].unique())
    held = runs[runs["N"] >= sizes[-2]]
    train = pts[~pts["run"].isin(held["run_id"])].reset_index(drop=True)
    return runs, pts, sizes, held, train


def reforecasts(sweep: Path, bootstrap: int) -> list[dict]:
    runs, pts, sizes, held, train = held_out_split(sweep)
    out = []
    for name, cls in (("tissue", LossCurveLaw), ("mpl", MultiPowerLaw)):
        fit = cls(bootstrap=bootstrap).fit(train)
        for _, r in held.iterrows():
            g = pts[pts["run"] == r["run_id"]].sort_values("step").reset_index(drop=True)
            expected = np.asarray(fit.predict(g), float)
            lo, hi = (np.asarray(v, float)[-1] for v in fit.predict_interval(g))
            final, prior = float(g["loss"].iloc[-1]), float(expected[-1])
            row = {"sweep": sweep.name, "law": name, "run": r["run_id"], "N": r["N"], "steps": int(r["steps"]),
                   "final": final, "config only": abs(prior - final) / final}
            for f in (0.10, 0.25, 0.50):
                seen = g["step"] <= f * r["steps"]
                fc = reforecast(expected[seen], g["loss"][seen], prior, (lo, hi), f,
                                calibration=fit._state.get("reforecast_"))
                row[f"after {int(100 * f)}%"] = abs(fc.final - final) / final
                row[f"covered {int(100 * f)}%"] = bool(fc.lo <= final <= fc.hi)
                row[f"points {int(100 * f)}%"] = int(seen.sum())
            out.append(row)
    return out


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--skip-luo", action="store_true")
    ap.add_argument("--skip-reforecast", action="store_true")
    ap.add_argument("--bootstrap", type=int, default=100)
    a = ap.parse_args()
    warnings.simplefilter("ignore")
    with limit_threads(1):
        if not a.skip_luo:
            if LUO.is_dir():
                luo()
            else:
                print(f"skipped: {LUO} not found")
        if not a.skip_reforecast:
            rows = []
            for sweep in sorted((ROOT / "data" / "sweeps").iterdir()):
                rows += reforecasts(sweep, a.bootstrap)
            df = pd.DataFrame(rows)
            cols = ["config only", "after 10%", "after 25%", "after 50%"]
            pd.set_option("display.width", 200)
            print("\nfinal training loss of the held-out runs (the two largest models of each sweep): |error| / final")
            print(df[["sweep", "law", "N", "steps"] + cols + ["covered 25%", "points 10%", "points 25%"]].to_string(
                index=False, float_format=lambda v: f"{100 * v:.2f}%" if v < 1 else f"{v:,.0f}"))
            med = df.groupby("law")[cols].median()
            print("\nmedian over held-out runs:")
            print(med.to_string(float_format=lambda v: f"{100 * v:.2f}%"))
            print("\nratio to config only (median of per-run ratios):")
            print(df.assign(**{c: df[c] / df["config only"] for c in cols[1:]}).groupby("law")[cols[1:]].median()
                  .to_string(float_format=lambda v: f"{v:.2f}"))
