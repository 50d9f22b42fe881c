"""Saved router profiles: ``sysadm router save NAME …`` keeps how to reach a fleet's router
(its URL, realm, user, and optionally a CA file and a key file), never a ticket, so that
``sysadm --profile NAME …`` (or ``$SYSADM_PROFILE``) needs none of those options again.

The profiles are one JSON document, ``routers.json``, in the client's configuration
directory beside the saved session, kept by the same store (mode 0600, changes under a lock,
atomic writes, damaged content refused and never overwritten).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from sysadmd.client.errors import ClientError
from sysadmd.shared import FileStore

__all__ = [
    "PROFILES_FILE",
    "ProfileError",
    "Profiles",
    "RouterProfile",
    "check_profile_name",
    "check_realm",
    "check_router_url",
]

PROFILES_FILE: Final = "routers.json"
_VERSION: Final = 1
_FILE_MODE: Final = 0o600
_DIR_MODE: Final = 0o700

#: A profile's name: letters, digits, '_', '-' and '.', starting with a letter or digit.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
#: A router's WebSocket URL (as the daemon's ``[fleet] router`` takes it).
_ROUTER: Final = re.compile(r"wss?://[A-Za-z0-9._-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~/-]*)?")
_REALM: Final = re.compile(r"[A-Za-z0-9_]+(\.[A-Za-z0-9_]+)*")
_USER: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}")


class ProfileError(ClientError):
    """A profile, or the file of profiles, is not what it must be."""


def check_profile_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ProfileError(
            f"{name!r} is not a profile name: 1 to 64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return name


def check_router_url(url: str) -> str:
    if not _ROUTER.fullmatch(url):
        raise ProfileError(
            f"{url!r} is not a router URL such as 'wss://router.example:8443/ws' "
            "(ws:// or wss://, a host name or IPv4 address, an optional port and path)"
        )
    port = url.split("://", 1)[1].split("/", 1)[0].partition(":")[2]
    if port and not 0 < int(port) < 65536:
        raise ProfileError(f"{url!r}: the port must be from 1 to 65535")
    return url


def check_realm(realm: str) -> str:
    if not _REALM.fullmatch(realm):
        raise ProfileError(f"{realm!r} is not a WAMP realm name such as 'sysadmd'")
    return realm


def _check_user(user: str) -> str:
    if not _USER.fullmatch(user):
        raise ProfileError(
            f"{user!r} is not a router user name: letters, digits, '_', '.', '@' or '-', "
            "starting with a letter or digit"
        )
    return user


@dataclass(frozen=True)
class RouterProfile:
    """How to reach a fleet's router. Never a ticket: that is asked for each time."""

    router: str
    realm: str
    router_user: str
    router_ca_file: Path | None = None
    router_key: Path | None = None

    def __post_init__(self) -> None:
        check_router_url(self.router)
        check_realm(self.realm)
        _check_user(self.router_user)
        for path in (self.router_ca_file, self.router_key):
            if path is not None and not path.is_absolute():
                raise ProfileError(f"{path}: a saved path must be absolute")

    def as_json(self) -> dict[str, Any]:
        return {
            "router": self.router,
            "realm": self.realm,
            "router_user": self.router_user,
            "router_ca_file": str(self.router_ca_file) if self.router_ca_file else None,
            "router_key": str(self.router_key) if self.router_key else None,
        }

    @classmethod
    def from_json(cls, data: Any) -> RouterProfile:
        if not isinstance(data, dict) or set(data) != {
            "router",
            "realm",
            "router_user",
            "router_ca_file",
            "router_key",
        }:
            raise ProfileError(
                "a profile must have exactly router, realm, router_user, router_ca_file and "
                "router_key"
            )
        for key, value in data.items():
            if not (isinstance(value, str) or (value is None and key.endswith(("file", "key")))):
                raise ProfileError(f"a profile's {key} must be a string")
        ca, key = data["router_ca_file"], data["router_key"]
        return cls(
            router=data["router"],
            realm=data["realm"],
            router_user=data["router_user"],
            router_ca_file=Path(ca) if ca else None,
            router_key=Path(key) if key else None,
        )


def _parse(path: Path) -> Any:
    def parse(raw: bytes) -> dict[str, RouterProfile]:
        try:
            data = json.loads(raw)
            if not isinstance(data, dict) or type(data.get("version")) is not int:
                raise ProfileError('the document must be {"version": 1, "profiles": {…}}')
            if data["version"] != _VERSION:
                raise ProfileError(f"version {data['version']} is not {_VERSION}")
            profiles = data.get("profiles")
            if not isinstance(profiles, dict):
                raise ProfileError('"profiles" must be an object')
            return {
                check_profile_name(str(name)): RouterProfile.from_json(value)
                for name, value in profiles.items()
            }
        except (ValueError, ProfileError) as e:
            raise ProfileError(f"{path} is damaged ({e}); fix or remove it") from None

    return parse


def _serialize(profiles: dict[str, RouterProfile]) -> bytes:
    document = {
        "version": _VERSION,
        "profiles": {name: profiles[name].as_json() for name in sorted(profiles)},
    }
    return json.dumps(document, indent=2).encode("utf-8") + b"\n"


class Profiles:
    """The saved router profiles of one configuration directory."""

    def __init__(self, config_dir: Path) -> None:
        self.path = config_dir / PROFILES_FILE
        self._store: FileStore[dict[str, RouterProfile]] = FileStore(
            self.path,
            parse=_parse(self.path),
            serialize=_serialize,
            empty=dict,
            invalid=ProfileError,
            mode=_FILE_MODE,
            directory_mode=_DIR_MODE,
        )

    def _failed(self, error: OSError) -> Exception:
        return ProfileError(f"{self.path}: cannot be written: {error.strerror or error}")

    def all(self) -> dict[str, RouterProfile]:
        """Every profile, by name."""
        try:
            return dict(self._store.read())
        except OSError as e:
            raise ProfileError(f"{self.path}: cannot be read: {e.strerror or e}") from None

    def get(self, name: str) -> RouterProfile:
        """The profile ``name``; :class:`ProfileError` naming the saved ones if there is none."""
        check_profile_name(name)
        profiles = self.all()
        if name not in profiles:
            known = ", ".join(sorted(profiles)) or "none"
            raise ProfileError(f"no router profile {name!r} (saved: {known})")
        return profiles[name]

    def save(self, name: str, profile: RouterProfile) -> None:
        """Keep ``profile`` as ``name``, replacing a profile of that name."""
        check_profile_name(name)
        try:
            with self._store.locked(self._failed):
                profiles = dict(self._store.read())
                profiles[name] = profile
                self._store.write(profiles)
        except OSError as e:
            raise self._failed(e) from None

    def forget(self, name: str) -> None:
        """Remove the profile ``name``; :class:`ProfileError` if there is none."""
        check_profile_name(name)
        try:
            with self._store.locked(self._failed):
                profiles = dict(self._store.read())
                if name not in profiles:
                    raise ProfileError(f"no router profile {name!r} to forget")
                del profiles[name]
                self._store.write(profiles)
        except OSError as e:
            raise self._failed(e) from None
