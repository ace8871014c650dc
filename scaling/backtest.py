"""Fit on small runs, predict the large ones, and say how wrong it was.

``backtest`` splits a run table into a training part and a held-out part
(an expression such as ``"N > 2.5e9"``, or the top fraction of model sizes or
compute budgets), fits a law on the training part only, predicts every held-out
run with an interval, and reports the mean and max absolute relative error and
the fraction of held-out runs inside their interval (coverage).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .data import parse_columns, prepare, read_table, rows_where
from .errors import DataError, ScalingError, SettingsError
from .laws import available_laws, get_law
from .laws.allocation import AllocationLaw

SIZE_COLUMNS = ("N", "D", "U", "S", "C")


@dataclass
class BacktestResult:
    law: str
    n_train: int
    n_test: int
    mape: float
    max_ape: float
    coverage: float | None
    level: float
    table: pd.DataFrame
    fitted: Any = field(repr=False, default=None)
    train: pd.DataFrame | None = field(repr=False, default=None)
    #: coverage of the noise-only and of the total (noise + form error) intervals; ``coverage`` is that of
    #: ``interval``, the one reported by default: "total" when a form-error model could be estimated
    coverage_noise: float | None = None
    coverage_total: float | None = None
    interval: str = "noise"
    #: --law auto: the selection made on the training runs (the candidate table)
    selection: dict | None = field(repr=False, default=None)
    #: runs in the table before seed replicates were averaged into cells (None: not averaged)
    averaged_runs: int | None = None

    def to_dict(self) -> dict:
        out = {"law": self.law, "n_train": self.n_train, "n_test": self.n_test, "mape": self.mape,
               "max_ape": self.max_ape, "coverage": self.coverage, "coverage_noise": self.coverage_noise,
               "coverage_total": self.coverage_total, "interval": self.interval, "level": self.level,
               "runs": self.table.replace({np.nan: None}).to_dict(orient="records")}
        if self.averaged_runs is not None:
            out["averaged_seeds"] = {"runs": self.averaged_runs, "cells": self.n_train + self.n_test}
        if self.selection is not None:
            out["selection"] = self.selection
        return out

    def coverage_note(self) -> str | None:
        """A sentence when the intervals covered clearly less than their level (None otherwise)."""
        if self.coverage is None or self.n_test < 10 or self.coverage >= self.level - 0.15:
            return None
        why = ("they hold noise only, not the form's error when extrapolating (--law auto adds it)"
               if self.interval == "noise" else "even with the form's error added")
        return (f"note: {self.law}'s {int(round(100 * self.level))}% intervals covered {100 * self.coverage:.0f}% of the "
                f"held-out points: too narrow for these data; {why}")

    def summary_line(self) -> str:
        def pc(v):
            return "-" if v is None else f"{100 * v:.0f}%"

        both = f" (noise only {pc(self.coverage_noise)})" if self.interval == "total" else ""
        return (f"{self.law:<18} train {self.n_train:>4}  test {self.n_test:>4}  MAPE {100 * self.mape:6.2f}%  "
                f"max {100 * self.max_ape:6.2f}%  coverage@{int(round(100 * self.level))}% "
                f"{self.interval} {pc(self.coverage):>5}{both}")


class _AnyRunLaw:
    """What ``seed_means`` reads of a law, for ``--law auto`` and ``all``: a final-loss law whose cells are set by
    the size columns the table has (N, D, C, U, S) and the hyperparameters."""

    name, inputs, target, curve_law = "auto", (), "loss", False


def averaged_runs(data, law=None, columns=None, *, average: bool = True, dropna: bool = False,
                  who: str | None = None):
    """The runs a fit of ``law`` (a class or a spec; None: any final-loss law, as for ``--law auto``) is made on,
    as ``scaling fit`` makes it: a table with a ``seed`` column whose cells were run with several seeds becomes
    one row per cell, the mean over its seeds (``scaling.data.seed_means``); ``average=False``
    (``--no-average-seeds``) keeps every run. What was done is
    said in ScalingWarnings prefixed with ``who``. Returns ``(table, columns, runs averaged or None)``;
    ``backtest`` and ``--law auto`` (``scaling.selection.fit_auto``) both read their runs through it."""
    from .data import replicate_note, seed_means
    from .errors import ScalingWarning

    law = _AnyRunLaw if law is None else law
    who = who or law.name
    table, columns, averaged, notes = seed_means(data, law, columns, average=average, dropna=dropna)
    for note in notes:
        warnings.warn(f"{who}: {note}", ScalingWarning, stacklevel=2)
    if averaged is not None:
        target = parse_columns(columns).get("loss", "loss")
        warnings.warn(f"{who}: {replicate_note(table, averaged, target=target)}; average_seeds=False "
                      "(--no-average-seeds) uses every run", ScalingWarning, stacklevel=2)
    return table, columns, averaged


def applicable_laws(df: pd.DataFrame) -> list[str]:
    """Laws that predict a run's final loss from columns present, covering every size column that varies."""
    varying = {c for c in ("N", "D", "U", "S") if c in df.columns and df[c].nunique() > 1}
    if "U" in varying and "D" in df.columns and (df["D"] <= df["U"] * (1 + 1e-9)).all():
        varying.discard("U")  # no repetition anywhere: U carries no extra information
    out = []
    for name in available_laws():
        cls = get_law(name)
        if issubclass(cls, AllocationLaw) or not cls.predicts_loss:
            continue
        if set(cls.inputs) <= set(df.columns) and varying <= set(cls.inputs):
            out.append(name)
    return out


def top_mask(df: pd.DataFrame, by: str, k: int, x: np.ndarray | None = None) -> np.ndarray:
    """Boolean mask of the rows at the ``k`` largest distinct values of ``by`` (``x``: those values, when
    ``by`` is not a column, e.g. compute worked out from N and D). The cut of ``--holdout-top`` and of the
    nested backtests of ``--law auto`` (scaling.selection)."""
    x = df[by].to_numpy(float) if x is None else np.asarray(x, float)
    values = np.unique(x)
    return x >= values[-k]


def split(df: pd.DataFrame, holdout: str | None = None, holdout_top: float | None = None,
          by: str = "N") -> np.ndarray:
    """Boolean mask of held-out rows."""
    if (holdout is None) == (holdout_top is None):
        raise DataError("give exactly one of --holdout EXPR (e.g. 'N > 2.5e9') or --holdout-top FRACTION")
    if holdout is not None:
        mask = rows_where(df, holdout, "--holdout")
    else:
        if by not in df.columns:
            raise DataError(f"--by {by!r}: no such column; use N or C")
        if not 0 < holdout_top < 1:
            raise DataError(f"--holdout-top must be a fraction in (0, 1), got {holdout_top}")
        k = max(1, int(round(holdout_top * df[by].nunique())))
        mask = top_mask(df, by, k)
    if mask.all() or not mask.any():
        raise DataError(f"the split leaves {int((~mask).sum())} training and {int(mask.sum())} held-out runs; "
                        "both must be non-empty")
    return mask


def backtest(data, law: str = "chinchilla", *, holdout: str | None = None, holdout_top: float | None = None,
             by: str = "N", level: float = 0.9, bootstrap: int = 200, columns=None, seed: int = 0,
             drop_highest_loss: int = 0, dropna: bool = False, form_error: bool = True, candidates=None,
             average_seeds: bool = True, **law_kwargs) -> BacktestResult | list[BacktestResult]:
    """Fit ``law`` on the training runs and score its predictions of the held-out runs.

    ``law="all"`` returns a list, one result per applicable law, best MAPE first. ``law="auto"`` runs the
    whole selection of ``scaling.selection`` (nested backtests, ``candidates``) on the training runs only,
    with the held-out runs' largest ``by`` as its target, and scores the law it picks. ``law_kwargs`` are the
    law's settings (``tie_exponents``, ``fixed``, ``bounds``, ``loss``, ``delta``, ``prune``, ...; with auto,
    ``fixed`` gives the values of the ``-fixed-`` candidates). With ``form_error`` (the default), nested
    backtests inside the training runs also give the law a form-error model, and each held-out run gets a
    noise-only and a total interval (``noise_lo``/``noise_hi``, ``total_lo``/``total_hi``); ``lo``/``hi`` and
    ``coverage`` are the total ones, or the noise-only ones when the training runs have too few sizes to nest.

    As ``scaling fit`` does, a table with a ``seed`` column is backtested on each cell's mean over its seeds
    (``averaged_runs``; ``n_train`` and ``n_test`` then count cells); ``average_seeds=False`` uses every run.
    """
    raw = read_table(data) if not isinstance(data, pd.DataFrame) else data
    named = get_law(law) if law not in ("all", "auto") else None
    if named is not None and not named.predicts_loss:
        raise SettingsError(f"{law} ({named.formula}) does not predict a run's loss, so it cannot be backtested: "
                            "backtest scores held-out runs' losses against the law's predictions")
    raw, columns, averaged = averaged_runs(raw, named, columns, average=average_seeds, dropna=dropna,
                                           who=f"backtest {law}")
    present = [c for c in SIZE_COLUMNS if c in raw.columns or c in parse_columns(columns)]
    need = ["loss"] + [c for c in present if c != "C"]
    df = prepare(raw, need, columns=columns, drop_highest_loss=drop_highest_loss, dropna=dropna)
    if {"N", "D"} <= set(df.columns) and "C" not in df.columns:
        df["C"] = 6 * df["N"] * df["D"]
    mask = split(df, holdout, holdout_top, by)
    if candidates is not None and law != "auto":
        raise ScalingError("candidates apply to law='auto' (--law auto), not to one named law")
    names = applicable_laws(df) if law == "all" else [law]
    if law not in ("all", "auto"):
        cls = get_law(law)
        if issubclass(cls, AllocationLaw):
            raise ScalingError(f"{law} predicts only the compute-optimal loss, not single runs; backtest "
                               "chinchilla, kaplan or data-constrained instead")
    options = dict(level=level, bootstrap=bootstrap, seed=seed, by=by, form_error=form_error, candidates=candidates,
                   average_seeds=average_seeds, averaged=averaged)
    results = []
    for name in names:
        try:
            results.append(_one(df, mask, name, options, law_kwargs))
        except ScalingError as exc:
            if law != "all":
                raise
            warnings.warn(f"backtest: {name} could not be fitted on the training runs: {exc}", stacklevel=2)
    if law == "all":
        if not results:
            raise ScalingError("no law could be fitted on the training runs")
        return sorted(results, key=lambda r: r.mape)
    return results[0]


def _one(df, mask, name, options, law_kwargs) -> BacktestResult:
    from .selection import size_of

    level, bootstrap, by = options["level"], options["bootstrap"], options["by"]
    train, test = df[~mask].reset_index(drop=True), df[mask]
    target = float(size_of(test, by).max())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extrapolation warnings are the point of a backtest
        fitted = _fit_train(train, name, options, law_kwargs, target)
        pred = fitted.predict(test)
        nan = np.full(len(test), np.nan)
        lo = hi = tlo = thi = nan
        has_total = bool(bootstrap and getattr(fitted, "form_error_", None))  # no bootstrap: no intervals at all
        if bootstrap:
            lo, hi = fitted.predict_interval(test, level=level, kind="prediction")
            if has_total:
                tlo, thi = fitted.predict_interval(test, level=level, kind="total")
    cls = type(fitted.law)
    y = test["loss"].to_numpy(float)
    ape = np.abs(pred - y) / y
    table = test[list(dict.fromkeys(list(cls.inputs) + [c for c in ("N", "D", "C") if c in test]))].copy()
    table["loss"] = test["loss"]
    which = "total" if has_total else "noise"
    table["predicted"] = pred
    table["lo"], table["hi"] = (tlo, thi) if has_total else (lo, hi)
    table["noise_lo"], table["noise_hi"], table["total_lo"], table["total_hi"] = lo, hi, tlo, thi
    table["ape"] = ape
    cov = {}
    for k, (a, b) in (("noise", (lo, hi)), ("total", (tlo, thi))):
        cov[k] = float(np.mean((y >= a) & (y <= b))) if bootstrap and not np.isnan(a).all() else None
    table["covered"] = (y >= table["lo"]) & (y <= table["hi"]) if bootstrap else np.nan
    selection = fitted.selection_ if name == "auto" else None
    label = f"auto: {selection['chosen']}" if selection else name
    return BacktestResult(law=label, n_train=int(len(train)), n_test=int(len(test)), mape=float(ape.mean()),
                          max_ape=float(ape.max()), coverage=cov[which], level=level,
                          table=table.reset_index(drop=True), fitted=fitted, train=train,
                          coverage_noise=cov["noise"], coverage_total=cov["total"], interval=which,
                          selection=selection, averaged_runs=options["averaged"])


def _fit_train(train, name, options, law_kwargs, target):
    """The law fitted on the training runs, with its form-error model from nested backtests inside them when
    they have enough sizes (else noise-only intervals)."""
    from .selection import fit_auto, size_of, with_form_error

    level, bootstrap, seed, by = options["level"], options["bootstrap"], options["seed"], options["by"]
    if name == "auto":
        common = dict(law_kwargs)
        fixed = common.pop("fixed", None)
        # the target is the held-out runs' largest size; a split that holds out no larger size (--holdout 'D > 1e11'
        # with N as the measure) leaves the selection its default distance, one decade beyond the training runs
        aim = {f"target_{by}": target} if target > size_of(train, by).max() else {"by": by}
        return fit_auto(train, candidates=options["candidates"], **aim, fixed=fixed,
                        bootstrap=bootstrap, seed=seed, level=level, average_seeds=options["average_seeds"], **common)
    fitted = get_law(name)(bootstrap=bootstrap, seed=seed, level=level, **law_kwargs).fit(train)
    if options["form_error"] and bootstrap:
        try:
            fitted = with_form_error(fitted, train, by=by, target=target)
        except ScalingError:
            pass  # too few sizes to nest, or the law cannot be fitted on the folds: noise-only intervals
    return fitted


def plot_backtest(result: BacktestResult):
    """Held-out runs against predictions with intervals, and the fit extended past the training range."""
    from .plotting import _plain_loss_axis, _plt

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8))
    t = result.table
    ax = axes[0]
    has = np.isfinite(t["lo"]).all()
    yerr = np.vstack([t["predicted"] - t["lo"], t["hi"] - t["predicted"]]) if has else None
    ax.errorbar(t["loss"], t["predicted"], yerr=yerr, fmt="o", ms=4, color="C3", ecolor="C3", alpha=0.7,
                label=f"held-out runs ({int(round(100 * result.level))}% interval)")
    lim = [min(t["loss"].min(), t["predicted"].min()) * 0.98, max(t["loss"].max(), t["predicted"].max()) * 1.02]
    ax.plot(lim, lim, color="k", lw=1, ls="--", label="perfect")
    ax.set(xlabel="actual loss", ylabel="predicted loss", title=f"{result.law}: MAPE {100 * result.mape:.2f}%")
    ax.legend(fontsize=8)
    ax = axes[1]
    law, train = result.fitted, result.train
    x = "N" if "N" in t.columns else law.inputs[0]
    ax.scatter(train[x], train["loss"], s=10, c="0.6", label="training runs")
    ax.scatter(t[x], t["loss"], s=16, c="C3", label="held-out runs")
    ax.errorbar(t[x], t["predicted"], yerr=yerr, fmt="_", color="C0", ms=10, label="prediction")
    if law.allocates() and not law.allocation_conditions and {"N", "D"} <= set(law.inputs) and x == "N":
        try:
            Cs = np.logspace(np.log10(train["C"].min()), np.log10(max(train["C"].max(), t["C"].max()) * 3), 100)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                co = law.compute_optimal(Cs, interval=False)
            ax.plot(co["N_opt"], co["loss"], color="C0", lw=1.5, label="fitted compute-optimal frontier")
        except (NotImplementedError, TypeError):
            pass
    ax.set(xscale="log", yscale="log", xlabel=x, ylabel="loss", title="fit on training runs, extended")
    _plain_loss_axis(ax)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
