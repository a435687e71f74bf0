#!/usr/bin/env python3
"""The README's screenshots of ``cirbench site``, from the ``samples`` dataset only (photographs scikit-image
ships under CC0 or "no known copyright restrictions"), so no third-party image is committed.

    python docs/site_screenshots.py            # writes docs/site-leaderboard.png and docs/site-images.png

Runs jpeg and promptcir-compact on ``samples`` at QF 10 and 20 with ``--save-images`` (a minute on CPU), builds
the site and photographs it in headless Chromium (Debian's chromium + chromium-driver; no network).
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DOCS = Path(__file__).resolve().parent


def _driver(width: int):
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must never reach the network
    os.environ["SE_AVOID_STATS"] = "true"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--hide-scrollbars", f"--user-data-dir={tempfile.mkdtemp(prefix='cirbench-shots-')}",
                f"--window-size={width},900"):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)


def _shot(driver, url: str, out: Path, prepare=None, width: int = 1400) -> None:
    from PIL import Image

    driver.set_window_size(width, 900)
    driver.get(url)
    time.sleep(1.0)
    if prepare:
        prepare(driver)
        time.sleep(0.5)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(width, height + 140)  # headless: the outer size includes no visible chrome
    time.sleep(0.5)
    png = Image.open(io.BytesIO(driver.get_screenshot_as_png())).convert("RGB")
    png = png.crop((0, 0, min(png.width, width), min(png.height, height)))
    png.save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="cirbench-site-shots-"))
    site = work / "site"
    cli = [sys.executable, "-m", "cirbench"]
    # Relative folders, so the provenance drawer in the picture names no machine path.
    subprocess.run([*cli, "run", "--models", "jpeg,promptcir-compact", "--datasets", "samples", "--qf", "10,20",
                    "--save-images", "--out", "runs/samples"], check=True, cwd=work)
    subprocess.run([*cli, "site", "runs/samples", "--out", "site", "--title", "cirbench leaderboard (samples)"],
                   check=True, cwd=work)
    driver = _driver(1400)
    try:
        def drawer(d):
            d.find_element("css selector", '[data-testid=row][data-model="promptcir-compact"] '
                                           "[data-testid=details]").click()

        _shot(driver, (site / "index.html").as_uri() + "?sort=samples/10/psnr", DOCS / "site-leaderboard.png",
              drawer)

        def zoom(d):
            d.find_element("css selector", "[data-testid=zoom-in]").click()

        _shot(driver, (site / "pages" / "samples" / "jpeg-q10.html").as_uri() + "?image=chelsea.png",
              DOCS / "site-images.png", zoom)
    finally:
        driver.quit()
    return 0


if __name__ == "__main__":
    sys.exit(main())
