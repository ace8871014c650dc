"""Does a live run's observed prefix improve the forecast of its final loss? (issue 15)

On every committed sweep under data/sweeps/ with at least 4 model sizes: fit `mpl` on the watched curve (the
smoothed training loss, or with ``--loss eval_loss`` the held-out loss of the run's evaluations) of every run but
the two largest models' (as benchmarks/curve_laws.py does), forecast those held-out runs' final loss on that curve
from their configuration, then from their first 10%, 25% and 50% of steps, three ways:

- ``full``: the configuration forecast times the run's own offset (the mean log ratio of observed to planned loss
  over the later half of the points seen), taken whole;
- ``additive``: the same offset read in loss rather than log loss (mean of observed - planned over the later half),
  added whole: right if the law's error is mostly in its constant, which a log offset shrinks as the loss falls;
- ``shipped``: `scaling.monitor.reforecast` itself, what `watch` and `Monitor` print: that offset times beta(share),
  the share of such offsets that lasted to the end in the fit's own runs (`FitResult.reforecast_`, learnt when the
  law was fitted; the part of an offset beyond any fitted run's taken whole);
- ``seen/(seen+0.1)``: the rule shipped before 2026-12-02 evening, the offset weighted by seen / (seen + 0.1)
  whatever the sweep;
- ``nested``: the offset times a factor beta learnt from the fitting data alone: hold out the largest *training*
  size, refit on the rest, and regress those runs' final log error on their prefix offsets (beta = sum(e a) /
  sum(a^2), clipped to [0, 1.5]). beta near 0 says the prefix did not predict the end in the sweep's own data.

    python benchmarks/reforecast_nested.py [--loss train_loss|eval_loss] [--decay-by-size]   # ~8 min on one core

``--loss eval_loss`` forecasts the final held-out loss (the runs table's ``loss``: the whole evaluation sample,
standard error ~0.2%) from the run's evaluations (those during the run use a smaller subset, ``eval.curve_tokens``);
the default, the smoothed training loss, is what a training log holds, but late in a run it moves by a median
0.6-3% from one logged point to the next on these sweeps, which bounds how well any prefix can call its end.

Errors are |forecast - final| / final; ratios are per run against the configuration-only error, then the median.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scaling._threads import limit_threads
from scaling.laws import MultiPowerLaw
from scaling.laws.reforecast import prefix_offset  # the offset as `reforecast` reads it
from scaling.monitor import reforecast

from curve_laws import held_out_split  # benchmarks/ is on the path when this runs as a script

ROOT = Path(__file__).resolve().parent.parent / "data" / "sweeps"
SHARES = (0.10, 0.25, 0.50)


def offsets(fit, pts: pd.DataFrame, runs: pd.DataFrame) -> list[tuple[float, dict, float, float, dict, dict]]:
    """Per run: (final log error, {share: prefix offset}, planned final, actual final, {share: shipped forecast},
    {share: additive offset})."""
    cal = fit._state.get("reforecast_")
    out = []
    for _, r in runs.iterrows():
        g = pts[pts["run"] == r["run_id"]].sort_values("step").reset_index(drop=True)
        m = np.asarray(fit.predict(g), float)
        y = g["loss"].to_numpy(float)
        res = np.log(y) - np.log(m)
        seen = {f: (g["step"] <= f * r["steps"]).to_numpy() for f in SHARES}
        a = {f: prefix_offset(res[seen[f]]) for f in SHARES}
        add = {f: prefix_offset((y - m)[seen[f]]) for f in SHARES}  # the same offset in loss, not in log loss
        # the point forecast does not depend on the band: pass the plan's final as both ends
        shipped = {f: reforecast(m[seen[f]], y[seen[f]], float(m[-1]), (float(m[-1]), float(m[-1])), f,
                                 calibration=cal).final for f in SHARES}
        out.append((float(res[-1]), a, float(m[-1]), float(y[-1]), shipped, add))
    return out


def sweep_rows(sweep: Path, loss: str, **law) -> tuple[list[dict], dict]:
    runs, pts, sizes, held, train = held_out_split(sweep, loss)
    if len(sizes) < 4:  # two held out, one for the nested fit, at least one to fit it on
        return [], {}
    fit = MultiPowerLaw(bootstrap=0, **law).fit(train)
    inner_held = runs[runs["N"] == sizes[-3]]
    inner = MultiPowerLaw(bootstrap=0, **law).fit(train[~train["run"].isin(inner_held["run_id"])].reset_index(drop=True))
    cal = offsets(inner, pts, inner_held)
    beta = {f: float(np.clip(sum(e * a[f] for e, a, *_ in cal) / max(sum(a[f] ** 2 for e, a, *_ in cal), 1e-12),
                             0.0, 1.5)) for f in SHARES}
    rows = []
    for _, a, prior, final, shipped, add in offsets(fit, pts, held):
        row = {"sweep": sweep.name, "config only": abs(prior - final) / final}
        for f in SHARES:
            for name, fc in (("full", prior * np.exp(a[f])), ("additive", prior + add[f]), ("shipped", shipped[f]),
                             ("seen/(seen+0.1)", prior * np.exp(f / (f + 0.1) * a[f])),
                             ("nested", prior * np.exp(beta[f] * a[f]))):
                row[f"{name} {int(100 * f)}%"] = abs(fc - final) / final
        rows.append(row)
    return rows, beta


def main() -> None:
    import argparse

    ap = argparse.ArgumentParser()
    ap.add_argument("--loss", default="train_loss", choices=("train_loss", "eval_loss"),
                    help="the curve fitted, watched and forecast: the smoothed training loss (what a training log "
                         "holds) or the held-out loss of the run's evaluations (few points, each precise)")
    ap.add_argument("--decay-by-size", action="store_true", help="fit mpl with decay_by_size (kappa_B free)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    rows = []
    with limit_threads(1):
        for sweep in sorted(p for p in ROOT.iterdir() if (p / "runs.csv").exists()):
            got, beta = sweep_rows(sweep, args.loss, decay_by_size=args.decay_by_size)
            if not got:
                print(f"{sweep.name}: skipped (fewer than 4 model sizes)")
                continue
            rows += got
            print(f"{sweep.name}: {len(got)} held-out runs; nested beta at 10/25/50%: "
                  + " / ".join(f"{beta[f]:.2f}" for f in SHARES), flush=True)
    df = pd.DataFrame(rows)
    cols = [c for c in df if c != "sweep"]
    pd.set_option("display.width", 250)
    print(f"\nmedian |error| / final over {len(df)} held-out runs:")
    print(df[cols].median().to_frame().T.to_string(index=False, float_format=lambda v: f"{100 * v:.2f}%"))
    print("\nmedian of per-run ratios to the configuration-only error:")
    print(df[cols].div(df["config only"], axis=0).median().to_frame().T.to_string(index=False,
                                                                                   float_format=lambda v: f"{v:.2f}"))
    print("\nshare of runs whose error grew by more than 0.1% of the final loss:")
    print(df[cols].sub(df["config only"], axis=0).gt(0.001).mean().to_frame().T.to_string(
        index=False, float_format=lambda v: f"{100 * v:.0f}%"))
    print("\nper sweep (median):")
    print(df.groupby("sweep")[cols].median().to_string(float_format=lambda v: f"{100 * v:.1f}%"))


if __name__ == "__main__":
    main()
