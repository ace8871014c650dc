"""The CLI shapes that scripts rely on (issue #2)."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from scaling.cli import main
from scaling.data import DATA_DIR

DATA = str(DATA_DIR / "chinchilla_besiroglu2024.csv")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def fit_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fit") / "fit.json"
    assert main(["fit", DATA, "--law", "chinchilla", "--drop-highest-loss", "5", "--bootstrap", "200",
                 "--out", str(path), "--json"]) == 0
    return path


def test_fit_json_keys(capsys):
    code, out, _ = run(capsys, "fit", DATA, "--drop-highest-loss", "5", "--bootstrap", "100", "--json")
    assert code == 0
    d = json.loads(out)
    for key in ("law", "params", "stderr", "ci", "objective", "n_points", "converged", "compute_optimal"):
        assert key in d
    assert d["law"] == "chinchilla"
    assert set(d["params"]) == {"E", "A", "B", "alpha", "beta"}
    assert set(d["compute_optimal"]) >= {"a", "b", "G"}
    assert d["n_points"] == 240 and d["converged"] is True
    assert d["compute_optimal"]["a"] == pytest.approx(0.513, abs=1e-3)
    assert d["ci"]["alpha"][0] < d["params"]["alpha"] < d["ci"]["alpha"][1]


def test_fit_readable_table(capsys):
    code, out, _ = run(capsys, "fit", DATA, "--drop-highest-loss", "5", "--bootstrap", "0")
    assert code == 0 and "alpha" in out and "compute-optimal" in out


def test_column_mapping_from_raw_file(capsys, tmp_path):
    import pandas as pd

    raw = pd.read_csv(DATA, comment="#").rename(columns={"N": "Model Size", "C": "Training FLOP"}).drop(columns=["D"])
    p = tmp_path / "raw.csv"
    raw.to_csv(p, index=False)
    code, out, _ = run(capsys, "fit", str(p), "--columns", "N=Model Size,C=Training FLOP", "--drop-highest-loss", "5",
                       "--bootstrap", "0", "--json")
    assert code == 0
    assert json.loads(out)["params"]["alpha"] == pytest.approx(0.3473, abs=2e-4)


def test_predict_and_allocate(capsys, fit_file):
    code, out, _ = run(capsys, "predict", str(fit_file), "--N", "7e10", "--D", "1.4e12", "--json")
    assert code == 0
    d = json.loads(out)
    assert d["interval"][0] < d["loss"] < d["interval"][1]
    assert d["loss"] == pytest.approx(1.9734, abs=2e-3)
    code, out, _ = run(capsys, "allocate", str(fit_file), "--compute", "5.76e23", "--json")
    d = json.loads(out)
    assert set(d) >= {"N_opt", "D_opt", "tokens_per_param", "loss"}
    assert d["D_opt"] / d["N_opt"] == pytest.approx(d["tokens_per_param"])
    assert 6 * d["N_opt"] * d["D_opt"] == pytest.approx(5.76e23, rel=1e-9)


def test_plot(capsys, fit_file, tmp_path):
    out = tmp_path / "fit.png"
    code, _, _ = run(capsys, "plot", str(fit_file), DATA, "--out", str(out))
    assert code == 0 and out.stat().st_size > 10_000


@pytest.mark.parametrize("argv,msg", [
    (["fit", "missing.csv"], "no such file"),
    (["fit", DATA, "--law", "nope"], "unknown law 'nope'"),
    (["fit", DATA, "--columns", "N=params"], "--columns names"),
    (["predict", "missing.json", "--N", "1e9", "--D", "1e10"], "no such fit file"),
])
def test_errors_are_one_line(capsys, argv, msg):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert err.startswith("error:") and msg in err and "Traceback" not in err


def test_predict_missing_input(capsys, fit_file):
    code, _, err = run(capsys, "predict", str(fit_file), "--N", "1e9")
    assert code == 2 and "--D VALUE" in err


def test_console_script_entry_point():
    out = subprocess.run([sys.executable, "-m", "scaling.cli", "laws"], capture_output=True, text=True, check=True)
    assert "chinchilla" in out.stdout and "kaplan" in out.stdout


def test_isoflop_fit_json_has_exponents_under_compute_optimal(capsys, tmp_path):
    from test_law_contract import isoflop_runs

    p = tmp_path / "iso.csv"
    isoflop_runs().to_csv(p, index=False)
    code, out, _ = run(capsys, "fit", str(p), "--law", "isoflop", "--bootstrap", "50", "--json",
                       "--out", str(tmp_path / "iso.json"))
    d = json.loads(out)
    assert code == 0 and {"a", "b"} <= set(d["compute_optimal"])
    assert d["compute_optimal"]["a"] == pytest.approx(0.476, abs=0.01)
    code, _, _ = run(capsys, "plot", str(tmp_path / "iso.json"), str(p), "--out", str(tmp_path / "iso.png"))
    assert code == 0 and (tmp_path / "iso.png").stat().st_size > 10_000
    # the user's own column names, mapped as for the fit (the plot once ignored --columns)
    theirs = tmp_path / "theirs.csv"
    isoflop_runs().rename(columns={"N": "params", "C": "flops", "D": "tokens"}).to_csv(theirs, index=False)
    code, _, _ = run(capsys, "plot", str(tmp_path / "iso.json"), str(theirs), "--columns",
                     "N=params,C=flops,D=tokens", "--out", str(tmp_path / "iso2.png"))
    assert code == 0 and (tmp_path / "iso2.png").stat().st_size > 10_000
    code, out, err = run(capsys, "compare", str(p), "--compute", "1e22", "--bootstrap", "20", "--json")
    rows = json.loads(out)["approaches"]
    assert [r["law"] for r in rows] == ["isoflop", "chinchilla"]
    assert "Approach 1 (the envelope of training curves) was not run: it needs the runs' curves" in err


def test_data_constrained_allocation_needs_unique_tokens(capsys, tmp_path):
    from scaling.laws import DataConstrainedLaw

    f = tmp_path / "dc.json"
    DataConstrainedLaw.muennighoff2023().save(f)
    code, _, err = run(capsys, "allocate", str(f), "--compute", "1e22")
    assert code == 2 and "--U" in err
    code, out, _ = run(capsys, "allocate", str(f), "--compute", "1e22", "--U", "25e9", "--json")
    assert json.loads(out)["N_opt"] == pytest.approx(7.0e9, rel=0.01)


@pytest.mark.parametrize("argv, msg", [
    (["fit", DATA, "--law", "chinchilla", "--momentum", "0.9"], "--momentum applies to curve laws"),
    (["fit", DATA, "--law", "chinchilla", "--curve-loss", "train_loss"], "--curve-loss applies to curve laws"),
    (["fit", DATA, "--law", "chinchilla", "--loss", "squared", "--delta", "0.01"], "loss='squared' has none"),
    (["fit", DATA, "--law", "auto", "--momentum", "0.9"], "--momentum belongs to one law"),
])
def test_settings_a_fit_would_ignore_are_refused(capsys, argv, msg):
    # each was accepted and silently had no effect
    code, _, err = run(capsys, *argv)
    assert code == 2 and msg in err


def test_predict_takes_two_of_N_D_C_and_refuses_three_that_disagree(capsys, fit_file):
    code, out, _ = run(capsys, "predict", str(fit_file), "--N", "7e10", "--D", "1.4e12", "--json")
    loss = json.loads(out)["loss"]
    code, out, _ = run(capsys, "predict", str(fit_file), "--N", "7e10", "--C", str(6 * 7e10 * 1.4e12), "--json")
    assert code == 0 and json.loads(out)["loss"] == pytest.approx(loss)
    code, _, err = run(capsys, "predict", str(fit_file), "--N", "7e10", "--D", "1.4e12", "--C", "1e20")
    assert code == 2 and "is not 6 N D" in err
    from scaling.errors import DataError
    from scaling.laws import ChinchillaLaw

    law = ChinchillaLaw.hoffmann2022()  # the same from Python: a keyword the law does not read is not ignored
    assert law.predict(N=7e10, C=6 * 7e10 * 1.4e12) == pytest.approx(law.predict(N=7e10, D=1.4e12))
    with pytest.raises(DataError, match="C is not 6 N D"):
        law.predict(N=7e10, D=1.4e12, C=1.0)
    with pytest.raises(DataError, match=r"does not use \['tokens'\]"):
        law.predict(N=7e10, D=1.4e12, tokens=1.0)


def test_predict_and_allocate_use_the_level_the_fit_was_made_at(capsys, tmp_path):
    path = tmp_path / "fit50.json"
    assert main(["fit", DATA, "--drop-highest-loss", "5", "--bootstrap", "100", "--level", "0.5",
                 "--out", str(path)]) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, "predict", str(path), "--N", "7e10", "--D", "1.4e12", "--json")
    p50 = json.loads(out)
    assert p50["level"] == 0.5
    code, out, _ = run(capsys, "predict", str(path), "--N", "7e10", "--D", "1.4e12", "--level", "0.9", "--json")
    p90 = json.loads(out)
    assert p90["level"] == 0.9 and p90["interval"][1] - p90["interval"][0] > 2 * (p50["interval"][1] - p50["interval"][0])
    code, out, _ = run(capsys, "allocate", str(path), "--compute", "1e24", "--json")
    assert json.loads(out)["level"] == 0.5
