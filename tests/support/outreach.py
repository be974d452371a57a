"""A bot for tests of what comes from outside: its own conversation waits for a `paid` event, and
`promo` is a conversation the bot starts (by `POST /conversations`, `convoflow start` or
`convoflow broadcast`), continued by the user's answer."""

from convoflow import ask, dialog, send_message, wait_for_event


@dialog(version="1")
def main():
    yield send_message("Waiting for the payment.")
    paid = yield wait_for_event("paid")
    order = paid.get("order", "?") if isinstance(paid, dict) else "?"
    yield send_message(f"Paid order {order}.")


@dialog(version="1")
def promo(code):
    answer = yield ask(f"Spring sale, code {code}. Interested?")
    yield send_message(f"Noted: {answer}.")
