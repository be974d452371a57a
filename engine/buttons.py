"""Button payloads: what a channel puts into a button so that a press comes back as its option's
answer.

Platforms cap a button's payload (Telegram's callback data at 64 bytes, Slack's button value at
2,000 characters). An answer whose JSON fits travels as that JSON, so any press, even on an old
message, still says what was chosen. A longer answer travels as a reference `#SEQ.INDEX` to the
reply and option it belongs to, and the Engine resolves it through the session's recent replies:
nothing is ever truncated. A reference is never valid JSON, so the two forms cannot be confused.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from convoflow.types import JSON

_REFERENCE = re.compile(r"#(\d{1,18})\.(\d{1,6})")


@dataclass(frozen=True)
class ButtonRef:
    """Option `index` (0-based) of the reply numbered `seq` in a session."""

    seq: int
    index: int


def encode_button(answer: JSON, seq: int, index: int, limit_bytes: int) -> str:
    """The payload for option `index` of reply `seq`: the answer's JSON when it fits `limit_bytes`
    (UTF-8), else a reference."""
    data = json.dumps(answer, ensure_ascii=False, separators=(",", ":"))
    if len(data.encode()) <= limit_bytes:
        return data
    return f"#{seq}.{index}"


def decode_button(data: str) -> JSON | ButtonRef:
    """What a pressed button's payload stands for. Raises ValueError for a payload we never made."""
    match = _REFERENCE.fullmatch(data)
    if match:
        return ButtonRef(int(match[1]), int(match[2]))
    try:
        value: JSON = json.loads(data, parse_constant=_not_json)
    except (ValueError, RecursionError):
        raise ValueError(f"button payload {data[:80]!r} is neither JSON nor a reference") from None
    return value


def _not_json(constant: str) -> None:
    """Python's json reads NaN and Infinity, which no answer we encode holds (nor could a store keep)."""
    raise ValueError(f"{constant} is not JSON")
