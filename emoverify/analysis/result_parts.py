"""Typed results as the result store keeps them: named arrays and a JSON record, and back.

An analysis returns frozen dataclasses whose fields are numbers, strings, None, numpy arrays, tuples and
other such dataclasses. `to_parts` splits one into the arrays (`# name -> array`, named by their path in
the result, e.g. `pairs/0/bootstrap/after`) and a JSON tree that names each dataclass and array;
`from_parts` rebuilds it, taking the dataclasses it may build from the caller (nothing is looked up by
name in the code base). Arrays come back bit for bit (safetensors), numbers exactly (JSON writes a float's
shortest round-tripping repr), sequences as tuples, dictionaries with their string keys.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from emoverify.errors import EmoverifyError

__all__ = ["from_parts", "to_parts"]

_TYPE, _FIELDS, _ARRAY, _DICT = "type", "fields", "array", "dict"


def to_parts(result: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, record) of a typed result: the record is plain JSON, the arrays are what it points to."""
    arrays: dict[str, np.ndarray] = {}
    return arrays, {"result": _encode(result, arrays, "")}


def from_parts(arrays: Mapping[str, np.ndarray], record: Mapping[str, Any], types: Iterable[type]) -> Any:
    """The typed result `to_parts` split; `types` are the dataclasses it may contain."""
    by_name = {cls.__name__: cls for cls in types}
    return _decode(record["result"], arrays, by_name)


def _encode(value: Any, arrays: dict[str, np.ndarray], path: str) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {_TYPE: type(value).__name__,
                _FIELDS: {f.name: _encode(getattr(value, f.name), arrays, f"{path}/{f.name}")
                          for f in dataclasses.fields(value)}}
    if isinstance(value, np.ndarray):
        if value.ndim == 0:
            raise EmoverifyError(f"{path or 'the result'}: store a 0-d array as a number")
        arrays[path.lstrip("/")] = value
        return {_ARRAY: path.lstrip("/")}
    if isinstance(value, (tuple, list)):
        return [_encode(item, arrays, f"{path}/{i}") for i, item in enumerate(value)]
    if isinstance(value, Mapping):
        if not all(isinstance(key, str) for key in value):
            raise EmoverifyError(f"{path or 'the result'}: dictionary keys must be strings")
        return {_DICT: {key: _encode(item, arrays, f"{path}/{key}") for key, item in value.items()}}
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise EmoverifyError(f"{path or 'the result'}: cannot store a {type(value).__name__}")


def _decode(node: Any, arrays: Mapping[str, np.ndarray], types: Mapping[str, type]) -> Any:
    if isinstance(node, list):
        return tuple(_decode(item, arrays, types) for item in node)
    if not isinstance(node, dict):
        return node
    if _ARRAY in node:
        return np.asarray(arrays[node[_ARRAY]])
    if _DICT in node:
        return {key: _decode(item, arrays, types) for key, item in node[_DICT].items()}
    cls = types.get(node[_TYPE])
    if cls is None:
        raise EmoverifyError(f"a stored result holds a {node[_TYPE]}, which is not one of {sorted(types)}")
    return cls(**{name: _decode(item, arrays, types) for name, item in node[_FIELDS].items()})
