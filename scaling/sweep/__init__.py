"""The sweep runner: YAML sweep definitions -> trained runs -> a SQLite store and CSV tables.

Training code lives here and never imports the fitting side.
"""

from .runner import export, run_sweep, status
from .spec import expand, load_spec

__all__ = ["run_sweep", "status", "export", "load_spec", "expand", "extend"]


def __getattr__(name):
    if name == "extend":  # adaptive rounds fit IsoFLOP profiles: loaded only when asked for
        from .adaptive import extend

        return extend
    raise AttributeError(name)
