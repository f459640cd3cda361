"""Functions for the executor examples (a module, so jobs import them by reference)."""


def inc(x: int) -> int:
    return x + 1


def risky(x: int) -> int:
    if x % 7 == 3:
        raise ValueError(f"bad input {x}")
    return 10 * x
