"""A sweep kind's definition read and filled in: the one step every kind's ``load_spec`` starts with."""

from __future__ import annotations

from pathlib import Path

from .spec import SpecError, _merge, read_definition


def merged_definition(source: str | Path | dict, defaults: dict, error: type[SpecError]) -> tuple[dict, str]:
    """(``defaults`` overlaid with the definition read from ``source``, where it came from); an unknown key or a
    mapping given as a value is ``error`` (the kind's own SpecError subclass), not the pretraining sweep's."""
    raw, origin = read_definition(source, error)
    try:
        return _merge(defaults, raw), origin
    except error:
        raise
    except SpecError as exc:
        raise error(str(exc)) from None
