"""The two iohyve dialects the simulator speaks, as data.

Every behavioural difference between iohyve 0.7.3 (January 2016, one script) and 0.7.9 (June 2017,
``lib/ioh-*`` modules) that the simulated commands show is a field of :class:`Profile`, so the
command code reads ``if profile.<difference>`` instead of comparing version strings.
"""

from __future__ import annotations


class Profile:
    """One iohyve release as the simulator reproduces it."""

    __slots__ = (
        "argument_checks",
        "create_defaults",
        "create_trailing_props",
        "fetch_words",
        "force_flags",
        "getall_sorted_format",
        "help_lines",
        "hide_reserved_words_in_list",
        "identify_by_name_property",
        "info_flag_table",
        "install_warns_outdated_bargs",
        "list_pager_flag",
        "lookup_anchored",
        "name",
        "not_simulated",
        "resize_updates_size",
        "set_keeps_all_after_first_equals",
        "setup_checks",
        "setup_pool_check",
        "strict_dispatch",
        "version_line",
    )

    def __init__(
        self,
        *,
        name: str,
        version_line: str,
        strict_dispatch: bool,
        argument_checks: bool,
        fetch_words: tuple[str, ...],
        create_defaults: tuple[tuple[str, str], ...],
        create_trailing_props: tuple[tuple[str, str], ...],
        identify_by_name_property: bool,
        hide_reserved_words_in_list: bool,
        list_pager_flag: bool,
        set_keeps_all_after_first_equals: bool,
        getall_sorted_format: bool,
        force_flags: bool,
        resize_updates_size: bool,
        info_flag_table: bool,
        install_warns_outdated_bargs: bool,
        lookup_anchored: bool,
        setup_checks: bool,
        setup_pool_check: bool,
        help_lines: tuple[str, ...],
        not_simulated: frozenset[str],
    ) -> None:
        #: The profile's name as given to ``--profile``.
        self.name = name
        #: The line ``iohyve version`` prints.
        self.version_line = version_line
        #: 0.7.6+: an unknown first word is an error; before, unknown words are skipped.
        self.strict_dispatch = strict_dispatch
        #: 0.7.6+: missing arguments print ``missing argument``/``usage:`` and exit 1.
        self.argument_checks = argument_checks
        #: The words that start a download (``fetch``; 0.7.5+ ``fetchiso`` with ``fetch`` kept).
        self.fetch_words = fetch_words
        #: ``create``'s properties before ``description``/``bargs``, in the order they are set.
        #: Values may use ``{name}``, ``{size}``, ``{tap}`` and ``{con}``.
        self.create_defaults = create_defaults
        #: Properties ``create`` sets after ``description`` and ``bargs`` (0.7.6+ VNC and more).
        self.create_trailing_props = create_trailing_props
        #: Words the real release knows but the simulator does not reproduce: they fail loudly
        #: instead of being skipped (0.7.3) or called unknown (0.7.9).
        self.not_simulated = not_simulated
        #: 0.7.6+ (``lib/ioh-guest``): guests are the datasets with a local ``iohyve:name``,
        #: found by exact value, and the guest commands use that rewrite's checks and messages
        #: (duplicate ``create`` refused, ``guest <name> doesn't exist``, ``<name> not
        #: running``); before, guests are found by substring ``grep`` over ``zfs list``.
        self.identify_by_name_property = identify_by_name_property
        #: 0.7.3: ``list`` drops datasets whose line contains ``disk``, ``ISO`` or ``Firmware``.
        self.hide_reserved_words_in_list = hide_reserved_words_in_list
        #: 0.7.9: ``list -l`` pipes to ``$PAGER``; with PAGER unset nothing is printed.
        self.list_pager_flag = list_pager_flag
        #: 0.7.8+: ``set`` keeps everything after the first ``=`` (``cut -f2-``), before it cuts at
        #: the second ``=`` (``cut -f2``).
        self.set_keeps_all_after_first_equals = set_keeps_all_after_first_equals
        #: 0.7.4+: ``getall`` prints sorted ``zfs get`` lines with whole values; before, first
        #: words through ``column -t`` in ZFS order.
        self.getall_sorted_format = getall_sorted_format
        #: 0.7.4+: ``delete -f`` and ``remove -f`` skip the /dev/tty question.
        self.force_flags = force_flags
        #: 0.7.4+: ``resize`` also sets the guest's ``iohyve:size``.
        self.resize_updates_size = resize_updates_size
        #: 0.7.6+: ``info [-vsdl]`` prints the guests and their disks through ``column -ts^``;
        #: before, ``info [-d]`` is ``zfs list`` through ``column -t``.
        self.info_flag_table = info_flag_table
        #: 0.7.3-0.7.5: ``install`` warns when the guest has no ``iohyve:bargs``.
        self.install_warns_outdated_bargs = install_warns_outdated_bargs
        #: 0.7.6+ (``lib/ioh-disk``, ``lib/ioh-zfs``): ``get``, ``add`` and ``resize`` grep for
        #: ``iohyve/<name>`` and ``remove`` for ``<name>.*<disk>``; before, for ``<name>`` alone.
        self.lookup_anchored = lookup_anchored
        #: 0.7.4+: ``setup`` runs pool, kmod and net in that order, skips an existing
        #: ``<pool>/iohyve`` and checks the bridge and the tap sysctl.
        self.setup_checks = setup_checks
        #: 0.7.9: ``setup`` refuses a pool ``zpool status`` does not know (and no arguments).
        self.setup_pool_check = setup_pool_check
        #: The help text, one string per line.
        self.help_lines = help_lines


def _help(commands: tuple[str, ...]) -> tuple[str, ...]:
    # "iohyve" and the first command on one line, then one command per line indented to the same
    # column (0.7.6+'s exact indentation is not known; 0.7.3's is in _HELP_073).
    first, *rest = commands
    return (f"iohyve  {first}", *(f"{' ' * 8}{line}" for line in rest))


# Commands of the real releases that the simulator does not reproduce.
_NOT_SIMULATED_COMMON = (
    "fwlist cpiso fetchfw cpfw renamefw rmfw load boot uefi scram destroy rename snap roll clone "
    "snaplist taplist activetaps conlist console conreset"
)

#: iohyve 0.7.3's help text as its ``__help`` prints it (a here-document indented with a mix of
#: TABs and eight spaces).
_HELP_073 = (
    "iohyve  version",
    "        setup pool=[poolname] kmod=[0/1] net=[interface]",
    "        list",
    "\tinfo [-d]",
    "        isolist",
    "\tfwlist",
    "        fetch [URL]",
    "\tcpiso [path]",
    "        renameiso [ISO] [newname]",
    "\trmiso [ISO]",
    "        fetchfw [URL]",
    "        cpfw [path]",
    "        renamefw [firmware] [newname]",
    "        rmfw [firmware]",
    "        create [name] [size]",
    "        install [name] [ISO]",
    "        load [name] [path/to/bootdisk]",
    "        boot [name] [runmode] [pcidevices]",
    "        start [name] [-s | -a]",
    "\tstop [name]",
    "\tforcekill [name]",
    "        scram",
    "        destroy [name]",
    "\trename [name] [newname]",
    "        delete [name]",
    "        set [name] [prop1=value] [prop2=value]...",
    "        get [name] [prop]",
    "\trmpci [name] [pcidev:N]",
    "        getall [name]",
    "\tadd [name] [size] [[pool]]",
    "\tremove [name] [diskN]",
    "\tresize [name] [diskN] [size]",
    "\tdisks [name]",
    "\tsnap [name]@[snapshotname]",
    "\troll [name]@[snapshotname]",
    "\tclone [name] [clonename]",
    "\tsnaplist",
    "        taplist",
    "\tactivetaps",
    "\tconlist",
    "        console [name]",
    "        conreset",
    "        help",
)

#: Properties every release sets first, in ``create``'s order.
_COMMON_CREATE = (
    ("iohyve:name", "{name}"),
    ("iohyve:size", "{size}"),
)

#: iohyve 0.7.3, "Bear in a Datacenter Edition" (tag 0.7.3, commit ca5d92a).
V073 = Profile(
    name="0.7.3",
    version_line="iohyve v0.7.3 2016/01/08 Bear in a Datacenter Edition",
    strict_dispatch=False,
    argument_checks=False,
    fetch_words=("fetch",),
    create_defaults=(
        *_COMMON_CREATE,
        ("iohyve:ram", "256M"),
        ("iohyve:cpu", "1"),
        ("iohyve:tap", "tap{tap}"),
        ("iohyve:con", "nmdm{con}"),
        ("iohyve:persist", "1"),
        ("iohyve:boot", "0"),
        ("iohyve:loader", "bhyveload"),
        ("iohyve:os", "default"),
        # The two characters backslash and n, not a newline.
        ("iohyve:autogrub", "\\n"),
    ),
    create_trailing_props=(),
    identify_by_name_property=False,
    hide_reserved_words_in_list=True,
    list_pager_flag=False,
    set_keeps_all_after_first_equals=False,
    getall_sorted_format=False,
    force_flags=False,
    resize_updates_size=False,
    info_flag_table=False,
    install_warns_outdated_bargs=True,
    lookup_anchored=False,
    setup_checks=False,
    setup_pool_check=False,
    help_lines=_HELP_073,
    not_simulated=frozenset(f"{_NOT_SIMULATED_COMMON} oldset rmpci fix-bargs".split()),
)

#: iohyve 0.7.9, "I Believe in You, You Can Do the Thing Edition" (tag 0.7.9, commit 2950404).
V079 = Profile(
    name="0.7.9",
    version_line="iohyve v0.7.9 2017/06/26 I Believe in You, You Can Do the Thing Edition",
    strict_dispatch=True,
    argument_checks=True,
    fetch_words=("fetchiso", "fetch"),
    create_defaults=(
        *_COMMON_CREATE,
        ("iohyve:ram", "512M"),
        ("iohyve:cpu", "1"),
        ("iohyve:tap", "tap{tap}"),
        ("iohyve:con", "nmdm{con}"),
        ("iohyve:persist", "1"),
        ("iohyve:boot", "0"),
        ("iohyve:loader", "bhyveload"),
        ("iohyve:os", "default"),
    ),
    create_trailing_props=(
        ("iohyve:vnc", "NO"),
        ("iohyve:vnc_ip", "127.0.0.1"),
        # iohyve 0.7.6-0.7.9 misspell this one, so iohyve:vnc_port itself stays unset.
        ("iohvye:vnc_port", "5900"),
        ("iohyve:vnc_w", "800"),
        ("iohyve:vnc_h", "600"),
        ("iohyve:vnc_wait", "NO"),
        ("iohyve:vnc_tablet", "NO"),
        ("iohyve:template", "NO"),
        ("iohyve:utc", "YES"),
        ("iohyve:bhyve_path", "/usr/sbin/bhyve"),
    ),
    identify_by_name_property=True,
    hide_reserved_words_in_list=False,
    list_pager_flag=True,
    set_keeps_all_after_first_equals=True,
    getall_sorted_format=True,
    force_flags=True,
    resize_updates_size=True,
    info_flag_table=True,
    install_warns_outdated_bargs=False,
    lookup_anchored=True,
    setup_checks=True,
    setup_pool_check=True,
    # Only the commands the simulator reproduces, in the order of the real help.
    help_lines=_help(
        (
            "version",
            "setup <pool=poolname> [kmod=0|1] [net=iface]",
            "list [-l]",
            "info [-vsdl]",
            "isolist",
            "fetchiso <URL>",
            "renameiso <ISO> <newname>",
            "rmiso <ISO>",
            "create <name> <size> [pool]",
            "install <name> <ISO>",
            "start <name> [-s | -a]",
            "stop <name>",
            "forcekill <name>",
            "delete [-f] <name>",
            "set <name> <prop1=value> [prop2=value ...]",
            "get <name> <prop>",
            "getall <name>",
            "add <name> <size> [pool]",
            "remove [-f] <name> <diskN>",
            "resize <name> <diskN> <size>",
            "disks <name>",
            "help",
        )
    ),
    not_simulated=frozenset(f"{_NOT_SIMULATED_COMMON} rmprop export rmsnap tapadd tapdel".split()),
)

#: The profiles by ``--profile`` value.
PROFILES = {profile.name: profile for profile in (V073, V079)}

#: The profile used when neither ``--profile`` nor ``IOHYVE_SIM_PROFILE`` is given.
DEFAULT_PROFILE = "0.7.9"

#: 0.7.6+ usage lines, printed after ``missing argument`` and ``usage:`` (with a leading TAB).
USAGE = {
    "fetchiso": "fetchiso <URL>",
    "renameiso": "renameiso <ISO> <newname>",
    "rmiso": "rmiso <name>",
    "create": "create <name> <size> [pool]",
    "start": "start <name> [-s | -a]",
    "stop": "stop <name>",
    "set": "set <name> <prop1=value> [prop2=value ...]",
    "getall": "getall <name>",
    "setup": "setup <pool=poolname> [kmod=0|1] [net=iface]",
    "install": "install <name> <ISO>",
    "forcekill": "forcekill <name>",
    "delete": "delete [-f] <name>",
    "get": "get <name> <prop>",
    "add": "add <name> <size>",
    "remove": "remove [-f] <name> <diskN>",
    "resize": "resize <name> <diskN> <size>",
    "disks": "disks <name>",
}
