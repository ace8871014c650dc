"""Fitted irreducible loss E against the exact floor of the synthetic language (issues #12, #15).

Trains ``sweeps/cpu-synthetic-floor.yaml`` (resumable: a second call reuses the store), fits the Chinchilla law
(Approach 3, bootstrap intervals) to its runs, and prints E with its 90% interval next to the Bayes-optimal loss of
the evaluation: exact forward filtering with the true automaton over held-out windows of the sweep's sequence length
(``Automaton.bayes_loss``), which is what a perfect model would score under the trainer's protocol.

    nice -n 10 python benchmarks/synthetic_floor.py --workers 2 --export data/sweeps
    python benchmarks/synthetic_floor.py --runs data/sweeps/cpu-synthetic-floor/runs.csv   # refit the committed runs
    python benchmarks/synthetic_floor.py --definition sweeps/gpu-synthetic-floor.yaml --no-fit --export DIR  # a GPU
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--definition", default="sweeps/cpu-synthetic-floor.yaml")
    ap.add_argument("--root", default="out/sweeps")
    ap.add_argument("--workers", type=int, default=None,
                    help="default: one per core, or the sweep's workers_per_gpu on each GPU")
    ap.add_argument("--runs", default=None, help="fit this runs table instead of training")
    ap.add_argument("--export", default=None, help="write runs.csv and curves.csv under DIR/<sweep name>/")
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--no-fit", action="store_true", help="train and export only (e.g. on a GPU machine)")
    args = ap.parse_args()

    import pandas as pd

    from scaling.sweep import export, run_sweep
    from scaling.sweep.corpus import load_corpus, synthetic_automaton
    from scaling.sweep.spec import load_spec
    from scaling.sweep.train import eval_windows

    spec = load_spec(args.definition)
    if args.runs:
        runs = pd.read_csv(args.runs)
        missing = [c for c in ("N", "D", "loss") if c not in runs.columns]
        if missing:
            raise SystemExit(f"error: {args.runs} has no column(s) {', '.join(missing)}; --runs takes a runs table "
                             "as `scaling sweep export` writes it (N, D, loss, one row per run)")
    else:
        interrupted = False
        try:
            run_sweep(args.definition, root=args.root, workers=args.workers)
        except KeyboardInterrupt:  # Ctrl-C or SIGTERM (e.g. `timeout`): keep what finished, fit nothing
            interrupted = True
        runs, _ = export(spec["name"], args.root, folder=Path(args.export) / spec["name"] if args.export else None)
        if interrupted:
            done = int((runs["status"] == "done").sum()) if "status" in runs else len(runs)
            print(f"interrupted: {done} of {len(runs)} runs finished and exported; rerun to resume the rest "
                  "(no fit on a partial grid)")
            raise SystemExit(130)
    if args.no_fit:
        return
    from scaling.laws import ChinchillaLaw

    runs = runs[runs["status"] == "done"] if "status" in runs else runs
    c = spec["corpus"]
    auto = synthetic_automaton(c)
    val, seq_len = load_corpus(c)[1], int(spec["model"]["seq_len"])
    # exactly the windows every run was scored on (the trainer's fixed evaluation sample)
    floor = auto.bayes_loss(val, seq_len, starts=eval_windows(len(val), seq_len, int(spec["eval"]["tokens"])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ChinchillaLaw(bootstrap=args.bootstrap).fit(runs)
    E, (lo, hi) = fit.params_["E"], fit.ci_["E"]
    print(f"{len(runs)} runs, N {runs['N'].min():,.0f}-{runs['N'].max():,.0f}, D {runs['D'].min():.3g}-"
          f"{runs['D'].max():.3g}; lowest final loss {runs['loss'].min():.4f}")
    print(f"entropy rate {auto.entropy_rate():.4f} nats; Bayes-optimal loss of the evaluation {floor:.4f}")
    print("| fitted E [90% CI] | floor | E / floor - 1 | alpha | beta |\n|---|---|---|---|---|")
    print(f"| {E:.4f} [{lo:.4f}, {hi:.4f}] | {floor:.4f} | {E / floor - 1:+.2%} | {fit.params_['alpha']:.3f} | "
          f"{fit.params_['beta']:.3f} |")


if __name__ == "__main__":
    from scaling.errors import ScalingError

    try:
        main()
    except ScalingError as e:  # bad settings or data: the message names the problem and the fix
        raise SystemExit(f"error: {e}")
