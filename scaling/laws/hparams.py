"""Optimal learning rate and batch size as power laws of model and data size.

Two published forms, chosen with ``form``:

- ``steplaw`` (Li et al. 2025, "Predictable Scale", StepLaw): eta_opt = eta0 N^eta_N D^eta_D and
  B_opt = B0 D^B_D, with N parameters and D training tokens;
- ``deepseek`` (DeepSeek LLM 2024): eta_opt = eta0 C^eta_C and B_opt = B0 C^B_C in compute alone.

The table has one row per training run: ``N``, ``D`` (or ``C``), ``lr``, ``batch`` and ``loss``.
Runs are grouped into cells (one (N, D) pair, or one compute budget for ``deepseek``); in each cell
the settings whose loss lies within ``tolerance`` (relative) of the cell's best are near-optimal, as
DeepSeek selected them, and the power laws are fitted by least squares in logs to those settings,
each cell weighing the same. Uncertainty is a bootstrap over cells. Batch is in whatever unit the
table uses (tokens, or sequences: only B0 changes).
"""

from __future__ import annotations

import warnings
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from ..data import prepare
from ..diagnostics import check_extrapolation
from ..errors import DataError, ScalingWarning, SettingsError
from ..fitting.bootstrap import bootstrap, percentile_interval
from . import register_law
from .base import Law, Param
from .result import params_state, uncertainty


@register_law
class HyperparameterLaw(Law):
    """eta_opt and B_opt as power laws; ``HyperparameterLaw(form="steplaw" | "deepseek")``."""

    name = "hparams"
    target = "loss"
    predicts_loss = False
    figure = "hparams"
    supports = frozenset({"fixed"})
    default_loss = "squared"
    form: ClassVar[str] = "steplaw"
    formula: ClassVar[str] = "eta_opt = eta0 N^eta_N D^eta_D, B_opt = B0 D^B_D"
    inputs: ClassVar[tuple[str, ...]] = ("N", "D")
    parameters = (
        Param("eta0", log=True, description="learning-rate scale"),
        Param("eta_N", description="learning-rate exponent in N"),
        Param("eta_D", description="learning-rate exponent in D"),
        Param("B0", log=True, description="batch-size scale"),
        Param("B_D", description="batch-size exponent in D"),
    )
    #: which parameters belong to the learning-rate law (the rest to the batch law), and their inputs
    lr_terms: ClassVar[tuple[str, ...]] = ("N", "D")
    batch_terms: ClassVar[tuple[str, ...]] = ("D",)

    def __new__(cls, *args, form: str = "steplaw", **kwargs):
        if cls is HyperparameterLaw:
            if form not in _FORMS:
                raise SettingsError(f"form must be one of {sorted(_FORMS)}, got {form!r}")
            cls = _FORMS[form]
        return super().__new__(cls)

    def __init__(self, *, form: str | None = None, tolerance: float = 0.0025, bootstrap: int = 1000, **kwargs):
        if form is not None and form != self.form:
            raise SettingsError(f"this is the {self.form} form; build HyperparameterLaw(form={form!r}) instead")
        if not (isinstance(tolerance, (int, float)) and 0 <= tolerance < 0.5):
            raise SettingsError(f"tolerance (relative loss above a cell's best) must be in [0, 0.5), got {tolerance!r}")
        self.tolerance = tolerance
        super().__init__(bootstrap=bootstrap, **kwargs)

    @staticmethod
    def forms() -> dict[str, type]:
        """The forms ``--form`` chooses, by name."""
        return dict(_FORMS)

    def _unsupported_reason(self) -> str:
        return "the hyperparameter laws are log-linear least squares on near-optimal settings; fix a parameter instead"

    # ------------------------------------------------------------------ data
    def _cells(self, df: pd.DataFrame) -> np.ndarray:
        """One label per (N, D) cell; values within CELL_RTOL (relative) are one value: a D logged as the tokens
        actually trained (steps x batch x sequence) differs by a fraction of a percent between batch settings of
        one cell, and must not split it (each batch would be trivially the best of its own cell)."""
        from .isoflop import group_budgets

        n = group_budgets(df["N"].to_numpy(float), rtol=CELL_RTOL)
        d = group_budgets(df["D"].to_numpy(float), rtol=CELL_RTOL)
        return pd.factorize(pd.Series(list(zip(n, d))), sort=True)[0]

    def _table(self, data, columns=None, dropna=False) -> pd.DataFrame:
        need = list(self.inputs) + ["lr", "batch", "loss"]
        return prepare(data, need, columns=columns, dropna=dropna)

    def _near_optimal(self, df: pd.DataFrame) -> pd.DataFrame:
        cell = self._cells(df)
        best = pd.Series(df["loss"].to_numpy()).groupby(cell).transform("min").to_numpy()
        keep = df["loss"].to_numpy() <= best * (1 + self.tolerance)
        return df[keep].assign(_cell=cell[keep])

    # ------------------------------------------------------------------ fit
    def _design(self, X: Mapping[str, np.ndarray], terms) -> np.ndarray:
        return np.column_stack([np.ones(len(next(iter(X.values()))))] + [np.log(X[t]) for t in terms])

    def _solve(self, near: pd.DataFrame, weights: np.ndarray) -> np.ndarray:
        """Internal parameters (log eta0, exponents..., log B0, exponents...) by weighted least squares."""
        X = {c: near[c].to_numpy(float) for c in self.inputs}
        names = self.param_names()
        theta = np.empty(len(names))
        for ys, terms, first in (("lr", self.lr_terms, 0), ("batch", self.batch_terms, 1 + len(self.lr_terms))):
            A = self._design(X, terms)
            y = np.log(near[ys].to_numpy(float))
            idx = list(range(first, first + A.shape[1]))
            fixed = [j for j, i in enumerate(idx) if names[i] in self.fixed]
            vals = np.array([self._to_internal_one(self.parameters[i], self.fixed[names[i]]) if names[i] in self.fixed
                             else 0.0 for i in idx])
            free = [j for j in range(A.shape[1]) if j not in fixed]
            r = y - A[:, fixed] @ vals[fixed] if fixed else y
            sw = np.sqrt(weights)
            sol = np.linalg.lstsq(A[:, free] * sw[:, None], r * sw, rcond=None)[0] if free else np.array([])
            vals[free] = sol
            theta[idx] = vals
        return theta

    # -------------------------------------------------------------- predict
    def _predict_theta(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        k = 1 + len(self.lr_terms)
        lr = theta[:, :k] @ self._design(X, self.lr_terms).T
        batch = theta[:, k:] @ self._design(X, self.batch_terms).T
        return {"lr": np.exp(lr), "batch": np.exp(batch)}

    def _predict(self, fit, X) -> pd.DataFrame:
        """The optimal learning rate and batch size (columns ``lr``, ``batch``) at the given inputs."""
        check_extrapolation(self.name, X, fit._state.get("data_range_"))
        out = self._predict_theta(fit._state["theta_"][None, :], X)
        return pd.DataFrame({"lr": out["lr"][0], "batch": out["batch"][0]})

    def _predict_interval(self, fit, X, level, kind) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Bootstrap intervals of eta_opt and B_opt (``kind="prediction"`` adds the scatter of
        near-optimal settings around the law; ``"mean"`` is the law's own band)."""
        out = self._predict_theta(fit._state["bootstrap_theta_"], X)
        lo, hi = {}, {}
        resid = fit._state["residuals_"]
        half = len(resid) // 2
        rng = np.random.default_rng(self.seed + 1)
        for j, k in enumerate(("lr", "batch")):
            v = np.log(out[k])
            if kind == "prediction":
                r = resid[j * half:(j + 1) * half]
                v = v + rng.choice(r - r.mean(), size=v.shape, replace=True)
            lo[k], hi[k] = (np.exp(x) for x in percentile_interval(v, level))
        return pd.DataFrame(lo), pd.DataFrame(hi)

    # ---------------------------------------------------------------- round trip
    def _settings_extra(self) -> dict[str, Any]:
        return {"form": self.form, "tolerance": self.tolerance}

    @classmethod
    def _class_for(cls, d: Mapping[str, Any]) -> type:
        form = (d.get("settings") or {}).get("form", "steplaw")
        if form not in _FORMS:
            raise DataError(f"unknown hparams form {form!r} in the fit file; one of {sorted(_FORMS)}")
        return _FORMS[form]

    def _restore_extra(self, d):
        self.tolerance = (d.get("settings") or {}).get("tolerance", 0.0025)
        return {}

    def _report_extra(self, fit) -> list[str]:
        p = fit._state["params_"]
        names = self.param_names()
        k = 1 + len(self.lr_terms)
        lr = " ".join(f"{t}^{p[n]:.3f}" for t, n in zip(self.lr_terms, names[1:k]))
        bs = " ".join(f"{t}^{p[n]:.3f}" for t, n in zip(self.batch_terms, names[k + 1:]))
        return ["", f"eta_opt = {p['eta0']:.4g} {lr};  B_opt = {p['B0']:.4g} {bs}"]


class DeepSeekHyperparameterLaw(HyperparameterLaw):
    """eta_opt = eta0 C^eta_C, B_opt = B0 C^B_C (DeepSeek LLM 2024): compute alone decides."""

    form = "deepseek"
    formula = "eta_opt = eta0 C^eta_C, B_opt = B0 C^B_C"
    inputs = ("C",)
    parameters = (
        Param("eta0", log=True, description="learning-rate scale"),
        Param("eta_C", description="learning-rate exponent in C"),
        Param("B0", log=True, description="batch-size scale"),
        Param("B_C", description="batch-size exponent in C"),
    )
    lr_terms = ("C",)
    batch_terms = ("C",)

    def _cells(self, df):
        from .isoflop import group_budgets

        return group_budgets(df["C"].to_numpy(float), rtol=CELL_RTOL)


#: values of a cell's inputs (N, D or C) within this relative distance are one cell
CELL_RTOL = 0.01

_FORMS = {"steplaw": HyperparameterLaw, "deepseek": DeepSeekHyperparameterLaw}


def estimate_hparams(law: HyperparameterLaw, data, *, columns=None, drop_highest_loss: int = 0,
                     dropna: bool = False) -> dict:
    """Near-optimal settings of each cell, then weighted least squares in logs, each cell weighing the
    same; the bootstrap resamples cells."""
    if drop_highest_loss:
        raise SettingsError(f"{law.name} takes no drop_highest_loss: every run's loss decides its cell's optimum")
    df = law._table(data, columns, dropna)
    cells = law._cells(df)
    n_cells = int(cells.max()) + 1 if len(cells) else 0
    n_free = len(law.param_names()) - len(law.fixed)
    if n_cells < 3:
        raise DataError(f"{law.name} needs more runs: {n_cells} cell(s) of {list(law.inputs)}; the exponents "
                        "need settings swept at 3 or more cells (sizes, token counts or budgets)")
    for c in law.inputs:
        exps = [f"eta_{c}"] + ([f"B_{c}"] if c in law.batch_terms else [])
        if df[c].nunique() < 2 and not all(e in law.fixed for e in exps):  # fixed exponents need no spread
            raise DataError(f"all runs share one value of {c}; the {law.form} form needs several {c} "
                            f"to estimate an exponent in it (or fix {' and '.join(exps)}: --fix "
                            f"{','.join(e + '=0' for e in exps)})")
    near = law._near_optimal(df)
    seeds = pd.to_numeric(df["n_seeds"], errors="coerce") if "n_seeds" in df.columns else None
    rows = "seed means" if seeds is not None and (seeds > 1).any() else "runs"
    counts = near["_cell"].map(near["_cell"].value_counts()).to_numpy(float)
    weights = 1.0 / counts  # every cell weighs the same, however many of its settings are near-optimal
    theta = law._solve(near, weights)
    st = params_state(law, theta)
    st["near_optimal_"] = near.drop(columns="_cell").reset_index(drop=True)
    pred = law._predict_theta(theta[None, :], {c: near[c].to_numpy(float) for c in law.inputs})
    resid = np.concatenate([np.log(near["lr"].to_numpy()) - np.log(pred["lr"][0]),
                            np.log(near["batch"].to_numpy()) - np.log(pred["batch"][0])])
    st.update(residuals_=resid, objective_=float(np.sum(np.concatenate([weights, weights]) * resid ** 2)),
              n_points_=int(len(df)), converged_=True,
              data_range_={c: [float(df[c].min()), float(df[c].max())] for c in law.inputs})
    st["fit_info_"] = {"free": [n for n in law.param_names() if n not in law.fixed], "loss": "squared",
                       "procedure": f"settings within {100 * law.tolerance:.3g}% of each cell's best loss "
                                    f"({len(near)} of {len(df)} {rows}, {n_cells} cells); weighted least squares "
                                    "in logs, each cell weighing the same",
                       "n_cells": n_cells, "n_near_optimal": int(len(near)), "tolerance": law.tolerance,
                       "form": law.form, "bootstrap_over": "cells"}
    if n_cells < n_free:
        st["fit_info_"]["note"] = "fewer cells than free parameters"
    unidentified = _check_selection(law, df, near, rows)
    if unidentified:
        st["fit_info_"]["not_identified"] = unidentified
    st["bootstrap_theta_"] = None
    if law.bootstrap:
        cell_of = near["_cell"].to_numpy()

        def refit(pick):
            if np.count_nonzero(pick) < 2:
                raise DataError("a resample with one cell")
            return law._solve(near, weights * pick[cell_of])

        st["bootstrap_theta_"] = bootstrap(
            law.name, law.bootstrap, law.seed, refit,
            sampler=lambda rng, B: [np.bincount(rng.integers(0, n_cells, n_cells), minlength=n_cells)
                                    for _ in range(B)],
            why=f"held one distinct cell only (no slope to fit; to be expected with {n_cells} cells) or could not be "
                "refitted").theta
    uncertainty(law, st)  # no interval for what fit_info_["not_identified"] names
    return st


def _check_selection(law: HyperparameterLaw, df: pd.DataFrame, near: pd.DataFrame, rows: str) -> dict[str, str]:
    """Warn when the near-optimal selection says nothing: every run is near-optimal (the losses do not
    tell the settings apart), or a setting never varies among the near-optimal runs (its exponents come
    out exactly 0 with a zero-width interval). Returns the exponents that are not identified, with why."""
    one_per_cell = len(np.unique(law._cells(df))) == len(df)  # best_hparams.csv: each cell's best already chosen
    if len(near) == len(df) and not one_per_cell:
        warnings.warn(
            f"{law.name}: all {len(near)} of {len(df)} {rows} lie within {100 * law.tolerance:.3g}% of their cell's "
            "best loss, so every setting counts as near-optimal and the fit follows the grid, not the optimum "
            "(the losses do not tell the settings apart at this tolerance): lower the tolerance, or sweep "
            "learning rate and batch over a wider range", ScalingWarning, stacklevel=3)
    _check_edges(law, df)
    names = law.param_names()
    k = 1 + len(law.lr_terms)
    out: dict[str, str] = {}
    for col, exps in (("lr", names[1:k]), ("batch", names[k + 1:])):
        if near[col].nunique() > 1:
            continue
        value = float(near[col].iloc[0])
        why = (f"every run has {col} = {value:g}" if df[col].nunique() == 1 else
               f"every near-optimal {rows[:-1]} has {col} = {value:g}")
        free = [n for n in exps if n not in law.fixed]
        if not free:
            continue
        for n in free:
            out[n] = why
        warnings.warn(
            f"{law.name}: {why}, so the {col} exponent(s) {free} are not identified (exactly 0 by "
            f"construction, with no interval): sweep {col} at several values in every cell"
            + ("" if df[col].nunique() == 1 else " and finer, or raise the tolerance"),
            ScalingWarning, stacklevel=3)
    return out


def _check_edges(law: HyperparameterLaw, df: pd.DataFrame) -> None:
    """Warn when the best setting of many cells is the smallest or largest value the cell swept: the optimum may
    lie outside the sweep, and a law fitted to the edges follows the grid, not the optimum. With only two values
    a cell, every best is an edge: warn when it is the same end in every such cell."""
    cells = law._cells(df)
    for col in ("lr", "batch"):
        low = high = swept = 0
        two = {"smallest": 0, "largest": 0, "cells": 0}
        for _, g in df.groupby(cells):
            values = np.unique(g[col].to_numpy(float))
            if values.size < 2:
                continue
            loss = g["loss"].to_numpy(float)
            best = set(g[col].to_numpy(float)[loss <= loss.min() * (1 + law.tolerance)])  # the near-optimal values
            if values.size == 2:
                two["cells"] += 1
                two["smallest"] += best == {values[0]}
                two["largest"] += best == {values[-1]}
                continue
            swept += 1
            low += best == {values[0]}
            high += best == {values[-1]}
        if swept >= 3 and (low + high) > swept / 2:
            side = ("smallest" if low >= high else "largest")
            warnings.warn(
                f"{law.name}: in {low + high} of {swept} cells the best {col} is an edge of the values swept "
                f"({low} at the smallest, {high} at the largest): the optimum may lie beyond the sweep, and the fit "
                f"then follows the grid's edge; extend the {col} sweep past its {side} value", ScalingWarning,
                stacklevel=4)
        elif swept == 0 and two["cells"] >= 3:
            side = next((k for k in ("smallest", "largest") if two[k] == two["cells"]), None)
            if side:
                warnings.warn(
                    f"{law.name}: every cell swept only two values of {col}, and in all {two['cells']} the {side} is "
                    f"the best: the optimum may lie beyond the sweep, and two values cannot place it; sweep 3 or "
                    f"more values of {col}, past the {side}", ScalingWarning, stacklevel=4)


HyperparameterLaw.estimator = staticmethod(estimate_hparams)
