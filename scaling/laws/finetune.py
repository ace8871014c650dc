"""Fine-tuning scaling law (Zhang et al. 2024, "When Scaling Meets LLM Finetuning").

L(X, D_f) = A / X^alpha / D_f^beta + E

with D_f the fine-tuning data (tokens or examples) and X one scaling factor at a time
(the setting ``x``): the base model's size ``N``, its pretraining tokens ``D_pretrain``, or
the number of parameters a parameter-efficient method tunes ``pet_params``. The law is
fitted per fine-tuning method (``method``: ``full``, ``lora``, ``prompt``, or whatever the
table's ``method`` column holds), in logs with the package's robust multi-start fit
(``log L = logsumexp(log A - alpha log X - beta log D_f, log E)``), and the bootstrap
resamples cells (all seeds of one setting together).

One factor at a time means the other factors are held fixed in the rows fitted: with
``x="N"`` every row must share one ``D_pretrain`` (and one LoRA rank / number of virtual
tokens); the fit refuses a table that varies them, naming the column to filter on.
``pet_params`` is never checked: it follows from N and the rank, so it moves with N.

``critical_data_size(a, b, at=...)`` gives the D_f where one method's curve overtakes the
other's (Zhang et al.'s critical data size, e.g. full fine-tuning overtaking LoRA), with a
bootstrap interval; ``backtest_largest_df`` fits the smaller D_f and predicts the largest.
"""

from __future__ import annotations

import itertools
import warnings
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from ..data import cell_codes, near_codes, parse_columns, read_table, require_rows
from ..errors import DataError, FitError, ScalingWarning, SettingsError
from ..fitting.optimize import LogSumExpDesign
from . import estimate, register_law
from .base import Law, Param
from .result import FitResult

#: the scaling factors X can be (the setting ``x``)
FACTORS = ("N", "D_pretrain", "pet_params")
#: per-method size settings of parameter-efficient tuning (constant unless x is pet_params)
PET_SETTINGS = ("rank", "virtual_tokens")
#: the columns that define one cell (one setting; its seeds are replicates)
CELL_COLUMNS = ("method", "N", "D_pretrain", "pet_params", *PET_SETTINGS, "D_f")
#: the bootstrap's group column (added to the rows fitted; whole cells are resampled)
_CELL = "_finetune_cell"


def _held(x: str) -> tuple[str, ...]:
    """The columns that must be constant when the law scales with ``x``."""
    if x == "pet_params":
        return ("N", "D_pretrain")
    return tuple(c for c in ("N", "D_pretrain") if c != x) + PET_SETTINGS


class FinetuneResult(FitResult):
    """A fitted fine-tuning law; also compares itself with another method's fit."""

    __slots__ = ()

    def critical_data_size(self, other: "FinetuneResult", **kwargs) -> dict[str, Any]:
        """The D_f where this method and ``other`` cross: see :func:`critical_data_size`."""
        return critical_data_size(self, other, **kwargs)


@register_law
class FinetuneLaw(LogSumExpDesign, Law):
    """L(X, D_f) = A / X^alpha / D_f^beta + E, one method and one factor X at a time.

    Parameters
    ----------
    x : {"N", "D_pretrain", "pet_params"}
        The scaling factor: base-model parameters, its pretraining tokens, or the parameters a
        PET method tunes. The other factors must be constant in the rows fitted.
    method : str, optional
        Fit the rows whose ``method`` column equals this (``full``, ``lora``, ``prompt``); needed
        when the table holds several methods.
    bootstrap, level, seed, loss, delta, fixed, bounds, tie, params, prune
        As for every law (robust multi-start fit; the bootstrap resamples cells).
    """

    name = "finetune"
    inputs: ClassVar[tuple[str, ...]] = ("N", "D_f")  # the default x; an instance reads (x, "D_f")
    parameters = (
        Param("A", log=True, description="scale of the reducible term"),
        Param("alpha", description="exponent of the scaling factor X"),
        Param("beta", description="exponent of the fine-tuning data D_f"),
        Param("E", log=True, description="irreducible loss"),
    )
    formula: ClassVar[str] = "L(X, D_f) = A / X^alpha / D_f^beta + E"
    bootstrap_groups: ClassVar[str | None] = _CELL
    #: the columns that define a cell (its seeds are replicates), for averaging seeds before a fit
    cell_columns: ClassVar[tuple[str, ...]] = CELL_COLUMNS

    def __init__(self, *, x: str = "N", method: str | None = None, **kwargs):
        if x not in FACTORS:
            raise SettingsError(f"finetune: x must be one of {list(FACTORS)} (the scaling factor), got {x!r}")
        if method is not None and (not isinstance(method, str) or not method):
            raise SettingsError(f"finetune: method must be a method name such as 'lora', got {method!r}")
        self.x = x
        self.method = method
        self.inputs = (x, "D_f")
        super().__init__(**kwargs)

    def _settings_extra(self) -> dict[str, Any]:
        return {"x": self.x, "method": self.method}

    def _restore_extra(self, d: Mapping[str, Any]) -> dict[str, Any]:
        s = d.get("settings") or {}
        x = s.get("x", "N")
        if x not in FACTORS:
            raise DataError(f"this finetune fit names x = {x!r}; it must be one of {list(FACTORS)}")
        self.x, self.method, self.inputs = x, s.get("method"), (x, "D_f")
        return {}

    def _summary_extra(self, fit) -> dict[str, Any]:
        return {"x": self.x, "method": self.method}

    def _report_extra(self, fit) -> list[str]:
        what = {"N": "base-model parameters", "D_pretrain": "pretraining tokens",
                "pet_params": "tuned (PET) parameters"}[self.x]
        return [f"\n  X = {self.x} ({what}); method: {self.method or '(one method in the data)'}"]

    # ---------------------------------------------------------------- model
    def _check_terms(self, params, X, y) -> None:
        """The exponents are free in sign (a PET method's parameters can help little or not at all), so a negative
        one is a finding to say, not a bound hit: loss rising with that factor in these data."""
        for p, inp in (("alpha", self.x), ("beta", "D_f")):
            if params[p] < 0 and p not in self.fixed:
                warnings.warn(f"{self.name}: {p} = {params[p]:.3g} < 0: in these data the loss rises with {inp} "
                              f"(more {inp} did not help{' this method' if self.x == 'pet_params' else ''}); check the "
                              "runs, or fix the exponent (--fix " + p + "=0) if no effect is the finding",
                              ScalingWarning, stacklevel=4)

    def _design(self, X) -> np.ndarray:
        lx, ld = np.log(X[self.x]), np.log(X["D_f"])
        d = np.zeros((lx.size, 2, 4))
        d[:, 0, 0], d[:, 0, 1], d[:, 0, 2] = 1.0, -lx, -ld  # log A - alpha log X - beta log D_f
        d[:, 1, 3] = 1.0  # log E
        return d

    def _init_grid(self, X, log_y):
        floor = float(np.min(log_y))
        grid = itertools.product(np.linspace(-2.0, 25.0, 10), (-0.2, 0.0, 0.2, 0.5, 1.0), (-0.2, 0.0, 0.2, 0.5, 1.0),
                                 floor + np.log([0.1, 0.5, 0.9]))
        return np.array(list(grid), float)

    def fit(self, data, *, columns=None, drop_highest_loss: int = 0, dropna: bool = False) -> FitResult:
        """Fit this method's rows of ``data`` (``rows``): what the fit counts and reports (points, averaged seeds)
        is that method's, not the whole table's."""
        return super().fit(self.rows(data, columns), drop_highest_loss=drop_highest_loss, dropna=dropna)

    # -------------------------------------------------------------- the rows
    def rows(self, data, columns=None) -> pd.DataFrame:
        """The rows this spec fits: its method's, with the other factors checked constant and a cell label.

        Column names are the law's (``columns`` maps them to a table's, as for every law)."""
        df = require_rows(read_table(data))  # a file, or a copy of a DataFrame
        mapping = parse_columns(columns)
        if mapping:
            missing = [v for v in mapping.values() if v not in df.columns]
            if missing:
                raise DataError(f"--columns names {missing} but the table has columns {list(df.columns)}")
            df = df.drop(columns=[k for k, v in mapping.items() if k in df.columns and k != v])
            df = df.rename(columns={v: k for k, v in mapping.items()})
        if "method" in df.columns:
            methods = sorted(map(str, df["method"].dropna().unique()))
            if self.method is None and len(methods) > 1:
                raise DataError(f"{self.name}: the table holds methods {methods}; the law is fitted per method: "
                                f"pick one with method={methods[0]!r} (the CLI: scaling fit --method {methods[0]}, or "
                                f"--where \"method == '{methods[0]}'\")")
            if self.method is not None:
                if self.method not in methods:
                    raise DataError(f"{self.name}: no rows with method == {self.method!r}; the table has methods "
                                    f"{methods}")
                df = df[df["method"].astype(str) == self.method]
        elif self.method is not None:
            raise DataError(f"{self.name}: method={self.method!r} was asked for but the table has no 'method' "
                            "column; drop the method setting (--method) or add the column")
        missing = [c for c in (self.x, "D_f", "loss") if c not in df.columns]
        if missing:
            raise DataError(f"{self.name} with x={self.x}: missing column(s) {missing}; the table has "
                            f"{list(df.columns)} (map yours with --columns, e.g. --columns {missing[0]}=<your column>)")
        for c in _held(self.x):
            if c not in df.columns:
                continue
            codes = near_codes(df[c])
            if np.unique(codes[codes >= 0]).size > 1:
                values = sorted(pd.to_numeric(df[c], errors="coerce").dropna().unique())
                shown = ", ".join(f"{v:.4g}" for v in values[:6]) + (", ..." if len(values) > 6 else "")
                raise DataError(
                    f"{self.name} with x={self.x}: the rows also vary {c} ({shown}); the law scales one factor at a "
                    f"time (Zhang et al. 2024), so fit the rows at one {c} (e.g. df[df['{c}'] == {values[-1]:.15g}], "
                    f"or on the command line --where '{c} == {values[-1]:.15g}'), "
                    f"or scale with x={c if c in FACTORS else 'pet_params'}")
        df = df.copy()
        df[_CELL] = cell_codes(df, [c for c in CELL_COLUMNS if c in df.columns])
        return df.reset_index(drop=True)


def estimate_finetune(law: FinetuneLaw, data, *, columns=None, drop_highest_loss: int = 0,
                      dropna: bool = False) -> dict:
    """The method's rows (other factors checked constant), then the robust multi-start fit of the log law
    and a bootstrap over cells (every seed of one setting resampled together)."""
    df = law.rows(data, columns)
    st = estimate.multistart(law, df, drop_highest_loss=drop_highest_loss, dropna=dropna)
    st["fit_info_"]["bootstrap_over"] = "cells (the seeds of one setting together)"
    st["fit_info_"]["x"], st["fit_info_"]["method"] = law.x, law.method
    return st


FinetuneLaw.estimator = staticmethod(estimate_finetune)
FinetuneLaw.result_class = FinetuneResult


# ------------------------------------------------------------ critical data size
def _check_pair(a: FitResult, b: FitResult) -> None:
    for r in (a, b):
        if not isinstance(r, FitResult) or r.law.name != "finetune":
            raise SettingsError(f"critical_data_size compares two finetune fits, got {type(r).__name__}"
                                + (f" of {r.law.name}" if isinstance(r, FitResult) else ""))
    if a.law.x != b.law.x:
        raise SettingsError(f"the two fits scale with different factors (x={a.law.x} and x={b.law.x}); "
                            "fit both methods with the same x")


def _who(r: FitResult, fallback: str) -> str:
    return r.law.method or (r._label if r._label is not None else fallback)


def _crossing(la: np.ndarray, lb: np.ndarray, logd: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For (K, G) log losses of a and b on a grid of log D_f: where the method that is ahead at the top of the
    grid starts to stay ahead (log D_f, interpolated; -inf: ahead over the whole grid, +inf never: the point
    estimate's leader is behind at the top) and whether that method is b (True) or a."""
    diff = la - lb  # > 0: b is lower
    b_leads = diff[:, -1] > 0
    ahead = np.where(b_leads[:, None], diff > 0, diff < 0)
    # length of the run of 'ahead' ending at the top of the grid
    run = np.argmin(ahead[:, ::-1], axis=1)
    run = np.where(ahead.all(axis=1), ahead.shape[1], run)
    out = np.full(len(diff), np.inf)
    out[run == ahead.shape[1]] = -np.inf
    inside = (run > 0) & (run < ahead.shape[1])
    j = ahead.shape[1] - run[inside]  # first grid index of the run; the crossing lies between j-1 and j
    k = np.flatnonzero(inside)
    d0, d1 = diff[k, j - 1], diff[k, j]
    t = d0 / (d0 - d1)
    out[k] = logd[j - 1] + t * (logd[j] - logd[j - 1])
    return out, b_leads


def critical_data_size(a: FitResult, b: FitResult, *, at=None, d_range=None, level: float | None = None,
                       n_grid: int = 2001) -> dict[str, Any]:
    """The fine-tuning data size D_f at which one method overtakes the other (Zhang et al.'s critical data size).

    ``a`` and ``b`` are finetune fits of two methods with the same ``x``; ``at`` is the value of X at which to
    compare them (e.g. the base model's N), or a pair (X for a, X for b), as when x is pet_params. The search
    runs over ``d_range`` (default: the D_f the two fits were fitted on). Returns ``D_f`` (where the method
    ahead at the top of the range, ``overtaker``, starts to stay ahead of ``behind``), ``ci`` (a percentile
    interval over paired bootstrap resamples of the two fits: None at an end means that end lies outside the
    range), ``fraction_in_range`` (resamples whose crossing lies in the range) and every crossing of the
    point estimates (``crossings``; two power laws plus floors can cross twice).

    Raises ``FitError`` when the point estimates do not cross in the range (one method is ahead throughout).
    """
    _check_pair(a, b)
    x = a.law.x
    if at is None:
        raise SettingsError(f"critical_data_size needs at=: the {x} at which to compare the methods (the base "
                            f"model's {x}), or a pair (for a, for b)")
    at_a, at_b = (at, at) if np.ndim(at) == 0 else tuple(at)
    for v in (at_a, at_b):
        if not (isinstance(v, (int, float, np.integer, np.floating)) and np.isfinite(v) and v > 0):
            raise SettingsError(f"at must be a positive {x} (or a pair of them), got {at!r}")
    if d_range is None:
        ranges = [r._state.get("data_range_", {}).get("D_f") for r in (a, b)]
        if any(r is None for r in ranges):
            raise SettingsError("these fits carry no D_f range (given values): pass d_range=(low, high)")
        d_range = (min(r[0] for r in ranges), max(r[1] for r in ranges))
    lo, hi = (float(v) for v in d_range)
    if not (0 < lo < hi and np.isfinite(hi)):
        raise SettingsError(f"d_range must be (low, high) with 0 < low < high, got {d_range!r}")
    level = a.level if level is None else level
    logd = np.linspace(np.log(lo), np.log(hi), int(n_grid))
    Xa = {x: np.full(logd.size, float(at_a)), "D_f": np.exp(logd)}
    Xb = {x: np.full(logd.size, float(at_b)), "D_f": np.exp(logd)}
    la = a.law._log_predict(a._state["theta_"][None, :], Xa)
    lb = b.law._log_predict(b._state["theta_"][None, :], Xb)
    name_a, name_b = _who(a, "a"), _who(b, "b")
    diff = (la - lb)[0]
    sign = np.sign(diff)
    idx = np.flatnonzero(sign[:-1] * sign[1:] < 0)
    crossings = [float(np.exp(logd[i] + diff[i] / (diff[i] - diff[i + 1]) * (logd[i + 1] - logd[i]))) for i in idx]
    point, b_leads = _crossing(la, lb, logd)
    leader, other = (name_b, name_a) if b_leads[0] else (name_a, name_b)
    if not np.isfinite(point[0]):
        ratio = np.exp(diff[[0, -1]]) if b_leads[0] else np.exp(-diff[[0, -1]])  # the other's loss over the leader's
        raise FitError(
            f"{name_a} and {name_b} do not cross for D_f in [{lo:.3g}, {hi:.3g}] at {x}={at!r}: {leader} is lower "
            f"throughout (its loss is {100 * (1 - 1 / ratio[0]):.1f}% lower at D_f={lo:.3g} and "
            f"{100 * (1 - 1 / ratio[1]):.1f}% at {hi:.3g}); widen d_range to extrapolate, knowing the laws are "
            "untested there")
    out = {"x": x, "at": [float(at_a), float(at_b)], "D_f": float(np.exp(point[0])), "overtaker": leader,
           "behind": other, "crossings": crossings, "range": [lo, hi], "level": level, "ci": None,
           "fraction_in_range": None}
    Ba, Bb = a._state.get("bootstrap_theta_"), b._state.get("bootstrap_theta_")
    if Ba is not None and Bb is not None and len(Ba) > 1 and len(Bb) > 1:
        k = min(len(Ba), len(Bb))  # the two fits' resamples are independent: pair them in order
        la_b = a.law._log_predict(Ba[:k], Xa)
        lb_b = b.law._log_predict(Bb[:k], Xb)
        samples, leads = _crossing(la_b, lb_b, logd)
        # a resample whose leader at the top is the other method has the point estimate's leader never ahead there
        samples = np.where(leads == b_leads[0], samples, np.inf)
        q = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2], method="inverted_cdf")
        out["ci"] = [float(np.exp(v)) if np.isfinite(v) else None for v in q]
        out["fraction_in_range"] = float(np.isfinite(samples).mean())
    return out


# ---------------------------------------------------------------------- backtest
def backtest_largest_df(data, *, x: str = "N", method: str | None = None, columns=None, level: float = 0.9,
                        **settings) -> dict[str, Any]:
    """Fit the law on every D_f but the largest and predict the largest: the error of the prediction against
    each held-out cell's mean loss, and how often the ``level`` prediction interval holds a held-out run."""
    law = FinetuneLaw(x=x, method=method, level=level, **settings)
    df = law.rows(data, columns)
    sizes = np.sort(pd.to_numeric(df["D_f"]).unique())
    if len(sizes) < 3:
        raise DataError(f"backtesting needs at least 3 distinct D_f (2 to fit, 1 to predict), got {len(sizes)}")
    top = sizes[-1]
    held = np.isclose(df["D_f"].astype(float), top, rtol=1e-9)
    result = law.fit(df[~held].drop(columns=[_CELL]))
    test = df[held]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ScalingWarning)  # the held-out D_f lies beyond the fit's range by design
        pred = result.predict(test)
        lo, hi = result.predict_interval(test, level=level) if result._boot is not None else (pred * np.nan,) * 2
    y = test["loss"].to_numpy(float)
    cells = pd.DataFrame({x: test[x].to_numpy(float), "loss": y, "pred": pred, "lo": lo, "hi": hi})
    per_cell = cells.groupby(x, as_index=False).agg(loss=("loss", "mean"), pred=("pred", "first"),
                                                    lo=("lo", "first"), hi=("hi", "first"), runs=("loss", "size"))
    rel = per_cell["pred"] / per_cell["loss"] - 1
    inside = (y >= lo) & (y <= hi)
    return {"x": x, "method": method, "D_f_fitted": [float(v) for v in sizes[:-1]], "D_f_predicted": float(top),
            "n_test_runs": int(len(test)), "mean_abs_rel_error": float(np.abs(rel).mean()),
            "max_abs_rel_error": float(np.abs(rel).max()), "coverage": float(np.mean(inside)), "level": level,
            "table": per_cell.assign(rel_error=rel), "law": result}


def finetune_truth_runs(truth: Mapping[str, float], *, x: str = "N", xs=None, dfs=None, seeds: int = 1,
                        noise: float = 0.005, seed: int = 0, method: str | None = None) -> pd.DataFrame:
    """Runs from known parameters (log-normal noise), for tests, notebooks and backtests."""
    rng = np.random.default_rng(seed)
    xs = np.logspace(5, 7, 5) if xs is None else np.asarray(xs, float)
    dfs = np.logspace(4, 6, 6) if dfs is None else np.asarray(dfs, float)
    rows = [{x: xv, "D_f": dv, "seed": s} for xv in xs for dv in dfs for s in range(seeds)]
    df = pd.DataFrame(rows)
    mean = truth["A"] / df[x] ** truth["alpha"] / df["D_f"] ** truth["beta"] + truth["E"]
    df["loss"] = mean * np.exp(noise * rng.standard_normal(len(df)))
    if method is not None:
        df.insert(0, "method", method)
    return df


__all__ = ["FinetuneLaw", "FinetuneResult", "critical_data_size", "backtest_largest_df", "finetune_truth_runs",
           "FACTORS", "CELL_COLUMNS"]
