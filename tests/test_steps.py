"""`@dialog` and the steps a flow yields: kinds, names, versions, and goto targets kept in a state."""

from __future__ import annotations

from dataclasses import FrozenInstanceError

import pytest

from convoflow import AsyncDialog, AsyncGenDialog, Dialog, GenDialog, dialog, get_client_response, send_message
from convoflow.dialogs import is_dialog, resolve


@dialog()
def plain(a: int, b: int = 0) -> int:
    return a + b


@dialog(version="2.1", name="renamed")
def generator(word: str):
    yield send_message(word)


@dialog()
async def coroutine() -> str:
    return "done"


@dialog()
async def async_generator():
    yield get_client_response()


@dialog
def bare(word: str):
    yield send_message(word)


@dialog
async def bare_coroutine() -> str:
    return "done"


def test_dialog_without_parentheses_is_dialog_with_its_defaults() -> None:
    assert isinstance(bare("x"), GenDialog) and isinstance(bare_coroutine(), AsyncDialog)
    assert (bare("x").name, bare("x").version) == ("bare", "1.0")
    assert is_dialog(bare) and bare.__name__ == "bare"
    assert resolve(bare("x").spec()) == bare("x")


def test_each_kind_of_function_becomes_its_kind_of_dialog() -> None:
    assert isinstance(plain(1), Dialog)
    assert isinstance(generator("x"), GenDialog)
    assert isinstance(coroutine(), AsyncDialog)
    assert isinstance(async_generator(), AsyncGenDialog)


def test_a_dialog_is_named_after_its_function_unless_named() -> None:
    assert (plain(1).name, plain(1).version) == ("plain", "1.0")
    assert (generator("x").name, generator("x").version) == ("renamed", "2.1")


def test_calling_a_dialog_only_packages_the_call_as_the_seed_did() -> None:
    call = plain(2, b=3)
    assert call.dialog() == 5  # the seed's zero-argument closure
    assert call == plain(2, b=3) and call != plain(2, b=4) and hash(call) == hash(plain(2, b=3))
    assert repr(call).startswith("Dialog(func=<function plain")
    with pytest.raises(FrozenInstanceError):
        call.name = "other"  # type: ignore[misc]
    assert is_dialog(plain) and not is_dialog(lambda: None) and not is_dialog(len)


def test_a_goto_target_is_stored_as_data_and_rebuilt_from_it() -> None:
    spec = plain(2, b=3).spec()
    assert spec == {"dialog": f"{__name__}:plain", "args": [2], "kwargs": {"b": 3}}
    assert resolve(spec) == plain(2, b=3)


def test_a_goto_target_that_no_longer_exists_cannot_be_rebuilt() -> None:
    with pytest.raises(LookupError, match="no longer exists"):
        resolve({"dialog": f"{__name__}:deleted", "args": [], "kwargs": {}})
    with pytest.raises(LookupError, match="cannot be imported"):
        resolve({"dialog": "bots.no_such_bot:main", "args": [], "kwargs": {}})
