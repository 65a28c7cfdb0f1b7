"""Open integer enums for LISP code points.

An unknown value never fails: it becomes a pseudo-member named like ``AFI65000``,
so a decoder can carry it through and re-encode it unchanged (the dnspython idea).
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any


class OpenIntEnum(IntEnum):
    """IntEnum that mints a pseudo-member for any unknown integer value."""

    @classmethod
    def _missing_(cls, value: object) -> Any:
        if not isinstance(value, int) or isinstance(value, bool):
            return None
        obj = int.__new__(cls, value)
        obj._name_ = f"{cls.__name__.upper()}{value}"
        obj._value_ = value
        return obj

    @classmethod
    def is_known(cls, value: int) -> bool:
        return value in cls._value2member_map_ and not cls(value)._name_.startswith(cls.__name__.upper())


class MessageType(OpenIntEnum):
    """LISP control message types (RFC 9301 section 5, RFC 8111, NAT draft, RFC 8113)."""

    RESERVED = 0
    MAP_REQUEST = 1
    MAP_REPLY = 2
    MAP_REGISTER = 3
    MAP_NOTIFY = 4
    MAP_NOTIFY_ACK = 5
    MAP_REFERRAL = 6
    INFO = 7
    ECM = 8
    SHARED_EXTENSION = 15


class Afi(OpenIntEnum):
    """IANA address family numbers used by LISP."""

    NONE = 0
    IPV4 = 1
    IPV6 = 2
    MAC_LISPERS = 6  # lispers.net's "IEEE 802" code for MAC EIDs
    E164 = 8
    DISTINGUISHED_NAME = 17
    LCAF = 16387
    MAC = 16389  # IANA 48-bit MAC


class LcafType(OpenIntEnum):
    """RFC 8060 LCAF types."""

    NULL = 0
    AFI_LIST = 1
    INSTANCE_ID = 2
    AS_NUMBER = 3
    APPLICATION_DATA = 4
    GEO_COORDINATES = 5
    OPAQUE_KEY = 6
    NAT_TRAVERSAL = 7
    NONCE_LOCATOR = 8
    MULTICAST_INFO = 9
    EXPLICIT_LOCATOR_PATH = 10
    SECURITY_KEY = 11
    SOURCE_DEST_KEY = 12
    REPLICATION_LIST = 13
    JSON_DATA_MODEL = 14
    KEY_VALUE_PAIR = 15
    ENCAPSULATION_FORMAT = 16
    VENDOR_SPECIFIC = 255


class Action(OpenIntEnum):
    """Map-Reply action (ACT) codes, RFC 9301 section 5.4."""

    NO_ACTION = 0
    NATIVELY_FORWARD = 1
    SEND_MAP_REQUEST = 2
    DROP = 3
    DROP_POLICY_DENIED = 4
    DROP_AUTH_FAILURE = 5


class ReferralAction(OpenIntEnum):
    """Map-Referral actions, RFC 8111 section 6.4.1."""

    NODE_REFERRAL = 0
    MS_REFERRAL = 1
    MS_ACK = 2
    MS_NOT_REGISTERED = 3
    DELEGATION_HOLE = 4
    NOT_AUTHORITATIVE = 5


class AuthAlg(OpenIntEnum):
    """Authentication algorithm ids (RFC 9301 Algorithm ID)."""

    NONE = 0
    HMAC_SHA_1_96 = 1
    HMAC_SHA_256_128 = 2
