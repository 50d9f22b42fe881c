"""The dashboard in a real browser (Debian's Chromium, headless, driven by Playwright)
against the daemon in simulate mode: every step a person takes, through the page."""

from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from daemon import Daemon

from benchmarks.dashboard import (
    ARGS,
    CHROMIUM,
    STATIC,
    first_load,
    guest_row,
    log_in,
    time_to_guest_list,
)

playwright_sync = pytest.importorskip("playwright.sync_api")
from playwright.sync_api import Browser, Page, expect  # noqa: E402

pytestmark = pytest.mark.e2e

AXE = Path(__file__).resolve().parents[2] / "web" / "node_modules" / "axe-core" / "axe.min.js"
DESKTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "docs" / "screenshots"


#: The console's server side is its own piece of work; its test joins once it is there.
def _require(path: Path, what: str) -> None:
    if not path.exists():
        pytest.fail(f"{what} is missing ({path}); ./dev/test installs and builds it")


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    _require(STATIC, "the built dashboard")
    state = tmp_path_factory.mktemp("web") / "state"
    running = Daemon(state)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    _require(CHROMIUM, "Debian's chromium")
    with playwright_sync.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


def serious_violations(page: Page, view: str) -> list[str]:
    """axe-core's serious and critical findings on what ``page`` shows now, one line each
    naming ``view`` (the page must have been opened with its CSP bypassed)."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate(
        "async () => (await axe.run(document)).violations"
        ".map(v => [v.impact, v.id, v.help, v.nodes.length])"
    )
    return [
        f"{view}: {impact} {rule} ({help_}, {n} nodes)"
        for impact, rule, help_, n in result
        if impact in ("serious", "critical")
    ]


def base(daemon: Daemon) -> str:
    scheme, where = daemon.addresses[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{where}/ui/"


def open_page(
    browser: Browser,
    daemon: Daemon,
    size: dict[str, int] = DESKTOP,
    *,
    bypass_csp: bool = False,
    scheme: str = "light",
) -> Page:
    context = browser.new_context(
        ignore_https_errors=True,
        viewport=size,  # type: ignore[arg-type]
        bypass_csp=bypass_csp,
        color_scheme=scheme,  # type: ignore[arg-type]
    )
    page = context.new_page()
    page.goto(base(daemon))
    return page


def admin(browser: Browser, daemon: Daemon, size: dict[str, int] = DESKTOP) -> Page:
    page = open_page(browser, daemon, size)
    log_in(page, "admin", daemon.password)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    return page


def iso_row(page: Page, name: str) -> Any:
    return page.locator(
        "table.isos tbody tr", has=page.get_by_role("rowheader", name=name, exact=True)
    )


#: ``sysadmd-admin`` from this tree, whatever the installed script points at.
ADMIN = "import sys; from sysadmd.fleet.admin import main; sys.exit(main(sys.argv[1:]))"


def sim(daemon: Daemon, *argv: str) -> None:
    subprocess.run(
        [
            str(Path(sys.executable).with_name("iohyve-sim")),
            "--root",
            str(daemon.state_dir / "simulator"),
            *argv,
        ],
        check=True,
        capture_output=True,
    )


def test_log_in_and_see_the_guests_again_after_a_load(browser: Browser, daemon: Daemon) -> None:
    """Measured as the benchmark suite measures it (benchmarks/dashboard.py), which judges
    the figure against its 1 s target: a timed assertion here would only measure how busy
    the machine running the tests is. What this test holds is that the guest list appears
    after *Log in*, and after a load of the logged-in tab without logging in again: the
    measuring waits for the guest's row each time and fails when it does not appear."""
    sim(daemon, "create", "seedguest", "8G")
    times = time_to_guest_list(browser, base(daemon), "admin", daemon.password, "seedguest")
    print(
        f"\nguest list {times['after_log_in_s'] * 1000:.0f} ms after 'Log in', "
        f"{times['after_load_s'] * 1000:.0f} ms after a load"
    )


def test_first_load_is_small(browser: Browser, daemon: Daemon) -> None:
    """Measured as the benchmark suite measures it (benchmarks/dashboard.py)."""
    load = first_load(browser, base(daemon))
    print(f"\nfirst load: {load['bytes']} bytes compressed in {load['responses']} responses")
    assert 0 < load["bytes"] < 300 * 1024


def test_the_bundled_packages_licences_are_served(browser: Browser, daemon: Daemon) -> None:
    """xterm.js's minified build carries no notice: the page ships the licences beside it."""
    context = browser.new_context(ignore_https_errors=True)
    notices = context.request.get(base(daemon) + "licenses.txt")
    assert notices.status == 200
    text = notices.text()
    assert "==== @xterm/xterm " in text
    assert "Copyright" in text
    assert "MIT" in text
    context.close()


def test_a_wrong_password_shows_the_apis_message(browser: Browser, daemon: Daemon) -> None:
    page = open_page(browser, daemon)
    log_in(page, "admin", "not the password")
    alert = page.get_by_role("alert")
    expect(alert).not_to_be_empty()
    text = alert.inner_text()
    assert "password" in text.lower() or "login" in text.lower(), text
    page.context.close()


def test_start_changes_the_row_without_reload(browser: Browser, daemon: Daemon) -> None:
    sim(daemon, "create", "startme", "8G")
    page = admin(browser, daemon)
    row = guest_row(page, "startme")
    expect(row).to_contain_text("stopped", timeout=10_000)
    page.evaluate("window.__same = true")
    row.get_by_role("button", name="Start").click()
    expect(row).to_contain_text("running", timeout=10_000)
    expect(row.get_by_role("button", name="Stop", exact=True)).to_be_visible()
    expect(row.get_by_role("button", name="Force stop")).to_be_visible()
    assert page.evaluate("window.__same") is True  # the same page: no reload
    row.get_by_role("button", name="Force stop").click()
    expect(row).to_contain_text("stopped", timeout=10_000)
    page.context.close()


def test_a_change_made_elsewhere_appears_without_reload(browser: Browser, daemon: Daemon) -> None:
    page = admin(browser, daemon)
    expect(page.locator("table.guests")).to_be_visible()
    sim(daemon, "create", "fromoutside", "8G")
    expect(guest_row(page, "fromoutside")).to_be_visible(timeout=10_000)
    page.context.close()


def test_create_and_delete_a_guest(browser: Browser, daemon: Daemon) -> None:
    page = admin(browser, daemon)
    page.get_by_role("button", name="Create guest").click()
    form = page.get_by_role("form", name="Create guest")
    form.get_by_label("Name").fill("bad name!")
    form.get_by_role("button", name="Create").click()
    expect(form.get_by_role("status")).to_contain_text("name")
    form.get_by_label("Name").fill("madehere")
    form.get_by_label("Disk size").fill("4G")
    form.get_by_role("button", name="Create").click()
    row = guest_row(page, "madehere")
    expect(row).to_be_visible()
    row.get_by_role("button", name="Details").click()
    details = page.get_by_role("region", name="Details of madehere")
    expect(
        details.get_by_role("cell", name="disk0", exact=True).or_(
            details.get_by_role("rowheader", name="disk0")
        )
    ).to_be_visible()
    cpu = details.get_by_role("row", name="cpu")
    cpu.get_by_label("cpu").fill("lots")
    cpu.get_by_role("button", name="Save").click()
    expect(cpu.get_by_role("status")).to_contain_text("cpu")  # the API's own words
    cpu.get_by_label("cpu").fill("2")
    cpu.get_by_role("button", name="Save").click()
    expect(cpu.get_by_role("status")).to_have_text("saved")
    expect(
        details.get_by_role("row", name="disk0").get_by_role("button", name="Delete")
    ).to_have_count(0)
    delete = details.get_by_role("button", name="Delete", exact=True).last
    expect(delete).to_be_disabled()
    details.get_by_label("Type madehere to delete this guest").fill("madehere")
    delete.click()
    expect(details.get_by_role("button", name="Delete…")).to_be_disabled()  # iohyve pauses first
    expect(row).to_have_count(0, timeout=20_000)
    page.context.close()


def test_fetch_rename_and_remove_an_iso(browser: Browser, daemon: Daemon) -> None:
    server = subprocess.Popen(
        [
            sys.executable,
            str(Path(__file__).with_name("isoserver.py")),
            "web-test.iso",
            str(4 * 1024 * 1024),
        ],
        stdout=subprocess.PIPE,
        env={"PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    try:
        assert server.stdout is not None
        port = int(server.stdout.readline())
        page = admin(browser, daemon)
        page.get_by_role("button", name="ISOs").click()
        page.get_by_label("URL").fill(f"http://127.0.0.1:{port}/web-test.iso")
        page.get_by_role("button", name="Fetch").click()
        bar = page.get_by_role("progressbar", name="Fetching web-test.iso")
        expect(bar).to_have_attribute("aria-valuenow", "100", timeout=20_000)
        row = iso_row(page, "web-test.iso")
        expect(row).to_be_visible(timeout=10_000)
        # The size in binary units, and the exact byte count of the served file for
        # assistive technology.
        expect(row.get_by_role("cell", name="4,194,304 bytes")).to_contain_text("4.0 MiB")
        row.get_by_role("button", name="Rename").click()
        row.get_by_label("New name for web-test.iso").fill("renamed.iso")
        row.get_by_role("button", name="Rename").click()
        renamed = iso_row(page, "renamed.iso")
        expect(renamed).to_be_visible()
        renamed.get_by_role("button", name="Remove").click()
        expect(renamed).to_contain_text("Remove renamed.iso?")
        renamed.get_by_role("button", name="Remove").click()
        expect(renamed).to_have_count(0)
        page.context.close()
    finally:
        server.terminate()
        server.wait()


def test_upload_an_iso_through_the_form(browser: Browser, daemon: Daemon, tmp_path: Path) -> None:
    """The file goes up as the body of PUT /iso/<name> with the page's token; the bar
    reaches 100 %, the ISO is listed with its size, and the task is in the Tasks view."""
    data = os.urandom(3 * 1024 * 1024 + 17)
    iso = tmp_path / "from-the-page.iso"
    iso.write_bytes(data)
    page = admin(browser, daemon)
    page.get_by_role("button", name="ISOs").click()
    form = page.get_by_role("form", name="Upload ISO")
    form.get_by_label("ISO file").set_input_files(str(iso))
    form.get_by_label("Checksum").fill("sha512:" + hashlib.sha512(data).hexdigest())
    form.get_by_role("button", name="Upload").click()
    bar = form.get_by_role("progressbar", name="Uploading from-the-page.iso")
    expect(bar).to_have_attribute("aria-valuenow", "100", timeout=20_000)
    expect(form.get_by_role("status")).to_contain_text("from-the-page.iso uploaded")
    row = iso_row(page, "from-the-page.iso")
    expect(row.get_by_role("cell", name=f"{len(data):,} bytes")).to_contain_text("3.0 MiB")
    expect(row).to_contain_text("sha512:" + hashlib.sha512(data).hexdigest()[:12])
    stored = daemon.state_dir / "simulator" / "iohyve" / "ISO" / "from-the-page.iso"
    assert (stored / "from-the-page.iso").read_bytes() == data
    page.get_by_role("button", name="Tasks", exact=True).click()
    task = page.get_by_role("row", name="from-the-page.iso")
    expect(task).to_contain_text("succeeded")
    page.context.close()


def test_an_upload_that_does_not_match_its_checksum_shows_the_apis_message(
    browser: Browser, daemon: Daemon, tmp_path: Path
) -> None:
    iso = tmp_path / "mismatch.iso"
    iso.write_bytes(b"not what the checksum says" * 1000)
    page = admin(browser, daemon)
    page.get_by_role("button", name="ISOs").click()
    expect(page.get_by_role("table", name="ISO library")).to_be_visible()
    form = page.get_by_role("form", name="Upload ISO")
    form.get_by_label("ISO file").set_input_files(str(iso))
    form.get_by_label("Checksum").fill("sha256:" + "0" * 64)
    form.get_by_role("button", name="Upload").click()
    note = form.get_by_role("status").filter(has_text="checksum mismatch")
    expect(note).to_contain_text(f"checksum mismatch: expected sha256:{'0' * 64}")
    expect(form.get_by_role("button", name="Cancel")).to_be_hidden()
    expect(form.get_by_role("progressbar")).to_be_hidden()
    # A refusal decided before the body (the name is taken) is shown the same way.
    twice = tmp_path / "twice.iso"
    twice.write_bytes(b"once" * 1000)
    form.get_by_label("ISO file").set_input_files(str(twice))
    form.get_by_label("Checksum").fill("")
    form.get_by_role("button", name="Upload").click()
    expect(form.get_by_role("status")).to_contain_text("twice.iso uploaded")
    form.get_by_label("ISO file").set_input_files(str(twice))
    form.get_by_role("button", name="Upload").click()
    expect(form.get_by_role("status")).to_contain_text(
        "ISO 'twice.iso' already exists; remove or rename it first"
    )
    page.get_by_role("button", name="Tasks", exact=True).click()
    page.get_by_role("button", name="ISOs", exact=True).click()
    expect(page.get_by_role("table", name="ISO library")).to_be_visible()
    expect(iso_row(page, "mismatch.iso")).to_have_count(0)
    page.context.close()


def test_cancel_aborts_an_upload(browser: Browser, daemon: Daemon, tmp_path: Path) -> None:
    big = tmp_path / "cancelled.iso"
    with big.open("wb") as sparse:
        sparse.truncate(1024**3)
    page = admin(browser, daemon)
    page.get_by_role("button", name="ISOs").click()
    form = page.get_by_role("form", name="Upload ISO")
    form.get_by_label("ISO file").set_input_files(str(big))
    form.get_by_role("button", name="Upload").click()
    bar = form.get_by_role("progressbar", name="Uploading cancelled.iso")
    expect(bar).not_to_have_attribute("aria-valuenow", "0", timeout=10_000)
    form.get_by_role("button", name="Cancel").click()
    expect(form.get_by_role("status")).to_have_text("upload cancelled")
    expect(form.get_by_role("button", name="Upload")).to_be_enabled()
    page.get_by_role("button", name="Tasks", exact=True).click()
    task = page.get_by_role("row", name="cancelled.iso")
    expect(task).to_contain_text("cancelled", timeout=10_000)
    page.get_by_role("button", name="ISOs", exact=True).click()
    expect(page.get_by_role("table", name="ISO library")).to_be_visible()
    expect(iso_row(page, "cancelled.iso")).to_have_count(0)
    page.context.close()


def test_the_host_view_shows_identifys_host_name(browser: Browser, daemon: Daemon) -> None:
    """The daemon's host name (rpc/identify; by default the system's, up to the first dot),
    not the address the page was loaded from."""
    expected = socket.gethostname().split(".", 1)[0]
    page = admin(browser, daemon)
    page.get_by_role("button", name="Host", exact=True).click()
    name = page.locator("dt", has_text="Host name").locator("xpath=following-sibling::dd[1]")
    expect(name).to_have_text(expected)
    expect(page).to_have_title(f"{expected} · sysadmd")
    # iohyve's version line names iohyve itself: the row says it once.
    backend = page.locator("dt", has_text="Backend").locator("xpath=following-sibling::dd[1]")
    expect(backend).to_have_text(re.compile(r"^iohyve v0\.7\.9 "))
    page.context.close()


def test_an_operator_sees_no_control_it_cannot_use(browser: Browser, daemon: Daemon) -> None:
    sim(daemon, "create", "watched", "8G")
    subprocess.run(
        [
            sys.executable,
            "-c",
            ADMIN,
            "--state-dir",
            str(daemon.state_dir),
            "user",
            "add",
            "oper",
            "--role",
            "operator",
        ],
        input=b"operator pw 1\n",
        check=True,
        capture_output=True,
    )
    # The daemon reads its accounts again every second; one login after two, so no failed
    # attempt counts toward the lockout of 127.0.0.1 that the other tests share.
    time.sleep(2)
    page = open_page(browser, daemon)
    log_in(page, "oper", "operator pw 1")
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    expect(page.get_by_text("operator (read only)")).to_be_visible()
    row = guest_row(page, "watched")
    expect(row).to_be_visible()
    expect(row.get_by_role("button", name="Console")).to_be_visible()
    for label in ("Start", "Stop", "Force stop"):
        expect(page.get_by_role("button", name=label, exact=True)).to_have_count(0)
    expect(page.get_by_role("button", name="Create guest")).to_have_count(0)
    page.get_by_role("button", name="ISOs").click()
    expect(page.get_by_role("table", name="ISO library")).to_be_visible()
    expect(page.get_by_role("button", name="Fetch")).to_have_count(0)
    expect(page.get_by_role("form", name="Upload ISO")).to_have_count(0)
    expect(page.get_by_label("ISO file")).to_have_count(0)
    expect(page.get_by_role("button", name="Upload")).to_have_count(0)
    page.context.close()


def test_log_out_ends_the_session(browser: Browser, daemon: Daemon) -> None:
    page = admin(browser, daemon)
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_label("User name")).to_be_visible()
    page.reload()
    expect(page.get_by_label("User name")).to_be_visible()
    page.context.close()


@pytest.mark.parametrize(
    ("size", "scheme"),
    [(DESKTOP, "light"), (PHONE, "light"), (DESKTOP, "dark"), (PHONE, "dark")],
    ids=["desktop", "phone", "desktop-dark", "phone-dark"],
)
def test_no_serious_accessibility_violation(
    browser: Browser, daemon: Daemon, size: dict[str, int], scheme: str, tmp_path: Path
) -> None:
    _require(AXE, "axe-core (npm ci in web/)")
    # An ISO in the library, so its row (size included) is checked too.
    listed = tmp_path / "axe-check.iso"
    listed.write_bytes(b"a" * 5000)
    if not (daemon.state_dir / "simulator" / "iohyve" / "ISO" / listed.name).exists():
        sim(daemon, "fetch", f"file://{listed}")
    # The page's own policy forbids the injected checker; only this test lifts it.
    page = open_page(browser, daemon, size, bypass_csp=True, scheme=scheme)
    problems: list[str] = []
    views = ["login"]

    def check(view: str) -> None:
        problems.extend(serious_violations(page, view))

    check("login")
    log_in(page, "admin", daemon.password)
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    for view in ("Guests", "ISOs", "Tasks", "Host"):
        page.get_by_role("button", name=view, exact=True).click()
        page.wait_for_timeout(300)
        views.append(view)
        check(view)
    # The upload form with its bar and its message, after an upload.
    page.get_by_role("button", name="ISOs", exact=True).click()
    form = page.get_by_role("form", name="Upload ISO")
    sent = tmp_path / f"axe-{scheme}-{size['width']}.iso"
    sent.write_bytes(b"u" * 3000)
    form.get_by_label("ISO file").set_input_files(str(sent))
    form.get_by_role("button", name="Upload").click()
    expect(form.get_by_role("status")).to_contain_text("uploaded")
    expect(form.get_by_role("progressbar")).to_be_visible()
    check("ISOs after an upload")
    assert problems == [], problems
    page.context.close()


def test_the_console_shows_the_guest_and_takes_typing(browser: Browser, daemon: Daemon) -> None:
    sim(daemon, "create", "talker", "8G")
    page = admin(browser, daemon)
    row = guest_row(page, "talker")
    row.get_by_role("button", name="Start").click()
    expect(row).to_contain_text("running", timeout=10_000)
    row.get_by_role("button", name="Console").click()
    terminal = page.get_by_label("Console of talker")
    expect(terminal).to_contain_text("login:", timeout=15_000)
    if page.get_by_role("button", name="Take control").is_visible():
        page.get_by_role("button", name="Take control").click()
    expect(page.get_by_role("status").filter(has_text="you have control")).to_be_visible()
    terminal.click()
    page.keyboard.type("root\n")
    page.keyboard.type("uname -a\n")
    expect(terminal).to_contain_text("FreeBSD talker 14.1-RELEASE", timeout=10_000)
    page.context.close()


def test_screenshots_of_the_main_views(browser: Browser, daemon: Daemon, tmp_path: Path) -> None:
    """Shoots every main view at both sizes; SYSADMD_SCREENSHOTS=1 writes them to docs/."""
    target = SCREENSHOTS if os.environ.get("SYSADMD_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    sim(daemon, "create", "webserver", "20G")
    sim(daemon, "set", "webserver", "description=nginx in front of the shop")
    # ISOs of release sizes: fetched small, then grown (sparse) to the size shown.
    for name, length in (
        ("FreeBSD-14.3-RELEASE-amd64-disc1.iso", 1_327_169_536),
        ("debian-13.0.0-amd64-netinst.iso", 790_626_304),
    ):
        stored = daemon.state_dir / "simulator" / "iohyve" / "ISO" / name / name
        if not stored.exists():
            (tmp_path / name).write_bytes(b"iso")
            sim(daemon, "fetch", f"file://{tmp_path / name}")
        os.truncate(stored, length)
    alpine = tmp_path / "alpine-virt-3.22.0-x86_64.iso"
    with alpine.open("wb") as sparse:
        sparse.truncate(64 * 1024**2)
    for size, tag in ((DESKTOP, "desktop"), (PHONE, "phone")):
        page = open_page(browser, daemon, size)
        page.screenshot(path=str(target / f"login-{tag}.png"))
        log_in(page, "admin", daemon.password)
        expect(guest_row(page, "webserver")).to_be_visible()
        page.screenshot(path=str(target / f"guests-{tag}.png"), full_page=True)
        guest_row(page, "webserver").get_by_role("button", name="Details").click()
        expect(page.get_by_role("table", name="Disks")).to_be_visible()
        page.screenshot(path=str(target / f"details-{tag}.png"), full_page=True)
        for view in ("ISOs", "Tasks", "Host"):
            page.get_by_role("button", name=view, exact=True).click()
            expect(page.get_by_role("heading", name=view, level=1)).to_be_visible()
            if view == "ISOs":
                form = page.get_by_role("form", name="Upload ISO")
                form.get_by_label("ISO file").set_input_files(str(alpine))
                if tag == "desktop":
                    form.get_by_role("button", name="Upload").click()
                    expect(form.get_by_role("status")).to_contain_text("uploaded")
                expect(iso_row(page, "FreeBSD-14.3-RELEASE-amd64-disc1.iso")).to_contain_text(
                    "1.2 GiB"
                )
            if view == "Host":
                expect(page.get_by_role("heading", name="Daemon health (/readyz)")).to_be_visible(
                    timeout=15_000
                )
            page.wait_for_timeout(300)
            page.screenshot(path=str(target / f"{view.lower()}-{tag}.png"), full_page=True)
        page.context.close()
    assert len(list(target.glob("*.png"))) >= 12
