"""Names and URLs are checked at the edge, before any process is spawned."""

from __future__ import annotations

import ast
import base64
import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from sysadmd import config
from sysadmd.api import KEY, NAME, TEXT, URL, ApiError, ArgType
from sysadmd.api import _validate as validate
from sysadmd.api._validate import check_name, iso_name_from_url, name_problem
from sysadmd.catalog.reference import all_specs
from sysadmd.services._iohyve import BHYVE_FLAGS, DISK, GUEST, NIC, SIZE


@pytest.mark.parametrize(
    "name",
    ["a", "FreeBSD-10.2-RELEASE-amd64-bootonly.iso", "102.iso", "x_y-z.1", "A" * 128],
)
def test_valid_names(name: str) -> None:
    """Ordinary ISO and guest names pass."""
    assert name_problem(name) is None
    assert check_name(name, "target") == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        "-rf",
        ".hidden",
        "a..b",
        "a/b",
        "../../etc/passwd",
        "a b",
        "a\nb",
        "a\x00b",
        "a*",
        "a;rm",
        "$(x)",
        "é.iso",
        "A" * 129,
        "_a",
    ],
)
def test_invalid_names(name: str) -> None:
    """Anything iohyve's shell, zfs or mv could misread is refused with a 400."""
    with pytest.raises(ApiError) as raised:
        check_name(name, "argument 'target'")
    assert raised.value.code == 400
    assert raised.value.message.startswith("argument 'target' ")
    if len(name) > 2:
        assert name not in raised.value.message


@pytest.mark.parametrize(
    ("url", "name"),
    [
        (
            "ftp://ftp.freebsd.org/pub/FreeBSD/releases/amd64/amd64/ISO-IMAGES/10.1/"
            "FreeBSD-10.1-RELEASE-amd64-disc1.iso",
            "FreeBSD-10.1-RELEASE-amd64-disc1.iso",
        ),
        ("http://127.0.0.1:8080/a.iso", "a.iso"),
        ("HTTPS://mirror.example/x/y.img", "y.img"),
        ("http://[::1]:8080/a.iso", "a.iso"),
    ],
)
def test_fetch_urls(url: str, name: str) -> None:
    """The ISO name is the URL's last path segment."""
    assert iso_name_from_url(url) == name


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("gopher://host/a.iso", "must start with"),
        ("http://host/a.iso?x=1", "query"),
        ("http://host/a.iso#f", "fragment"),
        ("http://host/a.iso?", "query"),
        ("http://user:pw@host/a.iso", "user name"),
        ("http://host/", "valid ISO file name"),
        ("http://host/..", "valid ISO file name"),
        ("http://host/-rf", "valid ISO file name"),
        ("http://host/a%20b.iso", "percent-encode"),
        ("http://host/a b.iso", "whitespace"),
        ("http://host/a.iso\n", "whitespace"),
        ("http://host/$(reboot).iso", "in its path only"),
        ("http://host/*/a.iso", "in its path only"),
        ("http://host/[ab].iso", "in its path only"),
        ("http:///a.iso", "must name a host"),
        ("http://ho$t/a.iso", "must name a host"),
        ("http://host:0/a.iso", "must name a host"),
        ("http://host:99999/a.iso", "must name a host"),
        ("http://host/" + "a" * 2100, "at most 2048"),
        ("file:///etc/passwd", "not allowed on this server"),
        ("file://otherhost/srv/a.iso", "local file"),
    ],
)
def test_bad_fetch_urls(url: str, words: str) -> None:
    """Bad URLs are refused with a 400 that says why."""
    with pytest.raises(ApiError) as raised:
        iso_name_from_url(url, "argument 'url'")
    assert raised.value.code == 400
    assert words in raised.value.message


def test_file_urls_only_below_allowed_directories(tmp_path: Path) -> None:
    """file:// works for regular files below a configured root, and only there."""
    root = tmp_path / "isos"
    root.mkdir()
    (root / "ok.iso").write_bytes(b"iso")
    (root / "sub").mkdir()
    outside = tmp_path / "secret.iso"
    outside.write_bytes(b"secret")
    (root / "link.iso").symlink_to(outside)
    assert iso_name_from_url(f"file://{root}/ok.iso", file_roots=[root]) == "ok.iso"
    for url, words in [
        (f"file://{outside}", "below an allowed directory"),
        (f"file://{root}/link.iso", "below an allowed directory"),
        (f"file://{root}/missing.iso", "existing regular file"),
        (f"file://{root}/sub", "existing regular file"),
    ]:
        with pytest.raises(ApiError) as raised:
            iso_name_from_url(url, file_roots=[root])
        assert words in raised.value.message, url


# -- Full matching: a trailing newline is not part of a valid value -----------------------------


@pytest.mark.parametrize("name", ["newg1\n", "s0.iso\n", "web\r", "a.iso\n\n", "\nweb"])
def test_names_with_a_newline_at_either_end_are_refused(name: str) -> None:
    """Python's ``$`` matches before a final newline; names are matched in full."""
    assert name_problem(name) is not None
    with pytest.raises(ApiError) as raised:
        NAME.check(name, "argument 'name'")
    assert raised.value.code == 400


@pytest.mark.parametrize(
    ("arg_type", "value"),
    [(SIZE, "10G\n"), (DISK, "disk1\n"), (NIC, "em0\n"), (GUEST, "web\n")],
    ids=["size", "disk", "nic", "guest"],
)
def test_sizes_and_device_names_with_a_trailing_newline_are_refused(
    arg_type: ArgType, value: str
) -> None:
    """Sizes, disks, interfaces and guest names are matched in full too."""
    assert arg_type.check(value.rstrip(), "argument 'x'") == value.rstrip()
    with pytest.raises(ApiError) as raised:
        arg_type.check(value, "argument 'x'")
    assert raised.value.code == 400


@pytest.mark.parametrize("host", ["example.org\n", "[::1]\n", "10.0.0.1\n"])
def test_url_hosts_with_a_trailing_newline_are_refused(host: str) -> None:
    """The URL host rule matches the whole host."""
    assert validate._host_ok(host.rstrip("\n"), None)
    assert not validate._host_ok(host, None)


def test_url_paths_and_urls_with_a_trailing_newline_are_refused() -> None:
    """The URL path rule and the URL argument match in full."""
    assert validate._URL_PATH.fullmatch("/pub/a.iso")
    assert not validate._URL_PATH.fullmatch("/pub/a.iso\n")
    with pytest.raises(ApiError) as raised:
        URL.check("http://host/a.iso\n", "argument 'url'")
    assert raised.value.code == 400
    assert raised.value.message.startswith("argument 'url' ")


@pytest.mark.parametrize("hostname", ["vmhost.example.org\n", "vmhost\r", "a b", "-x\n"])
def test_configured_host_names_are_matched_in_full(tmp_path: Path, hostname: str) -> None:
    """``daemon.hostname`` goes into the certificate: a name or address, nothing more."""
    assert config.load(None, {"daemon.hostname": "vmhost.example.org"}).hostname
    with pytest.raises(config.ConfigError, match=r"daemon\.hostname"):
        config.load(None, {"daemon.hostname": hostname})


@pytest.mark.parametrize("text", ["a\tb", "line\n", "\r", "x\x85", "\x9f", "del\x7f"])
def test_text_refuses_control_characters(text: str) -> None:
    """Free text (passwords, tokens, nicknames) holds no control character."""
    assert TEXT.check("an ordinary text", "argument 't'") == "an ordinary text"
    with pytest.raises(ApiError) as raised:
        TEXT.check(text, "argument 't'")
    assert "control characters" in raised.value.message


def _pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo).decode()


def test_keys_allow_newlines_only_as_pem_line_ends() -> None:
    """A key is PEM text (lines ended by newlines) or its base64 on one line: a newline
    or another control character anywhere else is refused."""
    pem = _pem()
    one_line = base64.b64encode(pem.encode()).decode()
    for good in (pem, pem.rstrip("\n"), one_line):
        assert KEY.check(good, "argument 'pub_key'") == good
    bad = [
        pem + "\n",
        "\n" + pem,
        pem.replace("\n", "\r\n"),
        one_line + "\n",
        one_line[:10] + "\n" + one_line[10:],
        pem.replace("-----\n", "-----\n\n", 1),
        pem.replace("KEY-----", "KEY-----\t", 1),
    ]
    for text in bad:
        with pytest.raises(ApiError):
            KEY.check(text, "argument 'pub_key'")


def test_the_package_applies_no_anchored_pattern_partially() -> None:
    """No ``re.match``/``.match(`` anywhere in the package, and no ``$`` in a pattern
    given to ``re`` (``fullmatch`` needs none): a ``$`` applied with ``match`` or
    ``search`` accepts a value followed by a newline."""
    package = Path(validate.__file__).parent
    problems: list[str] = []
    for path in sorted(package.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        compiled: dict[str, str] = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                where = f"{path.relative_to(package.parent)}:{node.lineno}"
                method = node.func.attr
                owner = node.func.value
                if method == "match":
                    problems.append(f"{where}: .match() (use fullmatch)")
                is_re = isinstance(owner, ast.Name) and owner.id == "re"
                if is_re and node.args and method != "escape":
                    pattern = _literal(node.args[0])
                    if pattern is not None and _anchored(pattern):
                        problems.append(f"{where}: re.{method} with a '$' anchor")
                if (
                    method == "search"
                    and isinstance(owner, ast.Name)
                    and _anchored(compiled.get(owner.id, ""))
                ):
                    problems.append(f"{where}: {owner.id}.search with a '$' anchor")
            if isinstance(node, ast.Assign | ast.AnnAssign):
                target = node.targets[0] if isinstance(node, ast.Assign) else node.target
                value = node.value
                if (
                    isinstance(target, ast.Name)
                    and isinstance(value, ast.Call)
                    and isinstance(value.func, ast.Attribute)
                    and value.func.attr == "compile"
                    and value.args
                ):
                    compiled[target.id] = _literal(value.args[0]) or ""
    assert problems == []


def _literal(node: ast.expr) -> str | None:
    """The text of a string constant (or a concatenation or f-string of them)."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return node.value
    if isinstance(node, ast.JoinedStr):
        return "".join(_literal(part) or "" for part in node.values if isinstance(part, ast.expr))
    if isinstance(node, ast.BinOp):
        return (_literal(node.left) or "") + (_literal(node.right) or "")
    return None


def _anchored(pattern: str) -> bool:
    """Whether ``pattern`` holds a ``$`` that is an anchor (not escaped, not in a class)."""
    in_class = escaped = False
    for char in pattern:
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "$" and not in_class:
            return True
    return False


def test_the_scan_finds_what_it_looks_for() -> None:
    """The scan's pattern reader tells anchors from literal dollars."""
    assert _anchored("^a$") and _anchored("a$|b")
    assert not _anchored(r"a\$") and not _anchored("[$]") and not _anchored("[^$x]*")


# -- Guest properties: allow-lists, and one declaration for the check and the schema -----------

SETPROP = next(s for s in all_specs() if s.title == "sysadm/iohyve setprop")


def _setprop(**props: str) -> ApiError:
    with pytest.raises(ApiError) as raised:
        SETPROP.parse_args({"action": "setprop", "name": "web", **props})
    assert raised.value.code == 400
    return raised.value


@pytest.mark.parametrize(
    ("prop", "value", "words"),
    [
        ("loader", "/bin/sh", "property 'loader' must be one of: bhyveload, grub-bhyve, uefi"),
        ("loader", "bhyveload\n", "property 'loader' must be one of"),
        ("bhyve_path", "/usr/home/someone/evil", "must be one of: /usr/sbin/bhyve"),
        ("bhyve_path", "/usr/sbin/bhyve/../../tmp/x", "must be one of: /usr/sbin/bhyve"),
        ("bargs", "-A;reboot", "property 'bargs' must be bhyve flags"),
        ("bargs", "-A -s 5,ahci-hd,/etc/master.passwd", "each one of: -A, -H, -P"),
        ("bargs", "-l bootrom,/tmp/rom", "property 'bargs'"),
        ("bargs", "-A  -H", "property 'bargs'"),
        ("bargs", "-A -H\n", "property 'bargs'"),
        ("os", "$(reboot)", "property 'os' must be one of: default"),
        ("cpu", "2 4", "property 'cpu'"),
        ("ram", "1G; reboot", "property 'ram'"),
        ("tap", "tap0 em0", "property 'tap'"),
        ("con", "/dev/ttyu0", "property 'con'"),
        ("fw", "../../etc/passwd", "property 'fw'"),
        ("vnc_ip", "0.0.0.0 -s 9", "property 'vnc_ip'"),
        ("description", "a `reboot`", "property 'description'"),
        ("description", "tab\there", "property 'description'"),
        ("description", "   ", "property 'description'"),
        ("mac_tap0", "58:9c:fc:00:00:01;x", "property 'mac_tap0'"),
    ],
)
def test_property_values_outside_their_allow_list_are_refused(
    prop: str, value: str, words: str
) -> None:
    """Properties that name programs or carry arguments take only known values, and
    the 400 names the property and what it may be."""
    assert words in _setprop(**{prop: value}).message


@pytest.mark.parametrize("prop", ["pcidev:1", "autogrub", "install", "size", "name_", "mac"])
def test_properties_that_cannot_be_set_are_refused(prop: str) -> None:
    """pcidev (bhyve devices naming host files), autogrub (grub commands) and the
    properties other actions manage are not settable; the 400 lists the settable ones."""
    message = _setprop(**{prop: "x"}).message
    assert f"'{prop}' is not a settable property" in message
    assert "bargs" in message and "mac_tap<N>" in message


@pytest.mark.parametrize(
    "props",
    [
        {"loader": "grub-bhyve"},
        {"loader": "uefi", "fw": "BHYVE_UEFI_20160526.fd"},
        {"bhyve_path": "/usr/sbin/bhyve"},
        {"bargs": "-A -H -P"},
        {"bargs": "-A_-H_-P_-S_-w"},
        {"os": "debian", "ram": "2G", "cpu": "2", "tap": "tap0,tap1", "con": "nmdm3"},
        {"description": "my web server", "boot": "1", "persist": "0"},
        {"vnc": "YES", "vnc_ip": "127.0.0.1", "vnc_port": "5901", "mac_tap1": "58:9c:fc:0a:0b:0c"},
    ],
)
def test_known_property_values_are_accepted(props: dict[str, str]) -> None:
    """The values iohyve itself writes and documents pass."""
    assert SETPROP.parse_args({"action": "setprop", "name": "web", **props})["extra"] == props


def _declared_types() -> list[tuple[str, ArgType]]:
    """Every argument type the registry declares, with the extra names' value types."""
    found: dict[str, ArgType] = {}
    for spec in all_specs():
        for arg in spec.args:
            found.setdefault(f"{spec.title}:{arg.name}", arg.type)
        if spec.extra is not None:
            for key, value_type in spec.extra.names.items():
                found[f"{spec.title}:{key}="] = value_type
            for named in spec.extra.patterns:
                found[f"{spec.title}:{named.shown}="] = named.type
    return sorted(found.items())


DECLARED = _declared_types()


def _accepted(arg_type: ArgType, value: object) -> bool:
    try:
        arg_type.check(value, "x")
    except ApiError:
        return False
    return True


def _ecma_pattern(validator: object, pattern: str, instance: object, schema: object) -> Any:
    """JSON Schema's ``pattern`` as ECMA-262 reads it: ``$`` is the end of the string
    (Python's ``$`` also matches before a final newline)."""
    if isinstance(instance, str):
        python = pattern[:-1] + r"\Z" if pattern.endswith("$") else pattern
        if not re.search(python, instance):
            yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator, {"pattern": _ecma_pattern}
)


def _schema_accepts(schema: dict[str, object], value: object) -> bool:
    return bool(_Validator(schema).is_valid(value))


def _candidates(schema: object) -> st.SearchStrategy[str]:
    """Strings the schema's own patterns and enums describe, and arbitrary text."""
    patterns: list[str] = []
    enums: list[str] = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("pattern"), str):
                patterns.append(node["pattern"])
            enums.extend(v for v in node.get("enum", []) if isinstance(v, str))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema)
    options = [st.text(max_size=40), st.text(alphabet=st.characters(max_codepoint=0x7F))]
    options += [st.from_regex(p) for p in patterns]
    if enums:
        options.append(st.sampled_from(enums))
    return st.one_of(options)


@settings(max_examples=40, deadline=None, derandomize=True, database=None)
@given(data=st.data())
def test_schema_and_check_agree(data: st.DataObject) -> None:
    """Each declared type's JSON Schema accepts a string exactly when its check does
    (every type is drawn for in every example)."""
    for where, arg_type in DECLARED:
        value = data.draw(_candidates(arg_type.schema), label=where)
        schema_says = _schema_accepts(dict(arg_type.schema), value)
        assert schema_says == _accepted(arg_type, value), (where, value)


def test_the_schema_patterns_are_anchored_at_both_ends() -> None:
    """Every declared pattern is ``^(?:...)$``: a whole-string match in ECMA-262."""
    for where, arg_type in DECLARED:
        text = json.dumps(arg_type.schema)
        for pattern in re.findall(r'"pattern": "((?:[^"\\]|\\.)*)"', text):
            assert pattern.startswith("^(?:") and pattern.endswith(")$"), (where, pattern)


def test_the_api_reference_lists_every_property_and_allowed_value() -> None:
    """docs/api.md's property table names every settable property, every value of the
    ones with a list, and every allowed bhyve flag."""
    docs = Path(__file__).parents[2] / "docs" / "api.md"
    text = docs.read_text().split("## Guest properties", 1)[1].split("\n## ", 1)[0]
    assert SETPROP.extra is not None
    for name, value_type in SETPROP.extra.names.items():
        assert f"`{name}`" in text, name
        values = value_type.schema.get("enum", [])
        missing = [v for v in values if f"`{v}`" not in text and not v.startswith("openbsd")]
        assert missing == [], name
    for named in SETPROP.extra.patterns:
        assert f"`{named.shown}`" in text
    for flag in BHYVE_FLAGS:
        assert f"`{flag}`" in text
