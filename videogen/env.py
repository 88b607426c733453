"""Typed readers for environment variables: the one place settings come from.

A value that does not parse stops start-up with an error that names the variable: `HTTPS=ture` must not read as
false, nor `WEB_WORKERS=four` fail somewhere without a name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from django.core.exceptions import ImproperlyConfigured

T = TypeVar("T")

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def env_str(name: str, default: str = "") -> str:
    return os.environ.get(name, default)


def _parsed(name: str, default: T, parse: Callable[[str], T], what: str) -> T:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return parse(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be {what}, not {raw!r}") from None


def env_int(name: str, default: int) -> int:
    return _parsed(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _parsed(name, default, float, "a number")


def env_bool(name: str, default: bool) -> bool:
    raw = os.environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in _TRUE:
        return True
    if raw in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be one of {'/'.join(_TRUE)} or {'/'.join(_FALSE)}, not {raw!r}")


def env_list(name: str, default: str = "") -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


def env_floats(name: str, default: str) -> list[float]:
    """A comma-separated list of numbers ("5,30,120")."""
    try:
        return [float(item) for item in env_list(name, default)]
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be numbers separated by commas, not {env_str(name)!r}") from None


def env_choice(name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = os.environ.get(name, "").strip().lower() or default
    if raw not in choices:
        raise ImproperlyConfigured(f"{name} must be one of {', '.join(choices)}, not {raw!r}")
    return raw


def var_dir() -> Path:
    """Where this installation keeps its local state (SQLite file, metric files, keys, trained models)."""
    return Path(env_str("VIDEOGEN_VAR_DIR", str(Path(__file__).resolve().parent.parent / "var")))
