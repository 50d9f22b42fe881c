"""The daemon's own TLS key and self-signed certificate, and the listener strings that use them.

``ensure_certificate`` keeps ``key.pem`` and ``cert.pem`` in a state directory: it makes them on
first use, reuses them byte for byte afterwards (so that clients can pin the fingerprint), and
makes a new pair (both files) only when one of them is missing, when the certificate has
expired, expires within :data:`RENEW_BEFORE` or is not valid yet, or when the two no longer
belong together. Files that exist but are unreadable or damaged are never overwritten: the
daemon refuses to start with a :class:`TLSError` instead, so that an operator's key is not
lost.

``with_default_certificate`` points ``ssl:`` listener strings that carry no key of their own at
those files, and ``split_tls_endpoint`` turns such a string into a plain TCP endpoint and the
server's TLS options: TLS 1.2 or newer, and in TLS 1.2 only the forward-secret AEAD suites of
:data:`TLS12_CIPHERS`. An ``extraCertChain`` file is read with
:func:`cryptography.x509.load_pem_x509_certificates`: every certificate in it is sent, and a
file without one is an error.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL.crypto import X509
from twisted.internet.ssl import (
    AcceptableCiphers,
    CertificateOptions,
    PrivateCertificate,
    TLSVersion,
)

from sysadmd.shared import make_directory, write_atomically

__all__ = [
    "CERT_FILE",
    "KEY_FILE",
    "RENEW_BEFORE",
    "TLS12_CIPHERS",
    "VALIDITY",
    "TLSError",
    "TLSFiles",
    "certificate_fingerprint",
    "ensure_certificate",
    "needs_default_certificate",
    "with_default_certificate",
]

KEY_FILE = "key.pem"
"""Name of the private key file inside the certificate directory."""

CERT_FILE = "cert.pem"
"""Name of the certificate file inside the certificate directory."""

VALIDITY = timedelta(days=3650)
"""How long a newly generated certificate is valid."""

RENEW_BEFORE = timedelta(days=7)
"""A certificate that expires sooner than this is replaced."""

_BACKDATE = timedelta(hours=1)
"""How far before "now" a new certificate's validity starts, to tolerate clock skew."""

_RSA_BITS = 2048  # Old Qt clients (the sysadm GUI) must accept the key; 2048 is universal.
_MAX_COMMON_NAME = 64  # ub-common-name in RFC 5280.

TLS12_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
    )
)
"""The only suites TLS 1.2 may negotiate, in the daemon's order of preference.

Each has an ephemeral (EC)DH key exchange, so a recorded session stays secret if the key
leaks later, and an AEAD cipher, so no CBC or SHA-1 MAC. This is Mozilla's "intermediate"
profile without its DHE suites, which need DH parameters the daemon does not configure.
TLS 1.3 has its own list (all AEAD, all forward secret), which OpenSSL keeps as it is.
"""

_DIR_MODE = 0o700
_KEY_MODE = 0o600
_CERT_MODE = 0o644


class TLSError(Exception):
    """The daemon's key or certificate cannot be used; the message is one line naming the file."""


@dataclass(frozen=True)
class TLSFiles:
    """The key and certificate that ``ensure_certificate`` found or made.

    ``fingerprint`` is the SHA-256 digest of the DER certificate in the format of
    ``openssl x509 -fingerprint -sha256`` (upper-case hex pairs joined by ``:``). ``created`` tells
    whether a new pair was written by this call and ``reason`` why (``None`` when reused).
    ``not_after`` is the certificate's expiry, timezone-aware in UTC.
    """

    key_path: Path
    cert_path: Path
    fingerprint: str
    created: bool
    reason: str | None
    not_after: datetime


# --------------------------------------------------------------------------------------------
# Fingerprints


def _der_fingerprint(der: bytes) -> str:
    digest = hashlib.sha256(der).hexdigest().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def certificate_fingerprint(pem: bytes) -> str:
    """Return the SHA-256 fingerprint of the (first) PEM certificate in ``pem``.

    The format is the one ``openssl x509 -fingerprint -sha256`` prints, e.g. ``"AB:01:..."``,
    suitable for pinning by clients. Raises ``ValueError`` if ``pem`` holds no certificate.
    """
    cert = x509.load_pem_x509_certificate(pem)
    return _der_fingerprint(cert.public_bytes(serialization.Encoding.DER))


# --------------------------------------------------------------------------------------------
# Key and certificate files


def ensure_certificate(directory: Path, hostname: str, *, now: datetime | None = None) -> TLSFiles:
    """Return the daemon's key and self-signed certificate in ``directory``, making them if needed.

    ``directory`` is created with mode 0700 if it does not exist. An existing pair is reused as
    it is. A new RSA key and certificate for ``hostname`` (also valid for ``localhost``,
    ``127.0.0.1`` and ``::1``) are written when either file is missing, when the certificate
    has expired, expires within :data:`RENEW_BEFORE` or is not valid yet, or when it does not
    belong to the key. ``now`` (default: the current time; a naive value is taken as UTC) is
    the moment those checks are made for.

    Raises :class:`TLSError` if a file exists but cannot be read or parsed, or if the directory
    or the files cannot be written; such files are left untouched. Raises ``ValueError`` when
    a new pair is needed and ``hostname`` is empty.
    """
    moment = _utc(now if now is not None else datetime.now(UTC))
    _make_directory(directory)
    key_path = directory / KEY_FILE
    cert_path = directory / CERT_FILE

    key = _load_key(key_path)
    cert = _load_certificate(cert_path)

    reason: str | None
    if key is None or cert is None:
        missing = [str(p) for p, v in ((key_path, key), (cert_path, cert)) if v is None]
        reason = " and ".join(missing) + (
            " do not exist" if len(missing) > 1 else " does not exist"
        )
    else:
        reason = _replacement_reason(key, cert, cert_path, moment)
        if reason is None:
            return _files(key_path, cert_path, cert, None, created=False)

    new_key, new_cert = _generate(hostname, moment)
    key_pem = new_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # The key goes first: a crash in between leaves a pair that does not match, which the
    # next start replaces again.
    _write_atomically(key_path, key_pem, _KEY_MODE)
    _write_atomically(cert_path, new_cert.public_bytes(serialization.Encoding.PEM), _CERT_MODE)
    return _files(key_path, cert_path, new_cert, reason, created=True)


def _files(
    key_path: Path, cert_path: Path, cert: x509.Certificate, reason: str | None, *, created: bool
) -> TLSFiles:
    return TLSFiles(
        key_path=key_path,
        cert_path=cert_path,
        fingerprint=_der_fingerprint(cert.public_bytes(serialization.Encoding.DER)),
        created=created,
        reason=reason,
        not_after=cert.not_valid_after_utc,
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def _one_line(error: OSError) -> str:
    return error.strerror or str(error).replace("\n", " ")


def _make_directory(directory: Path) -> None:
    """Create ``directory`` (and missing parents) mode 0700 with the file helpers' rule."""
    try:
        make_directory(directory, _DIR_MODE)
    except OSError as e:
        raise TLSError(f"{directory}: cannot create directory: {_one_line(e)}") from e
    if not directory.is_dir():
        raise TLSError(f"{directory}: exists but is not a directory")


def _read(path: Path, what: str) -> bytes | None:
    """Return the content of ``path``, or ``None`` if there is no such file."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        if path.is_symlink():
            raise TLSError(f"{path}: cannot read {what}: dangling symbolic link") from None
        return None
    except OSError as e:
        raise TLSError(f"{path}: cannot read {what}: {_one_line(e)}") from e


def _load_key(path: Path) -> PrivateKeyTypes | None:
    data = _read(path, "private key")
    if data is None:
        return None
    try:
        return serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise TLSError(
            f"{path}: the private key is encrypted; sysadmd needs an unencrypted key"
        ) from None
    except UnsupportedAlgorithm:
        raise TLSError(f"{path}: unsupported private key type") from None
    except ValueError:
        raise TLSError(f"{path}: not a PEM-encoded private key") from None


def _load_certificate(path: Path) -> x509.Certificate | None:
    data = _read(path, "certificate")
    if data is None:
        return None
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise TLSError(f"{path}: not a PEM-encoded X.509 certificate") from None


def _public_der(key: PrivateKeyTypes | x509.Certificate) -> bytes | None:
    try:
        public = key.public_key()
        return public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    except (UnsupportedAlgorithm, ValueError):
        return None


def _replacement_reason(
    key: PrivateKeyTypes, cert: x509.Certificate, cert_path: Path, now: datetime
) -> str | None:
    """Say why an existing, readable pair must be replaced, or return ``None`` to keep it."""
    key_der = _public_der(key)
    if key_der is None or key_der != _public_der(cert):
        return f"{cert_path} does not match the private key"
    not_after = cert.not_valid_after_utc
    if not_after <= now:
        return f"{cert_path} expired on {not_after:%Y-%m-%d %H:%M:%S} UTC"
    if not_after - now < RENEW_BEFORE:
        return (
            f"{cert_path} expires on {not_after:%Y-%m-%d %H:%M:%S} UTC, "
            f"within {RENEW_BEFORE.days} days"
        )
    not_before = cert.not_valid_before_utc
    if not_before > now:
        return f"{cert_path} is not valid until {not_before:%Y-%m-%d %H:%M:%S} UTC"
    return None


def _generate(hostname: str, now: datetime) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    name = hostname.strip().rstrip(".")
    if not name:
        raise ValueError("the certificate needs a non-empty host name")
    ip: ipaddress.IPv4Address | ipaddress.IPv6Address | None
    try:
        ip = ipaddress.ip_address(name)
    except ValueError:
        ip = None
        # DNS names in certificates are A-labels (RFC 5280 7.2).
        name = name.encode("idna").decode("ascii").lower()

    loopback: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = [
        ipaddress.IPv4Address("127.0.0.1"),
        ipaddress.IPv6Address("::1"),
    ]
    sans: list[x509.GeneralName] = []
    if ip is None:
        if name != "localhost":
            sans.append(x509.DNSName(name))
    elif ip not in loopback:
        sans.append(x509.IPAddress(ip))
    sans.append(x509.DNSName("localhost"))
    sans.extend(x509.IPAddress(a) for a in loopback)

    subject_attributes = []
    if len(name) <= _MAX_COMMON_NAME:
        subject_attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, name))
    subject_attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sysadmd"))
    subject = x509.Name(subject_attributes)

    key = rsa.generate_private_key(public_exponent=65537, key_size=_RSA_BITS)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    try:
        write_atomically(path, data, mode)
    except OSError as e:
        raise TLSError(f"{path}: cannot write: {_one_line(e)}") from e


# --------------------------------------------------------------------------------------------
# Endpoint description strings


@dataclass(frozen=True)
class _Description:
    """A Twisted endpoint description split the way ``twisted.internet.endpoints`` does."""

    kind: str
    positional: tuple[str, ...]
    keywords: Mapping[str, str]


def _parse_description(description: str) -> _Description:
    """Split ``description`` on unescaped colons into its type, positional and keyword parts.

    This mirrors Twisted's tokenizer: a backslash takes the next character literally, a segment
    is ``key=value`` if it has an unescaped ``=`` (only the first one counts), and the type is
    the first segment.
    """
    segments: list[tuple[str, str | None]] = []
    current = ""
    key: str | None = None
    characters = iter(description)
    for character in characters:
        if character == "\\":
            escaped = next(characters, None)
            if escaped is None:
                raise ValueError(
                    f"endpoint description ends with a lone backslash: {description!r}"
                )
            current += escaped
        elif character == ":":
            segments.append((current, None) if key is None else (key, current))
            current, key = "", None
        elif character == "=" and key is None:
            key, current = current, ""
        else:
            current += character
    segments.append((current, None) if key is None else (key, current))

    kind_segment, *parameters = segments
    kind = kind_segment[0] if kind_segment[1] is None else ""
    positional = tuple(k for k, v in parameters if v is None)
    keywords = {k: v for k, v in parameters if v is not None}
    return _Description(kind=kind, positional=positional, keywords=keywords)


def _needs_default(description: str) -> bool:
    parsed = _parse_description(description)
    if parsed.kind != "ssl":
        return False
    # Twisted's ssl parser takes (port, privateKey, certKey, ...) positionally as well.
    has_key = "privateKey" in parsed.keywords or len(parsed.positional) >= 2
    has_cert = "certKey" in parsed.keywords or len(parsed.positional) >= 3
    if has_cert and not has_key:
        raise ValueError(
            f"endpoint {description!r} sets certKey= without privateKey=: "
            "give both, or neither to use the daemon's own certificate"
        )
    return not has_key


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace(":", "\\:")


def needs_default_certificate(descriptions: Sequence[str]) -> bool:
    """Tell whether any of these server endpoint strings is ``ssl:`` without a key of its own.

    The daemon calls this to decide whether to run :func:`ensure_certificate` at all. Raises
    ``ValueError`` for an ``ssl:`` description that names a certificate but no key.
    """
    results = [_needs_default(d) for d in descriptions]  # check every one, not just up to True
    return any(results)


def with_default_certificate(description: str, files: TLSFiles) -> str:
    """Point an ``ssl:`` server endpoint string without a key at the daemon's own key and cert.

    ``"ssl:12150"`` becomes ``"ssl:12150:privateKey=<key>:certKey=<cert>"`` with ``\\`` and
    ``:`` in the paths escaped by a backslash as Twisted's endpoint syntax requires. Other
    descriptions (``tcp:``, ``unix:``, ``ssl:`` with a ``privateKey`` of its own given by name
    or position) are returned unchanged. Raises ``ValueError`` for an ``ssl:`` description
    that names a certificate but no key, or that ends in a lone backslash.
    """
    if not _needs_default(description):
        return description
    return (
        f"{description}:privateKey={_escape(str(files.key_path))}"
        f":certKey={_escape(str(files.cert_path))}"
    )


# TLS applied by the daemon itself

#: Parameters of an ``ssl:`` endpoint that carry over to the TCP endpoint under it.
_TCP_PARAMETERS = ("port", "interface", "backlog")


def split_tls_endpoint(description: str) -> tuple[str, CertificateOptions] | None:
    """Turn an ``ssl:`` server endpoint into a ``tcp:`` one and the TLS options for it.

    The daemon applies TLS itself, on top of its connection limits, rather than
    letting the ``ssl:`` endpoint do it. ``privateKey``, ``certKey`` (default: the
    key file) and ``extraCertChain`` are read here; ``port``, ``interface`` and
    ``backlog`` go to the TCP endpoint. Other descriptions give None. Raises
    ``TLSError`` for files that cannot be read and ``ValueError`` for parameters
    the daemon does not accept (``sslmethod``, ``dhParameters``: the TLS versions
    and key exchanges are the daemon's choice, TLS 1.2 or newer, and in TLS 1.2 only
    the suites of :data:`TLS12_CIPHERS`).
    """
    parsed = _parse_description(description)
    if parsed.kind != "ssl":
        return None
    keywords = dict(parsed.keywords)
    for name, value in zip(("port", "privateKey", "certKey"), parsed.positional, strict=False):
        keywords.setdefault(name, value)
    unknown = sorted(set(keywords) - {*_TCP_PARAMETERS, "privateKey", "certKey", "extraCertChain"})
    if unknown:
        raise ValueError(f"{description!r}: the daemon does not accept {', '.join(unknown)}")
    if "port" not in keywords or "privateKey" not in keywords:
        raise ValueError(f"{description!r} needs a port and a privateKey")
    key_path = Path(keywords["privateKey"])
    cert_path = Path(keywords.get("certKey", keywords["privateKey"]))
    pem = _require(key_path, "private key") + b"\n" + _require(cert_path, "certificate")
    chain_pem = b""
    if "extraCertChain" in keywords:
        chain_pem = _require(Path(keywords["extraCertChain"]), "certificate chain")
    try:
        private = PrivateCertificate.loadPEM(pem)
    except Exception as e:
        raise TLSError(f"{key_path} or {cert_path}: cannot be loaded: {e}") from None
    chain: list[X509] = []
    if "extraCertChain" in keywords:
        try:
            chain = [X509.from_cryptography(c) for c in x509.load_pem_x509_certificates(chain_pem)]
        except ValueError:
            raise TLSError(f"{keywords['extraCertChain']}: not a PEM certificate chain") from None
    options = CertificateOptions(
        privateKey=private.privateKey.original,
        certificate=private.original,
        extraCertChain=chain or None,
        raiseMinimumTo=TLSVersion.TLSv1_2,
        acceptableCiphers=AcceptableCiphers.fromOpenSSLCipherString(TLS12_CIPHERS),
    )
    tcp = ":".join(
        [
            "tcp",
            *(f"{name}={_escape(keywords[name])}" for name in _TCP_PARAMETERS if name in keywords),
        ]
    )
    return tcp, options


def _require(path: Path, what: str) -> bytes:
    data = _read(path, what)
    if data is None:
        raise TLSError(f"{path}: cannot read {what}: no such file")
    return data
