"""Fine-tuning sweeps (issue #14): base models x methods (full, LoRA, prompt tuning) x fine-tuning data x seeds.

``spec.load_spec`` reads and checks a definition (sweeps/finetune-cpu.yaml), ``spec.expand`` expands it into
cells of kind ``finetune``, ``cells.run_cell`` runs one, ``cells.rows`` is its row of the export, and
``cells.cell_kind()`` describes the kind to the graph runner. ``run_finetune`` / ``status`` / ``export``
(scaling/finetune/runner.py; ``scaling finetune run|status|export``) run a whole sweep on that runner. The law
these runs are fitted with is ``scaling.laws.FinetuneLaw`` (``--law finetune``). Importing this package imports
neither torch nor peft.
"""

from .spec import METHODS, FinetuneSpecError, expand, load_spec

__all__ = ["METHODS", "FinetuneSpecError", "expand", "load_spec", "run_finetune", "export", "status"]


def __getattr__(name):
    if name in ("run_finetune", "export", "status"):
        from . import runner

        return getattr(runner, name)
    raise AttributeError(name)
