"""Chinchilla Approach 1: the minimum over training curves (Hoffmann et al. 2022, section 3.1).

For each compute budget, the lowest loss any run reached at that compute (6 N
tokens), and the N and D that reached it; then power laws of those optima
against C.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..curves import prepare_curves
from ..errors import SettingsError
from . import register_law
from .allocation import AllocationLaw


@register_law
class EnvelopeLaw(AllocationLaw):
    """Approach 1: the lower envelope of loss-vs-compute curves across model sizes.

    Input is a curves table (run, N, tokens, loss). Each curve is interpolated in
    log-log space; interpolation never bridges a gap where tokens jump by more
    than ``max_gap`` times. A budget counts only when its best run is neither the
    smallest nor the largest model that reaches it (otherwise the optimum may lie
    beyond the sizes trained).
    """

    name = "envelope"
    optimum_method = "per-budget minima of the training curves' lower envelope"

    def __init__(self, *, n_budgets: int = 40, max_gap: float = 4.0, **kwargs):
        super().__init__(**kwargs)
        self.n_budgets = n_budgets
        self.max_gap = max_gap

    def _prepare_data(self, data, columns=None, dropna=False, drop_highest_loss=0):
        if drop_highest_loss or dropna:
            raise SettingsError("envelope reads training curves: drop_highest_loss and dropna do not apply "
                                "(invalid curve rows are named and left out)")
        df = prepare_curves(data, columns=columns)
        df["C"] = self.flops_per_token_param * df["N"] * df["tokens"]
        return df

    def _resample(self, df, rng):
        runs = df["run"].unique()
        pick = rng.choice(runs, size=len(runs), replace=True)
        parts = [df[df["run"] == r].assign(run=f"{r}#{i}") for i, r in enumerate(pick)]
        return pd.concat(parts, ignore_index=True)

    def _optima(self, df, quiet=False):
        curves = [(float(g["N"].iloc[0]), np.log(g["C"].to_numpy(float)), np.log(g["loss"].to_numpy(float)))
                  for _, g in df.groupby("run")]
        lo = min(c[1][0] for c in curves)
        hi = max(c[1][-1] for c in curves)
        grid = np.linspace(lo, hi, self.n_budgets)
        max_gap = np.log(self.max_gap)
        rows = []
        for lc in grid:
            best, sizes = None, []
            for N, x, y in curves:
                if not x[0] <= lc <= x[-1]:
                    continue
                j = min(np.searchsorted(x, lc), len(x) - 1)
                if j > 0 and x[j] - x[j - 1] > max_gap:
                    continue  # a gap in this curve: do not interpolate across it
                v = float(np.interp(lc, x, y))
                sizes.append(N)
                if best is None or v < best[1]:
                    best = (N, v)
            C = float(np.exp(lc))
            row = {"C": C, "n_runs": len(sizes), "N_opt": np.nan, "D_opt": np.nan, "loss_opt": np.nan, "status": "ok"}
            if len(set(sizes)) < 3:
                row["status"] = f"{len(set(sizes))} model size(s) reach this compute; need 3"
            elif best[0] in (min(sizes), max(sizes)):
                row["status"] = "best run is the smallest or largest size here: optimum may lie beyond"
            else:
                row.update(N_opt=best[0], D_opt=C / (self.flops_per_token_param * best[0]), loss_opt=float(np.exp(best[1])))
            rows.append(row)
        return pd.DataFrame(rows)

    def _unused_budgets_message(self, opt):
        # budgets at the edges are expected here: say so once, briefly
        n = int((opt["status"] != "ok").sum())
        return (f"envelope: {n} of {len(opt)} budgets not used (too few sizes reach them, or the best run is the "
                "smallest/largest size there); see .profiles_")
