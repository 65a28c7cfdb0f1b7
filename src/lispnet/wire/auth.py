"""Authentication data of Map-Register, Map-Notify, Map-Notify-Ack and Info messages
(RFC 9301 section 5.6; draft-ermagan-lisp-nat-traversal for Info and the MS-RTR data).

The HMAC covers the whole LISP message, from the Type byte to the last byte (xTR-ID and
site-ID included), with the Authentication Data field filled with zeros of its full
length.  The algorithm names say "-96" and "-128", but both open implementations send
the whole digest (20 bytes for SHA-1, 32 for SHA-256), so a receiver compares the first
Auth-Data-Length bytes of its own digest: full and truncated lengths both verify.

In every authenticated message the fields sit at fixed offsets:
``Type/flags (4) | Nonce (8) | Key ID (1) | Algorithm ID (1) | Auth Data Length (2) | Auth Data``,
so :func:`verify_raw` checks received bytes without decoding them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable

from .enums import AuthAlg

AUTH_FIELD_OFFSET = 12
"""Offset of Key ID in every authenticated control message."""
AUTH_DATA_OFFSET = 16
"""Offset of the Authentication Data itself."""

AUTHENTICATED_TYPES = frozenset({3, 4, 5, 7})
"""Message types that carry the Key ID / Algorithm ID / Auth Data section."""

_DIGESTS: dict[int, Callable[[], object]] = {
    AuthAlg.HMAC_SHA_1_96: hashlib.sha1,
    AuthAlg.HMAC_SHA_256_128: hashlib.sha256,
}

FULL_LENGTH: dict[int, int] = {AuthAlg.HMAC_SHA_1_96: 20, AuthAlg.HMAC_SHA_256_128: 32}
"""What real peers send: the full digest."""
TRUNCATED_LENGTH: dict[int, int] = {AuthAlg.HMAC_SHA_1_96: 12, AuthAlg.HMAC_SHA_256_128: 16}
"""The length the algorithm names suggest (96 / 128 bits); the shortest we accept."""


def is_known_alg(alg_id: int) -> bool:
    return alg_id in _DIGESTS


def auth_length_ok(alg_id: int, length: int) -> bool:
    """Whether ``length`` bytes of authentication data make sense for ``alg_id``.

    0 is always allowed (an unsigned message); algorithm NONE allows only 0; a known HMAC
    allows its truncated length up to its full digest; an unknown algorithm any length.
    """
    if length == 0:
        return True
    if alg_id == AuthAlg.NONE:
        return False
    if alg_id in _DIGESTS:
        return TRUNCATED_LENGTH[alg_id] <= length <= FULL_LENGTH[alg_id]
    return True


def compute_auth(alg_id: int, key: bytes, data: bytes) -> bytes:
    """The full HMAC digest of ``data`` under ``key`` for ``alg_id`` (1 = SHA-1, 2 = SHA-256).

    ``data`` must already have its authentication field zeroed.
    """
    digest = _DIGESTS.get(alg_id)
    if digest is None:
        raise ValueError(f"no HMAC for algorithm id {alg_id}")
    return hmac.new(key, data, digest).digest()  # type: ignore[arg-type]


def default_length(alg_id: int, length: int | None = None) -> int:
    """The Auth Data Length to sign with: ``length`` if given (checked), else the full digest."""
    if alg_id not in _DIGESTS:
        raise ValueError(f"cannot sign with algorithm id {alg_id}")
    if length is None:
        return FULL_LENGTH[alg_id]
    if not TRUNCATED_LENGTH[alg_id] <= length <= FULL_LENGTH[alg_id]:
        raise ValueError(
            f"auth length {length} not in {TRUNCATED_LENGTH[alg_id]}..{FULL_LENGTH[alg_id]} for algorithm {alg_id}"
        )
    return length


def verify_digest(alg_id: int, key: bytes, zeroed: bytes, received: bytes) -> bool:
    """Compare ``received`` with the first ``len(received)`` bytes of the HMAC of ``zeroed``."""
    if alg_id not in _DIGESTS or not auth_length_ok(alg_id, len(received)) or not received:
        return False
    mine = compute_auth(alg_id, key, zeroed)[: len(received)]
    return hmac.compare_digest(mine, received)


def verify_raw(data: bytes, key: bytes) -> bool:
    """Verify a received Map-Register / Map-Notify / Map-Notify-Ack / Info message as bytes.

    Works on the raw UDP payload without decoding it: reads Algorithm ID and Auth Data
    Length at their fixed offsets, zeroes the field in a copy and recomputes.  Returns
    False for anything that is not such a message, is too short, is unsigned, or uses an
    algorithm we do not know.
    """
    if len(data) < AUTH_DATA_OFFSET or data[0] >> 4 not in AUTHENTICATED_TYPES:
        return False
    alg_id = data[AUTH_FIELD_OFFSET + 1]
    length = int.from_bytes(data[AUTH_FIELD_OFFSET + 2 : AUTH_DATA_OFFSET], "big")
    end = AUTH_DATA_OFFSET + length
    if length == 0 or end > len(data):
        return False
    received = bytes(data[AUTH_DATA_OFFSET:end])
    zeroed = bytes(data[:AUTH_DATA_OFFSET]) + bytes(length) + bytes(data[end:])
    return verify_digest(alg_id, key, zeroed, received)


def sign_raw(data: bytes, key: bytes) -> bytes:
    """Fill the authentication field of an encoded message (its Auth Data Length bytes).

    ``data`` must be an encoded type 3/4/5/7 message whose algorithm is an HMAC.
    """
    if len(data) < AUTH_DATA_OFFSET or data[0] >> 4 not in AUTHENTICATED_TYPES:
        raise ValueError("not an authenticated control message")
    alg_id = data[AUTH_FIELD_OFFSET + 1]
    length = int.from_bytes(data[AUTH_FIELD_OFFSET + 2 : AUTH_DATA_OFFSET], "big")
    end = AUTH_DATA_OFFSET + length
    if end > len(data):
        raise ValueError("auth length runs past the message")
    default_length(alg_id, length)
    zeroed = bytes(data[:AUTH_DATA_OFFSET]) + bytes(length) + bytes(data[end:])
    mac = compute_auth(alg_id, key, zeroed)[:length]
    return zeroed[:AUTH_DATA_OFFSET] + mac + zeroed[end:]


# --- MS-RTR authentication data in an ECM (NAT traversal draft) -----------------------
#
#   AD Type = 2 | Reserved (24) | MS-RTR Key ID (16) | MS-RTR Auth Data Length (16) | data
#
# The HMAC covers the encapsulated Map-Notify.  The 16-bit key id selects the algorithm
# as the old (RFC 6830) single Key ID did: 1 = HMAC-SHA-1, 2 = HMAC-SHA-256.

ECM_AD_LISP_SEC = 1
ECM_AD_MS_RTR = 2


def ms_rtr_auth_data(key_id: int, key: bytes, inner_message: bytes, length: int | None = None) -> bytes:
    """The ECM authentication data (AD type 2) for ``inner_message`` signed with ``key``."""
    if not 0 <= key_id <= 0xFFFF:
        raise ValueError("MS-RTR key id must fit in 16 bits")
    n = default_length(key_id, length)
    mac = compute_auth(key_id, key, inner_message)[:n]
    return bytes((ECM_AD_MS_RTR, 0, 0, 0)) + key_id.to_bytes(2, "big") + n.to_bytes(2, "big") + mac


def verify_ms_rtr_auth(auth_data: bytes, key: bytes, inner_message: bytes) -> bool:
    """Check ECM authentication data of AD type 2 against the encapsulated message bytes."""
    if len(auth_data) < 8 or auth_data[0] != ECM_AD_MS_RTR:
        return False
    key_id = int.from_bytes(auth_data[4:6], "big")
    n = int.from_bytes(auth_data[6:8], "big")
    received = auth_data[8:]
    if n != len(received):
        return False
    return verify_digest(key_id, key, inner_message, received)


__all__ = [
    "AUTH_DATA_OFFSET",
    "AUTH_FIELD_OFFSET",
    "ECM_AD_LISP_SEC",
    "ECM_AD_MS_RTR",
    "FULL_LENGTH",
    "TRUNCATED_LENGTH",
    "auth_length_ok",
    "compute_auth",
    "default_length",
    "ms_rtr_auth_data",
    "sign_raw",
    "verify_digest",
    "verify_ms_rtr_auth",
    "verify_raw",
]
