"""A test plugin offering a scheduler and a transport named "twin", like its sibling expyre_twin_b."""

import expyre
from expyre.builtin.local_scheduler import LocalScheduler
from expyre.builtin.local_transport import LocalTransport
from expyre.hookspecs import SchedulerSpec, TransportSpec


@expyre.hookimpl
def expyre_register_schedulers():
    yield SchedulerSpec("twin", LocalScheduler, "twin scheduler from expyre-twin-a")


@expyre.hookimpl
def expyre_register_transports():
    yield TransportSpec("twin", LocalTransport, "twin transport from expyre-twin-a")
