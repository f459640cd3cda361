"""Repository-wide pytest setup: under CI=true a skipped test fails the run (every real-component
test must run in CI); locally skips are reported with their reasons (-ra).

It applies to every test directory of the repository, also when pytest runs one distribution's
tests in its own venv (scripts/ci/per-dist.sh passes --rootdir and --confcutdir so that this file
is loaded, and checks the report header below)."""

from __future__ import annotations

import os

_skipped: list[str] = []


def _ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def pytest_report_header(config):
    # scripts/ci/per-dist.sh checks for this line: it proves this file was loaded
    return "expyre: skipped tests " + ("FAIL the run (CI=true)" if _ci() else "are reported with their reasons")


def pytest_runtest_logreport(report):
    if report.skipped:
        _skipped.append(report.nodeid)


def pytest_sessionfinish(session, exitstatus):
    if _ci() and _skipped and session.exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _ci() and _skipped:
        terminalreporter.write_line(
            f"CI=true: {len(_skipped)} skipped test(s) count as failures: " + ", ".join(_skipped[:20]), red=True
        )
