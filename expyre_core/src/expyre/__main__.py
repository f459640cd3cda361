"""``python -m expyre``: the ``xpr`` command line."""

from .xpr import main

if __name__ == "__main__":
    main()
