"""Value types for the units used in config.json and resources: durations and memory sizes.

Both follow the formats of ExPyRe's README exactly:

* time: ``int`` seconds, ``"<N>[smhd]"`` (case insensitive), or ``"[[dd-]hh:]mm:ss"``-style
  ``"<dd>-<hh>:<mm>:<ss>"`` with the leading parts optional (``"N1:N2"`` is minutes:seconds);
  a bare numeric string is seconds.
* memory: ``int`` kB, or ``"<N>[kmgt]b?"`` (case insensitive, binary multiples of kB).
"""

from __future__ import annotations

import re

from attrs import frozen

__all__ = ["Duration", "Memory"]

_DURATION_UNIT = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([smhd])\s*$", re.IGNORECASE)
_DURATION_COLON = re.compile(r"^\s*(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?\s*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d*)?)\s*([kmgt])b?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_UNIT_KB = {"k": 1, "m": 1024, "g": 1024**2, "t": 1024**3}

DURATION_HELP = "use seconds (int) or e.g. '90s', '30m', '48h', '2d', '1:30' (mm:ss), '48:00:00' or '1-00:00:00'"
MEMORY_HELP = "use kB (int) or e.g. '500mb', '60GB', '1.5tb'"


@frozen(order=True)
class Duration:
    """A length of time in whole seconds."""

    seconds: int

    @classmethod
    def parse(cls, value: int | str | Duration) -> Duration:
        """Parse the time formats of ExPyRe's README; raise ValueError/TypeError saying what is accepted."""
        if isinstance(value, Duration):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"invalid duration {value!r}: {DURATION_HELP}")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"invalid duration {value!r}: must not be negative")
            return cls(value)
        m = _DURATION_UNIT.match(value)
        if m:
            return cls(int(round(float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()])))
        m = _DURATION_COLON.match(value)
        if m:
            days, *rest = m.groups()
            parts = [int(p) for p in rest if p is not None]
            if days is not None and len(parts) != 3:
                raise ValueError(f"invalid duration {value!r}: with days give all of dd-hh:mm:ss")
            seconds = 0
            for p in parts:
                seconds = seconds * 60 + p
            return cls(seconds + 86400 * int(days or 0))
        raise ValueError(f"invalid duration {value!r}: {DURATION_HELP}")

    def hms(self) -> str:
        """``hours:minutes:seconds`` (hours may exceed 24), as in the ``max_time_HMS`` header key."""
        h, rem = divmod(self.seconds, 3600)
        m, s = divmod(rem, 60)
        return f"{h}:{m:02d}:{s:02d}"

    def minutes_ceil(self) -> int:
        """Whole minutes, rounded up (Slurm and PBS round time limits up to minutes)."""
        return -(-self.seconds // 60)

    def __str__(self) -> str:
        return self.hms()


@frozen(order=True)
class Memory:
    """An amount of memory in kB (1 kB = 1024 bytes, as in ExPyRe's README)."""

    kb: int

    @classmethod
    def parse(cls, value: int | str | Memory) -> Memory:
        if isinstance(value, Memory):
            return value
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise TypeError(f"invalid memory {value!r}: {MEMORY_HELP}")
        if isinstance(value, int):
            if value < 0:
                raise ValueError(f"invalid memory {value!r}: must not be negative")
            return cls(value)
        m = _MEMORY.match(value)
        if m:
            return cls(int(round(float(m.group(1)) * _UNIT_KB[m.group(2).lower()])))
        if value.strip().isdigit():
            return cls(int(value))
        raise ValueError(f"invalid memory {value!r}: {MEMORY_HELP}")

    @property
    def mb(self) -> int:
        """Whole MB, rounded up (what ``--mem`` style options take)."""
        return -(-self.kb // 1024)

    def __str__(self) -> str:
        for unit, size in (("TB", 1024**3), ("GB", 1024**2), ("MB", 1024)):
            if self.kb >= size and self.kb % size == 0:
                return f"{self.kb // size}{unit}"
        return f"{self.kb}kB"
