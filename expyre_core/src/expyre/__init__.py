"""expyre: evaluate Python functions as batch jobs through HPC queuing systems.

Start with :class:`expyre.func.ExPyRe`. Plugin authors need :data:`hookimpl` and
:mod:`expyre.hookspecs`.
"""

from __future__ import annotations

from ._markers import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
