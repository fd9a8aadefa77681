"""One registry type for every family of named classes (steppers, systems, models)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T", bound=type)


class Registry(Generic[T]):
    """Name → class. ``resolve`` accepts a registered name or a subclass of ``base``."""

    def __init__(self, kind: str, base: type):
        self.kind = kind
        self.base = base
        self._classes: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(cls: T) -> T:
            if name in self._classes:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            cls.name = name
            self._classes[name] = cls
            return cls

        return decorator

    def resolve(self, name_or_class) -> T:
        if isinstance(name_or_class, type):
            if not issubclass(name_or_class, self.base):
                raise TypeError(
                    f"expected a {self.kind} name or a subclass of {self.base.__name__}, "
                    f"got class {name_or_class.__name__}"
                )
            return name_or_class
        if not isinstance(name_or_class, str):
            raise TypeError(
                f"expected a {self.kind} name (str) or class, got {type(name_or_class).__name__}"
            )
        try:
            return self._classes[name_or_class]
        except KeyError:
            valid = ", ".join(sorted(self._classes))
            raise ValueError(
                f"unknown {self.kind} {name_or_class!r}; valid names: {valid}"
            ) from None

    def names(self, where: Callable[[T], bool] | None = None) -> list[str]:
        return sorted(n for n, c in self._classes.items() if where is None or where(c))

    def __contains__(self, name: str) -> bool:
        return name in self._classes
