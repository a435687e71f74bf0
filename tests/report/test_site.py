"""``cirbench site``: the build (deterministic bytes, the data contract, exports, refusals) and, in headless
Chromium, what a user does: sort, filter by URL, reload a shared URL, pin, open a per-image page, move the
slider, export a table.

Two runs feed the site: a real ``cirbench run`` of the JPEG input and two tiny callables on the scikit-image
``samples`` with ``--save-images`` (protocol "alpha", from a TOML file), and the fixed records of
``tests/data/records_small`` (protocol "smoke_test", two ranked models, no saved images), with the small
literature CSV for published rows.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from cirbench.cli import main
from cirbench.errors import ConfigError
from cirbench.metrics import get_metric
from cirbench.report import render
from cirbench.report.site import MARKER, build_site

DATA = Path(__file__).parents[1] / "data"
SMALL = DATA / "records_small"
LIT = DATA / "literature_small.csv"

MODELS = '''
import torch
import torch.nn.functional as F


def soft(x):
    """Mixes a 3x3 box blur in: block edges soften a little."""
    c = x.shape[1]
    k = torch.full((c, 1, 3, 3), 1 / 9, dtype=x.dtype, device=x.device)
    return 0.7 * x + 0.3 * F.conv2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), k, groups=c)


def dim(x):
    return x * 0.98 + 0.01
'''

PROTOCOL = '''
name = "alpha"
version = "1"
description = "samples at QF 10 and 20, blind (site tests)"
models = ["jpeg"]
give_qf = false

[[tasks]]
datasets = ["samples"]
degradation = "jpeg"
qfs = [10, 20]
'''


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> list[Path]:
    root = tmp_path_factory.mktemp("site-runs")
    (root / "sitemodels.py").write_text(MODELS)
    (root / "alpha.toml").write_text(PROTOCOL)
    sys.path.insert(0, str(root))
    try:
        rc = main(["run", "--protocol", str(root / "alpha.toml"), "--models", "jpeg,sitemodels:soft,sitemodels:dim",
                   "--datasets", "samples", "--save-images", "--out", str(root / "alpha")])
    finally:
        sys.path.remove(str(root))
    assert rc == 0
    small = root / "small"
    shutil.copytree(SMALL, small)
    return [root / "alpha", small]


@pytest.fixture(scope="module")
def site(runs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site") / "site"
    build_site(runs, out, published=True, published_path=LIT)
    return out


def _data(page: Path) -> dict:
    text = page.read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="site-data">(.*?)</script>', text, re.S)
    return json.loads(m[1])


def _csv_rows(runs, space="y") -> list[dict]:
    return list(csv.DictReader(io.StringIO(render(runs, "csv", space=space, published=True, published_path=LIT))))


# ------------------------------------------------------------------------------------ the build


def test_build_is_deterministic(runs, site, tmp_path):
    again = tmp_path / "elsewhere" / "site"
    build_site(runs, again, published=True, published_path=LIT)
    files = sorted(p.relative_to(site) for p in site.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (site / rel).read_bytes() == (again / rel).read_bytes(), rel
    assert len([f for f in files if f.suffix == ".png"]) > 10  # crops and thumbnails were made


def test_data_contract_matches_report(runs, site):
    data = _data(site / "index.html")
    assert [m["name"] for m in data["metrics"]] == ["psnr", "ssim", "psnrb"]
    assert data["protocols"] == ["alpha v1", "smoke_test v1"]
    rows = {r["id"]: r for r in data["rows"]}
    assert {"jpeg", "soft", "dim", "fbcnn", "swinir"} <= set(rows)
    assert rows["jpeg"]["kind"] == "baseline" and rows["fbcnn"]["kind"] == "ours"
    published = [r for r in data["rows"] if r["kind"] == "published"]
    assert {r["model"] for r in published} == {"JPEG", "ARCNN", "RDN", "SwinIR"}
    checked = 0
    for rec in _csv_rows(runs):
        if rec["source"]:
            continue
        col = f"{rec['dataset']}/{rec['qf']}"
        cell = data["cells"]["y"][rec["model"]][col]
        for i, m in enumerate(("psnr", "ssim", "psnrb")):
            assert cell["v"][i] == float(rec[m])  # full precision, the same float as the report's
            checked += 1
        assert cell["n"] == int(rec["n_images"])
    assert checked == 3 * (3 * 2 + 3 * 2 * 2)  # samples: 3 models x 2 QFs; classic5, live1: 3 x 2 each
    # Published rows only beside numbers of their own space: SwinIR's live1 row is rgb, HAT's is y-float.
    assert "SwinIR [2] per-QF" not in data["cells"]["y"]
    assert data["cells"]["rgb"]["SwinIR [2] per-QF"]["live1/10"]["space"] == "rgb"
    assert not any(r["model"] == "HAT" for r in data["rows"])
    # The CI of a model against the JPEG input, per metric: (mean, lo, hi, p, n).
    ci = data["cells"]["y"]["fbcnn"]["classic5/10"]["ci"]["psnr"]
    assert ci[0] == pytest.approx(30.0 - 27.75) and ci[1] <= ci[0] <= ci[2] and ci[4] == 3
    prov = rows["fbcnn"]["runs"][0]
    assert prov["protocol"] == "smoke_test v1" and prov["protocol_sha256"] == "0123456789abcdef0123"
    assert prov["libjpeg"] == "libjpeg-turbo 3.0.4" and prov["git_commit"] == "abc1234def5678"
    assert rows["fbcnn"]["efficiency"]["params"] == pytest.approx(71.922048)


def test_exports_are_the_report_renderers(runs, site):
    for space in ("y", "rgb"):
        for fmt, ext in (("csv", "csv"), ("json", "json"), ("latex", "tex")):
            text = (site / "tables" / f"leaderboard-{space}.{ext}").read_text(encoding="utf-8")
            assert text == render(runs, fmt, space=space, published=True, published_path=LIT)
    page = _data(site / "pages" / "samples" / "jpeg-q10.html")
    rows = list(csv.DictReader(open(site / "pages" / "samples" / page["exports"]["csv"], encoding="utf-8")))
    assert {r["model"] for r in rows} == {"jpeg", "soft", "dim"}
    tex = (site / "pages" / "samples" / page["exports"]["latex"]).read_text(encoding="utf-8")
    assert r"\begin{tabular}" in tex and "astronaut" in tex


def test_pages_images_and_no_network(site):
    data = _data(site / "index.html")
    pages = {c["page"] for c in data["columns"]}
    assert pages == {f"pages/{d}/jpeg-q{q}.html" for d in ("samples", "classic5", "live1") for q in (10, 20)}
    page = _data(site / "pages" / "samples" / "jpeg-q10.html")
    assert page["saved"] and len(page["images"]) == 3
    astro = next(i for i in page["images"] if i["name"] == "astronaut.png")
    assert set(astro["versions"]) == {"gt", "jpeg", "soft", "dim"}
    assert astro["window"][2:] == [256, 256]  # the default crop
    for rel in astro["versions"].values():
        assert (site / "pages" / "samples" / rel).resolve().is_file()
    assert not _data(site / "pages" / "classic5" / "jpeg-q10.html")["saved"]
    for p in site.rglob("*"):
        if p.suffix in (".html", ".js", ".css"):
            text = p.read_text(encoding="utf-8")
            assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//|url\(\s*["']?(https?:)?//|@import""", text), p


def test_double_jpeg_columns_and_pages(tmp_path):
    run = tmp_path / "run"
    shutil.copytree(SMALL, run)
    lines = (run / "records.jsonl").read_text().splitlines()
    double = [json.dumps({**json.loads(x), "degradation": "double-q30-s4x4"}) for x in lines
              if json.loads(x)["dataset"] == "classic5"]
    (run / "records.jsonl").write_text("\n".join(lines + double) + "\n")
    build_site([run], tmp_path / "site", published=True, published_path=LIT)
    data = _data(tmp_path / "site" / "index.html")
    col = next(c for c in data["columns"] if c["id"] == "classic5/double-q30-s4x4:10")
    assert col["label"] == "QF 30→10 s4,4" and col["qf"] == 10
    assert (tmp_path / "site" / col["page"]).is_file()
    # FBCNN's published double-JPEG row sits in that column only.
    assert data["cells"]["y"]["FBCNN [1]"] == {"classic5/double-q30-s4x4:10": {"v": [29.46, 0.82, 29.11],
                                                                               "space": "gray"}}


def _lower_psnrb(src: Path, dst: Path) -> Path:
    """A copy of a run whose run.json says PSNR-B is lower-is-better (as a user's metric spec would)."""
    shutil.copytree(src, dst)
    info = json.loads((dst / "run.json").read_text())
    info["metrics"] = [{"name": n, **get_metric(n).info()} for n in ("psnr", "ssim")] + [
        {"name": "psnrb", "label": "PSNR-B", "unit": "dB", "decimals": 2, "higher_is_better": False}]
    (dst / "run.json").write_text(json.dumps(info))
    return dst


def test_metric_specs_come_from_run_json(site, tmp_path):
    assert _data(site / "index.html")["metrics"] == [
        {"name": "psnr", "label": "PSNR", "unit": "dB", "decimals": 2, "higher_is_better": True},
        {"name": "ssim", "label": "SSIM", "unit": "", "decimals": 4, "higher_is_better": True},
        {"name": "psnrb", "label": "PSNR-B", "unit": "dB", "decimals": 2, "higher_is_better": True}]
    build_site([_lower_psnrb(SMALL, tmp_path / "run")], tmp_path / "site")
    psnrb = _data(tmp_path / "site" / "index.html")["metrics"][2]
    assert psnrb["name"] == "psnrb" and psnrb["higher_is_better"] is False
    # The per-image LaTeX ranks in each metric's direction: on bikes, swinir's higher PSNR and fbcnn's lower
    # PSNR-B are best.
    tex = (tmp_path / "site" / "tables" / "images-live1-jpeg-q10.tex").read_text()
    bikes = next(line for line in tex.splitlines() if line.startswith("bikes"))
    assert r"\textbf{28.25}" in bikes and r"\underline{29.00}" in bikes and r"\textbf{29.25}" in bikes


def test_refusals_and_rebuild(runs, tmp_path, capsys):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not a cirbench site"):
        build_site([SMALL], other)
    assert (other / "mine.txt").read_text() == "keep me"
    with pytest.raises(ConfigError, match="not a run folder"):
        build_site([tmp_path], tmp_path / "out")
    out = tmp_path / "site"
    assert main(["site", str(SMALL), "--out", str(out)]) == 0
    assert "open" in capsys.readouterr().err
    (out / "stale.txt").write_text("from an older build")
    assert main(["site", str(SMALL), "--out", str(out), "--crop", "0"]) == 0
    assert (out / MARKER).is_file() and not (out / "stale.txt").exists()
    assert main(["site", str(SMALL), "--out", str(out), "--crop", "-1"]) == 2
    assert not list(tmp_path.glob(".site.*"))  # no temporary folder left behind


# ------------------------------------------------------------------------------------ in the browser

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


def _no_browser() -> bool:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return True
    return not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK))


browser_test = pytest.mark.skipif(_no_browser(), reason="needs Debian's chromium and chromium-driver "
                                  "(apt-get install chromium chromium-driver) and selenium")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    # Selenium Manager must never reach the network: the driver and browser are named, and it is told so.
    os.environ["SE_OFFLINE"] = "true"
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    downloads = tmp_path_factory.mktemp("downloads")
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tempfile.mkdtemp(prefix='cirbench-chromium-')}", "--window-size=1400,1000"):
        opts.add_argument(arg)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})  # every request the page makes
    opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                           "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.downloads = downloads
    yield driver
    driver.quit()


def _open(driver, page: Path, query: str = ""):
    driver.get(page.as_uri() + query)
    _wait(driver, lambda: driver.execute_script("return document.readyState") == "complete"
          and driver.find_elements("css selector", "#main > *"))


def _wait(driver, cond, timeout=10.0):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if cond():
                return
        except Exception:  # an element replaced while read: try again
            pass
        time.sleep(0.05)
    raise AssertionError("timed out waiting for the page")


def _css(driver, selector):
    return driver.find_elements("css selector", selector)


def _column(driver, key: str) -> list[tuple[str, float | None]]:
    """(row model, value) of one sort key's cells, in row order (None where a row has no number)."""
    dataset, qf, metric = key.split("/")
    out = []
    for row in _css(driver, "[data-testid=row]"):
        cells = row.find_elements("css selector", f'[data-testid=cell][data-dataset="{dataset}"][data-qf="{qf}"]'
                                  f'[data-metric="{metric}"]')
        out.append((row.get_attribute("data-model"), float(cells[0].get_attribute("data-value")) if cells else None))
    return out


def _query(driver) -> dict:
    return {k: v[0] for k, v in parse_qs(urlparse(driver.current_url).query).items()}


@browser_test
def test_cells_equal_report_csv(browser, runs, site):
    seen = 0
    for metric in ("psnr", "ssim", "psnrb"):  # one metric at a time: the default view fits the window
        _open(browser, site / "index.html", f"?metric={metric}")
        for rec in _csv_rows(runs):
            row = f'[data-testid=row][data-model="{rec["model"]}"]'
            row += '[data-published="true"]' if rec["source"] else ":not([data-published])"
            cells = _css(browser, f'{row} [data-testid=cell][data-dataset="{rec["dataset"]}"][data-qf="{rec["qf"]}"]'
                                  f'[data-metric="{metric}"]')
            if rec[metric] == "":
                assert not cells
                continue
            values = {float(c.get_attribute("data-value")) for c in cells}
            assert float(rec[metric]) in values, (rec["model"], rec["dataset"], rec["qf"], metric)
            seen += 1
    assert seen > 50
    published = _css(browser, "[data-testid=row][data-published=true]")
    assert published and all("published" in r.text for r in published)


@browser_test
def test_sort_writes_url_and_shared_url_restores(browser, site):
    _open(browser, site / "index.html")
    key = "classic5/10/psnr"
    _css(browser, f'[data-testid=sort][data-key="{key}"]')[0].click()
    _wait(browser, lambda: _query(browser).get("sort") == key)
    values = [v for _, v in _column(browser, key) if v is not None]
    assert values == sorted(values, reverse=True) and len(values) >= 4
    best = _css(browser, "[data-testid=row]")[0].get_attribute("data-model")
    url = browser.current_url
    _css(browser, f'[data-testid=sort][data-key="{key}"]')[0].click()  # second click: worst first
    _wait(browser, lambda: _query(browser).get("rev") == "1")
    values = [v for _, v in _column(browser, key) if v is not None]
    assert values == sorted(values)
    browser.get(url)  # a shared link opens the same view
    _wait(browser, lambda: _css(browser, "[data-testid=row]"))
    assert _css(browser, "[data-testid=row]")[0].get_attribute("data-model") == best
    th = _css(browser, f'[data-testid=sort][data-key="{key}"]')[0].find_element("xpath", "..")
    assert th.get_attribute("aria-sort") == "descending"
    # Best and second among our models carry a mark that is not colour: bold and underline, and words.
    marks = {c.find_element("css selector", "span").get_attribute("class")
             for c in _css(browser, '[data-testid=cell][data-dataset="classic5"][data-qf="10"][data-metric="psnr"]')}
    assert {"best", "second"} <= marks


@browser_test
def test_url_filters_show_only_those_cells(browser, site):
    _open(browser, site / "index.html", "?dataset=classic5&qf=20")
    cells = _css(browser, "[data-testid=cell]")
    assert cells and {(c.get_attribute("data-dataset"), c.get_attribute("data-qf")) for c in cells} == {
        ("classic5", "20")}
    assert {c.get_attribute("data-metric") for c in cells} == {"psnr", "ssim", "psnrb"}
    _open(browser, site / "index.html", "?protocol=alpha+v1&metric=ssim")
    cells = _css(browser, "[data-testid=cell]")
    assert {c.get_attribute("data-dataset") for c in cells} == {"samples"}
    assert {c.get_attribute("data-metric") for c in cells} == {"ssim"}
    _open(browser, site / "index.html", "?space=rgb")
    assert _css(browser, '[data-testid=row][data-model="SwinIR"][data-published=true]')
    _open(browser, site / "index.html", "?complete=1")  # only the JPEG input has a number in every column
    assert [r.get_attribute("data-model") for r in _css(browser, "[data-testid=row]")] == ["jpeg"]
    _open(browser, site / "index.html", "?q=fb&dataset=classic5,live1&complete=1")
    assert [r.get_attribute("data-model") for r in _css(browser, "[data-testid=row]")] == ["fbcnn"]


@browser_test
def test_filters_pins_and_drawer_by_hand(browser, site):
    _open(browser, site / "index.html")
    assert _css(browser, "[data-testid=row][data-published=true]")
    _css(browser, "[data-testid=filter-published]")[0].click()  # hide published rows
    _wait(browser, lambda: _query(browser).get("published") == "0")
    assert not _css(browser, "[data-testid=row][data-published=true]")
    for model in ("swinir", "dim"):
        _css(browser, f'[data-testid=row][data-model="{model}"] [data-testid=pin]')[0].click()
    _wait(browser, lambda: _query(browser).get("pin") == "swinir,dim")
    _css(browser, '[data-testid=sort][data-key="samples/10/psnr"]')[0].click()
    order = [r.get_attribute("data-model") for r in _css(browser, "[data-testid=row]")]
    assert order[:2] == ["swinir", "dim"]  # pinned rows stay on top, in pin order
    for model in ("jpeg", "soft", "fbcnn"):
        _css(browser, f'[data-testid=row][data-model="{model}"] [data-testid=pin]')[0].click()
    assert "At most 4" in browser.find_element("css selector", ".msg").text
    assert len(_query(browser)["pin"].split(",")) == 4
    browser.get(browser.current_url)
    _wait(browser, lambda: _css(browser, "[data-testid=row]"))
    assert [r.get_attribute("data-model") for r in _css(browser, "[data-testid=row]")][:4] == [
        "swinir", "dim", "jpeg", "soft"]
    _css(browser, '[data-testid=row][data-model="fbcnn"] [data-testid=details]')[0].click()
    drawer = _css(browser, "[data-testid=drawer]")[0].text
    for text in ("smoke_test v1", "0123456789abcdef0123", "libjpeg-turbo 3.0.4", "abc1234def5678", "3 of",
                 "95 % CI"):
        assert text in drawer


@browser_test
def test_keyboard_sorting_and_page_width(browser, site):
    from selenium.webdriver.common.keys import Keys

    _open(browser, site / "index.html")
    assert browser.execute_script("return window.innerWidth") <= 1400
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    box = _css(browser, ".table-box")[0]
    assert browser.execute_script("return arguments[0].scrollWidth <= arguments[0].clientWidth", box)
    assert "To fit the window: PSNR only" in _css(browser, "[data-testid=status]")[0].text
    _open(browser, site / "index.html", "?metric=psnr,ssim,psnrb&eff=1")  # wider than the window, as asked:
    assert len({c.get_attribute("data-metric") for c in _css(browser, "[data-testid=cell]")}) == 3
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")  # the box scrolls
    _open(browser, site / "index.html")
    _css(browser, '[data-testid=sort][data-key="live1/20/psnr"]')[0].send_keys(Keys.ENTER)
    _wait(browser, lambda: _query(browser).get("sort") == "live1/20/psnr")
    focused = browser.switch_to.active_element  # the redrawn header keeps the focus: Enter again reverses
    assert focused.get_attribute("data-key") == "live1/20/psnr"
    focused.send_keys(Keys.ENTER)
    _wait(browser, lambda: _query(browser).get("rev") == "1")
    focused = browser.switch_to.active_element
    focused.send_keys(Keys.TAB)  # on to the next header
    assert browser.switch_to.active_element.get_attribute("data-testid") in ("sort", "sort-efficiency")
    _css(browser, "[data-testid=theme]")[0].click()
    assert browser.execute_script("return document.documentElement.dataset.theme") == "light"
    _css(browser, "[data-testid=theme]")[0].click()
    dark = browser.execute_script("return getComputedStyle(document.body).backgroundColor")
    assert dark != "rgb(255, 255, 255)"
    _css(browser, "[data-testid=theme]")[0].click()  # back to the system's theme


def _requests(driver) -> list[str]:
    """URLs the browser requested since the last call (DevTools' network events)."""
    urls = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] == "Network.requestWillBeSent":
            urls.append(msg["params"]["request"]["url"])
    return urls


@browser_test
def test_pages_load_nothing_from_the_network(browser, site, http_server):
    _requests(browser)
    _open(browser, site / "index.html")
    _open(browser, site / "pages" / "samples" / "jpeg-q20.html")
    urls = _requests(browser)
    assert any(u.endswith("leaderboard.js") for u in urls) and any(u.endswith(".png") for u in urls)
    assert all(u.startswith(("file://", "data:", "blob:")) for u in urls), urls
    # On a static host: everything comes from that host.
    shutil.copytree(site, http_server.root / "board")
    browser.get(f"{http_server.url}/board/index.html?dataset=live1")
    _wait(browser, lambda: _css(browser, "[data-testid=cell]"))
    assert {c.get_attribute("data-dataset") for c in _css(browser, "[data-testid=cell]")} == {"live1"}
    urls = _requests(browser)
    assert urls and all(u.startswith(http_server.url) for u in urls), urls


@browser_test
def test_per_image_page_compare_and_worst(browser, site):
    from selenium.webdriver.common.keys import Keys

    _open(browser, site / "index.html")
    link = _css(browser, '[data-testid=images][href="pages/samples/jpeg-q10.html"]')[0]
    link.click()
    _wait(browser, lambda: _css(browser, "[data-testid=compare] img"))
    assert browser.current_url.endswith("pages/samples/jpeg-q10.html")
    _wait(browser, lambda: browser.execute_script(
        "return [...document.querySelectorAll('[data-testid=compare] img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length") >= 2)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    layer = _css(browser, ".viewport .layer.b")[0]
    before = layer.value_of_css_property("clip-path")
    slider = _css(browser, "[data-testid=split]")[0]
    for _ in range(10):
        slider.send_keys(Keys.ARROW_RIGHT)
    assert _css(browser, "[data-testid=split]")[0].get_attribute("value") == "60"
    assert layer.value_of_css_property("clip-path") != before
    _css(browser, "[data-testid=zoom-in]")[0].click()
    a, b = (browser.execute_script("return arguments[0].style.transform", img)
            for img in _css(browser, "[data-testid=compare-img-a], [data-testid=compare-img-b]"))
    assert a == b and "scale" in a  # zoom and pan are the same on both sides
    rows = _css(browser, "[data-testid=image-row]")
    assert len(rows) == 3 * 3  # 3 images x (jpeg, soft, dim)
    _css(browser, '[data-testid=worst-k][data-model="soft"]')[0].click()
    _wait(browser, lambda: _query(browser).get("model") == "soft")
    q = _query(browser)
    assert q["sort"] == "dj:psnr" and q["rev"] == "1" and q["k"] == "5"
    gains = [float(c.get_attribute("data-value")) for c in _css(browser, "[data-testid=image-cell][data-kind=dj]")]
    assert len(gains) == 3 and gains == sorted(gains)
    worst = _css(browser, "[data-testid=image-row]")[0].get_attribute("data-image")
    assert _css(browser, "[data-testid=compare-image]")[0].get_attribute("value") == worst
    browser.get(browser.current_url)  # the shared view: same lines, same image in the widget
    _wait(browser, lambda: _css(browser, "[data-testid=compare-image]"))
    assert [r.get_attribute("data-image") for r in _css(browser, "[data-testid=image-row]")][0] == worst
    assert _css(browser, "[data-testid=compare-image]")[0].get_attribute("value") == worst
    # Keyboard: the viewport zooms with + and pans with the arrows; full screen and back.
    viewport = _css(browser, "[data-testid=viewport]")[0]
    def scale():
        img = _css(browser, "[data-testid=compare-img-a]")[0]
        return browser.execute_script("return new DOMMatrix(getComputedStyle(arguments[0]).transform).a", img)

    before = scale()
    viewport.send_keys("+")
    assert scale() > before
    _css(browser, "[data-testid=fullscreen]")[0].click()
    _wait(browser, lambda: browser.execute_script("return document.fullscreenElement !== null"))
    assert browser.execute_script("return document.fullscreenElement.dataset.testid") == "compare"
    browser.execute_script("document.exitFullscreen()")
    # Sorting the table by a header: SSIM, best first.
    _css(browser, '[data-testid=image-sort][data-key="m:ssim"]')[0].click()
    ssim = [float(c.get_attribute("data-value")) for c in _css(browser, "[data-testid=image-cell][data-kind=m]"
                                                                        "[data-metric=ssim]")]
    assert ssim == sorted(ssim, reverse=True)


@browser_test
def test_page_without_saved_images_says_how(browser, site):
    _open(browser, site / "pages" / "classic5" / "jpeg-q10.html")
    text = _css(browser, "[data-testid=no-images]")[0].text
    assert "--save-images" in text and not _css(browser, "[data-testid=compare] img")


@browser_test
def test_exports_download(browser, runs, site):
    _open(browser, site / "index.html")
    _css(browser, "[data-testid=export-csv]")[0].click()
    target = browser.downloads / "leaderboard-y.csv"
    _wait(browser, target.is_file)
    assert target.read_text(encoding="utf-8") == render(runs, "csv", space="y", published=True, published_path=LIT)
    _open(browser, site / "index.html", "?dataset=live1&metric=psnr")
    _css(browser, "[data-testid=export-view]")[0].click()
    view = browser.downloads / "cirbench-view-y.csv"
    _wait(browser, view.is_file)
    head = view.read_text(encoding="utf-8").splitlines()[0]
    assert head.startswith("model,setting,published,live1/10/psnr,live1/20/psnr")


@browser_test
def test_lower_is_better_metric_sorts_ascending(browser, tmp_path):
    build_site([_lower_psnrb(SMALL, tmp_path / "run")], tmp_path / "site")
    _open(browser, tmp_path / "site" / "index.html", "?sort=live1/10/psnrb")
    values = [v for _, v in _column(browser, "live1/10/psnrb") if v is not None]
    assert values == sorted(values) and len(values) == 3


@browser_test
def test_done_when_classic5_with_published_rows(browser, data_root, tmp_path):
    """The issue's scenario on Classic5 at QF 10 and 20, with the JPEG input and a fast model in place of
    promptcir-compact (same checks, a fraction of the time)."""
    sys.path.insert(0, str(tmp_path))
    (tmp_path / "sitemodels_c5.py").write_text(MODELS)
    try:
        assert main(["run", "--models", "jpeg,sitemodels_c5:soft", "--datasets", "classic5", "--qf", "10,20",
                     "--save-images", "--data-root", str(data_root), "--out", str(tmp_path / "run")]) == 0
    finally:
        sys.path.remove(str(tmp_path))
    assert main(["site", str(tmp_path / "run"), "--published", "--out", str(tmp_path / "site")]) == 0
    index = tmp_path / "site" / "index.html"
    _open(browser, index)
    report = list(csv.DictReader(io.StringIO(render([tmp_path / "run"], "csv"))))
    for rec in report:
        for metric in ("psnr", "ssim", "psnrb"):
            cell = _css(browser, f'[data-testid=row][data-model="{rec["model"]}"] [data-testid=cell]'
                                 f'[data-dataset=classic5][data-qf="{rec["qf"]}"][data-metric="{metric}"]')
            assert float(cell[0].get_attribute("data-value")) == float(rec[metric])
    assert _css(browser, "[data-testid=row][data-published=true]")
    _css(browser, '[data-testid=sort][data-key="classic5/10/psnr"]')[0].click()
    _wait(browser, lambda: _query(browser).get("sort") == "classic5/10/psnr")
    url = browser.current_url
    browser.get(url)
    _wait(browser, lambda: _css(browser, "[data-testid=row]"))
    values = [v for _, v in _column(browser, "classic5/10/psnr") if v is not None]
    assert values == sorted(values, reverse=True)
    _open(browser, index, "?dataset=classic5&qf=20")
    assert {c.get_attribute("data-qf") for c in _css(browser, "[data-testid=cell]")} == {"20"}
    assert browser.execute_script("return document.documentElement.scrollWidth") <= 1400
    _css(browser, "[data-testid=images]")[0].click()
    _wait(browser, lambda: browser.execute_script(
        "return [...document.querySelectorAll('[data-testid=compare] img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length") >= 2)
