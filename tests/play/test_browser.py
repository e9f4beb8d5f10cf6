"""End to end in a real headless browser: load the page, click 10 times, frames change, the console stays clean.

Needs Debian's chromium and chromium-driver (`apt-get install -y chromium chromium-driver`) and
selenium; skipped with the reason where they are absent. Selenium is given the system chromedriver,
so nothing is downloaded. `IVIDEOGPT_PLAY_SCREENSHOT=docs/media/play.png` also saves the screenshot there.
"""

from __future__ import annotations

import os
import random
import shutil
import socket
import threading
import time
from pathlib import Path

import pytest

from ivideogpt.play.engine import PlayEngine

CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
CHROMIUM = next((path for name in ("chromium", "chromium-browser") if (path := shutil.which(name))), None)


def browser_missing() -> str | None:
    """Why the browser test cannot run here, or None."""
    for module in ("selenium", "fastapi", "uvicorn", "gym_pusht"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} is not installed (pip install -e '.[sim,dev,play]')"
    if not Path(CHROMEDRIVER).is_file() or CHROMIUM is None:
        return "chromium and chromedriver are not installed (apt-get install -y chromium chromium-driver)"
    return None


pytestmark = pytest.mark.skipif(browser_missing() is not None, reason=browser_missing() or "")


@pytest.fixture
def server(pusht_engine: PlayEngine):
    """The play app served by uvicorn on a free local port, in a thread; yields its address."""
    import uvicorn

    from ivideogpt.play.app import create_app

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uvicorn_server = uvicorn.Server(uvicorn.Config(create_app(pusht_engine), host="127.0.0.1", port=port,
                                                   log_level="warning"))
    thread = threading.Thread(target=uvicorn_server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not uvicorn_server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert uvicorn_server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{port}/"
    uvicorn_server.should_exit = True
    thread.join(10)


@pytest.fixture
def browser(monkeypatch: pytest.MonkeyPatch):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    monkeypatch.setenv("SE_OFFLINE", "true")  # selenium-manager never goes online
    options = webdriver.ChromeOptions()
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1120,1000"):
        options.add_argument(flag)
    options.binary_location = CHROMIUM
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "the page did not get there in time"
        time.sleep(0.05)


def test_ten_clicks_move_the_pusher_and_the_console_stays_clean(server: str, browser, pusht_engine: PlayEngine,
                                                                  tmp_path: Path) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    browser.get(server)
    dream, count = browser.find_element(By.ID, "dream"), browser.find_element(By.ID, "step-count")
    wait_for(lambda: (dream.get_attribute("src") or "").startswith("data:image/png"))
    frames = [dream.get_attribute("src")]
    spots = random.Random(0)
    for i in range(10):
        x, y = spots.randint(-170, 170), spots.randint(-170, 170)  # offsets from the centre of the 384 px screen
        ActionChains(browser).move_to_element_with_offset(dream, x, y).click().perform()
        wait_for(lambda: count.text == f"step {i + 1}")
        frames.append(dream.get_attribute("src"))
    assert len(set(frames)) >= 5, "the predicted frames did not change with the clicks"
    assert browser.find_element(By.ID, "real-frame").get_attribute("src").startswith("data:image/png")
    assert "click → frame" in browser.find_element(By.ID, "latency").text
    assert browser.find_element(By.ID, "status").text == ""
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, errors
    shot = tmp_path / "play.png"
    browser.save_screenshot(str(shot))
    assert shot.stat().st_size > 10_000
    if os.environ.get("IVIDEOGPT_PLAY_SCREENSHOT"):
        shutil.copy(shot, os.environ["IVIDEOGPT_PLAY_SCREENSHOT"])
    print(pusht_engine.latency.summary())
