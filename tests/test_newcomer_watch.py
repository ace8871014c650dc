"""What a newcomer trying `fit --law mpl`, `predict --out plan.json` and `watch` on the package's own sweeps ran into
(2026-12-02 evening review)."""

import json
import warnings

import numpy as np
import pytest

import scaling
from scaling.cli import main
from scaling.laws.mpl import synthetic_curves
from test_curve_laws import TRUTH


@pytest.fixture(scope="module")
def fit():
    pts = synthetic_curves(TRUTH, sizes=(1e5, 4e5, 1.6e6), schedules=("cosine", "constant", "wsd"), every=25, seed=2,
                           noise=0.03)  # a training loss's batch noise
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return scaling.fit(pts, law="mpl", bootstrap=20)


def test_a_plans_band_moves_smoothly_along_the_curve(fit):
    """Each bootstrap curve drew a fresh residual at every point, so the band of a plan jumped by up to a third
    from one step to the next; one residual per curve keeps it as smooth as the curves, and each point's band as
    wide (the same residuals, drawn once)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = scaling.make_plan(fit, N=8e5, tokens=800, tokens_per_step=1)
    for k in ("lo", "hi", "loss"):
        v = np.log(np.asarray(plan["curve"][k]))
        assert np.max(np.abs(np.diff(v))) < 0.01, k  # neighbouring points within 1% (with a draw per point: 5%)
    lo, hi = np.asarray(plan["curve"]["lo"]), np.asarray(plan["curve"]["hi"])
    assert np.all(hi > lo) and np.all(hi / lo > 1.0005)


def test_a_fit_file_written_by_fit_loads_without_suspicion_of_an_edit(fit, tmp_path):
    d = fit.to_dict()
    name = "E"
    lo = min(r[fit.law.param_names().index(name)] for r in d["bootstrap"]["params"])
    d["params"][name] = lo * 0.9  # outside every resample
    d["fit_info"] = {**d.get("fit_info", {}), "ci_widened": [name]}  # ... as fit said of it
    path = tmp_path / "fit.json"
    path.write_text(json.dumps(d))
    with warnings.catch_warnings():
        warnings.simplefilter("error", scaling.ScalingWarning)
        scaling.load(path)  # no "was the file edited?"
    d["fit_info"]["ci_widened"] = []  # an estimate outside the resamples that the fit never reported: an edit
    path.write_text(json.dumps(d))
    with pytest.warns(scaling.ScalingWarning, match="was the file"):
        scaling.load(path)


def test_fit_says_what_it_learnt_for_the_live_re_forecast(fit):
    text = fit.report()
    assert "live re-forecast: of a run's offset from the law after 25% / 50% of it" in text and "in these 9 runs" in text
    few = synthetic_curves(TRUTH, sizes=(1e5, 4e5), schedules=("cosine", "constant"), every=25, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        small = scaling.fit(few, law="mpl", bootstrap=0)
    assert "live re-forecast: not calibrated (fewer than 8 runs" in small.report()


def test_watch_opens_with_what_the_plan_forecasts_and_what_each_line_holds(fit, tmp_path, capsys):
    from scaling.plan import save_plan

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = scaling.make_plan(fit, N=8e5, tokens=800, tokens_per_step=1)
    save_plan(plan, tmp_path / "plan.json")
    c = plan["curve"]
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps({"step": s, "loss": float(np.interp(s, c["step"], c["loss"]))}) + "\n"
                           for s in range(10, 400, 10)))
    assert main(["watch", str(log), "--plan", str(tmp_path / "plan.json"), "--once"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"plan: final loss {plan['final_loss']:.4f} [") and "read, not judged" in out[0]
    assert main(["watch", str(log), "--plan", str(tmp_path / "plan.json"), "--once", "--json"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert all(r.startswith("{") for r in rows)  # --json: one object a line, nothing else
