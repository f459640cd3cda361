"""expyre-ssh: the ``ssh`` transport for expyre.

Installed, it serves every system whose config.json entry has a ``"host"`` (unless the system
names another ``"transport"``)::

    {"systems": {"cluster": {"host": "me@login.cluster.org", "remsh_cmd": "ssh -p 2222",
                             "scheduler": "slurm", "rundir": "expyre_rundir", ...}}}

Requirements: OpenSSH and rsync here; bash, rsync and a Python with cloudpickle on the host.
See README.md for the connection model (one multiplexed login per host), costs and errors.
"""

from __future__ import annotations

__version__ = "0.1.0"

from expyre import hookimpl
from expyre.hookspecs import TransportSpec

from .probe import RemoteEnvironmentError
from .transport import SshTransport

__all__ = ["SshTransport", "RemoteEnvironmentError", "expyre_register_transports"]


@hookimpl
def expyre_register_transports():
    yield TransportSpec(name="ssh", backend=SshTransport,
                        description="OpenSSH (one multiplexed connection per host) + rsync")
