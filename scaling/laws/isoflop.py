"""Chinchilla Approach 2: IsoFLOP profiles (Hoffmann et al. 2022, section 3.2).

For each compute budget, fit a parabola to the final loss as a function of
log N, take its minimum as the compute-optimal size, then fit power laws of
the optima against C.
"""

from __future__ import annotations

import math

import warnings
import numpy as np
import pandas as pd

from ..data import prepare
from ..errors import ScalingWarning, DataError, FitError, SettingsError
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


def residual_sampler(df: pd.DataFrame, window, used=None, *, scale_draw: bool = True):
    """A bootstrap sampler that keeps the design (which sizes at which budget) and redraws the losses.

    Each budget's parabola (on the rows ``window(x, y)`` picks) gives fitted losses; the relative residuals,
    divided by sqrt(1 - leverage) so that a 3-parameter fit to 4-5 points does not shrink them, are pooled over
    budgets (the seed noise of a run is a similar fraction of its loss at every budget) and centred. A resample
    puts resampled residuals back on the fitted losses. With few residual degrees of freedom (a budget of n sizes
    gives n - 3) the pooled scale is itself uncertain, so each resample also draws its noise scale from that
    estimate's sampling distribution, sqrt(df / chi2_df): the Student-t correction, done by simulation. Only the
    budgets in ``used`` (codes of ``_budget``; all when None) are redrawn and give residuals: the point fit left the
    others out, and a resample must neither bring them back nor let their misfit set the noise. Rows outside a
    budget's window, and the other budgets, keep their observed losses.
    """
    df = df.sort_values(["_budget", "N"], kind="stable").reset_index(drop=True)
    loss = df["loss"].to_numpy(float)
    fitted = loss.copy()
    rows, resid, dof = [], [], 0
    for code, idx in df.groupby("_budget", sort=True).indices.items():
        x = np.log(df["N"].to_numpy(float)[idx])
        if len(np.unique(x)) < 3 or (used is not None and code not in used):
            continue
        w = idx[window(x, loss[idx])]
        xw = np.log(df["N"].to_numpy(float)[w])
        X = np.vander(xw, 3)
        coef, *_ = np.linalg.lstsq(X, loss[w], rcond=None)
        f = X @ coef
        if np.any(f <= 0):
            continue
        h = np.einsum("ij,ji->i", X, np.linalg.pinv(X))  # leverage of each point
        keep = h < 1 - 1e-9
        fitted[w] = f
        rows.append(w)
        dof += len(w) - 3
        if keep.any():
            resid.append(np.log(loss[w] / f)[keep] / np.sqrt(1 - h[keep]))
    pool = np.concatenate(resid) if resid else np.empty(0)
    if dof < 1 or pool.size == 0:
        raise FitError("isoflop: no budget the fit uses has more sizes than its parabola has parameters (3), so "
                       "the runs say nothing about their own noise; give a budget a 4th size")
    pool = pool - pool.mean()
    rows = np.concatenate(rows)

    def sample(rng: np.random.Generator, B: int) -> list[pd.DataFrame]:
        out = []
        for _ in range(B):
            s = np.sqrt(dof / rng.chisquare(dof)) if scale_draw else 1.0
            y = loss.copy()
            y[rows] = fitted[rows] * np.exp(s * rng.choice(pool, rows.size))
            out.append(df.assign(loss=y))
        return out

    return sample


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

    #: experiment switch for benchmarks/isoflop_interval_coverage.py (not a setting)
    _scale_draw: bool = True

    def __init__(self, *, window: int = 5, resample: str = "residuals", **kwargs):
        self.window = window
        self.resample = resample
        super().__init__(**kwargs)

    def _check_settings(self) -> None:
        super()._check_settings()
        if isinstance(self.window, bool) or not isinstance(self.window, (int, np.integer)) or self.window < 3:
            raise SettingsError(f"isoflop: window (sizes around each budget's best run that its parabola is fitted "
                                f"to) must be a whole number >= 3, got {self.window!r}")
        if self.resample not in ("residuals", "runs"):
            raise SettingsError(f"isoflop: resample must be 'residuals' (the parabolas' residuals, design fixed) "
                                f"or 'runs' (runs within each budget), got {self.resample!r}")

    def _sampler(self, df, opt):
        if self.resample == "runs":
            return super()._sampler(df, opt)
        # opt: the point fit's optima, one row per budget code in order
        used = set(np.unique(df["_budget"].to_numpy())[(opt["status"] == "ok").to_numpy()].tolist())
        return residual_sampler(df, self._window, used, scale_draw=self._scale_draw)

    def _bootstrap_over(self, df) -> str:
        if self.resample == "runs":
            return "runs within each budget"
        return "residuals of the per-budget parabolas (design fixed, noise scale drawn)"

    def _settings_extra(self):
        return {**super()._settings_extra(), "window": self.window, "resample": self.resample}

    def _restore_extra(self, d):
        s = d.get("settings", {})
        self.window = s.get("window", 5)
        self.resample = s.get("resample", "runs")  # fit files written before this setting resampled runs
        return super()._restore_extra(d)

    def _prepare_data(self, data, columns=None, dropna=False, drop_highest_loss=0):
        df = prepare(data, ["N", "D", "C", "loss"], columns=columns, dropna=dropna,
                     flops_per_token_param=self.flops_per_token_param, drop_highest_loss=drop_highest_loss)
        if "budget" in df.columns and df["budget"].notna().all():
            codes, uniques = pd.factorize(df["budget"], sort=True)
            df["_budget"] = codes
        else:  # no budget column, or an N x D sweep's export whose budget is empty: group by C
            if "budget" in df.columns and df["budget"].notna().any():
                n_missing = int(df["budget"].isna().sum())
                warnings.warn(f"isoflop: {n_missing} of {len(df)} rows have no budget; grouping every run by its C "
                              "instead (runs within 10% share a budget)", ScalingWarning, stacklevel=4)
            df["_budget"] = group_budgets(df["C"].to_numpy())
        return df[[c for c in ("run", "N", "D", "C", "loss", "_budget") if c in df.columns]]

    def _resample(self, df, rng):
        # resample runs within each budget, so every budget keeps its size
        parts = [g.iloc[rng.integers(0, len(g), len(g))] for _, g in df.groupby("_budget")]
        return pd.concat(parts, ignore_index=True)

    def _window(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The rows (of a budget sorted by N) its parabola is fitted to, as a mask: all, or every run of the
        ``window`` sizes around the size with the lowest mean loss (seeds of one size count as one size)."""
        sizes, which = np.unique(x, return_inverse=True)
        if len(sizes) <= self.window:
            return np.ones(len(x), bool)
        # a parabola describes the profile only near its minimum: keep the `window` sizes around
        # the best one (far-off sizes, e.g. a starved large model, would drag the vertex away)
        mean = np.bincount(which, weights=y) / np.bincount(which)
        lo = int(np.clip(int(np.argmin(mean)) - self.window // 2, 0, len(sizes) - self.window))
        return (which >= lo) & (which < lo + self.window)

    def _optima(self, df, quiet=False):
        rows = []
        budget, N = df["_budget"].to_numpy(), df["N"].to_numpy(float)
        order = np.lexsort((N, budget))  # by budget, then N (stable)
        lN, lC, loss = np.log(N)[order], np.log(df["C"].to_numpy(float))[order], df["loss"].to_numpy(float)[order]
        starts = np.flatnonzero(np.r_[True, np.diff(budget[order]) != 0, True])
        for i0, i1 in zip(starts[:-1], starts[1:]):
            x, y = lN[i0:i1], loss[i0:i1]
            C = float(np.exp(lC[i0:i1].mean()))
            row = {"C": C, "n_runs": int(i1 - i0), "n_sizes": int(len(np.unique(x))), "N_opt": np.nan,
                   "D_opt": np.nan, "loss_opt": np.nan, "status": "ok"}
            if row["n_sizes"] < 3:
                row["status"] = f"only {row['n_sizes']} model size(s); a parabola needs 3 or more"
                rows.append(row)
                continue
            w = self._window(x, y)
            x, y = x[w], y[w]
            p2, p1, p0 = np.polyfit(x, y, 2)
            if p2 <= 0:
                row["status"] = "loss has no minimum over N (profile curves down); add sizes on both sides"
                rows.append(row)
                continue
            xm = -p1 / (2 * p2)
            if not x.min() <= xm <= x.max():
                side = "below the smallest" if xm < x.min() else "above the largest"
                far = abs(xm - (x.min() if xm < x.min() else x.max())) > math.log(100)  # a nearly flat parabola
                where = (f"minimum more than 100x {side} size sampled (the profile is nearly flat there)" if far
                         else f"minimum at N={np.exp(xm):.3g}, {side} size sampled")
                row["status"] = f"{where}; extend the sizes"
                rows.append(row)
                continue
            row["N_opt"] = float(np.exp(xm))
            row["D_opt"] = C / (self.flops_per_token_param * row["N_opt"])
            row["loss_opt"] = float(p0 + p1 * xm + p2 * xm * xm)
            rows.append(row)
        if not rows:
            raise DataError("no compute budgets found")
        return pd.DataFrame(rows)
