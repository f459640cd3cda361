"""Every code example of the documentation (docs/*.md) works.

* Python blocks run, page by page (the page's blocks in order, as one script), on the zero-config
  ``local`` system, in a fresh directory with a fresh expyre root.
* A Python block preceded by the MyST comment line ``% example: cluster`` needs a real cluster
  (or ``% example: plugin``: it is a piece of a plugin package): it is only compiled, and it must
  say so in its first line (``# needs a cluster: ...`` / ``# part of a plugin package: ...``), so a
  reader knows that CI did not run it.
* JSON blocks are configurations: each is checked by ``xpr config check --offline`` (the
  configuration and the plugins' options are validated, nothing runs on any host). A block
  marked ``% example: system`` is one system entry (``"name": {...}``), checked inside
  ``{"systems": {...}}``; ``% example: json`` is other JSON, only parsed.
* TOML blocks are parsed.

Shell blocks are not run (they set up machines, run the test suite or the benchmarks).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md"))

FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)\s*(?P<info>[^`\s]*)\s*$")
MARKER = re.compile(r"^\s*%\s*example:\s*(?P<kind>[\w-]+)\s*$")
KINDS = {"cluster", "plugin", "system", "json"}
FIRST_LINE = {"cluster": "# needs a cluster", "plugin": "# part of a plugin package"}


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the opening fence
    lang: str
    kind: str | None
    code: str

    @property
    def where(self) -> str:
        return f"docs/{self.page.name}:{self.line}"


def blocks(page: Path) -> list[Block]:
    """The fenced code blocks of a MyST page, with the ``% example:`` marker just above each."""
    out: list[Block] = []
    lines = page.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, indent, info = m["fence"], len(m["indent"]), m["info"]
        lang = info.strip("{}").lower()
        if lang == "code-block":  # ```{code-block} python
            lang = lines[i].split("}", 1)[1].strip().lower()
        kind = None
        if i > 0 and (mk := MARKER.match(lines[i - 1])):
            kind = mk["kind"]
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not (lines[j].strip().startswith(fence[0] * len(fence))
                                      and lines[j].strip().strip(fence[0]) == ""):
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        out.append(Block(page, i + 1, lang, kind, "\n".join(body) + "\n"))
        i = j + 1
    return out


ALL = [b for p in PAGES for b in blocks(p)]


def test_the_docs_have_examples_and_known_markers():
    assert len(PAGES) >= 10, PAGES
    assert sum(b.lang == "python" for b in ALL) >= 10
    for b in ALL:
        assert b.kind is None or b.kind in KINDS, f"{b.where}: unknown marker '% example: {b.kind}'; valid: {sorted(KINDS)}"


@pytest.mark.parametrize("block", [b for b in ALL if b.lang == "python"], ids=lambda b: b.where)
def test_python_block_compiles_and_says_when_ci_does_not_run_it(block):
    compile(block.code, block.where, "exec")
    if block.kind in FIRST_LINE:
        first = block.code.lstrip().splitlines()[0]
        assert first.startswith(FIRST_LINE[block.kind]), (
            f"{block.where}: a block CI only compiles must begin with {FIRST_LINE[block.kind]!r}, got {first!r}")


@pytest.mark.parametrize("block", [b for b in ALL if b.lang == "toml"], ids=lambda b: b.where)
def test_toml_block_parses(block):
    tomllib = pytest.importorskip("tomllib")
    tomllib.loads(block.code)


def _config_check(config: dict, tmp_path: Path) -> subprocess.CompletedProcess:
    root = tmp_path / "_expyre"
    root.mkdir(mode=0o700)
    (root / "config.json").write_text(json.dumps(config))
    env = {**os.environ, "EXPYRE_ROOT": str(root), "EXPYRE_PROGRESS": "0"}
    return subprocess.run([sys.executable, "-m", "expyre", "config", "check", "--offline"], env=env, cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("block", [b for b in ALL if b.lang == "json"], ids=lambda b: b.where)
def test_json_block_is_a_valid_configuration(block, tmp_path):
    text = block.code
    if block.kind == "system":
        text = '{"systems": {' + text + "}}"
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        pytest.fail(f"{block.where}: not JSON ({exc}); mark other text as another language")
    if block.kind == "json":
        return
    r = _config_check(data, tmp_path)
    assert r.returncode == 0, f"{block.where}: xpr config check --offline refused it:\n{r.stdout}{r.stderr}"
    assert "FAIL" not in r.stdout, r.stdout


def test_a_broken_configuration_is_caught(tmp_path):
    """The check above can fail: a misspelt key is refused."""
    r = _config_check({"systems": {"c": {"host": None, "scheduler": "slurm", "partitons": {}}}}, tmp_path)
    assert r.returncode != 0 and "partitons" in r.stdout + r.stderr


RUN_PAGES = [p for p in PAGES if any(b.lang == "python" and b.kind is None for b in blocks(p))]


@pytest.mark.parametrize("page", RUN_PAGES, ids=lambda p: f"docs/{p.name}")
def test_page_python_examples_run_on_local(page, tmp_path):
    parts = []
    for b in blocks(page):
        if b.lang == "python" and b.kind is None:
            parts.append(f"# ---- {b.where}\n{b.code}")
    script = tmp_path / f"docs_{page.stem}.py"
    script.write_text("\n".join(parts))
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EXPYRE_")}
    env.update(EXPYRE_ROOT=str(work / "_expyre"), EXPYRE_PROGRESS="0")
    r = subprocess.run([sys.executable, str(script)], cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"the Python examples of docs/{page.name} failed ({script}):\n{r.stdout}\n{r.stderr}"
