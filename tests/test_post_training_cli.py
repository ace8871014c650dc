"""The post-training fits from the command line, as the README shows them (a newcomer review, 2026-12-02):
--where filters the committed exports, predict takes every law's inputs, plot draws these laws, and the
errors a first try hits are one line."""

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
FT = DATA / "finetune" / "finetune-cpu.csv"
AXES = DATA / "overopt" / "overopt-axes-cpu-final.csv"


def error_line(capsys, argv) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error:"), err
    return err


def test_the_readme_finetune_command_fits_the_committed_export(tmp_path, capsys):
    where = "D_pretrain == 3999744 and rank == 4"
    fit = tmp_path / "ft.json"
    assert main(["fit", str(FT), "--law", "finetune", "--x", "N", "--method", "lora", "--where", where,
                 "--bootstrap", "50", "--out", str(fit), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    rows = pd.read_csv(FT).query(f"method == 'lora' and {where}")
    assert set(out["params"]) == {"A", "alpha", "beta", "E"} and out["n_points"] <= len(rows)
    # without the filter the fit names the column to filter, and how on the command line
    err = error_line(capsys, ["fit", str(FT), "--law", "finetune", "--x", "N", "--method", "lora"])
    assert "--where 'D_pretrain ==" in err
    err = error_line(capsys, ["fit", str(FT), "--law", "finetune", "--where", "Dpre == 3"])
    assert "could not evaluate --where 'Dpre == 3'" in err and "D_pretrain" in err
    err = error_line(capsys, ["fit", str(FT), "--law", "finetune", "--where", "N > 1e12"])
    assert "no row of the 324 has N > 1e12 (--where)" in err
    # predict takes the fine-tuning tokens under the name the error asks for, with a dash or an underscore
    err = error_line(capsys, ["predict", str(fit), "--N", "131392"])
    assert "give --D_f VALUE" in err
    for flag in ("--D_f", "--D-f"):
        assert main(["predict", str(fit), "--N", "131392", flag, "1e5", "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        assert got["inputs"] == {"N": 131392.0, "D_f": 1e5} and 2.0 < got["loss"] < 2.3
    # plot: one curve in D_f per base-model size, with or without the data
    table = tmp_path / "lora.csv"
    rows.to_csv(table, index=False)
    for argv in ([str(fit), str(table)], [str(fit)]):
        png = tmp_path / f"ft{len(argv)}.png"
        assert main(["plot", *argv, "--out", str(png)]) == 0 and png.stat().st_size > 10_000
    capsys.readouterr()
    # backtest takes --where too
    assert main(["backtest", str(FT), "--law", "finetune", "--where", f"method == 'lora' and {where}",
                 "--holdout", "N > 1e5", "--bootstrap", "20", "--json"]) == 0
    bt = json.loads(capsys.readouterr().out)
    assert bt["n_test"] == int((rows["N"] > 1e5).sum()) and bt["n_train"] == len(rows) - bt["n_test"]


def test_a_header_only_table_is_one_line(tmp_path, capsys):
    empty = tmp_path / "empty.csv"
    pd.read_csv(FT).head(0).to_csv(empty, index=False)
    for law in (["--law", "finetune", "--x", "N", "--method", "lora"], ["--law", "rlhf-samples"]):
        assert "the table has no rows (only the header" in error_line(capsys, ["fit", str(empty), *law])


def test_rlhf_samples_predicts_and_plots_a_negative_reward(tmp_path, capsys):
    one = pd.read_csv(AXES).query("policy == 'd64-l2-h4' and kl_penalty == 0.2")
    table = tmp_path / "k.csv"
    one.to_csv(table, index=False)
    fit = tmp_path / "k.json"
    assert main(["fit", str(table), "--law", "rlhf-samples", "--bootstrap", "50", "--out", str(fit)]) == 0
    capsys.readouterr()
    assert main(["predict", str(fit), "--samples-per-prompt", "64", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["inputs"] == {"samples_per_prompt": 64.0} and np.isfinite(got["gold"])
    png = tmp_path / "k.png"
    assert main(["plot", str(fit), str(table), "--out", str(png)]) == 0 and png.stat().st_size > 10_000
    capsys.readouterr()
    # the whole export varies the policy: the plot says so, as the fit does (it once said gold must be positive)
    assert "rows vary policy" in error_line(capsys, ["plot", str(fit), str(AXES), "--out", str(png)])


def test_the_generic_backtest_points_reward_laws_to_their_own(capsys):
    err = error_line(capsys, ["backtest", str(DATA / "overopt" / "overopt-cpu.csv"), "--law", "gao-bon",
                              "--holdout", "rm_params > 1e5"])
    assert "scaling overopt backtest" in err
    err = error_line(capsys, ["backtest", str(AXES), "--law", "rlhf-samples", "--holdout", "samples_per_prompt > 8"])
    assert "backtest_samples" in err


def test_overopt_backtest_says_when_the_held_out_rms_own_peak_lies_beyond_its_data(capsys):
    argv = ["overopt", "backtest", str(DATA / "overopt" / "overopt-cpu.csv"), "--law", "gao-bon", "--rm-data",
            "48000", "--bootstrap", "20"]
    assert main(argv + ["--json"]) == 0
    res = json.loads(capsys.readouterr().out)
    beyond = res["fitted_peak"]["d_star"] > res["d_max"]
    assert res["fitted_peak_in_data"] is (not beyond)
    assert main(argv) == 0
    assert ("beyond its data, d <=" in capsys.readouterr().out) is beyond


def test_overopt_plot_of_a_per_prompt_export_draws_each_curves_prompt_mean():
    from scaling.plotting import plot_overopt

    # two policies share the reward model; two prompts and two seeds a point: one line per policy, through the means
    rows = [{"method": "rl", "policy": pol, "policy_params": pp, "rm_params": 1e5, "kl_penalty": 0.0, "step": step,
             "d": 0.5 * step, "gold": 0.1 * step * (1 + pp / 1e5) + 0.01 * (prompt - 0.5) + 0.002 * seed,
             "proxy": 0.3 * step + 0.02 * prompt, "prompt": prompt, "seed": seed}
            for pol, pp in (("small", 1e4), ("large", 4e4)) for step in (0, 1, 2, 3) for prompt in (0, 1)
            for seed in (0, 1)]
    fig = plot_overopt(pd.DataFrame(rows))
    top = fig.axes[0]
    lines = {ln.get_label(): ln for ln in top.get_lines() if not ln.get_label().startswith("_")}
    assert sorted(lines) == ["large", "small"]
    for name, pp in (("small", 1e4), ("large", 4e4)):
        x, y = lines[name].get_data()
        assert list(x) == [0.0, 0.5, 1.0, 1.5]  # one point a step, not one a prompt and seed
        assert np.allclose(y, 0.1 * np.arange(4) * (1 + pp / 1e5) + 0.001)  # prompt terms cancel; mean seed 0.5


def test_plot_takes_where_as_the_fit_did(tmp_path, capsys):
    where = "D_pretrain == 3999744 and rank == 4"
    fit = tmp_path / "ft.json"
    assert main(["fit", str(FT), "--law", "finetune", "--x", "N", "--method", "lora", "--where", where,
                 "--bootstrap", "20", "--out", str(fit)]) == 0
    png = tmp_path / "ft.png"
    assert main(["plot", str(fit), str(FT), "--where", f"method == 'lora' and {where}", "--out", str(png)]) == 0
    assert png.stat().st_size > 10_000
    capsys.readouterr()
    assert "--where 'D_pretrain ==" in error_line(capsys, ["plot", str(fit), str(FT), "--out", str(png)])
    assert "give the table too" in error_line(capsys, ["plot", str(fit), "--where", where, "--out", str(png)])
