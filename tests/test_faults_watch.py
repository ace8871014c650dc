"""Issue #10: `scaling watch` must never read a diverged or unreadable run as healthy; plans, models and
output paths are checked before the work, with one `error:` line."""

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from scaling.cli import main
from scaling.errors import DataError
from scaling.monitor import Monitor, trainer_callback
from scaling.plan import load_plan, save_plan
from scaling.readers import read_log
from test_monitor import MODEL, law, plan, run_log  # noqa: F401 (the fitted curve law and its plan: fixtures)

STEPS = 300


@pytest.fixture
def plan_path(tmp_path, plan):
    p = tmp_path / "plan.json"
    save_plan(plan, p)
    return p


@pytest.fixture(scope="module")
def healthy(law):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return run_log(law)


def write_jsonl(path, rows):
    """rows of (step, loss, tokens); json.dumps writes a NaN loss as `NaN`, as the sweep trainer does."""
    path.write_text("".join(json.dumps({"step": s, "tokens": t, "train_loss": v}) + "\n" for s, v, t in rows))
    return path


def watch(capsys, log, plan_path, *extra):
    code = main(["watch", str(log), "--plan", str(plan_path), "--once", *extra])
    out, err = capsys.readouterr()
    return code, out, err


# ------------------------------------------------------- readers keep NaN/inf
def test_jsonl_reader_keeps_nan_and_inf_losses(tmp_path):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 0, "train_loss": 3.0}\n{"step": 1, "train_loss": NaN}\n{"step": 2, "train_loss": Infinity}\n'
                 '{"step": 3, "train_loss": "nan"}\n{"step": 4, "train_loss": "inf"}\n{"step": 5, "eval_loss": 3.1}\n')
    df = read_log(p)
    assert list(df["step"]) == [0, 1, 2, 3, 4]  # the eval-only row has no training loss: not a point
    assert df["loss"].iloc[0] == 3.0
    assert np.isnan(df["loss"].iloc[1]) and np.isnan(df["loss"].iloc[3])
    assert df["loss"].iloc[2] == np.inf and df["loss"].iloc[4] == np.inf


def test_csv_reader_keeps_nan_and_skips_empty_cells(tmp_path):
    p = tmp_path / "log.csv"
    p.write_text("step,loss,eval\n0,3.0,\n1,,3.2\n2,nan,\n3,inf,\n")
    df = read_log(p)
    assert list(df["step"]) == [0, 2, 3]  # step 1 logged no training loss
    assert df["loss"].iloc[0] == 3.0 and np.isnan(df["loss"].iloc[1]) and df["loss"].iloc[2] == np.inf


def test_trainer_state_reader_keeps_nan(tmp_path):
    p = tmp_path / "trainer_state.json"
    p.write_text('{"log_history": [{"step": 10, "loss": 3.1}, {"step": 10, "eval_loss": 3.2}, {"step": 20, "loss": NaN}]}')
    df = read_log(p)
    assert list(df["step"]) == [10, 20] and np.isnan(df["loss"].iloc[1])


@pytest.mark.parametrize("name,content,why", [
    ("bin.jsonl", bytes(range(256)) * 8, "binary"),
    ("str.jsonl", '{"step": 1, "train_loss": "tensor(2.31)"}\n{"step": 2, "train_loss": "tensor(2.30)"}\n', "not numbers"),
    ("text.jsonl", "step 1 loss 2.31\nstep 2 loss 2.30\n", "no line of it is a JSON object"),
    ("str.csv", "step,loss\n1,tensor(2.31)\n", "not numbers"),
])
def test_a_log_with_nothing_readable_is_an_error_naming_why(tmp_path, name, content, why):
    p = tmp_path / name
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    with pytest.raises(DataError, match="nothing could be read") as e:
        read_log(p)
    assert why in str(e.value)


# -------------------------------------------------- watch --once: the whole log decides
@pytest.mark.parametrize("where", ["last", "mid-run"])
def test_watch_once_flags_a_nan_loss(tmp_path, capsys, plan_path, healthy, where):
    rows = list(healthy[:200])
    at = 199 if where == "last" else 150
    rows[at] = (at, float("nan"), rows[at][2])
    code, out, _ = watch(capsys, write_jsonl(tmp_path / "log.jsonl", rows), plan_path)
    assert code == 1
    assert "DIVERGED" in out and f"step {at}" in out


def test_watch_once_flags_a_spike_mid_run(tmp_path, capsys, plan_path, healthy):
    rows = list(healthy)
    rows[150] = (150, 3.0 * rows[150][1], rows[150][2])  # one bad step, then healthy to the end
    code, out, _ = watch(capsys, write_jsonl(tmp_path / "log.jsonl", rows), plan_path)
    assert code == 1 and "SPIKE" in out
    assert "point(s) off track; first at step 150 (spike" in out.rstrip().splitlines()[-1]
    assert " ok" in out.rstrip().splitlines()[-2]  # the last point alone reads as healthy


def test_watch_once_on_a_healthy_run_still_exits_0(tmp_path, capsys, plan_path, healthy):
    code, out, _ = watch(capsys, write_jsonl(tmp_path / "log.jsonl", healthy), plan_path)
    assert code == 0 and "off track" not in out


@pytest.mark.parametrize("content,why", [
    ("", "empty"),
    (bytes(range(256)) * 8, "binary"),
    ('{"step": 100, "train_loss": "2.3 (smoothed)"}\n' * 3, "not numbers"),
])
def test_watch_once_on_an_unreadable_log_is_an_error(tmp_path, capsys, plan_path, content, why):
    p = tmp_path / "log.jsonl"
    (p.write_bytes if isinstance(content, bytes) else p.write_text)(content)
    code, out, err = watch(capsys, p, plan_path)
    assert code == 2
    assert err.startswith("error: nothing could be read from") and why in err and len(err.strip().splitlines()) == 1


# ------------------------------------------------------------- the Monitor
def test_monitor_stays_diverged_until_resumed_from_before_it(plan, healthy):
    mon = Monitor(plan)
    for s, v, t in healthy[:100]:
        mon.update(s, v, t)
    assert mon.update(100, float("nan"), 101 * 4096).state == "diverged"
    later = [mon.update(s, v, t) for s, v, t in healthy[101:140]]
    assert all(st.state == "diverged" and st.off_track for st in later)
    assert "diverged at step 100" in later[-1].message
    assert mon.diverged_at == 100 and mon.worst.state == "diverged" and mon.worst.step == 100
    assert mon.ever_off_track
    st = mon.update(90, healthy[90][1], healthy[90][2])  # resumed from a checkpoint before the divergence
    assert st.state == "ok" and mon.diverged_at is None and not mon.worst.off_track


def test_monitor_worst_remembers_a_spike_the_last_point_forgot(plan, healthy):
    mon = Monitor(plan)
    for s, v, t in healthy:
        mon.update(s, 3.0 * v if s == 150 else v, t)
    assert mon.history[-1].state == "ok"
    assert mon.worst.state == "spike" and mon.worst.step == 150


# ------------------------------------------------------- the Trainer callback
def test_trainer_callback_flags_nan_and_unhides_it(plan, healthy):
    pytest.importorskip("transformers")
    cb = trainer_callback(plan)
    args = SimpleNamespace(logging_nan_inf_filter=True)  # the Trainer's default: logs NaN as past losses
    control = SimpleNamespace(should_training_stop=False)
    cb.on_train_begin(args, SimpleNamespace(global_step=0), control)
    assert args.logging_nan_inf_filter is False
    for s, v, _ in healthy[:100]:
        cb.on_log(args, SimpleNamespace(global_step=s), control, logs={"loss": v})
    cb.on_log(args, SimpleNamespace(global_step=100), control, logs={"loss": float("nan")})
    cb.on_log(args, SimpleNamespace(global_step=100), control, logs={"eval_loss": 3.0})  # evaluation, same step
    for s, v, _ in healthy[101:120]:
        cb.on_log(args, SimpleNamespace(global_step=s), control, logs={"loss": v})
    assert cb.monitor.worst.state == "diverged" and cb.monitor.worst.step == 100
    assert cb.monitor.history[-1].state == "diverged"


# ---------------------------------------------------------- plans and models
def test_predict_with_a_model_file_that_is_not_a_config(tmp_path, capsys, law):
    fit = tmp_path / "fit.json"
    law.save(fit)
    bad = tmp_path / "runs.csv"
    bad.write_text("N,D,loss\n1e6,1e8,3.2\n")
    code = main(["predict", str(fit), "--model", str(bad), "--tokens", "1e6"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{bad} is not a model config" in err and "config.json" in err and "n_layer=4,d_model=128" in err


@pytest.mark.parametrize("damage,what", [
    (lambda c: c.update(loss=c["loss"][:-5]), "cut short"),
    (lambda c: c["hi"].__setitem__(3, float("nan")), "hi[3]"),
    (lambda c: c["tokens"].__setitem__(4, c["tokens"][2]), "do not increase"),
])
def test_a_damaged_plan_is_refused_naming_the_fault(tmp_path, capsys, plan, healthy, damage, what):
    bad = json.loads(json.dumps(plan))
    damage(bad["curve"])
    p = tmp_path / "plan.json"
    p.write_text(json.dumps(bad))
    with pytest.raises(DataError, match="plan.json") as e:
        load_plan(p)
    assert what in str(e.value)
    with pytest.raises(DataError):
        Monitor(bad)
    code, _, err = watch(capsys, write_jsonl(tmp_path / "log.jsonl", healthy[:50]), p)
    assert code == 2 and err.startswith("error: ") and what in err


# ---------------------------------------------------------- output paths
def test_predict_out_into_a_missing_folder_or_onto_a_directory(tmp_path, capsys, law, monkeypatch):
    fit = tmp_path / "fit.json"
    law.save(fit)
    argv = ["predict", str(fit), "--model", MODEL, "--tokens", str(STEPS * 4096), "--tokens-per-step", "4096"]
    out = tmp_path / "new" / "sub" / "plan.json"
    assert main(argv + ["--out", str(out)]) == 0
    assert load_plan(out)["steps"] == STEPS
    capsys.readouterr()

    import scaling.plan

    def no_work(*a, **k):
        raise AssertionError("the output path is checked before planning")

    monkeypatch.setattr(scaling.plan, "make_plan", no_work)
    assert main(argv + ["--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --out") and "is a directory" in err


def test_watch_plot_onto_a_directory_is_refused_first(tmp_path, capsys, plan_path, healthy):
    log = write_jsonl(tmp_path / "log.jsonl", healthy[:60])
    code, out, err = watch(capsys, log, plan_path, "--plot", str(tmp_path))
    assert code == 2 and err.startswith("error: --plot") and "is a directory" in err
    assert "step" not in out  # refused before reading the log
    code, _, _ = watch(capsys, log, plan_path, "--plot", str(tmp_path / "figs" / "w.png"))
    assert code == 0 and (tmp_path / "figs" / "w.png").stat().st_size > 5000


def test_a_semicolon_csv_log_is_read_like_a_table(tmp_path):
    log = tmp_path / "wandb.csv"
    log.write_text("global_step;train/loss\n1;3.1\n2;3.0\n3;nan\n")
    df = read_log(log)
    assert list(df["step"]) == [1, 2, 3] and np.isnan(df["loss"].iloc[2])


@pytest.mark.parametrize("flags,expect", [(["--schedule", "wsd", "--decay-frac", "1.5"], "--decay-frac 1.5"),
                                          (["--final-lr-frac", "5"], "--final-lr-frac 5"),
                                          (["--warmup", "5000"], "--warmup 5000")])
def test_plan_schedule_settings_a_run_could_not_follow_are_refused(tmp_path, capsys, law, flags, expect):
    fit = tmp_path / "fit.json"
    law.save(fit)
    code = main(["predict", str(fit), "--model", MODEL, "--tokens", str(STEPS * 4096), "--tokens-per-step", "4096",
                 *flags])
    assert code == 2 and expect in capsys.readouterr().err


def test_watch_says_when_some_losses_could_not_be_read(tmp_path, capsys, plan_path, healthy):
    rows = [json.dumps({"step": s, "tokens": t, "train_loss": v}) for s, v, t in healthy]
    rows[len(rows) // 2] = json.dumps({"step": healthy[len(rows) // 2][0], "train_loss": "tensor(2.31)"})
    log = tmp_path / "mixed.jsonl"
    log.write_text("\n".join(rows) + "\n")
    assert read_log(log).attrs["unreadable"].startswith("1 row(s)")
    main(["watch", str(log), "--plan", str(plan_path), "--once"])
    err = capsys.readouterr().err
    assert "1 row(s)" in err and "'tensor(2.31)'" in err and "not checked" in err
    write_jsonl(tmp_path / "clean.jsonl", healthy)
    main(["watch", str(tmp_path / "clean.jsonl"), "--plan", str(plan_path), "--once"])
    assert "not checked" not in capsys.readouterr().err


# ------------------------------------------- logs as W&B writes them (a newcomer review, 2026-12-02)
def write_csv(path, rows, tail: str = ""):
    path.write_text("Step,Name,train/loss,tokens\n" + "".join(f"{s},live,{v!r},{t!r}\n" for s, v, t in rows) + tail)
    return path


def test_a_half_written_last_csv_line_is_not_read_as_a_point(tmp_path, capsys, plan_path, healthy):
    rows = list(healthy[:200])
    log = write_csv(tmp_path / "log.csv", rows, tail="200,live,3")  # the writer is mid-line: 3 of 4.01...
    df = read_log(log, columns="step=Step,loss=train/loss")
    assert len(df) == 200 and df["step"].iloc[-1] == 199
    code, out, _ = watch(capsys, log, plan_path, "--columns", "step=Step,loss=train/loss")
    assert code == 0 and "step     200" not in out, out[-2000:]


def test_a_finished_csv_log_without_a_final_newline_keeps_its_last_row(tmp_path, capsys, plan_path, healthy):
    rows = list(healthy[:200])
    rows[199] = (199, float("nan"), rows[199][2])  # diverged on the very last row, written without a newline
    log = write_csv(tmp_path / "log.csv", rows)
    log.write_text(log.read_text().rstrip("\n"))
    assert read_log(log, columns="step=Step,loss=train/loss")["step"].iloc[-1] == 199
    code, out, err = watch(capsys, log, plan_path, "--columns", "step=Step,loss=train/loss")
    assert code == 1 and "DIVERGED" in out
    assert "last line (step 199) has no newline" in err  # it may still be being written: the user is told


def test_a_blow_up_before_the_planned_curve_starts_is_a_spike(tmp_path, capsys, plan_path, healthy, plan):
    first = plan["curve"]["step"][0]
    rows = [(s, v * (20.0 if s >= first // 2 else 1.0), t) for s, v, t in healthy[:first]]
    code, out, _ = watch(capsys, write_jsonl(tmp_path / "log.jsonl", rows), plan_path)
    assert code == 1 and "SPIKE" in out and "the lowest so far" in out  # it once said "nothing was checked", exit 0


def test_watch_json_writes_null_for_a_nan_loss(tmp_path, capsys, plan_path, healthy):
    rows = list(healthy[:200])
    rows[150] = (150, float("nan"), rows[150][2])
    code, out, _ = watch(capsys, write_jsonl(tmp_path / "log.jsonl", rows), plan_path, "--json")
    lines = [json.loads(ln, parse_constant=lambda c: pytest.fail(f"{c} is not JSON")) for ln in out.splitlines()
             if ln.startswith("{")]
    assert code == 1 and any(d["state"] == "diverged" and d["loss"] is None for d in lines)


def test_a_plan_without_a_band_judges_spikes_not_drift(tmp_path, capsys, law, healthy):
    from scaling.plan import make_plan

    bare = law.law.from_params(**law.params_)  # the same law, no bootstrap resamples
    plan = make_plan(bare, model=MODEL, tokens=STEPS * 4096, tokens_per_step=4096)
    assert plan["band"] is False and plan["final_interval"][0] == plan["final_interval"][1]
    path = tmp_path / "bare.json"
    save_plan(plan, path)
    shifted = [(s, 1.02 * v, t) for s, v, t in healthy]  # 2% off a band of width 0: not drift
    code, out, err = watch(capsys, write_jsonl(tmp_path / "log.jsonl", shifted), path)
    assert code == 0 and "DRIFT" not in out and "the plan has no band" in err
    fit = bare.save(tmp_path / "bare_fit.json")
    assert main(["predict", str(fit), "--model", MODEL, "--tokens", str(STEPS * 4096), "--tokens-per-step", "4096"]) == 0
    assert "no interval (the fit has no bootstrap resamples" in capsys.readouterr().out
    spiky = list(healthy)
    spiky[150] = (150, 3.0 * spiky[150][1], spiky[150][2])
    code, out, _ = watch(capsys, write_jsonl(tmp_path / "spiky.jsonl", spiky), path)
    assert code == 1 and "SPIKE" in out


def test_a_wandb_table_of_several_runs_is_refused_by_its_name_column(tmp_path, capsys, plan_path, healthy):
    text = "Step,Name,train/loss\n" + "".join(f"{s},{run},{v!r}\n" for run in ("a", "b") for s, v, _ in healthy[:50])
    (tmp_path / "wandb.csv").write_text(text)
    assert main(["watch", str(tmp_path / "wandb.csv"), "--plan", str(plan_path), "--once",
                 "--columns", "step=Step,loss=train/loss"]) == 2
    assert "holds 2 runs" in capsys.readouterr().err


def test_once_exits_2_when_no_point_of_the_log_lies_within_the_plan(tmp_path, capsys, plan_path, healthy, plan):
    # a cron job watching a log that never reached the planned curve passed silently (exit 0)
    first = plan["curve"]["step"][0]
    rows = [r for r in healthy[:first]][:max(3, first // 2)]
    code, out, _ = watch(capsys, write_jsonl(tmp_path / "log.jsonl", rows), plan_path)
    assert code == 2 and "nothing was checked (exit 2)" in out


def test_a_sweep_runs_config_plans_its_own_length(tmp_path, capsys, law):
    # `predict --model RUN/config.json` asked for --tokens, though the run's config holds its D and batch
    fit = tmp_path / "fit.json"
    law.save(fit)
    shape = dict(kv.split("=") for kv in MODEL.split(","))
    cfg = tmp_path / "config.json"
    cfg.write_text(json.dumps({**{k: int(v) for k, v in shape.items()}, "family": "llama", "n_head": 2,
                               "vocab_size": 256, "seq_len": 64, "D": 300 * 2048.0, "tokens_per_step": 2048}))
    assert main(["predict", str(fit), "--model", str(cfg), "--json"]) == 0
    cap = capsys.readouterr()
    got = json.loads(cap.out)
    assert got["tokens"] == 300 * 2048 and got["steps"] == 300 and "tokens D = 6.144e+05 from" in cap.err
