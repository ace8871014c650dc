"""Plots of fits: data, fitted curves, the compute-optimal frontier and its band.

Functions draw on matplotlib axes they are given (or create a figure) and return
the figure, so notebooks can restyle them; ``save`` writes a PNG.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd


def _plt():
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg",) and not _interactive():
        matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _interactive() -> bool:
    try:
        from IPython import get_ipython

        return get_ipython() is not None
    except ImportError:
        return False


def _logspace_over(values, pad: float = 1.0, num: int = 200) -> np.ndarray:
    lo, hi = np.log10(np.min(values)), np.log10(np.max(values))
    return np.logspace(lo - pad, hi + pad, num)


#: where a law's input stops meaning anything (the curve is not drawn below it)
_INPUT_FLOOR = {"samples_per_prompt": 1.0}


def _axis_over(law, name: str, data, pad: float) -> np.ndarray:
    """Values of input ``name`` to draw a law over: the data's range (else the fitted range) padded in log."""
    if data is not None:
        xs = _logspace_over(data[name], pad=pad)
    else:
        lo, hi = law.data_range_[name] if name in getattr(law, "data_range_", {}) else (1e6, 1e12)
        xs = np.logspace(np.log10(lo) - pad, np.log10(hi) + pad, 200)
    return xs[xs >= _INPUT_FLOOR.get(name, 0.0)]


def plot_fit(law, data=None, *, columns=None, dropna: bool = True, runs=None, curve_loss: str | None = None,
             compare=None, compute=None):
    """Figure for a fitted law against its data (a DataFrame or a table's path, read as the fit read it; ``columns``
    maps your names, ``dropna`` leaves out rows with NaN, with a warning); ``compare``: other laws (e.g. published
    ones) to overlay.

    A law of N and D gets the three Chinchilla panels; an IsoFLOP fit with data its profiles
    (:func:`plot_isoflop`); a curve law (``mpl``, ``tissue``) each run's curve against the law's
    (:func:`plot_curves`: a plain curves table, or a sweep's curves with ``runs=`` its runs table and
    ``curve_loss=`` the column); an overoptimization law gold and proxy reward against sqrt(KL)
    (:func:`plot_overopt`); another law of two inputs (e.g. ``finetune``: X and D_f) one curve in the input with
    more distinct values per value of the other; a law of one input one curve."""
    from .data import prepare, read_table
    from .errors import ScalingError

    figure = getattr(law, "figure", None)
    if figure == "overopt" or law.curve_law:
        if data is None:
            what = "curves (a table: run, N, step, lr, loss)" if law.curve_law else "data"
            raise ScalingError(f"plotting a {law.name} fit needs its {what} (the CLI: scaling plot FIT DATA --out PNG)")
        if figure == "overopt":
            return plot_overopt(read_table(data), {law.method: law}, methods=[law.method])
        from .curve_backtest import curve_law_points

        return plot_curves(law, curve_law_points(data, columns=columns, runs=runs, loss=curve_loss or "eval_loss",
                                                 dropna=dropna))
    if figure == "hparams":
        return plot_hparams(law, data, columns=columns, dropna=dropna)
    if data is not None:
        if figure == "isoflop":
            return plot_isoflop(law, read_table(data), columns=columns, dropna=dropna)
        if hasattr(law.law, "rows"):  # the rows the law fits (its method, its policy...)
            data = law.law.rows(data, columns)
        else:  # C derived from N and D where the table has no C column
            both = "N" in law.inputs and "D" in law.inputs
            data = prepare(data, [*law.inputs, law.target, *(["C"] if both else [])], columns=columns, dropna=dropna)
    plt = _plt()
    if tuple(law.inputs) == ("N", "D"):
        return _plot_nd(plt, law, data, compare or [], compute)
    fig, ax = plt.subplots(figsize=(6, 4.5))
    has_band = getattr(law, "bootstrap_theta_", None) is not None
    drawn = []
    if len(law.inputs) == 2:
        a, b = law.inputs
        if data is not None and data[a].nunique() > data[b].nunique():
            a, b = b, a  # lines of the input with fewer values, along the other
        x_name = b
        levels = (np.sort(data[a].unique()) if data is not None else
                  np.geomspace(*law.data_range_[a], 3) if a in getattr(law, "data_range_", {}) else np.array([1.0]))[:8]
        cmap = plt.get_cmap("viridis")
        xs = _axis_over(law, x_name, data, 0.3)
        for i, v in enumerate(levels):
            color = cmap(i / max(1, len(levels) - 1))
            at = {x_name: xs, a: np.full(xs.size, v)}
            if data is not None:
                g = data[np.isclose(data[a], v)]
                ax.scatter(g[x_name], g[law.target], s=14, color=color, alpha=0.7)
            drawn.append(np.asarray(law.predict(**at), float))
            ax.plot(xs, drawn[-1], color=color, label=f"{a} = {v:.3g}")
            if has_band:
                lo, hi = law.predict_interval(**at, kind="mean")
                ax.fill_between(xs, lo, hi, color=color, alpha=0.15)
    else:
        x_name = law.inputs[0]
        xs = _axis_over(law, x_name, data, 0.5)
        if data is not None:
            ax.scatter(data[x_name], data[law.target], s=14, c="k", alpha=0.6, label="runs")
        drawn.append(np.asarray(law.predict(**{x_name: xs}), float))
        ax.plot(xs, drawn[-1], color="C0", label=f"{law.name} fit")
        if has_band:
            lo, hi = law.predict_interval(**{x_name: xs}, kind="mean")
            ax.fill_between(xs, lo, hi, color="C0", alpha=0.2, label=f"{int(100 * law.level)}% band")
    ax.set_xscale("log")
    y = np.asarray(data[law.target], float) if data is not None else np.concatenate(drawn)
    if np.all(y > 0):  # a reward can be negative: then the axis stays linear
        ax.set_yscale("log")
        _plain_loss_axis(ax)
    ax.set_xlabel(x_name)
    ax.set_ylabel(law.target)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def plot_hparams(law, data=None, *, columns=None, dropna: bool = True):
    """An ``hparams`` fit: the optimal learning rate and batch size against the law's inputs, one line per value
    of the other input (N for the learning rate of the steplaw form, which depends on N and D), with its band,
    and, given the run table, every cell's near-optimal settings (the points the law was fitted to)."""
    with warnings.catch_warnings():  # the fit's own warnings were given when it was made
        warnings.simplefilter("ignore")
        near = None
        if data is not None:
            df = law.law._table(data, columns, dropna)
            near = law.law._near_optimal(df)
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.5))
    has_band = getattr(law, "bootstrap_theta_", None) is not None
    rng = getattr(law, "data_range_", {}) or {}
    cmap = plt.get_cmap("viridis")
    for ax, target, terms in ((axes[0], "lr", law.law.lr_terms), (axes[1], "batch", law.law.batch_terms)):
        x_name = terms[-1]  # D (or C) along the axis; N, where this law has it, one line per value
        xs = _axis_over(law, x_name, near, 0.2)
        unused = {c: np.full(xs.size, np.sqrt(np.prod(rng.get(c, (1.0, 1.0))))) for c in law.inputs if c not in terms}
        levels = [None]
        if len(terms) > 1:
            vals = np.unique(near[terms[0]]) if near is not None else np.geomspace(*rng.get(terms[0], (1e8, 1e9)), 3)
            levels = list(vals[np.unique(np.linspace(0, len(vals) - 1, min(len(vals), 6)).round().astype(int))])
        for i, v in enumerate(levels):
            color = cmap(i / max(1, len(levels) - 1)) if v is not None else "C0"
            at = {x_name: xs, **unused, **({terms[0]: np.full(xs.size, v)} if v is not None else {})}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                ax.plot(xs, law.predict(**at)[target], color=color,
                        label=f"{terms[0]} = {v:.3g}" if v is not None else f"{law.name} fit")
                if has_band:
                    lo, hi = law.predict_interval(**at, kind="mean")
                    ax.fill_between(xs, lo[target], hi[target], color=color, alpha=0.15)
            if near is not None:
                g = near if v is None else near[np.isclose(near[terms[0]], v)]
                ax.scatter(g[x_name], g[target], s=16, color=color if v is not None else "k", alpha=0.7,
                           label="near-optimal runs" if v is None else None)
        ax.set(xscale="log", yscale="log", xlabel=x_name, ylabel="optimal " + ("learning rate" if target == "lr"
                                                                                else "batch (the table's unit)"),
               title=f"{'eta' if target == 'lr' else 'B'}_opt")
        ax.legend(fontsize=8)
    fig.suptitle(f"{law.name} ({law.law.form}): {law.law.formula}" +
                 (f"; points: settings within {100 * law.law.tolerance:.3g}% of their cell's best loss"
                  if near is not None else ""), fontsize=9)
    fig.tight_layout()
    return fig


def _plot_nd(plt, law, data, compare, compute):
    from matplotlib.colors import LogNorm

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.8))
    has_band = getattr(law, "bootstrap_theta_", None) is not None
    pct = int(round(100 * law.level))
    if data is not None:
        Cs = _logspace_over(data["C"], pad=1.5)
        Ns = np.sort(data["N"].unique())
    else:
        lo, hi = law.data_range_["N"] if hasattr(law, "data_range_") else (1e7, 1e10)
        Cs = np.logspace(17, 25, 200)
        Ns = np.logspace(np.log10(lo), np.log10(hi), 6)
    if compute is not None:
        Cs = np.unique(np.concatenate([Cs, np.logspace(np.log10(Cs[0]), np.log10(max(compute, Cs[-1])), 50)]))
    with warnings.catch_warnings():  # the frontier is drawn past the data on purpose
        warnings.simplefilter("ignore")
        co = law.compute_optimal(Cs, interval=has_band)
    a_fit = float(co["a"].iloc[0])

    # (1) loss vs compute, runs coloured by N, with the compute-optimal loss
    ax = axes[0]
    if data is not None:
        sc = ax.scatter(data["C"], data["loss"], c=data["N"], norm=LogNorm(), cmap="viridis", s=12, alpha=0.8)
        fig.colorbar(sc, ax=ax, label="N (parameters)")
    ax.plot(Cs, co["loss"], color="C3", lw=2, label="compute-optimal loss")
    if has_band:
        ax.fill_between(Cs, co["loss_lo"], co["loss_hi"], color="C3", alpha=0.2, label=f"{pct}% band")
    ax.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="loss", title="Loss vs compute")
    _plain_loss_axis(ax)
    ax.legend(fontsize=8)

    # (2) compute-optimal N vs C, with published frontiers to compare
    ax = axes[1]
    ax.plot(Cs, co["N_opt"], color="C3", lw=2, label=f"this fit (a = {a_fit:.3f})")
    if has_band:
        ax.fill_between(Cs, co["N_opt_lo"], co["N_opt_hi"], color="C3", alpha=0.2, label=f"{pct}% band")
    for i, other in enumerate(compare):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            oc = other.compute_optimal(Cs, interval=False)
        label = getattr(other, "label", other.name)
        ax.plot(Cs, oc["N_opt"], ls="--", color=f"C{i + 4}", label=f"{label} (a = {float(oc['a'].iloc[0]):.3f})")
    if data is not None:
        ax.scatter(data["C"], data["N"], s=6, c="0.6", alpha=0.5, label="runs")
    ax.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="N_opt (parameters)",
           title="Compute-optimal model size")
    ax.legend(fontsize=8)

    # (3) loss vs tokens for several model sizes
    ax = axes[2]
    pick = Ns if len(Ns) <= 8 else Ns[np.linspace(0, len(Ns) - 1, 8).round().astype(int)]
    cmap = plt.get_cmap("viridis")
    norm = LogNorm(vmin=Ns.min(), vmax=Ns.max()) if len(Ns) > 1 else None
    for n in pick:
        color = cmap(norm(n)) if norm else "C0"
        if data is not None:
            near = data[np.isclose(np.log(data["N"]), np.log(n), atol=0.05)]
            ax.scatter(near["D"], near["loss"], s=10, color=color, alpha=0.8)
            Ds = _logspace_over(data["D"], pad=0.3)
        else:
            Ds = np.logspace(9, 13, 100)
        ax.plot(Ds, law.predict(N=n, D=Ds), color=color, lw=1, label=f"N = {n:.3g}")
    ax.set(xscale="log", yscale="log", xlabel="D (tokens)", ylabel="loss", title="Fit at fixed N")
    _plain_loss_axis(ax)
    ax.legend(fontsize=7, ncol=2)
    fig.suptitle(f"{law.formula}   " + ", ".join(f"{k}={v:.4g}" for k, v in law.params_.items()), fontsize=10)
    fig.tight_layout()
    return fig


def plot_curves(law, points: pd.DataFrame, max_runs: int = 30):
    """A curve law against the curves: each run's loss (solid) and the law's prediction through its schedule
    (dashed), coloured by N, and the relative error along each run. ``points``: the curve laws' input table
    (:func:`scaling.curves.prepare_curve_points`) or a plain curves table; at most ``max_runs`` runs, spread
    over N."""
    from matplotlib.colors import LogNorm

    from .curve_backtest import curve_law_points

    points = curve_law_points(points)  # a plain curves table (run, N, step, lr, loss) too
    plt = _plt()
    runs = points.groupby("run", sort=False)["N"].first().sort_values()
    if len(runs) > max_runs:
        runs = runs.iloc[np.unique(np.round(np.linspace(0, len(runs) - 1, max_runs)).astype(int))]
    # a curves table without token counts gets tokens = step + 1: plot steps then
    counted = "tokens" in points.columns and not np.allclose(points["tokens"], points["step"] + 1)
    x_name = "tokens" if counted else "step"
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    cmap = plt.get_cmap("viridis")
    norm = LogNorm(vmin=runs.min(), vmax=max(runs.max(), runs.min() * 1.01))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # each run's first points lie before the fitted range
        for rid, n in runs.items():
            g = points[points["run"] == rid].reset_index(drop=True)
            pred = np.asarray(law.predict(g), float)
            color = cmap(norm(n))
            x = g[x_name].to_numpy(float)
            axes[0].plot(x, g["loss"], color=color, lw=1.0)
            axes[0].plot(x, pred, color=color, lw=1.0, ls="--")
            axes[1].plot(x, 100 * (g["loss"].to_numpy(float) - pred) / pred, color=color, lw=0.8)
    axes[0].plot([], [], color="0.3", label="runs")
    axes[0].plot([], [], color="0.3", ls="--", label=f"{law.name} fit")
    from matplotlib.ticker import NullFormatter

    for ax in axes:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(x_name)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("loss")
    _plain_loss_axis(axes[0])
    axes[0].legend()
    axes[1].axhline(0, color="k", lw=0.6)
    axes[1].set_ylabel("run - fit (% of fit)")
    sm = plt.cm.ScalarMappable(norm=norm, cmap=cmap)
    fig.colorbar(sm, ax=axes[1], label="N")
    title = f"{law.name}: {len(runs)} of {points['run'].nunique()} runs" if len(runs) < points["run"].nunique() \
        else f"{law.name}: {len(runs)} runs"
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_isoflop(law, data: pd.DataFrame, columns=None, dropna: bool = False):
    """IsoFLOP profiles (loss vs N per budget, parabola and minimum) and the fitted N_opt(C) with its band."""
    from matplotlib.colors import LogNorm

    plt = _plt()
    df = law._prepare_data(data, columns=columns, dropna=dropna)
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.8))
    ax = axes[0]
    cmap = plt.get_cmap("plasma")
    norm = LogNorm(vmin=df["C"].min(), vmax=df["C"].max() * 1.5)
    for (_, g), prof in zip(df.groupby("_budget"), law.profiles_.itertuples()):
        color = cmap(norm(prof.C))
        ax.scatter(g["N"], g["loss"], s=14, color=color)
        if g["N"].nunique() >= 3:
            m = g.groupby("N", sort=True)["loss"].mean()  # seeds of one size: the parabola runs through their mean
            x, yv = np.log(m.index.to_numpy(float)), m.to_numpy(float)
            keep = law.law._window(x, yv)  # the sizes the fit's own parabola used
            x, yv = x[keep], yv[keep]
            p = np.polyfit(x, yv, 2)
            xs = np.linspace(x.min(), x.max(), 100)
            ax.plot(np.exp(xs), np.polyval(p, xs), color=color, lw=1, ls="-" if prof.status == "ok" else ":")
        if prof.status == "ok":
            ax.plot(prof.N_opt, prof.loss_opt, marker="*", ms=12, color=color, mec="k", label=f"C = {prof.C:.2g}")
    ax.set(xscale="log", xlabel="N (parameters)", ylabel="final loss", title="IsoFLOP profiles")
    ax.legend(fontsize=7)
    ax = axes[1]
    ok = law.profiles_[law.profiles_["status"] == "ok"]
    Cs = np.logspace(np.log10(ok["C"].min()) - 0.5, np.log10(ok["C"].max()) + 1.5, 100)
    with warnings.catch_warnings():  # the plot extends past the data on purpose
        warnings.simplefilter("ignore")
        co = law.compute_optimal(Cs)
    ax.scatter(ok["C"], ok["N_opt"], color="k", zorder=3, label="per-budget optimum")
    ax.plot(Cs, co["N_opt"], color="C0", label=f"N_opt ∝ C^{law.params_['a']:.3f}")
    if "N_opt_lo" in co:
        a_ci = law.allocation_exponent_intervals()["a"]
        ax.fill_between(Cs, co["N_opt_lo"], co["N_opt_hi"], color="C0", alpha=0.2,
                        label=f"{int(round(100 * law.level))}% band (a in [{a_ci[0]:.3f}, {a_ci[1]:.3f}])")
    ax.set(xscale="log", yscale="log", xlabel="C (FLOPs)", ylabel="N_opt", title="Compute-optimal model size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _plain_loss_axis(ax) -> None:
    from matplotlib.ticker import LogLocator, ScalarFormatter

    fmt = ScalarFormatter()
    fmt.set_scientific(False)
    ax.yaxis.set_major_formatter(fmt)
    ax.yaxis.set_minor_formatter(ScalarFormatter())
    ax.yaxis.set_minor_locator(LogLocator(subs=(2, 3, 5), numticks=10))


def save(fig, path: str | Path, dpi: int = 120) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    _plt().close(fig)
    return path


def _overopt_curves(sub: pd.DataFrame, key: str, point: str) -> tuple[pd.DataFrame, list[str]]:
    """One row per point of each curve, and the columns that tell a colour group's curves apart.

    A per-prompt export holds a row per prompt, and a table may hold several seeds: each point is their mean
    (gold, proxy and d), so a line is drawn through means rather than zigzagging through every prompt. Policies and
    samples per prompt, KL penalties... that share a reward model are separate curves (any setting column that
    varies)."""
    curves = [c for c in ("policy", "samples_per_prompt", "kl_penalty", "rm_data", "beta")
              if c != key and c in sub.columns and sub[c].nunique() > 1]  # any setting that varies is its own curve
    averaged = [c for c in ("prompt", "seed") if c in sub.columns and sub[c].nunique() > 1]
    if averaged and point in sub.columns:
        by = [key, *curves, point]
        sub = sub.groupby(by, as_index=False, dropna=False)[["d", "gold", "proxy"]].mean()
    return sub, curves


def plot_overopt(data: pd.DataFrame, laws: dict | None = None, *, methods=None, kl_penalty: float | None = None,
                 rm_data: float | None = None):
    """Gao et al. Figure 1: gold (top row) and proxy (bottom row) reward against sqrt(KL), a colour per RM size.

    ``data`` is an exported overoptimization table; ``laws`` maps a method ("bon",
    "rl") to a fitted gao law, whose curves (dotted, over the range it was fitted
    on) and peaks (x) are overlaid. RL panels show the runs with ``kl_penalty`` (an error if there are none;
    default: those without a penalty where there are any, else every run, a line per penalty) and every panel the reward models (or DPO runs) trained on
    ``rm_data`` preference pairs (default: the most). Gold axes stop at three times the highest gold below
    zero, so a collapse does not flatten the rise and fall.
    """
    from .errors import DataError

    missing = [c for c in ("method", "gold", "proxy") if c not in data.columns]
    if "d" not in data.columns and "kl" not in data.columns:
        missing.append("d (or kl)")
    if missing:
        raise DataError(f"an overoptimization table needs columns method, d (or kl), gold, proxy and rm_params; "
                        f"missing {missing} (export one with `scaling overopt export`)")
    plt = _plt()
    laws = laws or {}
    df = data.copy()
    if "d" not in df.columns:
        df["d"] = np.sqrt(df["kl"].where(df["kl"] >= 0))
    if "rm_data" in df.columns and df["rm_data"].notna().any():
        pick = df["rm_data"].max() if rm_data is None else rm_data
        have = sorted(df["rm_data"].astype(float).dropna().unique())
        df = df[np.isclose(df["rm_data"].astype(float), pick)]
        if df.empty:
            raise DataError(f"no rows with rm_data == {pick:g}; the table has rm_data {', '.join(f'{v:g}' for v in have)}")
    methods = [m for m in (methods or ("bon", "rl", "dpo")) if m in set(df["method"])]
    if not methods:
        raise DataError(f"no {', '.join(methods or ('bon', 'rl', 'dpo'))} rows to plot (the method column has {sorted(set(df['method']))})")
    fig, axes = plt.subplots(2, len(methods), figsize=(5.2 * len(methods), 7.0), squeeze=False, sharex="col")
    titles = {"bon": "best-of-n", "rl": "RL (RLOO)", "dpo": "DPO (implicit reward as proxy)"}
    cmap = plt.get_cmap("viridis")
    for j, m in enumerate(methods):
        top, bottom = axes[0, j], axes[1, j]
        sub = df[df["method"] == m]
        if m == "rl" and "kl_penalty" in sub.columns:
            pen = sub["kl_penalty"].astype(float)
            if kl_penalty is not None and not np.isclose(pen, kl_penalty).any():
                raise DataError(f"no rl rows with kl_penalty == {kl_penalty:g}; the table has kl_penalty "
                                f"{', '.join(f'{v:g}' for v in sorted(pen.dropna().unique()))}")
            pick = kl_penalty if kl_penalty is not None else 0.0
            if np.isclose(pen, pick).any():
                sub = sub[np.isclose(pen, pick)]
        shown = (sorted(sub["kl_penalty"].astype(float).dropna().unique())
                 if m == "rl" and "kl_penalty" in sub.columns else [])
        key = "kl_penalty" if m == "dpo" else "rm_params"
        sub, curves = _overopt_curves(sub, key, "n" if m == "bon" else "step")
        groups = sorted(sub[key].dropna().unique())
        law = laws.get(m)
        for i, g in enumerate(groups):
            color = cmap(i / max(1, len(groups) - 1) * 0.9)
            label = f"beta {g:g}" if m == "dpo" else f"RM {int(g):,}"
            lines = list(sub[sub[key] == g].groupby(curves, sort=True, dropna=False)) if curves else \
                [(None, sub[sub[key] == g])]
            for c, (ident, s) in enumerate(lines):
                s = s.sort_values("d")
                if len(groups) == 1 and len(lines) > 1:  # one reward model: a colour per curve, named in the legend
                    ident = ident if isinstance(ident, tuple) else (ident,)
                    color = cmap(c / (len(lines) - 1) * 0.9)
                    lab = ", ".join(f"{k} {v:g}" if isinstance(v, (int, float)) else f"{v}"
                                    for k, v in zip(["k" if k == "samples_per_prompt" else k for k in curves], ident))
                else:
                    lab = label if c == 0 else None
                top.plot(s["d"], s["gold"], "-o", ms=3, color=color, label=lab, lw=1.5 if not curves else 1.0)
                bottom.plot(s["d"], s["proxy"], "--o", ms=2, color=color, label=lab, lw=1.5 if not curves else 1.0)
            color = cmap(i / max(1, len(groups) - 1) * 0.9)
            s = sub[sub[key] == g]
            if law is not None and m != "dpo":
                hi = s["d"].max() if law.max_d is None else min(s["d"].max(), law.max_d)
                xs = np.linspace(0, hi, 100)
                top.plot(xs, law.predict(d=xs, rm_params=np.full_like(xs, g)), ":", color=color, lw=2)
                pk = law.peak(g)
                if pk["d_star"][0] is not None and pk["d_star"][0] <= hi:
                    top.plot(pk["d_star"][0], pk["gold_star"][0], "x", color=color, ms=9, mew=2)
        gmax = max(float(sub["gold"].max()), 1e-9)
        if sub["gold"].min() < -3 * gmax:
            top.set_ylim(-3 * gmax, 1.15 * gmax)
        for ax in (top, bottom):
            ax.axhline(0, color="0.6", lw=0.8)
        extra = (f", kl_penalty {shown[0]:g}" if len(shown) == 1 else
                 f", kl_penalty {', '.join(f'{v:g}' for v in shown)}" if shown else "")
        top.set_title(f"{titles[m]}{extra}: gold" + (" (points), fit (dotted)" if law is not None else ""), fontsize=9)
        bottom.set_title(f"{titles[m]}{extra}: proxy", fontsize=9)
        top.set_ylabel("gold reward (vs the initial policy)")
        bottom.set_ylabel("proxy reward (vs the initial policy)")
        bottom.set_xlabel("d = sqrt(KL(pi || pi_init))  [nats^1/2]")
        # several curves a colour: named in the legend's title (one reward model) or in its note
        note = ", ".join("k" if c == "samples_per_prompt" else c for c in curves)
        outside = {"loc": "upper left", "bbox_to_anchor": (1.01, 1.0)} if len(top.get_legend_handles_labels()[1]) > 6 \
            else {}
        top.legend(fontsize=7, title=(note if len(groups) == 1 else f"a line per {note}") if curves else None,
                   title_fontsize=7, **outside)
    fig.tight_layout()
    return fig
