"""What the page-level Chromium tests share: launch flags and polling (the `browser`
fixture is in conftest.py).

Debian's Chromium through Playwright's ``executable_path`` (never a downloaded
browser); a test module marks itself with `NEEDS_CHROMIUM` so that it is
skipped, with the way to enable it, where /usr/bin/chromium is missing.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest
from playwright.async_api import Page

from tests.test_browser import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS

__all__ = ["ARGS", "ARTIFACTS", "CHROMIUM", "NEEDS_CHROMIUM", "by_id", "until"]

# Pages play the teacher's microphone without a click, as after a user's first gesture.
ARGS = [*CHROMIUM_ARGS, "--autoplay-policy=no-user-gesture-required"]

NEEDS_CHROMIUM = pytest.mark.skipif(
    not os.path.exists(CHROMIUM),
    reason=f"needs Debian's Chromium at {CHROMIUM}: `apt-get install chromium` "
    "(the CI script installs it)",
)

# What a failed wait prints: the page's own state (window.sabaq) and its visible text.
DIAGNOSE = (
    "JSON.stringify({state: window.sabaq && window.sabaq.state,"
    " text: document.body && document.body.innerText.slice(0, 1500)})"
)


def by_id(test_id: str) -> str:
    """The CSS selector of an element's `data-testid`."""
    return f'[data-testid="{test_id}"]'


async def until(
    page: Page, expression: str, what: str, timeout: float = 30, diagnose: str = DIAGNOSE
) -> Any:
    """Poll a JS expression until it is truthy (its value), or fail saying what and why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            value = await page.evaluate(expression)
            if value:
                return value
        except Exception:  # navigation in progress, element missing: try again
            pass
        await asyncio.sleep(0.1)
    try:
        details = await page.evaluate(diagnose)
    except Exception as exc:  # the page itself is gone
        details = f"(no page state: {exc})"
    raise AssertionError(f"timed out waiting for: {what}\npage: {str(details)[:3000]}")
