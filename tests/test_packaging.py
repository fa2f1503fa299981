"""Packaging: build the wheel from a copy of the repository, install it into a fresh virtual environment and run code
from a directory outside the repository: the README's library example, and a check that the packaged model config
(package data) ships and works.

The fresh environment reuses the dependencies (torch, open_clip, ...) of the interpreter running the tests, whatever
that interpreter is (system Python, pyenv, conda, or a virtual environment): it is created *without*
--system-site-packages (which would reach the base interpreter's site-packages, not the active environment's), and a
`.pth` file in its own site-packages lists the running interpreter's site directories, after its own. Neither the
checkout, the working directory nor PYTHONPATH is listed, and `.pth` files inside the listed directories are not
processed, so an editable install of hnvl in the running environment does not leak into the fresh one."""
import configparser, json, os, re, shutil, subprocess, sys, zipfile
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
    _run([sys.executable, "-m", "venv", "--without-pip", venv], cwd=root)
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    # install the wheel before the host's site dirs become visible, so pip sees an empty environment
    _run([sys.executable, "-m", "pip", "--python", py, "install", "--no-deps", "--no-index", wheels[0]], cwd=root)
    run = root / "elsewhere"; run.mkdir()
    own = json.loads(_run([py, "-c", _PROBE_PATHS], cwd=run).stdout)
    assert own["sitepackages"], own
    dirs = [d for d in host_site_dirs() if d not in own["path"]]
    assert dirs, "the running interpreter has no site directories to reuse"
    (Path(own["sitepackages"][0]) / "_hnvl_packaging_check_host.pth").write_text("".join(f"{d}\n" for d in dirs), encoding="utf-8")
    return wheels[0], py, run, readme


_PROBE_PATHS = ("import json, os, site, sys\n"
                "print(json.dumps({'path': [os.path.realpath(p) for p in sys.path if p],\n"
                "                  'sitepackages': getattr(site, 'getsitepackages', lambda: [])()}))")


def host_site_dirs():
    """The running interpreter's site directories, in sys.path order, as real paths: its site-packages (system, pyenv,
    conda, or a virtual environment and, through --system-site-packages, its base), the user site if enabled, and what
    `.pth` files added; never the checkout, the working directory or a PYTHONPATH entry."""
    import site
    def real(p): return os.path.realpath(p)
    # what the interpreter has without site and PYTHONPATH (the standard library) is the clean environment's too
    bare = subprocess.run([sys.executable, "-I", "-S", "-c", "import json, sys; print(json.dumps(sys.path))"],
                          capture_output=True, text=True, check=True).stdout
    skip = {real(p) for p in json.loads(bare) if p}
    skip |= {real(p) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p} | {real(os.getcwd())}
    found = list(sys.path) + list(getattr(site, "getsitepackages", lambda: [])())
    if site.ENABLE_USER_SITE: found.append(site.getusersitepackages())
    out = []
    for p in found:
        if not p or not os.path.isdir(p): continue
        d = real(p)
        if d in out or d in skip or Path(d).is_relative_to(REPO.resolve()): continue
        out.append(d)
    return out


def _requirement_names(key):
    cfg = configparser.ConfigParser(); cfg.read(REPO / "settings.ini")
    return [re.match(r"[A-Za-z0-9._-]+", r).group(0) for r in cfg["DEFAULT"][key].split()]


def test_host_site_dirs_exclude_checkout_and_pythonpath(monkeypatch, tmp_path):
    "The directories handed to the clean environment leave out the checkout, the working directory and PYTHONPATH."
    extra = tmp_path / "on_pythonpath"; extra.mkdir()
    monkeypatch.setenv("PYTHONPATH", str(extra))
    monkeypatch.setattr(sys, "path", [str(REPO), str(REPO / "tests"), str(extra), ""] + sys.path)
    dirs = host_site_dirs()
    assert dirs and all(os.path.isabs(d) and os.path.isdir(d) for d in dirs), dirs
    assert not any(Path(d).is_relative_to(REPO.resolve()) for d in dirs), dirs
    assert os.path.realpath(extra) not in dirs and os.path.realpath(os.getcwd()) not in dirs
    import sysconfig
    assert os.path.realpath(sysconfig.get_path("stdlib")) not in dirs, dirs
    import torch
    assert any(Path(os.path.realpath(torch.__file__)).is_relative_to(d) for d in dirs), (torch.__file__, dirs)


def test_clean_venv_sees_dependencies_not_checkout(installed):
    "The fresh environment has no --system-site-packages, sees every runtime requirement, and nothing of the checkout."
    _, py, run, _ = installed
    venv = py.parent.parent
    cfg = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    assert re.search(r"^include-system-site-packages\s*=\s*false\s*$", cfg, flags=re.M), cfg
    names = _requirement_names("requirements")
    assert {"torch", "open_clip_torch", "fastcore"} <= set(names), names
    modules = ["torch", "torchvision", "open_clip", "fastcore", "numpy", "PIL", "tqdm", "matplotlib", "seaborn", "safetensors"]
    code = ("import importlib, importlib.metadata as md, json, os, sys\n"
            f"names, modules = {names!r}, {modules!r}\n"
            "missing, broken = [], []\n"
            "for n in names:\n"
            "    try: md.version(n)\n"
            "    except md.PackageNotFoundError: missing.append(n)\n"
            "for m in modules:\n"
            "    try: importlib.import_module(m)\n"
            "    except ImportError as e: broken.append(f'{m}: {e}')\n"
            "import hnvl\n"
            "print(json.dumps({'missing': missing, 'broken': broken, 'path': [os.path.realpath(p) for p in sys.path if p],\n"
            "                  'hnvl': os.path.realpath(hnvl.__file__), 'hnvl_dist': str(md.distribution('hnvl').locate_file(''))}))\n")
    got = json.loads(_run([py, "-c", code], cwd=run).stdout.strip().splitlines()[-1])
    assert not got["missing"], f"requirements not visible in the clean environment: {got['missing']}"
    assert not got["broken"], f"dependencies that do not import in the clean environment: {got['broken']}"
    assert Path(got["hnvl"]).is_relative_to(venv.resolve()) and not Path(got["hnvl"]).is_relative_to(REPO), got["hnvl"]
    assert Path(got["hnvl_dist"]).resolve().is_relative_to(venv.resolve()), got["hnvl_dist"]
    assert not [p for p in got["path"] if Path(p).is_relative_to(REPO.resolve())], got["path"]


def test_wheel_ships_modules_and_package_data(installed):
    whl = installed[0]
    names = set(zipfile.ZipFile(whl).namelist())
    assert "hnvl/assets/hnvl-tiny.json" in names
    for f in ("hnvl-tiny-relations.pt", "hnvl-tiny-relations.json"):   # the demo's shipped pretrained tiny CLIP
        assert f"hnvl/assets/pretrained/{f}" in names, f"{f} missing from the wheel"
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


def test_installed_wheel_finds_shipped_pretrained(installed):
    "The demo starts from the shipped tiny CLIP in an installed wheel too (no pretraining, no checkout)."
    _, py, run, _ = installed
    code = ("from hnvl.demo import DemoConfig, pretrain_config, shipped_pretrained\n"
            "print(shipped_pretrained(pretrain_config(DemoConfig())))\n")
    where = _run([py, "-c", code], cwd=run).stdout.strip().splitlines()[-1]
    assert where.endswith("hnvl-tiny-relations.pt"), where
    assert Path(where).resolve().is_relative_to(py.parent.parent.resolve()) and not Path(where).resolve().is_relative_to(REPO)


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
    assert set(names) == {"hnvl_negatives", "hnvl_train", "hnvl_demo", "hnvl_eval", "hnvl_image_cache", "hnvl_reproduce",
                          "hnvl_context"}, names
    bindir = py.parent
    own_option = {"hnvl_negatives": "--recipe", "hnvl_train": "--preset", "hnvl_demo": "--quick", "hnvl_eval": "--benchmarks",
                  "hnvl_image_cache": "--overwrite", "hnvl_reproduce": "--coco_ann", "hnvl_context": "--quiet"}
    for n in names:
        help_ = _run([bindir / n, "--help"], cwd=run).stdout
        assert "usage:" in help_ and own_option[n] in help_, (n, help_[:300])  # the help of the function the script runs
    r = _run([bindir / "hnvl_train", "--preset", "tiny", "--out", run / "tiny", "--steps", "2", "--set", "progress=false"], cwd=run)
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["step"] == 2 and (run / "tiny" / "model.pt").exists(), last
    assert r.stderr.count("'checkpoint'") == 0, "the result dict was printed by sys.exit"
