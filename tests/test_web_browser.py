"""The chat page in a real headless Chromium (Debian's package, driven by Playwright), against real
`convoflow run ... --channel web` processes: a whole game typed, clicked and keyed, a reload and a
server restart in the middle of it, and a reminder that arrives without typing.

With CI=true a missing Chromium fails the test; elsewhere it is skipped, naming the install command.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.support.convoflow_process import ConvoflowProcess
from tests.support.web_harness import GUESSBOT, SECRET

CHROMIUM = "/usr/bin/chromium"
INSTALL = "apt-get update && apt-get install -y chromium   (as root; Debian's Chromium)"
# No sandbox (CI runs as root); no background networking, updates or sync, which a closed network
# refuses many at a time and which only slow the start.
FLAGS = ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"]
WAIT_MS = 20_000


def _browser_missing() -> str | None:
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        return f"Chromium is not installed at {CHROMIUM}: {INSTALL}"
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: .venv/bin/pip install -e '.[test]'"
    return None


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the browser test cannot run: {missing}")
        pytest.skip(f"SKIPPED THE BROWSER TEST: {missing}")
    from playwright.async_api import async_playwright

    async with async_playwright() as driver:
        launched = await driver.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


def web_process(tmp_path: Path, bot: str, store: str, name: str) -> ConvoflowProcess:
    return ConvoflowProcess(tmp_path / f"{name}.log", bot, "--channel", "web", "--store", store,
                            settings={"CONVOFLOW_WEB_SECRET": SECRET})


async def bot_texts(page: Any) -> list[str]:
    return [text.strip() for text in await page.locator("#log .bot").all_inner_texts()]


async def wait_for_bot_messages(page: Any, count: int) -> list[str]:
    await page.wait_for_function(f"document.querySelectorAll('#log .bot').length >= {count}", timeout=WAIT_MS)
    return await bot_texts(page)


QUESTION = re.compile(r"Your guess\?\s*1\s*2\s*3\s*4\s*5\s*6\s*7\s*8\s*9\s*10")
"""The question as the page shows it: its text, then its ten buttons."""


async def test_a_whole_game_in_a_real_browser_with_a_reload_a_restart_and_a_reminder(
    browser: Any, tmp_path: Path
) -> None:
    store = f"sqlite:///{tmp_path / 'web.db'}"
    server = await web_process(tmp_path, GUESSBOT, store, "guessbot").start()
    restarted: ConvoflowProcess | None = None
    try:
        page = await (await browser.new_context()).new_page()
        await page.goto(server.url + "/web/")
        assert await page.get_attribute("#log", "aria-live") == "polite"
        shown = await wait_for_bot_messages(page, 2)  # the page began the conversation by itself
        assert shown[0] == "Guess a number between 1 and 10." and QUESTION.fullmatch(shown[1]), shown
        low, high, guesses = 1, 10, 0
        while True:
            guess = (low + high) // 2
            way = ("type", "click", "keyboard")[guesses % 3]
            if way == "type":
                await page.fill("#text", str(guess))
                await page.press("#text", "Enter")
            else:
                button = page.locator("#log .bot").last.get_by_role("button", name=str(guess), exact=True)
                if way == "click":
                    await button.click()
                else:  # keyboard only: focus the button, press Enter
                    await button.focus()
                    await page.keyboard.press("Enter")
            guesses += 1
            shown = await wait_for_bot_messages(page, len(shown) + 2)
            users = [text.strip() for text in await page.locator("#log .user").all_inner_texts()]
            assert users[-1] == str(guess), users
            if shown[-2].startswith("You got it"):
                break
            assert shown[-2] in ("Higher!", "Lower!") and QUESTION.fullmatch(shown[-1]), shown
            low, high = (guess + 1, high) if shown[-2] == "Higher!" else (low, guess - 1)
            if guesses == 1:  # reload: the page shows the whole conversation again, and goes on
                before = shown
                await page.reload()
                assert await wait_for_bot_messages(page, len(before)) == before
                assert [t.strip() for t in await page.locator("#log .user").all_inner_texts()] == users
            if guesses == 2:  # the server restarts on the same port; the page reconnects by itself
                assert await server.stop() == 0
                restarted = web_process(tmp_path, GUESSBOT, store, "guessbot-again")
                restarted.port = server.port
                server = await restarted.start()
        assert shown[-2] == f"You got it in {guesses}!"
        trophy = page.locator("#log .bot img")
        assert await trophy.get_attribute("alt") == f"You got it in {guesses}!"
        assert await trophy.evaluate("image => image.complete && image.naturalWidth > 0")
        assert await page.locator("#log .bot a[download]").inner_text() == "Your score card"
        await page.screenshot(path=str(tmp_path / "web-guessbot.png"), full_page=True)

        reminders = await web_process(tmp_path, "bots/reminder.py", f"sqlite:///{tmp_path / 'reminders.db'}",
                                      "reminder").start()
        try:
            page = await (await browser.new_context()).new_page()
            await page.goto(reminders.url + "/web/")
            assert (await wait_for_bot_messages(page, 1))[0].startswith("Hi! I keep reminders for you.")
            await page.fill("#text", "remind me in 2 seconds to stretch")
            await page.press("#text", "Enter")
            assert (await wait_for_bot_messages(page, 2))[1] == "Okay, in 2 seconds I'll remind you to stretch."
            # nothing typed from here: the timer's message is pushed over the stream
            assert (await wait_for_bot_messages(page, 3))[2] == "⏰ Reminder: stretch"
            await page.screenshot(path=str(tmp_path / "web-reminder.png"), full_page=True)
            assert await reminders.stop() == 0
        finally:
            await reminders.kill()
        assert await server.stop() == 0
    finally:
        await server.kill()
