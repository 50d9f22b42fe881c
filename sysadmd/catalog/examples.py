"""The worked examples of ``docs/iohyve.rst``: one scenario, in order, from a fresh host.

``python -m sysadmd.catalog.examples docs/iohyve.rst`` writes the page in the format of the
API page sysadmd implements (REST request, WebSocket request, response); a test
checks the page equals what this module renders and runs every example, in order,
against the daemon's API on the simulator, so the page cannot drift from the code.
In an expected reply, ``"<any>"`` stands for a value that differs from run to run,
and a ``"…"`` key means the object holds more keys than those shown.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

ANY: Final = "<any>"
MORE: Final = "…"
#: The ISOs the scenario's host holds before it starts.
STARTING_ISOS: Final = ("FreeBSD-10.2-RELEASE-amd64-bootonly.iso", "test.iso")
FETCH_URL: Final = (
    "ftp://ftp.freebsd.org/pub/FreeBSD/releases/amd64/amd64/ISO-IMAGES/10.1/"
    "FreeBSD-10.1-RELEASE-amd64-disc1.iso"
)

_RELEASES: Final = "https://download.freebsd.org/releases/amd64/amd64/ISO-IMAGES/14.3/"
AUTO_URL: Final = _RELEASES + "FreeBSD-14.3-RELEASE-amd64-disc1.iso"


@dataclass(frozen=True)
class Example:
    """One request of the scenario and the reply it gets."""

    title: str
    text: str
    args: dict[str, Any]
    reply: Any
    error: tuple[int, str] | None = None
    profiles: tuple[str, ...] = field(default=("0.7.3", "0.7.9"))


def _ok(title: str, text: str, args: dict[str, Any], reply: Any, **kw: Any) -> Example:
    return Example(title, text, args, reply, **kw)


EXAMPLES: Final = (
    _ok("Is iohyve set up?", "``issetup`` reads ``iohyve_flags`` in rc.conf.",
        {"action": "issetup"}, {"setup": "false"}),
    _ok("Set iohyve up", "``setup`` checks the pool, runs iohyve setup, then writes "
        "``iohyve_flags`` to rc.conf.",
        {"action": "setup", "pool": "tank", "nic": "em0"}, {"pool": "tank", "nic": "em0"}),
    _ok("iohyve's version", "``version`` gives the VM manager's version line, and "
        "``backend`` which manager answers (``iohyve`` or ``vm-bhyve``).",
        {"action": "version"}, {"version": ANY, "backend": ANY}),
    _ok("Create a guest", "``create`` makes a guest with a first disk of ``size``.",
        {"action": "create", "name": "bsdguest", "size": "10G"},
        {"name": "bsdguest", "size": "10G"}),
    _ok("List VMs", "``listvms`` gives every guest's description, rcboot, running and VMM state.",
        {"action": "listvms"},
        {"bsdguest": {"description": ANY, "rcboot": "NO", "running": "NO", "vmm": "NO"}}),
    _ok("List ISOs", "``listisos`` gives the ISO names.",
        {"action": "listisos"}, list(STARTING_ISOS)),
    _ok("ISO library", "``isolibrary`` gives each ISO's size in bytes (and, on vm-bhyve, "
        "the ``datastore`` holding it; ``digest`` for an ISO a verified fetch stored).",
        {"action": "isolibrary"},
        {name: {"size": len(name), MORE: MORE} for name in STARTING_ISOS}),
    _ok("Fetch ISO", "``fetchiso`` queues a download and replies at once.",
        {"action": "fetchiso", "url": FETCH_URL},
        {"command": f"iohyve fetch {FETCH_URL}", "comment": "Task Queued", "queueid": ANY}),
    _ok("Fetch a FreeBSD release, verified", "``verify: \"auto\"`` reads the digest from "
        "FreeBSD's ``CHECKSUM.SHA512-<release>`` (or ``CHECKSUM.SHA256-<release>``) file "
        "beside the image. ``checksum`` gives the digest itself (``sha256:<hex>`` or "
        "``sha512:<hex>``) and ``checksum_url`` names a checksum file (BSD "
        "``SHA256 (name) = hex`` or GNU ``hex  name`` lines). A download that does not match "
        "is removed and its task fails naming both digests.",
        {"action": "fetchiso", "url": AUTO_URL, "verify": "auto"},
        {"command": f"iohyve fetch {AUTO_URL}", "comment": "Task Queued", "queueid": ANY}),
    _ok("ISO digests", "``isodigests`` gives the digest of each ISO a verified fetch stored "
        "(none yet here: the fetches above are still queued).",
        {"action": "isodigests"}, {}),
    _ok("Rename ISO", "``renameiso`` renames an ISO.",
        {"action": "renameiso", "source": "test.iso", "target": "102.iso"},
        {"source": "test.iso", "target": "102.iso"}),
    _ok("Install a guest", "``install`` boots a stopped guest from an ISO.",
        {"action": "install", "name": "bsdguest", "iso": "102.iso"},
        {"name": "bsdguest", "iso": "102.iso"}),
    _ok("Stop a guest at once", '``stop`` with ``"force": "true"`` kills it (iohyve forcekill).',
        {"action": "stop", "name": "bsdguest", "force": "true"}, {"name": "bsdguest"}),
    _ok("Start a guest", "``start`` starts a guest.",
        {"action": "start", "name": "bsdguest"}, {"name": "bsdguest"}),
    _ok("Stop a guest", "``stop`` asks the guest to shut down.",
        {"action": "stop", "name": "bsdguest"}, {"name": "bsdguest"}),
    _ok("Add a disk", "``adddisk`` adds a disk, on the guest's pool or on ``pool``.",
        {"action": "adddisk", "name": "bsdguest", "size": "20G"}, {"bsdguest": {"size": "20G"}}),
    _ok("List disks", "``listdisks`` gives a guest's disks and their sizes.",
        {"action": "listdisks", "name": "bsdguest"}, {"disk0": "10G", "disk1": "20G"}),
    _ok("Resize a disk", "``resizedisk`` resizes a disk of a stopped guest.",
        {"action": "resizedisk", "name": "bsdguest", "disk": "disk1", "size": "30G"},
        {"name": "bsdguest", "disk": "disk1", "size": "30G"}),
    _ok("Remove a disk", "``deletedisk`` removes a disk other than disk0 (iohyve 0.7.4 or newer).",
        {"action": "deletedisk", "name": "bsdguest", "disk": "disk1"},
        {"name": "bsdguest", "disk": "disk1"}, profiles=("0.7.9",)),
    _ok("Set properties", "``setprop`` sets every other argument as a property of the guest.",
        {"action": "setprop", "name": "bsdguest", "ram": "1G", "description": "build host"},
        {"bsdguest": {"ram": "1G", "description": "build host"}}),
    _ok("Get properties", "``getprops`` gives a guest's properties, values whole.",
        {"action": "getprops", "name": "bsdguest"},
        {"bsdguest": {"ram": "1G", "description": "build host", MORE: MORE}},
        profiles=("0.7.9",)),
    _ok("Remove ISO", "``rmiso`` removes an ISO.",
        {"action": "rmiso", "target": "FreeBSD-10.2-RELEASE-amd64-bootonly.iso"},
        {"target": "FreeBSD-10.2-RELEASE-amd64-bootonly.iso"}),
    Example("An unknown ISO", "A missing ISO, or guest, is a 404.",
            {"action": "rmiso", "target": "nope.iso"}, None,
            error=(404, "ISO 'nope.iso' does not exist")),
    Example("A name that is taken", "Creating a guest that exists is a 409.",
            {"action": "create", "name": "bsdguest", "size": "10G"}, None,
            error=(409, "guest 'bsdguest' already exists")),
    Example("A bad size", "Arguments are checked before iohyve runs: a 400 says what is wrong.",
            {"action": "create", "name": "web", "size": "ten"}, None,
            error=(400, "argument 'size' must be a size such as 10G: digits and one of "
                        "K, M, G, T")),
    _ok("Delete a guest", "``delete`` deletes a stopped guest and its disks; iohyve waits 10 s "
        "first, so the reply comes after that (iohyve 0.7.4 or newer).",
        {"action": "delete", "name": "bsdguest"}, {"name": "bsdguest"}, profiles=("0.7.9",)),
)  # fmt: skip


def matches(expected: Any, actual: Any) -> bool:
    """Whether a reply matches an example's expectation (``<any>``, ``…`` allowed)."""
    if expected == ANY:
        return True
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return False
        keys = set(expected) - {MORE}
        if MORE not in expected and keys != set(actual):
            return False
        return all(k in actual and matches(expected[k], actual[k]) for k in keys)
    if isinstance(expected, list):
        return (
            isinstance(actual, list)
            and len(expected) == len(actual)
            and all(matches(e, a) for e, a in zip(expected, actual, strict=True))
        )
    return bool(expected == actual)


def _block(value: Any) -> list[str]:
    text = json.dumps(value, indent=4, ensure_ascii=False)
    return [".. code-block:: json", "", *("    " + line for line in text.splitlines()), ""]


def render() -> str:
    """The page, in the format of the API page this project implements."""
    out = [
        ".. _iohyve:",
        "",
        "iohyve",
        "******",
        "",
        "The iohyve class manages virtual machines running in the bhyve hypervisor,",
        "through the iohyve tool. These examples run, in this order, on a host where",
        "iohyve is installed but not yet set up, holding the ISOs "
        + " and ".join(f"``{iso}``" for iso in STARTING_ISOS)
        + ". Every request needs a login (see security.md); replies to REST requests",
        'are the ``"args"`` of the WebSocket response. Examples marked with a release',
        "need that iohyve release or a newer one.",
        "",
    ]
    for example in EXAMPLES:
        title = example.title
        if example.profiles == ("0.7.9",):
            title += " (iohyve 0.7.4+)"
        out += [title, "=" * len(title), "", example.text, "", "**REST Request**", ""]
        out += [".. code-block:: json", "", "    PUT /sysadm/iohyve", ""]
        out += ["    " + line for line in json.dumps(example.args, indent=4).splitlines()] + [""]
        request = {"namespace": "sysadm", "name": "iohyve", "id": "fooid", "args": example.args}
        out += ["**WebSocket Request**", "", *_block(request)]
        if example.error is None:
            reply = {
                "args": {str(example.args["action"]): example.reply},
                "id": "fooid",
                "name": "response",
                "namespace": "sysadm",
            }
            out += ["**Response**", "", *_block(reply)]
        else:
            code, message = example.error
            reply = {
                "args": {"code": str(code), "message": message},
                "id": "fooid",
                "name": "error",
                "namespace": "error",
            }
            out += [f"**Error response** (REST: status {code})", "", *_block(reply)]
    return "\n".join(out)


def main() -> None:
    """Write the page to the file named on the command line."""
    Path(sys.argv[1]).write_text(render())


if __name__ == "__main__":
    main()
