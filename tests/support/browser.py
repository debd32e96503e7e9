"""Headless Chromium driven through Selenium, for the chat page's tests: Debian's `chromium` and
`chromium-driver` (installed here with apt where the tests run as root), one fresh profile per
browser so two browsers are two strangers, and waits that poll the page with a deadline."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
APT_PACKAGES = ("chromium", "chromium-driver")
ARTIFACTS = Path(__file__).resolve().parents[2] / ".artifacts" / "browser"
LAUNCH_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--window-size=1280,860",
)
T = TypeVar("T")


def chromium_or_skip() -> tuple[str, str]:
    """Chromium and its driver, installed with apt if missing and we may; skip only where no
    browser can be had, and never on CI (CI is set), where the test fails instead."""
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        reason = _install_with_apt()
        if reason:
            message = f"headless Chromium is needed for the chat page's tests ({reason})"
            if os.environ.get("CI"):
                pytest.fail(f"{message}; CI must run these tests")
            pytest.skip(message)
    return CHROMIUM, CHROMEDRIVER


def _install_with_apt() -> str | None:
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "install Debian's chromium and chromium-driver: apt-get install chromium chromium-driver"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", *APT_PACKAGES]
    result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600, check=False)
    if result.returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, env=env, timeout=600, check=False)
        result = subprocess.run(install, capture_output=True, text=True, env=env, timeout=600, check=False)
    if result.returncode != 0 or not os.path.exists(CHROMEDRIVER):
        return f"`apt-get install {' '.join(APT_PACKAGES)}` failed: {result.stderr.strip()[-500:]}"
    return None


class Browser:
    """One headless Chromium with a new, empty profile (its own cookies and localStorage)."""

    def __init__(self, chromium: str, chromedriver: str, page_url: str, name: str) -> None:
        self.page_url = page_url
        self.name = name
        self.profile = Path(tempfile.mkdtemp(prefix="chat-page-profile-"))
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*LAUNCH_FLAGS, f"--user-data-dir={self.profile}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
        self.driver.set_script_timeout(15)

    # ------------------------------------------------------------------ waiting

    def wait_for(self, probe: Callable[[], T | None], what: str, deadline_seconds: float = 15.0) -> T:
        """Poll `probe` until it gives something truthy; fail with what the page showed."""
        deadline = time.monotonic() + deadline_seconds
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            try:
                value = probe()
                if value:
                    return value
            except (StaleElementReferenceException, WebDriverException) as error:
                last_error = error
            time.sleep(0.05)
        raise AssertionError(f"[{self.name}] no {what} within {deadline_seconds} s; the page shows:\n"
                             f"{self.visible_text()[-2000:]}\n{last_error or ''}\nconsole: {self.console()[-1500:]}")

    def element(self, selector: str, deadline_seconds: float = 15.0) -> WebElement:
        return self.wait_for(lambda: next((e for e in self.driver.find_elements(By.CSS_SELECTOR, selector)
                                           if e.is_displayed()), None), f"visible {selector}", deadline_seconds)

    def text_of(self, selector: str, expected: str, deadline_seconds: float = 15.0) -> str:
        """Wait until an element matching `selector` shows exactly `expected` (text, not HTML)."""
        return self.wait_for(lambda: expected if expected in self.texts(selector) else None,
                             f"{selector} showing {expected!r}", deadline_seconds)

    def texts(self, selector: str) -> list[str]:
        return list(self.js("return [...document.querySelectorAll(arguments[0])].map(e => e.textContent)", selector))

    def js(self, script: str, *args: Any) -> Any:
        return self.driver.execute_script(script, *args)

    def js_probe(self, script: str, *args: Any) -> Callable[[], Any]:
        """A probe for `wait_for` that runs `script` in the page."""
        return lambda: self.js(script, *args)

    # ------------------------------------------------------------------ acting

    def open(self, query: str = "") -> None:
        self.driver.get(self.page_url + query)
        self.wait_for(lambda: self.js("return document.body.dataset.ready === 'true'"), "page ready")

    def fill(self, selector: str, text: str) -> None:
        field = self.element(selector)
        field.clear()
        # Set the value as a paste would: typing 32,000 keys takes minutes, and a newline typed is
        # Enter, which sends the message so far.
        if len(text) > 200 or "\n" in text:
            self.js("arguments[0].value = arguments[1]", field, text)
        else:
            field.send_keys(text)

    def click(self, selector: str) -> None:
        self.element(selector).click()

    def visible_text(self) -> str:
        try:
            return str(self.js("return document.body.innerText"))
        except WebDriverException as error:
            return f"(page unreadable: {error.msg})"

    def console(self) -> str:
        try:
            return "\n".join(entry["message"] for entry in self.driver.get_log("browser"))
        except WebDriverException:
            return ""

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.driver.save_screenshot(str(path))
        return path

    def close(self) -> None:
        try:
            self.driver.quit()
        finally:
            shutil.rmtree(self.profile, ignore_errors=True)


def keep_failure_artifacts(browsers: list[Browser], test_name: str) -> list[Path]:
    """A failed test's screenshots, page text and console, one set per browser, in .artifacts/browser/."""
    kept = []
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in test_name)[:150]
    for browser in browsers:
        stem = ARTIFACTS / f"{safe}-{browser.name}"
        try:
            kept.append(browser.screenshot(stem.with_suffix(".png")))
            stem.with_suffix(".txt").write_text(f"{browser.visible_text()}\n\n--- console ---\n{browser.console()}\n")
        except WebDriverException:
            continue
    return kept
