"""A schedule-aware law for the whole loss curve (Tissue et al. 2024, joined with model size).

Tissue et al. write the loss after step s of one model as
L(s) = L0 + A S1^-alpha - C S2, with S1 the summed learning rate ("forward area")
and S2 the annealing area with momentum (see :func:`scaling.schedules.areas`). We
make the constant depend on model size the way the Chinchilla law does and keep
the rest shared across sizes:

    L(N, S1, S2) = E + A / N^alpha + B / S1^beta - C * S2

with S1 measured in full-rate tokens (so runs with different batch sizes share
one axis). The data term B / S1^beta plays Chinchilla's B / D^beta for a constant
schedule; C * S2 is the extra drop an annealed learning rate buys. One fit across
a sweep's curves then predicts any model size under any schedule. This is a
choice, made because the sweep varies N and D far more than anything else and a
shared data exponent is what the Chinchilla fits support; `kaplan-ns` is the
schedule-blind alternative.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd

from ..schedules import areas
from . import register_law
from .base import Param
from .kaplan import _FunctionLaw


def _plain_curves(data, columns):
    """``(table, names)`` when ``data`` is a plain curves table (no ``S1``; ``run`` and ``step`` under
    ``columns``' names), ``(None, None)`` when it already holds a curve law's inputs or is not a table."""
    from ..data import parse_columns, read_table
    from ..errors import DataError

    if not isinstance(data, (pd.DataFrame, str, Path)):
        return None, None
    table = read_table(data)
    mapping = parse_columns(columns)
    name = {c: mapping.get(c, c) for c in ("run", "step", "lr", "loss", "S1")}
    if name["S1"] in table.columns:
        return None, None
    if name["run"] not in table.columns and "run_id" in table.columns and "run" not in mapping:
        name["run"] = "run_id"  # a sweep's own curves name their runs so
    if not {name["run"], name["step"]} <= set(table.columns):  # with them, prepare_curve_points names what lacks
        raise DataError(
            "a curve law fits points along runs (inputs N, S1, ...: areas under each run's learning rate); give a "
            "plain curves table with columns run, N, step, lr, loss (map yours with columns=..., e.g. "
            "'run=Name,step=Step,lr=trainer/learning_rate,loss=train/loss'), or a sweep's curves with its runs "
            f"table through scaling.laws.curve.curve_points(curves, runs); this table has {list(table.columns)}")
    return table, name


def as_curve_points(data, columns=None, *, dropna: bool = False):
    """``(table, columns)`` a curve law fits: a plain curves table (``run, N, step, lr, loss``, as exported from
    W&B, TensorBoard or a training log; ``columns`` maps yours) becomes the laws' per-point inputs through
    :func:`scaling.curves.prepare_curve_points` (S2 with its default momentum; call it yourself for another);
    a table that already has them is returned as it is."""
    from ..curves import prepare_curve_points

    table, _ = _plain_curves(data, columns)
    if table is None:
        return data, columns
    return prepare_curve_points(table, columns=columns, dropna=dropna), None


def curve_inputs(data, columns=None):
    """``(points, rows)`` to predict a plain curves table's rows: the points in run and step order (the order a
    curve law reads a run's schedule in) and, for each row of the table, its point (``rows``), so predictions
    come back in the table's order. ``(data, None)`` for anything else. The loss column is not needed."""
    from ..curves import prepare_curve_points

    table, name = _plain_curves(data, columns)
    if table is None:
        return data, None
    from ..data import first_row
    from ..errors import DataError

    for what in ("run", "step"):
        missing = table[name[what]].isna() | (pd.to_numeric(table[name[what]], errors="coerce").isna()
                                              if what == "step" else False)
        if missing.any():
            raise DataError(f"{int(missing.sum())} row(s) of the curves table have no {what} (first at row "
                            f"{first_row(missing)}): every row to predict needs its run and step")
    table = table.assign(**{name["loss"]: 1.0, name["step"]: pd.to_numeric(table[name["step"]], errors="coerce")})
    ordered = table.sort_values([name["run"], name["step"]], kind="stable")  # any row order predicts
    pts = prepare_curve_points(ordered, columns=columns).drop(columns="loss")
    where = pd.Series(np.arange(len(pts)), index=pd.MultiIndex.from_frame(pts[["run", "step"]]))
    keys = pd.MultiIndex.from_arrays([table[name["run"]], table[name["step"]]])
    return pts, where.reindex(keys).to_numpy(int)


@register_law
class LossCurveLaw(_FunctionLaw):
    """L(N, S1, S2) = E + A/N^alpha + B/S1^beta - C S2, fitted to per-step losses of many runs."""

    name = "tissue"
    inputs = ("N", "S1", "S2")
    parameters = (Param("E", log=True), Param("A", log=True), Param("alpha", lower=0.0), Param("B", log=True),
                  Param("beta", lower=0.0), Param("C", log=True, description="annealing bonus per unit of S2"))
    formula: ClassVar[str] = "L(N, t) = E + A/N^alpha + B/S1(t)^beta - C S2(t)"
    bootstrap_groups: ClassVar[str | None] = "run"
    curve_law = True
    nonnegative_inputs: ClassVar[tuple[str, ...]] = ("S2",)

    def _input_frozen(self, name: str) -> bool:
        # one model size: fix A (and alpha) and E is that size's constant
        return name == "N" and "A" in self.fixed

    def _terms(self, theta, X):
        lE, lA, al, lB, be, lC = (theta[:, i:i + 1] for i in range(6))
        lN, lS1, S2 = np.log(X["N"])[None, :], np.log(X["S1"])[None, :], X["S2"][None, :]
        tA = np.exp(lA - al * lN)
        tB = np.exp(lB - be * lS1)
        tC = np.exp(lC) * S2
        L = np.exp(lE) + tA + tB - tC
        return lE, lN, lS1, tA, tB, tC, L

    def _log_predict(self, theta, X):
        L = self._terms(np.atleast_2d(theta), X)[-1]
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(L > 0, np.log(np.where(L > 0, L, 1.0)), np.nan)

    def _jacobian(self, theta, X):
        lE, lN, lS1, tA, tB, tC, L = self._terms(theta, X)
        J = np.empty(L.shape + (6,))
        J[..., 0] = np.exp(lE) / L
        J[..., 1] = tA / L
        J[..., 2] = -tA * lN / L
        J[..., 3] = tB / L
        J[..., 4] = -tB * lS1 / L
        J[..., 5] = -tC / L
        return J

    def _init_grid(self, X, log_y):
        lo = float(np.exp(log_y.min()))
        vals = itertools.product(np.log([0.4 * lo, 0.8 * lo]), (0.0, 4.0, 8.0), (0.2, 0.5), (2.0, 6.0, 10.0),
                                 (0.2, 0.5), np.log([1e-4, 1e-3, 1e-2]))
        return np.array(list(vals), float)


def curve_points(curves: pd.DataFrame, runs: pd.DataFrame, *, loss: str = "eval_loss",
                 lam: float = 0.999, points: int = 40) -> pd.DataFrame:
    """Rows (run, N, step, tokens, S1, S2, eta, loss) from a sweep's curves and runs tables.

    S1 and S2 come from each run's logged learning rate at every step; rows are the
    steps where ``loss`` was logged. Per-step training loss (``loss="train_loss"``)
    is noisy and logged at every step: it is averaged over a trailing window of 2%
    of the run (at least 5 steps, the way a monitor's moving average sees it) and
    kept at about ``points`` steps per run. Fit the quantity you will monitor:
    held-out and training loss can differ by several percent.
    """
    N = runs.set_index("run_id")["N"]
    out = []
    for rid, g in curves.groupby("run_id"):
        g = g.sort_values("step")
        steps = g[g["lr"] > 0] if (g["lr"] > 0).any() else g
        tokens = steps["tokens"].to_numpy(float)
        tps = np.diff(np.concatenate([[0.0], tokens]))
        S1, S2 = areas(steps["lr"].to_numpy(float), tps, lam)
        lr = steps["lr"].to_numpy(float)
        s = pd.DataFrame({"step": steps["step"].to_numpy(), "S1": S1, "S2": S2, "eta": lr / max(lr.max(), 1e-300)})
        g = g.merge(s, on="step", how="left")
        g[["S1", "S2", "eta"]] = g[["S1", "S2", "eta"]].ffill()
        if loss == "train_loss":
            window = max(5, int(0.02 * len(g)))
            g = g.assign(train_loss=g["train_loss"].rolling(window, min_periods=window).mean())
            g = g[g[loss].notna() & g["S1"].notna()]
            g = g.iloc[np.unique(np.linspace(0, len(g) - 1, min(points, len(g))).astype(int))] if len(g) else g
        g = g[g[loss].notna() & g["S1"].notna()]
        out.append(pd.DataFrame({"run": rid, "N": float(N[rid]), "step": g["step"], "tokens": g["tokens"],
                                 "S1": g["S1"], "S2": g["S2"], "eta": g["eta"], "loss": g[loss]}))
    return pd.concat(out, ignore_index=True)
