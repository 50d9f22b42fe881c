"""The ``sysadmd`` twistd plugin.

Import-light on purpose: twistd imports every plugin module to list them, so the
application (Klein, Autobahn, ...) is imported only inside ``makeService``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from twisted.application.service import IService, IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    """``twistd sysadmd`` flags; each one overrides the same key of the config file."""

    synopsis = (
        "[--config FILE] [--listen ENDPOINT]... [--state-dir DIR] [--backend NAME] "
        "[--iohyve PATH | --simulate]"
    )
    longdesc = (
        "Serve the sysadm iohyve API over WebSocket (at /) and REST (at /<namespace>/<name>) on "
        "every --listen endpoint. Default endpoints: ssl:12150 and ssl:12151, on every "
        "address; an ssl: endpoint without privateKey= uses a "
        "self-signed certificate kept in the state directory. Flags win over the config file."
    )
    optParameters = [
        ["config", "c", None, "Read settings from this TOML file (see conf/sysadmd.toml)."],
        ["state-dir", "d", None, "Directory for everything the daemon writes [/var/db/sysadmd]."],
        ["iohyve", None, None, "The iohyve executable [/usr/local/sbin/iohyve]."],
        [
            "backend",
            "b",
            None,
            "The VM manager: auto, iohyve or vm-bhyve [auto]; with --simulate, the one simulated.",
        ],
    ]
    optFlags = [
        ["simulate", "s", "Drive the bundled simulator instead of the VM manager."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []

    def opt_listen(self, description: str) -> None:
        """A Twisted server endpoint to listen on, e.g. ssl:12150 or tcp:8080; repeatable."""
        self["listen"].append(description)

    opt_l = opt_listen

    def postOptions(self) -> None:
        if self["iohyve"] is not None and self["simulate"]:
            raise usage.UsageError("--iohyve and --simulate exclude each other")

    def overrides(self) -> dict[str, Any]:
        """The flags given, as dotted configuration keys."""
        values: dict[str, Any] = {}
        if self["listen"]:
            values["daemon.listen"] = list(self["listen"])
        if self["state-dir"] is not None:
            values["daemon.state_dir"] = self["state-dir"]
        if self["iohyve"] is not None:
            values["iohyve.path"] = self["iohyve"]
            values["iohyve.simulate"] = False
        if self["simulate"]:
            values["iohyve.simulate"] = True
        if self["backend"] is not None:
            values["host.backend"] = self["backend"]
        return values


@implementer(IServiceMaker, IPlugin)
class SysadmdServiceMaker:
    """Makes the sysadmd service for ``twistd sysadmd``."""

    tapname = "sysadmd"
    description = "Serve the sysadm iohyve API (bhyve virtual machines) over REST and WebSocket."
    options = Options

    def makeService(self, options: Options) -> IService:
        """Load the configuration and build the daemon; a bad setting exits with one line."""
        from twisted.internet import reactor

        from sysadmd import app, config

        config_file = Path(options["config"]) if options["config"] else None
        try:
            settings = config.load(config_file, options.overrides())
            return app.make_service(settings, reactor)
        except config.ConfigError as e:
            sys.stderr.write(f"sysadmd: {e}\n")
            raise SystemExit(1) from None


serviceMaker = SysadmdServiceMaker()
