"""JSON encoding of large response bodies in slices, so the event loop keeps running.

``json.dumps`` and pydantic serialise in C or Rust and hold the GIL for the whole call, so
encoding one large payload (100,000 metric rows, or a trace of millions of values) stalls
the event loop thread even when the encoding runs in a worker thread. ``encode_json``
splits such a payload into parts of at most about ``MAX_VALUES_PER_CALL`` values and
encodes each part in its own call; between calls the interpreter hands the GIL to the
event loop thread when that thread waits for it. Call it from a worker thread.
"""

import json

from fastapi.responses import Response

# About 5 ms or less of json.dumps per part on one core of a 2-core test machine.
MAX_VALUES_PER_CALL = 5_000


def estimated_size(value) -> int:
    """Estimate the JSON values in ``value``, assuming every list is as deep as its first item."""
    if isinstance(value, dict):
        return 1 + sum(estimated_size(item) for item in value.values())
    if isinstance(value, list | tuple):
        return 1 + (len(value) * estimated_size(value[0]) if value else 0)
    return 1


def _dumps(value) -> str:
    return json.dumps(value, allow_nan=False, separators=(",", ":"))


def _encode(value, parts: list[str]) -> None:
    if estimated_size(value) <= MAX_VALUES_PER_CALL:
        parts.append(_dumps(value))
        return
    if isinstance(value, dict):
        parts.append("{")
        for index, (key, item) in enumerate(value.items()):
            parts.append(("," if index else "") + _dumps(str(key)) + ":")
            _encode(item, parts)
        parts.append("}")
        return

    # A long list: nested lists one item at a time, scalars and objects in slices.
    parts.append("[")
    if isinstance(value[0], list | tuple):
        for index, item in enumerate(value):
            if index:
                parts.append(",")
            _encode(item, parts)
    else:
        per_part = max(1, MAX_VALUES_PER_CALL // estimated_size(value[0]))
        for start in range(0, len(value), per_part):
            # Strip the brackets of each slice's own array.
            parts.append(
                ("," if start else "") + _dumps(list(value[start : start + per_part]))[1:-1]
            )
    parts.append("]")


def encode_json(value) -> bytes:
    """Return ``value`` as compact JSON bytes.

    Raises:
        ValueError: for NaN or infinity, which JSON cannot represent.
        TypeError: for values that are not JSON types.
    """
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode()


def json_response(value, status_code: int = 200) -> Response:
    """Return a response whose body ``encode_json`` has already produced."""
    return Response(encode_json(value), status_code=status_code, media_type="application/json")
