"""A long text cut into parts a platform accepts, one message each.

Every part fits the limit, as the platform measures it (Telegram counts UTF-16 code units; Slack's
measure is of the escaped text). Cuts fall between grapheme clusters (an accented letter, a family
emoji, a keycap or a flag is never split across two messages), preferably after a line break, else
after a space, and nothing is trimmed: the parts joined are the text. No part is empty or only
whitespace (platforms refuse those). The one exception to "joined, the parts are the text": a run
of whitespace so long that no part can carry it next to something visible; what does not fit is
left out (it would show as nothing).
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from itertools import accumulate
from typing import Callable

import regex

GRAPHEME = regex.compile(r"\X")
"""One extended grapheme cluster (Unicode's UAX #29), what a reader sees as one character."""
LINE_BREAKS = frozenset({"\n", "\r\n", "\r", "\u2028", "\u2029"})


def utf16_units(text: str) -> int:
    """The length Telegram (and JavaScript) count: astral characters take two units (a lone
    surrogate, which JSON can carry, one)."""
    return len(text.encode("utf-16-le", "surrogatepass")) // 2


def split_text(text: str, limit: int, measure: Callable[[str], int] = utf16_units) -> list[str]:
    """`text` in parts of at most `limit` (by `measure`, which must add up over concatenation);
    no parts at all when the text shows nothing (empty or whitespace only)."""
    if not text or text.isspace():
        return []
    if measure(text) <= limit:
        return [text]
    pieces = _pieces(text, limit, measure)
    ends = [0, *accumulate(measure(piece) for piece in pieces)]
    shown = _next_shown(pieces)
    parts: list[str] = []
    start, count = 0, len(pieces)
    while shown[start] < count:
        first = shown[start]
        if ends[first + 1] - ends[start] > limit:  # whitespace no part can carry: leave it out
            start = bisect_left(ends, ends[first + 1] - limit)
        if ends[count] - ends[start] <= limit:
            parts.append("".join(pieces[start:]))
            break
        cut = _cut(pieces, ends, shown, start, limit)
        parts.append("".join(pieces[start:cut]))
        start = cut
    return parts


def _pieces(text: str, limit: int, measure: Callable[[str], int]) -> list[str]:
    """The grapheme clusters of `text`; one too long for a whole part (a letter under thousands of
    combining marks) is broken into its code points, as nothing else can fit."""
    pieces: list[str] = []
    for cluster in GRAPHEME.findall(text):
        if measure(cluster) <= limit:
            pieces.append(cluster)
        else:
            pieces.extend(cluster)
    return pieces


def _next_shown(pieces: list[str]) -> list[int]:
    """For each position, the index of the first piece from there on that is not whitespace
    (len(pieces) when none is); one entry more, for the end."""
    shown = [len(pieces)] * (len(pieces) + 1)
    for index in range(len(pieces) - 1, -1, -1):
        shown[index] = shown[index + 1] if pieces[index].isspace() else index
    return shown


def _cut(pieces: list[str], ends: list[int], shown: list[int], start: int, limit: int) -> int:
    """Where the part that begins at `start` ends: after the last line break, else the last space,
    that leaves it at least half full, else as late as fits. A cut is good only if the part shows
    something and the rest can begin with a part that does too."""
    count = len(pieces)
    last = bisect_right(ends, ends[start] + limit) - 1  # the latest cut that fits

    def good(cut: int) -> bool:
        rest = shown[cut]
        return shown[start] < cut and rest < count and ends[rest + 1] - ends[cut] <= limit

    half = ends[start] + limit // 2
    for wanted in (lambda piece: piece in LINE_BREAKS, str.isspace):
        for cut in range(last, start, -1):
            if ends[cut] < half:
                break
            if wanted(pieces[cut - 1]) and good(cut):
                return cut
    for cut in range(last, start, -1):
        if good(cut):
            return cut
    return last  # no cut leaves a rest that shows: the whitespace after this part is left out
