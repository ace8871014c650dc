"""What fitting returns: one frozen ``FitResult`` for every law.

A law (``scaling.laws.base.Law``) is a spec: its settings and the pure pieces of its
form. Fitting is an act (``scaling.laws.estimate``) that reads a spec and data and
returns a ``FitResult``: the spec it fitted plus the values the fit resolved
(lmfit's ``Model.fit`` -> ``ModelResult`` split). Values from a paper
(``ChinchillaLaw.from_params(...)``) and fits read from a file (``scaling.load(path)``)
are ``FitResult``s too, so one object predicts, reports, allocates and saves
whatever produced it.

>>> result = ChinchillaLaw(bootstrap=1000).fit(df)
>>> result.params_, result.stderr_, result.ci_, result.covariance_   # fitted values end in _
>>> result.predict(N=7e10, D=1.4e12); result.compute_optimal(1e24)
>>> result.law          # the spec that was fitted, with its settings

The short names ``params``, ``se``, ``ci``, ``covariance``, ``objective``, ``fit_info`` and
``residuals`` are aliases of ``params_``, ``stderr_``, ``ci_``, ``covariance_``, ``objective_``,
``fit_info_`` and ``residuals_`` (kept for code written against earlier versions).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from ..diagnostics import check_extrapolation
from ..errors import DataError, FitError, ScalingError, ScalingWarning, SettingsError, UnsupportedError
from ..fitting.bootstrap import percentile_interval

if TYPE_CHECKING:
    from .base import Law

#: the law's methods that would fit or change a spec: not reachable through a result
_MUTATORS = frozenset({"fit", "_check_settings", "_restore_extra"})


@contextlib.contextmanager
def warnings_at_caller(depth: int = 1):
    """Re-issue the warnings of the block so that each names the line that called the function using it
    (the fit or prediction a user wrote), not the stage of the procedure that raised it; ``depth``
    counts the frames from the function with the block up to that line."""
    caught: list = []
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    finally:  # even when the block raises: its warnings explain the error
        for w in caught:
            # 1 this generator, 2 contextlib's __exit__, 3 the function with the block, 4 its caller
            warnings.warn(w.message, w.category, stacklevel=3 + depth)


class FitResult:
    """A fitted law: parameters, uncertainty, diagnostics, and what they predict. Frozen.

    Attributes ending in ``_`` are those the fit resolved (``params_``, ``theta_``, ``stderr_``,
    ``ci_``, ``covariance_``, ``objective_``, ``fit_info_``, ``residuals_``, ``n_points_``,
    ``converged_``, ``data_range_``, ``bootstrap_theta_``, a curve law's ``reforecast_`` (what a live run's
    prefix says of its end, :mod:`scaling.laws.reforecast`) and a law's own, e.g. ``profiles_``,
    ``per_size_``); reading one gives a copy. The short names ``params``, ``se``, ``ci``,
    ``covariance``, ``objective``, ``fit_info``, ``residuals`` are aliases of the first seven.
    ``law`` is the spec that was fitted, and the law's settings and class attributes read
    through (``result.level``, ``result.loss``).
    """

    __slots__ = ("law", "_state", "_label")

    def __init__(self, law: "Law", state: Mapping[str, Any], label: str | None = None):
        object.__setattr__(self, "law", law)
        object.__setattr__(self, "_state", dict(state))
        object.__setattr__(self, "_label", label)

    # ------------------------------------------------------------- frozen
    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"a FitResult is frozen: cannot set {name!r} (refit the law, result.law.fit(data), "
                             "for another result; result.labelled(...) names one for plots)")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"a FitResult is frozen: cannot delete {name!r}")

    def __reduce__(self):  # copy and pickle rebuild through __init__, never __setattr__
        return (type(self), (self.law, self._state, self._label))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__") or name in FitResult.__slots__:
            raise AttributeError(name)
        if name.endswith("_"):
            try:
                value = self._state[name]
            except KeyError:
                raise AttributeError(f"{self._what()} has no {name}") from None
            if isinstance(value, (dict, list, np.ndarray, pd.DataFrame)):
                return copy.deepcopy(value)  # fitted values read out as copies: the result stays as fitted
            return value
        if name in _MUTATORS:
            raise AttributeError(f"a FitResult has no {name}: fit the law (result.law.fit(data)) for a new result")
        try:
            return getattr(self.law, name)  # the spec's settings, class attributes and pure hooks
        except AttributeError:
            raise AttributeError(f"{self._what()} has no attribute {name!r}") from None

    def _what(self) -> str:
        return f"{type(self).__name__!r} of {self.law.name}"

    def __dir__(self) -> list[str]:
        return sorted(set(object.__dir__(self)) | set(self._state)
                      | {n for n in dir(self.law) if n not in _MUTATORS and not n.endswith("_")})

    def __repr__(self) -> str:
        s = self._state
        inner = ", ".join(f"{k}={v:.4g}" for k, v in s["params_"].items())
        head = self.law.name if self._label is None else f"{self.law.name}, {self._label}"
        if "n_points_" in s:
            boot = s.get("bootstrap_theta_")
            fi = s.get("fit_info_") or {}
            n = f"n={s['n_points_']}" + (f" {fi['unit']}" if fi.get("unit") not in (None, "runs") else "")
            tail = f"; {n}, bootstrap={0 if boot is None else len(boot)}"
        else:
            tail = f"; {'published' if self._label is not None else 'given'} values, no uncertainty"
        return f"{type(self).__name__}({head}: {inner}{tail})"

    def labelled(self, label: str) -> "FitResult":
        """The same result under a name for legends (e.g. ``"Hoffmann et al. 2022"``)."""
        return type(self)(self.law, self._state, label)

    @property
    def label(self) -> str:
        return self._label if self._label is not None else self.law.name

    def _with_state(self, **state: Any) -> "FitResult":
        """A new result: this one's state plus ``state`` (what a procedure around the fit adds, such as
        ``selection_`` and ``form_error_`` from ``scaling.selection``); this one is not changed."""
        return type(self)(self.law, {**self._state, **state}, self._label)

    # ------------------------------------------------------- fitted values
    # the short names are aliases: ``params`` is ``params_``, ``se`` is ``stderr_``, and so on; these read
    # the same for every result, also one without the value (given values have no ``stderr_`` to read)
    @property
    def params(self) -> dict[str, float]:
        """Alias of ``params_``: the parameter values (public scale), by name."""
        return dict(self._state["params_"])

    @property
    def se(self) -> dict[str, float | None]:
        """Alias of ``stderr_``: bootstrap standard errors (None: fixed, not estimated, or no bootstrap)."""
        return dict(self._state.get("stderr_", {n: None for n in self.params}))

    @property
    def ci(self) -> dict[str, list[float] | None]:
        """Alias of ``ci_``: percentile intervals at ``level`` (None where there is none)."""
        return copy.deepcopy(self._state.get("ci_", {n: None for n in self.params}))

    @property
    def covariance(self) -> pd.DataFrame | None:
        """Alias of ``covariance_``: the bootstrap covariance of the parameters (None without a bootstrap)."""
        cov = self._state.get("covariance_")
        return None if cov is None else cov.copy()

    @property
    def objective(self) -> float | None:
        """Alias of ``objective_``: the minimised objective (None for given values)."""
        return self._state.get("objective_")

    @property
    def fit_info(self) -> dict[str, Any]:
        """Alias of ``fit_info_``: how the fit went (starts, free parameters, procedure, bounds reached,
        seeds averaged); empty for given values."""
        return copy.deepcopy(self._state.get("fit_info_", {}))

    @property
    def residuals(self) -> np.ndarray | None:
        """Alias of ``residuals_``: log residuals of the fitted points (None for given values)."""
        r = self._state.get("residuals_")
        return None if r is None else np.array(r, copy=True)

    @property
    def is_fitted(self) -> bool:
        return True

    @property
    def _boot(self) -> np.ndarray | None:
        B = self._state.get("bootstrap_theta_")
        return None if B is None or len(B) == 0 else B

    def _require_bootstrap(self) -> np.ndarray:
        if self._boot is None:
            if "n_points_" not in self._state:  # published or given values: nothing was fitted here
                who = "published values" if self._label is not None else "given values (from_params)"
                raise FitError(f"{self.label}: {who} carry no uncertainty here (no bootstrap samples), so they "
                               f"have no intervals; fit data to get intervals: {type(self.law).__name__}"
                               f"(bootstrap=1000).fit(df) (the CLI's scaling fit --bootstrap B)")
            raise FitError("this fit has no bootstrap samples, so it has no intervals: fit with bootstrap > 0 "
                           "(the CLI's --bootstrap B)")
        return self._boot

    def bootstrap_params(self) -> pd.DataFrame:
        """One row of public parameters per bootstrap resample."""
        return pd.DataFrame(self.law._to_public(self._require_bootstrap()), columns=self.law.param_names())

    # ------------------------------------------------------------ predicting
    def predict(self, data=None, *, columns=None, **inputs):
        """What the law predicts at the given inputs (a DataFrame, with ``columns`` mapping its names to the law's,
        a mapping, or keyword arrays)."""
        with warnings_at_caller():
            data, rows = self._rows(data, columns)
            if rows is not None or self._runs_apart(data, inputs):  # each run alone: a curve law reads its history
                cols = columns if rows is None else None  # a plain table's names were mapped with its points
                out = _by_run(data, lambda g: (np.asarray(self.law._predict(self, self.law._inputs_from(g, cols))),))[0]
                return out if rows is None else out[rows]
            X = self.law._inputs_from(data, columns, **inputs)
            return self.law._predict(self, X)

    def _runs_apart(self, data, inputs) -> bool:
        """A curve law given a points table with a ``run`` column (and no overriding inputs): predicted run by run."""
        return (self.law.curve_law and isinstance(data, pd.DataFrame) and "run" in data.columns and not inputs
                and data["run"].nunique() > 1)

    def _rows(self, data, columns=None):
        """A curve law given a plain curves table (run, N, step, lr): its points and the table's rows among them."""
        if not self.law.curve_law:
            return data, None
        from .curve import curve_inputs

        return curve_inputs(data, columns)

    def predict_interval(self, data=None, *, level: float | None = None, kind: str | None = None, columns=None,
                         **inputs):
        """Bootstrap interval at the inputs: of a new run from noise alone (``kind="prediction"``: each
        bootstrap curve plus a residual drawn from the fit), of the curve itself (``"mean"``), or of a new run
        including the error of the law's form when extrapolating (``"total"``: the noise-only interval widened
        by the form-error model of nested backtests, ``form_error_``; see ``scaling.selection``).

        The default is ``"total"`` for a fit that has a form-error model (``--law auto`` fits, and those given
        one by ``scaling.selection.with_form_error``) and ``"prediction"`` for every other."""
        self._require_bootstrap()
        fe = self._state.get("form_error_")
        if kind is None:
            kind = "total" if fe else "prediction"
        if kind not in ("prediction", "mean", "total"):
            raise SettingsError(f"kind must be 'prediction', 'total' or 'mean', got {kind!r}")
        if kind == "total" and not fe:
            raise FitError("this fit has no form-error model, so no total interval: fit with law='auto' (the CLI's "
                           "--law auto), or add one with scaling.selection.with_form_error(result, data)")
        level = self.level if level is None else level
        with warnings_at_caller():
            data, rows = self._rows(data, columns)
            if rows is not None or self._runs_apart(data, inputs):  # each run alone, in the table's row order
                band = _by_run(data, lambda g: self.predict_interval(g.drop(columns="run"), level=level, kind=kind,
                                                                     columns=columns if rows is None else None))
                return band if rows is None else tuple(b[rows] for b in band)
            X = self.law._inputs_from(data, columns, **inputs)
            if kind != "total":
                return self.law._predict_interval(self, X, level, kind)
            from ..selection import total_interval

            lo, hi = self.law._predict_interval(self, X, level, "prediction")
            point = self.law._log_predict(self._state["theta_"][None, :], X)[0]
            alt_points = [p for p in (_alternative_log_predict(a, X) for a in fe.get("alternatives", ()))
                          if p is not None]
            return total_interval(lo, hi, point, X, fe, level, alt_points)

    def compute_optimal(self, C, *, level: float | None = None, interval: bool = True, **conditions) -> pd.DataFrame:
        """The loss-minimising allocation of each compute budget ``C``: one row per budget.

        Columns ``C``, ``N_opt``, ``D_opt``, ``tokens_per_param``, ``loss`` (and the allocation
        exponents where they are constants), plus ``<column>_lo`` / ``<column>_hi`` percentile
        intervals at ``level`` when the fit has a bootstrap (``interval=False`` skips them).
        ``conditions`` are what the law needs (``allocation_conditions``) or may take
        (``allocation_options``), e.g. ``U=`` unique tokens, ``flops=`` the FLOP model.
        """
        with warnings_at_caller():
            return self._compute_optimal(C, level, interval, conditions)

    def _compute_optimal(self, C, level, interval, conditions) -> pd.DataFrame:
        law = self.law
        if not law.allocates():
            raise UnsupportedError(f"{law.name} has no compute-optimal allocation")
        C = np.atleast_1d(np.asarray(C, float))
        if C.ndim != 1 or np.any(~np.isfinite(C)) or np.any(C <= 0):
            raise DataError(f"compute budgets must be finite and positive, got {C[~(np.isfinite(C) & (C > 0))][:3]}")
        missing = [c for c in law.allocation_conditions if conditions.get(c) is None]
        if missing:
            raise SettingsError(f"a {law.name} fit allocates compute given {missing} (the CLI's "
                                + " ".join(f"--{m} VALUE" for m in missing) + ")")
        unknown = [k for k in conditions if k not in law.allocation_conditions + law.allocation_options]
        if unknown:
            allowed = list(law.allocation_conditions + law.allocation_options)
            raise SettingsError(f"{law.name}.compute_optimal takes {allowed or 'no options'}, not {unknown}")
        level = self.level if level is None else level
        theta = self._state["theta_"]
        point = law._allocate(theta[None, :], C, True, **conditions)
        df = pd.DataFrame({"C": C, **{k: np.asarray(v, float)[0] for k, v in point.items()}})
        df.insert(3, "tokens_per_param", df["D_opt"] / df["N_opt"])
        what = f"the allocation for C={C.max():.3g} FLOPs puts"
        check_extrapolation(law.name, {"C": C, "N": df["N_opt"].to_numpy(), "D": df["D_opt"].to_numpy()},
                            self._state.get("data_range_"), what)
        for k, v in law._allocation_exponents(theta[None, :]).items():
            df[k] = float(np.asarray(v).reshape(-1)[0])
        boot = self._boot
        if interval and boot is not None and len(boot) > 1 and law._interval_allocatable(**conditions):
            with np.errstate(all="ignore"):
                samples = law._allocate(boot, C, False, **conditions)
            samples["tokens_per_param"] = samples["D_opt"] / samples["N_opt"]
            for k in [c for c in df.columns if c in samples]:
                lo, hi = percentile_interval(np.asarray(samples[k], float), level)
                df[f"{k}_lo"], df[f"{k}_hi"] = lo, hi
            df.attrs["level"] = level
            self._widen_for_alternatives(df, C, conditions)
        return df

    def _widen_for_alternatives(self, df: pd.DataFrame, C: np.ndarray, conditions) -> None:
        """A fit picked by --law auto keeps the laws within noise of it (``form_error_["alternatives"]``): where one
        allocates differently (the tied Chinchilla law's a is 0.5 by construction, the free one's is not), the
        intervals grow to include its allocation, and ``df.attrs["alternatives"]`` names them."""
        from . import get_law

        alts = (self._state.get("form_error_") or {}).get("alternatives") or []
        used = []
        for alt in alts:
            cls = get_law(alt["law"])
            if not cls.allocates() or set(cls.allocation_conditions) - set(conditions):
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    other = cls.from_params(**alt["params"]).compute_optimal(C, interval=False, **{
                        k: v for k, v in conditions.items() if k in (*cls.allocation_conditions,
                                                                     *cls.allocation_options)})
            except ScalingError:
                continue
            used.append(alt["label"])
            for k in ("N_opt", "D_opt", "tokens_per_param", "loss"):
                if f"{k}_lo" in df and k in other:
                    v = other[k].to_numpy(float)
                    df[f"{k}_lo"] = np.fmin(df[f"{k}_lo"].to_numpy(float), v)
                    df[f"{k}_hi"] = np.fmax(df[f"{k}_hi"].to_numpy(float), v)
        if used:
            df.attrs["alternatives"] = used

    def allocation_exponent_intervals(self, level: float | None = None) -> dict[str, list[float]]:
        """Percentile intervals of the allocation exponents over the bootstrap (empty without one)."""
        boot = self._boot
        if boot is None or len(boot) < 2 or self.allocation_not_identified():
            return {}
        level = self.level if level is None else level
        with np.errstate(all="ignore"):
            ex = self.law._allocation_exponents(boot)
        return {k: [float(x) for x in percentile_interval(np.asarray(v, float).reshape(-1), level)]
                for k, v in ex.items()}

    def allocation_not_identified(self) -> list[str]:
        """The parameters the allocation rests on (the terms' scales and exponents) that these data do not identify:
        then it has no interval (a bootstrap stuck where the fit stopped would make it look precise)."""
        loose = (self._state.get("fit_info_") or {}).get("not_identified") or {}
        return [n for n in ("A", "alpha", "B", "beta") if n in loose]

    # ------------------------------------------------------------- reporting
    def summary(self) -> dict[str, Any]:
        """Plain-Python (JSON-safe) summary; the CLI's ``--json`` output."""
        s = self._state
        out = {
            "law": self.law.name,
            "params": dict(s["params_"]),
            "stderr": self.se,
            "ci": self.ci,
            "level": self.level,
            "objective": s.get("objective_"),
            "n_points": s.get("n_points_"),
            "converged": s.get("converged_"),
        }
        out.update(self.law._summary_extra(self))
        if "fit_info_" in s:
            out["fit_info"] = copy.deepcopy(s["fit_info_"])
        if s.get("selection_"):
            out["variant"] = copy.deepcopy(s["selection_"]["variant"])
            out["selection"] = copy.deepcopy(s["selection_"])
        if s.get("form_error_"):
            out["form_error"] = copy.deepcopy(s["form_error_"])
        return out

    def report(self) -> str:
        """A readable table of the fit."""
        law, s = self.law, self._state
        pct = int(round(100 * self.level))
        lines = [f"{type(law).__name__} ({law.name}): {law.formula}"]
        fi = s.get("fit_info_", {})
        if "n_points_" in s:
            loss = fi.get("loss", law.loss)
            lines.append(f"fitted on {s['n_points_']} {fitted_on(fi)}, {loss} loss"
                         + (f" (delta={fi.get('delta', law.delta):g})" if loss == "huber" else "")
                         + f"; objective {s['objective_']:.6g}; converged: {'yes' if s['converged_'] else 'NO'}")
            if fi.get("procedure"):
                lines.append(f"procedure: {fi['procedure']}")
            if fi.get("n_starts", 1) > 1:
                lines.append(f"starts: {fi['n_starts']} ({fi['n_pruned']} pruned early), {fi['n_at_best']} reached "
                             f"the best objective; spread near the best {100 * fi['start_spread']:.2g}%")
            boot = s.get("bootstrap_theta_")
            nb = 0 if boot is None else len(boot)
            over = fi.get("bootstrap_over", "runs")
            asked = getattr(law, "bootstrap", None)
            lost = (f" ({asked - nb} of {asked} failed to fit and were left out)"
                    if isinstance(asked, int) and nb and 0 < asked - nb < asked else "")
            lines.append(f"uncertainty: {nb} bootstrap resamples over {over}{lost}" if nb else
                         "uncertainty: the parameters' intervals as stored in the file (its bootstrap resamples were "
                         "not kept, so predictions have no interval)" if fi.get("stored_intervals") else
                         f"uncertainty: none ({over.split(': ', 1)[1]})" if over.startswith("nothing: ") else
                         "uncertainty: none (bootstrap=0)")
        lines.append("")
        lines.append(f"  {'param':<10}{'value':>14}{'stderr':>12}{f'{pct}% CI':>30}")
        free = free_names(fi)
        se, ci = s.get("stderr_", {}), s.get("ci_", {})
        tied = law.tied_params()
        for n in law.param_names():
            v = s["params_"][n]
            fixed = (" (fixed)" if n in law.all_fixed else
                     f" (tied to {tied[n]})" if n in tied else
                     " (not estimated)" if free is not None and n not in free else
                     " (on a bound)" if any(n in b.split("=") for b in fi.get("at_bound", ())) else
                     f" (widened to the estimate: {fi['few_resamples']} resamples are too few to tell)"
                     if n in fi.get("ci_widened", ()) and fi.get("few_resamples") else
                     " (not identified: the resamples all moved away from the estimate)"
                     if n in fi.get("ci_widened", ()) else
                     f" (not identified: {fi['not_identified'][n]})" if n in fi.get("not_identified", {}) else
                     " (stderr set by a long tail of the resamples: read the CI)" if n in fi.get("heavy_tailed", ())
                     else "")
            se_s = f"{se[n]:12.4g}" if se.get(n) is not None else f"{'-':>12}"
            ci_s = f"[{ci[n][0]:.4g}, {ci[n][1]:.4g}]" if ci.get(n) is not None else "-"
            lines.append(f"  {n:<10}{v:14.6g}{se_s}{ci_s:>30}{fixed}")
        lines.extend(law._report_extra(self))
        if law.curve_law and "n_points_" in s:
            lines.append("")
            lines.append(_reforecast_line(s.get("reforecast_")))
        if s.get("selection_"):
            from ..selection import selection_lines

            lines.extend(selection_lines(s["selection_"]))
        fe = s.get("form_error_")
        if fe:
            lines.append(f"\nform error (nested backtests, {fe['n_folds']} levels, {fe['n_points']} held-out "
                         f"predictions): beyond the runs the log error adds tau = {fe.get('tau', 0.0):.4f} and grows "
                         f"by kappa = {fe['kappa']:.4f} per decade of {fe['by']}; intervals are total (noise + form "
                         "error) by default, kind='prediction' gives noise only")
        return "\n".join(lines)

    # ------------------------------------------------------------ round trip
    def to_dict(self) -> dict[str, Any]:
        """Everything needed to predict again, as plain JSON-safe Python (``from_dict`` reads it back)."""
        law, s = self.law, self._state
        d = self.summary()
        d["settings"] = {"loss": law.loss, "delta": law.delta, "fixed": law.fixed,
                         "bounds": {k: list(v) for k, v in law.bounds.items()}, "tie": [list(t) for t in law.tie],
                         "bootstrap": law.bootstrap, "seed": law.seed, "level": law.level, **law._settings_extra()}
        if s.get("bootstrap_theta_") is not None:
            d["bootstrap"] = {
                "params": _sig(law._to_public(s["bootstrap_theta_"])),
                "residuals": _sig(s["residuals_"]),
            }
        if "data_range_" in s:
            d["data_range"] = s["data_range_"]
        if "reforecast_" in s:
            d["reforecast"] = s["reforecast_"]
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any], source: str = "this fit") -> "FitResult":
        from .base import Law

        return Law.from_dict(d, source=source)

    def save(self, path: str | Path) -> Path:
        """Write the fit as JSON (folders made as needed); returns the path."""
        path = Path(path)
        if path.is_dir():
            raise DataError(f"{path} is a folder: give the fit file's name, e.g. {path / 'fit.json'}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.to_dict(), indent=1))
        return path

    @staticmethod
    def load(path: str | Path) -> "FitResult":
        from .base import Law

        return Law.load(path)


def _by_run(points: pd.DataFrame, f) -> tuple[np.ndarray, ...]:
    """``f`` (a tuple of arrays) on each run's points alone, put back in the points' order."""
    out = None
    for _, idx in points.groupby("run", sort=False).indices.items():
        got = f(points.iloc[idx].reset_index(drop=True))
        if out is None:
            out = tuple(np.full(len(points), np.nan) for _ in got)
        for o, g in zip(out, got):
            o[idx] = np.asarray(g, float)
    return out


# --------------------------------------------------------------------- state
def _alternative_log_predict(alt: Mapping[str, Any], X: Mapping[str, np.ndarray]) -> np.ndarray | None:
    """Log prediction of a candidate kept beside a fit's pick (within noise of it), at X; None when X lacks
    one of its inputs."""
    from . import get_law

    cls = get_law(alt["law"])
    if not set(cls.inputs) <= set(X):
        return None
    given = cls.from_params(**alt["params"])
    return given.law._log_predict(given._state["theta_"][None, :], {c: X[c] for c in cls.inputs})[0]


def additive_band(fit: "FitResult", curves: np.ndarray, level: float, kind: str):
    """Percentile band of bootstrap ``curves`` (B, m) on the predicted quantity's own scale (a reward, not a
    log loss): of the curve (``kind="mean"``), or of a new measurement (``"prediction"``: each curve plus a
    centred residual of the fit, drawn with the law's seed)."""
    if kind == "prediction":
        r = fit._state["residuals_"]
        rng = np.random.default_rng(fit.law.seed + 1)
        curves = curves + rng.choice(r - r.mean(), size=curves.shape, replace=True)
    return percentile_interval(curves, level)


def fitted_on(fit_info: Mapping[str, Any]) -> str:
    """The noun for what a fit's ``n_points_`` counts: runs, seed means of runs, curve points, ..."""
    unit = fit_info.get("unit", "runs")
    avg = fit_info.get("averaged_seeds")
    if avg:
        return f"{unit} ({avg['runs']} runs averaged over seeds into {avg['cells']} cells)"
    return unit


def free_names(fit_info: Mapping[str, Any]) -> set[str] | None:
    """Names of the parameters a fit estimated (None when not known, e.g. published values)."""
    free = fit_info.get("free")
    return None if free is None else {m for n in free for m in n.split("=")}


def _sig(x, digits: int = 12) -> list:
    """``x`` as nested lists of floats kept to ``digits`` significant figures (a 5e-15 stays 5e-15)."""
    return np.vectorize(lambda v: float(f"{v:.{digits}g}"), otypes=[float])(np.asarray(x, float)).tolist()


#: fewer bootstrap resamples than this cannot tell an unidentified parameter from chance
FEW_RESAMPLES = 20


#: a bootstrap standard deviation this many times the half-width of the central 68% of the resamples (what the
#: standard deviation would be for a normal spread) is set by a few extreme resamples, not by the bulk
HEAVY_TAIL_RATIO = 3.0


def heavy_tailed(P: np.ndarray, names: list[str], stderr: dict[str, float | None]) -> list[str]:
    """Parameters whose bootstrap standard deviation a few far-out resamples inflate (a weakly identified B whose
    resamples run to 1e6 while 90% of them stay within [1e2, 1e4]); the report says so beside its stderr."""
    q16, q84 = np.percentile(P, [16, 84], axis=0)
    half = (q84 - q16) / 2
    return [n for i, n in enumerate(names)
            if stderr.get(n) is not None and np.ptp(P[:, i]) > 0 and stderr[n] > HEAVY_TAIL_RATIO * half[i]]


def uncertainty(law: "Law", state: dict[str, Any], warn: bool = True) -> dict[str, Any]:
    """Standard errors, percentile intervals and covariance from the bootstrap samples in ``state``
    (set there, with ``fit_info_["ci_widened"]`` when an interval had to be widened); returns ``state``."""
    names = law.param_names()
    B = state.get("bootstrap_theta_")
    if B is None or len(B) < 2:
        state.update(stderr_={n: None for n in names}, ci_={n: None for n in names}, covariance_=None)
        return state
    P = law._to_public(B)
    stderr = dict(zip(names, map(float, P.std(axis=0, ddof=1))))
    lo, hi = percentile_interval(P, law.level)
    ci = {n: [float(a), float(b)] for n, a, b in zip(names, lo, hi)}
    state["covariance_"] = pd.DataFrame(np.cov(P, rowvar=False), index=names, columns=names)
    free = free_names(state.get("fit_info_", {}))
    unidentified = (state.get("fit_info_") or {}).get("not_identified", {})
    widened = []
    for n in names:
        if (free is not None and n not in free) or n in unidentified:
            # fixed, or not estimable from these data (an estimator says why): no interval
            stderr[n] = ci[n] = None
            continue
        v, (a, b) = state["params_"][n], ci[n]
        if not a <= v <= b:
            # the resamples all moved one way from the estimate (a flat direction, a parameter heading
            # to a boundary): an interval that excludes the estimate would contradict it
            ci[n] = [min(a, v), max(b, v)]
            widened.append(n)
    state["stderr_"], state["ci_"] = stderr, ci
    heavy = heavy_tailed(P, names, stderr)
    if "fit_info_" in state:
        state["fit_info_"].pop("heavy_tailed", None)
        if heavy:
            state["fit_info_"]["heavy_tailed"] = heavy
    if widened and "fit_info_" in state:
        state["fit_info_"]["ci_widened"] = widened
        if len(B) < FEW_RESAMPLES:  # a handful of resamples all on one side says little about identification
            state["fit_info_"]["few_resamples"] = int(len(B))
            if warn:
                warnings.warn(f"{law.name}: only {len(B)} bootstrap resamples: too few for a {law.level:.0%} interval "
                              f"(those of {widened} were widened to include the estimate); use {FEW_RESAMPLES * 10} "
                              "or more", ScalingWarning, stacklevel=3)
        elif warn:
            warnings.warn(
                f"{law.name}: the bootstrap resamples of {widened} all moved away from the estimate (a flat "
                "direction, or a parameter heading to a boundary, such as E -> 0 when the data show no floor): "
                "not identified by these data, so the interval is widened to include the estimate (fix the "
                "parameter, or add runs that pin it down)", ScalingWarning, stacklevel=3)
    return state


def params_state(law: "Law", theta: np.ndarray, public: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``theta_`` and ``params_`` of a state; given public values (published, loaded) are kept exactly."""
    theta = np.asarray(theta, float)
    if public is None:
        public = dict(zip(law.param_names(), law._to_public(theta)))
    return {"theta_": theta, "params_": {n: float(public[n]) for n in law.param_names()}}


def from_dict(law_cls: type, d: Mapping[str, Any], source: str) -> FitResult:
    """The ``FitResult`` a ``to_dict`` (or a fit file of any earlier version) describes, for ``law_cls``."""
    law_cls = law_cls._class_for(d)
    d = law_cls._upgrade_dict(d)
    law_cls._validate_dict(d, source)
    s = dict(d.get("settings", {}))
    law = law_cls(loss=s.get("loss", "huber"), delta=s.get("delta", 1e-3), fixed=s.get("fixed"),
                  bounds={k: tuple(v) for k, v in (s.get("bounds") or {}).items()},
                  tie=s.get("tie"), bootstrap=s.get("bootstrap", 0), seed=s.get("seed", 0),
                  level=d.get("level", s.get("level", 0.9)))
    extra = law._restore_extra(d)  # the law's own settings onto the new spec, and its own fitted values
    state = params_state(law, law_cls._to_internal(d["params"]), d["params"])
    for key, attr in (("objective", "objective_"), ("n_points", "n_points_"), ("converged", "converged_"),
                      ("fit_info", "fit_info_"), ("data_range", "data_range_"), ("selection", "selection_"),
                      ("form_error", "form_error_")):
        if d.get(key) is not None:
            state[attr] = copy.deepcopy(d[key])
    from .reforecast import INVALID, valid

    if valid(d.get("reforecast")):  # a file from an earlier version has none
        state["reforecast_"] = copy.deepcopy(d["reforecast"])
    elif d.get("reforecast") is not None:
        warnings.warn(f"{source}: {INVALID}; it is not used (watch keeps the plan's forecast of the final loss)",
                      ScalingWarning, stacklevel=3)
    boot = d.get("bootstrap")
    state["bootstrap_theta_"] = None
    if boot:
        P = np.asarray(boot["params"], float)
        theta = P.copy()
        for i, p in enumerate(law_cls.parameters):
            if p.log:
                with np.errstate(divide="ignore"):  # a resample at E = 0 stays at log 0 = -inf
                    theta[:, i] = np.log(P[:, i])
        state["bootstrap_theta_"] = theta
        state["residuals_"] = np.asarray(boot["residuals"], float)
    uncertainty(law, state, warn=False)
    if not boot:  # a file that kept its intervals but not the resamples (written with bootstrap samples left out)
        stored_ci, stored_se = d.get("ci") or {}, d.get("stderr") or {}
        ci = {n: list(map(float, stored_ci[n])) if _pair(stored_ci.get(n)) else None for n in law_cls.param_names()}
        if any(v is not None for v in ci.values()):
            state["ci_"] = ci
            state["stderr_"] = {n: float(stored_se[n]) if isinstance(stored_se.get(n), (int, float)) else None
                                for n in law_cls.param_names()}
            state.setdefault("fit_info_", {})["stored_intervals"] = True
    state.update(extra)
    return law.result_class(law, state)


def _reforecast_line(cal) -> str:
    """What a curve fit learnt for `watch`'s re-forecast of a live run's final loss, in one line."""
    from .reforecast import MIN_RUNS, at_share

    if not cal:
        return (f"live re-forecast: not calibrated (fewer than {MIN_RUNS} runs with points, or no run and step "
                "columns): `watch` keeps a plan's final-loss forecast until the run's last 5%")
    b = [at_share(cal, x)[0] for x in (0.25, 0.5)]
    return (f"live re-forecast: of a run's offset from the law after 25% / 50% of it, {b[0]:.2f} / {b[1]:.2f} lasted "
            f"to the end in these {max(cal['n_runs'])} runs: the weight `watch` gives a live run's offset "
            "(0: the plan stands)")


def _pair(v) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 2
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))


def validate_dict(law_cls: type, d: Mapping[str, Any], source: str) -> None:
    """Name what is wrong with a fit read from a file (edited by hand, truncated, another version)."""
    where = f"{source} ({law_cls.name})"
    params = d.get("params")
    if not isinstance(params, Mapping):
        raise DataError(f"{where} has no 'params' mapping")
    names = law_cls.param_names()
    missing = [n for n in names if n not in params]
    unknown = [n for n in params if n not in names]
    if missing or unknown:
        raise DataError(f"{where}: parameters must be exactly {names}; "
                        + "; ".join(x for x in (f"missing {missing}" if missing else "",
                                                f"unknown {unknown}" if unknown else "") if x))
    settings = d.get("settings") or {}
    if not isinstance(settings, Mapping):
        raise DataError(f"{where}: 'settings' must be a mapping")
    fixed = settings.get("fixed") or {}
    user_bounds = settings.get("bounds") or {}
    for p in law_cls.parameters:
        v = params[p.name]
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(f"{where}: parameter {p.name} is {v!r}, not a finite number")
        if p.log and v <= 0:
            raise DataError(f"{where}: parameter {p.name} must be positive, got {v}")
        lo, hi = user_bounds.get(p.name, (p.lower, p.upper)) if p.name not in fixed else (None, None)
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            raise DataError(f"{where}: parameter {p.name} = {v} lies outside its bounds [{lo}, {hi}]; "
                            "was the file edited? Refit, or fit with those bounds (--bound)")
    rng = d.get("data_range")
    if rng is not None:
        ok = isinstance(rng, Mapping) and all(
            isinstance(v, (list, tuple)) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                                 and math.isfinite(x) for x in v) and v[0] <= v[1]
            for v in rng.values())
        if not ok:
            raise DataError(f"{where}: 'data_range' must map each input to [low, high] numbers; refit, or delete it")
    boot = d.get("bootstrap")
    if boot:
        try:
            P = np.asarray(boot["params"], float)
            r = np.asarray(boot["residuals"], float)
        except (KeyError, TypeError, ValueError):
            raise DataError(f"{where}: the bootstrap section is damaged (needs numeric 'params' and "
                            "'residuals'); refit, or delete the section to keep the point fit only") from None
        if P.ndim != 2 or P.shape[0] < 2 or P.shape[1] != len(names) or not np.isfinite(P).all() or r.ndim != 1:
            raise DataError(f"{where}: the bootstrap section does not match the law's {len(names)} parameters; "
                            "refit, or delete the section to keep the point fit only")
        vals = np.array([params[n] for n in names], float)
        # the fit itself said its resamples all moved one way from these (their intervals were widened to hold them)
        info = d.get("fit_info")
        widened = set(info.get("ci_widened") or []) if isinstance(info, Mapping) else set()
        out = [n for n, v, lo, hi in zip(names, vals, P.min(axis=0), P.max(axis=0))
               if len(P) >= 20 and n not in widened
               and not lo - 1e-9 * abs(lo) - 1e-12 <= v <= hi + 1e-9 * abs(hi) + 1e-12]
        if out:
            warnings.warn(f"{where}: parameter(s) {out} lie outside every one of the {len(P)} bootstrap "
                          "resamples stored with them, so the intervals do not describe them (was the file "
                          "edited?); refit, or delete the bootstrap section", ScalingWarning, stacklevel=4)
