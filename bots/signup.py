"""A signup form: buttons, typed answers and validation with `ask`; `/help` (or "help") mid-form
shows help and asks the pending question again, `/cancel` asks before it stops.

    convoflow run bots/signup.py
"""

from convoflow import Option, ask, dialog, send_message


def parse_name(text: str) -> str:
    name = text.strip()
    if not name:
        raise ValueError("empty name")
    return name


def parse_age(text: str) -> int:
    age = int(text)
    if not 13 <= age <= 120:
        raise ValueError("age out of range")
    return age


def parse_email(text: str) -> str:
    email = text.strip()
    name, at, domain = email.partition("@")
    if not (name and at and "." in domain):
        raise ValueError("not an email address")
    return email.lower()


@dialog()
def main():
    yield send_message("Welcome! Let's get you signed up.")
    name = yield ask("What's your name?", parse=parse_name, retry="Please tell me your name.")
    age = yield ask(f"Nice to meet you, {name}. How old are you?", parse=parse_age,
                    retry="Please send your age as a number between 13 and 120.")
    email = yield ask("Your email address?", parse=parse_email,
                      retry="That doesn't look like an email address. Try again?")
    plan = yield ask(
        "Which plan would you like?",
        choices=[Option("Free", "free"), Option("Pro (9/month)", "pro"), Option("Team (29/month)", "team")],
        retry="Please pick one of the plans.",
    )
    confirmed = yield ask(
        f"Sign up {name} ({age}, {email}) for the {plan} plan?",
        choices=[Option("Yes", True), Option("No", False)],
    )
    if confirmed:
        yield send_message(f"Done! Welcome aboard, {name}.")
    else:
        yield send_message("No problem, nothing was saved. Send /start to begin again.")
    return {"name": name, "age": age, "email": email, "plan": plan, "confirmed": confirmed}


@dialog()
def help_dialog():
    """What this form asks, and how to stop"""
    yield send_message("This form signs you up in five questions: name, age, email, plan, and a "
                       "final check. Nothing is saved until you confirm. /cancel stops, /start begins again.")
    # returning nothing resumes the form: its pending question is asked again


@dialog()
def confirm_cancel():
    """Stop signing up"""
    stop = yield ask("Stop signing up? What you entered is dropped.",
                     choices=[Option("Yes, stop", True), Option("No, go on", False)])
    if stop:
        yield send_message("Okay, stopped. Send /start to begin again.")
        return "cancel"
    return "resume"


interrupts = {"/help": help_dialog, "help": help_dialog, "/cancel": confirm_cancel}
