"""The package as someone who installs it sees it (issue #11): the front door, shipped data
in a wheel, fitting without torch, and a CLI that tells bad input from a bug."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest

import scaling
from scaling.cli import BUG_REPORT, main
from scaling.errors import MissingExtraError, ScalingError, SettingsError, UnknownNameError

ROOT = Path(__file__).resolve().parent.parent
DATASETS = ("chinchilla_besiroglu2024.csv", "muennighoff2023_c4.csv")
MISSING_TRAIN = "error: this needs PyTorch and transformers: pip install 'scaling[train]'"


def _env():
    """The environment for a child Python that must not see this clone through PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return env


def _python(code: str, cwd, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------ the front door
def test_import_scaling_is_light_and_lazy(tmp_path):
    r = _python("""
        import sys, scaling
        heavy = [m for m in ("numpy", "pandas", "scipy", "torch", "transformers", "scaling.laws") if m in sys.modules]
        assert not heavy, heavy
        law = scaling.ChinchillaLaw                     # loads scaling.laws on first use
        assert "torch" not in sys.modules and "transformers" not in sys.modules
        print(scaling.__version__)
    """, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip()


def test_front_door_names():
    import scaling.laws

    for name in scaling.laws.__all__:
        assert getattr(scaling, name) is getattr(scaling.laws, name), name
    for name in ("fit", "load", "load_chinchilla", "get_law", "available_laws", "Law", "__version__"):
        assert name in dir(scaling) and hasattr(scaling, name), name
    assert isinstance(scaling.__version__, str) and scaling.__version__
    with pytest.raises(AttributeError):
        scaling.no_such_name


@pytest.mark.filterwarnings("ignore::scaling.errors.ScalingWarning")  # the fit's notes on these data
def test_fit_and_load(tmp_path):
    df = scaling.load_chinchilla(drop_highest_loss=5)
    law = scaling.fit(df, law="chinchilla", bootstrap=0, starts="coarse")
    ref = scaling.get_law("chinchilla")(bootstrap=0, starts="coarse").fit(df)
    assert isinstance(law, scaling.FitResult) and isinstance(law.law, scaling.ChinchillaLaw)
    assert law.params_ == pytest.approx(ref.params_, rel=1e-9)
    assert law.params_["alpha"] == pytest.approx(0.347, abs=0.01)
    # columns and row selection reach the law's fit
    renamed = df.rename(columns={"N": "params", "loss": "val_loss"})
    law2 = scaling.fit(renamed, columns="N=params,loss=val_loss", bootstrap=0, starts="coarse")
    assert law2.params_ == pytest.approx(law.params_, rel=1e-9)
    assert scaling.fit(df, bootstrap=0, starts="coarse", drop_highest_loss=5).n_points_ == len(df) - 5
    law.save(tmp_path / "fit.json")
    back = scaling.load(tmp_path / "fit.json")
    assert isinstance(back, scaling.FitResult) and type(back.law) is scaling.ChinchillaLaw
    assert back.predict(N=7e10, D=1.4e12) == pytest.approx(law.predict(N=7e10, D=1.4e12))


def test_unknown_law_is_a_clean_key_error():
    with pytest.raises(KeyError) as info:
        scaling.fit(scaling.load_chinchilla(), law="chinchila")
    assert isinstance(info.value, UnknownNameError) and isinstance(info.value, ScalingError)
    assert str(info.value).startswith("unknown law 'chinchila'; available: chinchilla,")


def test_settings_errors_are_still_value_errors():
    from scaling.counting import count_params

    with pytest.raises(ValueError) as info:
        count_params(2, 100, n_head=3)
    assert isinstance(info.value, SettingsError)


# ------------------------------------------------------------------ shipped data
def test_clone_paths_link_to_the_package_data():
    from scaling.data import DATA_DIR, SWEEPS_DIR, sweep_definition

    assert DATA_DIR == ROOT / "scaling" / "datasets" and SWEEPS_DIR == ROOT / "scaling" / "sweep_defs"
    for name in DATASETS:  # README commands use data/...
        assert (ROOT / "data" / name).resolve() == (DATA_DIR / name).resolve()
    assert (ROOT / "sweeps" / "ci.yaml").resolve() == (SWEEPS_DIR / "ci.yaml").resolve()
    assert sweep_definition("quickstart") == SWEEPS_DIR / "quickstart.yaml"
    with pytest.raises(ScalingError, match="quickstart"):
        sweep_definition("nope")


def test_wheel_ships_the_data_and_an_install_loads_it(tmp_path):
    pytest.importorskip("setuptools", reason="building the wheel offline needs setuptools (the test extra)")
    src = tmp_path / "src"  # build from a copy: the shared tree gets no build/ or egg-info churn
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "scaling", src / "scaling", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    wheels = tmp_path / "wheels"
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", ".", "--no-deps", "--no-build-isolation", "--no-index",
                        "-q", "-w", str(wheels)], cwd=src, env=_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    (wheel,) = wheels.glob("scaling-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in DATASETS:
        assert f"scaling/datasets/{name}" in names
    yamls = {p.name for p in (ROOT / "scaling" / "sweep_defs").glob("*.yaml")}
    assert "quickstart.yaml" in yamls
    for name in yamls:
        assert f"scaling/sweep_defs/{name}" in names
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    requires = [line for line in meta.splitlines() if line.startswith("Requires-Dist:")]
    assert not [line for line in requires if ("torch" in line or "transformers" in line) and "extra ==" not in line]
    assert any("torch" in line and 'extra == "train"' in line for line in requires)

    site = tmp_path / "site"
    r = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "-q", "--target", str(site),
                        str(wheel)], env=_env(), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr
    work = tmp_path / "elsewhere"  # not the clone: only the installed copy can be found
    work.mkdir()
    r = _python(f"""
        import sys
        sys.path.insert(0, {str(site)!r})
        import scaling
        assert scaling.__file__.startswith({str(site)!r}), scaling.__file__
        print(len(scaling.load_chinchilla()))
        from scaling.quickstart import SWEEP
        from scaling.sweep.spec import load_spec
        assert str(SWEEP).startswith({str(site)!r}) and load_spec(SWEEP)["name"] == "quickstart"
        from scaling.data import DATA_DIR, read_table
        assert len(read_table(DATA_DIR / "muennighoff2023_c4.csv")) > 0
        print(scaling.__version__)
    """, cwd=work)
    assert r.returncode == 0, r.stderr
    count, version = r.stdout.split()
    assert count == "245"
    assert version == "0.1.0" or version[0].isdigit()


# ------------------------------------------------------------------ without the train extra
def test_without_torch_training_says_what_to_install_and_fitting_works(tmp_path):
    data = ROOT / "data" / "chinchilla_besiroglu2024.csv"
    r = _python(f"""
        import io, json, sys, contextlib
        sys.modules["torch"] = None          # as if neither were installed
        sys.modules["transformers"] = None
        from scaling.cli import main

        def run(*argv):
            err, out = io.StringIO(), io.StringIO()
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
                code = main(list(argv))
            return code, out.getvalue(), err.getvalue()

        sweep = run("sweep", "run", {str(ROOT / "sweeps" / "ci.yaml")!r}, "--root", "sweeps-out")
        overopt = run("overopt", "run", {str(ROOT / "sweeps" / "overopt-ci.yaml")!r}, "--root", "overopt-out")
        fit = run("fit", {str(data)!r}, "--bootstrap", "0", "--json")
        from scaling.monitor import trainer_callback
        try:
            trainer_callback({{}})
            callback = "no error"
        except ImportError as exc:
            callback = type(exc).__name__ + ": " + str(exc)
        print(json.dumps({{"sweep": sweep, "overopt": overopt, "fit": [fit[0], json.loads(fit[1])["law"]],
                          "callback": callback}}))
    """, cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout.strip().splitlines()[-1])
    for key in ("sweep", "overopt"):
        code, _, err = d[key]
        assert code == 2 and err.strip() == MISSING_TRAIN, (key, err)
    assert d["fit"] == [0, "chinchilla"]
    assert d["callback"] == "MissingExtraError: " + MISSING_TRAIN.removeprefix("error: ")
    assert not (tmp_path / "sweeps-out").exists() and not (tmp_path / "overopt-out").exists()


def test_require_names_the_extra(monkeypatch):
    from scaling import _extras

    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(MissingExtraError) as info:
        _extras.require("torch", "transformers")
    assert isinstance(info.value, ImportError) and info.value.name == "torch"
    assert str(info.value) == MISSING_TRAIN.removeprefix("error: ")
    _extras.require("numpy")  # installed: nothing raised


# ------------------------------------------------------------------ CLI: bad input or a bug
def _patch_laws(monkeypatch, exc):
    import scaling.cli as cli

    def boom(args):
        raise exc

    monkeypatch.setattr(cli, "cmd_laws", boom)


def test_cli_own_errors_are_one_line(monkeypatch, capsys):
    _patch_laws(monkeypatch, SettingsError("level must be in (0, 1), got 2"))
    assert main(["laws"]) == 2
    assert capsys.readouterr().err == "error: level must be in (0, 1), got 2\n"


@pytest.mark.parametrize("exc", [ValueError("boom"), KeyError("boom"), NotImplementedError("boom"),
                                 TypeError("boom"), ZeroDivisionError("boom")])
def test_cli_other_exceptions_are_reported_as_bugs(monkeypatch, capsys, exc):
    _patch_laws(monkeypatch, exc)
    assert main(["laws"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and f"{type(exc).__name__}:" in err
    assert err.rstrip().endswith(BUG_REPORT)
    assert not err.startswith("error:")


def test_cli_missing_optional_module_outside_require(monkeypatch, capsys):
    exc = ModuleNotFoundError("No module named 'transformers'", name="transformers")
    _patch_laws(monkeypatch, exc)
    assert main(["laws"]) == 2
    assert capsys.readouterr().err == MISSING_TRAIN + "\n"
