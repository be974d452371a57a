"""The guessbot with numbered replies: every reply of a game is unique, so a reply delivered twice
or never shows in the replies themselves. Used by the scale-out test and benchmark.

    convoflow run tests/support/numbered_guessbot.py --channel all
"""

import random

from convoflow.adapters.telegram import TelegramOptions
from convoflow import ask, dialog, send_message

HIGHEST = 16
telegram_options = TelegramOptions(overall_max_rate=0, group_max_rate=0)
"""Flood limits off: the fake Bot API has none, and the figures are about convoflow."""


@dialog()
def draw_secret() -> int:
    return random.randint(1, HIGHEST)


@dialog(version="1.0")
def main():
    yield send_message(f"Guess a number between 1 and {HIGHEST}.")
    secret = yield draw_secret()
    guesses = 0
    while True:
        guess = yield ask(f"Guess {guesses + 1}?", parse=int, retry="Numbers only, please.")
        guesses += 1
        if guess == secret:
            break
        yield send_message(f"{guess} is too {'low' if guess < secret else 'high'}.")
    yield send_message(f"Yes, {secret}! Found in {guesses}.")
    return guesses


def expected_replies(secret: int) -> list[str]:
    """Every reply of a game played by bisection, in order."""
    replies = [f"Guess a number between 1 and {HIGHEST}.", "Guess 1?"]
    low, high, guesses = 1, HIGHEST, 0
    while True:
        guess = (low + high) // 2
        guesses += 1
        if guess == secret:
            return [*replies, f"Yes, {secret}! Found in {guesses}."]
        replies += [f"{guess} is too {'low' if guess < secret else 'high'}.", f"Guess {guesses + 1}?"]
        low, high = (guess + 1, high) if guess < secret else (low, guess - 1)
