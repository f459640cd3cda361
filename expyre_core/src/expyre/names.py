"""Job ids: made in one place, valid for every scheduler and as file names."""

from __future__ import annotations

import re
import secrets

__all__ = ["make_job_id", "sanitize_name", "JOB_ID_RE"]

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"
_BAD = re.compile(r"[^A-Za-z0-9_.-]+")
#: what every job id matches: a letter first (SGE and PBS reject leading digits), then only
#: characters that need no quoting anywhere, at most 63 characters in all
JOB_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,62}$")
NAME_PART_MAX = 48


def sanitize_name(name: str) -> str:
    """The part of a job id that comes from the user's job name."""
    s = _BAD.sub("_", name).strip("._-")
    s = re.sub(r"\.{2,}", ".", s)
    if not s or not s[0].isalpha():
        s = "j" + (("_" + s) if s else "")
    return s[:NAME_PART_MAX].rstrip("._-") or "j"


def make_job_id(name: str) -> str:
    """``<sanitised name>_<10 random characters>``, unique and safe for every scheduler."""
    token = "".join(secrets.choice(_ALPHABET) for _ in range(10))
    job_id = f"{sanitize_name(name)}_{token}"
    assert JOB_ID_RE.match(job_id), job_id
    return job_id
