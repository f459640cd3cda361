#!/usr/bin/env bash
# Build the documentation site (docs/ -> docs/_build/html) with every warning an error, then run
# its examples: the pages' Python blocks on the zero-config local system, their config.json
# blocks through `xpr config check --offline` (tests/test_docs_examples.py).
#
#   bash scripts/docs.sh            # from a fresh clone: needs only uv (installed if missing) and PyPI
#
# -n (nitpicky) makes every unresolved reference to an expyre name, and every broken link between
# pages, a warning; -W turns warnings into errors. No network is used beyond PyPI (no intersphinx).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="$HOME/.local/bin:$PATH"

step() { printf '\n== %s\n' "$*"; }

if ! command -v uv >/dev/null 2>&1; then
    step "installing uv (PyPI)"
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet --break-system-packages --user uv
fi

step "workspace with the docs group: uv sync --all-packages --locked --group docs"
uv sync --all-packages --locked --group docs

step "sphinx-build -W --keep-going -n -b html docs docs/_build/html"
rm -rf docs/_build
uv run --no-sync sphinx-build -W --keep-going -n -b html docs docs/_build/html

step "the documentation's examples: pytest tests/test_docs_examples.py"
EXPYRE_PROGRESS=0 uv run --no-sync pytest -p no:cacheprovider tests/test_docs_examples.py -q
echo "docs: docs/_build/html/index.html"
