"""A bot with interruptions for the tests: a form, a nap between its questions, and handlers that
resume, ask questions of their own, cancel and restart."""

from __future__ import annotations

from typing import Any

from convoflow import Option, ask, dialog, send_message, sleep


@dialog()
def main() -> Any:
    yield send_message("Hi! A short form.")
    name = yield ask("Your name?")
    colour = yield ask("Favourite colour?", choices=[Option("Red", "red"), Option("Blue", "blue")])
    yield send_message("Thinking for a minute...")
    yield sleep(60)
    yield send_message(f"Done, {name}: {colour}.")


@dialog()
def help_dialog() -> Any:
    yield send_message("Help: answer each question; /cancel stops, /start begins again.")


@dialog()
def feedback() -> Any:
    stars = yield ask("How many stars?", choices=["1", "2", "3"])
    yield send_message(f"Thanks for {stars} stars.")


@dialog()
def quit_dialog() -> Any:
    sure = yield ask("Really quit?", choices=[Option("Yes", True), Option("No", False)])
    if sure:
        yield send_message("Bye.")
        return "cancel"
    return None


@dialog()
def over_dialog() -> Any:
    yield send_message("From the top.")
    return "restart"


interrupts = {"/help": help_dialog, "help": help_dialog, "What can I do?": help_dialog,
              "/feedback": feedback, "/quit": quit_dialog, "/over": over_dialog}
