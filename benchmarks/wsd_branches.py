"""The quickstart's IsoFLOP grid as WSD cooldown branches against the same grid as independent cosine runs.

Prints, for the two sweeps trained in this process (both resumable: a second call reuses their stores):
the FLOPs each trained (6 N x tokens, non-embedding; the branched one: each size's stable run once plus every
cooldown), their ratio, and the IsoFLOP allocation exponent a fitted to each (200 bootstrap resamples).
The FLOPs are exact from the grid (``--accounting-only`` prints them without training).

    nice -n 10 python benchmarks/wsd_branches.py --root /tmp/wsd-bench --workers 1
    nice -n 10 python benchmarks/wsd_branches.py --per-doubling 2 --export data/sweeps   # the dense grid

``--per-doubling K`` spaces the quickstart's budget range (3e10 to 2.4e11) with K budgets per doubling of compute
on the quickstart's sizes: more lengths per size, which is where branching a cooldown off one stable run pays.
``--export DIR`` writes each sweep's runs.csv and curves.csv under DIR/<sweep name>/.
"""

from __future__ import annotations

import argparse
import time
import warnings


def definitions(cooldown: float, shape: str, final: float, per_doubling: int = 1, seed: int | None = None) -> dict:
    from scaling.data import sweep_definition
    from scaling.sweep.spec import read_definition

    raw, _ = read_definition(sweep_definition("quickstart"))
    suffix = ""
    if per_doubling > 1:  # the same range of budgets, K to a doubling: 3e10 * 2^(j/K) up to 8x
        raw = dict(raw, grid=dict(raw["grid"], compute=[3.0e10 * 2 ** (j / per_doubling)
                                                        for j in range(3 * per_doubling + 1)]))
        suffix = f"-dense{per_doubling}"
    if seed is not None:  # another training seed, as a sweep of its own
        raw = dict(raw, seeds=[seed])
        suffix += f"-seed{seed}"
    indep = dict(raw, name="qs-cosine" + suffix)
    branched = dict(raw, name="qs-wsd-branches" + suffix, schedule={
        "type": "wsd", "warmup": raw["schedule"]["warmup"], "cooldown": cooldown, "shape": shape,
        "final_lr_frac": final, "branches": True})
    return {"independent (cosine)": indep, f"WSD branches ({shape}, cooldown {cooldown:g})": branched}


def trained_flops(definition: dict) -> tuple[float, float, int]:
    """(FLOPs trained, FLOPs of the rows trained alone, cells) from the expanded grid."""
    from scaling.sweep.branches import trained_tokens
    from scaling.sweep.spec import expand, load_spec

    cells = expand(load_spec(definition))
    trained = sum(6.0 * c["N"] * trained_tokens(c) for c in cells)
    alone = sum(6.0 * c["N"] * c["D"] for c in cells if c.get("kind") != "stable")
    return trained, alone, len(cells)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="/tmp/wsd-bench")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--cooldown", type=float, default=0.2)
    ap.add_argument("--shape", default="1-sqrt")
    ap.add_argument("--final-lr-frac", type=float, default=0.0)
    ap.add_argument("--per-doubling", type=int, default=1, help="budgets per doubling of compute (1: the quickstart's)")
    ap.add_argument("--seed", type=int, default=None, help="train with this seed (a sweep of its own)")
    ap.add_argument("--only", choices=("independent", "branches"), default=None, help="train one of the two sweeps")
    ap.add_argument("--export", default=None, help="write each sweep's runs.csv and curves.csv under DIR/<name>/")
    ap.add_argument("--accounting-only", action="store_true")
    args = ap.parse_args()
    defs = definitions(args.cooldown, args.shape, args.final_lr_frac, args.per_doubling, args.seed)
    rows = []
    base = None
    for label, d in defs.items():
        trained, alone, n = trained_flops(d)
        base = trained if base is None else base
        if args.only and not args.accounting_only and (args.only == "branches") != label.startswith("WSD"):
            rows.append({"sweep": label, "cells": n, "flops_trained": trained, "ratio": trained / base, "a": None,
                         "ci": None, "wall_s": None})
            continue
        row = {"sweep": label, "cells": n, "flops_trained": trained, "ratio": trained / base, "a": None, "ci": None,
               "wall_s": None}
        if not args.accounting_only:
            from scaling.laws import IsoFlopLaw
            from scaling.sweep import export, run_sweep

            t = time.perf_counter()
            run_sweep(d, root=args.root, workers=args.workers, progress=False)
            row["wall_s"] = time.perf_counter() - t
            runs, _ = export(d["name"], args.root, folder=f"{args.export}/{d['name']}" if args.export else None)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                iso = IsoFlopLaw(bootstrap=200).fit(runs[runs["status"] == "done"])
            row["a"], row["ci"] = iso.params_["a"], iso.ci_["a"]
            row["flops_trained_export"] = float(runs["flops_trained"].sum())
        rows.append(row)
    print(f"| sweep | cells | FLOPs trained | ratio to independent | IsoFLOP a [90% CI] | wall s (workers "
          f"{args.workers}) |\n|---|---|---|---|---|---|")
    for r in rows:
        a = "-" if r["a"] is None else f"{r['a']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}]"
        wall = "-" if r["wall_s"] is None else f"{r['wall_s']:.0f}"
        print(f"| {r['sweep']} | {r['cells']} | {r['flops_trained']:.4g} | {r['ratio']:.3f} | {a} | {wall} |")


if __name__ == "__main__":
    main()
