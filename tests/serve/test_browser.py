"""The page of ``reid serve`` in a real browser: headless Chromium (Debian's ``chromium`` and ``chromium-driver``)
driven by Selenium, against a live server over the README demo's trained model.

``.ci/run`` installs the browser when it is missing and sets REID_BROWSER_TEST=required, so in CI this test runs
(a missing browser fails it); elsewhere a machine without Chromium skips it, saying how to install it. With
REID_SERVE_SCREENSHOTS=DIR the screenshots are also written to DIR (how docs/serve*.png are made).
"""
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
    """``reid serve`` as the README shows it, over a copy of the demo's gallery, on a free loopback port."""
    _, where = readme_demo
    run = where / "runs/demo"
    gallery = tmp_path / "gallery"
    shutil.copytree(run / "gallery", gallery)
    (tmp_path / "token").write_text(TOKEN + "\n")
    _, base = start_serve(["--index", str(gallery), "--checkpoint", str(run / "best.pt"), "--evaluation",
                           str(run / "metrics.json"), "--token-file", str(tmp_path / "token"), "--device", "cpu"])
    return base, load_dataset("llcm", where / "data/demo-llcm")


def screenshot(browser, tmp_path, name):
    path = tmp_path / name
    browser.save_screenshot(str(path))
    if os.environ.get("REID_SERVE_SCREENSHOTS"):
        target = Path(os.environ["REID_SERVE_SCREENSHOTS"])
        target.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target / name)
    return path


def test_the_page_searches_hops_across_modalities_and_shows_the_evaluation(browser, live_server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as when
    from selenium.webdriver.support.ui import Select, WebDriverWait

    base, dataset = live_server
    split = dataset.test_split("ir2vis", 0)
    # the infrared queries join the gallery, with their identities and cameras, through the API, so the hop from
    # a visible result has an infrared side to land on
    infrared = split.query[:24]
    for sample in infrared:
        with open(sample.path, "rb") as image:
            added = httpx.post(f"{base}/api/v1/items", files=[("images", (Path(sample.path).name, image.read()))],
                               data={"pid": sample.pid, "camid": sample.camid, "modality": "ir"},
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert added.status_code == 200, added.text
    # an infrared query the trained model ranks right among the visible images: the page must show the same
    top_k, query = 5, None
    for sample in split.query[24:]:
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
    assert cards[0].find_element(By.CLASS_NAME, "pid").text == f"id {query.pid}"
    assert "match" in cards[0].get_attribute("class").split()  # green, as in the rank-list pictures
    assert all("visible" in card.text for card in cards)
    wait.until(lambda page: all(image.get_property("naturalWidth") > 0
                                for image in page.find_elements(By.CSS_SELECTOR, "#results img")))
    screenshot(browser, tmp_path, "serve.png")

    # the cross-modality hop: a click on the visible match searches the infrared side with it
    item = cards[0].get_attribute("data-item-id")
    cards[0].click()
    wait.until(when.text_to_be_present_in_element((By.ID, "query"), f"item {item}"))
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#results .card")) == top_k)
    hopped = browser.find_elements(By.CSS_SELECTOR, "#results .card")
    assert all(card.get_attribute("data-modality") == "ir" for card in hopped)
    assert "visible query" in browser.find_element(By.ID, "status").text
    assert Select(browser.find_element(By.ID, "modality")).first_selected_option.get_attribute("value") == "ir"

    # the evaluation view: queries worst first; a query's top-10 with its true matches marked
    browser.find_element(By.ID, "tab-evaluation").click()
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#queries tbody tr")) == len(split.query))
    rows = browser.find_elements(By.CSS_SELECTOR, "#queries tbody tr")
    aps = [float(row.find_elements(By.TAG_NAME, "td")[1].text) for row in rows
           if row.find_elements(By.TAG_NAME, "td")[1].text != "no match"]
    assert aps == sorted(aps)
    wait.until(lambda page: len(page.find_elements(By.CSS_SELECTOR, "#evaluation-detail .card")) == 11)
    tiles = browser.find_elements(By.CSS_SELECTOR, "#evaluation-detail .card")
    marks = [tile.get_attribute("class").split()[1] for tile in tiles]
    assert marks[0] == "query-card" and set(marks[1:]) <= {"match", "miss"}
    worst = httpx.get(f"{base}/api/v1/evaluations/0/ir2vis").json()["queries"][0]
    assert marks[1:] == ["match" if item["match"] else "miss" for item in worst["top"]]
    wait.until(lambda page: all(image.get_property("naturalWidth") > 0
                                for image in page.find_elements(By.CSS_SELECTOR, "#evaluation-detail img")))
    screenshot(browser, tmp_path, "serve-evaluation.png")
