"""Stable pickles: equal values give equal bytes in every process; loading restores dict order."""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
import textwrap

import cloudpickle
import pytest

from expyre import stable_pickle as sp

# One program, run under several PYTHONHASHSEEDs: prints the hex of the stable pickle (and of the
# plain cloudpickle, to show that the values really do pickle differently per process).
_PROGRAM = textwrap.dedent(
    """
    import dataclasses, enum, sys
    import cloudpickle
    from expyre import stable_pickle as sp

    @dataclasses.dataclass
    class Holder:
        tags: set
        table: dict

    class Colour(enum.Enum):
        RED = "r"
        GREEN = "g"
        BLUE = "b"

    names = {"alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"}
    value = [
        Holder(tags=set(names), table=dict.fromkeys(names, 0)),   # sets and dicts inside an object
        {n: {n.upper(), n[::-1]} for n in names},                 # a dict built from a set, of sets
        {frozenset({"a", "b", "c"}), frozenset({"x", "y"})},      # a set of frozensets
        {("k", n) for n in names},                                # a set of tuples
        {"nested": [{"deep": frozenset(names)}]},
        [Colour.GREEN, Colour],                                   # an enum pickled by value
    ]
    which = sys.argv[1]
    data = sp.dumps(value) if which == "stable" else cloudpickle.dumps(value)
    print(data.hex())
    """
)


def _pickle_in_process(which: str, salt: int, tmp_path) -> str:
    prog = tmp_path / "prog.py"
    prog.write_text(_PROGRAM)
    env = {**os.environ, "PYTHONHASHSEED": str(salt)}
    out = subprocess.run([sys.executable, str(prog), which], env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_equal_values_give_equal_bytes_in_every_process(tmp_path) -> None:
    salts = [0, 1, 2, 3, 12345]
    plain = {_pickle_in_process("plain", s, tmp_path) for s in salts}
    assert len(plain) > 1, "the values must pickle differently per process with plain cloudpickle"
    stable = {_pickle_in_process("stable", s, tmp_path) for s in salts}
    assert len(stable) == 1


def test_dict_order_is_ignored_by_the_bytes_but_restored_on_load() -> None:
    a = {"b": 1, "a": 2, "c": 3}
    b = {"a": 2, "c": 3, "b": 1}
    assert sp.dumps(a) == sp.dumps(b)
    for d in (a, b):
        buf = io.BytesIO()
        orders: list = []
        sp.dump(d, buf, orders)
        sp.write_orders(buf, orders)
        buf.seek(0)
        table = sp.read_orders(buf)
        loaded = sp.TaskUnpickler(buf, table[0]).load()
        assert list(loaded.items()) == list(d.items())


@dataclasses.dataclass
class _Point:
    z: int
    y: int
    x: int = 0


def _roundtrip(*objs):
    buf = io.BytesIO()
    orders: list = []
    for o in objs:
        sp.dump(o, buf, orders)
    sp.write_orders(buf, orders)
    buf.seek(0)
    table = sp.read_orders(buf)
    out = [sp.TaskUnpickler(buf, table[k] if k < len(table) else None).load() for k in range(len(objs))]
    return out


def test_a_class_pickled_by_value_keeps_its_field_order() -> None:
    # a dataclass defined in __main__-like scope pickles by value: its __dict__ and its fields
    # are dicts, whose order is the order of the constructor's positional arguments
    ns: dict = {}
    exec("import dataclasses\n@dataclasses.dataclass\nclass P:\n    z: int\n    y: int\n    x: int = 0\n", ns)
    P = ns["P"]
    P.__module__ = "__main__"
    (Q,) = _roundtrip(P)
    assert [f.name for f in dataclasses.fields(Q)] == ["z", "y", "x"]
    assert Q(3, 2).z == 3 and Q(3, 2).y == 2


def test_an_enum_pickled_by_value_keeps_its_member_order() -> None:
    ns: dict = {}
    exec("import enum\nclass E(enum.Enum):\n    Z = 1\n    A = 2\n    M = 3\n", ns)
    E = ns["E"]
    E.__module__ = "__main__"
    (F,) = _roundtrip(E)
    assert [m.name for m in F] == ["Z", "A", "M"]


def test_object_attribute_order_and_shared_containers_are_kept() -> None:
    shared = {"q": 1, "p": 2}
    value = {"first": shared, "second": shared, "point": _Point(z=1, y=2), "s": {3, 1, 2}}
    (loaded,) = _roundtrip(value)
    assert loaded == value
    assert list(loaded) == ["first", "second", "point", "s"]
    assert loaded["first"] is loaded["second"]
    assert list(loaded["first"]) == ["q", "p"]
    assert list(vars(loaded["point"])) == ["z", "y", "x"]


def test_several_pickles_in_one_file_each_keep_their_order() -> None:
    objs = [{"z": 1, "a": 2}, 7, {"m": {"y": 1, "b": 2}, "c": 3}, {"x", "y"}]
    assert _roundtrip(*objs) == objs
    assert [list(d) for d in (_roundtrip(*objs)[2], _roundtrip(*objs)[2]["m"])] == [["m", "c"], ["y", "b"]]


def test_a_container_that_contains_itself_is_pickled_as_it_is() -> None:
    d = {"b": 1, "a": 2}
    d["self"] = d
    (loaded,) = _roundtrip(d)
    assert loaded["self"] is loaded
    assert list(loaded) == ["b", "a", "self"]


def test_cycle_fallback_rewinds_a_checkpointing_writer() -> None:
    class Writer(io.RawIOBase):
        def __init__(self):
            self.buf = io.BytesIO()
            self.rollbacks = 0

        def writable(self):
            return True

        def write(self, b):
            return self.buf.write(b)

        def checkpoint(self):
            return self.buf.tell()

        def rollback(self, pos):
            self.rollbacks += 1
            self.buf.seek(pos)
            self.buf.truncate()

    w = Writer()
    w.write(b"HEAD")
    d = {"y": 1, "x": 2}
    d["me"] = [d]
    sp.dump(d, w)
    assert w.rollbacks == 1
    data = w.buf.getvalue()
    assert data.startswith(b"HEAD")
    loaded = cloudpickle.loads(data[4:])
    assert loaded["me"][0] is loaded


def test_nested_dicts_in_either_order_give_equal_bytes() -> None:
    a = [{"q": {"z": 1, "y": {"b": 1, "a": 2}}, "p": {3, 4}}, {"m": 1, "l": 2}]
    b = [{"p": {4, 3}, "q": {"y": {"a": 2, "b": 1}, "z": 1}}, {"l": 2, "m": 1}]
    assert sp.dumps(a) == sp.dumps(b)
    assert _roundtrip(a) == [a] and _roundtrip(b) == [b]
    assert list(_roundtrip(a)[0][0]["q"]["y"]) == ["b", "a"]
    assert list(_roundtrip(b)[0][0]["q"]["y"]) == ["a", "b"]


def test_mixed_and_unorderable_keys_are_ordered_the_same_way() -> None:
    a = {1: "int", "1": "str", None: "none", (1, "x"): "tuple", frozenset({"p", "q"}): "fs", 2.5: "float"}
    b = dict(reversed(list(a.items())))
    assert sp.dumps(a) == sp.dumps(b)
    assert sp.dumps({frozenset({1}), frozenset({2}), frozenset({1, 2})}) == sp.dumps({frozenset({1, 2}), frozenset({2}), frozenset({1})})


def test_no_trailer_when_no_container_has_two_entries() -> None:
    buf = io.BytesIO()
    orders: list = []
    sp.dump({"a": 1}, buf, orders)
    sp.dump([{3}, {}, frozenset()], buf, orders)
    n = buf.tell()
    sp.write_orders(buf, orders)
    assert buf.tell() == n
    assert sp.read_orders(buf) == []


def test_unknown_persistent_id_is_a_clear_error() -> None:
    class P(cloudpickle.CloudPickler):
        def persistent_id(self, obj):
            return ("expyre.zz", 0, b"") if obj == "x" else None

    buf = io.BytesIO()
    P(buf).dump(["x"])
    buf.seek(0)
    with pytest.raises(Exception, match="unknown persistent id 'expyre.zz'"):
        sp.TaskUnpickler(buf).load()
