"""Parsing JSON request bodies into checked values; every failure is a clear 400."""

from __future__ import annotations

from typing import Any

from flask import request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import BadRequest

from .errors import ApiError


class StrictJSONProvider(DefaultJSONProvider):
    """Request JSON that is valid Unicode and sanely nested, or a ValueError (a 400 upstream).

    Python's decoder lets a lone surrogate (`"\\ud800"`) through as a string that cannot be
    encoded again, and gives up on deep nesting with a RecursionError; either would
    surface later as a 500 in whatever code touched the value.
    """

    def loads(self, s: str | bytes, **kwargs: Any) -> Any:
        try:
            value = super().loads(s, **kwargs)
        except RecursionError:
            raise ValueError("JSON nested too deeply") from None
        pending = [value]
        while pending:
            item = pending.pop()
            if isinstance(item, str):
                _check_unicode(item)
            elif isinstance(item, dict):
                for key, child in item.items():
                    _check_unicode(key)
                    pending.append(child)
            elif isinstance(item, list):
                pending.extend(item)
        return value


def _check_unicode(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("JSON string holds a lone surrogate") from None


def only_fields(body: dict, *names: str) -> None:
    """400 for a field this endpoint does not know: a misspelt option must not be dropped silently."""
    unknown = sorted(name for name in body if name not in names)
    if unknown:
        shown = unknown[0][:40] if unknown[0].isprintable() else "(unprintable)"
        raise ApiError(400, "invalid_request", f'Unknown field "{shown}"; this endpoint takes {", ".join(names)}.')


def json_object() -> dict[str, Any]:
    """The request body as a JSON object, or ApiError 415/400 saying what is wrong."""
    if not request.is_json:
        raise ApiError(415, "unsupported_media_type", "Send the body as JSON with Content-Type: application/json.")
    try:
        body = request.get_json(force=True, silent=False)
    except (BadRequest, UnicodeDecodeError, ValueError):
        raise ApiError(400, "invalid_json", "The body is not valid UTF-8 JSON; check its syntax.") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_json", "The body must be a JSON object ({...}).")
    return body


def string(
    body: dict, name: str, *, required: bool = True, max_length: int = 1024, default: str | None = None
) -> str | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "invalid_request", f'The field "{name}" is required.')
        return default
    if not isinstance(value, str):
        raise ApiError(400, "invalid_request", f'The field "{name}" must be a string.')
    if len(value) > max_length:
        raise ApiError(400, "invalid_request", f'The field "{name}" is longer than {max_length} characters.')
    if "\x00" in value:
        raise ApiError(400, "invalid_request", f'The field "{name}" contains a NUL character.')
    return value


def integer(
    body: dict,
    name: str,
    *,
    required: bool = True,
    minimum: int | None = None,
    maximum: int | None = None,
    default: int | None = None,
) -> int | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "invalid_request", f'The field "{name}" is required.')
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise ApiError(400, "invalid_request", f'The field "{name}" must be a whole number.')
    if minimum is not None and value < minimum or maximum is not None and value > maximum:
        raise ApiError(400, "invalid_request", f'The field "{name}" must be between {minimum} and {maximum}.')
    return value


def string_list(
    body: dict, name: str, *, required: bool = False, max_items: int = 100, max_length: int = 200
) -> list[str] | None:
    value = body.get(name)
    if value is None:
        if required:
            raise ApiError(400, "invalid_request", f'The field "{name}" is required.')
        return None
    if (
        not isinstance(value, list)
        or len(value) > max_items
        or not all(isinstance(v, str) and 0 < len(v) <= max_length for v in value)
    ):
        raise ApiError(
            400, "invalid_request", f'The field "{name}" must be a list of up to {max_items} non-empty strings.'
        )
    return value


def boolean(body: dict, name: str, *, default: bool | None = None) -> bool | None:
    value = body.get(name, default)
    if value is not None and not isinstance(value, bool):
        raise ApiError(400, "invalid_request", f'The field "{name}" must be true or false.')
    return value
