"""The guessbot with its numbers as buttons (press one or type it), a picture and a file at the
end: what the web page shows. Used by the web channel's tests and benchmark.

    convoflow run tests/support/web_guessbot.py --channel web
"""

from convoflow import Media, ask, dialog, send_message
from convoflow.bots.guessbot import draw_secret

NUMBERS = [str(n) for n in range(1, 11)]
TROPHY = ("data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' width='64' height='64'%3E"
          "%3Ccircle cx='32' cy='32' r='30' fill='%23f0a800'/%3E%3C/svg%3E")
SCORES = "data:text/plain,guesses"


@dialog(version="1.0")
def main():
    yield send_message("Guess a number between 1 and 10.")
    secret = yield draw_secret()
    guesses = 0
    while True:
        guess = int((yield ask("Your guess?", choices=NUMBERS)))
        guesses += 1
        if guess == secret:
            break
        yield send_message("Higher!" if guess < secret else "Lower!")
    yield send_message(Media("image", TROPHY, f"You got it in {guesses}!"))
    yield send_message(Media("file", SCORES, "Your score card"))
    return guesses
