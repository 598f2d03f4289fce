"""The page of ``reid serve`` in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium, against a live server over the README demo's trained model.

``.ci/run`` installs the browser when it is missing and sets REID_BROWSER_TEST=required, so in CI this test runs
(a missing browser fails it); elsewhere a machine without Chromium skips it, saying how to install it. With
REID_SERVE_SCREENSHOTS=DIR the screenshots are also written to DIR (how docs/serve*.png are made).
"""
import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from reid.data import load_dataset

pytestmark = pytest.mark.slow
TOKEN = "browser-test-token-0123456789"


def browser_paths() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if browser and driver:
        return browser, driver
    message = "the browser test needs Chromium: apt-get install chromium chromium-driver"
    if os.environ.get("REID_BROWSER_TEST") == "required":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver = browser_paths()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,900",
                     "--disable-gpu"):
        options.add_argument(argument)
    session = webdriver.Chrome(service=Service(executable_path=driver), options=options)
    yield session
    session.quit()


@pytest.fixture
def live_server(readme_demo, start_serve, tmp_path):
    """``reid serve`` as the README shows it, over a copy of the demo's gallery (both modalities, as the demo
    builds it), with the demo's report and a copy of it that claims another model, on a free loopback port."""
    _, where = readme_demo
    run = where / "runs/demo"
    gallery = tmp_path / "gallery"
    shutil.copytree(run / "gallery", gallery)
    other = json.loads((run / "metrics.json").read_text())
    other["model"]["digest"] = "f" * 64
    (tmp_path / "other-model.json").write_text(json.dumps(other))
    (tmp_path / "token").write_text(TOKEN + "\n")
    _, base = start_serve(["--index", str(gallery), "--checkpoint", str(run / "best.pt"), "--evaluation",
                           str(run / "metrics.json"), "--evaluation", str(tmp_path / "other-model.json"),
                           "--token-file", str(tmp_path / "token"), "--device", "cpu"])
    return base, load_dataset("llcm", where / "data/demo-llcm")


def screenshot(browser, tmp_path, name):
    path = tmp_path / name
    browser.save_screenshot(str(path))
    if os.environ.get("REID_SERVE_SCREENSHOTS"):
        target = Path(os.environ["REID_SERVE_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def images_loaded(page, selector):
    """Whether there are such images and all have loaded (in one script: the page may redraw them meanwhile)."""
    return page.execute_script(
        "const images = [...document.querySelectorAll(arguments[0])];"
        "return images.length > 0 && images.every((image) => image.complete && image.naturalWidth > 0);", selector)


def fits(browser):
    """Whether the page fits the window's width (nothing wider than the screen, no horizontal scrolling)."""
    return browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")


def test_the_page_searches_hops_browses_and_shows_the_evaluation(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as when
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, dataset = live_server
    split = dataset.test_split("ir2vis", 0)
    info = httpx.get(f"{base}/api/v1/gallery").json()
    assert info["by_modality"]["ir"] > 0 and info["by_modality"]["vis"] > 0  # the README's gallery has both sides
    # an infrared query the trained model ranks right among the visible images: the page must show the same
    top_k, query = 5, None
    for sample in split.query:
        with open(sample.path, "rb") as image:
            hits = httpx.post(f"{base}/api/v1/search", files=[("images", ("q.jpg", image.read()))],
                              data={"modality": "vis", "top_k": top_k}, timeout=60).json()["results"][0]["hits"]
        if hits[0]["pid"] == sample.pid:
            query = sample
            break
    assert query is not None, "the demo model ranks no infrared query's identity first"

    wait = WebDriverWait(browser, 60)
    browser.get(base + "/")
    wait.until(lambda page: "items" in page.find_element(By.ID, "gallery-info").text)
    Select(browser.find_element(By.ID, "modality")).select_by_value("vis")
    top = browser.find_element(By.ID, "top-k")
    top.clear()
    top.send_keys(str(top_k))
    browser.find_element(By.ID, "query-pid").send_keys(str(query.pid))
    browser.find_element(By.ID, "image").send_keys(str(Path(query.path).resolve()))
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#results .card")) == top_k)
    cards = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    first = cards[0]
    assert first.find_element(By.CLASS_NAME, "pid").text == f"id {query.pid}"
    assert "match" in first.get_attribute("class").split()  # green, as in the rank-list pictures
    assert all("visible" in card.text and "cam " in card.text and ".jpg" in card.text for card in cards)
    assert first.find_element(By.CLASS_NAME, "score").text.startswith("#1 · ")
    wait.until(lambda page: images_loaded(page, "#results img"))
    screenshot(browser, tmp_path, "serve.png")

    # a click on a thumbnail enlarges it
    first.find_element(By.TAG_NAME, "img").click()
    wait.until(lambda page: not page.find_element(By.ID, "lightbox").get_property("hidden"))
    wait.until(lambda page: images_loaded(page, "#lightbox-image"))
    assert browser.find_element(By.ID, "lightbox-image").get_property("naturalWidth") > 64  # the image, not the tile
    browser.find_element(By.ID, "lightbox").click()
    wait.until(lambda page: page.find_element(By.ID, "lightbox").get_property("hidden"))

    # the cross-modality hop: the visible match searches the infrared side by default, without itself
    item = first.get_attribute("data-item-id")
    first.find_element(By.CLASS_NAME, "hop").click()
    wait.until(when.text_to_be_present_in_element((By.ID, "query"), f"item {item}"))
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#results .card")) == top_k)
    hopped = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert all(card.get_attribute("data-modality") == "ir" for card in hopped)
    assert item not in [card.get_attribute("data-item-id") for card in hopped]
    assert "visible query" in browser.find_element(By.ID, "status").text
    assert Select(browser.find_element(By.ID, "modality")).first_selected_option.get_attribute("value") == "ir"

    # a threshold no hit reaches: no match, said as such
    threshold = browser.find_element(By.ID, "min-score")
    threshold.send_keys("1")
    browser.find_element(By.ID, "search").click()  # the upload is still in the form: search again with it
    wait.until(when.text_to_be_present_in_element((By.ID, "status"), "no match"))
    assert browser.find_elements(By.CSS_SELECTOR, "#results .card") == []
    threshold.clear()  # and without the threshold, the hits are back
    browser.find_element(By.ID, "search").click()
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#results .card")) == top_k)

    # the gallery browser: pages of items
    browser.find_element(By.ID, "tab-browse").click()
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#browse-items .card")) == 48)
    assert browser.find_element(By.ID, "browse-page").text == f"1-48 of {info['items']}"
    browser.find_element(By.ID, "browse-next").click()
    wait.until(when.text_to_be_present_in_element((By.ID, "browse-page"), "49-"))

    # the evaluation view: the summary, queries worst first, a failed query's top-10 beside its first true match
    browser.find_element(By.ID, "tab-evaluation").click()
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#queries tbody tr")) == len(split.query))
    report = httpx.get(f"{base}/api/v1/evaluations/metrics.json/ir2vis").json()
    summary = [cell.text for cell in browser.find_elements(By.CSS_SELECTOR, "#summary tbody td")]
    assert summary[:3] == ["ir2vis", "0", f"{report['summary']['mAP']:.2f}"]
    assert browser.find_element(By.ID, "evaluation-warnings").text == ""
    rows = browser.find_elements(By.CSS_SELECTOR, "#queries tbody tr")
    aps = [float(row.find_elements(By.TAG_NAME, "td")[1].text) for row in rows
           if row.find_elements(By.TAG_NAME, "td")[1].text != "no match"]
    assert aps == sorted(aps)
    failed = [q for q in report["queries"] if q["first_match_item"] and q["first_match_item"]["rank"] > 10]
    assert failed, "the demo model leaves some first true matches below the top-10"
    least = browser.find_element(By.ID, "min-first-match")
    least.clear()
    least.send_keys("11")
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#queries tbody tr"))
               == sum(q["first_match"] is None or q["first_match"] >= 11 for q in report["queries"]))
    shown = int(browser.find_element(By.CSS_SELECTOR, "#queries tbody tr.selected td").text)
    record = next(q for q in report["queries"] if q["query"] == shown)
    below = record["first_match_item"] is not None and record["first_match_item"]["rank"] > len(record["top"])
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#evaluation-detail .card"))
               == 1 + len(record["top"]) + below)
    tiles = browser.find_elements(By.CSS_SELECTOR, "#evaluation-detail .card")
    assert [tile.get_attribute("class").split()[1] for tile in tiles[1:11]] == [
        "match" if item["match"] else "miss" for item in record["top"]]
    if below:
        assert "first-match" in tiles[-1].get_attribute("class").split()
        assert f"first true match at rank {record['first_match_item']['rank']}" in browser.find_element(
            By.CSS_SELECTOR, "#evaluation-detail .where").text
    wait.until(lambda page: images_loaded(page, "#evaluation-detail img"))
    screenshot(browser, tmp_path, "serve-evaluation.png")

    # a report of another model: shown, with a warning
    Select(browser.find_element(By.ID, "evaluation-select")).select_by_visible_text("other-model.json (llcm): ir2vis")
    wait.until(when.text_to_be_present_in_element((By.ID, "evaluation-warnings"), "another model"))

    # a phone's width: everything still fits the screen
    browser.set_window_size(360, 800)
    browser.find_element(By.ID, "tab-search").click()
    wait.until(lambda page: images_loaded(page, "#results img"))
    assert fits(browser)
    boxes = browser.find_elements(By.CSS_SELECTOR, "#cameras input")
    assert boxes and all(box.is_displayed() for box in boxes)
    screenshot(browser, tmp_path, "serve-narrow.png")
    browser.find_element(By.ID, "tab-evaluation").click()
    wait.until(lambda page: images_loaded(page, "#evaluation-detail img"))
    assert fits(browser)
