"""Long texts cut into parts: within the limit, whole graphemes, nothing trimmed, nothing blank."""

from __future__ import annotations

import random

import regex
from hypothesis import given, strategies as st

from convoflow.adapters.text_parts import split_text, utf16_units

CLUSTERS = ["e\u0301", "👨\u200d👩\u200d👧\u200d👦", "1\ufe0f\u20e3", "🇩🇪", "\r\n", "😀", "ß", "字"]


def boundaries(text: str) -> set[int]:
    """Positions (in code points) between two grapheme clusters of `text`."""
    ends, at = {0}, 0
    for cluster in regex.findall(r"\X", text):
        at += len(cluster)
        ends.add(at)
    return ends


def assert_well_cut(text: str, parts: list[str], limit: int) -> None:
    assert "".join(parts) == text
    assert all(utf16_units(part) <= limit for part in parts)
    assert all(part.strip() for part in parts)
    whole = boundaries(text)
    cut = 0
    for part in parts[:-1]:
        cut += len(part)
        assert cut in whole, f"cut at {cut} splits {text[cut - 3:cut + 3]!r}"


@given(st.text(st.characters(codec=None, exclude_categories=())))
def test_utf16_units_count_two_for_astral_characters_and_one_for_the_rest(text: str) -> None:
    # a lone surrogate (JSON can carry one) counts as the one unit it is
    assert utf16_units(text) == sum(2 if ord(char) > 0xFFFF else 1 for char in text)


def test_short_text_is_one_part_and_blank_text_none() -> None:
    assert split_text("hi there", 4096) == ["hi there"]
    assert split_text("", 4096) == [] and split_text(" \n\t ", 4096) == []


def test_a_long_run_of_spaces_never_becomes_a_blank_part() -> None:
    text = "x" * 4000 + " " * 5000 + "tail"
    parts = split_text(text, 4096)
    assert_well_cut(text, parts, 4096)
    assert parts[-1].endswith("tail")


def test_cuts_prefer_line_breaks_then_spaces_and_keep_every_character() -> None:
    lines = "".join(f"line {n}: {'word ' * 9}\n" for n in range(400))
    parts = split_text(lines, 4096)
    assert_well_cut(lines, parts, 4096)
    assert all(part.endswith("\n") for part in parts)
    words = "word  " * 1500  # double spaces stay double
    parts = split_text(words, 4096)
    assert_well_cut(words, parts, 4096)
    assert all(part.endswith(" ") for part in parts[:-1])
    solid = "x" * 7001
    assert [len(part) for part in split_text(solid, 4096)] == [4096, 2905]


def test_grapheme_clusters_are_never_cut() -> None:
    for cluster in CLUSTERS:
        for offset in range(1, 12):
            text = "a" * (4096 - offset) + cluster * 3 + "b"
            assert_well_cut(text, split_text(text, 4096), 4096)


def test_limits_count_utf16_units() -> None:
    emoji = "😀" * 3000  # 6000 UTF-16 units
    parts = split_text(emoji, 4096)
    assert [len(p) for p in parts] == [2048, 952] and "".join(parts) == emoji


def test_random_texts_keep_every_promise() -> None:
    rng = random.Random(11)
    alphabet = ["a", "b", " ", "  ", "\n", "\t", *CLUSTERS]
    for _ in range(60):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(50, 900)))
        if not text.strip():
            continue
        limit = rng.randint(16, 120)
        assert_well_cut(text, split_text(text, limit), limit)


def test_whitespace_no_part_can_carry_is_the_only_thing_left_out() -> None:
    parts = split_text("x" + " " * 10_000, 4096)
    assert parts == ["x" + " " * 4095]
    parts = split_text("a" + " " * 10_000 + "b", 4096)
    assert parts[0].startswith("a") and parts[-1].endswith("b") and all(p.strip() for p in parts)


def test_a_cluster_longer_than_a_whole_part_is_cut_between_code_points() -> None:
    zalgo = "e" + "\u0301" * 5000
    parts = split_text(zalgo, 4096)
    assert "".join(parts) == zalgo and all(utf16_units(p) <= 4096 for p in parts)


def test_a_custom_measure_such_as_escaped_length() -> None:
    def escaped(text: str) -> int:
        return len(text) + 4 * text.count("&")

    text = "&" * 1000
    parts = split_text(text, 3000, escaped)
    assert [escaped(p) for p in parts] == [3000, 2000] and "".join(parts) == text
