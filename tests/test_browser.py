"""The explorer in a real browser: Voilà serves a notebook that calls `hnvl.explore.explore`, headless Chromium (driven by
Selenium) types a caption into the explorer's box, and the negatives and similarities the page shows change to the new
caption's. A screenshot is written (its path is printed; copied to `$HNVL_SCREENSHOT_DIR` when set).

Needs the OS packages `chromium` and `chromium-driver` and the `dev` extra's selenium, voila and ipykernel; skipped,
with the reason, when any is missing.
"""
import importlib.util, json, os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path('/usr/bin/chromium'), Path('/usr/bin/chromedriver')
REPO = Path(__file__).resolve().parent.parent
_MISSING = ([str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
            + [m for m in ('selenium', 'voila', 'ipykernel') if importlib.util.find_spec(m) is None])
pytestmark = pytest.mark.skipif(bool(_MISSING), reason=f"browser test needs {', '.join(_MISSING)} "
                                "(apt-get install chromium chromium-driver; pip install selenium voila ipykernel)")

TYPED = 'a large green cross above a small white circle'
SWAPPED = 'a small white circle above a large green cross'  # its relation negative (hnvl.negatives, recipe ceclip)

# The notebook Voilà runs: a fake demo folder (two untrained tiny CLIPs, θ logged for the fine-tuned one), then explore().
CELLS = ['''\
import json, tempfile, torch
from pathlib import Path
from hnvl.model import create_model, save_model
from hnvl.explore import explore
demo = Path(tempfile.mkdtemp()); run = demo/'runs'/'ce_clip'/'seed0'; run.mkdir(parents=True)
torch.manual_seed(0); save_model(create_model('tiny'), demo/'pretrained.pt')
torch.manual_seed(1); save_model(create_model('tiny'), run/'model.pt')
(run/'config.json').write_text(json.dumps(dict(model='hnvl-tiny', hard_negatives=True, cmr=True)))
(run/'metrics.jsonl').write_text(json.dumps(dict(step=1, theta_relation=0.5, theta_adjective=0.2, theta_noun=0.3, theta_verb=0.1)) + '\\n')
_ = (demo/'runs.json').write_text(json.dumps(dict(pretrained=str(demo/'pretrained.pt'))))''',
         'explore(demo, n_scenes=6)']

def _notebook(path):
    cells = [dict(cell_type='code', execution_count=None, metadata={}, outputs=[], source=c) for c in CELLS]
    nb = dict(cells=cells, metadata=dict(kernelspec=dict(display_name='python3', language='python', name='python3')), nbformat=4, nbformat_minor=5)
    path.write_text(json.dumps(nb, indent=1))
    return path

def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

def _wait_port(port, proc, log, timeout=120):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None: pytest.fail(f"voila exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(('127.0.0.1', port)) == 0: return
        time.sleep(0.3)
    pytest.fail(f"voila did not listen on port {port} within {timeout} s:\n{log.read_text()[-3000:]}")

def _stop(proc):
    "Stop the server we started, by its process id (its own process group: the server and what it spawned there)."
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(timeout=20)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(timeout=10)

def _kernels(runtime):
    "Process ids of the kernels whose connection files are in `runtime` (the ones our server started)."
    pids = []
    for p in Path('/proc').iterdir():
        if not p.name.isdigit(): continue
        try: cmd = (p/'cmdline').read_bytes().decode(errors='replace')
        except OSError: continue
        if str(runtime) in cmd and 'kernel' in cmd: pids.append(int(p.name))
    return pids

def test_explorer_in_browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait
    from selenium.common.exceptions import StaleElementReferenceException as Stale

    t0 = time.perf_counter()
    nb, port, log, runtime = _notebook(tmp_path/'explore_app.ipynb'), _free_port(), tmp_path/'voila.log', tmp_path/'runtime'
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO)] + [p for p in os.environ.get('PYTHONPATH', '').split(os.pathsep) if p]),
               HNVL_CACHE=str(tmp_path/'cache'), JUPYTER_RUNTIME_DIR=str(runtime), JUPYTER_PLATFORM_DIRS='1', MPLBACKEND='Agg')
    with open(log, 'w') as f:
        proc = subprocess.Popen([sys.executable, '-m', 'voila', str(nb), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1'],
                                stdout=f, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True)
    driver = None
    try:
        _wait_port(port, proc, log)
        opts = Options(); opts.binary_location = str(CHROMIUM)
        for a in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage', '--window-size=1100,1000'): opts.add_argument(a)
        driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)
        driver.get(f'http://127.0.0.1:{port}/')
        # the kernel imports torch and open_clip and builds two models first; the view's HTML is replaced on every
        # update, so an element found a moment ago may be gone: waits ignore that, and reads retry
        wait = WebDriverWait(driver, 240, ignored_exceptions=(Stale,))
        css = lambda sel: driver.find_elements(By.CSS_SELECTOR, sel)
        def read(fn, tries=100):
            for _ in range(tries):
                try: return fn()
                except Stale: time.sleep(0.1)
            return fn()
        sims = lambda: read(lambda: [e.text for e in css('.hnvl-sim')])
        try: wait.until(lambda d: css('input[type=text]') and css('.hnvl-sim[data-kind=pos]'))
        except Exception: pytest.fail(f"the explorer did not render:\n{driver.find_element(By.TAG_NAME, 'body').text[-2000:]}\n"
                                      f"voila log:\n{log.read_text()[-3000:]}")
        rendered = time.perf_counter() - t0
        box, before = css('input[type=text]')[0], sims()
        assert box.get_attribute('value') == read(lambda: css('.hnvl-caption')[0].text) != TYPED
        assert read(lambda: {e.get_attribute('data-model') for e in css('.hnvl-model')}) == {'clip', 'ce_clip'}
        box.send_keys(Keys.CONTROL, 'a'); box.send_keys(TYPED)  # select all, type over it: one update per keystroke
        WebDriverWait(driver, 60, ignored_exceptions=(Stale,)).until(lambda d: css('.hnvl-caption')[0].text == TYPED)
        relation = read(lambda: css('.hnvl-neg[data-type=relation]')[0].text)
        assert SWAPPED in relation, relation
        after = sims()
        assert len(after) == len(before) and after != before, (before, after)
        marks = read(lambda: [e.text for e in css('.hnvl-neg[data-type=relation] mark')])
        assert marks == ['small', 'white', 'circle', 'large', 'green', 'cross']
        shot = tmp_path/'explore_browser.png'
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000
        if os.environ.get('HNVL_SCREENSHOT_DIR'):
            d = Path(os.environ['HNVL_SCREENSHOT_DIR']); d.mkdir(parents=True, exist_ok=True); shutil.copy(shot, d/shot.name)
        print(f"\nscreenshot: {shot}; rendered after {rendered:.1f} s, test took {time.perf_counter() - t0:.1f} s")
    finally:
        if driver is not None: driver.quit()
        _stop(proc)
        for pid in _kernels(runtime):  # a kernel the server left running
            try: os.kill(pid, signal.SIGKILL)
            except ProcessLookupError: pass
