"""Resources a job asks for, and the choice of partition that satisfies them."""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping

from attrs import field, frozen

from .config_model import Partition
from .types import NodeAllocation
from .units import Duration, Memory

__all__ = ["Resources", "NoPartitionFitsError", "parse_env_vars"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class NoPartitionFitsError(ValueError):
    """No partition satisfies the resources; the message says why each one was excluded."""


def _n(value: Any) -> tuple[int, str]:
    if not isinstance(value, (tuple, list)) or len(value) != 2:
        raise ValueError(f"resources 'n' must be (int, 'nodes'|'tasks'), got {value!r}")
    num, kind = value
    if isinstance(num, bool) or not isinstance(num, int) or num < 1:
        raise ValueError(f"resources 'n' must be (int >= 1, 'nodes'|'tasks'), got {value!r}")
    if kind not in ("nodes", "tasks"):
        raise ValueError(f"resources 'n' kind must be 'nodes' or 'tasks', got {kind!r}")
    return (num, kind)


def _partitions(value: Any) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str):
        value = [value]
    out = []
    for v in value:
        if not isinstance(v, str):
            raise ValueError(f"resources 'partitions' must be a regexp string or a list of them, got {v!r}")
        try:
            re.compile(v)
        except re.error as exc:
            raise ValueError(f"resources 'partitions' regexp {v!r} is invalid: {exc}") from None
        out.append(v)
    return tuple(out)


def _max_time(value: Any) -> Duration:
    d = Duration.parse(value)
    if d.seconds <= 0:
        raise ValueError(f"resources 'max_time' must be more than 0 seconds, got {value!r} "
                         f"({d.seconds} s); give the job's time limit, e.g. '30m' or 3600")
    return d


def parse_env_vars(items: Iterable[str], environ: Mapping[str, str] | None = None) -> list[tuple[str, str]]:
    """``env_vars`` entries (``"NAME=value"``, or ``"NAME"`` for its value in ``environ``, default
    ``os.environ``) as ``(name, value)`` pairs. :class:`ValueError` (:class:`KeyError` for a
    variable that is not set) names the entry: an invalid name, or a NUL character in the value
    (an environment cannot hold one; it would be dropped silently)."""
    import os

    env = os.environ if environ is None else environ
    if isinstance(items, (str, bytes)):
        raise TypeError(f"env_vars must be a list of 'NAME=value' or 'NAME' strings, got the string {items!r}")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"env_vars entry {item!r}: expected a 'NAME=value' or 'NAME' string")
        k, eq, v = item.partition("=")
        if not _ENV_NAME.match(k):
            raise ValueError(f"env_vars entry {item!r}: {k!r} is not a valid variable name "
                             f"(letters, digits and _, not starting with a digit)")
        if not eq:
            if k not in env:
                raise KeyError(f"env_vars entry {item!r}: {k} is not set in this environment (use '{k}=value')")
            v = env[k]
        if "\0" in v:
            raise ValueError(f"env_vars entry {k}: its value contains a NUL character (at position {v.index(chr(0))}), "
                             f"which no environment variable can hold; remove it")
        out.append((k, v))
    return out


def _ncores_per_task(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"resources 'ncores_per_task' must be an int >= 0 (0: one task per node), got {value!r}")
    return value


@frozen
class Resources:
    """What a job needs.

    :param max_time: int seconds or a time string (``"1h"``, ``"48:00:00"``...); more than 0.
    :param n: ``(int, "nodes")`` or ``(int, "tasks")``.
    :param ncores_per_task: cores per task (default 1; 0 = one task per node using all its cores).
    :param max_mem_per_task: int kB or a memory string (``"4GB"``).
    :param partitions: regexp or list of regexps, each matching a whole partition name.
    """

    max_time: Duration = field(converter=_max_time)
    n: tuple[int, str] = field(converter=_n)
    ncores_per_task: int = field(default=1, converter=_ncores_per_task)
    max_mem_per_task: Memory | None = field(default=None, converter=lambda v: None if v is None else Memory.parse(v))
    partitions: tuple[str, ...] | None = field(default=None, converter=_partitions)

    @classmethod
    def from_any(cls, value: "Resources | Mapping[str, Any]") -> "Resources":
        if isinstance(value, Resources):
            return value
        if not isinstance(value, Mapping):
            raise TypeError(f"resources must be a dict or Resources, got {type(value).__name__}")
        valid = ("max_time", "n", "ncores_per_task", "max_mem_per_task", "partitions")
        unknown = [k for k in value if k not in valid]
        if unknown:
            raise ValueError(f"unknown resources key(s) {unknown}; valid keys: {', '.join(valid)}")
        missing = [k for k in ("max_time", "n") if k not in value]
        if missing:
            raise ValueError(f"resources need {' and '.join(repr(k) for k in missing)}")
        return cls(**value)

    # -----------------------------------------------------------------------------------------
    def _counts(self, ncores: int) -> tuple[int, int, int]:
        """(nnodes, tot_ntasks, ncores_per_task) on nodes with ``ncores`` cores."""
        num, kind = self.n
        if self.ncores_per_task == 0:
            return num, num, ncores
        if kind == "nodes":
            return num, num * ncores // self.ncores_per_task, self.ncores_per_task
        tot_ntasks = num
        nnodes = -(-(tot_ntasks * self.ncores_per_task) // ncores)
        return nnodes, tot_ntasks, self.ncores_per_task

    def _exclusion(self, name: str, part: Partition, exact_fit: bool) -> str | None:
        if self.partitions is not None and not any(re.fullmatch(rx, name) for rx in self.partitions):
            return f"name does not match {' or '.join(repr(p) for p in self.partitions)}"
        if part.max_time is not None and self.max_time > part.max_time:
            return f"max_time {self.max_time.hms()} exceeds the partition's {part.max_time.hms()}"
        if self.ncores_per_task > part.ncores:
            return f"ncores_per_task {self.ncores_per_task} exceeds the partition's {part.ncores} cores per node"
        nnodes, tot_ntasks, ncpt = self._counts(part.ncores)
        if exact_fit and self.n[1] == "tasks" and (tot_ntasks * ncpt) % part.ncores != 0:
            return (
                f"exact_fit: {tot_ntasks} tasks x {ncpt} cores = {tot_ntasks * ncpt} cores do not fill whole "
                f"{part.ncores}-core nodes (pass exact_fit=False or partial_node=True)"
            )
        if self.max_mem_per_task is not None and part.max_mem is not None:
            per_node = Memory(int(self.max_mem_per_task.kb * tot_ntasks / nnodes))
            if per_node > part.max_mem:
                return f"needs {per_node} of memory per node, more than the partition's {part.max_mem}"
        return None

    def find_nodes(
        self, partitions: Mapping[str, Partition], exact_fit: bool = True, partial_node: bool = False
    ) -> tuple[str, NodeAllocation]:
        """Choose a partition and compute the node allocation.

        Among the partitions that fit, one with no wasted cores is preferred, else the one that
        wastes the fewest (ties: config order). With ``partial_node`` and fewer cores than a node,
        ``tot_ncores`` and ``ncores_per_node`` are the cores needed, not a whole node.

        :raises NoPartitionFitsError: saying which constraint excluded each partition.
        """
        if partial_node:
            exact_fit = False
        fitting: list[str] = []
        why: list[str] = []
        for name, part in partitions.items():
            reason = self._exclusion(name, part, exact_fit)
            if reason is None:
                fitting.append(name)
            else:
                why.append(f"  {name}: {reason}")
        if not fitting:
            raise NoPartitionFitsError(
                f"no partition fits resources {self.describe()} (exact_fit={exact_fit}, partial_node={partial_node}):\n"
                + ("\n".join(why) if why else "  (the system has no partitions)")
            )

        def waste(name: str) -> int:
            ncores = partitions[name].ncores
            _, tot_ntasks, ncpt = self._counts(ncores)
            return (ncores - (tot_ntasks * ncpt) % ncores) % ncores

        chosen = min(fitting, key=waste)
        ncores = partitions[chosen].ncores
        nnodes, tot_ntasks, ncpt = self._counts(ncores)
        ntasks_per_node = -(-tot_ntasks // nnodes)
        ncores_per_node = ncores
        tot_ncores = nnodes * ncores
        if partial_node and tot_ntasks * ncpt < ncores:
            tot_ncores = tot_ntasks * ncpt
            ncores_per_node = tot_ncores
        return chosen, NodeAllocation(
            nnodes=nnodes,
            ncores_per_node=ncores_per_node,
            tot_ncores=tot_ncores,
            tot_ntasks=tot_ntasks,
            ncores_per_task=ncpt,
            ntasks_per_node=ntasks_per_node,
        )

    def describe(self) -> str:
        parts = [f"max_time={self.max_time.hms()}", f"n={self.n}"]
        if self.ncores_per_task != 1:
            parts.append(f"ncores_per_task={self.ncores_per_task}")
        if self.max_mem_per_task is not None:
            parts.append(f"max_mem_per_task={self.max_mem_per_task}")
        if self.partitions is not None:
            parts.append(f"partitions={list(self.partitions)}")
        return "{" + ", ".join(parts) + "}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "max_time": self.max_time.seconds,
            "n": list(self.n),
            "ncores_per_task": self.ncores_per_task,
            "max_mem_per_task": self.max_mem_per_task.kb if self.max_mem_per_task else None,
            "partitions": list(self.partitions) if self.partitions is not None else None,
        }

