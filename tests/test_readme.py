"""The README's commands work as typed: every `convoflow ...` line in its code blocks is one the
command line takes, the way to get `convoflow` on PATH is said before any of them, and every option
of `convoflow run` is described."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from convoflow.adapters.host import cli

README = (Path(__file__).resolve().parents[1] / "README.md").read_text()
ENV_ASSIGNMENT = re.compile(r"[A-Z][A-Z0-9_]*=\S*")


def shell_blocks(text: str) -> list[str]:
    """The README's code blocks that are not Python (its shell commands)."""
    return [block for language, block in re.findall(r"```(\w*)\n(.*?)```", text, re.DOTALL) if language != "python"]


def convoflow_commands(text: str) -> list[list[str]]:
    """The arguments of every `convoflow` invocation in those blocks, as a shell splits them."""
    found = []
    for block in shell_blocks(text):
        for command in block.replace("\\\n", " ").splitlines():
            for part in re.split(r"&&|\|", command):
                words = shlex.split(part, comments=True)
                while words and ENV_ASSIGNMENT.fullmatch(words[0]):
                    words.pop(0)
                if words and words[0] in ("convoflow", ".venv/bin/convoflow"):
                    found.append(words[1:])
    return found


COMMANDS = convoflow_commands(README)


def test_the_readme_shows_the_commands() -> None:
    assert len(COMMANDS) >= 10
    assert any(args[:1] == ["sessions"] for args in COMMANDS) and ["--version"] in COMMANDS


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(args) for args in COMMANDS])
def test_every_command_in_the_readme_is_one_convoflow_takes(args: list[str]) -> None:
    try:
        cli.parser().parse_args(args)
    except SystemExit as exit:
        assert exit.code == 0, f"convoflow {' '.join(args)} is refused"


def test_the_readme_says_how_to_type_convoflow_before_it_is_typed() -> None:
    first_bare = min(README.index(f"\nconvoflow {args[0]}") for args in COMMANDS if f"\nconvoflow {args[0]}" in README)
    activation = README.index("source .venv/bin/activate")
    assert README.index("<!-- /run-command -->") < activation < first_bare
    assert "`.venv/bin/convoflow`" in README


@pytest.mark.parametrize("option", [action.option_strings[-1] for action in
                                    cli.parser()._subparsers._group_actions[0].choices["run"]._actions  # type: ignore[union-attr]
                                    if action.option_strings and action.dest != "help"])
def test_every_run_option_is_in_the_readme(option: str) -> None:
    assert f"`{option}" in README


def test_the_readme_shows_every_channel_at_once() -> None:
    assert "--channel all" in README and "`all` serves every server channel" in README
