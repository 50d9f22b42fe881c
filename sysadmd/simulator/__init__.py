"""A simulator of the iohyve command-line tool, for machines without bhyve.

``iohyve-sim [--root DIR] [--profile 0.7.3|0.7.9] [--pool NAME] <iohyve arguments...>`` (or
``python -m sysadmd.simulator ...``) prints what FreeBSD's ``iohyve`` 0.7.3 or 0.7.9 prints for
``version``, ``list``, ``isolist``, ``fetch``/``fetchiso``, ``renameiso``, ``rmiso``, ``create``,
``start``, ``stop``, ``set``, ``getall`` and ``help``, byte for byte and with the same exit
statuses, and keeps the guests and ISO images in a state directory shaped like iohyve's ZFS
layout (see :mod:`sysadmd.simulator.state`). Downloads are real (http, https, ftp, file).

Environment:

``IOHYVE_SIM_ROOT``
    The state directory when ``--root`` is not given.
``IOHYVE_SIM_PROFILE``
    The release when ``--profile`` is not given (default 0.7.9).
``IOHYVE_SIM_NOW``
    Seconds since the epoch used as "now" for ``create``'s description (``date`` output).
``TZ``
    The time zone of that description (UTC when unset).
``IOHYVE_SIM_FETCH_BPS``
    Limits downloads to this many bytes per second, to watch a transfer in progress.

A download in progress is the file ``ROOT/iohyve/ISO/<name>/.fetch.XXXXXX.<name>``; it grows as
data arrives and is renamed to ``<name>`` only when complete.

Modules: :mod:`~sysadmd.simulator.cli` (options, entry point), :mod:`~.commands` (dispatch),
:mod:`~.guests` and :mod:`~.iso` (the commands), :mod:`~.profiles` (the two dialects),
:mod:`~.state` (state directory and lock), :mod:`~.fetch` (fetch(1)), :mod:`~.column`
(``column -t``), :mod:`~.zfs` (dataset names and zfs messages), :mod:`~.shell` (cut, basename,
grep, sort -V), :mod:`~.output` and :mod:`~.context`.

The package imports only the standard library: the daemon starts it for every command.
"""
