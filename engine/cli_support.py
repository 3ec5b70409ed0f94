"""What the command line's modules share: settings from flags, the clock."""

from __future__ import annotations

import argparse
import time
from typing import Any

import orjson

from engine.cli_flags import settings_given
from engine.errors import ConfigError
from engine.settings import Settings, load_settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Return the settings: the flags given over the DECLIC_* variables."""
    overrides: dict[str, Any] = dict(settings_given(args))
    caps = overrides.get("frequency_caps")
    if caps is not None:
        try:
            overrides["frequency_caps"] = orjson.loads(caps)
        except orjson.JSONDecodeError:
            raise ConfigError(
                [("frequency_caps", 'expected JSON, like [{"max": 3, "per_seconds": 86400}]')]
            ) from None
    return load_settings(overrides)


def now_ms() -> int:
    return int(time.time() * 1000)
