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

from .data import parse_columns, prepare, read_table
from .errors import DataError, ScalingError
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

    def to_dict(self) -> dict:
        return {"law": self.law, "n_train": self.n_train, "n_test": self.n_test, "mape": self.mape,
                "max_ape": self.max_ape, "coverage": self.coverage, "level": self.level,
                "runs": self.table.replace({np.nan: None}).to_dict(orient="records")}

    def summary_line(self) -> str:
        cov = "-" if self.coverage is None else f"{100 * self.coverage:.0f}%"
        return (f"{self.law:<18} train {self.n_train:>4}  test {self.n_test:>4}  MAPE {100 * self.mape:6.2f}%  "
                f"max {100 * self.max_ape:6.2f}%  coverage@{int(round(100 * self.level))}% {cov:>5}")


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


def split(df: pd.DataFrame, holdout: str | None = None, holdout_top: float | None = None,
          by: str = "N") -> np.ndarray:
    """Boolean mask of held-out rows."""
    if (holdout is None) == (holdout_top is None):
        raise DataError("give exactly one of --holdout EXPR (e.g. 'N > 2.5e9') or --holdout-top FRACTION")
    if holdout is not None:
        try:
            mask = df.eval(holdout)
        except Exception as exc:  # pandas raises many kinds; the user needs the expression and the columns
            raise DataError(f"could not evaluate --holdout {holdout!r} ({exc}); columns are {list(df.columns)}") from None
        if not isinstance(mask, pd.Series) or mask.dtype != bool:
            raise DataError(f"--holdout {holdout!r} must be a comparison such as 'N > 2.5e9'")
        mask = mask.to_numpy()
    else:
        if by not in df.columns:
            raise DataError(f"--by {by!r}: no such column; use N or C")
        if not 0 < holdout_top < 1:
            raise DataError(f"--holdout-top must be a fraction in (0, 1), got {holdout_top}")
        values = np.sort(df[by].unique())
        k = max(1, int(round(holdout_top * len(values))))
        mask = (df[by] >= values[-k]).to_numpy()
    if mask.all() or not mask.any():
        raise DataError(f"the split leaves {int((~mask).sum())} training and {int(mask.sum())} held-out runs; "
                        "both must be non-empty")
    return mask


def backtest(data, law: str = "chinchilla", *, holdout: str | None = None, holdout_top: float | None = None,
             by: str = "N", level: float = 0.9, bootstrap: int = 200, columns=None, seed: int = 0,
             **law_kwargs) -> BacktestResult | list[BacktestResult]:
    """Fit ``law`` on the training runs and score its predictions of the held-out runs.

    ``law="all"`` returns a list, one result per applicable law, best MAPE first.
    """
    raw = read_table(data) if not isinstance(data, pd.DataFrame) else data
    present = [c for c in SIZE_COLUMNS if c in raw.columns or c in parse_columns(columns)]
    need = ["loss"] + [c for c in present if c != "C"]
    df = prepare(raw, need, columns=columns)
    if {"N", "D"} <= set(df.columns) and "C" not in df.columns:
        df["C"] = 6 * df["N"] * df["D"]
    mask = split(df, holdout, holdout_top, by)
    names = applicable_laws(df) if law == "all" else [law]
    if law != "all":
        cls = get_law(law)
        if issubclass(cls, AllocationLaw):
            raise ScalingError(f"{law} predicts only the compute-optimal loss, not single runs; backtest "
                               "chinchilla, kaplan or data-constrained instead")
    results = []
    for name in names:
        try:
            results.append(_one(df, mask, name, level, bootstrap, seed, law_kwargs))
        except ScalingError as exc:
            if law != "all":
                raise
            warnings.warn(f"backtest: {name} could not be fitted on the training runs: {exc}", stacklevel=2)
    if law == "all":
        if not results:
            raise ScalingError("no law could be fitted on the training runs")
        return sorted(results, key=lambda r: r.mape)
    return results[0]


def _one(df, mask, name, level, bootstrap, seed, law_kwargs) -> BacktestResult:
    cls = get_law(name)
    train, test = df[~mask], df[mask]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extrapolation warnings are the point of a backtest
        fitted = cls(bootstrap=bootstrap, seed=seed, level=level, **law_kwargs).fit(train)
        pred = fitted.predict(test)
        lo = hi = np.full(len(test), np.nan)
        if bootstrap:
            lo, hi = fitted.predict_interval(test, level=level)
    y = test["loss"].to_numpy(float)
    ape = np.abs(pred - y) / y
    table = test[list(dict.fromkeys(list(cls.inputs) + [c for c in ("N", "D", "C") if c in test]))].copy()
    table["loss"] = test["loss"]
    table["predicted"], table["lo"], table["hi"] = pred, lo, hi
    table["ape"] = ape
    table["covered"] = (y >= lo) & (y <= hi) if bootstrap else np.nan
    coverage = float(np.mean((y >= lo) & (y <= hi))) if bootstrap else None
    return BacktestResult(law=name, n_train=int(len(train)), n_test=int(len(test)), mape=float(ape.mean()),
                          max_ape=float(ape.max()), coverage=coverage, level=level,
                          table=table.reset_index(drop=True), fitted=fitted, train=train)


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
