"""The law contract: a law is a small stateless spec; ``fit`` returns a frozen ``FitResult``.

A law subclass declares its inputs, its parameters (each stored internally either
as-is or as a log, with default bounds) and the pure pieces of its form: the log
prediction, a model object the batched optimiser can differentiate (its
derivatives), a grid of starting points, and, where it has one, its
compute-optimal allocation. Settings are validated here once; the constraints
they imply (fixed, tied, bounded parameters) are data for the optimiser.

Fitting is an act, not part of the spec: ``fit`` hands the spec and the data to
the law's ``estimator`` (estimate.py for single-stage laws; multi-stage
procedures have their own) and returns what it resolved as a ``FitResult``
(result.py), which predicts, reports and saves. The law object is never changed.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Mapping

import numpy as np
import pandas as pd

from ..data import prepare
from ..diagnostics import check_extrapolation
from ..errors import DataError, NotFittedError, SettingsError, UnsupportedError
from ..fitting.bootstrap import percentile_interval
from ..fitting.optimize import Model, ParamTransform
from . import estimate
from .result import FitResult, params_state, validate_dict
from .result import from_dict as result_from_dict


def tokens_from_compute(inputs: Mapping[str, Any], law_inputs) -> dict:
    """``inputs`` for a law of N and D given C beside N: D = C / 6N, C dropped; given with D too, C must agree
    with 6 N D (within 1%). Unchanged for any other law or set of inputs."""
    inputs = dict(inputs)
    if "C" in inputs and "C" not in law_inputs and {"N", "D"} <= set(law_inputs) and "N" in inputs:
        C, N = np.asarray(inputs.pop("C"), float), np.asarray(inputs["N"], float)
        if "D" not in inputs:
            inputs["D"] = C / (6 * N)
        elif not np.allclose(C, 6 * N * np.asarray(inputs["D"], float), rtol=0.01):
            raise DataError("C is not 6 N D (within 1%); give two of N, D, C (D is worked out as C / 6N)")
    return inputs


@dataclass(frozen=True)
class Param:
    """A public parameter; ``log=True`` means the optimiser works on its logarithm."""

    name: str
    log: bool = False
    description: str = ""
    #: default bounds on the public value (None: unbounded); a user's bounds for the parameter replace them
    lower: float | None = None
    upper: float | None = None


def _as_1d(v) -> np.ndarray:
    return np.atleast_1d(np.asarray(v, dtype=float))


#: a fit's values under their short names (aliases of ``params_``, ``stderr_``, ...): a spec has none of them
_RESULT_NAMES = frozenset({"se", "ci", "covariance", "objective", "fit_info", "residuals"})


class Law:
    """Base class of all laws. Subclasses set the class attributes and the hooks.

    An instance is a spec: settings only (``loss``, ``delta``, ``fixed``, ``bounds``, ``tie``,
    ``params``, ``bootstrap``, ``seed``, ``level``, ``prune`` and a law's own). ``params`` is a
    setting too: an optional ``lmfit.Parameters`` of constraints and starting values (``vary=False``,
    ``min``/``max``, ``expr``, and ``value`` as one more start), never fitted values. ``fit(data)``
    returns a ``FitResult`` that holds the fit (``result.params_``, ``result.stderr_``, ...); a spec
    has no attribute ending in ``_`` and says so.
    """

    name: ClassVar[str] = ""
    inputs: ClassVar[tuple[str, ...]] = ()
    target: ClassVar[str] = "loss"
    parameters: ClassVar[tuple[Param, ...]] = ()
    formula: ClassVar[str] = ""
    #: resample whole groups (e.g. the points of one run's curve) in the bootstrap, when the column exists
    bootstrap_groups: ClassVar[str | None] = None
    #: fitted to per-step points of training curves (plans and watch use it), not to final losses
    curve_law: ClassVar[bool] = False
    #: predicts a run's loss from its inputs (False: it predicts something else, e.g. optimal hyperparameters)
    predicts_loss: ClassVar[bool] = True
    #: the figure `scaling plot` draws: "fit" (data and curves), "isoflop" (profiles), "overopt" (Gao Fig. 1)
    figure: ClassVar[str] = "fit"
    #: inputs that may be zero (everything else must be positive)
    nonnegative_inputs: ClassVar[tuple[str, ...]] = ()

    #: the constraint and objective settings this law honours; a non-default value of any other is refused
    supports: ClassVar[frozenset[str]] = frozenset({"loss", "delta", "fixed", "bounds", "tie", "params", "prune"})
    #: the objective it minimises when ``loss`` is not given
    default_loss: ClassVar[str] = "huber"

    def __init__(self, *, loss: str | None = None, delta: float = 1e-3, fixed: Mapping[str, float] | None = None,
                 bounds: Mapping[str, tuple[float, float]] | None = None, tie: list[tuple[str, ...]] | None = None,
                 params: Any = None, bootstrap: int = 1000, seed: int = 0, level: float = 0.9,
                 prune: bool = True):
        self.loss = self.default_loss if loss is None else loss
        self.delta = delta
        self.fixed = dict(fixed or {})
        self.bounds = dict(bounds or {})
        self.tie = [tuple(t) for t in (tie or [])]
        self.params = params
        self.bootstrap = bootstrap
        self.seed = seed
        self.level = level
        self.prune = prune
        self._check_settings()

    def _check_settings(self) -> None:
        """Refuse, at construction, what this law would not honour: never a silently ignored setting."""
        given = {"loss": self.loss != self.default_loss, "delta": self.delta != 1e-3, "fixed": bool(self.fixed),
                 "bounds": bool(self.bounds), "tie": bool(self.tie), "params": self.params is not None,
                 "prune": self.prune is not True}
        bad = [k for k, v in given.items() if v and k not in self.supports]
        if bad:
            raise SettingsError(f"{self.name} does not take {', '.join(bad)}: {self._unsupported_reason()}")
        if self.loss not in ("huber", "squared"):
            raise SettingsError(f"loss must be 'huber' or 'squared', got {self.loss!r}")
        if not (isinstance(self.delta, (int, float)) and self.delta > 0):
            raise SettingsError(f"delta (the Huber threshold) must be a positive number, got {self.delta!r}")
        if self.loss == "squared" and self.delta != 1e-3:
            raise SettingsError(f"{self.name}: delta is the Huber loss's threshold; loss='squared' has none (drop "
                                "delta, or use loss='huber')")
        if not (isinstance(self.level, (int, float)) and 0 < self.level < 1):
            raise SettingsError(f"level must be in (0, 1), got {self.level!r}")
        if isinstance(self.bootstrap, bool) or not isinstance(self.bootstrap, (int, np.integer)) or self.bootstrap < 0:
            raise SettingsError(f"bootstrap must be a whole number of resamples >= 0, got {self.bootstrap!r}")
        if self.bootstrap == 1:
            raise SettingsError("bootstrap=1 gives no interval (a spread needs 2 or more resamples; a 90% interval, "
                                "a few hundred): use 0 for none, or e.g. 200")
        names = self.param_names()
        for what, keys in (("fixed", list(self.fixed)), ("bounds", list(self.bounds)),
                           ("tie", [n for t in self.tie for n in t])):
            unknown = [k for k in keys if k not in names]
            if unknown:
                raise SettingsError(f"{self.name}: {what} names unknown parameter(s) {unknown}; parameters are {names}")
        for k, v in self.fixed.items():
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating, np.integer)) or not math.isfinite(v):
                raise SettingsError(f"{self.name}: fixed {k} must be a finite number, got {v!r}")
        for k, b in self.bounds.items():
            if not (isinstance(b, (tuple, list)) and len(b) == 2):
                raise SettingsError(f"{self.name}: bounds for {k} must be (low, high), got {b!r}")
            lo, hi = (-math.inf if b[0] is None else b[0]), (math.inf if b[1] is None else b[1])
            if lo > hi:
                raise SettingsError(f"{self.name}: bounds for {k} are empty: {b!r}")
        if self.params is not None:
            unknown = [k for k in self.params if k not in names]
            if unknown:
                raise SettingsError(f"{self.name}: params names unknown parameter(s) {unknown}; parameters are {names}")
        self._check_consistency()

    def _check_consistency(self) -> None:
        """Fixed values, ties and bounds that cannot all hold are an error, never one silently winning."""
        group = {n: {n} for n in self.param_names()}
        for t in list(self.tie) + self._extra_ties():
            merged = set().union(*(group[n] for n in t))
            for n in merged:
                group[n] = merged
        seen = set()
        for n, members in group.items():
            if id(members) in seen:
                continue
            seen.add(id(members))
            values = {m: float(self.fixed[m]) for m in sorted(members) if m in self.fixed}
            if len(set(values.values())) > 1:
                raise SettingsError(f"{self.name}: {sorted(members)} are tied but fixed to different values {values}; "
                                    "fix one of them, or drop the tie")
            if not values:
                continue
            v = next(iter(values.values()))
            for m in sorted(members):
                lo, hi = self.bounds.get(m, (None, None))
                if (lo is not None and v < lo) or (hi is not None and v > hi):
                    how = f"fixed {m} = {v:g}" if m in values else f"{m} is tied to a fixed {v:g}"
                    raise SettingsError(f"{self.name}: {how}, outside the bounds you gave it [{lo}, {hi}]")

    def _unsupported_reason(self) -> str:
        return "this law's fit has no such setting"

    @classmethod
    def references(cls) -> list[FitResult]:
        """Published fits of this law to draw beside a user's (each with a ``label``)."""
        return []

    @classmethod
    def options(cls, common: bool = False) -> set[str]:
        """The keyword settings this law's constructor takes (beyond the common ones of every law, unless
        ``common``)."""
        import inspect

        names = set()
        for k in cls.__mro__:
            if "__init__" in vars(k) and (common or k is not Law):
                names |= {p.name for p in inspect.signature(k.__init__).parameters.values()
                          if p.kind is p.KEYWORD_ONLY}
        return names

    def tied_params(self) -> dict[str, str]:
        """Each parameter held equal to another by design (``tie``, the law's own ties such as ``tie_exponents``),
        mapped to the one it follows."""
        tied = {m: t[0] for t in [*self.tie, *self._extra_ties()] for m in t[1:]}
        if getattr(self, "tie_exponents", False) and {"alpha", "beta"} <= set(self.param_names()):
            tied.setdefault("beta", "alpha")  # a law whose stages tie them (data-constrained's Chinchilla stage)
        return tied

    def _extra_ties(self) -> list[tuple[str, ...]]:
        """Ties a law's own settings imply (e.g. ``tie_exponents``), on top of the user's ``tie``."""
        return []

    def _input_notes(self, fit: FitResult, X: Mapping[str, np.ndarray]) -> list[str]:
        """What a prediction of this fit at inputs X should be told besides the fitted range (e.g. mpl's
        decay_by_size beyond the sizes fitted); a law's ``_predict`` warns them, plans list them."""
        return []

    def _extra_fixed(self) -> dict[str, float]:
        """Parameters a law's own settings hold fixed (e.g. mpl's ``kappa_B`` unless ``decay_by_size``)."""
        return {}

    @property
    def all_fixed(self) -> dict[str, float]:
        """Every fixed parameter: the user's ``fixed`` and those the law's own settings imply."""
        return {**self._extra_fixed(), **self.fixed}

    # ------------------------------------------------------------------ hooks
    def _log_predict(self, theta: np.ndarray, X: Mapping[str, np.ndarray]) -> np.ndarray:
        """log prediction, (K, n) for K internal parameter vectors."""
        raise NotImplementedError

    def _model(self, X: Mapping[str, np.ndarray]) -> Model:
        raise NotImplementedError

    def _init_grid(self, X: Mapping[str, np.ndarray], log_y: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _check_data(self, X: Mapping[str, np.ndarray]) -> None:
        for name in self.inputs:
            if np.unique(X[name]).size < 2 and not self._input_frozen(name):
                raise DataError(
                    f"all {X[name].size} points share one value of {name} ({X[name][0]:.4g}); "
                    f"{self.name} needs several distinct {name} to estimate how loss scales with it "
                    f"(add runs at other {name}, or fix that term's parameters)"
                )

    def _input_frozen(self, name: str) -> bool:
        return False

    def _check_terms(self, params: Mapping[str, float], X: Mapping[str, np.ndarray], y: np.ndarray) -> None:
        """After a fit with ``params``: warn when a term of the law vanished (laws with additive terms override)."""

    # ------------------------------------------------------- names and values
    @classmethod
    def param_names(cls) -> list[str]:
        return [p.name for p in cls.parameters]

    @classmethod
    def _to_internal(cls, values: Mapping[str, float]) -> np.ndarray:
        out = []
        for p in cls.parameters:
            v = float(values[p.name])
            if p.log:
                if v <= 0:
                    raise SettingsError(f"{cls.name}: parameter {p.name} must be positive, got {v}")
                v = math.log(v)
            out.append(v)
        return np.array(out)

    @classmethod
    def _to_public(cls, theta: np.ndarray) -> np.ndarray:
        theta = np.array(theta, dtype=float, copy=True)
        for i, p in enumerate(cls.parameters):
            if p.log:
                theta[..., i] = np.exp(theta[..., i])
        return theta

    @classmethod
    def from_params(cls, **values: float) -> FitResult:
        """A result holding given parameter values (published, or known): it predicts; no fit, no uncertainty."""
        law, state = cls._parametrised(values)
        return cls.result_class(law, state)

    @classmethod
    def _parametrised(cls, values: Mapping[str, float], **settings) -> tuple["Law", dict[str, Any]]:
        names = cls.param_names()
        unknown = set(values) - set(names)
        missing = set(names) - set(values)
        if unknown or missing:
            raise SettingsError(f"{cls.name} takes parameters {names}; unknown {sorted(unknown)}, missing {sorted(missing)}")
        for p in cls.parameters:  # what a saved fit must satisfy to load again
            v = values[p.name]
            if isinstance(v, bool) or not isinstance(v, (int, float, np.number)) or not math.isfinite(v):
                raise SettingsError(f"{cls.name}: parameter {p.name} is {v!r}, not a finite number")
            if p.log and v <= 0:
                raise SettingsError(f"{cls.name}: parameter {p.name} must be positive, got {v}")
            if (p.lower is not None and v < p.lower) or (p.upper is not None and v > p.upper):
                raise SettingsError(f"{cls.name}: parameter {p.name} = {v} lies outside [{p.lower}, {p.upper}] "
                                    f"(the form writes the signs out: {cls.formula})")
        law = cls(bootstrap=0, **settings)
        return law, params_state(law, cls._to_internal(values), values)

    def _spec(self) -> "Law":
        """A copy of this law's settings (never any fitted state: that lives in a ``FitResult``)."""
        spec = copy.copy(self)
        spec.__dict__ = copy.deepcopy({k: v for k, v in vars(self).items() if not k.endswith("_")})
        return spec

    @property
    def is_fitted(self) -> bool:
        return False

    def _require_fitted(self, *args, **kwargs):
        raise NotFittedError(
            f"this {type(self).__name__} is a law spec and holds no parameters: call .fit(data), which returns "
            f"a FitResult that predicts (result = law.fit(data); result.predict(...)), or build one from "
            f"known values with {type(self).__name__}.from_params(...)"
        )

    # a spec has nothing to predict, report or save: these say to fit first
    predict = predict_interval = compute_optimal = allocation_exponent_intervals = _require_fitted
    summary = report = to_dict = save = bootstrap_params = _require_fitted

    # --------------------------------------------------------- parametrisation
    def constraints(self) -> tuple[ParamTransform, np.ndarray, np.ndarray, list[list[int]]]:
        """This law's settings as the optimiser takes them: the map from free coordinates to internal
        parameters (fixed and tied ones folded in), bounds on the free coordinates, and the groups of
        parameters each free coordinate moves. Multi-stage procedures use it to refit a stage."""
        specs = self.parameters
        names = self.param_names()
        index = {n: i for i, n in enumerate(names)}
        fixed, tie = self.all_fixed, list(self.tie) + self._extra_ties()
        bounds = {p.name: (p.lower, p.upper) for p in specs if p.lower is not None or p.upper is not None}
        bounds.update(self.bounds)
        if self.params is not None:  # an lmfit.Parameters (or any mapping of objects with those attributes)
            for pname, par in self.params.items():
                if pname not in index:
                    raise SettingsError(f"{self.name}: unknown parameter {pname!r}; parameters are {names}")
                expr = getattr(par, "expr", None)
                if expr:
                    if expr.strip() not in index:
                        raise SettingsError(f"{self.name}: only ties of the form {pname}.expr = '<other parameter>' are supported, got {expr!r}")
                    tie.append((expr.strip(), pname))
                elif not getattr(par, "vary", True):
                    fixed[pname] = float(par.value)
                lo, hi = getattr(par, "min", -np.inf), getattr(par, "max", np.inf)
                if np.isfinite(lo) or np.isfinite(hi):
                    bounds[pname] = (lo, hi) if pname not in self.bounds else self.bounds[pname]
        for n in list(fixed) + list(bounds) + [x for t in tie for x in t]:
            if n not in index:
                raise SettingsError(f"{self.name}: unknown parameter {n!r}; parameters are {names}")
        # groups of tied internal coordinates
        group_of = list(range(len(names)))
        for t in tie:
            root = group_of[index[t[0]]]
            for n in t[1:]:
                if specs[index[n]].log != specs[index[t[0]]].log:
                    raise SettingsError(f"{self.name}: cannot tie {t[0]} and {n} (different scales)")
                old = group_of[index[n]]
                group_of = [root if g == old else g for g in group_of]
        offset = np.zeros(len(names))
        fixed_idx = set()
        for n, v in fixed.items():
            i = index[n]
            offset[i] = self._to_internal_one(specs[i], v)
            for j, g in enumerate(group_of):
                if g == group_of[i]:
                    fixed_idx.add(j)
                    offset[j] = offset[i]
        groups: list[list[int]] = []
        for g in dict.fromkeys(group_of):
            members = [j for j, gj in enumerate(group_of) if gj == g and j not in fixed_idx]
            if members:
                groups.append(members)
        M = np.zeros((len(names), len(groups)))
        for k, members in enumerate(groups):
            M[members, k] = 1.0
        lower = np.full(len(groups), -np.inf)
        upper = np.full(len(groups), np.inf)
        for n, (lo, hi) in bounds.items():
            if n in fixed:
                continue  # a fixed value may sit outside a default bound (e.g. a published negative exponent)
            i = index[n]
            lo_i = -np.inf if lo is None else self._to_internal_one(specs[i], lo, bound=True)
            hi_i = np.inf if hi is None else self._to_internal_one(specs[i], hi, bound=True)
            for k, members in enumerate(groups):
                if i in members:
                    lower[k], upper[k] = max(lower[k], lo_i), min(upper[k], hi_i)
        if (lower > upper).any():
            raise SettingsError(f"{self.name}: bounds are empty: {bounds}")
        return ParamTransform(M, offset), lower, upper, groups

    @staticmethod
    def _to_internal_one(spec: Param, v: float, bound: bool = False) -> float:
        v = float(v)
        if not spec.log:
            return v
        if v <= 0:
            if bound:
                return -np.inf
            raise SettingsError(f"parameter {spec.name} must be positive, got {v}")
        return math.log(v)

    # -------------------------------------------------------------------- data
    def _frame(self, data, *, columns=None, drop_highest_loss=0, dropna=False, target=True) -> pd.DataFrame:
        if self.curve_law:  # a plain curves table (run, N, step, lr, loss) becomes the points the law reads
            from .curve import as_curve_points

            data, columns = as_curve_points(data, columns, dropna=dropna)
        required = list(self.inputs) + ([self.target] if target else [])
        return prepare(data, required, columns=columns, drop_highest_loss=drop_highest_loss,
                       dropna=dropna, target=self.target, nonnegative=self.nonnegative_inputs)

    def _keyword_inputs(self, inputs: dict) -> dict:
        """Keyword inputs checked: a name the law does not read is refused (it would be silently ignored), except
        C beside N for a law of N and D (see :func:`tokens_from_compute`)."""
        inputs = tokens_from_compute(inputs, self.inputs)
        extra = [k for k in inputs if k not in self.inputs]
        if extra:
            raise DataError(f"{self.name} predicts from {list(self.inputs)}; it does not use {extra}")
        return inputs

    def _inputs_from(self, data=None, columns=None, **inputs) -> dict[str, np.ndarray]:
        if columns is not None:
            if not isinstance(data, pd.DataFrame):
                raise DataError("columns= maps a DataFrame's columns to the law's inputs; pass the DataFrame too")
            from ..data import map_columns, parse_columns

            # the fit's own mapping works here too: names of what the law does not read (its target, a seed) are skipped
            data = map_columns(data, {k: v for k, v in parse_columns(columns).items() if k in self.inputs})
        if data is not None and inputs:
            extra = [k for k in inputs if k not in self.inputs]
            if extra:
                raise DataError(f"{self.name} predicts from {list(self.inputs)}; it does not use {extra}")
        if data is not None:
            if isinstance(data, pd.DataFrame):
                missing = [c for c in self.inputs if c not in data.columns]
                if missing:
                    df = self._frame(data, target=False)
                else:
                    df = data
                cols = {c: _as_1d(df[c]) for c in self.inputs}
            elif isinstance(data, Mapping):
                cols = {c: _as_1d(data[c]) for c in self.inputs if c in data}
            else:
                raise DataError(f"pass a DataFrame or keyword arrays ({', '.join(self.inputs)}), got {type(data).__name__}")
            inputs = {**cols, **inputs}
        else:
            inputs = self._keyword_inputs(inputs)
        missing = [c for c in self.inputs if c not in inputs]
        if missing:
            raise DataError(f"{self.name} predicts from {list(self.inputs)}; missing {missing}")
        try:
            values = [_as_1d(inputs[c]) for c in self.inputs]
        except (TypeError, ValueError):
            raise DataError(f"{self.name}'s inputs {list(self.inputs)} must be numbers or arrays of numbers") from None
        try:
            arrays = np.broadcast_arrays(*values)
        except ValueError:
            sizes = {c: v.size for c, v in zip(self.inputs, values)}
            raise DataError(f"the inputs have different lengths {sizes}: give arrays of one length, or single "
                            "values for any input that is the same at every point") from None
        if arrays[0].size == 0:
            raise DataError("no points to predict at: the inputs are empty")
        X = {c: np.ascontiguousarray(a, dtype=float) for c, a in zip(self.inputs, arrays)}
        for c, a in X.items():
            if not np.all(np.isfinite(a)) or np.any(a < 0) or (c not in self.nonnegative_inputs and np.any(a == 0)):
                raise DataError(f"{c} must be finite and positive to predict, got {a[(~np.isfinite(a)) | (a <= 0)][:3]}")
        return X

    # --------------------------------------------------------------------- fit
    #: the estimator that fits this law: ``estimator(spec, data, **options)`` returns the fitted state
    estimator = staticmethod(estimate.multistart)
    #: the class of what ``fit`` returns (a law with methods of its own on a fit subclasses ``FitResult``)
    result_class: ClassVar[type] = FitResult

    def fit(self, data, *, columns=None, drop_highest_loss: int = 0, dropna: bool = False) -> FitResult:
        """Fit to a run table (DataFrame or CSV/Parquet path); returns a frozen ``FitResult``.

        The law itself is not changed: the estimator works on a copy of the settings, and the
        result keeps a copy of the settings it was fitted with (``result.law``).
        """
        return estimate.fit(self, data, columns=columns, drop_highest_loss=drop_highest_loss, dropna=dropna)

    def _default_bound_message(self, name: str, value) -> str:
        return (f"{self.name}: {name} ended on its default bound ({value:g}): the data do not show the "
                f"scaling this law assumes (loss should fall as its inputs grow; check the column mapping, "
                f"e.g. that N is the parameter count and D the tokens). Lift the bound with "
                f"--bound {name.split('=')[0]}=-inf:inf (Python: bounds={{'{name.split('=')[0]}': (None, None)}})")

    # ------------------------------------------------------- hooks of a fit
    def _predict(self, fit: FitResult, X: Mapping[str, np.ndarray]):
        """What a fit predicts at inputs X (the loss; laws predicting something else override)."""
        check_extrapolation(self.name, X, fit._state.get("data_range_"))
        return np.exp(self._log_predict(fit._state["theta_"][None, :], X)[0])

    def _predict_interval(self, fit: FitResult, X: Mapping[str, np.ndarray], level: float, kind: str):
        """Percentile band over the bootstrap curves, in logs; ``prediction`` adds a residual drawn from the fit.

        A curve law draws one residual per bootstrap curve, not one per point: a run's offset from its law moves
        slowly along the run, and independent draws made a plan's band jump by up to a third from one point to
        the next (each point's band has the same spread either way)."""
        logp = self._log_predict(fit._state["bootstrap_theta_"], X)  # (B, m)
        if kind == "prediction":
            rng = np.random.default_rng(self.seed + 1)
            r = fit._state["residuals_"] - np.median(fit._state["residuals_"])
            shape = (logp.shape[0], 1) if self.curve_law else logp.shape
            logp = logp + rng.choice(r, size=shape, replace=True)
        lo, hi = percentile_interval(logp, level)
        return np.exp(lo), np.exp(hi)

    def _summary_extra(self, fit: FitResult) -> dict[str, Any]:
        """What this law adds to a fit's summary (and JSON)."""
        return {}

    def _report_extra(self, fit: FitResult) -> list[str]:
        """Lines this law adds to a fit's report."""
        return []

    def _settings_extra(self) -> dict[str, Any]:
        """This law's own settings, as a fit file keeps them."""
        return {}

    def _restore_extra(self, d: Mapping[str, Any]) -> dict[str, Any]:
        """Set this law's own settings from a fit file onto this new spec; return its own fitted values."""
        return {}

    # ------------------------------------------------------------ allocation
    #: what an allocation must be told besides C (``("U",)``: unique tokens for the data-constrained law)
    allocation_conditions: ClassVar[tuple[str, ...]] = ()
    #: what it may be told (e.g. ``flops``, the FLOP model)
    allocation_options: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def allocates(cls) -> bool:
        """Whether this law gives a compute-optimal allocation (a capability, not a name to test)."""
        return cls._allocate is not Law._allocate

    def _allocate(self, theta: np.ndarray, C: np.ndarray, strict: bool, **conditions) -> dict[str, np.ndarray]:
        """(K, m) arrays ``N_opt``, ``D_opt``, ``loss`` (and any extra column) for K internal parameter
        vectors and m budgets. ``strict``: the point estimate (raise on a degenerate law) rather than
        bootstrap samples (give the limit or NaN)."""
        raise UnsupportedError(f"{self.name} has no compute-optimal allocation")

    def _allocation_exponents(self, theta: np.ndarray) -> dict[str, np.ndarray]:
        """Exponents of the allocation (``a``, ``b``, ...) for K parameter vectors; empty when they depend on C."""
        return {}

    def _interval_allocatable(self, **conditions) -> bool:
        return True

    def __getattr__(self, name: str):
        # only reached when ordinary lookup fails: a fitted value asked of a spec (the pattern before
        # FitResult, ``law.fit(df); law.params_``) says where the fit went
        if not name.startswith("__") and (name.endswith("_") or name in _RESULT_NAMES):
            cls = type(self).__name__
            raise NotFittedError(
                f"{cls}(...) is a law spec: it holds settings, not fitted values, so it has no {name}. "
                f".fit(data) returns a FitResult that holds the fit: result = law.fit(df); result.{name}")
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def settings(self, changed: bool = True) -> dict[str, Any]:
        """This spec's constructor settings by name; ``changed``: only those that differ from the defaults."""
        import inspect

        defaults: dict[str, Any] = {}
        for k in reversed(type(self).__mro__):  # the base's settings first; a subclass's default wins
            if "__init__" in vars(k) and k is not object:
                for p in inspect.signature(k.__init__).parameters.values():
                    if p.kind is p.KEYWORD_ONLY and p.name in vars(self):
                        defaults[p.name] = p.default
        out = {}
        for name, default in defaults.items():
            value = vars(self)[name]
            if name == "loss" and default is None:
                default = self.default_loss
            if changed:
                try:
                    same = bool(value == default) or (default is None and not value and value is not None
                                                      and not isinstance(value, (int, float)))
                except (TypeError, ValueError):  # arrays, objects without a truth value
                    same = False
                if same:
                    continue
            out[name] = value
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.settings().items())
        return f"{type(self).__name__}({inner})"

    # ------------------------------------------------------------ round trip
    @classmethod
    def from_dict(cls, d: Mapping[str, Any], source: str = "this fit") -> FitResult:
        """The ``FitResult`` a ``to_dict`` (or a fit file of any earlier version) describes."""
        from . import available_laws, get_law

        if not isinstance(d, Mapping) or not isinstance(d.get("law"), str):
            raise DataError(f"{source} is not a fit (no law name under 'law')")
        if d["law"] not in available_laws():
            raise DataError(f"{source}: unknown law {d['law']!r}; this package fits {', '.join(available_laws())}")
        law_cls = get_law(d["law"]) if cls is Law else cls
        if law_cls.name != d["law"]:
            raise DataError(f"{source} is a {d['law']} fit, not {law_cls.name}")
        return result_from_dict(law_cls, d, source)

    @classmethod
    def _class_for(cls, d: Mapping[str, Any]) -> type:
        """The class that restores this fit (a law with variants of its own parameters overrides it)."""
        return cls

    @classmethod
    def _validate_dict(cls, d: Mapping[str, Any], source: str) -> None:
        validate_dict(cls, d, source)

    @classmethod
    def _upgrade_dict(cls, d: Mapping[str, Any]) -> Mapping[str, Any]:
        """A fit file of an earlier version of this law in the current layout (a copy; ``d`` is not changed)."""
        return d

    @staticmethod
    def load(path: str | Path, key: str | None = None) -> FitResult:
        """A fit saved with ``result.save(path)``; ``key`` picks one fit from a file that holds several
        keyed by name (a sweep's ``fits.json``: ``Law.load(path, key="isoflop")``)."""
        from ..data import read_json_file

        d = read_json_file(path, "fit file")
        fits = [k for k, v in d.items() if isinstance(v, dict) and "law" in v and "params" in v] \
            if isinstance(d, dict) else []
        source = str(path)
        if key is not None:
            if not fits or key not in fits:
                held = f"the fits it holds are {fits}" if fits else "it holds no fits keyed by name"
                raise DataError(f"{path} has no fit under key {key!r}: {held}")
            d, source = d[key], f"{path} [{key!r}]"
        elif not isinstance(d, dict) or "law" not in d or "params" not in d:
            if fits:
                raise DataError(f"{path} holds several fits keyed by name ({', '.join(fits)}), not one: load one "
                                f"with scaling.load({str(path)!r}, key={fits[0]!r})")
            raise DataError(f"{path} is not a fit file written by `scaling fit --out` (no 'law'/'params')")
        return Law.from_dict(d, source=source)
