"""A typed user script: expyre's public API as ``mypy --strict`` sees it (scripts/test.sh checks
this file with ``mypy --strict``; it also runs, on the zero-config local system).

    uv run python examples/typed_usage.py

Futures are generic: ``ex.submit(f, ...)`` of a function returning ``T`` is an
``ExPyReFuture[T]``, ``ex.map(f, ...)`` an ``Iterator[T]``.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
import sys
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
os.environ["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")])
from executor_funcs import inc  # noqa: E402

from expyre import Executor, ExPyRe, ExPyReFuture  # noqa: E402


def scaled(x: int, factor: float = 2.0) -> float:
    return x * factor


def main() -> None:
    resources = {"max_time": "10m", "n": (1, "tasks")}
    with Executor(system_name="local", resources=resources, partial_node=True, name="typed") as ex:
        fut: ExPyReFuture[float] = ex.submit(scaled, 3, factor=1.5)
        value: float = fut.result(timeout=600)

        results: Iterator[int] = ex.map(inc, range(10), chunksize=5)
        total: int = sum(results)

        futures: list[ExPyReFuture[int]] = ex.map_futures(inc, range(4), chunksize=2)
        firsts: list[int] = [f.result() for f in cf.as_completed(futures)]
        positions: list[int | None] = [f.index for f in futures]
        print(value, total, sorted(firsts), positions, futures[0].job_id)

    xpr = ExPyRe("typed_one", scaled, args=[4])
    xpr.start(resources={"max_time": "10m", "n": (1, "tasks")}, system_name="local", partial_node=True)
    print(xpr.get_results(timeout=600))
    xpr.mark_processed()


if __name__ == "__main__":
    main()
