"""VM managers behind one interface: what the handlers call, never a command line.

:mod:`~sysadmd.vm.interface` declares :class:`VMBackend` and the plain data it speaks;
:mod:`~sysadmd.vm.errors` its errors and their API codes; :mod:`~sysadmd.vm.hosttools`
the host's own tools (``zpool``, ``ifconfig``, ``sysctl``); :mod:`~sysadmd.vm.output`
how a failed command is described. The iohyve backend lives in :mod:`sysadmd.iohyve`.
"""

from sysadmd.vm.errors import BackendError, BackendFailed, Conflict, NotFound, Unsupported
from sysadmd.vm.interface import DiskInfo, GuestSpec, GuestSummary, IsoInfo, VMBackend

__all__ = [
    "BackendError",
    "BackendFailed",
    "Conflict",
    "DiskInfo",
    "GuestSpec",
    "GuestSummary",
    "IsoInfo",
    "NotFound",
    "Unsupported",
    "VMBackend",
]
