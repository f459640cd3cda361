"""The stage-directory layout has one definition (expyre.layout); the job-side runner, which runs
without expyre, keeps copies of the names it reads and writes: they must be equal."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import expyre
from expyre import _runner, layout, packing


def test_runner_copies_equal_the_layout():
    for name in ("TASK", "STARTED", "SUCCEEDED", "FAILED", "STDOUT", "STDERR", "MODULES", "USAGE"):
        assert getattr(_runner, name) == getattr(layout, name), name


def test_packing_writes_the_layout_partial_prefix():
    assert packing.PARTIAL_PREFIX == layout.PARTIAL_PREFIX
    assert packing.JOB_MODULE + ".py" == layout.CHUNK_RUNNER


def test_no_stage_file_name_outside_the_layout():
    """No string constant of the core's other Python modules is an ``_expyre_*`` file name (the
    job-side modules' copies excepted: the runner's and the chunk runner's, packing.py): they all
    come from layout.py."""
    src = Path(expyre.__file__).parent
    name = re.compile(r"_expyre_[A-Za-z0-9_.]*")
    offenders = []
    for path in sorted(src.rglob("*.py")):
        if path.name in ("layout.py", "_runner.py", "packing.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and name.fullmatch(node.value):
                offenders.append(f"{path.relative_to(src)}:{node.lineno}: {node.value!r}")
    assert offenders == []
