"""The HTTP API for the outside world, on the same server as the webhooks, when
CONVOFLOW_API_TOKEN is set (without it the routes do not exist: 404):

- `POST /events` `{"session": "PARTITION/APP", "name": ..., "data": ..., "id": ...}` delivers an
  outside event to one session (Engine.signal; `id` de-duplicates it);
- `POST /conversations` `{"to": "telegram:<chat>" | "slack:<team>:<user or channel>", "dialog":
  NAME, "args": [...], "id": ..., "if_running": "skip" | "replace" | "queue"}` starts a
  conversation the bot opens (Engine.start; `id` de-duplicates it).

Every call needs `Authorization: Bearer <token>` (compared in constant time; else 401). A body
that is not a JSON object, or a field missing or malformed, is 400 naming the field; nothing is
stored for it. A session that does not exist is 404. A turn that did not commit (the store is
down, other workers kept winning) is 503: call again with the same id. Otherwise 200 with what
happened: `{"status": ..., "session": ...}`.
"""

from __future__ import annotations

import hmac
import json
import logging
from typing import Any, Awaitable, Callable

from aiohttp import web

from convoflow.adapters.channel import BadAddress
from convoflow.adapters.host.starts import IF_RUNNING, FieldError, Starter
from convoflow.delivery import Deliver
from convoflow.messages import SessionKey
from convoflow.stores.base import StoreError
from convoflow.turns import TooManyConflicts

log = logging.getLogger("convoflow.api")

EVENTS_PATH = "/events"
CONVERSATIONS_PATH = "/conversations"
MAX_ID_LENGTH = 200

Handler = Callable[[web.Request], Awaitable[web.Response]]


def api_routes(token: str, starter: Starter, deliver: Deliver) -> list[web.RouteDef]:
    """The routes, answering only calls bearing `token`; replies go out with `deliver`."""
    expected = f"Bearer {token}".encode()

    def guarded(handle: Callable[[dict[str, Any]], Awaitable[web.Response]]) -> Handler:
        async def route(request: web.Request) -> web.Response:
            given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")
            if not hmac.compare_digest(given, expected):
                return _error(401, "authorization", "missing or wrong bearer token")
            try:
                body = _object(await request.read())
                return await handle(body)
            except FieldError as error:
                return _error(400, error.field, str(error))
            except (StoreError, TooManyConflicts) as error:
                log.warning("%s not processed: %s", request.path, error)
                return _error(503, None, f"not processed ({type(error).__name__}); call again with the same id",
                              {"Retry-After": "1"})

        return route

    async def events(body: dict[str, Any]) -> web.Response:
        _only(body, "session", "name", "data", "id")
        key = _session(body.get("session"))
        if key.app != starter.engine.app:
            raise FieldError("session", f"{key} is no session of this bot (its sessions end in /{starter.engine.app})")
        name = _text(body, "name")
        event_id = _text(body, "id")
        try:
            outcome = await starter.engine.signal(key, name, body.get("data"), event_id, deliver=deliver)
        except (ValueError, TypeError) as error:  # data the session cannot keep
            raise FieldError("data", str(error)) from None
        status = 404 if outcome.status == "unknown" else 200
        return web.json_response({"status": outcome.status, "session": str(key)}, status=status)

    async def conversations(body: dict[str, Any]) -> web.Response:
        _only(body, "to", "dialog", "args", "id", "if_running")
        to = _text(body, "to")
        start_id = _text(body, "id")
        name = body.get("dialog")
        if name is not None and not isinstance(name, str):
            raise FieldError("dialog", "must be the name of one of the bot's dialogs")
        args = body.get("args", [])
        if not isinstance(args, list):
            raise FieldError("args", "must be a list")
        if_running = body.get("if_running", "skip")
        if if_running not in IF_RUNNING:
            raise FieldError("if_running", f"must be one of {', '.join(IF_RUNNING)}")
        dialog = starter.dialog(name, args)
        try:
            started = await starter.start(to, dialog, start_id, if_running)
        except BadAddress as error:
            raise FieldError("to", str(error)) from None
        except (ValueError, TypeError) as error:  # arguments the store cannot keep
            raise FieldError("args", str(error)) from None
        except (StoreError, TooManyConflicts):
            raise
        except Exception as error:  # noqa: BLE001 - the platform failed opening the address: nothing started
            log.warning("cannot open %s: %r", to, error)
            return _error(503, "to", f"cannot open {to} now ({type(error).__name__}); call again with the same id",
                          {"Retry-After": "1"})
        return web.json_response({"status": started.status, "session": str(started.key)})

    return [web.post(EVENTS_PATH, guarded(events)), web.post(CONVERSATIONS_PATH, guarded(conversations))]


def _error(status: int, field: str | None, message: str, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": message, "field": field}, status=status, headers=headers)


def _reject_constant(name: str) -> Any:
    raise FieldError("body", f"{name} is not JSON")


def _object(raw: bytes) -> dict[str, Any]:
    try:
        body = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as error:
        raise FieldError("body", f"not JSON ({error})") from None
    if not isinstance(body, dict):
        raise FieldError("body", "must be a JSON object")
    try:
        json.dumps(body, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:  # "\ud800" escapes: JSON, but no text any store can keep
        raise FieldError("body", "holds an unpaired surrogate (\\uD800-\\uDFFF), which is no text") from None
    return body


def _only(body: dict[str, Any], *fields: str) -> None:
    unknown = sorted(set(body) - set(fields))
    if unknown:
        raise FieldError(unknown[0], f"unknown field {unknown[0]!r} (the fields are {', '.join(fields)})")


def _text(body: dict[str, Any], field: str) -> str:
    value = body.get(field)
    if not isinstance(value, str) or not value.strip():
        raise FieldError(field, "is required: a non-empty string")
    if len(value) > MAX_ID_LENGTH and field in ("id", "name"):
        raise FieldError(field, f"is longer than {MAX_ID_LENGTH} characters")
    return value


def _session(value: Any) -> SessionKey:
    if not isinstance(value, str):
        raise FieldError("session", "is required: a session key PARTITION/APP")
    try:
        return SessionKey.parse(value)
    except ValueError as error:
        raise FieldError("session", str(error)) from None
