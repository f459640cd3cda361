"""The shared scheduler contract, run on the built-in local scheduler (and any selected system that
uses it on this machine)."""

from expyre.testing import SchedulerContract


class TestLocalContract(SchedulerContract):
    scheduler = "local"
    transport = "local"
    many = 20
