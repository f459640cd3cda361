"""Large arguments: the pickler writes big buffers straight to the stage file (a numpy array comes
as a pickle.PickleBuffer, which has no len()); found by bench/ (the 1 GB argument scenario)."""

from __future__ import annotations

import pytest

from expyre.func import ExPyRe

np = pytest.importorskip("numpy")


def test_large_numpy_argument_is_staged_hashed_and_evaluated(root):
    arr = np.arange(2_000_000, dtype=np.float64)  # 16 MB: written by the pickler as one PickleBuffer
    xpr = ExPyRe("big", np.sum, args=[arr])
    assert ExPyRe("big", np.sum, args=[arr.copy()]).id == xpr.id  # same bytes, same hash
    assert ExPyRe("big", np.sum, args=[arr + 1]).id != xpr.id
    xpr.start(resources={"max_time": "5m", "n": (1, "tasks")}, system_name="local", partial_node=True)
    assert xpr.get_results(timeout=120, check_interval=1) == arr.sum()
