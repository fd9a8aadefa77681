"""Settings overridden from a TOML file: ``physres run --config`` and ``physres train --config``.

The file is one flat TOML table whose keys are fields of a settings dataclass; each value
replaces that field (TOML arrays become tuples where the field holds a tuple).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class C:
...     lr: float = 1e-3
...     depths: tuple = (8, 16)
>>> override(C(), {"lr": 2e-3, "depths": [4, 8]}, where="run.toml")
C(lr=0.002, depths=(4, 8))
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path


def read_table(path, *, option: str = "--config") -> dict:
    """The top-level table of the TOML file ``path``; a bad file is a one-line ValueError."""
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib
        except ModuleNotFoundError:
            raise ValueError(f"{option} needs Python 3.11 (tomllib) or the tomli package") from None
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{option} file {str(path)!r} does not exist")
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{option} {str(path)!r} is not valid TOML: {exc}") from None


def override(base, values: Mapping, *, where: str = "--config"):
    """A copy of the dataclass instance ``base`` with the fields named in ``values`` replaced.

    An unknown key raises ``ValueError`` naming it and listing the valid ones. When the field's
    current value is a bool, int, float, str or tuple, the new value must be of that kind (an
    int is accepted for a float; a TOML array for a tuple); ``None`` fields take any value, and
    the dataclass's own checks (``__post_init__``) still run.
    """
    if not dataclasses.is_dataclass(base) or isinstance(base, type):
        raise TypeError(f"`base` must be a dataclass instance, got {type(base).__name__}")
    if not isinstance(values, Mapping):
        raise TypeError(f"`values` must be a mapping, got {type(values).__name__}")
    fields = [f.name for f in dataclasses.fields(base) if f.init]
    check_keys(values, fields, type(base).__name__, where)
    changes = {
        key: coerce(getattr(base, key), value, f"{where}: `{key}`") for key, value in values.items()
    }
    return dataclasses.replace(base, **changes)


def check_keys(values: Mapping, valid, what: str, where: str) -> None:
    """``ValueError`` naming the first key of ``values`` not in ``valid``, listing the valid
    ones."""
    valid = list(valid)
    for key in values:
        if key not in valid:
            raise ValueError(
                f"{where}: unknown key {key!r} for {what}; valid keys: {', '.join(valid)}"
            )


def coerce(current, value, where: str):
    """``value`` as the kind of ``current`` (see :func:`override`)."""
    if isinstance(value, Mapping):
        raise ValueError(f"{where} must be a value, got a table {dict(value)!r}")
    if current is None:
        return tuple(value) if isinstance(value, list) else value
    if isinstance(current, tuple):
        if not isinstance(value, (list, tuple)):
            raise ValueError(f"{where} must be an array like {list(current)!r}, got {value!r}")
        if current:
            return tuple(coerce(current[0], v, where) for v in value)
        return tuple(value)
    if isinstance(current, bool):
        ok = isinstance(value, bool)
    elif isinstance(current, int):
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(current, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif isinstance(current, str):
        ok = isinstance(value, str)
    else:
        ok = True
    if not ok:
        raise ValueError(
            f"{where} must be {type(current).__name__} like {current!r}, got {value!r}"
        )
    return value
