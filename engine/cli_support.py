"""What the command line's modules share: settings from flags, the clock."""

from __future__ import annotations

import argparse
import time

from engine.settings import Settings, load_settings


def settings_from_args(args: argparse.Namespace) -> Settings:
    overrides = {
        name.removeprefix("setting_"): value
        for name, value in vars(args).items()
        if name.startswith("setting_")
    }
    return load_settings(overrides)


def now_ms() -> int:
    return int(time.time() * 1000)
