"""How precisely does an IsoFLOP grid pin the allocation exponent a, per token trained? (issue #12)

Simulates sweeps of several grids of the quickstart's model family (2-layer Llama, widths 4-48, 1,024 tokens a step)
from a known Chinchilla law, with multiplicative noise per run (0.7%: the seed-to-seed noise measured on these
runs), and estimates a as the `isoflop` law does (per-budget parabola minima, then a log-linear fit of N_opt on C).
Prints, per grid, its runs and tokens, an estimate of its training time, and the spread of a across simulated
sweeps: its sd, its mean against the truth, and how often two sweeps (two seeds) give estimates more than 0.1 apart.

Truths: the Chinchilla fit of the old quickstart's runs (`data/sweeps/quickstart-cosine`, one seed) and of the new
quickstart's four seeds (`data/sweeps/quickstart-seeds`, cell means).

    python benchmarks/quickstart_design.py [--sims 400] [--noise 0.007]
"""

from __future__ import annotations

import argparse
import copy
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from scaling.data import replicate_means
from scaling.laws import ChinchillaLaw, IsoFlopLaw
from scaling.laws.allocation import loglinear_fit
from scaling.sweep import expand, load_spec

ROOT = Path(__file__).resolve().parent.parent
NEW = ROOT / "sweeps" / "quickstart.yaml"
WIDTHS = {4: 1, 6: 1, 8: 1, 10: 1, 12: 2, 14: 1, 16: 2, 18: 3, 20: 2, 24: 3, 28: 2, 32: 4, 36: 3, 40: 4, 48: 6}
#: the quickstart grid until 2026-12-01: 7 widths, a band of 25-1,200 tokens per parameter at every budget
OLD = {"shapes": [8, 12, 16, 20, 24, 28, 32], "compute": [3.0e10, 6.0e10, 1.2e11, 2.5e11],
       "min_tokens_per_param": 25, "max_tokens_per_param": 1200}


def grid(around="shipped", compute=None, shapes=None, band=None) -> pd.DataFrame:
    """(N, D, C, budget, d_model) of the quickstart's definition with the grid changed as given (``around``: the
    shipped grid.around, None for none, or another mapping)."""
    spec = load_spec(NEW)
    raw = copy.deepcopy(spec)
    g = raw["grid"]
    if compute is not None:
        g["compute"] = compute
    if shapes is not None:
        raw["model"]["shapes"] = [{"n_layer": 2, "d_model": d, "n_head": WIDTHS[d]} for d in shapes]
    if around != "shipped":
        g["around"] = None if around is None else {k: v for k, v in around.items() if k != "N_opt"}
    elif g["around"]:
        g["around"] = {k: v for k, v in g["around"].items() if k != "N_opt"}
    g["min_tokens_per_param"], g["max_tokens_per_param"] = band or (None, None)
    raw["name"] = "design"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runs = expand(load_spec(raw))
    return pd.DataFrame([{"N": r["N"], "D": r["D"], "C": 6.0 * r["N"] * r["D"], "budget": r["budget"],
                          "d_model": r["d_model"]} for r in runs if r["seed"] == runs[0]["seed"]])


def truth(name: str) -> tuple[float, ...]:
    runs = pd.read_csv(ROOT / "data" / "sweeps" / name / "runs.csv")
    if "seed" in runs.columns and runs["seed"].nunique() > 1:
        runs = replicate_means(runs)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p = ChinchillaLaw(bootstrap=0).fit(runs).params_
    return tuple(float(p[k]) for k in ("E", "A", "B", "alpha", "beta"))


def spread(design: pd.DataFrame, law: tuple[float, ...], noise: float, sims: int) -> np.ndarray:
    """a of ``sims`` simulated sweeps of ``design`` (NaN where fewer than 2 budgets have a bracketed minimum)."""
    E, A, B, al, be = law
    clean = (E + A / design["N"] ** al + B / design["D"] ** be).to_numpy()
    est = IsoFlopLaw(bootstrap=0)
    out = np.full(sims, np.nan)
    for i in range(sims):
        y = clean * np.exp(np.random.default_rng(i).normal(0.0, noise, len(clean)))
        opt = est._optima(est._prepare_data(design.assign(loss=y)), quiet=True)
        ok = opt[opt["status"] == "ok"]
        if len(ok) >= 2:
            out[i] = loglinear_fit(ok["C"].to_numpy(float), ok["N_opt"].to_numpy(float))[0]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sims", type=int, default=400)
    ap.add_argument("--noise", type=float, default=0.007)
    args = ap.parse_args()
    spec = load_spec(NEW)
    new = spec["grid"]["around"]
    designs = {
        "old quickstart (band of tokens per parameter)": grid(compute=OLD["compute"], shapes=OLD["shapes"], around=None,
                                                              band=(OLD["min_tokens_per_param"], OLD["max_tokens_per_param"])),
        "old budgets, around (ratio 1.8)": grid(compute=OLD["compute"], around=new),
        "new budgets, band 25-1,200": grid(band=(25, 1200), around=None),
        "new budgets, around, ratio 1.3, half a step above": grid(around={**new, "ratio": 1.3}),
        "new budgets, around, ratio 1.8, centred on the optimum": grid(around={**new, "shift": 0.0}),
        "new quickstart (ratio 1.8, half a step above)": grid(),
        "new budgets, around, ratio 2.2, half a step above": grid(around={**new, "ratio": 2.2}),
    }
    truths = {"old quickstart's runs": truth("quickstart-cosine"), "new quickstart's 4 seeds": truth("quickstart-seeds")}
    head = " | ".join(f"{t}: a = {law[4] / (law[3] + law[4]):.3f}; sd, mean, P(two differ > 0.1)" for t, law in truths.items())
    print(f"| grid | runs | tokens | est. time on 2 workers | {head} |")
    print("|---|---|---|---|" + "---|" * len(truths))
    for name, d in designs.items():
        # measured on this machine (2 workers, 1 thread each): about 13 + 0.46 d_model microseconds a token
        secs = float(np.sum(d["D"] * (13 + 0.46 * d["d_model"]) * 1e-6)) / 2
        cells = []
        for law in truths.values():
            a = spread(d, law, args.noise, args.sims)
            pairs = np.abs(a[0::2] - a[1::2])
            cells.append(f"{np.nanstd(a):.3f}, {np.nanmean(a):.3f}, {np.nanmean(pairs > 0.1):.0%}"
                         + (f" ({np.isnan(a).mean():.0%} failed)" if np.isnan(a).any() else ""))
        print(f"| {name} | {len(d)} | {d['D'].sum() / 1e6:.1f}M | {secs:.0f} s | " + " | ".join(cells) + " |", flush=True)
    print(f"({args.sims} simulated sweeps per cell, {args.noise:.1%} noise per run)")


if __name__ == "__main__":
    main()
