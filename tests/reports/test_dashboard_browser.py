"""The dashboard in a real headless Chromium, served by a real `edgeshrink dashboard` process.

The browser is installed from Debian's packages when missing; if that fails the tests fail,
they never skip, since a dashboard nobody has clicked through is not tested.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import optuna
import pytest

from edgeshrink.search.runner import SearchOptions, run_search
from edgeshrink.search.study import create_or_resume_study, load_existing_study

pytestmark = pytest.mark.browser

SCREENSHOT = Path("/tmp/dashboard.png")
WAIT_S = 60


def _browser_paths() -> tuple[str | None, str | None]:
    return shutil.which("chromium"), shutil.which("chromedriver")


def _ensure_chromium() -> tuple[str, str]:
    """Chromium and its driver from apt (we run as root); pytest.fail with apt's words if not."""
    chromium, driver = _browser_paths()
    if chromium and driver:
        return chromium, driver
    if shutil.which("apt-get") is None:
        pytest.fail("chromium/chromedriver are missing and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "chromium", "chromium-driver"]
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    if result.returncode != 0:  # usually stale or absent package lists
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=900)
    chromium, driver = _browser_paths()
    if result.returncode != 0 or not (chromium and driver):
        pytest.fail(f"cannot install chromium and chromium-driver with apt-get "
                    f"(exit {result.returncode}): {(result.stderr or result.stdout)[-800:]}")
    return chromium, driver


@pytest.fixture(scope="session")
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = _ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1500,1900"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    yield driver
    driver.quit()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def _dashboard(study: str, run_dir: Path, export_dir: Path | None = None) -> Iterator[str]:
    """Run `edgeshrink dashboard` in its own process until the block ends; yield its URL."""
    port = _free_port()
    cmd = [sys.executable, "-m", "edgeshrink.search.cli", "dashboard", "--study", study,
           "--run-dir", str(run_dir), "--port", str(port), "--refresh", "0.5"]
    if export_dir is not None:
        cmd += ["--export-dir", str(export_dir)]
    log = run_dir.parent / f"dashboard-{port}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + WAIT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"dashboard exited with {proc.returncode}: {log.read_text()}")
            with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    break
            if time.monotonic() > deadline:
                pytest.fail(f"dashboard did not answer within {WAIT_S} s: {log.read_text()}")
            time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(browser, condition, what: str, timeout: float = WAIT_S):
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, timeout, poll_frequency=0.2).until(lambda d: condition(d))
    except TimeoutException:
        counts = browser.find_elements("id", "counts")
        pytest.fail(f"timed out waiting for {what}; counts: "
                    f"{counts[0].text if counts else 'no page'}")


def _text(browser, element_id: str) -> str:
    found = browser.find_elements("id", element_id)
    return found[0].text if found else ""


def _complete(browser) -> int:
    found = re.search(r"(\d+) complete", _text(browser, "counts"))
    return int(found.group(1)) if found else -1


def _points(browser) -> list:
    return browser.find_elements("css selector", "#front .scatterlayer path.point")


def _centre(element) -> tuple[float, float]:
    rect = element.rect
    return rect["x"] + rect["width"] / 2, rect["y"] + rect["height"] / 2


def _distance(a: tuple[float, float], b: tuple[float, float]) -> float:
    return abs(a[0] - b[0]) + abs(a[1] - b[1])


def _click_point(browser, point) -> int:
    """Click a marker as a person would (plotly listens on the layer above it)."""
    from selenium.webdriver.common.action_chains import ActionChains

    before = _text(browser, "details-title")
    ActionChains(browser).move_to_element(point).click().perform()
    title = _wait(browser, lambda d: (t := _text(d, "details-title")) and t != before and t,
                  "the details of the clicked point")
    return int(re.fullmatch(r"Trial (\d+)", title).group(1))


@pytest.fixture(scope="module")
def finished(tmp_path_factory, teacher_dir):
    run_dir = tmp_path_factory.mktemp("dash") / "run"
    shutil.copytree(teacher_dir, run_dir / "teacher")
    run_search(SearchOptions(study="dash", run_dir=run_dir, trials=3, seed=4, sampler="random",
                             epochs=1, finetune_epochs=0, progress=False))
    return run_dir


def test_front_details_compare_and_export_in_a_browser(browser, finished, tmp_path):
    import onnxruntime as ort

    study = load_existing_study("dash", finished, None)
    export_dir = tmp_path / "exports"
    with _dashboard("dash", finished, export_dir) as url:
        browser.get(url)
        _wait(browser, lambda d: _text(d, "counts").startswith("3 trials: 3 complete"),
              "the trial counts")
        _wait(browser, lambda d: len(_points(d)) == 3, "three points on the front plot")
        rows = _wait(browser, lambda d: d.find_elements("css selector",
                                                        "#trials-table td[data-dash-column=arch]"),
                     "the trials table")
        assert {r.text for r in rows} == {t.user_attrs["arch"] for t in study.trials}

        point = _points(browser)[0]
        clicked_at = _centre(point)
        first = _click_point(browser, point)
        trial = study.trials[first]
        assert _text(browser, "details-arch") == trial.user_attrs["arch"]
        details = _text(browser, "details")
        assert f"{trial.values[0]:.4g}" in details and f"{trial.user_attrs['macs']:,}" in details
        assert trial.params["precision"] in details
        assert browser.find_elements("css selector", "#confusion .heatmaplayer")

        # Two points side by side.
        browser.find_element("id", "compare-add").click()
        # The marker farthest from the first: the ring drawn around the selected point (which
        # ignores clicks) sits on the first one, and the axes may shift by a few pixels.
        second = _click_point(browser, max(_points(browser),
                                           key=lambda p: _distance(_centre(p), clicked_at)))
        assert second != first
        browser.find_element("id", "compare-add").click()
        table = _wait(browser, lambda d: _text(d, "compare-table"), "the comparison table")
        assert f"trial {first}" in table and f"trial {second}" in table
        browser.save_screenshot(str(SCREENSHOT))

        browser.find_element("id", "export-button").click()
        _wait(browser, lambda d: d.find_elements("id", "export-done")
              or d.find_elements("id", "export-error"), "the export to finish", timeout=120)
        assert not browser.find_elements("id", "export-error"), _text(browser, "export-status")
        out = export_dir / f"trial_{second}"
        assert _text(browser, "export-dir") == str(out)
        listed = _text(browser, "export-files").split()
        assert "model.onnx" in listed and all((out / f).is_file() for f in listed)
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape]
    logits = session.run(None, {session.get_inputs()[0].name: np.zeros(shape, np.float32)})[0]
    assert logits.shape == (1, 10)


def test_trials_appear_while_a_search_runs(browser, seeded_run_dir):
    create_or_resume_study("live", seeded_run_dir, None, optuna.samplers.RandomSampler())
    with _dashboard("live", seeded_run_dir) as url:
        browser.get(url)
        _wait(browser, lambda d: _text(d, "counts").startswith("0 trials"), "the empty study")
        assert "No completed trials yet" in browser.find_element("id", "front").text
        browser.execute_script("window.__same_page = true;")
        search = subprocess.Popen(
            [sys.executable, "-m", "edgeshrink.search.cli", "search", "--study", "live",
             "--run-dir", str(seeded_run_dir), "--trials", "2", "--epochs", "1",
             "--finetune-epochs", "0", "--sampler", "random", "--no-progress"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        ok = False
        try:
            _wait(browser, lambda d: _complete(d) >= 1 or search.poll() is not None,
                  "the first trial", timeout=120)
            seen_first_alone = _complete(browser) == 1
            _wait(browser, lambda d: _complete(d) == 2, "the second trial", timeout=120)
            ok = True
        finally:
            if not ok and search.poll() is None:
                search.terminate()  # the test already failed; do not leave the search running
            # Otherwise let the search finish (it still writes its report after the last trial).
            _, err = search.communicate(timeout=120)
        assert search.returncode == 0, err
        assert seen_first_alone  # the page showed the search midway, not only at the end
        assert len(_points(browser)) == 2
        assert browser.execute_script("return window.__same_page === true;")  # no reload
