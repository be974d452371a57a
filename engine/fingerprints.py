"""Step fingerprints: a few bytes recorded with a step, saying what was asked, checked on replay.

A replay matches each recorded step with the step the code now yields at that place. Name and
version alone cannot tell two questions apart, so a step with arguments also records a digest of
them: a subdialog's JSON arguments (others, such as callables, whose repr changes from process to
process, are left out), or for `ask` its text, its options' labels and values and its key (a keyed
ask: only the key and the option values, so rewording it keeps sessions). Six characters of a
BLAKE2b digest: a changed step goes unnoticed once in sixteen million changes.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any, Callable, Sequence

_LEFT_OUT = "?"
_SCALARS = (str, int, bool, type(None))
FLAT = frozenset(_SCALARS)
"""Argument types whose equal values read the same in JSON (unlike 1 == True == 1.0, 0.0 == -0.0)."""
_cache: dict[Any, str] = {}
remembered = _cache.get
"""A fingerprint already computed, by the key `call_fingerprint` files it under (or None)."""
_CACHE_LIMIT = 4096


def call_fingerprint(path: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> str | None:
    """A subdialog's fingerprint: its JSON arguments (None without arguments: its name and
    version, recorded anyway, say all there is)."""
    if not kwargs:  # the common cases first, looked up at a fraction of the cost
        if len(args) == 1:
            kind = type(args[0])
            if kind in FLAT:
                key: Any = (path, kind, args[0])
                found = _cache.get(key)
                return found if found is not None else _remember(key, digest([list(args), {}]))
        elif not args:
            return None
        else:
            types = tuple(map(type, args))
            if FLAT.issuperset(types):
                key = (path, types, args)
                found = _cache.get(key)
                return found if found is not None else _remember(key, digest([list(args), {}]))
    return _cached(
        (path, *map(_key_part, args), *(part for k, v in kwargs.items() for part in (k, _key_part(v)))),
        lambda: [portable(list(args)), portable(kwargs)],
    )


def ask_fingerprint(text: str, options: Sequence[Any], key: str | None) -> str:
    """An ask's fingerprint: its text and options' labels and values, or with a key the key and
    the options' answers (what a recorded answer must be one of)."""
    if not options or all(type(o.value) is str or o.value is None for o in options):
        memo: Any = (ask_fingerprint, text, key, options)  # labels and values are str or None
        found = _cache.get(memo)
        if found is not None:
            return found
    else:
        memo = None
    if key is not None:
        basis: Any = ["key", key, [portable(o.answer) for o in options]]
    else:
        basis = ["ask", text, [[o.label, portable(o.value)] for o in options]]
    return digest(basis) if memo is None else _remember(memo, digest(basis))


def digest(basis: Any) -> str:
    """Six characters of the BLAKE2b digest of `basis` (JSON data)."""
    text = json.dumps(basis, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    raw = hashlib.blake2b(text.encode(), digest_size=4).digest()
    return base64.urlsafe_b64encode(raw)[:6].decode("ascii")


def portable(value: Any) -> Any:
    """`value` as JSON data that reads the same in every process; anything else is left out."""
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is list or kind is tuple:
        return [portable(item) for item in value]
    if kind is dict and all(type(key) is str for key in value):
        return {key: portable(item) for key, item in value.items()}
    return _LEFT_OUT


def _remember(key: Any, fingerprint: str) -> str:
    if len(_cache) >= _CACHE_LIMIT:
        _cache.clear()
    _cache[key] = fingerprint
    return fingerprint


def _cached(key: tuple[Any, ...], basis: Callable[[], Any]) -> str:
    """`digest(basis())`, remembered by `key`: a replay checks the same few steps over and over (a
    loop's question), so each is hashed once per process. A key holding a container (None part)
    is not remembered: equal containers can differ in JSON (`[1]`, `[True]`, `[1.0]`)."""
    if None in key:
        return digest(basis())
    found = _cache.get(key)
    return found if found is not None else _remember(key, digest(basis()))


def _key_part(value: Any) -> Any:
    """A hashable stand-in for an argument that tells apart what JSON tells apart (1, True and 1.0
    are equal in Python), or None for a container."""
    kind = type(value)
    if kind in _SCALARS:
        return (kind, value)
    if kind is float:
        return (kind, repr(value))  # -0.0 == 0.0, but not in JSON
    if kind is list or kind is tuple or kind is dict:
        return None
    return _LEFT_OUT
