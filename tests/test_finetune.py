"""Fine-tuning scaling (issue #14): the `finetune` law (Zhang et al. 2024), the critical data size, the
backtest, and the fine-tuning cells (tiny models, one thread)."""

import json
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import DataError, FitError, SettingsError
from scaling.laws import FinetuneLaw, critical_data_size
from scaling.laws.finetune import backtest_largest_df, finetune_truth_runs

TRUTH = dict(A=4000.0, alpha=0.3, beta=0.2, E=1.5)
# two methods whose curves cross at D_f = 1e6 for a base model of N = 1e8 (equal floors): full fine-tuning
# learns faster from data (beta 0.3 against 0.15) and overtakes LoRA there
FULL = dict(A=47.6 * 1e8 ** 0.3 * (1e6 ** 0.15 / 7.9433), alpha=0.3, beta=0.3, E=1.5)
LORA = dict(A=600.0, alpha=0.25, beta=0.15, E=1.5)


def _quiet(f, *a, **k):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return f(*a, **k)


def _crossing_truth(at=1e8):
    a_full, a_lora = FULL["A"] * at ** -FULL["alpha"], LORA["A"] * at ** -LORA["alpha"]
    return (a_full / a_lora) ** (1 / (FULL["beta"] - LORA["beta"]))


def two_methods(seeds=2, seed=3):
    xs, dfs = np.logspace(7, 9, 5), np.logspace(5, 7, 7)
    full = finetune_truth_runs(FULL, xs=xs, dfs=dfs, seeds=seeds, seed=seed, method="full")
    lora = finetune_truth_runs(LORA, xs=xs, dfs=dfs, seeds=seeds, seed=seed + 1, method="lora")
    return pd.concat([full, lora], ignore_index=True).assign(D_pretrain=1e9)


@pytest.mark.parametrize("x", ["N", "D_pretrain", "pet_params"])
def test_recovers_known_parameters_for_each_scaling_factor(x):
    df = finetune_truth_runs(TRUTH, x=x, xs=np.logspace(6, 8, 5), dfs=np.logspace(4, 6, 6), seeds=2, noise=0.004,
                             seed=7)
    res = _quiet(FinetuneLaw(x=x, bootstrap=200, level=0.99).fit, df)
    assert res.law.inputs == (x, "D_f") and list(res.params) == ["A", "alpha", "beta", "E"]
    for k, v in TRUTH.items():
        lo, hi = res.ci[k]
        assert lo <= v <= hi, (k, v, lo, hi)
    assert res.params["alpha"] == pytest.approx(0.3, rel=0.03)
    assert res.params["beta"] == pytest.approx(0.2, rel=0.03)
    assert res.params["E"] == pytest.approx(1.5, rel=0.02)
    # the bootstrap resampled cells: both seeds of a setting together
    assert "cells" in res.fit_info["bootstrap_over"]
    # predictions follow the law at a new point, and the fit file round-trips with its x
    pt = {x: 3e7, "D_f": 2e5}
    truth = TRUTH["A"] / 3e7 ** 0.3 / 2e5 ** 0.2 + TRUTH["E"]
    assert res.predict(**pt)[0] == pytest.approx(truth, rel=0.01)
    back = FinetuneLaw.from_dict(json.loads(json.dumps(res.to_dict())))
    assert back.law.x == x and back.predict(**pt)[0] == pytest.approx(res.predict(**pt)[0], rel=1e-12)


def test_fitted_per_method_and_one_factor_at_a_time():
    df = two_methods()
    with pytest.raises(DataError, match=r"methods \['full', 'lora'\].*method='full'"):
        FinetuneLaw(bootstrap=0).fit(df)
    with pytest.raises(DataError, match="no rows with method == 'qlora'"):
        FinetuneLaw(method="qlora", bootstrap=0).fit(df)
    lora = _quiet(FinetuneLaw(method="lora", bootstrap=0).fit, df)
    assert lora.params["beta"] == pytest.approx(LORA["beta"], rel=0.05)
    assert lora.params["alpha"] == pytest.approx(LORA["alpha"], rel=0.05)
    assert lora.n_points_ == len(df[df.method == "lora"])
    mixed = df.copy()
    mixed.loc[mixed.index[::2], "D_pretrain"] = 3_999_744_000  # two pretraining budgets under one x=N fit (not round)
    with pytest.raises(DataError, match=r"also vary D_pretrain.*one factor at a time") as err:
        FinetuneLaw(method="lora", bootstrap=0).fit(mixed)
    # the filter it suggests names an exact value, so that it selects rows
    shown = float(re.search(r"df\['D_pretrain'\] == ([0-9.e+]+)\]", str(err.value)).group(1))
    assert (mixed["D_pretrain"] == shown).sum() > 0, str(err.value)
    ranks = df.assign(rank=np.where(np.arange(len(df)) % 2, 4, 8))
    with pytest.raises(DataError, match=r"also vary rank"):
        FinetuneLaw(method="lora", bootstrap=0).fit(ranks)
    with pytest.raises(DataError, match="no 'method' column"):
        FinetuneLaw(method="lora", bootstrap=0).fit(df.drop(columns="method")[df.method == "lora"])
    with pytest.raises(SettingsError, match="x must be one of"):
        FinetuneLaw(x="tokens")


def test_critical_data_size_recovers_the_crossing_with_an_interval():
    df = two_methods()
    full = _quiet(FinetuneLaw(method="full", bootstrap=200).fit, df)
    lora = _quiet(FinetuneLaw(method="lora", bootstrap=200).fit, df)
    truth = _crossing_truth()
    assert truth == pytest.approx(1e6, rel=0.01)
    cds = critical_data_size(full, lora, at=1e8)
    assert cds["overtaker"] == "full" and cds["behind"] == "lora"
    assert cds["D_f"] == pytest.approx(truth, rel=0.1)
    lo, hi = cds["ci"]
    assert lo < truth < hi and hi / lo < 3  # an honest interval, and a useful one
    assert cds["fraction_in_range"] > 0.95 and len(cds["crossings"]) == 1
    # the method form gives the same; the order of the two fits does not matter
    again = lora.critical_data_size(full, at=1e8)
    assert again["overtaker"] == "full" and again["D_f"] == pytest.approx(cds["D_f"], rel=1e-9)
    # below the crossing the curves do not cross: one clear error naming who leads and how to extrapolate
    with pytest.raises(FitError, match=r"do not cross for D_f in \[1e\+05, 3e\+05\].*lora is lower throughout") as err:
        critical_data_size(full, lora, at=1e8, d_range=(1e5, 3e5))
    # and by how much, as a positive percentage: the leader's loss below the other's, from the two fits
    pct = [float(v) for v in re.findall(r"([-0-9.]+)% (?:lower )?at", str(err.value))]
    grid = {"N": np.full(2, 1e8), "D_f": np.array([1e5, 3e5])}
    want = 100 * (1 - lora.predict(**grid) / full.predict(**grid))
    assert len(pct) == 2 and np.allclose(pct, want, atol=0.051) and min(pct) > 0, (str(err.value), want)
    with pytest.raises(SettingsError, match="needs at="):
        critical_data_size(full, lora)
    pet = _quiet(FinetuneLaw(x="D_pretrain", bootstrap=0).fit,
                 finetune_truth_runs(TRUTH, x="D_pretrain", xs=np.logspace(8, 10, 4)))
    with pytest.raises(SettingsError, match="different factors"):
        critical_data_size(full, pet, at=1e8)


def test_backtest_predicts_the_largest_fine_tuning_set():
    df = finetune_truth_runs(TRUTH, xs=np.logspace(6, 8, 5), dfs=np.logspace(4, 6, 6), seeds=3, noise=0.005, seed=5)
    bt = _quiet(backtest_largest_df, df, bootstrap=200)
    assert bt["D_f_predicted"] == pytest.approx(1e6) and len(bt["D_f_fitted"]) == 5
    assert bt["n_test_runs"] == 15
    assert bt["mean_abs_rel_error"] < 0.01  # the noise is 0.5% a run; the law is the truth
    assert bt["coverage"] >= 0.8
    # data that leave the law at the largest set (losses 5% above it: a plateau the law does not have) fail it
    bent = df.copy()
    top = bent["D_f"] == bent["D_f"].max()
    bent.loc[top, "loss"] *= 1.05
    bad = _quiet(backtest_largest_df, bent, bootstrap=200)
    assert bad["mean_abs_rel_error"] > 0.03 and bad["coverage"] < 0.3


def test_cli_fit_finetune_json_has_exactly_the_four_parameters(tmp_path, capsys):
    path = tmp_path / "ft.csv"
    two_methods(seeds=1).to_csv(path, index=False)
    assert main(["fit", str(path), "--law", "finetune", "--x", "N", "--method", "lora", "--bootstrap", "50",
                 "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert list(d["params"]) == ["A", "alpha", "beta", "E"]
    assert d["params"]["beta"] == pytest.approx(LORA["beta"], rel=0.05) and d["x"] == "N" and d["method"] == "lora"
    assert main(["fit", str(path), "--law", "finetune", "--x", "N", "--bootstrap", "0"]) == 2
    assert "--method full" in capsys.readouterr().err
    assert main(["fit", str(path), "--law", "chinchilla", "--method", "lora"]) == 2
    assert "--method does not apply" in capsys.readouterr().err
    # a table without D_f: one line naming it, before any averaging of seeds could merge the D_f cells
    no_df = tmp_path / "no_df.csv"
    two_methods(seeds=2).drop(columns="D_f").to_csv(no_df, index=False)
    assert main(["fit", str(no_df), "--law", "finetune", "--method", "lora", "--bootstrap", "0"]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) ['D_f']" in err and "--columns D_f=" in err
    assert "_finetune_cell" not in err and "note:" not in err and err.count("\n") == 1


def test_front_door_averages_seeds_within_each_method():
    import scaling

    res = _quiet(scaling.fit, two_methods(seeds=2), "finetune", method="lora", bootstrap=0)
    assert res.params["beta"] == pytest.approx(LORA["beta"], rel=0.05)
    # LoRA's 5 x 7 cells, two seeds each: the count is the method's, not the whole table's (which holds full too)
    assert res.n_points_ == 35 and res.fit_info_["averaged_seeds"] == {"runs": 70, "cells": 35}


# ------------------------------------------------------------------ the fine-tuning cells
def _base(folder, vocab=256, d_model=16, n_layer=2, context=64, pretrain=0):
    """A tiny Llama saved with save_pretrained; ``pretrain`` steps on the synthetic language of seed 0 first."""
    transformers = pytest.importorskip("transformers")
    import torch

    from scaling._threads import limit_threads
    from scaling.overopt.models import pretrain as train
    from scaling.sweep.corpus import load_corpus
    from scaling.sweep.train import llama_config

    torch.manual_seed(0)
    torch.set_num_threads(1)  # as the cells run: one thread (two busy cores make more threads slower)
    model = transformers.LlamaForCausalLM(llama_config(vocab, d_model, n_layer, 2, context))
    if pretrain:
        with limit_threads(1):
            tokens, _, _ = load_corpus({"name": "synthetic", "seed": 0, "tokens": 40_000})
            train(model, np.asarray(tokens), steps=pretrain, batch=16, seq_len=16, lr=1e-2, seed=0)
    model.save_pretrained(folder)
    return str(folder)


def _definition(folder, **over):
    d = {"name": "ft-test", "base": {"models": [{"path": folder, "D_pretrain": 1e5}]},
         "downstream": {"tokens": 40_000, "seed": 5}, "full": {"lr": 3e-3}, "lora": {"rank": [2], "lr": 3e-2},
         "prompt": {"virtual_tokens": [4], "lr": 0.3}, "D_f": [4096], "seq_len": 16, "tokens_per_step": 256,
         "min_steps": 30, "eval": {"tokens": 2048}}
    d.update(over)
    return d


def test_bad_input_is_refused_before_training_with_one_message_each(tmp_path):
    from scaling.finetune import FinetuneSpecError, load_spec

    base = _base(tmp_path / "base")
    load_spec(_definition(base))  # the good one passes
    with pytest.raises(FinetuneSpecError, match=r"vocabulary of 128 tokens but the downstream corpus's ids come "
                                                r"from 256.*tokenizer"):
        load_spec(_definition(_base(tmp_path / "v128", vocab=128)))
    with pytest.raises(FinetuneSpecError, match=r"LoRA rank 32 is larger than .*hidden size \(16\)"):
        load_spec(_definition(base, lora={"rank": [2, 32]}))
    with pytest.raises(FinetuneSpecError, match=r"soft prompt of 60 virtual tokens plus seq_len 16 is longer than "
                                                r".*context \(64 positions\): use at most 48"):
        load_spec(_definition(base, prompt={"virtual_tokens": [60]}))
    with pytest.raises(FinetuneSpecError, match=r"unknown fine-tuning method 'qlora'; use one of full, lora, prompt"):
        load_spec(_definition(base, methods=["full", "qlora"]))
    with pytest.raises(FinetuneSpecError, match="give D_pretrain"):
        load_spec(_definition(base, base={"models": [base]}))
    with pytest.raises(FinetuneSpecError, match="no config.json"):
        load_spec(_definition(str(tmp_path)))
    with pytest.raises(FinetuneSpecError, match="unknown key 'lora.ranks'"):
        load_spec(_definition(base, lora={"ranks": [2]}))
    with pytest.raises(FinetuneSpecError, match=r"downstream.shift_seed must be an integer >= 0; got -1"):
        load_spec(_definition(base, downstream={"tokens": 40_000, "seed": 5, "shift_seed": -1}))
    assert load_spec(_definition(base, downstream={"tokens": 40_000, "seed": 5, "shift_seed": 2}))


def test_cells_fine_tune_each_method_and_count_what_they_tune(tmp_path):
    pytest.importorskip("peft")
    from scaling.finetune import expand, load_spec
    from scaling.finetune.cells import COLUMNS, rows, run_cell

    base = _base(tmp_path / "base", pretrain=150)  # a base model that has learnt a language (another one)
    plan = expand(load_spec(_definition(base, seeds=[0])))
    assert [c["method"] for c in plan] == ["full", "lora", "prompt"] and all(c["kind"] == "finetune" for c in plan)
    d, L, vocab = 16, 2, 256
    non_emb = L * (4 * d * d + 3 * d * 4 * d + 2 * d) + d  # attention, gated MLP, norms; final norm
    expected = {"full": non_emb + vocab * d,  # every weight, the (tied) embedding included
                "lora": L * 2 * 2 * (d + d),  # q and v per layer: A (r x d) and B (d x r), rank 2
                "prompt": 4 * d}  # four virtual token embeddings
    results = {}
    for c in plan:
        assert c["N"] == non_emb and c["D_pretrain"] == 1e5
        r = run_cell(c, str(tmp_path / "sweep"), threads=1)
        results[c["method"]] = r
        assert r["status"] == "done" and r["pet_params"] == expected[c["method"]], c["method"]
        assert r["steps"] == 30 and np.isfinite(r["loss"])
        # fine-tuning on the downstream language lowers its held-out loss from the base model's (the same windows
        # before and after); a soft prompt of four vectors moves it least, as Zhang et al. found prompt tuning weakest
        gain = {"full": 0.1, "lora": 0.02, "prompt": 0.005}[c["method"]]
        assert r["loss"] < r["base_loss"] - gain, (c["method"], r["base_loss"], r["loss"])
        assert (tmp_path / "sweep" / "runs" / c["run_id"] / "log.jsonl").exists()
    # a finished cell is not trained again: its saved result comes back
    again = run_cell(plan[0], str(tmp_path / "sweep"), threads=1)
    assert again == json.loads(json.dumps(results["full"]))

    class Rec:
        status = "done"

    row = rows(plan[1], results["lora"], Rec())[0]
    assert list(row)[:len(COLUMNS)] == COLUMNS and row["rank"] == 2 and row["pet_params"] == expected["lora"]


def test_a_missing_peft_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    import sys

    from scaling.errors import MissingExtraError
    from scaling.finetune import expand, load_spec
    from scaling.finetune.cells import finetune

    base = _base(tmp_path / "base")
    lora = [c for c in expand(load_spec(_definition(base))) if c["method"] == "lora"][0]
    monkeypatch.setitem(sys.modules, "peft", None)
    with pytest.raises(MissingExtraError, match=r"pip install 'scaling\[train\]'"):
        finetune(lora)


def test_base_models_from_a_pretraining_sweep_that_saved_them(tmp_path):
    """A pretraining sweep run with save_model keeps runs/<run_id>/model: each finished one is a base model,
    with the N and D_pretrain its run was given; runs without a saved model are not."""
    from scaling.finetune import FinetuneSpecError, expand, load_spec
    from scaling.sweep.store import Store

    root = tmp_path / "sweeps"
    store = Store(root / "base" / "sweep.sqlite")
    store.sync([{"run_id": "r1", "N": 8272, "D": 2.0e6}, {"run_id": "r2", "N": 8272, "D": 8.0e6},
                {"run_id": "r3", "N": 8272, "D": 3.0e7}])
    for rid in ("r1", "r2", "r3"):
        store.set_status(rid, "done", result={"status": "done"})
    _base(root / "base" / "runs" / "r1" / "model")
    _base(root / "base" / "runs" / "r2" / "model")  # r3 kept no model
    from scaling.errors import ScalingWarning

    with pytest.warns(ScalingWarning, match="1 finished run.s. kept no model .trained without save_model: true. and "
                                            "are left out; fine-tuning the 2 that did"):
        spec = load_spec(_definition(None, base={"sweep": "base", "root": str(root)}, methods=["full"]))
        plan = expand(spec)
    assert sorted({c["D_pretrain"] for c in plan}) == [2.0e6, 8.0e6] and {c["N"] for c in plan} == {8272}
    with pytest.raises(FinetuneSpecError, match="no pretraining sweep named 'nope'.*save_model: true"):
        load_spec(_definition(None, base={"sweep": "nope", "root": str(root)}))
    # a sweep still training, and one that kept no models: one error each, naming the command that trains them
    waiting = Store(root / "waiting" / "sweep.sqlite")
    waiting.sync([{"run_id": "w1", "N": 8272, "D": 2.0e6}, {"run_id": "w2", "N": 8272, "D": 8.0e6}])
    waiting.set_status("w1", "running")
    with pytest.raises(FinetuneSpecError, match=r"'waiting' has no finished run with a saved model .*: 2 of its runs "
                                                r"are not finished. Train the base models with `scaling sweep run"):
        load_spec(_definition(None, base={"sweep": "waiting", "root": str(root)}))
    for rid in ("w1", "w2"):
        waiting.set_status(rid, "done", result={"status": "done"})
    with pytest.raises(FinetuneSpecError, match=r"run without save_model: true"):
        load_spec(_definition(None, base={"sweep": "waiting", "root": str(root)}))
    with pytest.raises(FinetuneSpecError, match=r"D_f up to 1,000,000 tokens, but the downstream corpus's training "
                                                r"split holds 38,000"), pytest.warns(ScalingWarning, match="r3|1 finished"):
        load_spec(_definition(None, base={"sweep": "base", "root": str(root)}, D_f=[4096, 1_000_000]))


# ------------------------------------------------------------------ base models kept by a pretraining sweep
def _tiny_pretraining(**over):
    d = {"name": "keep", "model": {"family": "llama", "seq_len": 16, "shapes": [{"n_layer": 1, "d_model": 16,
                                                                                 "n_head": 2}]},
         "grid": {"tokens": [4096, 8192], "min_steps": 8}, "batch": {"tokens_per_step": 256},
         "corpus": {"name": "synthetic", "states": 16, "tokens": 40_000}, "eval": {"tokens": 512, "curve_tokens": 256},
         "checkpoint": {"every": 0.5}, "save_model": True}
    d.update(over)
    return d


def test_save_model_keeps_final_models_and_leaves_other_sweeps_ids_alone(tmp_path):
    """save_model: true enters a run's config (and id) only when true; an independent run and a WSD branch save
    their final model with save_pretrained, a stable run (no final model) does not."""
    transformers = pytest.importorskip("transformers")
    from scaling.sweep import expand as expand_sweep
    from scaling.sweep import load_spec as load_sweep
    from scaling.sweep.spec import SpecError
    from scaling.sweep.train import run_cell as train_cell

    plain = expand_sweep(load_sweep(_tiny_pretraining(save_model=False)))
    kept = expand_sweep(load_sweep(_tiny_pretraining()))
    assert all("save_model" not in c for c in plain) and all(c["save_model"] is True for c in kept)
    assert not {c["run_id"] for c in plain} & {c["run_id"] for c in kept}  # other runs: they keep a model
    with pytest.raises(SpecError, match="toy trainer has no model to save"):
        load_sweep(_tiny_pretraining(trainer="toy"))
    with pytest.raises(SpecError, match="save_model is true or false"):
        load_sweep(_tiny_pretraining(save_model="yes"))

    branched = expand_sweep(load_sweep(_tiny_pretraining(
        schedule={"type": "wsd", "cooldown": 0.25, "branches": True, "warmup": 0.1})))
    assert sorted(c.get("kind", "run") for c in branched) == ["branch", "branch", "stable"]
    sweep_dir = tmp_path / "keep"
    for cfg in [kept[0]] + sorted(branched, key=lambda c: c.get("kind") != "stable"):  # the stable run first
        res = train_cell(cfg, str(sweep_dir), threads=1)
        assert res["status"] == "done"
        folder = sweep_dir / "runs" / cfg["run_id"] / "model"
        if cfg.get("kind") == "stable":
            assert not folder.exists()
            continue
        assert not (folder.parent / "model.tmp").exists()
        model = transformers.AutoModelForCausalLM.from_pretrained(folder)  # the trained model, not a fresh one
        assert model.config.hidden_size == 16 and model.config.max_position_embeddings == 16
        from scaling.sweep.corpus import load_corpus
        from scaling.sweep.train import eval_windows, evaluate

        import torch

        _, eval_tok, _ = load_corpus(cfg["corpus"])
        windows = eval_windows(len(eval_tok), 16, 512)
        loss, _, _ = evaluate(model, eval_tok, 16, 0, torch.device("cpu"), _NullCtx, starts=windows)
        assert loss == pytest.approx(res["final_eval_loss"], rel=1e-5)
        # the curve's last point is read on the curve's windows (every 2nd of the 32: curve_tokens 256 of 512), the
        # whole sample's loss beside it
        last = json.loads((folder.parent / "log.jsonl").read_text().splitlines()[-1])
        subset, _, _ = evaluate(model, eval_tok, 16, 0, torch.device("cpu"), _NullCtx, starts=windows[::2])
        assert last["eval_loss"] == pytest.approx(subset, rel=1e-5)
        assert last["final_eval_loss"] == pytest.approx(loss, rel=1e-5)
        assert abs(subset - loss) > 1e-3 * loss  # two different samples, so the test can tell them apart


class _NullCtx:
    def __enter__(self):
        return self

    def __exit__(self, *a):
        return False


# ------------------------------------------------------------------ the CI sweep, end to end
def _ci_definitions(tmp_path):
    """sweeps/base-finetune-ci.yaml as shipped, and sweeps/finetune-ci.yaml reading its base models under tmp."""
    import yaml

    import scaling

    defs = Path(scaling.__file__).parent / "sweep_defs"
    ft = yaml.safe_load((defs / "finetune-ci.yaml").read_text())
    ft["base"]["root"] = str(tmp_path / "sweeps")
    path = tmp_path / "finetune-ci.yaml"
    path.write_text(yaml.safe_dump(ft))
    return defs / "base-finetune-ci.yaml", path


def _pretrain_in_process(definition, root):
    """`scaling sweep run DEFINITION --root ROOT` as its workers and driver do it, in this process (no worker
    processes to start: seconds saved), store included: the trainer's run_cell per run, then its status."""
    from scaling.sweep import expand as expand_sweep
    from scaling.sweep import load_spec as load_sweep
    from scaling.sweep.store import Store
    from scaling.sweep.train import run_cell as train_cell

    spec = load_sweep(definition)
    cells = expand_sweep(spec)
    store = Store(root / spec["name"] / "sweep.sqlite")
    store.sync(cells)
    for cfg in cells:
        store.set_status(cfg["run_id"], "done", result=train_cell(cfg, str(root / spec["name"]), threads=1))


def test_finetune_ci_sweep_runs_survives_kill_9_exports_and_fits(tmp_path, capsys):
    """`scaling finetune run` on the graph runner: refused (naming the command) until the base models exist;
    killed with SIGKILL mid-sweep and run again, no finished cell is trained twice; the export has the issue's
    columns and `scaling fit --law finetune` takes it as it is."""
    import sys

    pytest.importorskip("peft")
    from test_branches import _kill_when, _store

    base_def, ft_def = _ci_definitions(tmp_path)
    base_root, root = tmp_path / "sweeps", tmp_path / "finetune"
    # 1. before the base models exist: one line naming the command that trains them
    assert main(["finetune", "run", str(ft_def), "--root", str(root)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no pretraining sweep named 'base-finetune-ci'" in err
    assert "scaling sweep run" in err and "base-finetune-ci.yaml" in err and "save_model: true" in err
    _pretrain_in_process(base_def, base_root)
    models = sorted(base_root.glob("base-finetune-ci/runs/*/model/config.json"))
    assert len(models) == 2
    # 2. the driver and its workers killed (kill -9) with some cells finished, then the sweep run again
    db = root / "finetune-ci" / "sweep.sqlite"
    cmd = [sys.executable, "-m", "scaling.cli", "finetune", "run", str(ft_def), "--root", str(root), "--workers", "1"]
    _kill_when(cmd, db, lambda st: sum(s == "done" for s, _ in st.values()) >= 2)
    before = {r for r, (s, _) in _store(db).items() if s == "done"}
    assert 2 <= len(before) < 12, "killed too early or too late"
    runs_dir = root / "finetune-ci" / "runs"
    mtimes = {r: (runs_dir / r / "result.json").stat().st_mtime_ns for r in before}
    capsys.readouterr()
    assert main(["finetune", "run", str(ft_def), "--root", str(root), "--workers", "1", "--json"]) == 0
    st = json.loads(capsys.readouterr().out)
    assert st["done"] == st["total"] == 12 and st["methods"] == {"full": {"done": 6}, "lora": {"done": 6}}
    after = _store(db)
    for rid in before:  # finished cells were not trained again
        assert after[rid][1] == 1 and (runs_dir / rid / "result.json").stat().st_mtime_ns == mtimes[rid]
    # 3. the export: the columns first, one row per cell; the base models are the sweep's runs
    assert main(["finetune", "export", "finetune-ci", "--root", str(root), "--out", str(tmp_path / "data")]) == 0
    out = tmp_path / "data" / "finetune-ci.csv"
    df = pd.read_csv(out)
    # --out naming a .csv file writes that file (not a folder of that name)
    assert main(["finetune", "export", "finetune-ci", "--root", str(root), "--out", str(tmp_path / "ft.csv")]) == 0
    assert (tmp_path / "ft.csv").is_file() and pd.read_csv(tmp_path / "ft.csv").equals(df)
    assert list(df.columns[:8]) == ["run_id", "method", "N", "D_pretrain", "pet_params", "D_f", "loss", "seed"]
    assert {"rank", "virtual_tokens", "lr", "base_loss", "base_id"} <= set(df.columns) and len(df) == 12
    assert sorted(df["N"].unique()) == [4144, 16480] and set(df["D_pretrain"]) == {40960.0}
    assert set(df["base_id"]) == {m.parent.parent.name for m in models}
    lora = df[df["method"] == "lora"]
    assert (lora["rank"] == 2).all() and (lora["pet_params"] == 1 * 2 * 2 * (2 * lora["base_d_model"])).all()
    assert (df["loss"] < df["base_loss"]).all()  # fine-tuning on the downstream language helps every cell
    # 4. fitted as it is
    capsys.readouterr()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # two base sizes and six cells: thin, and the fit says so
        assert main(["fit", str(out), "--law", "finetune", "--x", "N", "--method", "lora", "--json",
                     "--bootstrap", "0"]) == 0
    fit = json.loads(capsys.readouterr().out)
    assert set(fit["params"]) == {"A", "alpha", "beta", "E"}
    p = fit["params"]
    pred = p["A"] / lora["N"] ** p["alpha"] / lora["D_f"] ** p["beta"] + p["E"]
    assert np.allclose(pred, lora["loss"], rtol=0.03)  # the law was fitted to these six cells
    assert main(["finetune", "status", "finetune-ci", "--root", str(root)]) == 0
    assert "12 done" in capsys.readouterr().out
    # 5. a setting that shapes finished cells cannot change under the same name (they would not be redone)
    import yaml

    changed = yaml.safe_load(ft_def.read_text())
    changed["full"]["lr"] = 0.01
    ft_def.write_text(yaml.safe_dump(changed))
    assert main(["finetune", "run", str(ft_def), "--root", str(root)]) == 2
    assert "full.lr: 0.003 -> 0.01" in capsys.readouterr().err


def test_a_negative_exponent_is_reported_as_a_finding():
    # the exponents are free in sign; a loss that rises with the PET parameters was fitted without a word
    truth = {**TRUTH, "alpha": -0.05}
    df = finetune_truth_runs(truth, x="pet_params", xs=np.logspace(6, 8, 5), dfs=np.logspace(4, 6, 6), seeds=1,
                             noise=0.002, seed=7)
    with pytest.warns(Warning, match=r"alpha = -0.0\d+ < 0: in these data the loss rises with pet_params"):
        res = FinetuneLaw(x="pet_params", bootstrap=0).fit(df)
    assert res.params["alpha"] == pytest.approx(-0.05, abs=0.01)
    with warnings.catch_warnings(record=True) as caught:  # the truth's positive exponents: nothing said
        warnings.simplefilter("always")
        FinetuneLaw(x="pet_params", bootstrap=0).fit(
            finetune_truth_runs(TRUTH, x="pet_params", xs=np.logspace(6, 8, 5), dfs=np.logspace(4, 6, 6), seeds=1,
                                noise=0.002, seed=7))
    assert not [w for w in caught if "< 0" in str(w.message)]
