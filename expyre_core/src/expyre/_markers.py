"""The pluggy markers of the ``expyre`` project (only :data:`hookimpl` is public)."""

from __future__ import annotations

import pluggy

PROJECT = "expyre"

hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
