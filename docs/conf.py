"""Sphinx configuration of the expyre documentation (built by ``bash scripts/docs.sh``)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# the docs build from the workspace's editable installs; this only helps a build outside uv
sys.path.insert(0, str(HERE.parent / "expyre_core" / "src"))
# autodoc imports expyre: keep it from reading the user's ~/.expyre (config is loaded lazily anyway)
os.environ.setdefault("EXPYRE_PROGRESS", "0")

import expyre  # noqa: E402

project = "expyre"
author = "the expyre authors"
copyright = "the expyre authors"
release = expyre.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "sphinx_click",
]

source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

html_theme = "furo"
html_title = f"expyre {release}"

myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = False
napoleon_numpy_docstring = False

# Every reference must resolve (built with -n -W). The build has no network, so there is no
# intersphinx: names of other projects (the standard library, attrs, click, pluggy...) cannot be
# resolved and are not checked; every `expyre` name is.
nitpicky = True
nitpick_ignore_regex = [
    (r"py:.*", r"(?!expyre)[A-Za-z_].*"),
    # the type variables of the generic futures (ExPyReFuture[T], submit(fn: Callable[P, T]))
    (r"py:.*", r"~?(expyre\.executor\.)?[TP]"),
]


def _verbatim_click_paragraphs(app, ctx, lines: list[str]) -> None:
    """Render click's verbatim paragraphs (those after a ``\\b`` line, which sphinx-click turns into
    ``| `` line blocks, still parsed as inline markup) as literal blocks: in ``xpr --help`` they are
    command examples, shown exactly as typed."""
    out: list[str] = []
    in_block = False
    for line in lines:
        if line.startswith("| "):
            if not in_block:
                out += [".. code-block:: text", ""]
                in_block = True
            out.append("    " + line[2:])
        else:
            if in_block and line.strip():
                out.append("")
            in_block = False
            out.append(line)
    lines[:] = out


def setup(app):
    app.connect("sphinx-click-process-description", _verbatim_click_paragraphs)
