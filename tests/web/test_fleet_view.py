"""The dashboard's fleet view in a real browser: the pinned Crossbar.io router, three simulated
hosts joined to it, and one host's dashboard reaching all three through the router."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from daemon import Daemon
from fleetkit import Fleet, fleet
from test_dashboard import AXE, DESKTOP, PHONE, SCREENSHOTS, browser, serious_violations

from benchmarks.dashboard import log_in

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


def iso_row(page: Page, host: str, iso: str) -> Locator:
    return page.get_by_role("table", name=f"ISOs of {host}").locator(
        "tbody tr", has=page.get_by_role("rowheader", name=iso, exact=True)
    )


def task_row(page: Page, host: str, iso: str) -> Locator:
    return page.get_by_role("table", name=f"Tasks of {host}").locator(
        "tbody tr", has=page.get_by_role("rowheader", name=iso, exact=True)
    )


def iso_dir(fleet: Fleet, host: str, iso: str) -> Path:
    """Where the simulated ``host`` keeps the ISO ``iso`` (its dataset's directory)."""
    return fleet.state(host) / "simulator" / "iohyve" / "ISO" / iso


def seed_iso(fleet: Fleet, host: str, iso: str) -> None:
    """Puts ``iso`` in ``host``'s library, as a finished fetch leaves it."""
    where = iso_dir(fleet, host, iso)
    where.mkdir(parents=True)
    (where / iso).write_bytes(b"\0" * 4096)


@contextlib.contextmanager
def iso_server(name: str, size: int, *, stall: bool = False) -> Iterator[str]:
    """``name`` served over HTTP on loopback (half of it, then nothing, with ``stall``)."""
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("isoserver.py")),
            name,
            str(size),
            *(["stall"] if stall else []),
        ],
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert server.stdout is not None
        yield f"http://127.0.0.1:{int(server.stdout.readline())}/{name}"
    finally:
        server.terminate()
        server.wait()


def fetch(page: Page, url: str) -> None:
    page.get_by_label("URL").fill(url)
    page.get_by_role("button", name="Fetch", exact=True).click()


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


def test_fetch_an_iso_on_one_host_through_the_router(browser: Browser, fleet: Fleet) -> None:
    with iso_server("fleet-fetched.iso", 4 * 1024 * 1024) as url:
        page = open_host(browser, fleet, "h1")
        connect(page, fleet, "alice")
        page.get_by_role("button", name="Open h2").click()
        expect(page.get_by_role("table", name="ISOs of h2")).to_be_visible()
        # A URL h2 refuses: its words, beside the form.
        fetch(page, "http://127.0.0.1:9/")  # no file name to keep the ISO under
        form = page.get_by_role("form", name="Fetch an ISO on h2")
        expect(form.get_by_role("status")).to_contain_text("sysadmd.error.400")
        fetch(page, url)
        expect(form.get_by_role("status")).to_have_text("")
        # The bar follows h2's dispatcher events, published through the router.
        bar = page.get_by_role("progressbar", name="Fetching fleet-fetched.iso")
        expect(bar).to_have_attribute("aria-valuenow", "100", timeout=20_000)
        expect(iso_row(page, "h2", "fleet-fetched.iso")).to_be_visible(timeout=10_000)
        expect(task_row(page, "h2", "fleet-fetched.iso")).to_contain_text("succeeded")
    assert (iso_dir(fleet, "h2", "fleet-fetched.iso") / "fleet-fetched.iso").is_file()
    # h2's fetch went to h2 only.
    assert not iso_dir(fleet, "h1", "fleet-fetched.iso").exists()
    page.get_by_role("button", name="Open h1").click()
    expect(page.get_by_role("table", name="ISOs of h1")).to_be_visible()
    expect(iso_row(page, "h1", "fleet-fetched.iso")).to_have_count(0)
    expect(page.get_by_role("progressbar")).to_have_count(0)
    page.context.close()


@pytest.mark.parametrize("where", ["task", "fetch"])
def test_kill_a_running_fetch_through_the_router(
    browser: Browser, fleet: Fleet, where: str
) -> None:
    iso = f"fleet-slow-{where}.iso"
    with iso_server(iso, 4 * 1024 * 1024, stall=True) as url:
        page = open_host(browser, fleet, "h1")
        connect(page, fleet, "alice")
        page.get_by_role("button", name="Open h3").click()
        fetch(page, url)
        bar = page.get_by_role("progressbar", name=f"Fetching {iso}")
        expect(bar).to_have_attribute("aria-valuenow", "50", timeout=20_000)
        task = task_row(page, "h3", iso)
        expect(task).to_contain_text("running")
        if where == "task":
            task.get_by_role("button", name=f"Kill {iso}").click()
        else:
            page.get_by_role("button", name=f"Cancel fetching {iso}").click()
        item = page.locator("ul.fetches li", has_text=iso)
        expect(item).to_contain_text("cancelled", timeout=15_000)
        expect(item.get_by_role("button")).to_have_count(0)
        expect(task).to_contain_text("cancelled")
        expect(task).to_contain_text("killed")
        expect(task.get_by_role("button")).to_have_count(0)
        expect(iso_row(page, "h3", iso)).to_have_count(0)
    assert not iso_dir(fleet, "h3", iso).exists()
    page.context.close()


def test_rename_and_remove_an_iso_through_the_router(browser: Browser, fleet: Fleet) -> None:
    seed_iso(fleet, "h3", "fleet-old.iso")
    page = open_host(browser, fleet, "h1")
    connect(page, fleet, "alice")
    page.get_by_role("button", name="Open h3").click()
    row = iso_row(page, "h3", "fleet-old.iso")
    # The library's sizes come through the router too (isolibrary).
    expect(row.get_by_role("cell").first).to_contain_text("4,096 bytes")
    row.get_by_role("button", name="Rename").click()
    row.get_by_label("New name for fleet-old.iso").fill("fleet-new.iso")
    row.get_by_role("button", name="Rename").click()
    renamed = iso_row(page, "h3", "fleet-new.iso")
    expect(renamed).to_be_visible()
    expect(row).to_have_count(0)
    assert iso_dir(fleet, "h3", "fleet-new.iso").is_dir()
    assert not iso_dir(fleet, "h3", "fleet-old.iso").exists()
    # Remove asks again; Keep keeps it.
    renamed.get_by_role("button", name="Remove").click()
    expect(renamed).to_contain_text("Remove fleet-new.iso?")
    renamed.get_by_role("button", name="Keep").click()
    expect(renamed.get_by_role("button", name="Rename")).to_be_visible()
    assert iso_dir(fleet, "h3", "fleet-new.iso").is_dir()
    renamed.get_by_role("button", name="Remove").click()
    renamed.get_by_role("button", name="Remove").click()
    expect(renamed).to_have_count(0)
    assert not iso_dir(fleet, "h3", "fleet-new.iso").exists()
    page.context.close()


def test_an_operators_remove_is_refused_in_the_routers_words(
    browser: Browser, fleet: Fleet
) -> None:
    seed_iso(fleet, "h1", "fleet-kept.iso")
    page = open_host(browser, fleet, "h1")
    connect(page, fleet, "olga")
    page.get_by_role("button", name="Open h1").click()
    row = iso_row(page, "h1", "fleet-kept.iso")
    row.get_by_role("button", name="Remove").click()
    row.get_by_role("button", name="Remove").click()
    refusal = row.get_by_role("status")
    expect(refusal).to_contain_text("wamp.error.not_authorized")
    expect(refusal).to_contain_text("sysadmd.h1.sysadm.iohyve.rmiso")
    expect(row).to_be_visible()
    assert (iso_dir(fleet, "h1", "fleet-kept.iso") / "fleet-kept.iso").is_file()
    page.context.close()


def test_the_host_list_follows_hosts_leaving_and_joining(browser: Browser, fleet: Fleet) -> None:
    page = open_host(browser, fleet, "h1")
    connect(page, fleet, "alice")
    page.get_by_role("button", name="Open h3").click()
    expect(guest_row(page, "h3", "guest-h3")).to_be_visible()
    fleet.hosts["h3"].crash()
    # The router's session meta-events redraw the list: no reload, no polling.
    expect(host_row(page, "h3")).to_have_count(0, timeout=15_000)
    expect(page.get_by_text("h3 left the router.")).to_be_visible()
    expect(host_row(page, "h2")).to_be_visible()
    fleet.start("h3")
    expect(host_row(page, "h3")).to_be_visible(timeout=15_000)
    # The host opened comes back with it.
    expect(guest_row(page, "h3", "guest-h3")).to_be_visible(timeout=15_000)
    expect(page.get_by_role("table", name="ISOs of h3")).to_be_visible()
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
        problems.extend(serious_violations(page, view))

    page.get_by_role("button", name="Fleet", exact=True).click()
    expect(page.get_by_label("Ticket")).to_be_visible()
    check("fleet login")
    page.get_by_label("Router user").fill("alice")
    page.get_by_label("Ticket").fill(fleet.tickets["alice"])
    page.get_by_role("button", name="Connect").click()
    page.get_by_role("button", name="Open h1").click()
    expect(guest_row(page, "h1", "guest-h1")).to_be_visible()
    # With an ISO row (Rename, Remove), a task and its progress bar (Cancel, Kill).
    iso = f"fleet-axe-{size['width']}.iso"
    seed_iso(fleet, "h1", f"fleet-axe-library-{size['width']}.iso")
    with iso_server(iso, 4 * 1024 * 1024, stall=True) as url:
        fetch(page, url)
        bar = page.get_by_role("progressbar", name=f"Fetching {iso}")
        expect(bar).to_have_attribute("aria-valuenow", "50", timeout=20_000)
        expect(task_row(page, "h1", iso)).to_contain_text("running")
        expect(iso_row(page, "h1", f"fleet-axe-library-{size['width']}.iso")).to_be_visible()
        check("fleet host")
        if os.environ.get("SYSADMD_SCREENSHOTS") == "1":
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            tag = "phone" if size == PHONE else "desktop"
            page.screenshot(path=str(SCREENSHOTS / f"fleet-{tag}.png"), full_page=True)
        page.get_by_role("button", name=f"Cancel fetching {iso}").click()
        expect(task_row(page, "h1", iso)).to_contain_text("cancelled", timeout=15_000)
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
