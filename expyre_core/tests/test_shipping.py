"""The user's own modules travel with the call, and the job side's Python may be another version.

Real files (modules written next to a "script" in tmp_path and imported from there, the current
directory elsewhere), real jobs on the local system, real interpreters of other Python versions
(pyenv's, as a config.json system's ``python_cmd``) with cloudpickle installed for them into a
private, cached directory.
"""

from __future__ import annotations

import glob
import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import types
import uuid
from pathlib import Path

import cloudpickle
import pytest

from expyre import Executor, config
from expyre.errors import JobPythonVersionError
from expyre.func import ExPyRe
from expyre.layout import HASHES, MODULES, SCRIPT
from expyre.shipping import ModuleShipError
from expyre.testing import isolated_root

RES = {"max_time": "10m", "n": (1, "tasks")}
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "expyre-tests"


def _write_project(where: Path, tag: str, factor: int = 10) -> tuple[str, str]:
    """A module and the module it imports, next to a would-be script in ``where``: unique names."""
    mod, tools = f"shipmod_{tag}", f"shiptools_{tag}"
    where.mkdir(parents=True, exist_ok=True)
    (where / f"{tools}.py").write_text(f"def scale(x):\n    return x * {factor}\n")
    (where / f"{mod}.py").write_text(textwrap.dedent(f"""\
        import dataclasses
        import sys
        import {tools}

        @dataclasses.dataclass
        class Result:
            value: int

        def compute(x):
            return Result({tools}.scale(x))

        def echo(x):
            return x, tuple(sys.version_info[:2])
        """))
    return mod, tools


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``(module, name of the module it imports, project dir)``: the module imported from its directory,
    the current directory elsewhere (where the jobs' expyre root is)."""
    tag = uuid.uuid4().hex[:8]
    proj = tmp_path / "proj"
    mod_name, tools = _write_project(proj, tag)
    monkeypatch.syspath_prepend(str(proj))
    mod = importlib.import_module(mod_name)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("EXPYRE_SHIP_MODULES", raising=False)
    yield mod, tools, proj
    for n in (mod_name, tools):
        sys.modules.pop(n, None)


@pytest.fixture
def local_root(tmp_path: Path, project):
    with isolated_root(tmp_path / "work" / "_expyre", {}) as r:
        yield r


def test_own_module_next_to_the_script_runs(project, local_root):
    mod, tools, _ = project
    xpr = ExPyRe("own", mod.compute, args=[4])
    shipped = sorted(os.listdir(xpr.stage_dir / MODULES))
    assert shipped == sorted([f"{mod.__name__}.py", f"{tools}.py"])  # the module and what it imports
    xpr.start(RES, system_name="local", partial_node=True)
    value = xpr.get_results(timeout=120, check_interval=1)
    assert value == mod.Result(40)
    assert type(value) is mod.Result  # the driver's class, not a copy made by value


def test_an_import_inside_a_function_pickled_by_value_is_shipped(project, local_root):
    mod, tools, _ = project
    name = mod.__name__
    ns: dict = {}
    exec(f"def lazy(x):\n    import {name}\n    return {name}.compute(x).value\n", ns)  # by value: no module
    xpr = ExPyRe("lazy", ns["lazy"], args=[2])
    assert sorted(os.listdir(xpr.stage_dir / MODULES)) == sorted([f"{name}.py", f"{tools}.py"])
    xpr.start(RES, system_name="local", partial_node=True)
    assert xpr.get_results(timeout=120, check_interval=1) == 20


def test_executor_map_ships_the_module(project, local_root):
    mod, _, _ = project
    with Executor("local", RES, partial_node=True, chunksize=3, progress=False) as ex:
        values = list(ex.map(mod.compute, range(7)))
    assert values == [mod.Result(10 * i) for i in range(7)]
    assert all(type(v) is mod.Result for v in values)


def test_switch_off_gives_the_hint_naming_the_module(project, local_root):
    mod, _, _ = project
    xpr = ExPyRe("off", mod.compute, args=[1], ship_modules=False)
    assert not (xpr.stage_dir / MODULES).exists()
    xpr.start(RES, system_name="local", partial_node=True)
    with pytest.raises(ModuleNotFoundError) as info:
        xpr.get_results(timeout=120, check_interval=1)
    text = str(info.value)
    assert repr(mod.__name__) in text and "ship_modules=False" in text and "EXPYRE_SHIP_MODULES" in text


def test_switch_off_by_environment(project, local_root, monkeypatch):
    mod, _, _ = project
    monkeypatch.setenv("EXPYRE_SHIP_MODULES", "0")
    assert not (ExPyRe("off_env", mod.compute, args=[2]).stage_dir / MODULES).exists()
    monkeypatch.setenv("EXPYRE_SHIP_MODULES", "sometimes")
    with pytest.raises(ValueError, match="EXPYRE_SHIP_MODULES='sometimes'.*use 1 .* or 0"):
        ExPyRe("off_env", mod.compute, args=[3])
    with pytest.raises(TypeError, match="ship_module"):
        Executor("local", RES, ship_module=False)


def test_a_module_only_in_memory_is_refused_before_submission(project, local_root):
    name = f"memmod_{uuid.uuid4().hex[:8]}"
    mod = types.ModuleType(name)
    exec("def f(x):\n    return x\n", mod.__dict__)
    mod.f.__module__ = name
    sys.modules[name] = mod
    try:
        with pytest.raises(ModuleShipError, match=f"module '{name}' exists only in this process"):
            ExPyRe("mem", mod.f, args=[1])
        assert config.db.jobs(name="mem") == []
    finally:
        del sys.modules[name]


_HASH_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
import importlib
mod = importlib.import_module(sys.argv[2])
from expyre.func import ExPyRe
xpr = ExPyRe("hashed", mod.compute, args=[{"a": 1, "b": {2, 3}}])
print(json.dumps(json.loads((xpr.stage_dir / "_expyre_hashes.json").read_text())))
"""


def test_hash_follows_the_module_code_across_processes(tmp_path: Path):
    tag = uuid.uuid4().hex[:8]
    proj = tmp_path / "proj"
    mod, tools = _write_project(proj, tag)
    (proj / "unrelated.py").write_text("X = 1\n")
    script = tmp_path / "hash.py"
    script.write_text(_HASH_SCRIPT)

    def digest(hashing: str) -> dict:
        root = tmp_path / f"root_{uuid.uuid4().hex[:6]}"
        env = {**os.environ, "EXPYRE_ROOT": str(root), "PYTHONHASHSEED": hashing, "HOME": str(tmp_path / "home")}
        env.pop("EXPYRE_SHIP_MODULES", None)
        out = subprocess.run([sys.executable, str(script), str(proj), mod], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout.strip().splitlines()[-1])

    first = digest("1")
    assert set(first["modules"]) == {mod, tools}
    again = digest("2")
    assert again["hash"] == first["hash"]  # unchanged code, another process and PYTHONHASHSEED: same call
    (proj / "unrelated.py").write_text("X = 2\n")  # a module the call does not use
    assert digest("3")["hash"] == first["hash"]
    (proj / f"{tools}.py").write_text("def scale(x):\n    return x * 11\n")  # the module the first one imports
    edited = digest("1")
    assert edited["hash"] != first["hash"]
    assert edited["modules"][tools] != first["modules"][tools]
    assert edited["modules"][mod] == first["modules"][mod]
    assert edited["function"] == first["function"]
    from expyre.why import diff_hashes

    assert diff_hashes(edited, first) == [f"shipped module {tools} code"]


# -- job-side Python versions ------------------------------------------------------------------------
def _interpreter(version: str) -> Path:
    try:
        pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=60).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        pyenv_root = os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))
    found = sorted(glob.glob(f"{pyenv_root}/versions/{version}.*/bin/python"))
    if not found:
        pytest.skip(f"no Python {version} here (looked in {pyenv_root}/versions): install it with `pyenv install {version}`")
    return Path(found[-1])


def _cloudpickle_for(python: Path, version: str) -> Path:
    """A directory holding cloudpickle (the driver's version) for ``python``, installed once from
    PyPI with ``pip install --target`` and kept in the user's cache."""
    target = _CACHE / f"cloudpickle-{cloudpickle.__version__}-py{version}"
    if (target / "cloudpickle" / "__init__.py").exists():
        return target
    _CACHE.mkdir(parents=True, exist_ok=True)
    tmp = _CACHE / f".tmp-{uuid.uuid4().hex}"
    try:
        cmd = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "--no-warn-script-location",
               "-q", "--target", str(tmp), f"cloudpickle=={cloudpickle.__version__}"]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            pytest.skip(f"cannot install cloudpickle for Python {version}: {out.stderr[-500:]}")
        try:
            os.rename(tmp, target)
        except OSError:  # another test process got there first
            if not (target / "cloudpickle").exists():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _system(python_cmd: str) -> dict:
    return {"host": None, "scheduler": "local", "python_cmd": python_cmd,
            "partitions": {"p": {"ncores": 2, "max_time": "1h", "max_mem": "1GB"}}}


@pytest.fixture
def other_python_root(tmp_path: Path, project):
    """A root whose systems ``py38`` and ``py313`` run jobs with those Pythons (and cloudpickle)."""
    systems = {}
    for version, name in (("3.8", "py38"), ("3.13", "py313")):
        python = _interpreter(version)
        site = _cloudpickle_for(python, version)
        systems[name] = _system(f"env PYTHONPATH={site} {python}")
    with isolated_root(tmp_path / "work" / "_expyre", systems) as r:
        yield r


def _data():
    import collections
    import datetime
    import decimal
    import fractions
    import uuid as uuid_mod

    return {
        "ints": [1, 10**30, -5], "float": 1.5, "complex": 1 + 2j, "text": "é ✓", "bytes": b"\x00\xff",
        "set": {3, 1, 2}, "frozenset": frozenset({"a", "b"}), "dict": {"z": 1, "a": 2, "m": 3},
        "nested": [{"y": {1, 2}}, ({"b": 1, "a": 2},)], "none": None, "bool": True,
        "decimal": decimal.Decimal("1.10"), "fraction": fractions.Fraction(1, 3),
        "datetime": datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
        "timedelta": datetime.timedelta(days=1, seconds=3), "uuid": uuid_mod.UUID(int=5),
        "path": Path("/a/b"), "ordered": collections.OrderedDict(b=1, a=2), "counter": collections.Counter("aab"),
        "deque": collections.deque([1, 2]), "range": range(3), "bytearray": bytearray(b"xy"),
    }


@pytest.mark.parametrize("system", ["py38", "py313"])
def test_data_pickles_load_in_other_job_pythons(project, other_python_root, system):
    mod, _, _ = project
    data = _data()
    xpr = ExPyRe(f"data_{system}", mod.echo, args=[data])
    xpr.start(RES, system_name=system, partial_node=True)
    back, version = xpr.get_results(timeout=300, check_interval=1)
    assert version == ((3, 8) if system == "py38" else (3, 13))  # loaded and pickled back by that Python
    assert back == data
    assert list(back["dict"]) == ["z", "a", "m"]  # the caller's dict order survives the round trip


def test_own_module_runs_in_another_python(project, other_python_root):
    mod, _, _ = project
    xpr = ExPyRe("own38", mod.compute, args=[5])
    xpr.start(RES, system_name="py38", partial_node=True)
    value = xpr.get_results(timeout=300, check_interval=1)
    assert value == mod.Result(50) and type(value) is mod.Result


def test_executor_map_in_another_python(project, other_python_root):
    mod, _, _ = project
    with Executor("py38", RES, partial_node=True, chunksize=2, progress=False) as ex:
        values = list(ex.map(mod.compute, range(5)))  # packed: expyre's chunk runner, by name, in Python 3.8
        versions = {v for _, v in ex.map(mod.echo, range(3), chunksize=3)}
    assert values == [mod.Result(10 * i) for i in range(5)]
    assert versions == {(3, 8)}


def test_by_value_function_refused_before_submission_on_another_version(project, other_python_root):
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if here in ("3.8", "3.13"):
        pytest.skip(f"this driver is Python {here}, the version of one job Python")  # pragma: no cover
    xpr = ExPyRe("byvalue", lambda x: x + 1, args=[1])
    with pytest.raises(JobPythonVersionError) as info:
        xpr.start(RES, system_name="py38", partial_node=True)
    text = str(info.value)
    assert f"only Python {here} (the Python that pickled it)" in text and "is Python 3.8" in text
    assert "python_cmd" in text and "<lambda>" in text
    assert "Nothing was submitted" in text
    assert config.db.get(xpr.id)["status"] == "created" and not (xpr.stage_dir / SCRIPT).exists()


def test_job_python_older_than_3_8_refused(project, tmp_path):
    python = _interpreter("3.6")
    mod, _, _ = project
    with isolated_root(tmp_path / "work" / "_expyre", {"py36": _system(str(python))}):
        xpr = ExPyRe("old", mod.compute, args=[1])
        with pytest.raises(JobPythonVersionError,
                           match=r"is Python 3\.6; jobs need Python 3\.8 or newer"):
            xpr.start(RES, system_name="py36", partial_node=True)
        assert config.db.get(xpr.id)["status"] == "created"


@pytest.mark.parametrize("version", ["3.8", "3.9", "3.10", "3.12", "3.13"])
def test_runner_compiles_with_job_pythons(version):
    python = _interpreter(version)
    runner = Path(importlib.import_module("expyre._runner").__file__)
    out = subprocess.run([str(python), "-c", "import sys; compile(open(sys.argv[1]).read(), sys.argv[1], 'exec')",
                          str(runner)], capture_output=True, text=True, timeout=120, cwd="/")
    assert out.returncode == 0, out.stderr
