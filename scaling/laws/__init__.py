"""Scaling laws, found by name.

>>> from scaling.laws import get_law
>>> result = get_law("chinchilla")(bootstrap=200).fit(df)   # a FitResult; the law stays a spec

Importing this package never imports torch.
"""

from __future__ import annotations

from typing import Type

from ..errors import UnknownNameError
from .base import Law, Param
from .result import FitResult

_REGISTRY: dict[str, Type[Law]] = {}


def register_law(cls: Type[Law]) -> Type[Law]:
    """Class decorator: make a law available by its ``name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    if cls.name in _REGISTRY and _REGISTRY[cls.name] is not cls:
        raise ValueError(f"a law named {cls.name!r} is already registered")
    _REGISTRY[cls.name] = cls
    return cls


def get_law(name: str) -> Type[Law]:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownNameError(f"unknown law {name!r}; available: {', '.join(available_laws())}") from None


def available_laws() -> list[str]:
    return sorted(_REGISTRY)


from .chinchilla import ChinchillaLaw  # noqa: E402
from .curve import LossCurveLaw  # noqa: E402
from .data_constrained import DataConstrainedLaw  # noqa: E402
from .envelope import EnvelopeLaw  # noqa: E402
from .gao import GaoBoN, GaoLaw, GaoRL, backtest_largest  # noqa: E402
from .finetune import FinetuneLaw, critical_data_size  # noqa: E402
from .hparams import DeepSeekHyperparameterLaw, HyperparameterLaw  # noqa: E402
from .isoflop import IsoFlopLaw  # noqa: E402
from .rlhf import SamplesPerPromptLaw  # noqa: E402
from .mpl import MultiPowerLaw  # noqa: E402
from .kaplan import (  # noqa: E402
    KAPLAN2020,
    KaplanCompute,
    KaplanData,
    KaplanLaw,
    KaplanParams,
    KaplanSteps,
    critical_batch_size,
    kaplan_frontier,
)

__all__ = [
    "Law", "Param", "FitResult", "register_law", "get_law", "available_laws", "ChinchillaLaw", "IsoFlopLaw", "EnvelopeLaw",
    "DataConstrainedLaw", "LossCurveLaw", "MultiPowerLaw", "KaplanLaw", "GaoLaw", "GaoBoN", "GaoRL", "backtest_largest",
    "HyperparameterLaw", "DeepSeekHyperparameterLaw",
    "FinetuneLaw", "critical_data_size", "SamplesPerPromptLaw",
    "KaplanParams", "KaplanData", "KaplanCompute", "KaplanSteps", "KAPLAN2020",
    "critical_batch_size", "kaplan_frontier",
]
