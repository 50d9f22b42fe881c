"""The dashboard's first load in headless Chromium: bytes over the wire and time to the guest list.

Shared by the suite's dashboard section and the dashboard's browser tests
(tests/web/test_dashboard.py), so that both measure the same way: Debian's Chromium
(``/usr/bin/chromium``), headless, driven by Playwright, against a daemon on loopback.

* **First load**: a new browser context opens ``/ui/`` and waits until the network is idle;
  the figure is the sum of the response bodies' sizes as they came over the wire (compressed,
  as the browser asked for them).
* **Time to the guest list**: logged in as ``user`` once, then a load of the page by that
  logged-in tab, from the navigation until guest ``guest``'s row is visible. The time from
  *Log in* to the row is given too; it includes the password check (a deliberately slow hash),
  which is the account store's cost, not the page's.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = Path("/usr/bin/chromium")
#: The built page (``./dev/test`` builds it, from web/).
STATIC = REPO / "sysadmd" / "web" / "static" / "index.html"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def missing() -> str | None:
    """Why the dashboard cannot be measured here, or None."""
    try:
        import playwright.sync_api  # noqa: F401, PLC0415
    except ImportError:
        return "Playwright is not installed (pip install playwright)"
    if not CHROMIUM.exists():
        return f"Chromium is missing ({CHROMIUM}; Debian: apt-get install chromium)"
    if not STATIC.exists():
        return f"the built dashboard is missing ({STATIC}; ./dev/test builds it)"
    return None


def log_in(page: Page, user: str, password: str) -> None:
    page.get_by_label("User name").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def guest_row(page: Page, name: str) -> Locator:
    return page.locator(
        "table.guests tbody tr", has=page.get_by_role("rowheader", name=name, exact=True)
    )


def first_load(browser: Browser, url: str) -> dict[str, int]:
    """The bytes of ``url``'s first load (every response body, as sent), and the responses."""
    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        sizes: list[int] = []
        page.on(
            "requestfinished", lambda request: sizes.append(request.sizes()["responseBodySize"])
        )
        page.goto(url)
        page.wait_for_load_state("networkidle")
        return {"bytes": sum(sizes), "responses": len(sizes)}
    finally:
        context.close()


def time_to_guest_list(
    browser: Browser, url: str, user: str, password: str, guest: str
) -> dict[str, float]:
    """Seconds from *Log in* to guest ``guest``'s row, and from a load of the page by the
    logged-in tab to that row."""
    from playwright.sync_api import expect  # noqa: PLC0415

    context = browser.new_context(ignore_https_errors=True)
    try:
        page = context.new_page()
        page.goto(url)
        log_in(page, user, password)
        started = time.monotonic()
        expect(guest_row(page, guest)).to_be_visible()
        logged_in = time.monotonic() - started
        started = time.monotonic()
        page.reload()
        expect(guest_row(page, guest)).to_be_visible()
        loaded = time.monotonic() - started
        return {"after_log_in_s": logged_in, "after_load_s": loaded}
    finally:
        context.close()


def measure(url: str, user: str, password: str, guest: str, loads: int = 1) -> dict[str, Any]:
    """Both figures in a browser of its own; the time to the guest list is the best of
    ``loads`` loads (each in a new context)."""
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            result: dict[str, Any] = {"first_load": first_load(browser, url)}
            times = [time_to_guest_list(browser, url, user, password, guest) for _ in range(loads)]
            result["after_load_s"] = [t["after_load_s"] for t in times]
            result["after_log_in_s"] = [t["after_log_in_s"] for t in times]
            return result
        finally:
            browser.close()
