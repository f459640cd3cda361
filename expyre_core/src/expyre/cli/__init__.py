"""``xpr``: the expyre command line.

Job commands (``ls``, ``rm``, ``sync``, ``cancel``, ``hold``, ``release``) take the filters
``-i/--id``, ``-n/--name``, ``-s/--status``, ``-S/--system``: regexps matching whole values,
repeatable (any of them matches); ``-s`` also takes the groups ongoing, unprocessed, finished and
can_produce_results. Output is a table with colours on a terminal, plain aligned text when piped,
JSON with ``--json``. Errors are one line on stderr (``xpr: ...``) and a non-zero exit.

The click group is built in :mod:`expyre.cli.main`; each command is a thin wrapper in
``main_<command>.py`` over a library function (:mod:`expyre.control`, :mod:`expyre.sync`,
:mod:`expyre.check`, :mod:`expyre.why`, :meth:`expyre.jobsdb.JobsDB.unlock_file`...).
"""

from __future__ import annotations

from .main import cli, main

__all__ = ["main", "cli"]
