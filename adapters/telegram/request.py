"""python-telegram-bot's request layer over one aiohttp ClientSession, and the one way replies
reach it (`call`).

PTB's default request class (httpx) caps a busy bot at a few hundred calls per second; aiohttp,
which already serves our webhooks, keeps pace with the rest of the turn.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any
from urllib.parse import urlencode

import aiohttp
from telegram.error import NetworkError, TimedOut
from telegram.ext import ExtBot
from telegram.request import BaseRequest, RequestData
from telegram.request._requestparameter import RequestParameter


FORM = "application/x-www-form-urlencoded"


class AiohttpRequest(BaseRequest):
    """Sends Bot API calls through one pooled aiohttp session (created in `initialize`)."""

    __slots__ = ("_connect_timeout", "_limit", "_read_timeout", "_session")

    def __init__(self, connection_limit: int = 256, read_timeout: float | None = 5.0, connect_timeout: float = 5.0):
        self._limit = connection_limit
        self._read_timeout = read_timeout
        self._connect_timeout = connect_timeout
        self._session: aiohttp.ClientSession | None = None

    @property
    def read_timeout(self) -> float | None:
        return self._read_timeout

    async def initialize(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._limit),
                headers={"User-Agent": self.USER_AGENT},
            )

    async def shutdown(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def do_request(
        self,
        url: str,
        method: str,
        request_data: RequestData | None = None,
        read_timeout: object = BaseRequest.DEFAULT_NONE,
        write_timeout: object = BaseRequest.DEFAULT_NONE,
        connect_timeout: object = BaseRequest.DEFAULT_NONE,
        pool_timeout: object = BaseRequest.DEFAULT_NONE,
    ) -> tuple[int, bytes]:
        if self._session is None:
            raise RuntimeError("AiohttpRequest is not initialized")
        # aiohttp has no separate write timeout, and its `connect` includes the wait for the pool.
        connect = _given(connect_timeout, self._connect_timeout)
        pool = _given(pool_timeout, None) or 0.0
        timeout = aiohttp.ClientTimeout(
            connect=None if connect is None else connect + pool, sock_read=_given(read_timeout, self._read_timeout)
        )
        try:
            async with self._session.request(method, url, data=_body(request_data), timeout=timeout) as response:
                return response.status, await response.read()
        except asyncio.TimeoutError as error:
            raise TimedOut(f"{method} {_endpoint(url)} timed out") from error
        except aiohttp.ClientError as error:
            raise NetworkError(f"aiohttp.{type(error).__name__}: {error}") from error


async def call(bot: ExtBot[Any], request: BaseRequest, method: str, kwargs: dict[str, Any]) -> Any:
    """One Bot API call (`method` spelled `send_message` or `sendMessage`), through the bot's rate
    limiter (which waits out 429 RetryAfter) and `request` (which raises PTB's errors for error
    answers), its result the answer's raw `result`. What `bot.do_api_request` does, less its
    layers of defaults, warnings and logging."""
    endpoint = _camel(method)
    data = {name: value for name, value in kwargs.items() if value is not None}
    body = RequestData([RequestParameter.from_input(name, value) for name, value in data.items()])
    url = f"{bot.base_url}/{endpoint}"
    if bot.rate_limiter is None:
        return await request.post(url, body)
    return await bot.rate_limiter.process_request(
        callback=request.post, args=(url, body), kwargs={}, endpoint=endpoint, data=data, rate_limit_args=None,
    )


@functools.cache  # a handful of method names, each spelled out on every call
def _camel(method: str) -> str:
    first, *rest = method.split("_")
    return first + "".join(word.capitalize() for word in rest)


def _given(value: object, default: float | None) -> float | None:
    """A timeout PTB passed (a number, or None for "wait forever"), else our default."""
    if isinstance(value, (int, float)):
        return float(value)
    return None if value is None else default


def _body(request_data: RequestData | None) -> aiohttp.FormData | aiohttp.BytesPayload | None:
    """Form fields as the Bot API takes them; multipart when the call uploads files."""
    if request_data is None:
        return None
    fields = request_data.json_parameters
    files = request_data.multipart_data
    if not files:  # encoded here: aiohttp's FormData costs more than the rest of the request
        return aiohttp.BytesPayload(urlencode(fields).encode(), content_type=FORM)
    form = aiohttp.FormData()
    for name, value in fields.items():
        form.add_field(name, value)
    for name, part in files.items():
        filename, content, *mimetype = part
        form.add_field(name, content, filename=filename, content_type=mimetype[0] if mimetype else None)
    return form


def _endpoint(url: str) -> str:
    """The method name of a Bot API URL (the token before it never reaches a log)."""
    return url.rsplit("/", 1)[-1]
