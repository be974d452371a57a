"""A bot whose first step stalls while the file named by $SLOW_BOT_GATE exists (a test's way to
hold a turn mid-way in a real process, and kill it there), then asks a question."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from convoflow import ask, dialog, send_message


@dialog()
async def think() -> str:
    gate = Path(os.environ.get("SLOW_BOT_GATE", "/nonexistent/gate"))
    if gate.exists():
        gate.with_suffix(".entered").write_text("in the step")
        while gate.exists():
            await asyncio.sleep(0.05)
    return "thought"


@dialog()
def main() -> Any:
    result = yield think()
    yield send_message(f"I {result}.")
    yield ask("Your name?")
