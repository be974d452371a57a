"""Guess the number: a loop, a recorded random draw and validated input.

    convoflow run bots/guessbot.py
"""

import random

from convoflow import ask, dialog, send_message


@dialog()
def draw_secret() -> int:
    # A step: drawn once, then replayed from the record, so the secret never changes mid-game.
    return random.randint(1, 10)


@dialog(version="1.0")
def main():
    yield send_message("Guess a number between 1 and 10.")
    secret = yield draw_secret()
    guesses = 0
    while True:
        guess = yield ask("Your guess?", parse=int, retry="Numbers only, please.")
        guesses += 1
        if guess == secret:
            break
        yield send_message("Higher!" if guess < secret else "Lower!")
    yield send_message(f"You got it in {guesses} {'guess' if guesses == 1 else 'guesses'}! Send anything to play again.")
    return guesses
