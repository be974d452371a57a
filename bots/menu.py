"""A menu loop written with `goto`: each pass replaces the running dialog, so a session's state
stays small however long the user keeps going.

    convoflow run bots/menu.py
"""

from convoflow import Option, ask, dialog, goto, send_message

MENU = [Option("Tell me a fact", "fact"), Option("Count up", "count"), Option("Quit", "quit")]

FACTS = [
    "Octopuses have three hearts.",
    "Honey never spoils.",
    "A day on Venus is longer than its year.",
]


@dialog()
def main(visits: int = 0, counter: int = 0):
    choice = yield ask("What would you like?", choices=MENU, retry="Pick one of the options.")
    if choice == "fact":
        yield send_message(FACTS[visits % len(FACTS)])
    elif choice == "count":
        counter += 1
        yield send_message(f"The counter is at {counter}.")
    else:
        yield send_message(f"Bye! You came by the menu {visits + 1} times.")
        return visits + 1
    yield goto(main(visits + 1, counter))
