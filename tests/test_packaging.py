"""Packaging: build the wheel from a copy of the repository, install it into a fresh virtual environment (reusing the
installed torch/open_clip through --system-site-packages) and run code from a directory outside the repository:
the README's library example, and a check that the packaged model config (package data) ships and works."""
import configparser, os, re, shutil, subprocess, sys, zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEADING = "## Library example"
MARK = "HNVL_PACKAGING_CHECK"

def readme_example(text):
    "The ```python block that follows the '## Library example' heading, or None."
    m = re.search(r"^## Library example[ \t]*\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    if not m: return None
    b = re.search(r"^```python[ \t]*\n(.*?)^```", m.group(1), flags=re.M | re.S)
    return b.group(1) if b else None


def test_readme_has_library_example():
    "The README's '## Library example' section holds a ```python block (the packaging check runs it)."
    assert readme_example((REPO / "README.md").read_text(encoding="utf-8")) is not None, f"README.md lost its {HEADING!r} python block"


def _run(cmd, cwd, timeout=300):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP")}
    env.update(PIP_NO_INDEX="1", PIP_DISABLE_PIP_VERSION_CHECK="1", PYTHONNOUSERSITE="1",
               HNVL_CACHE=str(Path(cwd) / ".hnvl-cache"), HF_HUB_OFFLINE="1")
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    "Build the wheel from a copy of the repo and install it into a fresh venv; return (wheel, venv python, run dir, readme)."
    root = tmp_path_factory.mktemp("pkg")
    src = root / "src"; src.mkdir()
    for f in ("setup.py", "settings.ini", "README.md", "MANIFEST.in", "LICENSE", "pyproject.toml"):
        if (REPO / f).exists(): shutil.copy2(REPO / f, src / f)
    shutil.copytree(REPO / "hnvl", src / "hnvl", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    readme = (src / "README.md").read_text(encoding="utf-8")
    dist = root / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-w", dist, src], cwd=root)
    wheels = list(dist.glob("hnvl-*.whl"))
    assert len(wheels) == 1, wheels
    venv = root / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", venv], cwd=root)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheels[0]], cwd=root)
    run = root / "elsewhere"; run.mkdir()
    return wheels[0], py, run, readme


def test_wheel_ships_modules_and_package_data(installed):
    whl = installed[0]
    names = set(zipfile.ZipFile(whl).namelist())
    assert "hnvl/assets/hnvl-tiny.json" in names
    for f in list((REPO / "hnvl").glob("*.py")) + list((REPO / "hnvl" / "assets").glob("*.json")) + list((REPO / "hnvl" / "assets").glob("*.txt")):
        assert f"hnvl/{f.relative_to(REPO / 'hnvl').as_posix()}" in names, f"{f.name} missing from the wheel"
    version = configparser.ConfigParser(); version.read(REPO / "settings.ini")
    assert whl.name.startswith(f"hnvl-{version['DEFAULT']['version']}-")


def test_installed_wheel_builds_tiny_model_outside_repo(installed):
    _, py, run, _ = installed
    code = ("import hnvl, open_clip\nfrom hnvl.model import create_model, TINY\n"
            "b = create_model('tiny')\n"
            "print(TINY in open_clip.list_models(), b.image_size, b.context_length, b.n_params)\n"
            f"print('{MARK}', hnvl.__file__)\n")
    out = _run([py, "-c", code], cwd=run).stdout
    assert f"True 32 16 " in out
    where = Path(out.split(MARK, 1)[1].strip()).resolve()
    assert where.is_relative_to(py.parent.parent.resolve()), f"hnvl imported from {where}, not from the venv"
    assert not where.is_relative_to(REPO)


def test_readme_library_example_runs_from_installed_wheel(installed):
    _, py, run, readme = installed
    example = readme_example(readme)
    assert example and example.strip()
    modules = set(re.findall(r"^\s*(?:from|import)\s+hnvl\.(\w+)", example, flags=re.M))
    assert modules and all((REPO / "hnvl" / f"{m}.py").exists() for m in modules), modules
    script = run / "readme_example.py"
    script.write_text(example + f"\nimport hnvl\nprint('{MARK}', hnvl.__file__)\n", encoding="utf-8")
    out = _run([py, script], cwd=run).stdout
    printed, _, where = out.partition(MARK)
    assert printed.strip(), "the README example printed nothing"
    where = Path(where.strip()).resolve()
    assert where.is_relative_to(py.parent.parent.resolve()) and not where.is_relative_to(REPO), where


def test_console_scripts_exit_zero(installed):
    "Every console script in settings.ini is installed; `hnvl_train` runs a tiny job from the shell and exits 0 (a returned dict must not reach sys.exit)."
    _, py, run, _ = installed
    cfg = configparser.ConfigParser(); cfg.read(REPO / "settings.ini")
    names = [s.split("=")[0].strip() for s in cfg["DEFAULT"]["console_scripts"].split("\n") if s.strip()]
    assert set(names) == {"hnvl_negatives", "hnvl_train", "hnvl_demo", "hnvl_eval"}, names
    bindir = py.parent
    own_option = {"hnvl_negatives": "--recipe", "hnvl_train": "--preset", "hnvl_demo": "--quick", "hnvl_eval": "--benchmarks"}
    for n in names:
        help_ = _run([bindir / n, "--help"], cwd=run).stdout
        assert "usage:" in help_ and own_option[n] in help_, (n, help_[:300])  # the help of the function the script runs
    r = _run([bindir / "hnvl_train", "--preset", "tiny", "--out", run / "tiny", "--steps", "2", "--set", "progress=false"], cwd=run)
    import json
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["step"] == 2 and (run / "tiny" / "model.pt").exists(), last
    assert r.stderr.count("'checkpoint'") == 0, "the result dict was printed by sys.exit"
