"""The trainer's GPU path, covered on the CPU: device placement with a stand-in for torch, workers per GPU, and
losses read back once per sync window (the same numbers, the same divergence handling as reading every step)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from scaling.errors import ScalingError
from scaling.sweep.executors import gpu_for, plan_workers
from scaling.sweep.spec import expand, load_spec
from scaling.sweep.train import BF16_MIN_WIDTH, GPU_SYNC_EVERY, device_plan

ROOT = Path(__file__).resolve().parents[1]


def fake_torch(gpu: bool, bf16: bool = True, version: str = "2.13.0+cpu"):
    return SimpleNamespace(__version__=version,
                           cuda=SimpleNamespace(is_available=lambda: gpu, is_bf16_supported=lambda: bf16))


def test_cpu_machine_trains_in_float32_and_reads_every_loss():
    plan = device_plan({"d_model": 1024}, fake_torch(gpu=False))
    assert plan == {"device": "cpu", "bf16": False, "fused_adamw": True, "sync_every": 1}
    # torch 2.3 (which the package allows) has no fused AdamW kernel for the CPU
    assert device_plan({"d_model": 1024}, fake_torch(gpu=False, version="2.3.1"))["fused_adamw"] is False
    assert device_plan({"d_model": 1024}, fake_torch(gpu=True, version="2.3.1"))["fused_adamw"] is True


@pytest.mark.parametrize("width,bf16", [(BF16_MIN_WIDTH - 1, False), (BF16_MIN_WIDTH, True), (1024, True)])
def test_gpu_machine_uses_bf16_from_the_measured_width_fused_adamw_and_fewer_syncs(width, bf16):
    plan = device_plan({"d_model": width}, fake_torch(gpu=True))
    assert plan == {"device": "cuda", "bf16": bf16, "fused_adamw": True, "sync_every": GPU_SYNC_EVERY}


def test_gpu_without_bf16_trains_in_float32():
    assert device_plan({"d_model": 1024}, fake_torch(gpu=True, bf16=False))["bf16"] is False


def test_explicit_device_settings_are_honoured():
    gpu = fake_torch(gpu=True)
    assert device_plan({"d_model": 64, "device": {"precision": "bf16"}}, gpu)["bf16"] is True
    assert device_plan({"d_model": 1024, "device": {"precision": "fp32"}}, gpu)["bf16"] is False
    assert device_plan({"d_model": 64, "device": {"sync_every": 5}}, gpu)["sync_every"] == 5
    cpu = device_plan({"d_model": 1024, "device": {"type": "cpu"}}, gpu)
    assert cpu["device"] == "cpu" and cpu["bf16"] is False and cpu["fused_adamw"] is True  # the CPU kernel (torch >= 2.4)


@pytest.mark.parametrize("device,gpu,msg", [
    ({"type": "cuda"}, False, "sees no GPU"),
    ({"type": "tpu"}, True, "use auto, cpu or cuda"),
    ({"precision": "fp8"}, True, "use auto, bf16 or fp32"),
    ({"precision": "bf16"}, False, "needs a GPU"),
    ({"sync_every": -3}, True, "positive number of steps"),
])
def test_impossible_device_settings_are_refused(device, gpu, msg):
    with pytest.raises(ScalingError, match=msg):
        device_plan({"d_model": 64, "device": device}, fake_torch(gpu=gpu))


def test_workers_per_gpu_sets_the_pool_and_spreads_workers_round_robin():
    assert plan_workers(None, 1, gpus=2, workers_per_gpu=3) == 6
    assert plan_workers(4, 1, gpus=2, workers_per_gpu=3) == 4  # asked for: as asked
    assert plan_workers(None, 1, gpus=0, workers_per_gpu=3) >= 1  # no GPU: one per core
    assert [gpu_for(i, 2) for i in range(6)] == ["0", "1", "0", "1", "0", "1"]


def test_local_executor_refuses_zero_workers_per_gpu():
    from scaling.sweep.executors import LocalExecutor

    with pytest.raises(ScalingError, match="at least 1"):
        LocalExecutor(workers=1, workers_per_gpu=0)


def _small_cfg(**device):
    cfg = min(expand(load_spec(ROOT / "sweeps" / "ci.yaml")), key=lambda c: c["steps"] * c["N"])
    return {**cfg, "device": device, "eval": {**cfg["eval"], "every": 7}, "checkpoint": {"every": 5}}


def _log(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / "log.jsonl").read_text().splitlines()]


def test_losses_read_in_windows_match_losses_read_every_step(tmp_path):
    pytest.importorskip("transformers")
    from scaling.sweep.train import run_worker

    every = run_worker(_small_cfg(), str(tmp_path / "every"), 1)
    windows = run_worker(_small_cfg(sync_every=6), str(tmp_path / "windows"), 1)
    assert windows["final_eval_loss"] == every["final_eval_loss"]
    a, b = _log(tmp_path / "every"), _log(tmp_path / "windows")
    assert [r["step"] for r in a] == [r["step"] for r in b]  # every step is still logged
    assert [r.get("train_loss") for r in a] == [r.get("train_loss") for r in b]
    assert [r.get("eval_loss") for r in a] == [r.get("eval_loss") for r in b]


def test_a_nan_inside_a_sync_window_ends_the_run_at_its_step_without_a_checkpoint(tmp_path, monkeypatch):
    pytest.importorskip("transformers")
    import torch

    from scaling.sweep import train

    real, calls = train._loss, {"n": 0}

    def loss_nan_at_step_7(*args):
        out = real(*args)
        calls["n"] += 1
        return out * torch.tensor(float("nan")) if calls["n"] == 8 else out

    monkeypatch.setattr(train, "_loss", loss_nan_at_step_7)
    d = tmp_path / "run"
    res = train.run_worker(_small_cfg(sync_every=6), str(d), 1)
    assert res["status"] == "diverged" and res["step"] == 7
    log = _log(d)
    assert log[-1]["step"] == 7 and log[-1]["train_loss"] != log[-1]["train_loss"]  # NaN
    assert all(r["train_loss"] == r["train_loss"] for r in log[:-1]) and len(log) == 8
    # the checkpoint due after step 9 (every 5 steps, window 6-11) was never written; the one after step 4 was
    assert torch.load(d / "ckpt.pt", weights_only=True)["step"] == 5


def test_device_settings_reach_every_run_but_not_its_id(tmp_path):
    base = load_spec(ROOT / "sweeps" / "ci.yaml")
    gpu = load_spec({**_raw_ci(), "device": {"precision": "bf16", "sync_every": 16}, "workers_per_gpu": 4})
    a, b = expand(base), expand(gpu)
    assert [c["run_id"] for c in a] == [c["run_id"] for c in b]
    assert all(c["device"] == {"type": "auto", "precision": "bf16", "sync_every": 16} for c in b)
    assert gpu["workers_per_gpu"] == 4


@pytest.mark.parametrize("bad,msg", [({"device": {"type": "tpu"}}, "device.type"),
                                     ({"device": {"precision": "fp16"}}, "device.precision"),
                                     ({"device": {"sync_every": 0}}, "sync_every"),
                                     ({"workers_per_gpu": 0}, "workers_per_gpu")])
def test_bad_device_settings_fail_before_training(bad, msg):
    from scaling.sweep.spec import SpecError

    with pytest.raises(SpecError, match=msg):
        load_spec({**_raw_ci(), **bad})


def _raw_ci() -> dict:
    import yaml

    return yaml.safe_load((ROOT / "sweeps" / "ci.yaml").read_text())


@pytest.mark.parametrize("device,gpus,bf16,msg", [
    ({"type": "cuda"}, 0, True, r"device.type is cuda, but torch sees no GPU on this machine"),
    ({"precision": "bf16"}, 0, True, r"device.precision bf16 needs a GPU"),
    ({"precision": "bf16"}, 1, False, r"device.precision bf16 needs a GPU that supports bfloat16"),
    ({"type": "cpu", "precision": "bf16"}, 1, True, r"device.precision bf16 needs a GPU, and device.type is cpu"),
])
def test_device_settings_this_machine_cannot_honour_fail_before_anything_trains(tmp_path, monkeypatch, device, gpus,
                                                                               bf16, msg):
    from scaling.sweep import executors, runner

    monkeypatch.setattr(executors, "gpu_count", lambda: gpus)
    monkeypatch.setattr(runner, "_bf16_supported", lambda: bf16)
    with pytest.raises(ScalingError, match=msg):
        runner.run_sweep({**_raw_ci(), "device": device}, root=tmp_path / "sweeps", progress=False)
    assert not (tmp_path / "sweeps").exists()  # no store, no worker


def test_device_settings_the_machine_has_pass_the_check(monkeypatch):
    from scaling.sweep import executors, runner

    monkeypatch.setattr(executors, "gpu_count", lambda: 1)
    monkeypatch.setattr(runner, "_bf16_supported", lambda: True)
    runner.check_device(load_spec({**_raw_ci(), "device": {"type": "cuda", "precision": "bf16"}}), "local")
    monkeypatch.setattr(executors, "gpu_count", lambda: 0)
    runner.check_device(load_spec({**_raw_ci(), "device": {"type": "auto"}}), "local")
    # on Slurm the jobs' machines decide, not the driver's
    runner.check_device(load_spec({**_raw_ci(), "device": {"type": "cuda"}}), "submitit")
