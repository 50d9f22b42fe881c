"""A host simulator for machines without bhyve: iohyve and the FreeBSD tools beside it.

The first word chooses the tool, each with its own dialect (:mod:`~sysadmd.simulator.dialects`
keeps the registry); words that name no tool go to iohyve.

``iohyve-sim [--root DIR] [--profile 0.7.3|0.7.9] [--pool NAME] [iohyve] <iohyve arguments...>``
(or ``python -m sysadmd.simulator ...``) prints what FreeBSD's ``iohyve`` 0.7.3 or 0.7.9 prints for
``version``, ``setup``, ``list``, ``info``, ``isolist``, ``fetch``/``fetchiso``, ``renameiso``,
``rmiso``, ``create``, ``install``, ``start``, ``stop``, ``forcekill``, ``delete``, ``set``,
``get``, ``getall``, ``add``, ``remove``, ``resize``, ``disks`` and ``help``, byte for byte and
with the same exit statuses, and keeps the guests (with their zvols), the ISO images and the
host's pools, kernel modules and interfaces in a state directory shaped like iohyve's ZFS layout
(see :mod:`sysadmd.simulator.state`). Downloads are real (http, https, ftp, file). No bhyve runs:
``start`` and ``install`` mark the guest's VM as existing and running, ``stop`` and ``forcekill``
end it. The simulator never has a controlling terminal, so the commands that ask on /dev/tty
(``delete``, ``remove`` without ``-f``, always in 0.7.3) delete nothing, as under a daemon.

The other VM manager, vm-bhyve, is the ``vm`` dialect (:mod:`~sysadmd.simulator.vmbhyve`):

``iohyve-sim [--root DIR] [--vm-version 1.6|1.7|dev] vm <vm arguments...>``
    vm-bhyve 1.6.x, 1.7.x or the development line: ``version``, ``init``, ``list``, ``info``,
    ``create``, ``install``, ``start``, ``stop``, ``poweroff``, ``destroy``, ``iso``, ``add``,
    ``rename`` and ``switch list/create/add``, byte for byte, on vm-bhyve's own files below the
    root as on a FreeBSD host below ``/`` (``ROOT/etc/rc.conf``, ``$vm_dir/<name>/<name>.conf``,
    ``console``, ``run.lock``, ``.iso/``); running guests are ``bhyve: <name>`` processes in
    ``ROOT/processes.json`` (:mod:`~sysadmd.simulator.vmhost`).
``iohyve-sim [--root DIR] sysrc [-f file] [-inqx] name[[+|-]=value] ...``
    FreeBSD's sysrc on the same files (:mod:`~sysadmd.simulator.sysrc`), as vm-bhyve and a
    backend change them.
``iohyve-sim [--root DIR] pgrep [-flx] pattern ...``
    FreeBSD's pgrep over the running guests' processes (:mod:`~sysadmd.simulator.pgrep`):
    ``pgrep -fx "bhyve: web"`` prints the pid of running guest ``web``; ``/dev/vmm/<name>`` is
    the file ``ROOT/dev/vmm/<name>``.
``iohyve-sim [--root DIR] [--pool NAME] zfs create|get|set|destroy ...``
    FreeBSD's zfs on the simulator's one dataset namespace (:mod:`~sysadmd.simulator.zfscmd`):
    ``zfs create tank/vm`` makes the filesystem mounted at ``/tank/vm`` (``ROOT/tank/vm``).
``iohyve-sim [--root DIR] /usr/bin/fetch [-q] -o PATH URL``
    FreeBSD's fetch(1) (:mod:`~sysadmd.simulator.fetchcmd`), named by its path: the word
    ``fetch`` is iohyve's own command.
``iohyve-sim [--root DIR] xz -d [-fkq] FILE ...``
    xz's decompression in place (:mod:`~sysadmd.simulator.xzcmd`).

Three FreeBSD tools the sysadm daemon also runs are simulated on the same state when they are the
first word (:mod:`~sysadmd.simulator.hosttools` documents their output):

``iohyve-sim [--root DIR] zpool list [-Hp] [-o property[,...]] [pool ...]``
    the pools: by default one, named after ``--pool``; ``-H -o name,size,alloc,free,frag,dedup,
    health`` prints ``tank<TAB>99.5G<TAB>1.82G<TAB>97.7G<TAB>3%<TAB>1.00x<TAB>ONLINE``;
``iohyve-sim [--root DIR] ifconfig -l`` / ``ifconfig [-a]`` / ``ifconfig <if>``
    ``em0`` (``status: active``), ``em1`` (``status: no carrier``), ``lo0`` and whatever
    ``setup net=...`` created (``tap0``, ``bridge0``), as FreeBSD 10 prints them;
``iohyve-sim [--root DIR] sysctl [-n] <name> ...``
    the physical interfaces' device nodes (``dev.em.0.%desc``, ``dev.em.0.%driver``).

Environment:

``IOHYVE_SIM_ROOT``
    The state directory when ``--root`` is not given.
``IOHYVE_SIM_PROFILE``
    The release when ``--profile`` is not given (default 0.7.9).
``IOHYVE_SIM_VM_VERSION``
    The vm-bhyve dialect when ``--vm-version`` is not given (default 1.7).
``IOHYVE_SIM_NOW``
    Seconds since the epoch used as "now" for ``create``'s description (``date`` output).
``TZ``
    The time zone of that description (UTC when unset).
``IOHYVE_SIM_FETCH_BPS``
    Limits downloads to this many bytes per second, to watch a transfer in progress.
``IOHYVE_SIM_DELETE_DELAY``
    Seconds ``delete -f`` (0.7.9) waits before deleting (a float; default 10, as iohyve's
    ``sleep 10``). The state lock is not held meanwhile.

A download in progress is the file ``ROOT/iohyve/ISO/<name>/.fetch.XXXXXX.<name>``; it grows as
data arrives and is renamed to ``<name>`` only when complete.

Modules: :mod:`~sysadmd.simulator.cli` (options, entry point), :mod:`~.dialects` (the tools and
the word that selects each), :mod:`~.commands` (iohyve's dispatch), :mod:`~.vmbhyve` and
:mod:`~.vmhost` (vm-bhyve's commands and host), :mod:`~.sysrc`, :mod:`~.pgrep`,
:mod:`~.guests`, :mod:`~.lifecycle`, :mod:`~.disks`, :mod:`~.info`, :mod:`~.hostsetup` and
:mod:`~.iso` (the commands), :mod:`~.hosttools` (zpool, ifconfig), :mod:`~.profiles` (the two
dialects), :mod:`~.state` (state directory and lock), :mod:`~.datasets` (the simulated ZFS
namespace and ``zfs list``/``zfs get`` lines), :mod:`~.zfsops` (zfs subcommands),
:mod:`~.fetch` (fetch(1)), :mod:`~.column` (``column -t``), :mod:`~.zfs` (dataset names, sizes
and zfs messages), :mod:`~.shell` (cut, basename, grep, sort -V), :mod:`~.output` and
:mod:`~.context`.

The package imports only the standard library: the daemon starts it for every command.
"""
