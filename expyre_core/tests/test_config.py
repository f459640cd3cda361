"""config.json: ExPyRe's README's search and merge rules, the embedded local system, error messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from expyre.config import find_config_files, load_config
from expyre.config_model import ConfigError, structure_config, unstructure_config

SLURM = {"scheduler": "local", "partitions": {"p": {"ncores": 4, "max_time": "1h", "max_mem": "8GB"}}}


def write(path: Path, systems: dict) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text(json.dumps({"systems": systems}))
    return path


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    h.mkdir()
    monkeypatch.setenv("HOME", str(h))
    monkeypatch.delenv("EXPYRE_ROOT", raising=False)
    return h


def test_zero_config_has_local(home, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loaded = load_config()
    assert loaded.root == home / ".expyre"
    local = loaded.config.systems["local"]
    assert local.host is None and local.scheduler == "local" and loaded.sources == []


def test_expyre_root_env_is_the_only_file(home, tmp_path, monkeypatch):
    write(home / ".expyre", {"fromhome": SLURM})
    r = write(tmp_path / "elsewhere", {"fromenv": SLURM})
    monkeypatch.setenv("EXPYRE_ROOT", str(r))
    loaded = load_config()
    assert loaded.root == r and set(loaded.config.systems) == {"local", "fromenv"}


def test_search_and_merge(home, tmp_path, monkeypatch):
    write(home / ".expyre", {"a": {**SLURM, "commands": ["module load x"]}, "b": SLURM, "c": SLURM})
    proj = tmp_path / "proj"
    write(proj / "_expyre", {"a": {"commands": ["module load y"]}, "b": None, "d": SLURM})
    sub = proj / "sub" / "deeper"
    write(proj / "sub" / "_expyre", {"a": {"rundir": "scratch"}})
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    root, files = find_config_files()
    assert root == proj / "sub" / "_expyre"
    assert files == [home / ".expyre" / "config.json", proj / "_expyre" / "config.json", proj / "sub" / "_expyre" / "config.json"]
    cfg = load_config().config
    assert set(cfg.systems) == {"local", "a", "c", "d"}  # b removed by null
    assert cfg.systems["a"].commands == ("module load y",)  # per-system dict.update, closer wins
    assert cfg.systems["a"].rundir == "scratch"
    assert cfg.systems["a"].partitions["p"].ncores == 4  # kept from home


def test_readme_example_config_parses(home, tmp_path, monkeypatch):
    example = {"local": {"host": "localhost", "remsh_cmd": "/usr/bin/ssh", "scheduler": "local",
                      "commands": ["module purge", "module load python/3 compilers/gnu lapack ase quip vasp"],
                      "header": ["#SBATCH --nodes={nnodes}", "#SBATCH --ntasks={tot_ncores}", "#SBATCH --ntasks-per-node={ncores_per_node}"],
                      "partitions": {"node16_old,node16_new": {"ncores": 16, "max_time": None, "max_mem": "60GB"},
                                     "node36": {"ncores": 36, "max_time": None, "max_mem": "180GB"},
                                     "node56_bigmem": {"ncores": 56, "max_time": "48:00:00", "max_mem": "1500GB"},
                                     "node72_bigmem": {"ncores": 72, "max_time": "48h", "max_mem": "1500GB"}}}}
    cfg = structure_config({"systems": example}, "config.json")
    parts = cfg.systems["local"].partitions
    assert parts["node56_bigmem"].max_time == parts["node72_bigmem"].max_time
    assert structure_config(unstructure_config(cfg), "x") == cfg


def test_errors_name_file_and_key_path(home, tmp_path, monkeypatch):
    r = write(tmp_path / "r", {
        "x": {"scheduler": "local", "partitions": {"std": {"ncores": 16, "max_time": "48x", "max_mem": "60GB"},
                                                   "short": {"ncores": 4, "max_tme": "1h"}}},
        "y": {"scheduler": "local", "hots": "a", "partitions": {"p": {"ncores": 1}}},
    })
    monkeypatch.setenv("EXPYRE_ROOT", str(r))
    with pytest.raises(ConfigError) as info:
        load_config()
    problems = dict(info.value.problems)
    assert "invalid duration '48x'" in problems["systems.x.partitions.std.max_time"]
    assert problems["systems.x.partitions.short"] == "unknown key 'max_tme' (did you mean 'max_time'?)"
    assert problems["systems.y"] == "unknown key 'hots' (did you mean 'host'?)"
    assert str(r / "config.json") in str(info.value)


@pytest.mark.parametrize("text, message", [
    ("{not json", "invalid JSON at line 1"),
    ('{"systems": [], "x": 1}', "unknown key 'x'"),
    ('{"systems": {"a": 5}}', "expected an object or null"),
])
def test_malformed_files(home, tmp_path, monkeypatch, text, message):
    (tmp_path / "config.json").write_text(text)
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path))
    with pytest.raises(ConfigError, match=message) as info:
        load_config()
    assert str(tmp_path / "config.json") in str(info.value)


@pytest.mark.parametrize("system, path, message", [
    ({"scheduler": "local", "partitions": {"p": {"ncores": 0}}}, "systems.s.partitions.p", "'ncores' must be > 0"),
    ({"scheduler": "local", "partitions": {"p": {"ncores": "4"}}}, "systems.s.partitions.p.ncores", "expected an integer"),
    ({"scheduler": "local", "header": ["-N {nnode}"]}, "systems.s", "unknown key {nnode} (did you mean {nnodes}?)"),
    ({"scheduler": "local", "partitions": {"p": {"ncores": 1, "max_mem": "lots"}}}, "systems.s.partitions.p.max_mem", "invalid memory 'lots'"),
    ({"scheduler": "local", "no_default_header": "yes"}, "systems.s.no_default_header", "expected true or false"),
    ({"host": None}, "systems.s.scheduler", "required key is missing"),
])
def test_value_errors(home, tmp_path, monkeypatch, system, path, message):
    write(tmp_path, {"s": system})
    monkeypatch.setenv("EXPYRE_ROOT", str(tmp_path))
    with pytest.raises(ConfigError) as info:
        load_config()
    problems = dict(info.value.problems)
    assert path in problems, problems
    assert message in problems[path]
