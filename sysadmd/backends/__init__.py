"""Everything that knows a VM manager: command lines, outputs, storage layout.

``interface`` declares :class:`VMBackend`, the one interface the handlers call, and the plain
data it speaks; ``errors`` its errors and the API codes they become; ``hosttools`` the host's
own tools (``zpool``, ``ifconfig``, ``sysctl``); ``output`` how a failed command is described.
``iohyve`` implements the interface (the adapter, its pure output parsers, rc.conf editing).
``runner`` is the only place that spawns processes (argv only, a new session, killed as a
group).

May import: ``sysadmd.api``, ``sysadmd.config``, ``sysadmd.shared``.
"""
