"""Plans, log readers and the live-run monitor (issue #6)."""

import json
import math
import subprocess
import sys
import threading
import time
import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from scaling.cli import main
from scaling.errors import DataError
from scaling.laws import LossCurveLaw
from scaling.monitor import Monitor, follow, trainer_callback
from scaling.plan import load_plan, make_plan, parse_model
from scaling.readers import read_log, tensorboard_scalars, write_tensorboard_scalars
from scaling.schedules import areas, schedule
from test_law_contract import curve_runs

MODEL = "n_layer=3,d_model=48"


@pytest.fixture(scope="module")
def law():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return LossCurveLaw(bootstrap=100).fit(curve_runs())


@pytest.fixture(scope="module")
def plan(law):
    return make_plan(law, model=MODEL, tokens=300 * 4096, tokens_per_step=4096)


def run_log(law, factor=lambda s: 1.0, noise=0.002, steps=300, seed=0):
    N = parse_model(MODEL)["N"]
    lr = schedule(steps, {"lr": 1.0}, {"type": "cosine", "warmup": 0.05})
    S1, S2 = areas(lr, 4096)
    L = law.predict(N=np.full(steps, N), S1=S1, S2=S2)
    rng = np.random.default_rng(seed)
    return [(s, float(L[s] * factor(s) * np.exp(noise * rng.standard_normal())), (s + 1) * 4096.0) for s in range(steps)]


# ------------------------------------------------------------------- plans
def test_plan_matches_the_law_and_parameter_counting(law, plan):
    from scaling.counting import count_params

    assert plan["N"] == count_params(3, 48, n_head=1).non_embedding or plan["N"] == parse_model(MODEL)["N"]
    assert plan["steps"] == 300 and plan["C"] == pytest.approx(6 * plan["N"] * plan["tokens"])
    c = plan["curve"]
    assert all(lo <= m <= hi for lo, m, hi in zip(c["lo"], c["loss"], c["hi"]))
    assert np.all(np.diff(c["loss"][5:]) < 0)  # a cosine run only improves
    assert plan["final_interval"][0] < plan["final_loss"] < plan["final_interval"][1]


def test_parse_model_accepts_hf_configs(tmp_path):
    p = tmp_path / "config.json"
    p.write_text(json.dumps({"model_type": "llama", "num_hidden_layers": 3, "hidden_size": 48,
                             "num_attention_heads": 3, "vocab_size": 256}))
    assert parse_model(str(p))["N"] == parse_model("n_layer=3,d_model=48,n_head=3")["N"]


def test_plan_needs_a_curve_law():
    from scaling.errors import DataError
    from scaling.laws import ChinchillaLaw

    with pytest.raises(DataError, match="loss-curve fit"):
        make_plan(ChinchillaLaw.hoffmann2022(), model=MODEL, tokens=1e6)


@pytest.mark.parametrize("kind", ["cosine", "wsd", "constant"])
def test_the_schedule_on_arrays_is_the_trainers_step_by_step(kind):
    from scaling.schedules import lr_at

    for steps in (1, 2, 7, 1001):
        for sched in ({"warmup": 0.05}, {"warmup": 0.999, "decay_frac": 0.3}, {"warmup": 3, "shape": "1-sqrt"},
                      {"warmup_steps": 2, "final_lr_frac": 0.0}, {"warmup": 0}):
            sched = {"type": kind, **sched}
            one_by_one = [lr_at(i, steps, {"lr": 3e-3}, sched) for i in range(steps)]
            assert schedule(steps, {"lr": 3e-3}, sched).tolist() == one_by_one, (steps, sched)


def test_a_plan_of_millions_of_steps_is_refused_with_what_to_give(law):
    # 2.4e10 tokens at the default 4,096 tokens a step: 5.9M steps, which ran for minutes at gigabytes
    with pytest.raises(DataError, match=r"5,859,375 optimizer steps.*--tokens-per-step"):
        make_plan(law, model=MODEL, tokens=2.4e10)
    big = make_plan(law, model=MODEL, tokens=2.4e10, tokens_per_step=2 ** 20)  # the run's real batch: fine
    assert big["steps"] == round(2.4e10 / 2 ** 20)


# ----------------------------------------------------------------- monitor
def test_healthy_run_stays_on_track(law, plan):
    mon = Monitor(plan)
    states = [mon.update(s, v, t).state for s, v, t in run_log(law)]
    assert states.count("drift") + states.count("spike") + states.count("flat") <= 3
    assert states[-1] == "ok"


@pytest.mark.parametrize("factor,first_by", [
    (lambda s: 1.0 + 0.002 * s, 40),  # a learning rate too high: slowly falling behind
    (lambda s: 1.0 + 0.5 * (s > 100), 105),  # a sudden jump
])
def test_broken_runs_are_flagged_early(law, plan, factor, first_by):
    mon = Monitor(plan)
    flagged = [s for s, v, t in run_log(law, factor) if mon.update(s, v, t).off_track]
    assert flagged and flagged[0] <= first_by


def test_nan_flat_and_restart(law, plan):
    mon = Monitor(plan)
    log = run_log(law)
    for s, v, t in log[:50]:
        mon.update(s, v, t)
    assert mon.update(50, float("nan"), 51 * 4096).state == "diverged"
    mon = Monitor(plan)
    stuck = log[60][1]
    states = [mon.update(s, (v if s < 60 else stuck), t).state for s, v, t in log]
    assert "flat" in states or "drift" in states
    mon = Monitor(plan)
    for s, v, t in log[:80]:
        mon.update(s, v, t)
    st = mon.update(40, log[40][1], log[40][2])  # resumed from a checkpoint at step 40
    assert st.state == "ok" and any("resumed" in n for n in mon.notes)


def test_a_sparse_log_is_smoothed_over_steps_not_points(law):
    # a log written every 100 steps: the moving average spans 1% of the planned steps (30), so each point stands
    # nearly alone. Counted per point, the average ran over the whole run and the deviation lagged by 20 points
    long = make_plan(law, model=MODEL, tokens=3000 * 4096, tokens_per_step=4096)
    log = run_log(law, steps=3000, noise=0.0)[::100]
    mon = Monitor(long)
    out = [mon.update(s, v * (1.05 if s >= 2500 else 1.10 if s < 600 else 1.0), t) for s, v, t in log]
    assert abs(out[24].deviation) < 0.002 and out[24].state == "ok"  # back on plan after an early excursion
    assert out[-1].deviation == pytest.approx(0.05, abs=0.003) and out[-1].state == "drift"
    assert out[3].deviation == pytest.approx(0.10, abs=0.003)


# ----------------------------------------------------------------- readers
def test_jsonl_partial_and_corrupt_lines(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 0, "train_loss": 3.0, "tokens": 10}\nnot json\n{"step": 1, "train_loss": 2.9, "tokens": 20}\n{"step": 2, "tra')
    df = read_log(p)
    assert list(df["step"]) == [0, 1] and list(df["loss"]) == [3.0, 2.9]


def test_csv_with_mapping_and_wandb_export(tmp_path):
    p = tmp_path / "wandb.csv"
    pd.DataFrame({"Step": [1, 2, 3], "my-run - train/loss": [3.0, 2.8, 2.7], "my-run - lr": [1, 1, 1]}).to_csv(p, index=False)
    assert list(read_log(p)["loss"]) == [3.0, 2.8, 2.7]
    q = tmp_path / "custom.csv"
    pd.DataFrame({"it": [10, 20], "objective": [1.5, 1.4]}).to_csv(q, index=False)
    from scaling.errors import DataError

    with pytest.raises(DataError, match="--columns step="):
        read_log(q)
    assert list(read_log(q, columns="step=it,loss=objective")["step"]) == [10, 20]


def test_a_table_of_several_runs_is_watched_one_run_at_a_time(tmp_path, law, plan, capsys):
    # read as one run, 3 runs' curves looked like one run restarting twice, all scored against one plan
    log = run_log(law, noise=0.0)
    rows = [{"run": f"r{i}", "step": s, "tokens": t, "loss": v * (1 + 0.2 * i)} for i in range(3) for s, v, t in log]
    path = tmp_path / "runs.csv"
    pd.DataFrame(rows).to_csv(path, index=False)
    with pytest.raises(Exception, match=r"holds 3 runs \(r0, r1, r2\): watch one at a time with --run NAME"):
        read_log(path)
    one = read_log(path, run="r1")
    assert len(one) == len(log) and list(one.columns) == ["step", "loss", "tokens"]
    assert one["loss"].iloc[5] == pytest.approx(log[5][1] * 1.2)
    with pytest.raises(Exception, match="no run 'r9'"):
        read_log(path, run="r9")
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps(plan))
    assert main(["watch", str(path), "--plan", str(plan_path), "--once"]) == 2
    assert "--run NAME" in capsys.readouterr().err
    assert main(["watch", str(path), "--plan", str(plan_path), "--once", "--run", "r0"]) == 0  # the healthy one
    assert main(["watch", str(path), "--plan", str(plan_path), "--once", "--run", "r2"]) == 1  # 40% above its plan
    one_run = tmp_path / "one.csv"
    pd.DataFrame(rows[:len(log)]).to_csv(one_run, index=False)  # a run column with one value is one run's log
    assert len(read_log(one_run)) == len(log)
    header = tmp_path / "header.csv"
    header.write_text("run,step,loss\n")  # nothing logged yet: empty, so a follower waits for the run
    assert read_log(header, run="r1").empty
    numbered = tmp_path / "numbered.csv"  # run ids that a CSV reads back as floats, and a row that names no run
    pd.DataFrame({"run": [1.0, 1.0, 2.0, None], "step": [0, 1, 0, 2], "loss": [3.0, 2.9, 3.1, 2.8]}).to_csv(
        numbered, index=False)
    assert read_log(numbered, run="1")["loss"].tolist() == [3.0, 2.9]


def test_trainer_state_tensorboard_and_mlflow(tmp_path):
    hf = tmp_path / "ckpt"
    hf.mkdir()
    (hf / "trainer_state.json").write_text(json.dumps({"log_history": [
        {"step": 10, "loss": 3.1, "learning_rate": 1e-3}, {"step": 10, "eval_loss": 3.2}, {"step": 20, "loss": 2.9}]}))
    assert list(read_log(hf)["loss"]) == [3.1, 2.9]
    tb = tmp_path / "tb"
    tb.mkdir()
    write_tensorboard_scalars(tb / "events.out.tfevents.1.host", "train/loss", [1, 2, 3], [3.0, 2.5, 2.25])
    df = read_log(tb)
    assert list(df["step"]) == [1, 2, 3] and np.allclose(df["loss"], [3.0, 2.5, 2.25])
    ml = tmp_path / "mlruns" / "0" / "abc" / "metrics"
    ml.mkdir(parents=True)
    (ml / "train_loss").write_text("1700000000 3.0 1\n1700000001 2.8 2\n")
    assert list(read_log(ml.parent, reader="mlflow")["loss"]) == [3.0, 2.8]


def test_follow_survives_growth_and_rotation(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text("")
    got = []

    def writer():
        with open(p, "a") as f:
            for s in range(5):
                f.write(json.dumps({"step": s, "train_loss": 3.0 - 0.1 * s}) + "\n")
                f.flush()
                time.sleep(0.05)
        time.sleep(0.2)
        p.write_text(json.dumps({"step": 0, "train_loss": 9.0}) + "\n")  # rotated: a new, shorter file

    t = threading.Thread(target=writer)
    t.start()
    for step, loss, _ in follow(p, interval=0.02, timeout=1.5):
        got.append((step, loss))
    t.join()
    assert [s for s, _ in got[:5]] == [0, 1, 2, 3, 4]
    assert got[-1] == (0, 9.0)


# --------------------------------------------------------------------- CLI
def test_cli_predict_and_watch(tmp_path, law):
    fit = tmp_path / "fit.json"
    law.save(fit)
    plan_path = tmp_path / "plan.json"
    assert main(["predict", str(fit), "--model", MODEL, "--tokens", str(300 * 4096), "--tokens-per-step", "4096",
                 "--out", str(plan_path)]) == 0
    assert load_plan(plan_path)["steps"] == 300
    # --D names the same training tokens (as for a final-loss fit); two numbers that disagree are refused
    assert main(["predict", str(fit), "--model", MODEL, "--D", str(300 * 4096), "--out", str(tmp_path / "p2.json")]) == 0
    assert load_plan(tmp_path / "p2.json")["final_loss"] == load_plan(plan_path)["final_loss"]
    assert main(["predict", str(fit), "--model", MODEL, "--D", "1e6", "--tokens", "2e6"]) == 2
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    for path, factor in ((good, lambda s: 1.0), (bad, lambda s: 1.0 + 0.003 * s)):
        with open(path, "w") as f:
            for s, v, t in run_log(law, factor):
                f.write(json.dumps({"step": s, "tokens": t, "train_loss": v}) + "\n")
    assert main(["watch", str(good), "--plan", str(plan_path), "--once"]) == 0
    assert main(["watch", str(bad), "--plan", str(plan_path), "--once", "--plot", str(tmp_path / "w.png")]) == 1
    assert (tmp_path / "w.png").stat().st_size > 5000


def test_watch_warns_when_the_run_is_not_the_planned_one(tmp_path, law, plan, capsys):
    from scaling.plan import save_plan

    save_plan(plan, tmp_path / "plan.json")
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"N": 4 * plan["N"]}))
    (run / "log.jsonl").write_text(json.dumps({"step": 5, "train_loss": 3.0, "tokens": 6 * 4096}) + "\n")
    main(["watch", str(run / "log.jsonl"), "--plan", str(tmp_path / "plan.json"), "--once"])
    err = capsys.readouterr().err
    assert "but the plan is for" in err


def test_trainer_callback(plan, law):
    pytest.importorskip("transformers")
    cb = trainer_callback(plan)
    args = SimpleNamespace(per_device_train_batch_size=1, gradient_accumulation_steps=1, world_size=1)
    control = SimpleNamespace(should_training_stop=False)
    for s, v, t in run_log(law, lambda s: 1.0 + 0.004 * s)[:120]:
        cb.on_log(args, SimpleNamespace(global_step=s), control, logs={"loss": v})
    assert any(h.off_track for h in cb.monitor.history)


def test_curve_points_smooth_training_loss_into_a_trailing_mean():
    """Per-step training loss becomes ~40 trailing-mean points per run; held-out loss is kept as logged."""
    from scaling.laws.curve import curve_points

    rng = np.random.default_rng(0)
    steps = np.arange(1000)
    true = 2.0 + 3.0 / np.sqrt(steps + 1)
    train = true + 0.05 * rng.standard_normal(steps.size)
    ev = np.where(steps % 100 == 99, true + 0.1, np.nan)
    curves = pd.DataFrame({"run_id": "r0", "step": steps, "tokens": (steps + 1) * 1024.0, "lr": 1e-3,
                           "train_loss": train, "eval_loss": ev})
    runs = pd.DataFrame({"run_id": ["r0"], "N": [1e5]})
    e = curve_points(curves, runs)
    assert len(e) == 10 and np.allclose(e["loss"], true[99::100] + 0.1)
    t = curve_points(curves, runs, loss="train_loss")
    assert 38 <= len(t) <= 40
    window = 20  # 2% of 1000 steps
    for _, r in t.iterrows():
        i = int(r["step"])
        assert r["loss"] == pytest.approx(train[i - window + 1:i + 1].mean())
    # the smoothing removes the step noise: within 0.03 of the truth once the curve flattens
    late = t[t["step"] > 200]
    assert np.abs(late["loss"].to_numpy() - true[late["step"].to_numpy()]).max() < 0.03


def test_batch_noise_is_not_read_as_a_flat_run(law, plan):
    """With 3% batch noise a healthy run is not called flat; a stuck one with the same noise still is."""
    for seed in range(5):
        mon = Monitor(plan)
        states = [mon.update(s, v, t).state for s, v, t in run_log(law, noise=0.03, seed=seed)]
        assert "flat" not in states, seed
    log = run_log(law, noise=0.03, seed=1)
    stuck = np.mean([v for _, v, _ in log[55:65]])
    rng = np.random.default_rng(9)
    mon = Monitor(plan)
    states = [mon.update(s, v if s < 60 else stuck * float(np.exp(0.03 * rng.standard_normal())), t).state
              for s, v, t in log]
    assert "flat" in states or "drift" in states


def test_watch_once_on_a_missing_log_says_so(tmp_path, plan, capsys):
    from scaling.plan import save_plan

    save_plan(plan, tmp_path / "plan.json")
    assert main(["watch", str(tmp_path / "nope.jsonl"), "--plan", str(tmp_path / "plan.json"), "--once"]) == 2
    assert "no such log" in capsys.readouterr().err


# ------------------------------------------------------- live re-forecasting (issue 15)
@pytest.mark.parametrize("offset", [1.04, 0.96])
def test_the_forecast_moves_to_the_run_after_a_quarter_of_it(law, plan, offset):
    """A run whose true curve sits off the plan (a level and a slightly different shape): after 25% of its steps
    the re-forecast final loss is much closer to the truth than the plan's, and its band covers the truth."""
    shape = lambda s: offset * (1 + 0.01 * (1 - s / 300))  # noqa: E731
    log = run_log(law, factor=shape, seed=3)
    truth = run_log(law, factor=shape, noise=0.0)[-1][1]
    mon = Monitor(plan)
    before = mon.forecast()
    assert before.final == pytest.approx(plan["final_loss"]) and before.weight == 0.0
    for s, v, t in log[:75]:  # 25% of 300 steps
        st = mon.update(s, v, t)
    prior_err = abs(plan["final_loss"] - truth) / truth
    now_err = abs(st.forecast - truth) / truth
    assert prior_err > 0.03 and now_err < 0.5 * prior_err, (prior_err, now_err)  # the target: halved by 25%
    assert st.forecast_lo <= truth <= st.forecast_hi
    for s, v, t in log[75:]:
        st = mon.update(s, v, t)
    assert abs(st.forecast - truth) / truth < 0.25 * prior_err  # nearly the run's own number by its end


def test_a_run_on_plan_keeps_the_plans_forecast(law, plan):
    mon = Monitor(plan)
    for s, v, t in run_log(law, seed=4)[:150]:
        st = mon.update(s, v, t)
    assert st.forecast == pytest.approx(plan["final_loss"], rel=0.01)
    lo, hi = plan["final_interval"]
    assert st.forecast_hi - st.forecast_lo < hi - lo  # half the run seen: the band is narrower than the plan's


def test_watch_prints_the_forecast_at_each_point(tmp_path, law, plan, capsys):
    from scaling.plan import save_plan

    save_plan(plan, tmp_path / "plan.json")
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": v, "tokens": t}) + "\n" for s, v, t in run_log(law)[:120]))
    main(["watch", str(log), "--plan", str(tmp_path / "plan.json"), "--once", "--json"])
    rows = [json.loads(x) for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    assert rows and all({"forecast", "forecast_lo", "forecast_hi"} <= set(r) for r in rows)
    assert rows[-1]["forecast_lo"] <= rows[-1]["forecast"] <= rows[-1]["forecast_hi"]
    main(["watch", str(log), "--plan", str(tmp_path / "plan.json"), "--once"])
    text = capsys.readouterr().out
    assert "final " in text.splitlines()[-1] or any("final " in x for x in text.splitlines())
