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
from convoflow.dialogs import (
    AsyncDialog,
    AsyncGenDialog,
    BaseDialog,
    Dialog,
    GenDialog,
    dialog,
    dialog_result,
    get_client_response,
    goto,
    send_message,
)

__all__ = [
    "AsyncDialog", "AsyncGenDialog", "BaseDialog", "Dialog", "DialogState", "DialogStateException",
    "DialogStep", "DialogStepDone", "DialogStepNotDone", "GenDialog", "InMemoryPersistence",
    "Incoming", "Media", "Message", "Option", "PersistenceProvider", "ReplayMismatch", "Reply",
    "Result", "SessionKey", "StepFailed", "Text", "UnstorableValue", "ask", "dialog",
    "dialog_result", "get_client_response", "goto", "new_empty_state", "run",
    "register_codec", "run_async_gen_dialog", "run_dialog", "run_gen_dialog", "send_message",
    "state_from_dict",
]
