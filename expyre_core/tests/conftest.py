from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from expyre import config, plugins

# test jobs import helper modules from this directory (pickled by reference)
HERE = str(Path(__file__).parent)
sys.path.insert(0, HERE)
os.environ["PYTHONPATH"] = os.pathsep.join([HERE, *filter(None, [os.environ.get("PYTHONPATH")])])
from expyre.testing import isolated_root


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A fresh expyre root with only the embedded `local` system."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    with isolated_root(tmp_path / "_expyre", {}) as r:
        yield r


@pytest.fixture
def fresh_plugins():
    plugins.reset()
    yield
    plugins.reset()
    config._loaded.clear()  # a config loaded with test-only plugins must not outlive the test
