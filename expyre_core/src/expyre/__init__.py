"""expyre: evaluate Python functions as batch jobs through HPC queuing systems.

Start with ``expyre.ExPyRe`` (:class:`expyre.func.ExPyRe`) or ``expyre.Executor``
(:class:`expyre.executor.Executor`). Plugin authors need :data:`hookimpl` and :mod:`expyre.hookspecs`.

The public names are typed (``mypy --strict`` sees their real types) but loaded on first use,
so that ``import expyre`` (and quick ``xpr`` commands) load neither pluggy, attrs nor rich.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not `from typing import`: keep `import expyre` light
if TYPE_CHECKING:
    from ._markers import hookimpl
    from .executor import Executor, ExPyReFuture
    from .func import ExPyRe

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__", "ExPyRe", "Executor", "ExPyReFuture"]

_LAZY = {"hookimpl": "_markers", "ExPyRe": "func", "Executor": "executor", "ExPyReFuture": "executor"}

if not TYPE_CHECKING:  # hidden from type checkers: a misspelt name is their error, not `Any`

    def __getattr__(name: str):
        # imported on first use (see the module's doc)
        module = _LAZY.get(name)
        if module is None:
            raise AttributeError(f"module 'expyre' has no attribute {name!r}")
        import importlib

        value = getattr(importlib.import_module(f".{module}", __name__), name)
        globals()[name] = value
        return value

    def __dir__():
        return sorted(set(globals()) | set(_LAZY))
