"""The canonical expression vocabulary and the aliases that map dataset folder names onto it."""

from __future__ import annotations

import re
from collections.abc import Iterable

#: The eight canonical expressions, in the order of the database's probability columns.
EXPRESSIONS: tuple[str, ...] = (
    "neutral",
    "happy",
    "sad",
    "surprise",
    "fear",
    "disgust",
    "anger",
    "contempt",
)

#: One fixed colour per expression, shared by every figure.
COLORS: dict[str, str] = {
    "neutral": "#9e9e9e",
    "happy": "#f4c20d",
    "sad": "#3c78d8",
    "surprise": "#ff9900",
    "fear": "#8e44ad",
    "disgust": "#2e8b57",
    "anger": "#d93025",
    "contempt": "#795548",
}

_ALIASES: dict[str, tuple[str, ...]] = {
    "neutral": ("neutral", "ne", "neu", "calm"),
    "happy": ("happy", "happiness", "ha", "hap", "joy", "smile"),
    "sad": ("sad", "sadness", "sa", "sorrow"),
    "surprise": ("surprise", "surprised", "su", "sur"),
    "fear": ("fear", "fearful", "afraid", "fe", "scared"),
    "disgust": ("disgust", "disgusted", "di", "dis"),
    "anger": ("anger", "angry", "an", "ang", "mad"),
    "contempt": ("contempt", "contemptuous", "co", "con"),
}

ALIASES: dict[str, str] = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}


class UnknownExpressionError(ValueError):
    """A class name that maps onto no canonical expression."""

    def __init__(self, name: str) -> None:
        known = ", ".join(sorted(ALIASES))
        super().__init__(f"unknown expression {name!r}; known names: {known}")
        self.name = name


def _key(name: str) -> str:
    return re.sub(r"[^a-z]", "", name.lower())


def canonical(name: str) -> str:
    """The canonical expression for a class name or alias (case and punctuation ignored)."""
    try:
        return ALIASES[_key(name)]
    except KeyError:
        raise UnknownExpressionError(name) from None


def canonical_order(names: Iterable[str]) -> list[str]:
    """Canonical names sorted in the vocabulary's order, duplicates removed."""
    wanted = {canonical(n) for n in names}
    return [e for e in EXPRESSIONS if e in wanted]
