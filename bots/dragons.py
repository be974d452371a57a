"""A tiny dragon quest in the seed's `run()` style: plain functions, no generators.

    convoflow run bots/dragons.py
"""

from convoflow import dialog, get_client_response, run, send_message


@dialog()
def ask_name() -> str:
    run(send_message("Greetings, traveller! What is your name?"))
    name = str(run(get_client_response())).strip() or "Nameless"
    run(send_message(f"{name} is a beautiful name!"))
    return name


@dialog()
def choose_path(name: str) -> str:
    while True:
        run(send_message(f"{name}, two paths lie ahead: the cave or the mountain. Which do you take?"))
        path = str(run(get_client_response())).strip().lower()
        if path in ("cave", "mountain"):
            return path
        run(send_message("The wind howls. Say 'cave' or 'mountain'."))


@dialog(version="1.0")
def main() -> str:
    name = run(ask_name())
    path = run(choose_path(name))
    if path == "cave":
        run(send_message("A sleeping dragon! Do you sneak past it or wake it?"))
        action = str(run(get_client_response())).strip().lower()
        ending = "treasure" if "sneak" in action else "friendship"
        run(send_message(
            "You tiptoe past and find a heap of gold." if ending == "treasure"
            else "The dragon yawns, and offers you tea. A new friend!"
        ))
    else:
        run(send_message("At the summit, a dragon is teaching its young to fly. You watch until sunset."))
        ending = "sunset"
    run(send_message(f"The end. Farewell, {name}!"))
    return ending
