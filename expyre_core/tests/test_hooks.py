"""Every hook of ``expyre.hookspecs`` and every optional member of ``Scheduler`` and ``Transport``
(those with a default implementation in the base class) has a test, and here are those tests.

The rule :func:`test_every_hook_and_optional_member_has_a_test` enforces: a test function (or
method) of the core's tests is named ``test_hook_<hook name>``, ``test_member_scheduler_<member>``
or ``test_member_transport_<member>``, optionally followed by ``__<what it checks>`` (two
underscores, so that ``find`` is not taken as covered by a test of ``find_command``). An optional
member is a public method, static method or class method that the base class implements and does
not declare abstract; class attributes with defaults (``vanish_grace``...) are data, not members
with behaviour, and are not enumerated. A new hook or optional member therefore fails this test
until its test is written.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from expyre import hookspecs, plugins
from expyre.hookspecs import Scheduler, Transport
from expyre.testing import RecordingTransport, golden_job, isolated_root, system_from_dict
from expyre.types import CommandResult, JobState, JobStatus, SchedulerCommandError, SchedulerContext, SubmitError

HERE = Path(__file__).parent
DATA = HERE / "data"


# -- the coverage rule ---------------------------------------------------------------------------
def hook_names() -> list[str]:
    from expyre._markers import PROJECT

    return sorted(n for n, v in vars(hookspecs).items() if callable(v) and hasattr(v, f"{PROJECT}_spec"))


def optional_members(cls: type) -> list[str]:
    out = []
    for name, value in vars(cls).items():
        if name.startswith("_") or name in cls.__abstractmethods__:
            continue
        if inspect.isfunction(value) or isinstance(value, (staticmethod, classmethod)):
            out.append(name)
    return sorted(out)


def function_names() -> set[str]:
    names = set()
    for path in HERE.glob("test_*.py"):
        names.update(re.findall(r"^\s*def (test_\w+)\s*\(", path.read_text(), flags=re.M))
    return names



def covered(prefix: str, names: set[str]) -> bool:
    return any(n == prefix or n.startswith(prefix + "__") for n in names)


REQUIRED = (
    [f"test_hook_{h}" for h in hook_names()]
    + [f"test_member_scheduler_{m}" for m in optional_members(Scheduler)]
    + [f"test_member_transport_{m}" for m in optional_members(Transport)]
)


def test_enumeration_finds_the_hooks_and_members():
    assert {"expyre_register_schedulers", "expyre_register_transports", "expyre_modify_header"} <= set(hook_names())
    scheduler_members = optional_members(Scheduler)
    assert {"job_env", "find_command", "array_element_id", "control"} <= set(scheduler_members)
    assert not set(scheduler_members) & set(Scheduler.__abstractmethods__)
    assert "header" not in scheduler_members and "vanish_grace" not in scheduler_members
    assert {"probe", "close"} <= set(optional_members(Transport)) and "run" not in optional_members(Transport)


@pytest.mark.parametrize("required", REQUIRED)
def test_every_hook_and_optional_member_has_a_test(required):
    assert covered(required, function_names()), (
        f"no test named {required} (or {required}__<what>) in {HERE}: write one (see this module's docstring)"
    )


# -- a minimal backend and request for the member tests -----------------------------------------
class Toy(Scheduler):
    name = "toy"
    foreign_env_prefixes = ("TOY_",)

    def header(self, job):
        return [f"#TOY name={job.id}"]

    def submit_command(self, job):
        return ["toysub", job.script]

    def parse_submit(self, result, job):
        if not result.ok:
            raise self.submit_failed(result, "toy")
        return result.stdout.strip()

    def status_command(self, ids):
        return ["toystat", ",".join(ids)]

    def parse_status(self, result, ids):
        out = {}
        for line in result.stdout.splitlines():
            i, code = line.split()
            if i in ids:
                out[i] = JobStatus({"R": JobState.RUNNING, "Q": JobState.QUEUED}.get(code, JobState.UNKNOWN), raw=code)
        return out

    def control_command(self, op, ids):
        return ["toyctl", op, ",".join(ids)]


class ToyTransport(Transport):
    def run(self, command, **kw):
        return CommandResult(command, 0)

    def put(self, local_dirs, remote_parent):
        pass

    def get(self, remote_dirs, local_parent):
        pass


def toy(options=None) -> Toy:
    return Toy(SchedulerContext(system_name="cl", rundir="rundir", host=None, options=options))


@pytest.fixture
def job(tmp_path):
    system = system_from_dict({"scheduler": "local", "host": None, "partitions": {"p": {"ncores": 4, "max_time": None}}}, tmp_path)
    return golden_job(system, {"max_time": "10m", "n": (2, "tasks")}, partial_node=True)


# -- hooks ---------------------------------------------------------------------------------------
@pytest.fixture
def twins(monkeypatch, fresh_plugins):
    monkeypatch.syspath_prepend(str(DATA / "twins"))
    plugins.reset()


def test_hook_expyre_register_schedulers__builtin_and_third_party(fresh_plugins, monkeypatch):
    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[2] / "examples" / "plugin" / "src"))
    monkeypatch.syspath_prepend(str(DATA / "site"))
    plugins.reset()
    assert plugins.get_scheduler_spec("local").backend.name == "local"
    spec = plugins.get_scheduler_spec("shellq")
    assert spec.backend.__module__ == "expyre_shellq" and issubclass(spec.backend, Scheduler)


def test_hook_expyre_register_schedulers__duplicate_name_names_both_providers(twins):
    with pytest.raises(plugins.PluginLoadError) as info:
        plugins.schedulers()
    msg = str(info.value)
    assert "scheduler 'twin'" in msg and "'twin_a'" in msg and "'twin_b'" in msg, msg
    assert "EXPYRE_DISABLE_PLUGINS" in msg


def test_hook_expyre_register_schedulers__duplicate_resolved_by_disabling_one(twins, monkeypatch):
    monkeypatch.setenv("EXPYRE_DISABLE_PLUGINS", "twin_b")
    plugins.reset()
    assert plugins.get_scheduler_spec("twin").description == "twin scheduler from expyre-twin-a"
    assert plugins.get_transport_spec("twin").description == "twin transport from expyre-twin-a"


def test_hook_expyre_register_transports__duplicate_name_names_both_providers(twins, monkeypatch):
    # schedulers are checked first: leave twin_b offering only its transport, so the clash left is
    # the transports'
    import expyre_twin_b

    monkeypatch.delattr(expyre_twin_b, "expyre_register_schedulers")
    plugins.reset()
    with pytest.raises(plugins.PluginLoadError) as info:
        plugins.transports()
    msg = str(info.value)
    assert "transport 'twin'" in msg and "'twin_a'" in msg and "'twin_b'" in msg, msg


def test_hook_expyre_register_transports__builtin_local(fresh_plugins):
    from expyre.builtin.local_transport import LocalTransport

    assert plugins.get_transport_spec("local").backend is LocalTransport


def test_hook_expyre_modify_header__every_plugin_applies_in_order_to_a_real_job(fresh_plugins, monkeypatch, tmp_path):
    """Two site plugins (expyre-header-a, -b) edit the real script header of a job on the local
    system: both apply, each sees the lines the previous one left (pluggy calls the most recently
    registered implementation first: b, registered after a, runs before it), and the job runs."""
    monkeypatch.syspath_prepend(str(DATA / "headers"))
    monkeypatch.chdir(tmp_path)
    plugins.reset()
    order = [i.plugin_name for i in plugins.hook().expyre_modify_header.get_hookimpls()]
    assert order[-2:] == ["header_a", "header_b"]  # registration order (entry points sorted by name)
    from expyre.func import ExPyRe

    with isolated_root(tmp_path / "_expyre", {"here": {"scheduler": "local", "host": None,
                                                        "header": ["# site header {tot_ncores}"],
                                                        "partitions": {"p": {"ncores": 1, "max_time": None}}}}):
        xpr = ExPyRe("hooked", max, args=[2, 5])
        xpr.start(resources={"max_time": "1m", "n": (1, "tasks")}, system_name="here", partial_node=True)
        assert xpr.get_results(timeout=60, check_interval=0.5) == 5
        lines = (xpr.stage_dir / "_expyre_script.sh").read_text().splitlines()
    site = lines.index("# site header 1")
    b = next(i for i, line in enumerate(lines) if line.startswith("# plugin-b saw"))
    a = lines.index("# account=a-1")
    assert site < b < a, lines[:12]
    # b ran first: it saw the header without a's line, so a's line is unchanged
    assert not any("(checked by b)" in line for line in lines)


def test_hook_expyre_modify_header__other_systems_untouched(fresh_plugins, monkeypatch, tmp_path, job):
    from expyre.script import build_header

    monkeypatch.syspath_prepend(str(DATA / "headers"))
    plugins.reset()
    system = system_from_dict({"scheduler": "local", "host": None, "partitions": {"p": {"ncores": 4, "max_time": None}}},
                              tmp_path, name="elsewhere")
    header = build_header(system, job, [])
    assert not any(line.startswith("# account=") for line in header)
    assert header[-1].startswith("# plugin-b saw") and header[-1].endswith("on elsewhere")


# -- Scheduler's optional members -----------------------------------------------------------------
def test_member_scheduler_job_env(job):
    assert toy().job_env(job) == []


def test_member_scheduler_check_request(job):
    assert toy().check_request(job) is None  # accepted: the scheduler's own submit command judges


def test_member_scheduler_setup():
    t = RecordingTransport()
    assert toy().setup(t) is None and t.calls == []


def test_member_scheduler_find_command():
    assert toy().find_command(["a", "b"]) is None


def test_member_scheduler_parse_find():
    assert toy().parse_find(CommandResult(["x"], 0, "a 1\n"), ["a"]) == {}


def test_member_scheduler_explain():
    statuses = {"1": JobStatus(JobState.QUEUED)}
    t = RecordingTransport()
    assert toy().explain(t, statuses) is statuses and t.calls == []


def test_member_scheduler_accounting_command():
    assert toy().accounting_command(["1"]) is None


def test_member_scheduler_parse_accounting():
    assert toy().parse_accounting(CommandResult(["x"], 0, "1 CD\n"), ["1"]) == {}


def test_member_scheduler_check_control():
    s = toy()
    s.check_control("hold", CommandResult(["toyctl"], 0), ["1", "2"])
    with pytest.raises(SchedulerCommandError, match=r"toy hold of 1, 2 failed: `toyctl` exited 1: no such job"):
        s.check_control("hold", CommandResult(["toyctl"], 1, "", "no such job\n"), ["1", "2"])


def test_member_scheduler_arrays_supported(monkeypatch):
    assert not toy().arrays_supported()
    monkeypatch.setattr(Toy, "max_array_size", 10)
    assert not toy().arrays_supported()  # no index variable
    monkeypatch.setattr(Toy, "array_index_var", "TOY_INDEX")
    assert toy().arrays_supported()


def test_member_scheduler_array_size_limit(monkeypatch):
    import attrs

    assert toy().array_size_limit(RecordingTransport()) == 1
    monkeypatch.setattr(Toy, "max_array_size", 500)
    assert toy().array_size_limit(RecordingTransport()) == 500

    @attrs.define
    class Opts:
        max_array_size: int | None = None

    assert toy(Opts(max_array_size=20)).array_size_limit(RecordingTransport()) == 20  # the site wins
    assert toy(Opts()).array_size_limit(RecordingTransport()) == 500


def test_member_scheduler_array_header(job):
    with pytest.raises(NotImplementedError, match="scheduler 'toy' does not submit job arrays"):
        toy().array_header(job, 3)


def test_member_scheduler_array_element_id():
    with pytest.raises(NotImplementedError, match="scheduler 'toy' does not submit job arrays"):
        toy().array_element_id("12", 0)


def test_member_scheduler_submit(job):
    seen = []

    def answer(command):
        return CommandResult(command, 0, "77\n")

    class Spy(RecordingTransport):
        def run(self, command, **kw):
            seen.append(kw)
            return super().run(command, **kw)

    t = Spy(answer)
    assert toy().submit(t, job) == "77"
    assert t.calls == [["toysub", job.script]]
    assert seen == [{"cwd": job.remote_dir, "unset_env_prefixes": ("TOY_",)}]
    with pytest.raises(SubmitError, match="refused"):
        toy().submit(RecordingTransport(CommandResult(["toysub"], 1, "", "refused\n")), job)


def test_member_scheduler_status():
    t = RecordingTransport(CommandResult(["toystat"], 0, "1 R\n2 Q\n9 R\n"))
    got = toy().status(t, ["1", "2", "3"])
    assert t.calls == [["toystat", "1,2,3"]]  # one query for all
    assert {k: v.state for k, v in got.items()} == {"1": JobState.RUNNING, "2": JobState.QUEUED}
    empty = RecordingTransport()
    assert toy().status(empty, []) == {} and empty.calls == []


def test_member_scheduler_accounting(monkeypatch):
    t = RecordingTransport()
    assert toy().accounting(t, ["1"]) == {} and t.calls == []  # no accounting command: nothing run
    monkeypatch.setattr(Toy, "accounting_command", lambda self, ids: ["toyacct", *ids])
    monkeypatch.setattr(Toy, "parse_accounting", lambda self, r, ids: {i: JobStatus(JobState.COMPLETED) for i in ids})
    t = RecordingTransport()
    assert toy().accounting(t, ["1", "2"])["2"].state == JobState.COMPLETED and t.calls == [["toyacct", "1", "2"]]


def test_member_scheduler_find(monkeypatch):
    t = RecordingTransport()
    assert toy().find(t, ["a"]) is None and t.calls == []  # cannot tell
    monkeypatch.setattr(Toy, "find_command", lambda self, names: ["toyfind", *names])
    monkeypatch.setattr(Toy, "parse_find", lambda self, r, names: dict(line.split() for line in r.stdout.splitlines()))
    t = RecordingTransport(CommandResult(["toyfind"], 0, "a 5\n"))
    assert toy().find(t, ["a"]) == {"a": "5"} and t.calls == [["toyfind", "a"]]


def test_member_scheduler_control():
    t = RecordingTransport()
    toy().control(t, "cancel", ["1", "2", "3"])
    assert t.calls == [["toyctl", "cancel", "1,2,3"]]  # one command for all
    t = RecordingTransport()
    toy().control(t, "cancel", [])
    assert t.calls == []
    with pytest.raises(SchedulerCommandError, match="toy release of 4 failed"):
        toy().control(RecordingTransport(CommandResult(["toyctl"], 2, "", "denied\n")), "release", ["4"])


def test_member_scheduler_quote():
    assert Scheduler.quote("a b") == "'a b'" and Scheduler.quote("plain") == "plain"
    assert toy().quote("it's") == "'it'\"'\"'s'"


def test_member_scheduler_submit_failed():
    err = Scheduler.submit_failed(CommandResult(["qsub", "x.sh"], 3, "", "queue full\n"), "toy")
    assert isinstance(err, SubmitError)
    assert str(err) == "toy submission failed: `qsub x.sh` exited 3: queue full"


# -- the optional members for xpr (default partitions, the probe, the partition listing, why a
# queued job waits)
def test_member_scheduler_default_partitions():
    assert Toy.default_partitions() is None  # a system must list its partitions

def test_member_scheduler_probe_command():
    assert toy().probe_command() is None

def test_member_scheduler_partitions_command():
    assert toy().partitions_command() is None

def test_member_scheduler_parse_partitions():
    assert toy().parse_partitions(CommandResult(["x"], 0, "debug\nlong\n")) == set()

def test_member_scheduler_explain_command():
    assert toy().explain_command(["1", "2"]) is None

def test_member_scheduler_parse_explain():
    assert toy().parse_explain(CommandResult(["x"], 0, "1 waits\n"), ["1"]) == {}

def test_member_scheduler_probe(monkeypatch):
    t = RecordingTransport()
    assert toy().probe(t) is None and t.calls == []  # not available: nothing run
    monkeypatch.setattr(Toy, "probe_command", lambda self: "command -v toystat")
    t = RecordingTransport(CommandResult("command -v toystat", 0, "/usr/bin/toystat\n"))
    assert toy().probe(t) == "/usr/bin/toystat" and t.calls == ["command -v toystat"]
    with pytest.raises(SchedulerCommandError, match="command -v toystat"):
        toy().probe(RecordingTransport(CommandResult("command -v toystat", 1)))

def test_member_scheduler_list_partitions(monkeypatch):
    t = RecordingTransport()
    assert toy().list_partitions(t) is None and t.calls == []
    monkeypatch.setattr(Toy, "partitions_command", lambda self: ["toyq", "-l"])
    monkeypatch.setattr(Toy, "parse_partitions", lambda self, r: set(r.stdout.split()))
    t = RecordingTransport(CommandResult(["toyq", "-l"], 0, "debug long\n"))
    assert toy().list_partitions(t) == {"debug", "long"} and t.calls == [["toyq", "-l"]]
    with pytest.raises(SchedulerCommandError, match="listing partitions failed"):
        toy().list_partitions(RecordingTransport(CommandResult(["toyq", "-l"], 2, "", "down\n")))

def test_member_scheduler_explain_queued(monkeypatch):
    t = RecordingTransport()
    assert toy().explain_queued(t, ["1"]) == {} and t.calls == []
    monkeypatch.setattr(Toy, "explain_command", lambda self, ids: ["toywhy", ",".join(ids)])
    monkeypatch.setattr(Toy, "parse_explain", lambda self, r, ids: {i: "waits for a node" for i in ids})
    t = RecordingTransport()
    assert toy().explain_queued(t, []) == {} and t.calls == []  # no ids: nothing asked
    assert toy().explain_queued(t, ["1", "2"]) == {"1": "waits for a node", "2": "waits for a node"}
    assert t.calls == [["toywhy", "1,2"]]  # one command for all


# -- Transport's optional members -----------------------------------------------------------------
def test_member_transport_probe():
    assert ToyTransport("me@box").probe("python3", ["module load python"]) is None


def test_member_transport_python_version():
    seen = []

    class Answers(ToyTransport):
        def run(self, command, **kw):
            seen.append(command)
            return CommandResult(command, 0, "module loaded\nexpyre-python 3.9\n")

    assert Answers("me@box").python_version("/opt/py/bin/python", ["module load python"]) == (3, 9)
    script = seen[0]
    assert isinstance(script, str)  # a bash script: the commands first (their output to stderr), then the Python
    assert script.index("module load python") < script.index("/opt/py/bin/python -c ")
    assert "} >&2 </dev/null" in script
    assert ToyTransport(None).python_version("python3") is None  # no version printed: not known
    from expyre.hookspecs import parse_python_version

    assert parse_python_version("expyre-python 3.11.7 cloudpickle=3.1.1\n") == (3, 11)  # a longer answer line
    assert parse_python_version("expyre-python 3.x\n") is None


def test_member_transport_python_version__unreachable_host_is_unknown():
    from expyre.types import TransportError

    class Down(ToyTransport):
        def run(self, command, **kw):
            raise TransportError("host down", retry_safe=True)

    assert Down("me@box").python_version("python3") is None


def test_member_transport_close():
    t = ToyTransport(None)
    assert t.close() is None
    assert t.run(["true"]).ok  # still usable: close only releases connections


# -- usage (optional: default "not available") ---------------------------------------------------
def test_member_scheduler_usage_command():
    assert toy().usage_command(["1", "2"]) is None


def test_member_scheduler_parse_usage():
    assert toy().parse_usage(CommandResult(["x"], 0, "1|40|221200K\n"), ["1"]) == {}


def test_member_scheduler_usage(monkeypatch):
    from expyre.types import JobUsage

    t = RecordingTransport(CommandResult(["toyacct"], 0, "1 40 2048\n2 running\n"))
    assert toy().usage(t, ["1"]) == {} and t.calls == []  # not available: nothing is run
    monkeypatch.setattr(Toy, "usage_command", lambda self, ids: ["toyacct", *ids])

    def parse(self, result, ids):
        out = {}
        for line in result.stdout.splitlines():
            f = line.split()
            if f[0] in ids and len(f) == 3:
                out[f[0]] = JobUsage(elapsed=float(f[1]), max_rss_kib=int(f[2]), source="toyacct")
        return out

    monkeypatch.setattr(Toy, "parse_usage", parse)
    got = toy().usage(t, ["1", "2"])
    assert got == {"1": JobUsage(elapsed=40.0, max_rss_kib=2048, source="toyacct")}  # 2 is still running
    assert t.calls == [["toyacct", "1", "2"]]  # ONE command for all the ids
    assert toy().usage(t, []) == {} and len(t.calls) == 1
    assert got["1"].to_dict() == {"source": "toyacct", "elapsed": 40.0, "max_rss_kib": 2048}
