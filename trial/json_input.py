"""Parse a request's JSON body once, strictly, for every view.

Python's ``json`` module accepts input that every later step then trips over: a lone UTF-16
surrogate escape (``"\\ud800"``) becomes a string that cannot be encoded (a 500 at the
database or the log), a body nested thousands deep raises ``RecursionError``, an integer
literal over 4,300 digits raises ``ValueError`` from ``int()``, ``NaN`` and ``Infinity`` are
not JSON, and a key given twice silently keeps its last value (what a reviewer of the
request sees first is not what is stored). ``request_json`` refuses each of them, naming the
field, and caches the result on the request: ``screen_request_input`` calls it before any
view runs and the argument parser (``trial.validation.TrialParser``) reads the same value,
so there is one parser of request bodies and no view can bypass it. Ordinary bodies take a
fast path (the C parser and cheap checks of the text); whatever it cannot vouch for is
parsed again by the strict path, which names each field.
"""

from __future__ import annotations

import json
import re
from typing import Any

from trial.errors import InvalidJSON, ValidationFailed

# The deepest body the API takes is three levels (a visit, its list of labs, a lab); 32
# leaves room and keeps every recursive step after parsing (marshmallow, the checks below)
# far from Python's recursion limit.
MAX_DEPTH = 32
# No field takes a number of more than 19 digits (a 64-bit integer); longer literals are
# refused here before ``int()`` spends quadratic time on them (or raises past 4,300 digits).
MAX_INT_DIGITS = 100
_SURROGATE = re.compile("[\ud800-\udfff]")
_CACHE = "trial.json_body"
EMPTY = object()  # the request has no body at all


class _TooLong:
    """An integer literal with more digits than any field could take."""

    __slots__ = ("digits",)

    def __init__(self, digits: int):
        self.digits = digits


class _NotJSON:
    """``NaN``, ``Infinity`` or ``-Infinity``: accepted by Python, not part of JSON."""

    __slots__ = ("literal",)

    def __init__(self, literal: str):
        self.literal = literal


class _DuplicateKeys(dict):
    """An object in which some key was given more than once (the keys in ``duplicates``)."""

    duplicates: list[str]


def _integer(text: str):
    digits = len(text) - text.startswith("-")
    return int(text) if digits <= MAX_INT_DIGITS else _TooLong(digits)


def _object(pairs: list[tuple[str, Any]]) -> dict:
    result: dict = {}
    duplicates = None
    for key, value in pairs:
        if key in result:
            duplicates = duplicates or []
            duplicates.append(key)
        result[key] = value
    if duplicates:
        result = _DuplicateKeys(result)
        result.duplicates = duplicates
    return result


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_int=_integer, parse_constant=_NotJSON, strict=True
)


def _join(prefix: str, name) -> str:
    """A dotted field name, printable even when the key holds an unpaired surrogate."""
    name = str(name).encode("utf-8", "backslashreplace").decode("utf-8")
    return f"{prefix}.{name}" if prefix else name


def _text_problem(text: str) -> str | None:
    if "\x00" in text:
        return "Contains a NUL character, which is not allowed."
    found = _SURROGATE.search(text)
    if found:
        return (
            f"Contains an unpaired UTF-16 surrogate (\\u{ord(found.group()):04x}), which is "
            f"not text: send each character whole, or as a surrogate pair."
        )
    return None


def _too_deep(field: str) -> InvalidJSON:
    message = f"The JSON body is nested more than {MAX_DEPTH} levels deep."
    return InvalidJSON(message, {field or "_schema": [message]})


def body_errors(value: Any) -> dict[str, list[str]]:
    """Name every part of a parsed body that no field could take; raise if too deep.

    Walks the value without recursion (so the walk itself cannot overflow) and names each
    field dotted (``drinking.3.date``); the body itself, when not an object, is ``_schema``.
    A body nesting too deep is named by its top-level field (``_schema`` if none).
    """
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field or "_schema", []).append(message)

    stack: list[tuple[str, Any, int, str]] = [("", value, 1, "")]
    while stack:
        path, item, depth, top = stack.pop()
        if isinstance(item, dict | list) and depth > MAX_DEPTH:
            raise _too_deep(top)
        if isinstance(item, str):
            problem = _text_problem(item)
            if problem:
                add(path, problem)
        elif isinstance(item, dict):
            for key in getattr(item, "duplicates", ()):
                add(_join(path, key), "Given more than once in the same object; send it once.")
            for key, sub in item.items():
                problem = _text_problem(key)
                name = _join(path, key)
                if problem:
                    add(name, f"The key: {problem[0].lower()}{problem[1:]}")
                else:  # a member of the body names itself; deeper ones, their top field
                    stack.append((name, sub, depth + 1, top if depth > 1 else name))
        elif isinstance(item, list):
            for index, sub in enumerate(item):
                stack.append((_join(path, index), sub, depth + 1, top))
        elif isinstance(item, _TooLong):
            add(path, f"A number of {item.digits} digits; no field takes more than 19.")
        elif isinstance(item, _NotJSON):
            add(path, f"{item.literal} is not a JSON number; send a finite number.")
    return errors


def _deepest_member(text: str) -> str:
    """The top-level key whose value nests too deep for the parser ("" if none is found).

    Called only after the parser gave up (``RecursionError``): each member of a top-level
    object is parsed on its own, so the one that cannot be is named.
    """
    decoder = _DECODER
    whitespace = re.compile(r"\s*")

    def skip(index: int) -> int:
        return whitespace.match(text, index).end()

    index = skip(0)
    if text[index : index + 1] != "{":
        return ""
    index = skip(index + 1)
    try:
        while text[index : index + 1] == '"':
            key, index = json.decoder.scanstring(text, index + 1)
            index = skip(index)
            if text[index : index + 1] != ":":
                return ""
            try:
                _, index = decoder.raw_decode(text, skip(index + 1))
            except RecursionError:
                return _join("", key)
            index = skip(index)
            if text[index : index + 1] != ",":
                return ""
            index = skip(index + 1)
    except ValueError:
        return ""
    return ""


# What a body the fast path accepts cannot hold: an escape that may make a NUL or a surrogate
# (a surrogate pair matches too, and is then judged by the strict path), or a run of more
# digits than any number may have (digits inside a string count too, with the same effect;
# found by mapping every digit to "0" and anything else to " ", a byte table C applies).
_SUSPECT_ESCAPE = re.compile(r"\\u(?:[dD][89a-fA-F][0-9a-fA-F]{2}|0000)")
_DIGITS = bytes.maketrans(
    bytes(range(256)), bytes(48 if 48 <= byte <= 57 else 32 for byte in range(256))
)
_LONG_NUMBER = b"0" * (MAX_INT_DIGITS + 1)
_CONTAINERS = (dict, list)


class _Suspect(Exception):
    """Raised by the fast parse on what only the strict parse can name (NaN, a key twice)."""


def _refuse_constant(literal: str):
    raise _Suspect(literal)


def _object_once(pairs: list[tuple[str, Any]]) -> dict:
    result = dict(pairs)
    if len(result) != len(pairs):
        raise _Suspect("a key given twice")
    return result


_FAST = json.JSONDecoder(
    object_pairs_hook=_object_once, parse_constant=_refuse_constant, strict=True
)


def _deeper_than_allowed(value: Any) -> bool:
    """Whether a parsed body nests deeper than ``MAX_DEPTH``, level by level (no recursion,
    and only the containers are visited: strings were vouched for by ``_SUSPECT_ESCAPE``)."""
    level = [value] if type(value) in _CONTAINERS else []
    for _ in range(MAX_DEPTH):
        if not level:
            return False
        below = []
        for item in level:
            below += [
                c for c in (item.values() if type(item) is dict else item) if type(c) in _CONTAINERS
            ]
        level = below
    return bool(level)


def _malformed(exc: json.JSONDecodeError) -> InvalidJSON:
    message = f"Invalid JSON body: {exc.msg} at line {exc.lineno}, column {exc.colno}."
    return InvalidJSON(message, {"_schema": [message]})


def _strict_parse(text: str) -> Any:
    """Parse with every hook and walk the result, naming each part no field could take."""
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise _too_deep(_deepest_member(text)) from None
    except json.JSONDecodeError as exc:  # after what sent the fast path here (a key twice)
        raise _malformed(exc) from None
    errors = body_errors(value)
    if errors:
        raise ValidationFailed("Invalid input: " + ", ".join(sorted(errors)) + ".", errors)
    return value


def parse_json_body(data: bytes | str) -> Any:
    """The body as Python values, or a refusal: 400 if it is not JSON we can read, 422 naming
    each field whose value no field could take. An empty body is ``EMPTY``.

    Two paths: the fast one (C parser, with cheap checks of the text) takes the bodies that
    clients send; anything it cannot vouch for goes to the strict one, which names the field.
    """
    if isinstance(data, bytes):
        if not data:
            return EMPTY
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            message = f"Invalid JSON body: not UTF-8 (byte {exc.start})."
            raise InvalidJSON(message, {"_schema": [message]}) from None
    else:
        text = data
        if not text:
            return EMPTY
    try:
        value = _FAST.decode(text)
    except json.JSONDecodeError as exc:
        raise _malformed(exc) from None
    except (_Suspect, ValueError, RecursionError):  # ValueError: int() past 4,300 digits
        return _strict_parse(text)
    raw = data if isinstance(data, bytes) else text.encode("utf-8", "surrogatepass")
    if (
        _SUSPECT_ESCAPE.search(text)
        or _LONG_NUMBER in raw.translate(_DIGITS)
        or _deeper_than_allowed(value)
    ):
        return _strict_parse(text)
    return value


def request_json(request) -> Any:
    """The request's body parsed by ``parse_json_body``, once per request (cached on it)."""
    cached = request.environ.get(_CACHE)
    if cached is None:
        try:
            cached = (parse_json_body(request.get_data(cache=True)), None)
        except (InvalidJSON, ValidationFailed) as exc:
            cached = (None, exc)
        request.environ[_CACHE] = cached
    value, refusal = cached
    if refusal is not None:
        raise refusal
    return value
