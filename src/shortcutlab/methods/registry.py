"""Method registry: ``@register`` on each method class; ``get_method(name)`` for the runner."""

from __future__ import annotations

from shortcutlab.errors import ShortcutlabError
from shortcutlab.methods.base import Method

METHODS: dict[str, type[Method]] = {}


def register(cls: type[Method]) -> type[Method]:
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} has no name")
    if cls.name in METHODS:
        raise ValueError(f"method '{cls.name}' registered twice")
    METHODS[cls.name] = cls
    return cls


def get_method(name: str) -> type[Method]:
    if name not in METHODS:
        raise ShortcutlabError(
            f"unknown method '{name}'; choose one of: {', '.join(sorted(METHODS))}"
        )
    return METHODS[name]
