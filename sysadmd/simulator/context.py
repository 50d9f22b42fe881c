"""The context every simulated command receives, and helpers shared by the commands."""

from __future__ import annotations

from sysadmd.simulator.output import Output
from sysadmd.simulator.profiles import USAGE, Profile
from sysadmd.simulator.state import Root

#: Exit status for problems of the simulator itself (not of the simulated tool).
SIMULATOR_ERROR = 2


class Context:
    """What a command needs: the dialect, the state directory, the pool name and the output."""

    __slots__ = ("output", "pool", "profile", "root", "terminated", "vm_version")

    def __init__(
        self,
        profile: Profile,
        root: Root,
        pool: str,
        output: Output | None = None,
        vm_version: str = "1.7",
    ):
        self.profile = profile
        #: The vm-bhyve dialect of the ``vm`` tool: ``1.6``, ``1.7`` or ``dev``.
        self.vm_version = vm_version
        self.root = root
        #: The pool shown in zfs messages (``<pool>/iohyve/...``).
        self.pool = pool
        self.output = output if output is not None else Output()
        #: The signal that interrupted the command, if any (the caller may re-raise it).
        self.terminated: int | None = None

    def usage(self, command: str) -> int:
        """Print 0.7.6+'s missing-argument message for ``command`` and return its status, 1."""
        self.output.out("missing argument")
        self.output.out("usage:")
        self.output.out("\t" + USAGE[command])
        return 1

    def dataset(self, *components: str) -> str:
        """Return the full ZFS name ``<pool>/iohyve/<components...>``."""
        return "/".join((self.pool, "iohyve", *components))


def arg(args: list[str], index: int) -> str:
    """Return ``args[index]`` or ``""``, as an unset ``$N`` expands in the shell."""
    return args[index] if index < len(args) else ""
