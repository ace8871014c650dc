"""Backtest a curve law: fit on some runs' whole curves, predict other runs' curves point by point.

``curve_backtest(curves, "mpl", holdout_runs=["cosine_72000", ...])`` fits the law on every run
not held out and scores its predictions of every logged point of the held-out runs, with the
keys of :func:`scaling.backtest.backtest` (``n_train`` and ``n_test`` count curve points; ``mape``,
``max_ape`` and ``coverage`` are over the held-out points). The curves are a plain table
(``run, N, step, lr, loss``; see :func:`scaling.curves.prepare_curve_points`), a table already
holding the laws' inputs, or a sweep's curves table with its runs table (``runs=``).
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .backtest import BacktestResult
from .errors import DataError, ScalingError


def curve_law_points(data, *, columns=None, runs=None, loss: str = "eval_loss", dropna: bool = False) -> pd.DataFrame:
    """The curve laws' input table (run, N, step, S1, S2, eta, loss) from whichever curves table is given."""
    from .curves import prepare_curve_points
    from .data import parse_columns, read_table

    table = read_table(data) if not isinstance(data, pd.DataFrame) else data
    if runs is not None:
        from .laws.curve import curve_points

        return curve_points(table, read_table(runs) if not isinstance(runs, pd.DataFrame) else runs, loss=loss)
    mapped = table.rename(columns={v: k for k, v in parse_columns(columns).items()})
    if {"S1", "S2", "eta", "N", "loss"} <= set(mapped.columns):
        return mapped
    return prepare_curve_points(table, columns=columns, dropna=dropna)


def _run_list(holdout_runs) -> list[str]:
    if holdout_runs is None:
        raise DataError("name the held-out runs: --holdout-runs R1,R2,... (run names from the curves table's run column)")
    names = holdout_runs.split(",") if isinstance(holdout_runs, str) else list(holdout_runs)
    names = [str(n).strip() for n in names if str(n).strip()]
    if not names:
        raise DataError("--holdout-runs is empty: give run names, e.g. --holdout-runs cosine_72000,wsdcon_3")
    return names


def holdout_mask(points: pd.DataFrame, holdout_runs) -> np.ndarray:
    """Rows of the held-out runs: a name matches a run exactly, or, if no run has that name, every run
    whose name ends with ``_NAME`` or ``-NAME`` (so ``cosine_72000`` holds out ``25M_cosine_72000``,
    ``100M_cosine_72000``, ...: one schedule at every size)."""
    names = _run_list(holdout_runs)
    run = points["run"].astype(str)
    known = sorted(run.unique())
    mask = np.zeros(len(points), bool)
    unknown = []
    for n in names:
        m = (run == n).to_numpy()
        if not m.any():
            m = (run.str.endswith("_" + n) | run.str.endswith("-" + n)).to_numpy()
        if not m.any():
            unknown.append(n)
        mask |= m
    if unknown:
        shown = ", ".join(known[:8]) + (f", ... ({len(known)} runs)" if len(known) > 8 else "")
        raise DataError(f"--holdout-runs: no run named {', '.join(map(repr, unknown))}; the runs are {shown}")
    if mask.all():
        raise DataError("--holdout-runs holds out every run: leave some to fit on")
    return mask


def curve_backtest(data, law: str = "mpl", *, holdout_runs, columns=None, runs=None, curve_loss: str = "eval_loss",
                   level: float = 0.9, bootstrap: int = 200, seed: int = 0, dropna: bool = False,
                   **law_kwargs) -> BacktestResult:
    """Fit curve law ``law`` on the runs not held out; score every logged point of the held-out runs.

    ``curve_loss``: with ``runs`` (a sweep's curves and runs tables), the curves' column to score; ``law_kwargs``
    are the law's settings (``loss``, ``delta``, ``fixed``, ``bounds``, ``decay_by_size``, ...)."""
    from .laws import available_laws, get_law

    cls = get_law(law)
    if not cls.curve_law:
        curve = [n for n in available_laws() if get_law(n).curve_law]
        raise ScalingError(f"--holdout-runs backtests a curve law ({' or '.join(curve)}); {law} is fitted to final "
                           "losses: use --holdout or --holdout-top")
    points = curve_law_points(data, columns=columns, runs=runs, loss=curve_loss, dropna=dropna)
    mask = holdout_mask(points, holdout_runs)
    train = points[~mask].reset_index(drop=True)
    test = points[mask].reset_index(drop=True)  # each run's points in order: a curve law reads their history
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # extrapolation warnings are the point of a backtest
        fitted = cls(bootstrap=bootstrap, seed=seed, level=level, **law_kwargs).fit(train)
        pred = np.asarray(fitted.predict(test), float)
        lo = hi = np.full(len(test), np.nan)
        if bootstrap:
            lo, hi = (np.asarray(v, float) for v in fitted.predict_interval(test, level=level))
    y = test["loss"].to_numpy(float)
    ape = np.abs(pred - y) / y
    # tokens only when the curves counted them (without, prepare_curve_points sets tokens = step + 1)
    counted = "tokens" in test.columns and not np.allclose(test["tokens"], test["step"] + 1)
    table = test[[c for c in ("run", "N", "step") if c in test.columns] + (["tokens"] if counted else [])].copy()
    table["loss"], table["predicted"], table["lo"], table["hi"], table["ape"] = y, pred, lo, hi, ape
    covered = (y >= lo) & (y <= hi)
    table["covered"] = covered if bootstrap else np.nan
    return BacktestResult(law=law, n_train=int(len(train)), n_test=int(len(test)), mape=float(ape.mean()),
                          max_ape=float(ape.max()), coverage=float(covered.mean()) if bootstrap else None,
                          coverage_noise=float(covered.mean()) if bootstrap else None,
                          level=level, table=table, fitted=fitted, train=train)


def plot_curve_backtest(result: BacktestResult):
    """The held-out runs' curves (solid) against the law fitted without them (dashed, with its band where the fit
    has a bootstrap), and the relative error along each, coloured by N."""
    from matplotlib.colors import LogNorm

    from .plotting import _plain_loss_axis, _plt

    plt = _plt()
    t = result.table
    x_name = "tokens" if "tokens" in t.columns else "step"
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    sizes = t.groupby("run", sort=False)["N"].first()
    norm = LogNorm(vmin=sizes.min(), vmax=max(sizes.max(), sizes.min() * 1.01))
    cmap = plt.get_cmap("viridis")
    for run, g in t.groupby("run", sort=False):
        color = cmap(norm(sizes[run]))
        x = g[x_name].to_numpy(float)
        axes[0].plot(x, g["loss"], color=color, lw=1.2, label=f"{run} (N {sizes[run]:.3g})")
        axes[0].plot(x, g["predicted"], color=color, lw=1.2, ls="--")
        if np.isfinite(g["lo"]).all():
            axes[0].fill_between(x, g["lo"], g["hi"], color=color, alpha=0.15)
        axes[1].plot(x, 100 * (g["loss"] - g["predicted"]) / g["predicted"], color=color, lw=1.0)
    axes[0].plot([], [], color="0.3", ls="--", label=f"{result.law}, fitted without them")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel(x_name)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss")
    _plain_loss_axis(axes[0])
    axes[0].legend(fontsize=7)
    axes[0].set_title(f"held-out runs: mean error {100 * result.mape:.2f}%, max {100 * result.max_ape:.2f}%",
                      fontsize=10)
    axes[1].axhline(0, color="0.6", lw=0.8)
    axes[1].set_ylabel("(actual - predicted) / predicted  [%]")
    axes[1].set_title("error along each held-out run", fontsize=10)
    fig.tight_layout()
    return fig
