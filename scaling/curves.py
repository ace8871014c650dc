"""Per-run loss curves: a long table with one row per (run, logged step).

Columns: ``run`` (id), ``N`` (parameters), ``tokens`` (seen so far), ``loss``,
optionally ``step``. Problems in single runs (a run with one point, tokens that
go backwards, a changing N) drop that run with a warning that says why; the rest
of the data is still used.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .data import map_columns, parse_columns, read_table
from .errors import DataError, ScalingWarning

REQUIRED = ("run", "N", "tokens", "loss")


def _read_curves(data, columns) -> pd.DataFrame:
    """A curves table (a path or a DataFrame, copied) with the user's column names mapped; run_id is run."""
    df = read_table(data) if not isinstance(data, pd.DataFrame) else data.copy()
    mapping = parse_columns(columns)
    unknown = [k for k in mapping if k not in CURVE_NAMES]
    if unknown:
        raise DataError(f"--columns names {unknown}, which a curves table does not have; its names are "
                        f"{', '.join(CURVE_NAMES)} (e.g. --columns step=Step,loss=train/loss)")
    df = map_columns(df, mapping)
    if "run" not in df.columns and "run_id" in df.columns:
        df = df.rename(columns={"run_id": "run"})
    return df


def prepare_curves(data, *, columns=None) -> pd.DataFrame:
    """Validate and clean a curves table; returns it sorted by run and tokens."""
    df = _read_curves(data, columns)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise DataError(f"curves table is missing column(s) {missing}; it has {list(df.columns)}. A curves table has "
                        "one row per logged step with run, N, tokens, loss (map yours with --columns)")
    for c in ("N", "tokens", "loss") + (("step",) if "step" in df.columns else ()):
        df[c] = pd.to_numeric(df[c], errors="coerce")
    nan = df[["N", "tokens", "loss"]].isna().any(axis=1)
    if nan.any():
        warnings.warn(f"curves: {int(nan.sum())} row(s) with missing N/tokens/loss ignored", ScalingWarning, stacklevel=2)
        df = df[~nan]
    bad = (df[["N", "tokens", "loss"]] <= 0).any(axis=1)
    if bad.any():
        warnings.warn(f"curves: {int(bad.sum())} row(s) with non-positive N/tokens/loss ignored", ScalingWarning, stacklevel=2)
        df = df[~bad]
    keep, problems = [], []
    order = "step" if "step" in df.columns else None
    for run, g in df.groupby("run", sort=True):
        g = g.sort_values(order, kind="stable") if order else g
        if g["N"].nunique() > 1:
            problems.append(f"run {run!r}: N changes within the run")
            continue
        key = order or "tokens"
        dup = g.duplicated(key, keep="last")
        if dup.any():
            problems.append(f"run {run!r}: {int(dup.sum())} duplicated {key}(s), kept the last of each")
            g = g[~dup]
        if order and (np.diff(g["tokens"].to_numpy()) < 0).any():
            problems.append(f"run {run!r}: tokens decrease as steps increase (a restart logged twice?); run left out")
            continue
        g = g.sort_values("tokens", kind="stable").drop_duplicates("tokens", keep="last")
        if len(g) < 2:
            problems.append(f"run {run!r}: a single point, no curve; run left out")
            continue
        keep.append(g)
    if problems:
        warnings.warn("curves: " + "; ".join(problems), ScalingWarning, stacklevel=2)
    if not keep:
        raise DataError("no usable curves: every run was left out (" + "; ".join(problems) + ")")
    return pd.concat(keep, ignore_index=True)


# ------------------------------------------------------------------ inputs of the curve laws
#: columns a plain curves table needs for a curve law (tokens, or batch in tokens per step, optional)
CURVE_LAW_COLUMNS = ("run", "N", "step", "lr", "loss")
#: every name a curves table's columns may be mapped to (--columns NAME=yours)
CURVE_NAMES = ("run", "run_id", "N", "step", "lr", "loss", "tokens", "batch")


def schedule_features(lr, tokens_per_step=1.0, lam: float = 0.999) -> dict[str, np.ndarray]:
    """Per-step inputs of the curve laws from a run's learning rate at every step.

    ``S1``: learning-rate area in full-rate tokens (lr over the run's peak, times tokens per step;
    full-rate steps when ``tokens_per_step`` is 1), warmup included; ``S2``: Tissue et al.'s
    annealing area with momentum ``lam``; ``eta``: lr over the peak (the multi-power law's drops).
    """
    from .schedules import areas

    lr = np.asarray(lr, float)
    S1, S2 = areas(lr, tokens_per_step, lam)
    peak = lr.max() if lr.size and lr.max() > 0 else 1.0
    return {"S1": S1, "S2": S2, "eta": lr / peak}


def _bad_curves(msg: str) -> DataError:
    return DataError(f"curves: {msg}. A curves table has one row per logged point with columns run, N, step, lr, "
                     "loss (tokens or batch optional; map yours with --columns, e.g. loss=train/loss)")


def _merge_split_rows(g: pd.DataFrame) -> pd.DataFrame:
    """One row per step where a log wrote one step's values on several rows (the loss and the learning rate logged
    by separate calls): rows of one step whose values never disagree become one; any that do stay apart (a
    restarted run logging a step twice is then refused by the step check)."""
    g = g.reset_index(drop=True)
    dup = g["step"].duplicated(keep=False) & g["step"].notna()
    if not dup.any():
        return g
    read = [c for c in ("N", "lr", "loss", "tokens", "batch") if c in g.columns]  # others (a runtime) may differ
    clash = g[dup].groupby("step")[read].nunique(dropna=True).gt(1).any(axis=1)
    mergeable = dup & ~g["step"].isin(clash.index[clash])
    if not mergeable.any():
        return g
    merged = g[mergeable].groupby("step", sort=False).first()  # first non-null value of each column
    first = mergeable & ~g["step"].duplicated(keep="first")  # each joined step stays where it first appeared
    out = g[~mergeable | first].copy()
    at = out.index[first[out.index].to_numpy()]
    out.loc[at, merged.columns] = merged.loc[out.loc[at, "step"]].to_numpy()
    return out


def _fill_from_own_rows(g: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """A run's learning rate on rows that lack it, linear in step between the rows that log it (flat beyond them),
    and its one N on rows that lack it; with the number of rows filled."""
    n = 0
    step = g["step"].to_numpy(float)
    lr = g["lr"].to_numpy(float)
    has = np.isfinite(lr) & np.isfinite(step)
    if has.any() and not has.all():
        fill = ~np.isfinite(lr) & np.isfinite(step)
        g = g.copy()
        g.loc[fill, "lr"] = np.interp(step[fill], step[has], lr[has])
        n += int(fill.sum())
    Ns = g["N"].dropna().unique()
    if len(Ns) == 1 and g["N"].isna().any():
        n += int(g["N"].isna().sum())
        g = g.assign(N=float(Ns[0]))
    return g, n


def prepare_curve_points(data, *, columns=None, lam: float = 0.999, dropna: bool = False) -> pd.DataFrame:
    """A plain curves table (``run, N, step, lr, loss``; ``tokens`` or ``batch`` optional) as curve-law inputs.

    What a user exports from W&B, TensorBoard or their own logs, without the package's runs table.
    Each run's learning rate is taken as linear between logged steps, and as a linear warmup from 0
    before its first logged step (Luo et al.'s curves start after a 2,160-step warmup); token counts
    come from ``tokens`` (cumulative), else ``batch`` (tokens per step) times steps, else areas are in
    steps. Returns one row per logged loss: ``run, N, step, tokens, S1, S2, eta, loss`` (the inputs of
    ``tissue`` and ``mpl``), sorted by run and step.

    Rows of one step written separately (the loss and the learning rate logged by calls of their own) are joined,
    and a learning rate missing on some rows of a run is taken as linear between the steps that log it (with a
    warning).

    Errors, each naming the run: a missing column, a learning rate that is missing on every row, negative or never
    positive, steps that repeat or go backwards within a run, a NaN or infinite loss (``dropna=True``
    keeps such rows as learning-rate history only), N changing within a run.
    """
    df = _read_curves(data, columns)
    missing = [c for c in CURVE_LAW_COLUMNS if c not in df.columns]
    if missing:
        why = (" (the curve laws need the learning rate at each logged step: export it with the loss)"
               if "lr" in missing else "")
        raise _bad_curves(f"the table is missing column(s) {missing}{why}; it has {list(df.columns)}")
    if not len(df):
        raise _bad_curves("the table has no rows")
    num = ["N", "step", "lr", "loss"] + [c for c in ("tokens", "batch") if c in df.columns]
    for c in num:
        df[c] = pd.to_numeric(df[c], errors="coerce")
    out, filled, diverged = [], [], []
    for run, g in df.groupby("run", sort=True):
        g = _merge_split_rows(g).reset_index(drop=True)
        g, n_filled = _fill_from_own_rows(g)
        if n_filled:
            filled.append(f"{run} ({n_filled})")
        for c in ("N", "step", "lr"):
            bad = g[c].isna() | ~np.isfinite(g[c])
            if bad.any():
                raise _bad_curves(f"run {run!r} has no {c} on any of its rows" if bad.all() else
                                  f"run {run!r} has a missing or non-numeric {c} at step(s) "
                                  f"{[float(v) for v in g.loc[bad, 'step'][:3]]}")
        if g["N"].nunique() > 1 or g["N"].iloc[0] <= 0:
            have = ", ".join(f"{v:g}" for v in sorted(g["N"].unique())[:3])
            raise _bad_curves(f"run {run!r}: N must be one positive number per run (it has {have})")
        step = g["step"].to_numpy(float)
        back = np.flatnonzero(np.diff(step) <= 0)
        if back.size:
            i = int(back[0])
            raise _bad_curves(f"run {run!r}: step {step[i + 1]:g} follows step {step[i]:g}; steps must increase "
                              "within a run (a restarted run logged twice? keep the rows after the restart)")
        if step[0] < 0:
            raise _bad_curves(f"run {run!r}: negative step {step[0]:g}")
        lr = g["lr"].to_numpy(float)
        if (lr < 0).any() or lr.max() <= 0:
            raise _bad_curves(f"run {run!r}: the learning rate must be >= 0 and positive somewhere")
        loss = g["loss"].to_numpy(float)
        bad = ~np.isfinite(loss)
        if bad.any() and not dropna:
            i = int(np.flatnonzero(bad)[0])
            raise _bad_curves(f"run {run!r}: loss is {loss[i]} at step {step[i]:g} ({int(bad.sum())} such row(s)): "
                              "rows that log other metrics (a sparse export) or a run that diverged; pass dropna=True "
                              "(--dropna) to keep rows without a loss as learning-rate history only, and drop a run "
                              "that diverged")
        ok = loss[~bad]
        if bad.any() and bad[-1] and ok.size and ok[-1] > 1.5 * ok.min():  # rose well above its best, then no loss
            diverged.append(f"{run} (loss {ok.min():.3g} -> {ok[-1]:.3g}, then {loss[-1]})")
        if (loss[~bad] <= 0).any():
            raise _bad_curves(f"run {run!r}: losses must be positive")
        # per-step learning rate and tokens on the whole step grid: linear between logged steps, a linear
        # warmup from 0 before the first logged step
        last = int(round(step[-1]))
        grid = np.arange(last + 1, dtype=float)
        lr_grid = np.interp(grid, np.concatenate([[-1.0], step]) if step[0] > 0 else step,
                            np.concatenate([[0.0], lr]) if step[0] > 0 else lr)
        if "tokens" in g.columns and g["tokens"].notna().all():
            tok = g["tokens"].to_numpy(float)
            if (np.diff(tok) < 0).any():
                raise _bad_curves(f"run {run!r}: tokens decrease as steps increase")
            per = tok[0] / (step[0] + 1)
            tok_grid = np.interp(grid, np.concatenate([[-1.0], step]), np.concatenate([[0.0], tok]))
            tps = np.diff(np.concatenate([[0.0], tok_grid]))
            if not (tps > 0).all():
                tps = np.maximum(tps, per * 1e-9)
        elif "batch" in g.columns and g["batch"].notna().all():
            tps = np.interp(grid, step, g["batch"].to_numpy(float))
        else:
            tps = np.ones_like(grid)
        f = schedule_features(lr_grid, tps, lam)
        at = np.round(step).astype(int)
        tokens = np.cumsum(tps)[at]
        rows = pd.DataFrame({"run": run, "N": float(g["N"].iloc[0]), "step": step, "tokens": tokens,
                             "S1": f["S1"][at], "S2": f["S2"][at], "eta": f["eta"][at], "loss": loss})
        out.append(rows[~bad])
    if diverged:
        warnings.warn(f"curves: {len(diverged)} run(s) look diverged, their loss rising to 1.5x their lowest before "
                      f"rows without a loss: {', '.join(diverged[:3])}{' ...' if len(diverged) > 3 else ''}; their "
                      "points are fitted as they are: drop such runs (--where 'run != ...')", ScalingWarning,
                      stacklevel=2)
    if filled:
        warnings.warn(f"curves: the learning rate (or N) was missing on some rows of {len(filled)} run(s): "
                      f"{', '.join(filled[:3])}{' ...' if len(filled) > 3 else ''} rows; taken as linear between "
                      "the steps that log it (logged by a call of its own?)", ScalingWarning, stacklevel=2)
    res = pd.concat(out, ignore_index=True)
    if res["N"].nunique() < 1 or not len(res):
        raise _bad_curves("no logged losses")
    return res
