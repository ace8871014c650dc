"""Typed errors and warnings.

Every problem a user can cause with their data or arguments surfaces as a
:class:`ScalingError` subclass whose message names the problem and the fix. The CLI
prints these as one line; notebooks see an ordinary exception.
"""

from __future__ import annotations


class ScalingError(Exception):
    """Base class for errors the user can act on."""


class DataError(ScalingError, ValueError):
    """The input table is missing something, or holds values a fit cannot use."""


class SettingsError(ScalingError, ValueError):
    """A setting (of a law, a sweep, a command) that is unknown, unsupported or out of range."""


class FitError(ScalingError, RuntimeError):
    """A fit could not produce a trustworthy result."""


class NotFittedError(ScalingError, AttributeError):
    """A fitted attribute was used before ``fit`` was called."""


class UnknownNameError(ScalingError, KeyError):
    """A name looked up in a registry (a law, a reader, an executor) is not there.

    A :class:`KeyError`, so ``except KeyError`` still catches it, but printed as its
    message rather than as the quoted repr a plain KeyError gets.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class UnsupportedError(ScalingError, NotImplementedError):
    """The law or object cannot do what was asked (a law without a compute-optimal allocation)."""


class MissingExtraError(ScalingError, ImportError):
    """An optional dependency is not installed; the message says which extra installs it."""


class ScalingWarning(UserWarning):
    """Something the user should look at; the result is still returned."""
