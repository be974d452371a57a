"""A checkout: send a payment link, then wait for the payment provider's `paid` event, the user
typing "cancel", or 15 minutes, whichever comes first.

    convoflow run bots/checkout.py

The link carries this conversation's key (`session_key()`); the provider's callback hands it
back with the event, e.g. `await engine.signal(SessionKey.parse(key), "paid", {...}, event_id)`
(or `POST /events`). A conversation left unanswered for an hour ends with a short note
(`idle_timeout` and `on_idle`).
"""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import quote

from convoflow import Option, ask, dialog, now, send_message, session_key, wait_first

PAY_WITHIN = timedelta(minutes=15)
PRODUCTS = {"beans": ("Coffee beans", 1200), "mug": ("A mug", 800)}

idle_timeout = timedelta(hours=1)
"""A conversation waiting that long for the user (or the payment) ends, after `on_idle`."""


@dialog(version="1.0")
def on_idle():
    yield send_message("This checkout has expired. Send /start to begin again.")


@dialog(version="1.0")
def main():
    item = yield ask(
        "What would you like to buy?",
        choices=[Option(f"{name}, {cents / 100:.2f} EUR", code) for code, (name, cents) in PRODUCTS.items()],
    )
    name, cents = PRODUCTS[item]
    key = yield session_key()
    deadline = (yield now()) + PAY_WITHIN
    yield send_message(f"Pay {cents / 100:.2f} EUR for {name.lower()} here: "
                       f"https://pay.example/checkout?session={quote(key, safe='')}&item={item}")
    yield send_message("I'll wait 15 minutes for the payment. Type \"cancel\" to stop.")
    while True:
        left = (deadline - (yield now())).total_seconds()
        woke = yield wait_first(answer=True, events=("paid",), timeout=max(0.0, left))
        if woke.kind == "event":
            paid = woke.value if isinstance(woke.value, dict) else {}
            yield send_message(f"Payment received, thank you! Order {paid.get('order', '?')} is on its way.")
            return "paid"
        if woke.kind == "timeout":
            yield send_message("The payment link has expired; nothing was charged. Send /start to try again.")
            return "expired"
        if isinstance(woke.value, str) and woke.value.strip().lower() == "cancel":
            yield send_message("Cancelled; nothing was charged.")
            return "cancelled"
        yield send_message("Still waiting for your payment. Type \"cancel\" to stop.")
