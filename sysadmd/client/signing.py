"""The client side of sysadm's public-key login (``rpc/auth_ssl``, stage 2).

The daemon checks these signatures in ``sysadmd.auth._keys``; the client signs here, so that it
imports nothing from the daemon.
"""

from __future__ import annotations

import base64
from typing import Final

from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["sign_challenge"]

_PKCS1_OVERHEAD: Final = 11  # 0x00 0x01, at least 8 x 0xFF, 0x00


def sign_challenge(private_key: rsa.RSAPrivateKey, test_string: str) -> str:
    """What sysadm's client sends in stage 2: ``test_string`` "encrypted" with the private key.

    This is OpenSSL's ``RSA_private_encrypt`` with ``RSA_PKCS1_PADDING``: the UTF-8 bytes of
    ``test_string`` padded as ``00 01 FF…FF 00 || data`` (at least 8 ``FF`` bytes) to the
    modulus length, raised to the private exponent, and base64-encoded. ``cryptography``
    cannot make such a signature without a digest, so the arithmetic is done here.

    It is plain ``pow(m, d, n)``: **not constant-time**, meant for the tests and the bundled
    client, which sign a public test string with their own key; the server never calls it
    (it lives in the client, which imports nothing from the daemon).
    Raises ``ValueError`` if the string is too long for the key (more than its size in bytes
    minus 11).
    """
    if not isinstance(private_key, rsa.RSAPrivateKey):
        raise TypeError("sign_challenge needs an RSA private key")
    numbers = private_key.private_numbers()
    modulus = numbers.public_numbers.n
    size = (modulus.bit_length() + 7) // 8
    data = test_string.encode("utf-8")
    if len(data) > size - _PKCS1_OVERHEAD:
        raise ValueError(
            f"the test string has {len(data)} bytes; a {private_key.key_size}-bit key "
            f"signs at most {size - _PKCS1_OVERHEAD}"
        )
    block = b"\x00\x01" + b"\xff" * (size - 3 - len(data)) + b"\x00" + data
    signature = pow(int.from_bytes(block, "big"), numbers.d, modulus)
    return base64.b64encode(signature.to_bytes(size, "big")).decode("ascii")
