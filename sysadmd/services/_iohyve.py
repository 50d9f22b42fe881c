"""The ``sysadm/iohyve`` API class: the actions of the API page, declared once.

The handlers speak the sysadm API and call the VM backend
(:class:`~sysadmd.backends.VMBackend`): they never build a command line nor read
a tool's output, and no handler calls another. The backend's errors become the API's
codes in one place (:func:`~sysadmd.backends.maps_backend_errors`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Final

from sysadmd.api import (
    NAME,
    NAME_PATTERN,
    URL,
    Arg,
    ArgType,
    Call,
    Extra,
    NamePattern,
    Role,
    action,
    bad_request,
    iso_name_from_url,
    not_found,
    schema_pattern,
)
from sysadmd.backends import (
    SYSADM_GUEST_FIELDS,
    GuestSpec,
    GuestSummary,
    HostTools,
    VMBackend,
    maps_backend_errors,
)
from sysadmd.tasks import (
    CHECKSUM_PATTERN,
    ChecksumError,
    FetchQueue,
    auto_checksum_urls,
    local_time,
)

NAMESPACE: Final = "sysadm"
CLASS: Final = "iohyve"

_YES_NO: Final = {"type": "string", "enum": ["YES", "NO"]}
_GUEST: Final = {
    "type": "object",
    "properties": {
        "description": {"type": "string"},
        "rcboot": _YES_NO,
        "running": _YES_NO,
        "vmm": _YES_NO,
    },
    "required": ["description", "rcboot", "running", "vmm"],
    "additionalProperties": False,
}


def _object(**properties: Any) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": properties,
        "required": sorted(properties),
        "additionalProperties": False,
    }


SIZE_PATTERN: Final = r"[0-9]{1,12}[KMGT]?"
_SIZE_RE: Final = re.compile(SIZE_PATTERN)
#: Words iohyve 0.7.3 hides guests for (its list skips datasets holding them).
_RESERVED_IN_GUEST_NAMES: Final = ("disk", "ISO", "Firmware")


def _size(value: Any, label: str) -> str:
    if not isinstance(value, str) or not _SIZE_RE.fullmatch(value):
        raise bad_request(f"{label} must be a size such as 10G: digits and one of K, M, G, T")
    return value


def _guest(value: Any, label: str) -> str:
    name: str = NAME.check(value, label)
    if any(word in name for word in _RESERVED_IN_GUEST_NAMES):
        raise bad_request(f"{label} must not contain 'disk', 'ISO' or 'Firmware'")
    return name


DISK_PATTERN: Final = r"disk[0-9]{1,3}"
NIC_PATTERN: Final = r"[a-z]{1,12}[0-9]{1,4}"


def _disk(value: Any, label: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(DISK_PATTERN, value):
        raise bad_request(f"{label} must be a disk name such as disk1")
    return value


def _flag(value: Any, label: str) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise bad_request(f'{label} must be "true" or "false"')


def _nic(value: Any, label: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(NIC_PATTERN, value):
        raise bad_request(f"{label} must be a network interface name such as em0")
    return value


SIZE: Final = ArgType({"type": "string", "pattern": schema_pattern(SIZE_PATTERN)}, _size, "10G")
GUEST: Final = ArgType(
    {
        "type": "string",
        "pattern": schema_pattern(f"(?!.*(?:disk|ISO|Firmware)){NAME_PATTERN}"),
        "maxLength": 128,
    },
    _guest,
    "guest1",
)
DISK: Final = ArgType({"type": "string", "pattern": schema_pattern(DISK_PATTERN)}, _disk, "disk1")
FLAG: Final = ArgType({"enum": ["true", "false", True, False]}, _flag, "false")
NIC: Final = ArgType({"type": "string", "pattern": schema_pattern(NIC_PATTERN)}, _nic, "em0")


def _checksum(value: Any, label: str) -> str:
    if not isinstance(value, str) or not re.fullmatch(CHECKSUM_PATTERN, value):
        raise bad_request(
            f'{label} must be "sha256:" and 64 hex digits or "sha512:" and 128 hex digits'
        )
    return value.lower()


def _verify(value: Any, label: str) -> str:
    if value != "auto":
        raise bad_request(f'{label} must be "auto"')
    return "auto"


def _byte_count(value: Any, label: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < 2**63:
        raise bad_request(f"{label} must be a whole number of bytes")
    return value


BYTE_COUNT: Final = ArgType({"type": "integer", "minimum": 0}, _byte_count, 1048576)
#: The class of uploads (``sysadm/isoupload``): an action of its own, not of
#: ``sysadm/iohyve``, since no JSON call can carry an ISO.
UPLOAD_CLASS: Final = "isoupload"
#: The transport name of the connection ``PUT /iso/<name>`` makes its one request on.
UPLOAD_TRANSPORT: Final = "upload"

CHECKSUM: Final = ArgType(
    {"type": "string", "pattern": schema_pattern(CHECKSUM_PATTERN)},
    _checksum,
    "sha256:" + "0" * 64,
)
VERIFY: Final = ArgType({"const": "auto"}, _verify, "auto")
_CHECKSUM_ARGS: Final = ("checksum", "checksum_url", "verify")


def _verification(args: Mapping[str, Any], url: str) -> str | None:
    """What a fetch must hash to, from fetchiso's optional arguments (at most one)."""
    given = [name for name in _CHECKSUM_ARGS if name in args]
    if len(given) > 1:
        raise bad_request(
            f"give at most one of the arguments checksum, checksum_url and verify, not {given}"
        )
    if "checksum" in args:
        return str(args["checksum"])
    if "checksum_url" in args:
        checksum_url = str(args["checksum_url"])
        label = "argument 'checksum_url'"
        iso_name_from_url(checksum_url, label)
        if not checksum_url.lower().startswith(("http://", "https://")):
            raise bad_request(f"{label} must start with http:// or https://")
        return "url:" + checksum_url
    if "verify" in args:
        try:
            auto_checksum_urls(url)
        except ChecksumError as e:
            raise bad_request(f"argument 'verify': {e}") from None
        return "auto"
    return None


# -- Guest properties ---------------------------------------------------------------------------
#
# iohyve keeps a guest's settings in ZFS user properties (iohyve:<name>) and expands them
# unquoted when it runs bhyve, bhyveload, grub-bhyve, ifconfig and zfs as root. Each
# settable property is therefore declared with exactly the values iohyve can use: a
# program is chosen from a list, never given as a path; flags for bhyve come from a list
# of flags without arguments; numbers, sizes, interface and device names are matched in
# full. The check and the JSON Schema are both built from the one declaration.
#
# Not settable: name and size (create, resizedisk), pcidev:<N> (bhyve -s device
# specifications naming host files; adddisk and deletedisk write them), autogrub
# (grub commands, which can read host files; removed in iohyve 0.7.5) and install (set
# by install and start).


def _one_of(*values: str) -> ArgType:
    """A property whose value is one of ``values``."""
    shown = ", ".join(values)

    def check(value: Any, label: str) -> str:
        if not isinstance(value, str) or value not in values:
            raise bad_request(f"{label} must be one of: {shown}")
        return value

    return ArgType({"type": "string", "enum": list(values)}, check, values[0])


def _matching(pattern: str, meaning: str, example: str) -> ArgType:
    """A property whose value fully matches ``pattern``; ``meaning`` says what that is."""
    compiled = re.compile(pattern, re.ASCII)

    def check(value: Any, label: str) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise bad_request(f"{label} must be {meaning}")
        return value

    return ArgType({"type": "string", "pattern": schema_pattern(pattern)}, check, example)


#: The loaders iohyve runs (its iohyve:loader values); ``uefi`` boots bhyve with the
#: firmware named by ``fw``.
LOADERS: Final = ("bhyveload", "grub-bhyve", "uefi")
#: The values of iohyve:os that iohyve 0.7.3 to 0.7.9 know (they choose grub-bhyve's
#: commands); any other value would behave as ``default``.
OS_TYPES: Final = (
    "default", "openbsd57", "openbsd58", "openbsd59", "openbsd60", "openbsd61",
    "netbsd", "debian", "d8lvm", "centos6", "centos7", "arch", "ubuntu", "custom",
)  # fmt: skip
#: The bhyve flags bargs may hold: options without an argument that only change how the
#: guest's virtual hardware behaves. Options that take an argument (-s devices and -l
#: boot ROMs name host files, -g opens a debug port, -c/-m/-p/-U and the rest are set
#: through other properties) are refused.
BHYVE_FLAGS: Final = {
    "-A": "generate ACPI tables (iohyve's default)",
    "-H": "yield the virtual CPU on HLT (iohyve's default)",
    "-P": "exit the virtual CPU on PAUSE (iohyve's default)",
    "-S": "wire the guest's memory (iohyve passes it on to the loader)",
    "-u": "keep the RTC in UTC",
    "-w": "ignore accesses to unimplemented MSRs",
    "-W": "force MSI interrupts for virtio devices",
    "-x": "use the x2APIC mode",
    "-Y": "do not create the MP table",
}
_BARG: Final = "|".join(flag[1] for flag in BHYVE_FLAGS)
#: bargs: flags separated by one space or by ``_`` (how iohyve stores spaces).
BARGS_PATTERN: Final = f"-(?:{_BARG})(?:[ _]-(?:{_BARG}))*"
#: The bhyve iohyve 0.7.9 runs (iohyve:bhyve_path); no other program may be named.
SYSTEM_BHYVE: Final = "/usr/sbin/bhyve"
#: A description: free text, not only spaces, without control characters and without
#: the characters iohyve's shell would read as quoting, expansion or wildcards (or
#: ``zfs set``'s ``=``).
DESCRIPTION_PATTERN: Final = r"(?=.*[^ ])[^\x00-\x1f\x7f-\x9f=*?\[\]`$\\" + "\"'" + "]{1,1024}"
_MAC: Final = r"[0-9A-Fa-f]{2}(?::[0-9A-Fa-f]{2}){5}"
_YES_NO_VALUES: Final = ("YES", "NO", "yes", "no")

#: Every settable iohyve property and what its value may be.
PROPERTIES: Final = Extra(
    "property",
    {
        "ram": _matching(SIZE_PATTERN, "a size such as 512M: digits and one of K, M, G, T", "512M"),
        "cpu": _matching(r"[1-9][0-9]{0,2}", "a number of virtual CPUs from 1 to 999", "2"),
        "tap": _matching(
            r"tap[0-9]{1,4}(?:,tap[0-9]{1,4}){0,7}",
            "tap interfaces such as tap0 or tap0,tap1",
            "tap0",
        ),
        "con": _matching(r"nmdm[0-9]{1,4}", "a null-modem device such as nmdm0", "nmdm0"),
        "persist": _one_of("1", "0"),
        "boot": _one_of("1", "0"),
        "loader": _one_of(*LOADERS),
        "os": _one_of(*OS_TYPES),
        "description": _matching(
            DESCRIPTION_PATTERN,
            "1 to 1024 characters without control characters, '=', quotes, '\\', '$' "
            "or shell wildcards",
            "my web server",
        ),
        "bargs": _matching(
            BARGS_PATTERN,
            "bhyve flags separated by spaces or '_', each one of: " + ", ".join(BHYVE_FLAGS),
            "-A -H -P",
        ),
        "fw": NAME,
        "vnc": _one_of(*_YES_NO_VALUES),
        "vnc_ip": _matching(
            r"(?:(?:25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})\.){3}(?:25[0-5]|2[0-4][0-9]|1?[0-9]{1,2})",
            "an IPv4 address such as 127.0.0.1",
            "127.0.0.1",
        ),
        "vnc_port": _matching(r"[1-9][0-9]{0,4}", "a TCP port number", "5900"),
        "vnc_w": _matching(r"[1-9][0-9]{0,4}", "a width in pixels", "800"),
        "vnc_h": _matching(r"[1-9][0-9]{0,4}", "a height in pixels", "600"),
        "vnc_wait": _one_of(*_YES_NO_VALUES),
        "vnc_tablet": _one_of(*_YES_NO_VALUES),
        "template": _one_of(*_YES_NO_VALUES),
        "utc": _one_of(*_YES_NO_VALUES),
        "bhyve_path": _one_of(SYSTEM_BHYVE),
        "sectorsize": _one_of("512", "4096"),
    },
    (
        NamePattern(
            r"mac_tap[0-9]{1,4}",
            "mac_tap<N>",
            "mac_tap0",
            _matching(_MAC, "a MAC address such as 58:9c:fc:00:00:01", "58:9c:fc:00:00:01"),
        ),
    ),
)
#: The names of the settable properties (besides mac_tap<N>).
SETTABLE_PROPERTIES: Final = frozenset(PROPERTIES.names)


def sysadm_guests(guests: Mapping[str, GuestSummary]) -> Mapping[str, GuestSummary]:
    """The guests as ``listvms`` answers them: sysadm's four fields each.

    A list whose rows hold nothing else (iohyve's) is answered as it is, so that a
    list many callers share stays one object; extras a backend adds are left out.
    """
    if all(len(guest) == len(SYSADM_GUEST_FIELDS) for guest in guests.values()):
        return guests
    return {
        name: GuestSummary(
            description=guest["description"],
            rcboot=guest["rcboot"],
            running=guest["running"],
            vmm=guest["vmm"],
        )
        for name, guest in guests.items()
    }


@maps_backend_errors
class IohyveActions:
    """Handlers of ``sysadm/iohyve``; each validates nothing by hand."""

    def __init__(
        self,
        backend: VMBackend,
        fetches: FetchQueue,
        file_roots: Sequence[Path] = (),
        *,
        host: HostTools | None = None,
        upload_max: int = 64 * 1024**3,
    ) -> None:
        """``host`` is the host's tools: ``setup`` asks them for the pools to refuse a
        pool that does not exist with 404 before anything runs. Without them that
        check is left to the backend (a 500 in its tool's words)."""
        self._vm = backend
        self._fetches = fetches
        self._file_roots = tuple(file_roots)
        self._host = host
        self._upload_max = upload_max

    @action(
        NAMESPACE,
        CLASS,
        "listvms",
        summary="List the guests with their description, rcboot, running and VMM state.",
        role=Role.OPERATOR,
        reply={"type": "object", "additionalProperties": _GUEST},
    )
    async def listvms(self, call: Call) -> Any:
        return sysadm_guests(await self._vm.list_vms())

    @action(
        NAMESPACE,
        CLASS,
        "fetchiso",
        summary=(
            "Queue a download of an installation ISO; replies at once with the task id "
            "(once the size the source announces is checked against the ISO store's free "
            "space: 507 if it does not fit). The ISO is named after the last path segment "
            "of the URL."
        ),
        args=[
            Arg(
                "url",
                URL,
                "http://, https://, ftp:// or file:// URL of the ISO; file:// only for "
                "files below the directories the server allows",
            ),
            Arg(
                "checksum",
                CHECKSUM,
                'what the ISO must hash to: "sha256:<hex>" or "sha512:<hex>"; a download '
                "that does not match fails and is removed",
                required=False,
            ),
            Arg(
                "checksum_url",
                URL,
                "http:// or https:// URL of a checksum file (BSD 'SHA256 (name) = hex' or "
                "GNU 'hex  name' lines) holding the ISO's digest",
                required=False,
            ),
            Arg(
                "verify",
                VERIFY,
                '"auto": read the digest from FreeBSD\'s CHECKSUM.SHA512-<release> (or '
                "SHA256) file beside the image",
                required=False,
            ),
        ],
        reply=_object(
            command={"type": "string"},
            comment={"const": "Task Queued"},
            queueid={"type": "string", "pattern": "^\\{[0-9a-f-]{36}\\}$"},
        ),
        role=Role.ADMIN,
        queued=True,
    )
    async def fetchiso(self, call: Call) -> Any:
        url = call.args["url"]
        name = iso_name_from_url(url, "argument 'url'", self._file_roots)
        verify = _verification(call.args, url)
        self._fetches.ensure_free(name)
        await self._vm.check_iso_absent(name)
        announced = await self._fetches.ensure_room(url, name)
        task = self._fetches.submit(
            url,
            name,
            call.caller.user if call.caller else None,
            verify=verify,
            announced=announced,
        )
        # The queueid is a promise: reply only once the queued task is on disk.
        await self._fetches.written()
        return {"command": task.command, "comment": "Task Queued", "queueid": task.id}

    @action(
        NAMESPACE,
        UPLOAD_CLASS,
        None,
        summary=(
            "Start storing an ISO whose bytes are the body of PUT /iso/<name> (only that "
            "route calls it; see Uploads): 409 if the ISO exists or a task owns the name, "
            "507 if the size exceeds fetch.upload_max or the ISO store's free space."
        ),
        args=[
            Arg("name", NAME, "the ISO's name"),
            Arg("size", BYTE_COUNT, "the body's size in bytes (its Content-Length)"),
            Arg(
                "checksum",
                CHECKSUM,
                'what the ISO must hash to: "sha256:<hex>" or "sha512:<hex>"; an upload that '
                "does not match is refused with 400 and removed",
                required=False,
            ),
        ],
        reply=_object(
            name={"type": "string"},
            size={"type": "integer", "minimum": 0},
            digest={"type": "string", "pattern": schema_pattern(CHECKSUM_PATTERN)},
        ),
        role=Role.ADMIN,
    )
    async def uploadiso(self, call: Call) -> Any:
        if call.connection.transport != UPLOAD_TRANSPORT:
            raise bad_request(f"{UPLOAD_CLASS} takes the ISO as the body of PUT /iso/<name>")
        return await self._fetches.begin_upload(
            call.args["name"],
            call.args["size"],
            call.caller.user if call.caller else None,
            call.args.get("checksum"),
            self._upload_max,
        )

    @action(
        NAMESPACE,
        CLASS,
        "renameiso",
        summary="Rename an ISO. 404 if the source does not exist, 409 if the target does.",
        role=Role.ADMIN,
        args=[
            Arg("source", NAME, "the ISO to rename"),
            Arg("target", NAME, "its new name"),
        ],
        reply=_object(source={"type": "string"}, target={"type": "string"}),
    )
    async def renameiso(self, call: Call) -> Any:
        source, target = call.args["source"], call.args["target"]
        await self._vm.rename_iso(source, target, busy=self._fetches.busy)
        return {"source": source, "target": target}

    @action(
        NAMESPACE,
        CLASS,
        "rmiso",
        summary="Remove an ISO. 404 if it does not exist.",
        role=Role.ADMIN,
        args=[Arg("target", NAME, "the ISO to remove")],
        reply=_object(target={"type": "string"}),
    )
    async def rmiso(self, call: Call) -> Any:
        target = call.args["target"]
        await self._vm.remove_iso(target, busy=self._fetches.busy)
        return {"target": target}

    @action(
        NAMESPACE,
        CLASS,
        "listisos",
        summary="List the ISO names.",
        role=Role.OPERATOR,
        reply={"type": "array", "items": {"type": "string"}},
    )
    async def listisos(self, call: Call) -> Any:
        return [iso.name for iso in await self._vm.list_isos()]

    @action(
        NAMESPACE,
        CLASS,
        "isodigests",
        summary=(
            "The digests of the ISOs that a verified fetch stored, by ISO name (sysadmd's "
            "addition; listisos keeps sysadm's list of names). An ISO is left out once its "
            "size differs from the verified one, or after it was renamed."
        ),
        role=Role.OPERATOR,
        reply={
            "type": "object",
            "additionalProperties": _object(
                digest={"type": "string", "pattern": schema_pattern(CHECKSUM_PATTERN)},
                size={"type": "integer", "minimum": 0},
                verified={"type": "string"},
            ),
        },
    )
    async def isodigests(self, call: Call) -> Any:
        present = {iso.name for iso in await self._vm.list_isos()}
        reply = {}
        for name, (digest, size, verified) in sorted(self._fetches.digests.items()):
            if name in present and self._vm.iso_size(name) == size:
                reply[name] = {"digest": digest, "size": size, "verified": local_time(verified)}
        return reply

    @action(
        NAMESPACE,
        CLASS,
        "isolibrary",
        summary=(
            "The ISOs with their sizes in bytes, by name (sysadmd's addition; listisos "
            "keeps sysadm's list of names). 'datastore' names the store holding the ISO "
            "where the backend has several (vm-bhyve); 'digest' is there for an ISO a "
            "verified fetch or upload stored, while its size is the verified one."
        ),
        role=Role.OPERATOR,
        reply={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "size": {"type": "integer", "minimum": 0},
                    "datastore": {"type": "string"},
                    "digest": {"type": "string", "pattern": schema_pattern(CHECKSUM_PATTERN)},
                },
                "required": ["size"],
                "additionalProperties": False,
            },
        },
    )
    async def isolibrary(self, call: Call) -> Any:
        digests = self._fetches.digests
        reply: dict[str, dict[str, Any]] = {}
        for iso, size in await self._vm.iso_files():
            entry: dict[str, Any] = {"size": size}
            if iso.datastore is not None:
                entry["datastore"] = iso.datastore
            verified = digests.get(iso.name)
            if verified is not None and verified[1] == size:
                entry["digest"] = verified[0]
            reply[iso.name] = entry
        return reply

    @action(
        NAMESPACE,
        CLASS,
        "version",
        summary=(
            "The VM manager's version string, and which manager answers: 'backend' is "
            "'iohyve' or 'vm-bhyve' (an extra field sysadm's clients ignore)."
        ),
        role=Role.OPERATOR,
        reply=_object(version={"type": "string"}, backend={"type": "string"}),
    )
    async def version(self, call: Call) -> Any:
        return {"version": await self._vm.version(), "backend": self._vm.tool}

    @action(
        NAMESPACE,
        CLASS,
        "issetup",
        summary="Whether iohyve is set up: rc.conf has a non-empty iohyve_flags line.",
        role=Role.OPERATOR,
        reply=_object(setup={"enum": ["true", "false"]}),
    )
    async def issetup(self, call: Call) -> Any:
        return {"setup": "true" if await self._vm.is_setup() else "false"}

    @action(
        NAMESPACE,
        CLASS,
        "setup",
        summary=(
            "Set iohyve up on a pool and a network interface: runs iohyve setup "
            "pool=<pool> kmod=1 net=<nic> and checks that it worked, then writes "
            'iohyve_flags="kmod=1 net=<nic>" to rc.conf. 404 if the pool does not exist; '
            "rc.conf is left as it was when the request fails."
        ),
        role=Role.ADMIN,
        args=[Arg("pool", NAME, "the ZFS pool"), Arg("nic", NIC, "the network interface")],
        reply=_object(pool={"type": "string"}, nic={"type": "string"}),
    )
    async def setup(self, call: Call) -> Any:
        pool, nic = call.args["pool"], call.args["nic"]
        if self._host is not None and pool not in await self._host.pools():
            raise not_found(f"pool '{pool}' does not exist")
        await self._vm.setup(pool, nic)
        return {"pool": pool, "nic": nic}

    @action(
        NAMESPACE,
        CLASS,
        "create",
        summary="Create a guest with a first disk of the given size. 409 if the name is taken.",
        role=Role.ADMIN,
        args=[Arg("name", GUEST, "the new guest"), Arg("size", SIZE, "its disk0, e.g. 10G")],
        reply=_object(name={"type": "string"}, size={"type": "string"}),
    )
    async def create(self, call: Call) -> Any:
        name, size = call.args["name"], call.args["size"]
        await self._vm.create(name, GuestSpec(size))
        return {"name": name, "size": size}

    @action(
        NAMESPACE,
        CLASS,
        "install",
        summary="Boot a stopped guest from an ISO to install it.",
        role=Role.ADMIN,
        args=[Arg("name", NAME, "the guest"), Arg("iso", NAME, "the ISO to boot")],
        reply=_object(name={"type": "string"}, iso={"type": "string"}),
    )
    async def install(self, call: Call) -> Any:
        name, iso = call.args["name"], call.args["iso"]
        await self._vm.install(name, iso)
        return {"name": name, "iso": iso}

    @action(
        NAMESPACE,
        CLASS,
        "start",
        summary="Start a guest. 409 if it is running already.",
        role=Role.ADMIN,
        args=[Arg("name", NAME, "the guest")],
        reply=_object(name={"type": "string"}),
    )
    async def start(self, call: Call) -> Any:
        name = call.args["name"]
        await self._vm.start(name)
        return {"name": name}

    @action(
        NAMESPACE,
        CLASS,
        "stop",
        summary=(
            'Stop a guest with an ACPI shutdown request, or with force="true" at once '
            "(iohyve forcekill). 409 if it is not running."
        ),
        role=Role.ADMIN,
        args=[
            Arg("name", NAME, "the guest"),
            Arg("force", FLAG, '"true" to kill it at once', required=False),
        ],
        reply=_object(name={"type": "string"}),
    )
    async def stop(self, call: Call) -> Any:
        name, force = call.args["name"], call.args.get("force", False)
        await self._vm.stop(name, force=force)
        return {"name": name}

    @action(
        NAMESPACE,
        CLASS,
        "delete",
        summary=(
            "Delete a stopped guest and all its disks (iohyve delete -f, which waits 10 s "
            "first; the reply waits, other requests do not)."
        ),
        role=Role.ADMIN,
        args=[Arg("name", NAME, "the guest")],
        reply=_object(name={"type": "string"}),
    )
    async def delete(self, call: Call) -> Any:
        name = call.args["name"]
        await self._vm.delete(name)
        return {"name": name}

    @action(
        NAMESPACE,
        CLASS,
        "adddisk",
        summary="Add a disk to a guest, on its pool or the one given.",
        role=Role.ADMIN,
        args=[
            Arg("name", NAME, "the guest"),
            Arg("size", SIZE, "the new disk's size, e.g. 20G"),
            Arg("pool", NAME, "the ZFS pool for it", required=False),
        ],
        reply={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "properties": {"size": {"type": "string"}, "pool": {"type": "string"}},
                "required": ["size"],
            },
        },
    )
    async def adddisk(self, call: Call) -> Any:
        name, size, pool = call.args["name"], call.args["size"], call.args.get("pool")
        await self._vm.add_disk(name, size, pool)
        return {name: {"size": size, **({"pool": pool} if pool else {})}}

    @action(
        NAMESPACE,
        CLASS,
        "listdisks",
        summary="A guest's disks and their sizes.",
        role=Role.OPERATOR,
        args=[Arg("name", NAME, "the guest")],
        reply={"type": "object", "additionalProperties": {"type": "string"}},
    )
    async def listdisks(self, call: Call) -> Any:
        disks = await self._vm.disks(call.args["name"])
        return {disk: info.size for disk, info in disks.items()}

    @action(
        NAMESPACE,
        CLASS,
        "resizedisk",
        summary="Resize a disk of a stopped guest.",
        role=Role.ADMIN,
        args=[
            Arg("name", NAME, "the guest"),
            Arg("disk", DISK, "the disk, e.g. disk0"),
            Arg("size", SIZE, "its new size"),
        ],
        reply=_object(name={"type": "string"}, disk={"type": "string"}, size={"type": "string"}),
    )
    async def resizedisk(self, call: Call) -> Any:
        name, disk, size = call.args["name"], call.args["disk"], call.args["size"]
        await self._vm.resize_disk(name, disk, size)
        return {"name": name, "disk": disk, "size": size}

    @action(
        NAMESPACE,
        CLASS,
        "deletedisk",
        summary="Remove a disk other than disk0 from a guest.",
        role=Role.ADMIN,
        args=[Arg("name", NAME, "the guest"), Arg("disk", DISK, "the disk, e.g. disk1")],
        reply=_object(name={"type": "string"}, disk={"type": "string"}),
    )
    async def deletedisk(self, call: Call) -> Any:
        name, disk = call.args["name"], call.args["disk"]
        if disk == "disk0":
            raise bad_request("disk0 cannot be removed")
        await self._vm.delete_disk(name, disk)
        return {"name": name, "disk": disk}

    @action(
        NAMESPACE,
        CLASS,
        "getprops",
        summary="A guest's iohyve properties, values whole.",
        role=Role.OPERATOR,
        args=[Arg("name", NAME, "the guest")],
        reply={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
        },
    )
    async def getprops(self, call: Call) -> Any:
        name = call.args["name"]
        return {name: await self._vm.properties(name)}

    @action(
        NAMESPACE,
        CLASS,
        "setprop",
        summary=(
            "Set properties of a guest: every argument besides 'name' is a property "
            "(ram, cpu, description, boot, ...) and its value."
        ),
        role=Role.ADMIN,
        args=[Arg("name", NAME, "the guest")],
        extra=PROPERTIES,
        reply={
            "type": "object",
            "additionalProperties": {
                "type": "object",
                "additionalProperties": {"type": "string"},
            },
        },
    )
    async def setprop(self, call: Call) -> Any:
        name, props = call.args["name"], call.args.get("extra", {})
        if not props:
            raise bad_request("setprop needs at least one property besides 'name'")
        await self._vm.set_properties(name, props)
        return {name: props}
