"""The web page in a real headless browser: Debian's Chromium driven by Selenium through
chromedriver. Type a sentence, click Translate, read the translation and the attention heatmap
from the page; a screenshot is kept as a test artifact (`tmp_path`, and a copy in
`$TRANSLATOR_TEST_ARTIFACTS` when that is set)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
MISSING = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not os.access(p, os.X_OK)]

# Checked before any fixture (the session's server) is set up.
pytestmark = pytest.mark.skipif(
    bool(MISSING),
    reason=f"no browser for the page test: {' and '.join(MISSING)} not installed (Debian: "
    "apt-get install chromium chromium-driver; .ci/run installs them)",
)


@pytest.fixture
def browser(tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--window-size=1200,1000",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()


def _save_screenshot(driver, tmp_path: Path, name: str) -> Path:
    """The whole page (the window grows to its height) as PNG, kept as a test artifact."""
    chrome, height = driver.execute_script(
        "return [window.outerHeight - window.innerHeight, document.documentElement.scrollHeight]"
    )
    driver.set_window_size(1200, min(int(chrome) + int(height), 4000))
    path = tmp_path / name
    assert driver.save_screenshot(str(path)), "the screenshot was not written"
    artifacts = os.environ.get("TRANSLATOR_TEST_ARTIFACTS")
    if artifacts:
        Path(artifacts).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(artifacts) / name)
    return path


def test_type_a_sentence_and_read_its_translation(browser, server, api, sentences, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    sentence = sentences[0]
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    # /health has answered: the page names the model.
    wait.until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))
    assert "with attention" in browser.find_element(By.ID, "model").text

    box = browser.find_element(By.ID, "source")
    box.clear()
    box.send_keys(sentence)
    browser.find_element(By.ID, "translate").click()

    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#output .line"))
    lines = browser.find_elements(By.CSS_SELECTOR, "#output .line")
    expected = api.translate(sentence)
    assert [line.get_property("textContent") for line in lines] == [expected]
    assert browser.find_element(By.ID, "output").text == expected.strip()

    heatmap = wait.until(ec.visibility_of_element_located((By.ID, "heatmap")))
    alignment = api.align(sentence)
    columns = heatmap.find_elements(By.CSS_SELECTOR, "thead th")
    rows = heatmap.find_elements(By.CSS_SELECTOR, "tbody tr")
    assert [c.get_property("textContent") for c in columns] == alignment.source_tokens
    assert len(rows) == len(alignment.target_tokens)
    assert len(heatmap.find_elements(By.CSS_SELECTOR, "tbody td")) == alignment.attention.size
    assert browser.find_element(By.ID, "error").text == ""

    shot = _save_screenshot(browser, tmp_path, "serve-page.png")
    assert shot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_the_page_shows_the_servers_error(browser, server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "model").text not in ("", "…"))
    box = browser.find_element(By.ID, "source")
    browser.execute_script("arguments[0].value = arguments[1]", box, "x" * 2001)
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda d: d.find_element(By.ID, "error").text)
    assert (
        browser.find_element(By.ID, "error").text == "text[0]: 2001 characters, the limit is 2000"
    )
    _save_screenshot(browser, tmp_path, "serve-page-error.png")
