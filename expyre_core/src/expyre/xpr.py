"""The ``xpr`` console script (also ``python -m expyre``).

``xpr ls`` in its usual forms is answered by :mod:`expyre.cli_ls` without importing click, rich,
pluggy or attrs; everything else (and any ``ls`` it declines) goes to the click application in
:mod:`expyre.cli`.
"""

from __future__ import annotations

import sys

__all__ = ["main"]


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["ls"]:
        from .cli_ls import run_fast

        if run_fast(args):
            return
    from .cli import main as click_main

    click_main(args)


if __name__ == "__main__":
    main()
