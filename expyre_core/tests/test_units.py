import pytest

from expyre.units import Duration, Memory


@pytest.mark.parametrize("value, seconds", [
    (30, 30), ("30", 30), ("45s", 45), ("10M", 600), ("48h", 172800), ("2d", 172800), ("1.5h", 5400),
    ("1:30", 90), ("2:00:00", 7200), ("48:00:00", 172800), ("1-00:00:00", 86400), ("1-02:03:04", 93784),
])
def test_durations(value, seconds):
    assert Duration.parse(value).seconds == seconds


@pytest.mark.parametrize("bad", ["48x", "1-2:3", "", "h", -1, 1.5, True, None])
def test_bad_durations_say_what_is_accepted(bad):
    with pytest.raises((ValueError, TypeError), match="duration"):
        Duration.parse(bad)


def test_hms():
    assert Duration.parse("48h").hms() == "48:00:00"
    assert Duration.parse(61).hms() == "0:01:01"


@pytest.mark.parametrize("value, kb", [
    (1000, 1000), ("100k", 100), ("100kb", 100), ("500mb", 500 * 1024), ("60GB", 60 * 1024**2), ("1.5tb", int(1.5 * 1024**3)),
])
def test_memory(value, kb):
    assert Memory.parse(value).kb == kb


@pytest.mark.parametrize("bad", ["60XB", "GB", -5, 2.5, False])
def test_bad_memory(bad):
    with pytest.raises((ValueError, TypeError), match="memory"):
        Memory.parse(bad)
