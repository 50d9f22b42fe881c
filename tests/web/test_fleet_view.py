"""The dashboard's fleet view in a real browser: the pinned Crossbar.io router, three simulated
hosts joined to it, and one host's dashboard reaching all three through the router."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import Daemon
from fleetkit import Fleet, fleet
from test_dashboard import AXE, DESKTOP, PHONE, SCREENSHOTS, browser, log_in

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Locator, Page, expect  # noqa: E402

pytestmark = pytest.mark.e2e

__all__ = ["browser", "fleet"]  # the fixtures


def dashboard(fleet: Fleet, host: str) -> str:
    return f"{fleet.url(host)}/ui/"


def open_host(
    browser: Browser,
    fleet: Fleet,
    host: str,
    *,
    bypass_csp: bool = False,
    size: dict[str, int] = DESKTOP,
) -> Page:
    """``host``'s own dashboard, logged in as its local admin."""
    context = browser.new_context(
        ignore_https_errors=True,
        viewport=size,  # type: ignore[arg-type]
        bypass_csp=bypass_csp,
    )
    page = context.new_page()
    page.goto(dashboard(fleet, host))
    log_in(page, "admin", fleet.hosts[host].password)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    return page


def connect(page: Page, fleet: Fleet, user: str) -> None:
    page.get_by_role("button", name="Fleet", exact=True).click()
    page.get_by_label("Router user").fill(user)
    page.get_by_label("Ticket").fill(fleet.tickets[user])
    page.get_by_role("button", name="Connect").click()


def host_row(page: Page, host: str) -> Locator:
    return page.locator(
        "table.hosts tbody tr", has=page.get_by_role("rowheader", name=host, exact=True)
    )


def guest_row(page: Page, host: str, guest: str) -> Locator:
    return page.get_by_role("table", name=f"Guests of {host}").locator(
        "tbody tr", has=page.get_by_role("rowheader", name=guest, exact=True)
    )


@pytest.fixture
def errors() -> Iterator[list[str]]:
    seen: list[str] = []
    yield seen
    assert not [e for e in seen if "Content Security Policy" in e], seen


def test_the_fleet_view_manages_three_hosts_through_the_router(
    browser: Browser, fleet: Fleet, errors: list[str]
) -> None:
    page = open_host(browser, fleet, "h1")
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    connect(page, fleet, "alice")
    expect(page.get_by_role("status").first).to_contain_text("as alice (router role admin)")
    for host in ("h1", "h2", "h3"):
        row = host_row(page, host)
        expect(row).to_contain_text("simulated iohyve")
        expect(row).to_contain_text(re.compile(r"\d{4}-\d\d-\d\dT"))
    # The router's ticket is kept in memory only: nothing of it in the page's storage.
    stored = page.evaluate("() => JSON.stringify({...sessionStorage, ...localStorage})")
    assert fleet.tickets["alice"] not in stored
    page.get_by_role("button", name="Open h2").click()
    row = guest_row(page, "h2", "guest-h2")
    expect(row).to_contain_text("stopped")
    expect(page.get_by_role("heading", name="ISOs")).to_be_visible()
    expect(page.get_by_role("table", name="Tasks of h2")).to_be_visible()
    # The console is a direct connection to the guest's host: a link to its own dashboard.
    link = row.get_by_role("link", name="Console of guest-h2 on h2")
    expect(link).to_have_attribute("href", f"{fleet.url('h2')}/ui/#console/guest-h2")
    page.evaluate("window.__same = true")
    row.get_by_role("button", name="Start").click()
    # The row changes live, from h2's guests event through the router.
    expect(row).to_contain_text("running", timeout=15_000)
    assert page.evaluate("window.__same") is True
    if os.environ.get("SYSADMD_SCREENSHOTS") == "1":
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "fleet-desktop.png"), full_page=True)
    row.get_by_role("button", name="Force stop").click()
    expect(row).to_contain_text("stopped", timeout=15_000)
    page.context.close()


def test_the_console_link_opens_the_guest_on_its_own_host(browser: Browser, fleet: Fleet) -> None:
    page = open_host(browser, fleet, "h1")
    connect(page, fleet, "alice")
    page.get_by_role("button", name="Open h3").click()
    href = (
        guest_row(page, "h3", "guest-h3")
        .get_by_role("link", name="Console of guest-h3 on h3")
        .get_attribute("href")
    )
    page.context.close()
    # h3's own dashboard, logged in to h3, opens that guest's console directly.
    assert href is not None
    other = browser.new_context(ignore_https_errors=True).new_page()
    other.goto(href)
    log_in(other, "admin", fleet.hosts["h3"].password)
    expect(other.get_by_role("heading", name="Console: guest-h3")).to_be_visible()
    expect(other.get_by_label("Console of guest-h3")).to_be_visible()
    other.context.close()


def test_an_operators_start_is_refused_in_the_routers_words(browser: Browser, fleet: Fleet) -> None:
    page = open_host(browser, fleet, "h1")
    connect(page, fleet, "olga")
    page.get_by_role("button", name="Open h3").click()
    row = guest_row(page, "h3", "guest-h3")
    expect(row).to_contain_text("stopped")
    row.get_by_role("button", name="Start").click()
    refusal = row.get_by_role("status")
    expect(refusal).to_contain_text("wamp.error.not_authorized")
    expect(refusal).to_contain_text("sysadmd.h3.sysadm.iohyve.start")
    expect(row).to_contain_text("stopped")
    page.context.close()


def test_the_host_list_follows_hosts_leaving_and_joining(browser: Browser, fleet: Fleet) -> None:
    page = open_host(browser, fleet, "h1")
    connect(page, fleet, "alice")
    expect(host_row(page, "h3")).to_be_visible()
    fleet.hosts["h3"].crash()
    # The router's session meta-events redraw the list: no reload, no polling.
    expect(host_row(page, "h3")).to_have_count(0, timeout=15_000)
    expect(host_row(page, "h2")).to_be_visible()
    fleet.start("h3")
    expect(host_row(page, "h3")).to_be_visible(timeout=15_000)
    page.context.close()


def test_a_wrong_ticket_is_refused(browser: Browser, fleet: Fleet) -> None:
    page = open_host(browser, fleet, "h1")
    page.get_by_role("button", name="Fleet", exact=True).click()
    page.get_by_label("Router user").fill("alice")
    page.get_by_label("Ticket").fill("not the ticket")
    page.get_by_role("button", name="Connect").click()
    expect(page.get_by_role("alert")).to_contain_text("the router refused the connection")
    expect(page.locator("table.hosts")).to_have_count(0)
    page.context.close()


@pytest.mark.parametrize("size", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_the_fleet_view_has_no_serious_accessibility_violation(
    browser: Browser, fleet: Fleet, size: dict[str, int]
) -> None:
    if not AXE.exists():
        pytest.fail(f"axe-core is missing ({AXE}); ./dev/test installs it")
    page = open_host(browser, fleet, "h1", bypass_csp=True, size=size)
    problems: list[str] = []

    def check(view: str) -> None:
        page.add_script_tag(path=str(AXE))
        result = page.evaluate(
            "async () => (await axe.run(document)).violations"
            ".map(v => [v.impact, v.id, v.help, v.nodes.length])"
        )
        problems.extend(
            f"{view}: {impact} {rule} ({help_}, {n} nodes)"
            for impact, rule, help_, n in result
            if impact in ("serious", "critical")
        )

    page.get_by_role("button", name="Fleet", exact=True).click()
    expect(page.get_by_label("Ticket")).to_be_visible()
    check("fleet login")
    page.get_by_label("Router user").fill("alice")
    page.get_by_label("Ticket").fill(fleet.tickets["alice"])
    page.get_by_role("button", name="Connect").click()
    page.get_by_role("button", name="Open h1").click()
    expect(guest_row(page, "h1", "guest-h1")).to_be_visible()
    expect(page.get_by_role("table", name="Tasks of h1")).to_be_visible()
    check("fleet host")
    if os.environ.get("SYSADMD_SCREENSHOTS") == "1" and size == PHONE:
        page.screenshot(path=str(SCREENSHOTS / "fleet-phone.png"), full_page=True)
    assert problems == [], problems
    page.context.close()


def test_without_a_router_there_is_no_fleet_entry(tmp_path: Path, browser: Browser) -> None:
    alone = Daemon(tmp_path / "state")
    try:
        _scheme, where = alone.addresses[0]
        page = browser.new_context(ignore_https_errors=True).new_page()
        page.goto(f"https://{where}/ui/")
        log_in(page, "admin", alone.password)
        expect(page.get_by_role("button", name="Host", exact=True)).to_be_visible()
        expect(page.get_by_role("button", name="Fleet", exact=True)).to_have_count(0)
        page.context.close()
    finally:
        alone.stop()


def test_the_view_connects_again_when_the_router_comes_back(browser: Browser, fleet: Fleet) -> None:
    """Last in this module: it restarts the router the other tests share."""
    page = open_host(browser, fleet, "h1")
    connect(page, fleet, "alice")
    page.get_by_role("button", name="Open h2").click()
    expect(guest_row(page, "h2", "guest-h2")).to_be_visible()
    fleet.router.stop()
    expect(page.get_by_text("connecting again")).to_be_visible(timeout=15_000)
    fleet.router.start()
    # With the ticket it kept in memory, the page logs in again by itself, and the hosts,
    # which join again too, come back into the list.
    expect(page.get_by_text("Connected to")).to_be_visible(timeout=40_000)
    for host in ("h1", "h2", "h3"):
        expect(host_row(page, host)).to_be_visible(timeout=40_000)
    expect(guest_row(page, "h2", "guest-h2")).to_be_visible(timeout=15_000)
    page.context.close()
