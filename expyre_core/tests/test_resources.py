import pytest

from expyre.config_model import Partition
from expyre.resources import NoPartitionFitsError, Resources
from expyre.units import Duration, Memory

PARTS = {
    "node16": Partition(ncores=16, max_time=None, max_mem=Memory.parse("60GB")),
    "node36": Partition(ncores=36, max_time=None, max_mem=Memory.parse("180GB")),
    "node56_bigmem": Partition(ncores=56, max_time=Duration.parse("48h"), max_mem=Memory.parse("1500GB")),
}


def test_nodes_fill_whole_nodes():
    part, a = Resources(max_time="1h", n=(2, "nodes"), partitions="node36").find_nodes(PARTS)
    assert part == "node36"
    assert (a.nnodes, a.ncores_per_node, a.tot_ncores, a.tot_ntasks, a.ntasks_per_node) == (2, 36, 72, 72, 36)


def test_tasks_exact_fit_prefers_no_waste():
    part, a = Resources(max_time="1h", n=(72, "tasks")).find_nodes(PARTS)
    assert part == "node36" and a.nnodes == 2
    part, a = Resources(max_time="1h", n=(32, "tasks")).find_nodes(PARTS)
    assert part == "node16" and a.nnodes == 2


def test_partial_node_not_rounded_up():
    part, a = Resources(max_time="1h", n=(3, "tasks"), partitions="node16").find_nodes(PARTS, partial_node=True)
    assert (a.nnodes, a.tot_ncores, a.ncores_per_node, a.tot_ntasks) == (1, 3, 3, 3)


def test_without_partial_node_whole_node():
    _, a = Resources(max_time="1h", n=(3, "tasks"), partitions="node16").find_nodes(PARTS, exact_fit=False)
    assert (a.nnodes, a.tot_ncores, a.ncores_per_node) == (1, 16, 16)


def test_regexp_matches_whole_name():
    with pytest.raises(NoPartitionFitsError):
        Resources(max_time="1h", n=(1, "nodes"), partitions="node3").find_nodes(PARTS)
    part, _ = Resources(max_time="1h", n=(1, "nodes"), partitions=[".*bigmem"]).find_nodes(PARTS)
    assert part == "node56_bigmem"


def test_max_time_and_memory_exclude():
    part, _ = Resources(max_time="3d", n=(1, "nodes"), partitions=".*6.*").find_nodes(PARTS)
    assert part in ("node16", "node36")
    part, _ = Resources(max_time="1h", n=(1, "nodes"), max_mem_per_task="10GB").find_nodes(PARTS)
    assert part == "node56_bigmem"  # 10GB x 16 or 36 tasks exceeds their nodes


def test_no_fit_says_why_for_each_partition():
    with pytest.raises(NoPartitionFitsError) as info:
        Resources(max_time="3d", n=(5, "tasks"), partitions=["node16", ".*bigmem"]).find_nodes(PARTS)
    text = str(info.value)
    assert "node16: exact_fit" in text
    assert "node36: name does not match" in text
    assert "node56_bigmem: max_time 72:00:00 exceeds the partition's 48:00:00" in text


@pytest.mark.parametrize("kw, message", [
    ({"max_time": "1h", "n": (1, "cores")}, "'nodes' or 'tasks'"),
    ({"max_time": "1h", "n": 4}, "must be"),
    ({"max_time": "1h", "n": (1, "tasks"), "partitions": "("}, "regexp"),
    ({"max_time": "soon", "n": (1, "tasks")}, "invalid duration"),
])
def test_bad_resources(kw, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Resources(**kw)


def test_from_dict_rejects_unknown_keys():
    with pytest.raises(ValueError, match="unknown resources key"):
        Resources.from_any({"max_time": "1h", "n": (1, "tasks"), "ncores": 2})
