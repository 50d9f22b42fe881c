"""Everything that knows a VM manager: command lines, outputs, storage layout.

Private modules: ``_interface`` declares :class:`VMBackend`, the one interface the handlers
call, and the plain data it speaks; ``_errors`` its errors and the API codes they become;
``_hosttools`` the host's own tools (``zpool``, ``ifconfig``, ``sysctl``); ``_output`` how a
failed command is described. The private subpackage ``_iohyve`` implements the interface
(``adapter``, its pure output parsers ``parse``, rc.conf editing ``rcconf``), and so does
``_vmbhyve`` for vm-bhyve (``adapter``; ``host``, the files the tool keeps; ``parse``).
``_runner`` is the only place that spawns processes (argv only, a new session, killed as a
group). Other packages use only the names below.

May import: ``sysadmd.api``, ``sysadmd.config``, ``sysadmd.shared``.
"""

from sysadmd.backends._errors import maps_backend_errors
from sysadmd.backends._hosttools import HostTools
from sysadmd.backends._interface import (
    SYSADM_GUEST_FIELDS,
    UPLOAD_TEMPORARY_PREFIX,
    GuestSpec,
    GuestSummary,
    VMBackend,
)
from sysadmd.backends._iohyve.adapter import Iohyve
from sysadmd.backends._output import describe_failure
from sysadmd.backends._runner import (
    ProcessResult,
    ProcessRunner,
    RunningProcess,
    end_left_over_group,
)
from sysadmd.backends._vmbhyve.adapter import Commands as VmBhyveCommands
from sysadmd.backends._vmbhyve.adapter import VmBhyve

__all__ = [
    "SYSADM_GUEST_FIELDS",
    "UPLOAD_TEMPORARY_PREFIX",
    "GuestSpec",
    "GuestSummary",
    "HostTools",
    "Iohyve",
    "ProcessResult",
    "ProcessRunner",
    "RunningProcess",
    "VMBackend",
    "VmBhyve",
    "VmBhyveCommands",
    "describe_failure",
    "end_left_over_group",
    "maps_backend_errors",
]
