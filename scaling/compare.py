"""Chinchilla's three approaches side by side on one dataset (Hoffmann et al. 2022, Table 2)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from .data import fit_cell_means
from .errors import ScalingError
from .laws import ChinchillaLaw, EnvelopeLaw, IsoFlopLaw


def _sweep_curves(curves, runs):
    """A sweep's curves table (run_id, step, tokens, train_loss, eval_loss: what ``scaling sweep export`` writes) as
    Approach 1 reads curves: each run's N from the runs table and its evaluations' held-out loss. Other tables
    pass through as they are."""
    from .data import read_table
    from .laws.curve import curve_points

    c = read_table(curves) if not isinstance(curves, pd.DataFrame) else curves
    if {"N", "loss"} <= set(c.columns) or not {"run_id", "eval_loss"} <= set(c.columns):
        return curves
    r = read_table(runs) if not isinstance(runs, pd.DataFrame) else runs
    if not {"run_id", "N"} <= set(r.columns):
        return curves
    return curve_points(c, r, loss="eval_loss")[["run", "N", "tokens", "loss"]]


def compare(runs=None, *, compute: float, curves=None, bootstrap: int = 200, level: float = 0.9, seed: int = 0,
            columns=None, curve_columns=None) -> pd.DataFrame:
    """One row per approach: allocation exponents a, b and the allocation at ``compute``, with intervals.

    Approach 1 needs ``curves`` (run, N, tokens, loss); Approaches 2 and 3 use the
    final-loss ``runs``. An approach that does not apply to the data gets a row
    saying why instead of numbers.
    """
    jobs = []
    if curves is not None and runs is not None and curve_columns is None:
        curves = _sweep_curves(curves, runs)
    if curves is not None:
        jobs.append(("1: envelope of training curves", lambda: EnvelopeLaw(bootstrap=bootstrap, seed=seed, level=level)
                     .fit(curves, columns=curve_columns)))
    if runs is not None:
        for label, cls in (("2: IsoFLOP profiles", IsoFlopLaw), ("3: parametric L(N, D)", ChinchillaLaw)):
            jobs.append((label, lambda cls=cls: fit_cell_means(cls(bootstrap=bootstrap, seed=seed, level=level), runs,
                                                               columns)))
    if not jobs:
        raise ScalingError("compare needs a runs table, a curves table, or both")
    rows = []
    for label, job in jobs:
        row = {"approach": label}
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                law = job()
            co = law.compute_optimal(compute, level=level).iloc[0]
            row.update(law=law.name, a=float(co["a"]), b=float(co["b"]), N_opt=float(co["N_opt"]),
                       D_opt=float(co["D_opt"]), loss=float(co["loss"]), note="; ".join(
                           dict.fromkeys(str(w.message) for w in caught)))  # every caveat, each once
            if "N_opt_lo" in co:
                # the approaches resample different things (runs, whole curves, the IsoFLOP parabolas'
                # residuals with the design fixed): a table that puts their intervals side by side says which
                row["interval_over"] = (law.fit_info_ or {}).get("bootstrap_over", "runs")
                ci = law.allocation_exponent_intervals(level)
                row.update(a_ci=ci["a"], b_ci=ci["b"], N_opt_ci=[float(co["N_opt_lo"]), float(co["N_opt_hi"])],
                           D_opt_ci=[float(co["D_opt_lo"]), float(co["D_opt_hi"])])
        except ScalingError as exc:
            row.update(law=None, note=f"not applicable: {exc}")
        rows.append(row)
    return pd.DataFrame(rows)


def format_comparison(table: pd.DataFrame, compute: float, level: float | None) -> str:
    """A table of the approaches; ``level=None``: fitted without a bootstrap (no intervals)."""
    what = "no intervals: --bootstrap 0" if level is None else f"{int(round(100 * level))}% bootstrap intervals"
    lines = [f"Chinchilla approaches at C = {compute:.3g} FLOPs ({what})",
             f"{'approach':<32}{'a':>24}{'b':>24}{'N_opt':>30}{'D_opt':>30}"]

    def cell(v, ci, fmt):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return "-"
        s = format(v, fmt)
        if isinstance(ci, list):
            s += f" [{format(ci[0], fmt)}, {format(ci[1], fmt)}]"
        return s

    for r in table.to_dict(orient="records"):
        if not isinstance(r.get("law"), str):  # an approach that did not run (None, or NaN under pandas 3)
            lines.append(f"{r['approach']:<32}{r['note']}")
            continue
        lines.append(f"{r['approach']:<32}{cell(r['a'], r.get('a_ci'), '.3f'):>24}{cell(r['b'], r.get('b_ci'), '.3f'):>24}"
                     f"{cell(r['N_opt'], r.get('N_opt_ci'), '.3g'):>30}{cell(r['D_opt'], r.get('D_opt_ci'), '.3g'):>30}")
    notes = [(r["approach"], r["note"]) for r in table.to_dict(orient="records")
             if isinstance(r.get("law"), str) and isinstance(r.get("note"), str) and r["note"]]  # ran, with notes
    kinds = [(r["approach"], r["interval_over"]) for r in table.to_dict(orient="records")
             if isinstance(r.get("law"), str) and isinstance(r.get("interval_over"), str)]
    if len({k for _, k in kinds}) > 1:  # different resampling: intervals of different kinds
        lines.append("intervals are bootstraps of different kinds; each resamples:")
        lines.extend(f"  {approach}: {over}" for approach, over in kinds)
    for approach, note in notes:
        lines.append(f"note ({approach}): {note}")
    return "\n".join(lines)
