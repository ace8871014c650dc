"""Scaling laws for language models: fit, predict, allocate, plan and watch.

>>> import scaling
>>> result = scaling.fit(scaling.load_chinchilla(drop_highest_loss=5), law="chinchilla", bootstrap=1000)
>>> result.predict_interval(N=7e10, D=1.4e12)
>>> result.save("fit.json"); scaling.load("fit.json").compute_optimal(1e24)

``import scaling`` is fast and never imports torch: the names below, and the
submodules (``scaling.sweep``, ``scaling.plotting``, ...), are loaded on first use
(``scaling.laws`` brings numpy, scipy and pandas; only the training entry points,
under the ``train`` extra, bring torch).
"""

import importlib as _importlib

#: name -> the submodule that defines it, imported on first use
_LAZY = {
    "load_chinchilla": "scaling.data",
    "read_table": "scaling.data",
    "DATA_DIR": "scaling.data",
    "SWEEPS_DIR": "scaling.data",
    "sweep_definition": "scaling.data",
    "ScalingError": "scaling.errors",
    "DataError": "scaling.errors",
    "FitError": "scaling.errors",
    "SettingsError": "scaling.errors",
    "MissingExtraError": "scaling.errors",
    "ScalingWarning": "scaling.errors",
    "curve_points": "scaling.laws.curve",
    "make_plan": "scaling.plan",
    "load_plan": "scaling.plan",
    "Monitor": "scaling.monitor",
    "trainer_callback": "scaling.monitor",
    **{name: "scaling.laws" for name in (
        "Law", "Param", "FitResult", "register_law", "get_law", "available_laws", "ChinchillaLaw", "IsoFlopLaw", "EnvelopeLaw",
        "DataConstrainedLaw", "LossCurveLaw", "MultiPowerLaw", "KaplanLaw", "GaoLaw", "GaoBoN", "GaoRL",
        "backtest_largest", "HyperparameterLaw", "DeepSeekHyperparameterLaw", "FinetuneLaw", "critical_data_size",
        "SamplesPerPromptLaw", "KaplanParams", "KaplanData", "KaplanCompute", "KaplanSteps", "KAPLAN2020",
        "critical_batch_size", "kaplan_frontier",
    )},
}

#: submodules reachable as attributes after a plain ``import scaling`` (``scaling.sweep.run_sweep``)
_SUBMODULES = ("backtest", "compare", "counting", "curves", "data", "diagnostics", "errors", "finetune", "fitting",
               "laws", "monitor", "overopt", "plan", "plotting", "quickstart", "readers", "schedules", "selection",
               "sweep", "synthetic")

__all__ = ["fit", "load", "__version__", *_LAZY]

TYPE_CHECKING = False  # typing.TYPE_CHECKING without importing typing; mypy and pyright read it by name
if TYPE_CHECKING:  # for editors and type checkers; at run time these load lazily
    from . import (backtest, compare, counting, curves, data, diagnostics, errors, fitting, laws,  # noqa: F401
                   monitor, overopt, plan, plotting, quickstart, readers, schedules, selection, sweep, synthetic)
    from .data import DATA_DIR, SWEEPS_DIR, load_chinchilla, read_table, sweep_definition  # noqa: F401
    from .errors import DataError, FitError, MissingExtraError, ScalingError, ScalingWarning, SettingsError  # noqa: F401
    from .laws import *  # noqa: F401,F403
    from .laws import FitResult
    from .laws.curve import curve_points  # noqa: F401
    from .monitor import Monitor, trainer_callback  # noqa: F401
    from .plan import load_plan, make_plan  # noqa: F401
del TYPE_CHECKING


def fit(data, law="chinchilla", *, columns=None, drop_highest_loss: int = 0, dropna: bool = False,
        average_seeds: bool = True, **settings) -> "FitResult":
    """Fit ``law`` to ``data`` and return the frozen ``FitResult``.

    ``law="auto"`` picks the law by nested backtests on ``data`` (``scaling.selection``; settings
    ``target_N=``/``target_C=``, ``candidates=``, ``fixed=``, ``bootstrap=``, ...) and returns the pick's fit, with
    ``selection_`` and the form-error model behind its total intervals.

    ``law`` is a law's name (``scaling.available_laws()`` lists them), a law class, or a law spec
    with its settings (``scaling.ChinchillaLaw(loss="squared")``); ``data`` is a run table (a
    DataFrame, or the path of a CSV, Parquet or JSONL file); ``columns`` maps the law's names to
    yours (``"N=params,loss=val_loss,seed=run_seed"`` or a dict); ``settings`` go to the law named
    or given as a class (``bootstrap=1000``, ``fixed={"E": 1.69}``, ``loss="squared"``, ...); a spec
    carries its own.

    As ``scaling fit`` does: a final-loss table with a ``seed`` column whose cells were run with
    several seeds is fitted on the per-cell means over seeds (``scaling.data.replicate_means``), with
    a ``ScalingWarning`` that says so and ``fit_info_["averaged_seeds"]`` (runs and cells) in the
    result; ``average_seeds=False`` fits every run. ``Law.fit`` itself always fits the rows it is given.
    """
    from .laws.result import warnings_at_caller

    if isinstance(law, str) and law == "auto":
        return _fit_auto(data, columns, drop_highest_loss, dropna, average_seeds, settings)
    with warnings_at_caller():  # every warning names the line that called scaling.fit
        from .data import fit_cell_means

        return fit_cell_means(_law_spec(law, settings), data, columns, average=average_seeds, dropna=dropna,
                              drop_highest_loss=drop_highest_loss, switch="average_seeds=False")


def _fit_auto(data, columns, drop_highest_loss, dropna, average_seeds, settings) -> "FitResult":
    """``scaling.fit(data, law="auto", target_N=..., candidates=...)``: the law picked by nested backtests
    (``scaling.selection.fit_auto``, which averages seed replicates as every fit does)."""
    from .laws.result import warnings_at_caller
    from .selection import fit_auto

    with warnings_at_caller(depth=2):
        return fit_auto(data, columns=columns, drop_highest_loss=drop_highest_loss, dropna=dropna,
                        average_seeds=average_seeds, **settings)


def _law_spec(law, settings):
    """The law spec ``scaling.fit`` fits: from a name, a class, or a spec as given."""
    from .errors import SettingsError
    from .laws import FitResult, Law, get_law

    if isinstance(law, Law):
        if settings:
            raise SettingsError(
                f"scaling.fit got a law spec, {law!r}, and settings {sorted(settings)}: put the settings on the "
                f"spec ({type(law).__name__}({', '.join(f'{k}=...' for k in settings)}, ...)), or pass the law "
                f"by name (law={law.name!r}, {', '.join(f'{k}=...' for k in settings)})")
        return law
    if isinstance(law, type) and issubclass(law, Law):
        return _construct(law, settings)
    if isinstance(law, FitResult):
        raise SettingsError(f"scaling.fit got a fitted result ({law!r}) as law=; pass its spec, law=result.law, "
                            "to fit it again to other data")
    if isinstance(law, str):
        return _construct(get_law(law), settings)
    raise SettingsError(f"law= takes a law's name (one of scaling.available_laws()), a law class or a law spec "
                        f"such as scaling.ChinchillaLaw(loss='squared'); got {type(law).__name__}")


def _construct(cls, settings):
    """``cls(**settings)``, with a setting the law does not take refused by name (not a TypeError)."""
    from .errors import SettingsError

    takes = cls.options(common=True)
    unknown = sorted(set(settings) - takes)
    if unknown:
        raise SettingsError(f"{cls.name} does not take {', '.join(unknown)}; its settings are {', '.join(sorted(takes))}")
    return cls(**settings)


def load(path, key=None) -> "FitResult":
    """A fit saved with ``result.save(path)`` (or ``scaling fit --out``), whichever law it is, in any
    format this package has written. ``key`` picks one fit from a file that holds several keyed by name,
    such as a sweep's ``fits.json``: ``scaling.load(path, key="isoflop")``."""
    from .laws import Law

    return Law.load(path, key=key)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("scaling")
    except PackageNotFoundError:  # a source tree on sys.path, not installed
        return "0+unknown"


def __getattr__(name: str):
    if name == "__version__":
        value = globals()["__version__"] = _version()
        return value
    if name in _SUBMODULES:  # imported as a package attribute, once
        return _importlib.import_module(f"scaling.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'scaling' has no attribute {name!r}")
    value = getattr(_importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({n for n in globals() if not n.startswith("_")} | set(__all__) | set(_SUBMODULES))
