"""Notebooks 02 and 04 as a person sees them: JupyterLab from this venv, driven by Debian's Chromium.

Run All with the smoke parameters, then: no error output, the explorer renders as controls, changing its
preset in the browser changes its picture, no "Show more outputs" anywhere; then Save, shut the kernel
down, reopen: no "Error displaying widget", and the pictures are still there.

Needs ``chromium`` and ``chromium-driver`` (apt; ``.ci/run`` installs them) and selenium (the dev extra).
Marked ``browser``: ``pytest -m "not browser"`` leaves it out. Screenshots go to ``$MMKIT_BROWSER_SHOTS``
when it is set (else the test's tmp folder). The server and the browser it starts are stopped by PID.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest

from mmkit.run import NOTEBOOKS, smoke_parameters

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1400,1000",
)  # fmt: skip
MAX_SECONDS = 180


def _need_tools() -> None:
    missing = [n for n, p in (("chromium", CHROMIUM), ("chromedriver", DRIVER)) if p is None]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("selenium (pip install -e '.[dev]')")
    if missing:
        message = f"browser test needs {', '.join(missing)}: apt-get install -y chromium chromium-driver"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI installs them (.ci/run): their absence is a broken setup, not a skip
        pytest.skip(message)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _stop(proc: subprocess.Popen, timeout: float = 15) -> None:
    """SIGTERM (the server shuts its kernels down), then SIGKILL; by PID, and only our own process."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


class Lab:
    """A JupyterLab server on 127.0.0.1 over ``root``, with its settings and workspaces kept in ``home``."""

    def __init__(self, root: Path, home: Path):
        self.port, self.token = _free_port(), "mmkit-browser-test"
        env = dict(os.environ)
        env.update(
            JUPYTER_CONFIG_DIR=str(home / "config"),
            JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
            JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
            JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        )
        news = home / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
        news.parent.mkdir(parents=True, exist_ok=True)
        news.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
        # Every cell in the DOM (no windowing), so the page's text is the whole notebook's.
        tracker = home / "settings" / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings"
        tracker.parent.mkdir(parents=True, exist_ok=True)
        tracker.write_text(json.dumps({"windowingMode": "none"}))
        self.log = open(home / "lab.log", "w")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={self.port}",
             f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={root}",
             "--ServerApp.open_browser=False", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
             "--LabApp.extension_manager=readonly"] + (["--allow-root"] if os.geteuid() == 0 else []),
            env=env, stdout=self.log, stderr=subprocess.STDOUT, cwd=root,
        )  # fmt: skip
        deadline = time.time() + 60
        while True:
            try:
                self.api("GET", "status")
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    log = (home / "lab.log").read_text()[-2000:]
                    raise RuntimeError(f"JupyterLab did not start: {log}") from None
                time.sleep(0.5)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path}?token={self.token}"

    def api(self, method: str, path: str, payload: dict | None = None):
        data = json.dumps(payload).encode() if payload is not None else None
        req = urllib.request.Request(self.url(f"api/{path}"), data=data, method=method)
        req.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(req, timeout=30) as r:
            body = r.read()
        return json.loads(body) if body else None

    def start_kernel(self, name: str) -> None:
        """The notebook's session and python3 kernel, made before the page opens it (as a person's
        earlier visit would have): the page then never asks which kernel to start."""
        self.api(
            "POST",
            "sessions",
            {"path": name, "name": name, "type": "notebook", "kernel": {"name": "python3"}},
        )

    def shutdown_kernels(self) -> None:
        for session in self.api("GET", "sessions"):
            self.api("DELETE", f"sessions/{session['id']}")
        for kernel in self.api("GET", "kernels"):
            self.api("DELETE", f"kernels/{kernel['id']}")

    def stop(self) -> None:
        try:
            self.shutdown_kernels()
        except OSError:
            pass
        _stop(self.proc)
        self.log.close()


@pytest.fixture
def lab(tmp_path):
    _need_tools()
    overrides = Path(sys.prefix) / "share" / "jupyter" / "lab" / "settings" / "overrides.json"
    assert overrides.exists() and '"saveState": true' in overrides.read_text(), (
        f"{overrides} must turn on widget state saving: `make env` installs jupyter/overrides.json there"
    )
    (tmp_path / "work").mkdir()
    server = Lab(tmp_path / "work", tmp_path / "home")
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def browser(lab):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={Path(lab.log.name).parent / 'chromium-profile'}")
    service = Service(DRIVER)
    driver = webdriver.Chrome(service=service, options=options)
    try:
        yield driver
    finally:
        pid = service.process.pid if service.process else None
        driver.quit()  # closes Chromium and stops chromedriver
        if pid is not None and service.process.poll() is None:
            os.kill(pid, signal.SIGKILL)


def _prepare(name: str, work: Path, params: dict) -> Path:
    """A copy of ``notebooks/<name>`` in ``work`` with the smoke parameters injected (as papermill does)."""
    from papermill.iorw import load_notebook_node
    from papermill.parameterize import parameterize_notebook

    nb = load_notebook_node(str(NOTEBOOKS / name))  # as papermill reads it (every cell gets its tags list)
    nb = parameterize_notebook(nb, {**smoke_parameters(NOTEBOOKS / name), **params})
    path = work / name
    nbformat.write(nb, path)
    return path


def _text(driver) -> str:
    return driver.execute_script("return document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)')"
                                 " ? document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)').textContent"
                                 " : document.body.textContent")  # fmt: skip


def _wait(what: str, condition, timeout: float, driver, shots: Path):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.5)
    driver.save_screenshot(str(shots / f"timeout-{what}.png"))
    raise AssertionError(f"timed out waiting for {what}")


def _prompts(driver) -> list[str]:
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('.jp-CodeCell .jp-InputPrompt')).map(e => e.textContent)"
    )


def _menu(driver, menu: str, item: str) -> None:
    from selenium.webdriver.common.by import By

    driver.find_element(By.XPATH, f"//li[contains(@class,'lm-MenuBar-item')][.//*[text()='{menu}']]").click()
    driver.find_element(By.XPATH, f"//li[contains(@class,'lm-Menu-item')][.//*[text()='{item}']]").click()


def _accept_kernel_dialog(driver) -> bool:
    """Press "Select" when JupyterLab asks for a kernel anyway (it may, when its kernel list is late)."""
    from selenium.webdriver.common.by import By

    for button in driver.find_elements(By.CSS_SELECTOR, ".jp-Dialog .jp-mod-accept"):
        button.click()
    return True


def _open(driver, lab: Lab, name: str, shots: Path) -> None:
    lab.start_kernel(name)
    driver.get(lab.url(f"lab/tree/{name}"))
    _wait(f"{name} open", lambda: len(_prompts(driver)) > 0, 60, driver, shots)
    time.sleep(1.0)
    _accept_kernel_dialog(driver)
    _wait(f"{name} kernel", lambda: "Idle" in driver.execute_script("return document.body.textContent"), 60,
          driver, shots)  # fmt: skip


def _run_all(driver, lab: Lab, name: str, shots: Path, timeout: float) -> None:
    _open(driver, lab, name, shots)

    def started() -> bool:
        return any(p.strip().strip(":").strip("[]") for p in _prompts(driver))  # "[*]" or "[1]", not "[ ]"

    for _ in range(3):  # "Run All Cells" is greyed out until the page has the notebook's kernel: retry
        _menu(driver, "Run", "Run All Cells")
        deadline = time.time() + 15
        while time.time() < deadline and not started():
            time.sleep(0.5)
        if started():
            break
        driver.find_element("tag name", "body").send_keys("\ue00c")  # Escape: close a menu left open

    def done() -> bool:
        _accept_kernel_dialog(driver)
        prompts = _prompts(driver)
        return bool(prompts) and all(p.strip().strip(":").strip("[]").isdigit() for p in prompts)

    _wait(f"{name} run all", done, timeout, driver, shots)
    time.sleep(1.0)  # the last display updates


def _save_and_reopen(driver, lab: Lab, name: str, path: Path, shots: Path) -> dict:
    before = path.stat().st_mtime_ns
    _menu(driver, "File", "Save Notebook")
    _wait(f"{name} saved", lambda: path.stat().st_mtime_ns != before, 30, driver, shots)
    time.sleep(1.0)
    lab.shutdown_kernels()
    time.sleep(1.0)
    _open(driver, lab, name, shots)
    _wait(f"{name} outputs back", lambda: driver.execute_script(
        "return document.querySelectorAll('.jp-OutputArea-output img').length") > 0, 60, driver, shots)  # fmt: skip
    time.sleep(3.0)  # the widget manager restores the saved widget state
    return json.loads(path.read_text())


def _assert_reads_well(driver, name: str, shots: Path, stage: str) -> None:
    driver.save_screenshot(str(shots / f"{Path(name).stem}-{stage}.png"))
    text = _text(driver)
    assert "Show more outputs" not in text, f"{name} ({stage}): outputs hidden behind 'Show more outputs'"
    assert "Error displaying widget" not in text, f"{name} ({stage}): a widget cannot be displayed"
    assert "Traceback" not in text, f"{name} ({stage}): an error output"
    errors = driver.execute_script(
        "return document.querySelectorAll('.jp-OutputArea-output[data-mime-type=\"application/vnd.jupyter.stderr\"]')"
        ".length"
    )
    if errors:  # stderr is allowed for warnings, never for an exception's output
        stderr = driver.execute_script(
            "return Array.from(document.querySelectorAll('.jp-OutputArea-output[data-mime-type="
            "\"application/vnd.jupyter.stderr\"]')).map(e => e.textContent).join('\\n')"
        )
        assert "Error" not in stderr, f"{name} ({stage}): {stderr[:500]}"


def test_notebooks_02_and_04_in_jupyterlab(lab, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    start = time.time()
    shots = Path(os.environ.get("MMKIT_BROWSER_SHOTS") or tmp_path / "shots")
    shots.mkdir(parents=True, exist_ok=True)
    work = tmp_path / "work"
    data = str(tmp_path / "food")
    nb02 = _prepare("02_augmentations.ipynb", work, {"data_root": data, "out_dir": str(tmp_path / "o02")})
    nb04 = _prepare("04_multimodal_fusion.ipynb", work, {
        "data_root": data, "out_dir": str(tmp_path / "o04"), "bank_dir": str(tmp_path / "bank")})  # fmt: skip

    # --- 02: run all; the explorer is real controls, and choosing another preset redraws its picture
    _run_all(browser, lab, nb02.name, shots, timeout=120)
    _assert_reads_well(browser, nb02.name, shots, "run")
    dropdown = browser.find_element(By.CSS_SELECTOR, ".widget-dropdown select")
    cell = dropdown.find_element(By.XPATH, "./ancestor::div[contains(@class,'jp-CodeCell')]")
    picture = lambda: cell.find_element(By.CSS_SELECTOR, ".jp-OutputArea-output img").get_attribute("src")  # noqa: E731
    assert len(cell.find_elements(By.CSS_SELECTOR, ".widget-slider")) >= 3  # the preset's strength sliders
    first = picture()
    browser.execute_script("arguments[0].scrollIntoView()", cell)
    Select(dropdown).select_by_visible_text("ultrasound")
    _wait("the explorer's redraw", lambda: picture() != first, 30, browser, shots)
    assert "gamma" in cell.text  # the ultrasound preset's sliders replaced the seed's
    browser.execute_script("arguments[0].scrollIntoView()", cell)
    browser.save_screenshot(str(shots / "02-explorer-ultrasound.png"))
    saved = _save_and_reopen(browser, lab, nb02.name, nb02, shots)
    assert "widgets" in saved["metadata"], "JupyterLab did not save the widget state (saveState setting)"
    _assert_reads_well(browser, nb02.name, shots, "reopened")
    assert browser.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"), (
        "the explorer's controls are gone"
    )
    pictures = [o for c in saved["cells"] for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(pictures) >= 4  # batch, copies, presets and the explorer's last picture
    again = browser.find_element(By.CSS_SELECTOR, ".widget-dropdown select")
    assert Select(again).first_selected_option.text == "ultrasound"  # the state it was saved in
    browser.execute_script(
        "arguments[0].scrollIntoView()",
        again.find_element(By.XPATH, "./ancestor::div[contains(@class,'jp-CodeCell')]"),
    )
    time.sleep(0.5)
    browser.save_screenshot(str(shots / "02-explorer-reopened.png"))

    # --- 04: run all; the results table is in view without "Show more outputs"; reopened, no widget errors
    _run_all(browser, lab, nb04.name, shots, timeout=300)  # a wait bound: a loaded CI machine is slow
    _assert_reads_well(browser, nb04.name, shots, "run")
    tables = browser.find_elements(By.CSS_SELECTOR, ".jp-OutputArea-output table.dataframe")
    assert len(tables) >= 2  # the results table and the missing-modality table
    browser.execute_script("arguments[0].scrollIntoView()", tables[0])
    browser.save_screenshot(str(shots / "04-results.png"))
    _save_and_reopen(browser, lab, nb04.name, nb04, shots)
    _assert_reads_well(browser, nb04.name, shots, "reopened")
    assert time.time() - start < MAX_SECONDS, f"the browser test took {time.time() - start:.0f} s"
