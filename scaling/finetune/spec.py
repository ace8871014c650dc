"""Fine-tuning sweep definitions: YAML in, a validated list of cells out (issue #14).

A fine-tuning sweep takes base models (``save_pretrained`` folders, given directly or found as the
final models of a pretraining sweep run with ``save_model: true``), a downstream corpus distinct
from the pretraining one, and crosses them with fine-tuning methods (``full``, ``lora`` with a
rank axis, ``prompt`` with a virtual-tokens axis), fine-tuning data sizes ``D_f`` (tokens) and
seeds. One cell is one fine-tuning run (kind ``finetune``, no dependencies).

Everything that would make a run fail or mean nothing is refused here, before anything trains,
with one message naming the fix: an unknown method, a base model whose vocabulary differs from
the downstream corpus's, a LoRA rank larger than the model's hidden size, a soft prompt that
leaves no room for the text in the model's context. Base models are read from their
``config.json`` (no torch needed).

::

    name: finetune-cpu
    base:
      models:                     # save_pretrained folders, with the pretraining tokens each saw
        - {path: out/base/d32, D_pretrain: 4.0e6}
      # sweep: base-finetune-cpu  # or: every finished run of a pretraining sweep that saved its model
    downstream: {name: synthetic, states: 256, seed: 7}    # any corpus spec of scaling.sweep.corpus
    methods: [full, lora, prompt]
    lora: {rank: [2, 8], lr: 3e-3}
    prompt: {virtual_tokens: [4, 16], lr: 3e-2}
    D_f: [4096, 16384, 65536]
    seeds: [0, 1]
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from ..sweep.definition import merged_definition
from ..sweep.spec import SpecError, check_numbers

METHODS = ("full", "lora", "prompt")
#: the kind of every fine-tuning cell (the graph runner's registry name)
KIND = "finetune"


class FinetuneSpecError(SpecError):
    """The fine-tuning sweep definition is invalid."""


DEFAULTS: dict[str, Any] = {
    "name": None,
    # models: save_pretrained folders (a path, or {path, D_pretrain, N}); sweep: a pretraining sweep's final models
    "base": {"models": None, "sweep": None, "root": "out/sweeps"},
    # the downstream corpus: a scaling.sweep.corpus spec (synthetic with another seed, python-stdlib, tokens)
    # (synthetic with shift_seed: the pretraining language with its odds redrawn, a task that shares structure)
    "downstream": {"name": "synthetic", "states": 256, "branching": 4, "concentration": 1.0, "seed": 1,
                   "shift_seed": None,
                   "tokens": 2_000_000, "path": None, "dtype": None, "vocab_size": None, "max_bytes": None,
                   "val_fraction": None},
    "methods": list(METHODS),
    "full": {"lr": 3e-4},
    "lora": {"rank": [4], "alpha": None, "target_modules": None, "lr": 3e-3},
    "prompt": {"virtual_tokens": [8], "lr": 3e-2},
    "D_f": [16384, 65536],
    "epochs": 1.0,
    "min_steps": 10,
    "seq_len": 64,
    "tokens_per_step": 1024,
    "weight_decay": 0.0,
    "grad_clip": 1.0,
    "schedule": {"type": "cosine", "warmup": 0.1, "final_lr_frac": 0.1},
    "eval": {"tokens": 32768},
    "seeds": [0],
    "threads_per_worker": 1,
    "retries": 1,
}

NUMBERS = {  # key: (kind, lower bound, bound included); see scaling.sweep.spec.check_numbers
    "full.lr": ("number", 0, False), "lora.rank": ("list-int", 1, True), "lora.alpha": ("number?", 0, False),
    "lora.lr": ("number", 0, False), "prompt.virtual_tokens": ("list-int", 1, True),
    "prompt.lr": ("number", 0, False), "D_f": ("list-int", 1, True), "epochs": ("number", 0, False),
    "min_steps": ("int", 1, True), "seq_len": ("int", 2, True), "tokens_per_step": ("int", 1, True),
    "weight_decay": ("number", 0, True), "grad_clip": ("number", 0, True), "eval.tokens": ("int", 1, True),
    "seeds": ("list-int", 0, True), "threads_per_worker": ("int", 1, True), "retries": ("int", 0, True),
    "downstream.shift_seed": ("int?", 0, True), "downstream.seed": ("int?", 0, True),
    "downstream.states": ("int?", 1, True), "downstream.branching": ("int?", 1, True),
    "downstream.tokens": ("int?", 1, True),
}


def load_spec(definition, *, resolve: bool = True) -> dict:
    """A validated spec from a YAML path or a dict; ``resolve`` (the default): every cell checked against its
    base model's config.json and the downstream corpus too (``resolve=False`` checks the definition alone, for
    a sweep whose base models are not trained yet)."""
    spec, origin = merged_definition(definition, DEFAULTS, FinetuneSpecError)
    _validate(spec, origin)
    if resolve:
        expand(spec)  # every cell checked (base models read, vocabularies, ranks, prompt lengths) before anything trains
    return spec


def _number(v):
    return float(v) if isinstance(v, str) else v


def _validate(s: dict, origin: str) -> None:
    if not s["name"] or not str(s["name"]).replace("-", "").replace("_", "").isalnum():
        raise FinetuneSpecError("the sweep needs a 'name' of letters, digits, '-' and '_'")
    methods = s["methods"]
    if not isinstance(methods, list) or not methods:
        raise FinetuneSpecError(f"methods must be a non-empty list from {list(METHODS)}; got {methods!r}")
    for m in methods:
        check_method(m)
    check_numbers(s, NUMBERS, FinetuneSpecError,
                  text_ok=("full.lr", "lora.lr", "prompt.lr", "lora.alpha", "weight_decay", "grad_clip", "epochs"))
    for key in ("full.lr", "lora.lr", "prompt.lr", "lora.alpha", "weight_decay", "grad_clip", "epochs"):
        sect, _, leaf = key.rpartition(".")
        where = s[sect] if sect else s
        where[leaf] = _number(where[leaf])
    if min(s["D_f"]) < s["seq_len"] + 2:
        raise FinetuneSpecError(f"every D_f must hold at least one training sequence (seq_len + 2 = "
                                f"{s['seq_len'] + 2} tokens); got {min(s['D_f'])}")
    if s["tokens_per_step"] < s["seq_len"]:
        raise FinetuneSpecError(f"tokens_per_step ({s['tokens_per_step']}) must hold at least one sequence of "
                                f"seq_len = {s['seq_len']} tokens")
    tm = s["lora"]["target_modules"]
    if tm is not None and not (isinstance(tm, list) and tm and all(isinstance(t, str) for t in tm)):
        raise FinetuneSpecError(f"lora.target_modules is a list of module names (e.g. [q_proj, v_proj]); got {tm!r}")
    b = s["base"]
    if (b["models"] is None) == (b["sweep"] is None):
        raise FinetuneSpecError("base needs exactly one of models (save_pretrained folders) or sweep (a pretraining "
                                "sweep run with save_model: true)")


def check_method(method) -> None:
    """An unknown fine-tuning method is one clear error naming the known ones."""
    if method not in METHODS:
        raise FinetuneSpecError(f"unknown fine-tuning method {method!r}; use one of {', '.join(METHODS)}")


# ------------------------------------------------------------------ base models
def read_base(path, D_pretrain=None, N=None) -> dict:
    """What the sweep needs to know of a ``save_pretrained`` folder, from its ``config.json`` (no torch)."""
    p = Path(str(path)).expanduser()
    cfg_path = p / "config.json"
    if not cfg_path.exists():
        raise FinetuneSpecError(f"base model {p} has no config.json: give a folder written by save_pretrained "
                                "(a pretraining sweep writes one per run with save_model: true)")
    try:
        c = json.loads(cfg_path.read_text())
    except (OSError, ValueError) as exc:
        raise FinetuneSpecError(f"cannot read {cfg_path}: {exc}") from None
    d_model = c.get("hidden_size", c.get("n_embd"))
    n_layer = c.get("num_hidden_layers", c.get("n_layer"))
    context = c.get("max_position_embeddings", c.get("n_positions"))
    vocab = c.get("vocab_size")
    if not all(isinstance(v, int) and v > 0 for v in (d_model, n_layer, context, vocab)):
        raise FinetuneSpecError(f"{cfg_path} does not give the hidden size, layers, context and vocabulary of a "
                                "Llama- or GPT-2-style model")
    if N is None:
        N = _non_embedding(c, d_model, n_layer, vocab, context)
    if D_pretrain is None:
        raise FinetuneSpecError(f"base model {p}: give D_pretrain (the tokens it was pretrained on), e.g. "
                                f"{{path: {p}, D_pretrain: 4.0e6}}; the finetune law scales with it")
    D_pretrain = _number(D_pretrain)
    if not (isinstance(D_pretrain, (int, float)) and D_pretrain > 0):
        raise FinetuneSpecError(f"base model {p}: D_pretrain must be a positive number of tokens, got {D_pretrain!r}")
    return {"path": str(p.resolve()), "N": int(N), "D_pretrain": float(D_pretrain), "vocab_size": int(vocab),
            "d_model": int(d_model), "n_layer": int(n_layer), "context": int(context),
            "model_type": c.get("model_type", "llama")}


def _non_embedding(c: dict, d_model: int, n_layer: int, vocab: int, context: int) -> int:
    from ..counting import count_params

    family = "gpt2" if c.get("model_type") == "gpt2" else "llama"
    n_head = c.get("num_attention_heads", c.get("n_head"))
    return count_params(n_layer, d_model, n_head=n_head, n_kv_head=c.get("num_key_value_heads"),
                        d_ff=c.get("intermediate_size", c.get("n_inner")), vocab_size=vocab, n_ctx=context,
                        family=family, tie_embeddings=bool(c.get("tie_word_embeddings", True))).non_embedding


def bases(spec: dict) -> list[dict]:
    """The base models of a spec, each read from its config.json, with an ``id`` naming it in the cells' ids:
    ``N<N>-Dp<D_pretrain>`` for a folder, the pretraining run's id for a sweep's model."""
    b = spec["base"]
    if b["models"] is not None:
        if not isinstance(b["models"], list) or not b["models"]:
            raise FinetuneSpecError("base.models is a non-empty list of folders (or {path, D_pretrain, N})")
        out = []
        for m in b["models"]:
            m = {"path": m} if isinstance(m, str) else m
            if not isinstance(m, dict) or "path" not in m or set(m) - {"path", "D_pretrain", "N"}:
                raise FinetuneSpecError(f"each base model is a folder or {{path, D_pretrain, N}}; got {m!r}")
            one = read_base(m["path"], m.get("D_pretrain"), m.get("N"))
            out.append({**one, "id": f"N{_tag(one['N'])}-Dp{_tag(one['D_pretrain'])}"})
    else:
        out = _sweep_bases(b["sweep"], b["root"])
    seen: dict[str, str] = {}
    for one in out:
        if one["id"] in seen:
            raise FinetuneSpecError(f"base models {seen[one['id']]} and {one['path']} have the same N and D_pretrain "
                                    f"({one['id']}): their cells would share ids; list one of them")
        seen[one["id"]] = one["path"]
    return out


def _train_command(name: str) -> str:
    """The command that trains a pretraining sweep's runs (its definition's path where one is found)."""
    for where in (Path("sweeps"), Path(__file__).resolve().parents[1] / "sweep_defs"):
        if (where / f"{name}.yaml").exists():
            return f"`scaling sweep run {where / f'{name}.yaml'}`"
    return f"`scaling sweep run {name}.yaml` (the definition named {name})"


def _sweep_bases(name: str, root: str) -> list[dict]:
    """The final models a pretraining sweep kept (``runs/<run_id>/model``, with ``save_model: true``)."""
    import warnings

    from ..errors import ScalingWarning
    from ..sweep.store import Store

    path = Path(root) / name / "sweep.sqlite"
    train = _train_command(name)
    if not path.exists():
        raise FinetuneSpecError(f"no pretraining sweep named {name!r} under {root} (expected {path}): its runs are "
                                f"this sweep's base models; train them first with {train}, its definition saying "
                                "save_model: true")
    runs = Store(path).runs()
    out, unsaved, unfinished = [], [], []
    for _, r in runs.iterrows():
        cfg = json.loads(r["config"])
        if cfg.get("kind") == "stable":  # a WSD stable run has no final model: its branches do
            continue
        folder = Path(root) / name / "runs" / r["run_id"] / "model"
        if r["status"] in ("pending", "running", "failed"):
            unfinished.append(r["run_id"])
        elif r["status"] == "done" and (folder / "config.json").exists():
            out.append({**read_base(folder, cfg["D"], cfg["N"]), "id": r["run_id"]})
        elif r["status"] == "done":
            unsaved.append(r["run_id"])
    if not out:
        why = (f"{len(unfinished)} of its runs are not finished" if unfinished else
               "its runs kept no model: it was run without save_model: true (add it to the definition; the runs "
               "get new ids and train again)")
        raise FinetuneSpecError(f"pretraining sweep {name!r} has no finished run with a saved model "
                                f"(runs/<run_id>/model): {why}. Train the base models with {train}")
    if unfinished:
        warnings.warn(f"pretraining sweep {name!r}: fine-tuning the {len(out)} base model(s) it has; {len(unfinished)} "
                      f"of its runs are not finished (finish them with {train}, then run this sweep again: it adds "
                      "their cells)", ScalingWarning, stacklevel=4)
    if unsaved:
        warnings.warn(f"pretraining sweep {name!r}: {len(unsaved)} finished run(s) kept no model (trained without "
                      f"save_model: true) and are left out; fine-tuning the {len(out)} that did", ScalingWarning,
                      stacklevel=4)
    return out


# ------------------------------------------------------------------ bad input
def downstream_vocab(downstream: dict) -> int:
    """The vocabulary the downstream corpus's token ids come from."""
    from ..sweep.corpus import CORPORA, VOCAB, token_folder

    name = downstream.get("name")
    if name not in CORPORA:
        raise FinetuneSpecError(f"unknown downstream corpus {name!r}; use one of {', '.join(CORPORA)}")
    if name != "tokens":
        return VOCAB
    folder = token_folder({k: v for k, v in downstream.items() if v is not None})
    if folder.vocab_size is None:
        raise FinetuneSpecError(f"the downstream token folder {folder.path} does not say its vocabulary: add "
                                "downstream.vocab_size (or prepare it with `scaling data prepare`)")
    return folder.vocab_size


def downstream_train_tokens(downstream: dict) -> int | None:
    """Tokens in the downstream corpus's training split, where known without reading it (None: unknown)."""
    val = float(downstream.get("val_fraction") or 0.05)
    if downstream.get("name") == "synthetic":
        return int(int(downstream.get("tokens") or 8_000_000) * (1 - val))
    if downstream.get("name") == "tokens":
        from ..sweep.corpus import token_folder

        folder = token_folder({k: v for k, v in downstream.items() if v is not None})
        return int(folder.train.stat().st_size // folder.dtype.itemsize) if folder.kind == "bin" else None
    return None


def check_data(D_f: list, downstream: dict) -> None:
    """Every D_f must fit in the downstream training split."""
    have = downstream_train_tokens(downstream)
    if have is not None and max(D_f) > have:
        raise FinetuneSpecError(f"D_f up to {max(D_f):,} tokens, but the downstream corpus's training split holds "
                                f"{have:,}: lower D_f or use a larger corpus (downstream.tokens for synthetic)")


def check_cell(base: dict, method: str, *, rank: int | None = None, virtual_tokens: int | None = None,
               seq_len: int, vocab: int) -> None:
    """Refuse, before training, a cell that cannot run or would mean nothing (one message each)."""
    check_method(method)
    if base["vocab_size"] != vocab:
        raise FinetuneSpecError(
            f"base model {base['path']} has a vocabulary of {base['vocab_size']} tokens but the downstream corpus's "
            f"ids come from {vocab}: fine-tune on text tokenized with the base model's tokenizer (`scaling data "
            "prepare --tokenizer <the base model's folder>`), or pick base models of that vocabulary")
    if seq_len > base["context"]:
        raise FinetuneSpecError(f"seq_len {seq_len} is longer than base model {base['path']}'s context "
                                f"({base['context']} positions): lower seq_len")
    if method == "lora" and rank is not None and rank > base["d_model"]:
        raise FinetuneSpecError(f"LoRA rank {rank} is larger than base model {base['path']}'s hidden size "
                                f"({base['d_model']}): a rank above it adds parameters without adding any freedom; "
                                f"use ranks up to {base['d_model']}")
    if method == "prompt" and virtual_tokens is not None and virtual_tokens + seq_len > base["context"]:
        raise FinetuneSpecError(
            f"a soft prompt of {virtual_tokens} virtual tokens plus seq_len {seq_len} is longer than base model "
            f"{base['path']}'s context ({base['context']} positions): use at most "
            f"{base['context'] - seq_len} virtual tokens, or a shorter seq_len")


# ------------------------------------------------------------------ the cells
def _tag(v: float) -> str:
    return f"{v:.3g}".replace("+", "")


def expand(spec: dict) -> list[dict]:
    """Every fine-tuning run of the sweep, each a cell of kind ``finetune`` (no dependencies), checked."""
    models = bases(spec)
    vocab = downstream_vocab(spec["downstream"])
    downstream = {k: v for k, v in spec["downstream"].items() if v is not None}
    check_data(spec["D_f"], downstream)
    settings = {k: copy.deepcopy(spec[k]) for k in ("epochs", "min_steps", "seq_len", "tokens_per_step",
                                                     "weight_decay", "grad_clip", "schedule", "eval")}
    out = []
    for b in models:
        base_id = b["id"]
        for method in spec["methods"]:
            pets = ([("rank", r) for r in spec["lora"]["rank"]] if method == "lora" else
                    [("virtual_tokens", v) for v in spec["prompt"]["virtual_tokens"]] if method == "prompt" else
                    [(None, None)])
            for key, value in pets:
                check_cell(b, method, rank=value if key == "rank" else None,
                           virtual_tokens=value if key == "virtual_tokens" else None, seq_len=spec["seq_len"],
                           vocab=vocab)
                for D_f in spec["D_f"]:
                    for seed in spec["seeds"]:
                        pet = "" if key is None else f"-{'r' if key == 'rank' else 'v'}{value}"
                        cell = {"run_id": f"ft-{base_id}-{method}{pet}-Df{D_f}-s{seed}", "kind": KIND, "needs": [],
                                "base": dict(b), "N": b["N"], "D_pretrain": b["D_pretrain"], "method": method,
                                "rank": value if key == "rank" else None,
                                "virtual_tokens": value if key == "virtual_tokens" else None,
                                "D_f": int(D_f), "seed": int(seed), "lr": float(spec[method]["lr"]),
                                "downstream": downstream, **copy.deepcopy(settings)}
                        if method == "lora":
                            cell["lora_alpha"] = spec["lora"]["alpha"]
                            cell["target_modules"] = spec["lora"]["target_modules"]
                        out.append(cell)
    return out

