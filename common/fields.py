"""Dict -> dataclass keyword arguments, the one key check that the config readers share
(harness/config.py for run specs, analysis/config.py, common/record.py for record.json).

Each reader keeps its own value checks; this only decides which keys may be there, so a
misspelt or renamed key fails in one line where it is read instead of being dropped.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


def field_kwargs(
    cls: type,
    raw: Any,
    where: str,
    error: type[Exception],
    *,
    require_all: bool = False,
    optional: tuple[str, ...] = (),
) -> dict[str, Any]:
    """`raw`'s items as keyword arguments for dataclass `cls`. A key that names no field (and,
    with `require_all`, a field that `raw` lacks, unless it is one of `optional`) raises `error`
    naming `where.key`; lists become tuples where the field is annotated as a tuple."""
    if not isinstance(raw, Mapping):
        raise error(f"{where}: expected a mapping, got {type(raw).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if require_all:
        missing = [n for n in fields if n not in raw and n not in optional]
        if missing:
            raise error(f"{where}.{missing[0]}: missing (expected keys: {', '.join(fields)})")
    for key in raw:
        if key not in fields:
            raise error(f"{where}.{key}: unknown key (known: {', '.join(fields)})")
    kwargs = {}
    for key, val in raw.items():
        if isinstance(val, list) and "tuple" in str(fields[key].type):
            val = tuple(val)
        kwargs[key] = val
    return kwargs
