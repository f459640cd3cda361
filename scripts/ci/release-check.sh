#!/usr/bin/env bash
# Release check for every distribution of the workspace, as a packager would do it:
#   1. build each sdist and wheel (`uv build --all-packages`);
#   2. `twine check` them (metadata and the README rendering that PyPI will show);
#   3. check that each sdist and wheel carries the LICENSE file and that its version is the
#      one `__version__` of its import package says (one version source per distribution);
#   4. install the built wheels (not editable, not the workspace) into a fresh venv with only
#      expyre-core and one plugin, and run ExPyRe's README example from that install on the
#      zero-config `local` system; `xpr plugins` must list the plugin.
#
#   bash scripts/ci/release-check.sh [out_dir]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
repo="$PWD"
export PATH="$HOME/.local/bin:$PATH"
out="${1:-$(mktemp -d /tmp/expyre-dist.XXXXXX)}"
rm -rf "$out"; mkdir -p "$out"

echo "== build: uv build --all-packages -> $out"
uv build --quiet --all-packages -o "$out"
ls "$out"

echo "== twine check"
uvx --quiet twine check --strict "$out"/*

echo "== LICENSE and version in every artifact"
python3 - "$out" <<'PY'
import re, sys, tarfile, zipfile
from pathlib import Path
out = Path(sys.argv[1])
src = {"expyre_core": "expyre_core/src/expyre", "expyre_slurm": "plugins/expyre_slurm/src/expyre_slurm",
       "expyre_pbs": "plugins/expyre_pbs/src/expyre_pbs", "expyre_sge": "plugins/expyre_sge/src/expyre_sge",
       "expyre_ssh": "plugins/expyre_ssh/src/expyre_ssh"}
license_text = Path("LICENSE").read_text()
bad = []
for dist, path in src.items():
    version = re.search(r'^__version__ = "([^"]+)"', Path(path, "__init__.py").read_text(), re.M).group(1)
    wheels = list(out.glob(f"{dist}-{version}-*.whl"))
    sdists = list(out.glob(f"{dist}-{version}.tar.gz"))
    if len(wheels) != 1 or len(sdists) != 1:
        bad.append(f"{dist}: expected one wheel and one sdist of version {version} (__version__), found {wheels + sdists}")
        continue
    with zipfile.ZipFile(wheels[0]) as z:
        lic = [n for n in z.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        if not lic or z.read(lic[0]).decode() != license_text:
            bad.append(f"{wheels[0].name}: no LICENSE (or not the repository's) in .dist-info/licenses/")
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        for field in ("License-Expression: MIT", "Author: The expyre developers", "Project-URL: Documentation",
                      "Classifier: Programming Language :: Python :: 3.13", "Keywords:"):
            if field not in meta:
                bad.append(f"{wheels[0].name}: METADATA lacks {field!r}")
    with tarfile.open(sdists[0]) as t:
        if f"{dist}-{version}/LICENSE" not in t.getnames():
            bad.append(f"{sdists[0].name}: no LICENSE at the top of the sdist")
    print(f"  {dist} {version}: wheel and sdist carry LICENSE and full metadata")
if bad:
    sys.exit("release check failed:\n  " + "\n  ".join(bad))
PY

example="$(ls "$repo"/examples/readme_example.py 2>/dev/null || ls "$repo"/examples/*example*.py | head -n 1)"
for plugin in slurm pbs sge ssh; do
    echo "== fresh venv: expyre-core + expyre-$plugin from the built wheels; ExPyRe's README example"
    venv="$out/venv-$plugin"
    uv venv --quiet --python 3.11 "$venv"
    VIRTUAL_ENV="$venv" uv pip install --quiet --no-cache "$out"/expyre_core-*.whl "$out"/expyre_"$plugin"-*.whl numpy
    if VIRTUAL_ENV="$venv" uv pip list 2>/dev/null | grep -E '^expyre-' | grep -vE "^expyre-(core|$plugin) " ; then
        echo "unexpected expyre distribution in the venv" >&2; exit 1
    fi
    # run from outside the repository: the installed wheels, not the sources, are what is imported
    (
        cd "$out"
        export EXPYRE_ROOT="$out/root-$plugin"
        where="$("$venv/bin/python" -c 'import expyre, os; print(os.path.dirname(expyre.__file__))')"
        case "$where" in "$venv"/*) ;; *) echo "expyre imported from $where, not from the venv" >&2; exit 1 ;; esac
        "$venv/bin/python" "$example"
        "$venv/bin/xpr" plugins | tee "$out/plugins-$plugin.txt"
        grep -q "expyre-$plugin" "$out/plugins-$plugin.txt" || { echo "xpr plugins does not list expyre-$plugin" >&2; exit 1; }
        "$venv/bin/xpr" ls
    )
done
echo "== release check passed: $out"
