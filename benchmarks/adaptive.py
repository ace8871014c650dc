"""Adaptive placement against the fixed grid: FLOPs to reach a 90% interval on a narrower than 0.2.

A replay on a committed IsoFLOP sweep (default: data/sweeps/cpu-isoflop-seeds/runs.csv, 3 seeds a cell), with no
training: the fixed grid costs the FLOPs of all its runs (6 N D each, every seed), and its interval is the one a fit
of all of them gives. The adaptive procedure (scaling/sweep/adaptive.py: fit the seed means, add sizes a factor 2
either side of each budget's N_opt or beyond the edge of a profile without a minimum) starts from a small subset
of each budget's sizes and may add only sizes the committed table has at that budget; their losses are looked up,
every seed of a size at once. So the comparison is honest about being a replay over the grid's own sizes: the
adaptive runs can only be a subset of the grid's.

Prints one row per procedure: runs, FLOPs when a's 90% interval first was narrower than the target (or the width
it ended at), a and its interval there, and the ratio of FLOPs against the full grid; adaptive placement with K = 2
and K = 1 sizes added a budget a round, from three starting subsets; and, as a control, smaller fixed grids (the 4
or 5 middle sizes of each budget): what adaptive placement buys beyond training fewer sizes.

``replicates: auto`` (scaling/sweep/adaptive.py propose_auto) is replayed the same way from one seed a cell: 3 sizes
of each budget (middle, one lower, one higher) or its 4 middle ones, each starting from each of the table's seeds in
turn (the replicates it adds then follow in the table's order after that seed). It may add only rows (size x
budget x seed) the table has; the interval counts under the same rule and is computed by the same fit_profiles.
Controls for it: fixed grids of the 4, 5 or 6 middle sizes of each budget with that one seed.

    nice -n 10 .venv/bin/python benchmarks/adaptive.py
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def start_subset(table: pd.DataFrame, k: int = 3, shift: int = 0) -> pd.DataFrame:
    """The ``k`` sizes around the middle of each budget's sampled sizes (moved ``shift`` sizes up), every seed."""
    keep = []
    for budget, g in table.groupby("budget"):
        sizes = sorted(g["N"].unique())
        lo = int(np.clip(len(sizes) // 2 - k // 2 + shift, 0, len(sizes) - k))
        keep.append(g[g["N"].isin(sizes[lo:lo + k])])
    return pd.concat(keep)


def _candidates(table: pd.DataFrame):
    """The sizes the replay may add at a budget: the ones the committed table has there."""
    def candidates(budget, ref):
        g = table[np.isclose(table["budget"], budget)].drop_duplicates("N")
        return [{"n_layer": int(r.n_layer), "d_model": int(r.d_model), "n_head": int(r.n_head), "N": int(r.N)}
                for r in g.itertuples()]
    return candidates


def _rounds(table: pd.DataFrame, start: pd.DataFrame, target: float, *, rounds: int, bootstrap: int, add,
            describe=None) -> dict:
    """Fit, stop once a's interval is narrower than ``target`` (or the rounds run out), else add the rows
    ``add(fitted)`` returns (rows of ``table``, and a note for the round's history or None) and go again."""
    from scaling.sweep.adaptive import fit_profiles

    have, history = start.copy(), []
    for rnd in range(rounds + 1):
        fitted = fit_profiles(have, bootstrap=bootstrap)
        history.append({"round": rnd, "runs": len(have), "flops": float(have["flops"].sum()), "a": fitted["a"],
                        "ci_a": fitted["ci_a"], "width": fitted["width"], **(describe(have) if describe else {})})
        if fitted["width"] < target or rnd == rounds:
            break
        new, note = add(fitted)
        if note is not None:
            history[-1]["added"] = note
        if new.empty:
            break
        have = pd.concat([have, new])
    return {"history": history, **history[-1]}


def _rows(table: pd.DataFrame, added: list, by_seed: bool = False) -> pd.DataFrame:
    """The table's rows of the added (budget, size) entries; ``by_seed``: only each entry's seeds."""
    rows = [table[np.isclose(table["budget"], a["budget"]) & (table["N"] == a["N"])
                  & (table["seed"].isin(a["seeds"]) if by_seed else True)] for a in added]
    return pd.concat(rows) if rows else table.iloc[:0]


def replay(table: pd.DataFrame, start: pd.DataFrame, target: float, *, rounds: int, per_budget: int,
           step: float, bootstrap: int) -> dict:
    """Adaptive rounds on ``table``'s sizes from ``start``: stop once a's interval is narrower than ``target``."""
    from scaling.sweep.adaptive import propose

    candidates = _candidates(table)

    def add(fitted):
        added, _ = propose(None, fitted, per_budget, step=step, candidates=candidates, refuse=lambda b, n: None)
        return _rows(table, added), None

    return _rounds(table, start, target, rounds=rounds, bootstrap=bootstrap, add=add)


def replay_auto(table: pd.DataFrame, start: pd.DataFrame, target: float, *, rounds: int, per_budget: int,
                seeds: list, step: float, bootstrap: int) -> dict:
    """Rounds of ``replicates: auto`` on ``table``'s rows from ``start``: each round's sizes and replicate seeds
    are looked up (size x budget x seed), and the rounds stop once a's interval is narrower than ``target``."""
    from scaling.sweep.adaptive import propose_auto

    candidates = _candidates(table)

    def add(fitted):
        added, _ = propose_auto(None, fitted, per_budget, seeds=seeds, step=step, candidates=candidates,
                                refuse=lambda b, n: None)
        return _rows(table, added, by_seed=True), {"sizes": sum(a["kind"] == "size" for a in added),
                                                   "replicates": sum(a["kind"] == "replicate" for a in added)}

    def describe(have):
        return {"seeds": have.groupby(["budget", "N"]).size().value_counts().sort_index().to_dict(),
                "per_budget": {f"{b:.0e}": int(n) for b, n in have.groupby("budget").size().items()}}

    return _rounds(table, start, target, rounds=rounds, bootstrap=bootstrap, add=add, describe=describe)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", default=str(ROOT / "data/sweeps/cpu-isoflop-seeds/runs.csv"))
    ap.add_argument("--target", type=float, default=0.2, help="width of a's 90%% interval to reach")
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--add-per-budget", type=int, nargs="+", default=[2, 1], help="K: sizes added a budget a round")
    ap.add_argument("--step", type=float, default=2.0)
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--only-auto", action="store_true", help="replay replicates: auto (and its controls) only")
    args = ap.parse_args()
    from scaling._threads import limit_threads
    from scaling.sweep.adaptive import fit_profiles

    table = pd.read_csv(args.runs)
    table = table[(table["status"] == "done") & table["loss"].notna()]
    if "flops" not in table:
        table["flops"] = 6.0 * table["N"] * table["D"]
    t0 = time.time()
    rows = []
    with limit_threads(1):
        full = fit_profiles(table, bootstrap=args.bootstrap)
        rows.append({"procedure": "fixed grid (all runs)", "runs": len(table), "flops": float(table["flops"].sum()),
                     "a": full["a"], "ci_a": full["ci_a"], "width": full["width"], "rounds": "-"})
        # control: a smaller fixed grid, as many sizes a budget as adaptive rounds end with
        for k in (() if args.only_auto else (4, 5)):
            sub = start_subset(table, k)
            fixed = fit_profiles(sub, bootstrap=args.bootstrap)
            rows.append({"procedure": f"fixed: {k} middle sizes a budget", "runs": len(sub),
                         "flops": float(sub["flops"].sum()), "a": fixed["a"], "ci_a": fixed["ci_a"],
                         "width": fixed["width"], "rounds": "-"})
        for per_budget in ([] if args.only_auto else args.add_per_budget):
            for shift, label in ((0, "middle"), (-1, "one lower"), (1, "one higher")):
                start = start_subset(table, 3, shift)
                res = replay(table, start, args.target, rounds=args.rounds, per_budget=per_budget,
                             step=args.step, bootstrap=args.bootstrap)
                rows.append({"procedure": f"adaptive, K={per_budget}, from 3 sizes ({label})", "runs": res["runs"],
                             "flops": res["flops"], "a": res["a"], "ci_a": res["ci_a"], "width": res["width"],
                             "rounds": res["round"], "trace": res["history"]})
        seeds = sorted(table["seed"].unique())
        for first in seeds:  # replicates: auto, from one seed a cell
            order = seeds[seeds.index(first):] + seeds[:seeds.index(first)]
            for k in (4, 5, 6):
                sub = start_subset(table, k)
                sub = sub[sub["seed"] == first]
                fixed = fit_profiles(sub, bootstrap=args.bootstrap)
                rows.append({"procedure": f"fixed: {k} middle sizes, seed {first}", "runs": len(sub),
                             "flops": float(sub["flops"].sum()), "a": fixed["a"], "ci_a": fixed["ci_a"],
                             "width": fixed["width"], "rounds": "-"})
            for k, shift, label in ((3, 0, "3 middle"), (3, -1, "3, one lower"), (3, 1, "3, one higher"),
                                    (4, 0, "4 middle")):
                start = start_subset(table, k, shift)
                start = start[start["seed"] == first]
                res = replay_auto(table, start, args.target, rounds=args.rounds, per_budget=args.add_per_budget[0],
                                  seeds=order, step=args.step, bootstrap=args.bootstrap)
                rows.append({"procedure": f"auto, K={args.add_per_budget[0]}, {label}, seed {first}",
                             "runs": res["runs"], "flops": res["flops"], "a": res["a"], "ci_a": res["ci_a"],
                             "width": res["width"], "rounds": res["round"], "trace": res["history"]})
    base = rows[0]["flops"]
    print(f"{Path(args.runs).relative_to(ROOT) if Path(args.runs).is_relative_to(ROOT) else args.runs}: "
          f"{len(table)} runs, {table['budget'].nunique()} budgets, target: a's 90% interval narrower than "
          f"{args.target:g}; {args.bootstrap} bootstrap resamples; step {args.step:g}; the 3 starting sizes of "
          "each budget are its middle ones, or moved one size lower or higher\n")
    print(f"{'procedure':<44} {'runs':>5} {'rounds':>6} {'FLOPs':>10} {'ratio':>6}  {'a':>6}  90% interval   "
          "width  met")
    for r in rows:
        ci = "-" if r["ci_a"] is None else f"[{r['ci_a'][0]:.3f}, {r['ci_a'][1]:.3f}]"
        a = "-" if r["a"] is None else f"{r['a']:.3f}"
        print(f"{r['procedure']:<44} {r['runs']:>5} {r['rounds']!s:>6} {r['flops']:>10.3g} {r['flops'] / base:>6.3f}  "
              f"{a:>6}  {ci:<14} {r['width']:.3f}  {'yes' if r['width'] < args.target else 'no'}")
    for r in rows:
        if "trace" not in r:
            continue
        print(f"\n{r['procedure']}, by round:")
        for h in r["trace"]:
            ci = "no interval" if h["ci_a"] is None else f"[{h['ci_a'][0]:.3f}, {h['ci_a'][1]:.3f}]"
            extra = "" if "seeds" not in h else (" cells by seeds " + str(h["seeds"]) + "; runs a budget " + " ".join(
                f"{k}:{v}" for k, v in h["per_budget"].items()) + (
                "" if "added" not in h
                else f"; adds {h['added']['sizes']} sizes, {h['added']['replicates']} replicates"))
            print(f"  round {h['round']}: {h['runs']:>3} runs, {h['flops']:.3g} FLOPs ({h['flops'] / base:.3f}), "
                  f"a {ci}{extra}")
    print(f"\n({time.time() - t0:.0f} s)")


if __name__ == "__main__":
    main()
