"""Plain aliases shared across the engine."""

from typing import Any, TypeAlias

JSON: TypeAlias = None | bool | int | float | str | list[Any] | dict[str, Any]
"""A value that survives a JSON round trip unchanged (what a session may store)."""

StateDict: TypeAlias = dict[str, Any]
"""A dialog's replay state as plain JSON data."""
