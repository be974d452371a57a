"""Pydantic models as recorded values, when pydantic is installed (it is in the test extra)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from convoflow import dialog, get_client_response
from tests.support.dialog_helpers import JsonPersistence, chat

pydantic = pytest.importorskip("pydantic")


class Customer(pydantic.BaseModel):
    name: str
    joined: dt.datetime
    balance: Decimal
    tags: tuple[str, ...] = ()


@dialog()
def load_customer() -> Any:
    return Customer(name="Ada", joined=dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc), balance=Decimal("3.10"), tags=("vip",))


def test_a_pydantic_model_comes_back_as_the_same_model() -> None:
    @dialog(name="crm")
    def crm():
        customer = yield load_customer()
        yield get_client_response()
        return customer

    persistence = JsonPersistence()
    steps = chat(crm, persistence, ["hi", "next"])
    assert persistence.text is not None and '"#": "pydantic"' in persistence.text
    got = steps[-1].return_value
    assert type(got) is Customer and got == load_customer().func()
    assert got.joined == dt.datetime(2024, 3, 1, 12, tzinfo=dt.timezone.utc) and got.joined.tzinfo == dt.timezone.utc
    assert got.tags == ("vip",) and str(got.balance) == "3.10"
