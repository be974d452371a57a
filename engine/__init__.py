"""convoflow's resumable dialog engine: flows as plain Python, replayed from a stored record."""

from convoflow.runners import (
    DialogStep,
    DialogStepDone,
    DialogStepNotDone,
    InMemoryPersistence,
    PersistenceProvider,
    ask,
    run_async_gen_dialog,
    run_dialog,
    run_gen_dialog,
)
from convoflow.messages import Incoming, Media, Message, Option, Reply, SessionKey, Text
from convoflow.player import run
from convoflow.replay import (
    DialogState,
    DialogStateException,
    ReplayMismatch,
    Result,
    StepFailed,
    UnstorableValue,
    new_empty_state,
    state_from_dict,
)
from convoflow.values import register_codec
from convoflow.clock import Clock, ManualClock, SystemClock
from convoflow.waits import now, session_key, sleep, sleep_until, wait_first, wait_for_event
from convoflow.dialogs import (
    AsyncDialog,
    AsyncGenDialog,
    BaseDialog,
    Dialog,
    GenDialog,
    TimedOut,
    Woke,
    dialog,
    dialog_result,
    get_client_response,
    goto,
    send_message,
)

__all__ = [
    "AsyncDialog", "AsyncGenDialog", "BaseDialog", "Clock", "Dialog", "DialogState", "DialogStateException",
    "DialogStep", "DialogStepDone", "DialogStepNotDone", "GenDialog", "InMemoryPersistence",
    "Incoming", "ManualClock", "Media", "Message", "Option", "PersistenceProvider", "ReplayMismatch", "Reply",
    "Result", "SessionKey", "StepFailed", "SystemClock", "Text", "TimedOut", "UnstorableValue", "Woke", "ask",
    "dialog", "dialog_result", "get_client_response", "goto", "new_empty_state", "now", "run",
    "register_codec", "run_async_gen_dialog", "run_dialog", "run_gen_dialog", "send_message",
    "session_key", "sleep", "sleep_until", "state_from_dict", "wait_first", "wait_for_event",
]
