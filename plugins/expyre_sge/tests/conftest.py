"""Test setup of expyre-sge: the helper module ``sge_testlib`` (next to this file) is importable."""

from __future__ import annotations

import sys
from pathlib import Path

HERE = str(Path(__file__).parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)
