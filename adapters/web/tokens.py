"""Visitor tokens: who is talking, signed so that nobody can name someone else's session.

A token is `<payload>.<mac>`, both base64url: the payload is JSON naming the session's partition
(`web:<visitor>`, or `web:user:<site user id>` for a user the embedding site vouches for) and when
the token expires; the mac is HMAC-SHA256 over `token:` + the payload, with CONVOFLOW_WEB_SECRET.
A site vouches for its user with HMAC-SHA256 over `user:` + the user id, with the same secret (the
prefixes keep one kind of signature from passing for the other). Nothing is stored: any replica
checks any token.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
import secrets
from dataclasses import dataclass

USER_ID = re.compile(r"[A-Za-z0-9_.@+=-]{1,128}")
"""What a site user id may be (it becomes part of the session key)."""


class TokenRefused(Exception):
    """A token or user signature that is forged, altered, expired or malformed (answered 401)."""


@dataclass(frozen=True)
class Visitor:
    partition: str
    """The session's partition: `web:<visitor>` or `web:user:<user id>`."""
    user: str | None = None
    """The site's user id, when the site vouched for one."""


class Tokens:
    def __init__(self, secret: str, lifetime_seconds: float) -> None:
        if len(secret) < 16:
            raise ValueError("the web secret must be at least 16 characters")
        self._secret = secret.encode()
        self.lifetime_seconds = lifetime_seconds

    def user_signature(self, user: str) -> str:
        """What the embedding site passes along with its user id (hex)."""
        return self._mac(b"user:" + user.encode()).hex()

    def visitor(self, user: str | None = None, signature: str | None = None) -> Visitor:
        """A new anonymous visitor, or the site's user `user` when `signature` vouches for it."""
        if user is None:
            return Visitor(f"web:{secrets.token_urlsafe(16)}")
        if not USER_ID.fullmatch(user) or not isinstance(signature, str):
            raise TokenRefused("the user id is malformed or unsigned")
        if not hmac.compare_digest(self.user_signature(user), signature.lower()):
            raise TokenRefused("the user signature does not match")
        return Visitor(f"web:user:{user}", user)

    def issue(self, visitor: Visitor, now: float) -> str:
        payload = {"p": visitor.partition, "e": int(now + self.lifetime_seconds)}
        if visitor.user is not None:
            payload["u"] = visitor.user
        body = _encode(json.dumps(payload, separators=(",", ":")).encode())
        return f"{body}.{_encode(self._mac(b'token:' + body.encode()))}"

    def verify(self, token: object, now: float) -> Visitor:
        """The visitor a token names. Raises TokenRefused."""
        if not isinstance(token, str) or len(token) > 1024 or token.count(".") != 1:
            raise TokenRefused("no token, or not one of ours")
        body, mac = token.split(".")
        try:
            given = _decode(mac)
            payload = json.loads(_decode(body))
        except (ValueError, binascii.Error):
            raise TokenRefused("the token is garbled") from None
        if not hmac.compare_digest(self._mac(b"token:" + body.encode()), given):
            raise TokenRefused("the token's signature does not match")
        if not isinstance(payload, dict) or not isinstance(payload.get("e"), int) or not isinstance(payload.get("p"), str):
            raise TokenRefused("the token is malformed")
        if payload["e"] <= now:
            raise TokenRefused("the token has expired")
        user = payload.get("u")
        return Visitor(payload["p"], user if isinstance(user, str) else None)

    def _mac(self, data: bytes) -> bytes:
        return hmac.new(self._secret, data, hashlib.sha256).digest()


def _encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _decode(text: str) -> bytes:
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
