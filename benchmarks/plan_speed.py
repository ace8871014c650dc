"""How long a run plan takes (`scaling predict FIT --model ... --tokens ...`), by the planned run's step count.

A plan works out the learning rate and the curve laws' areas (S1, S2) at every step of the run, and the allocation
check does so again for sizes around the planned one. Baseline in the same process: the schedule built step by
step with `lr_at` and the annealing area's recurrence as a Python loop (how both were computed before 2026-12-01).

    python benchmarks/plan_speed.py            # about a minute on one core
"""

from __future__ import annotations

import platform
import time
import warnings

import numpy as np

from scaling._threads import limit_threads
from scaling.laws import LossCurveLaw
from scaling.plan import make_plan
from scaling.schedules import lr_at, schedule

SCHED = {"type": "cosine", "warmup": 0.05, "final_lr_frac": 0.1}


def step_by_step(steps: int) -> tuple[np.ndarray, np.ndarray]:
    """The baseline: the schedule one step at a time, and S2's momentum recurrence as a loop."""
    lr = np.array([lr_at(s, steps, {"lr": 1.0}, SCHED) for s in range(steps)])
    eta = lr / lr.max()
    drop = np.maximum(np.concatenate([[0.0], eta[:-1] - eta[1:]]), 0.0)
    m = np.empty_like(eta)
    acc = 0.0
    for i, d in enumerate(drop):
        acc = 0.999 * acc + d
        m[i] = acc
    return lr, np.cumsum(m)


def on_arrays(steps: int) -> tuple[np.ndarray, np.ndarray]:
    from scaling.schedules import areas

    lr = schedule(steps, {"lr": 1.0}, SCHED)
    return lr, areas(lr, 1.0)[1]


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - t, out


def main() -> None:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_law_contract import curve_runs  # the tests' synthetic curves with known parameters

    warnings.simplefilter("ignore")
    print(f"machine: {platform.processor() or platform.machine()}, 1 thread")
    with limit_threads(1):
        on_arrays(10)  # imports (scipy.signal) out of the timing
        print(f"\n{'steps':>10} {'schedule+S2 step by step':>26} {'on arrays':>11} {'ratio':>7} {'max rel diff':>13}")
        for steps in (10_000, 100_000, 1_000_000):
            t_old, (lr0, s0) = timed(step_by_step, steps)
            t_new, (lr1, s1) = timed(on_arrays, steps)
            diff = max(np.max(np.abs(lr1 - lr0) / lr0), np.max(np.abs(s1 - s0) / np.maximum(s0, 1e-300)))
            print(f"{steps:>10,} {t_old:>24.2f} s {t_new:>9.3f} s {t_old / t_new:>6.0f}x {diff:>13.1e}")
        law = LossCurveLaw(bootstrap=50).fit(curve_runs())
        print(f"\nwhole plan (tissue fit, bootstrap 50, allocation check included):\n{'steps':>10} {'time':>8}")
        for steps in (10_000, 100_000, 1_000_000):
            t, _ = timed(lambda: make_plan(law, N=2e5, tokens=steps * 4096.0, tokens_per_step=4096))
            print(f"{steps:>10,} {t:>6.2f} s")


if __name__ == "__main__":
    main()
