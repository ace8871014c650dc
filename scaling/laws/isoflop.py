"""Chinchilla Approach 2: IsoFLOP profiles (Hoffmann et al. 2022, section 3.2).

For each compute budget, fit a parabola to the final loss as a function of
log N, take its minimum as the compute-optimal size, then fit power laws of
the optima against C.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..data import prepare
from ..errors import DataError
from . import register_law
from .allocation import AllocationLaw


def group_budgets(C: np.ndarray, rtol: float = 0.1) -> np.ndarray:
    """Label runs by compute budget: runs within ``rtol`` (relative) of a budget's smallest C share it."""
    order = np.argsort(C)
    labels = np.empty(len(C), int)
    start, k = None, -1
    for i in order:
        if start is None or C[i] > start * (1 + rtol):
            start, k = C[i], k + 1
        labels[i] = k
    return labels


@register_law
class IsoFlopLaw(AllocationLaw):
    """Approach 2: per-budget parabola minima in log N, then N_opt ∝ C^a, D_opt ∝ C^b, L_opt(C).

    Runs are grouped into budgets by a ``budget`` column if present, else by C
    (runs within 10% of each other share a budget). A budget needs at least three
    model sizes and a minimum inside the sampled sizes; others are reported and
    left out. With more than ``window`` sizes, the parabola is fitted to the
    ``window`` sizes around the best run.
    """

    name = "isoflop"
    figure = "isoflop"
    optimum_method = "per-budget parabola minima in log N"

    def __init__(self, *, window: int = 5, **kwargs):
        super().__init__(**kwargs)
        self.window = window

    def _prepare_data(self, data, columns=None, dropna=False, drop_highest_loss=0):
        df = prepare(data, ["N", "D", "C", "loss"], columns=columns, dropna=dropna,
                     flops_per_token_param=self.flops_per_token_param, drop_highest_loss=drop_highest_loss)
        if "budget" in df.columns:
            codes, uniques = pd.factorize(df["budget"], sort=True)
            df["_budget"] = codes
        else:
            df["_budget"] = group_budgets(df["C"].to_numpy())
        return df

    def _resample(self, df, rng):
        # resample runs within each budget, so every budget keeps its size
        parts = [g.iloc[rng.integers(0, len(g), len(g))] for _, g in df.groupby("_budget")]
        return pd.concat(parts, ignore_index=True)

    def _optima(self, df, quiet=False):
        rows = []
        for _, g in df.groupby("_budget"):
            C = float(np.exp(np.log(g["C"]).mean()))
            row = {"C": C, "n_runs": int(len(g)), "n_sizes": int(g["N"].nunique()), "N_opt": np.nan,
                   "D_opt": np.nan, "loss_opt": np.nan, "status": "ok"}
            if row["n_sizes"] < 3:
                row["status"] = f"only {row['n_sizes']} model size(s); a parabola needs 3 or more"
                rows.append(row)
                continue
            g = g.sort_values("N")
            x = np.log(g["N"].to_numpy(float))
            y = g["loss"].to_numpy(float)
            if len(np.unique(x)) > self.window:
                # a parabola describes the profile only near its minimum: keep the `window` sizes around
                # the best run (far-off sizes, e.g. a starved large model, would drag the vertex away)
                j = int(np.argmin(y))
                lo = int(np.clip(j - self.window // 2, 0, len(x) - self.window))
                x, y = x[lo:lo + self.window], y[lo:lo + self.window]
            p2, p1, p0 = np.polyfit(x, y, 2)
            if p2 <= 0:
                row["status"] = "loss has no minimum over N (profile curves down); add sizes on both sides"
                rows.append(row)
                continue
            xm = -p1 / (2 * p2)
            if not x.min() <= xm <= x.max():
                side = "below the smallest" if xm < x.min() else "above the largest"
                row["status"] = f"minimum at N={np.exp(xm):.3g}, {side} size sampled; extend the sizes"
                rows.append(row)
                continue
            row["N_opt"] = float(np.exp(xm))
            row["D_opt"] = C / (self.flops_per_token_param * row["N_opt"])
            row["loss_opt"] = float(p0 + p1 * xm + p2 * xm * xm)
            rows.append(row)
        if not rows:
            raise DataError("no compute budgets found")
        return pd.DataFrame(rows)
