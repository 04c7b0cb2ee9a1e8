"""A real browser for the tests of the browser pages (player, kiosk, staff tablet, dashboard).

Debian's headless Chromium (``/usr/bin/chromium``, installed by ``scripts/system-deps.sh test``), driven by
Playwright for Python (the ``dev`` extra), which downloads no browser of its own here. One Chromium process
per test session (``chromium``); each test gets its own browser context and page (``page``: no cookies,
storage or cache shared between tests), connected over the DevTools protocol from the test's own event loop
(pytest-asyncio runs each test in a loop of its own, and a Playwright connection belongs to one loop).

Nothing is skipped: if Chromium cannot start, the test fails with Chromium's own words. A failing test leaves
``failure.png`` (a screenshot of the page) and ``console.txt`` (the page's console and errors) in its
``tmp_path``. An exception the page did not catch fails the test (``pageerror``).

Pages that load ES modules need http:// (never file://): ``serve_static`` serves folders with aiohttp on a
free loopback port.

Registered for the whole suite by ``pytest_plugins`` in tests/conftest.py; the fixtures are ``chromium``
and ``page``.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator, Generator, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest
from aiohttp import web
from playwright.async_api import ConsoleMessage, Page, ViewportSize, async_playwright

from tests.support.broker import free_port
from tests.support.wait import TIMEOUT_S, until_blocking

CHROMIUM = Path("/usr/bin/chromium")
VIEWPORT = ViewportSize(width=1280, height=720)
# What Playwright itself passes to a headless Chromium it launches, less what concerns its own pipe: no
# sandbox (the tests run as root in CI), no first-run UI, no background work competing with the test.
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--disable-renderer-backgrounding",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--mute-audio",
    "--password-store=basic",
    "--use-mock-keychain",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)
_OUTCOME = pytest.StashKey[dict[str, pytest.TestReport]]()


@dataclass
class Chromium:
    """The session's browser process; ``endpoint`` is its DevTools address (``connect_over_cdp``)."""

    process: subprocess.Popen[bytes]
    profile: Path
    log: Path  # chromium's own output (stdout and stderr)
    endpoint: str = ""

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:] if self.log.exists() else ""


def launch_chromium(profile: Path, binary: Path = CHROMIUM) -> Chromium:
    """Starts headless Chromium with a fresh profile; fails with the reason if it does not come up."""
    if not binary.exists():
        pytest.fail(
            f"{binary} is missing: the browser tests need Debian's chromium (scripts/system-deps.sh test)"
        )
    profile.mkdir(parents=True, exist_ok=True)
    log = profile.parent / f"{profile.name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(binary), *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    browser = Chromium(process, profile, log)
    port_file = profile / "DevToolsActivePort"

    def listening() -> bool:
        if process.poll() is not None:
            msg = f"chromium exited with {process.returncode}: {browser.output()}"
            raise AssertionError(msg)
        lines = port_file.read_text().splitlines() if port_file.exists() else []
        return len(lines) >= 2 and lines[0].isdigit()

    until_blocking(listening, 30, what="chromium's DevToolsActivePort", detail=browser.output)
    browser.endpoint = f"http://127.0.0.1:{port_file.read_text().splitlines()[0]}"
    return browser


def stop_chromium(browser: Chromium) -> None:
    if browser.process.poll() is None:
        browser.process.terminate()
        try:
            browser.process.wait(10)
        except subprocess.TimeoutExpired:
            browser.process.kill()
            browser.process.wait()


@pytest.fixture(scope="session")
def chromium() -> Iterator[Chromium]:
    """One headless Chromium for the session, its profile in a temporary folder removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="edge-chromium-"))
    browser = launch_chromium(folder / "profile")
    try:
        yield browser
    finally:
        stop_chromium(browser)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Keeps each phase's report on the test, so ``page`` knows at teardown whether the test failed."""
    report = yield
    item.stash.setdefault(_OUTCOME, {})[report.when] = report
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    reports = request.node.stash.get(_OUTCOME, {})
    return any(report.failed for report in reports.values())


@pytest.fixture
async def page(chromium: Chromium, request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Page]:
    """A fresh page in a fresh browser context of the session's Chromium (1280x720, default timeouts as long as
    ``tests.support.wait.until`` waits). ``page.errors`` lists exceptions the page did not catch."""
    console: list[str] = []
    errors: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        console.append(f"{message.type}: {message.text}")

    def on_error(error: Exception) -> None:
        errors.append(str(error))
        console.append(f"pageerror: {error}")

    async with async_playwright() as playwright:
        browser = await playwright.chromium.connect_over_cdp(chromium.endpoint)
        context = await browser.new_context(viewport=VIEWPORT)
        context.set_default_timeout(TIMEOUT_S * 1000)
        try:
            tab = await context.new_page()
            tab.on("console", on_console)
            tab.on("pageerror", on_error)
            yield tab
            if _failed(request):
                with contextlib.suppress(Exception):
                    await tab.screenshot(path=str(tmp_path / "failure.png"), full_page=True)
            (tmp_path / "console.txt").write_text("\n".join(console) + "\n")
        finally:
            await context.close()
    assert errors == [], f"the page threw: {errors}"


@contextlib.asynccontextmanager
async def serve_static(folders: Mapping[str, Path]) -> AsyncIterator[str]:
    """Serves each folder under its prefix (``{"/player": REPO / "player"}``) with aiohttp on a free loopback
    port, no caching; yields the base URL (``http://127.0.0.1:PORT``). JS modules get their MIME type."""

    async def no_store(_request: web.Request, response: web.StreamResponse) -> None:
        response.headers["Cache-Control"] = "no-store"

    app = web.Application()
    app.on_response_prepare.append(no_store)
    for prefix, folder in folders.items():
        app.router.add_static(prefix, folder)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()
