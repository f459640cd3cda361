"""expyre: evaluate Python functions as batch jobs through HPC queuing systems.

Start with :class:`expyre.func.ExPyRe`. Plugin authors need :data:`hookimpl` and
:mod:`expyre.hookspecs`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: keep `import expyre` light
if TYPE_CHECKING:
    from ._markers import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__", "Executor", "ExPyReFuture"]


def __getattr__(name: str):
    # imported on first use, so that ``import expyre`` (and quick ``xpr`` commands) load neither
    # pluggy nor the executor and the core
    if name == "hookimpl":
        from ._markers import hookimpl

        return hookimpl
    if name in ("Executor", "ExPyReFuture"):
        from . import executor

        return getattr(executor, name)
    raise AttributeError(f"module 'expyre' has no attribute {name!r}")
