#!/usr/bin/env python3
"""Opens a report in headless Chromium (Debian's chromium + chromedriver, driven by Selenium) to check
it as a reader's browser shows it, or to take a screenshot of it.

    browser.py check REPORT.html               every <img> loaded? console errors? (exit 1 if not)
    browser.py screenshot REPORT.html OUT.png [--width 1280] [--height 900] [--scroll-to CSS]

No network: Chromium is started with its background services off, and Selenium is told where the
driver is (it never looks one up).
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path

CHROMIUM = os.environ.get("WIT_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("WIT_CHROMEDRIVER", "/usr/bin/chromedriver")


def available():
    """Why no browser can be used here, or None."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not Path(p).exists()]
    if missing:
        return f"{', '.join(missing)} not installed (apt-get install chromium chromium-driver; scripts/setup does it)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is missing (scripts/requirements.txt)"
    return None


class Page:
    """A page open in headless Chromium."""

    def __init__(self, path, width=1280, height=900):
        os.environ.setdefault("SE_OFFLINE", "true")
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = tempfile.mkdtemp(prefix="wit-chromium-")
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-quic", "--allow-file-access-from-files", f"--user-data-dir={self.profile}",
                  f"--window-size={width},{height}"]:
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
        self.driver.set_page_load_timeout(120)
        self.driver.get(Path(path).resolve().as_uri())

    def images(self):
        """[(src, loaded)] of every <img>: loaded means complete with a natural width."""
        js = "return Array.from(document.images).map(i => [i.getAttribute('src'), i.complete && i.naturalWidth > 0])"
        return [tuple(x) for x in self.driver.execute_script(js)]

    def console_errors(self):
        return [e for e in self.driver.get_log("browser") if e.get("level") in ("SEVERE", "ERROR")]

    def screenshot(self, out, scroll_to=None):
        if scroll_to:
            self.driver.execute_script(f"document.querySelector({json.dumps(scroll_to)}).scrollIntoView()")
        self.driver.save_screenshot(str(out))

    def close(self):
        self.driver.quit()
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("page")
    s = sub.add_parser("screenshot")
    s.add_argument("page")
    s.add_argument("out")
    s.add_argument("--width", type=int, default=1280)
    s.add_argument("--height", type=int, default=900)
    s.add_argument("--scroll-to")
    a = ap.parse_args()
    why = available()
    if why:
        sys.exit(f"no browser: {why}")
    if a.cmd == "check":
        with Page(a.page) as p:
            images, errors = p.images(), p.console_errors()
        broken = [src for src, ok in images if not ok]
        print(f"{len(images)} images, {len(broken)} not loaded, {len(errors)} console errors")
        for x in broken[:10] + errors[:10]:
            print(" ", x)
        sys.exit(1 if broken or errors else 0)
    with Page(a.page, a.width, a.height) as p:
        p.screenshot(a.out, a.scroll_to)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
