"""The static site in a real browser: headless Chromium (Debian's `chromium` with its
`chromedriver`, driven by Selenium) opens every page of a site built from a small store,
and the index and task pages of the site built from the committed results, from file://.

Each page loads without a console error, every internal link and image resolves to a file
(and an anchor to an element), nothing is fetched from the network, clicking a column
header reorders the rows, a name holding HTML is shown as text, and a full-page screenshot
of each page is written for a person to look at: under the test's tmp_path, and also under
$CWBENCH_SCREENSHOTS when it is set. Skipped, saying why, where no browser is installed
(.ci/run installs one).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from test_site import EVIL_ARCH, audio_records, copy_records, write_store

from bench.report import site

ROOT = Path(__file__).resolve().parent.parent
BROWSERS = ("chromium", "chromium-browser", "google-chrome")
MAX_SHOT_HEIGHT = 20000  # px; a longer page is cut there


def _browser_or_skip():
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (pip install -e .[test])")
    binary = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    driver = shutil.which("chromedriver")
    if not binary or not driver:
        pytest.skip("no headless Chromium: install Debian's chromium and chromium-driver "
                    "(apt-get install chromium chromium-driver; .ci/run does)")
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1400,900", "--hide-scrollbars"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(executable_path=driver), options=options)


@pytest.fixture(scope="module")
def browser():
    driver = _browser_or_skip()
    yield driver
    driver.quit()


def shot_folders(tmp_path: Path, name: str) -> list[Path]:
    folders = [tmp_path / "screenshots" / name]
    if os.environ.get("CWBENCH_SCREENSHOTS"):
        folders.append(Path(os.environ["CWBENCH_SCREENSHOTS"]) / name)
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    return folders


def screenshot(browser, page: str, folders: list[Path]) -> None:
    """The whole page (Chrome's capture beyond the viewport), one PNG per page."""
    width, height = browser.execute_script(
        "return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
    shot = browser.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": width, "height": min(height, MAX_SHOT_HEIGHT), "scale": 1}})
    import base64

    data = base64.b64decode(shot["data"])
    name = page.removesuffix(".html").replace("/", "__") + ".png"
    for folder in folders:
        (folder / name).write_bytes(data)
    assert data[:4] == b"\x89PNG" and len(data) > 1000


def ids_of(path: Path) -> set[str]:
    return set(re.findall(r'\bid="([^"]+)"', path.read_text()))


def check_page(browser, out: Path, page: str, folders: list[Path]) -> None:
    """Load one page and check it: console, links, images, network, screenshot."""
    browser.get((out / page).as_uri())
    assert browser.execute_script("return document.readyState") == "complete"
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not errors, f"{page}: console errors {errors}"
    targets = browser.execute_script(
        "return Array.from(document.querySelectorAll('a[href]')).map(a => a.href)"
        ".concat(Array.from(document.querySelectorAll('img')).map(i => i.src))")
    for url in targets:
        parsed = urlparse(url)
        assert parsed.scheme in ("file", "data"), f"{page} points off the site: {url}"
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
            assert path.is_file() and path.resolve().is_relative_to(out.resolve()), f"{page}: {url} does not resolve"
            if parsed.fragment:
                assert parsed.fragment in ids_of(path), f"{page}: no element #{parsed.fragment} in {path.name}"
    broken = browser.execute_script(
        "return Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
    assert not broken, f"{page}: images that did not load {broken}"
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert all(u.startswith(("file:", "data:")) for u in fetched), f"{page} fetched {fetched}"
    screenshot(browser, page, folders)


def column(browser, table_id: str, index: int, attribute: str | None = None) -> list:
    script = ("return Array.from(document.getElementById(arguments[0]).tBodies[0].rows)"
              ".map(r => arguments[2] ? r.cells[arguments[1]].getAttribute(arguments[2])"
              " : r.cells[arguments[1]].textContent.trim())")
    return browser.execute_script(script, table_id, index, attribute)


def click_header(browser, table_id: str, name: str) -> int:
    from selenium.webdriver.common.by import By

    headers = browser.find_elements(By.CSS_SELECTOR, f"#{table_id} thead th")
    index = next(i for i, h in enumerate(headers) if h.text.strip() == name)
    headers[index].click()
    return index


def check_sorting(browser, table_id: str, metric: str) -> None:
    before_arch = column(browser, table_id, 0)
    index = click_header(browser, table_id, "arch")
    assert column(browser, table_id, index) == sorted(before_arch)
    index = click_header(browser, table_id, metric)
    values = [float(v) for v in column(browser, table_id, index, "data-sort")]
    assert values == sorted(values) and len(values) == len(before_arch)
    click_header(browser, table_id, metric)  # again: descending
    assert [float(v) for v in column(browser, table_id, index, "data-sort")] == sorted(values, reverse=True)


def test_every_page_of_a_small_site_in_chromium(browser, tmp_path):
    results, out = tmp_path / "results", tmp_path / "site"
    write_store(results, "copy", copy_records(), ["learning_curves_quick.png"])
    write_store(results, "audio", audio_records(), ["waveforms_quick.png"])
    site.build_site(results, out, log=lambda *a: None)
    folders = shot_folders(tmp_path, "small")
    pages = sorted(str(p.relative_to(out)) for p in out.rglob("*.html"))
    assert len(pages) == 9
    for page in pages:
        check_page(browser, out, page, folders)
        # the site's own sorting code is the only script; names holding HTML made no element
        assert browser.execute_script("return document.scripts.length") == 1
    assert len(list(folders[0].glob("*.png"))) == len(pages)

    browser.get((out / "copy" / "index.html").as_uri())
    before = column(browser, "board-1", 0)
    # ranked by recall accuracy, best first: neither sorted by name nor by ascending metric
    assert before[0] == "lstm" and before != sorted(before)
    check_sorting(browser, "board-1", "recall_accuracy")

    evil = next(p for p in pages if p.startswith("copy/rows/quick-plug-"))
    browser.get((out / evil).as_uri())
    text = browser.execute_script("return document.body.innerText")
    assert EVIL_ARCH in text and "bundle <b>x</b>.tar.gz" in text and "external" in text
    assert browser.execute_script("return document.images.length") == 0
    browser.get((out / "audio" / "index.html").as_uri())
    assert "clips/<script>alert('target')</script>.wav" in browser.execute_script("return document.body.innerText")


def test_the_site_of_the_committed_results_in_chromium(browser, tmp_path):
    out = tmp_path / "site"
    site.build_site(ROOT / "results", out, log=lambda *a: None)  # reads results/, writes only under tmp_path
    folders = shot_folders(tmp_path, "committed")
    tasks = sorted(str(p.relative_to(out)) for p in out.glob("*/index.html"))
    assert {"audio/index.html", "copy/index.html"} <= set(tasks)
    first_rows = [str(sorted((out / t).glob("rows/*.html"))[0].relative_to(out)) for t in ("audio", "copy")]
    for page in ["index.html", *tasks, *first_rows]:
        check_page(browser, out, page, folders)
    browser.get((out / "audio" / "index.html").as_uri())
    assert browser.execute_script("return document.images.length") == len(list((ROOT / "results/audio").glob("*.png")))
    check_sorting(browser, "board-1", "nmse")
