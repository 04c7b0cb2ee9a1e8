"""Pure parsers of BLE advert payloads (iBeacon; Eddystone UID, URL, TLM, EID) and their rejection counts.

Bytes in, frozen dataclass or None out: no I/O, no logging on the hot path, never raises.
"""

from __future__ import annotations

import struct
from collections import Counter
from dataclasses import dataclass
from typing import Final, TypeAlias

from edge.events import Advert

# Apple's Bluetooth SIG company id; bleak gives manufacturer data keyed by it, without the id bytes.
APPLE_COMPANY_ID: Final = 0x004C
# The Eddystone 16-bit service UUID 0xFEAA in the 128-bit, lower-case form bleak uses for service_data keys.
EDDYSTONE_SERVICE_UUID: Final = "0000feaa-0000-1000-8000-00805f9b34fb"

# iBeacon: type 0x02, then the length of what follows, always 0x15 (21 bytes: uuid 16, major 2, minor 2,
# power 1). Apple sends many other types (0x10 "nearby", 0x12 Find My, ...): those are not iBeacons and
# not malformed, so they are not counted.
IBEACON_TYPE: Final = 0x02
IBEACON_LENGTH: Final = 0x15
IBEACON_SIZE: Final = 2 + IBEACON_LENGTH

# Eddystone frame types (first byte of the service data).
FRAME_UID: Final = 0x00
FRAME_URL: Final = 0x10
FRAME_TLM: Final = 0x20
FRAME_EID: Final = 0x30

# Minimum sizes, frame type byte included. UID is 20 bytes with its two RFU bytes, but older beacons
# truncate them (the spec's service data length 0x15): 18 is accepted. Trailing bytes beyond a fixed
# layout are ignored rather than refused, so a slightly off-spec store beacon is still heard.
UID_MIN_SIZE: Final = 18
URL_MIN_SIZE: Final = 3  # type, tx power, scheme; the encoded URL may be empty
TLM_PLAIN_SIZE: Final = 14
TLM_ENCRYPTED_SIZE: Final = 18
EID_SIZE: Final = 10

TLM_PLAIN: Final = 0x00
TLM_ENCRYPTED: Final = 0x01
# The spec's "temperature not supported" value (-128.0 degC in 8.8 fixed point).
TLM_NO_TEMPERATURE: Final = -0x8000
# 8.8 fixed point: the low byte holds 1/256ths of a degree.
TLM_TEMPERATURE_SCALE: Final = 256.0
# SEC_CNT counts tenths of a second since power-on.
TLM_UPTIME_SCALE: Final = 10.0

# Every label the parsers count, so health and docs can list them and tests can hold the parsers to them.
REJECTION_REASONS: Final = frozenset(
    {
        "ibeacon_short",
        "ibeacon_bad_length",
        "eddystone_empty",
        "eddystone_unknown_type",
        "eddystone_truncated",
        "url_bad_scheme",
        "url_bad_char",
        "tlm_unknown_version",
    }
)

# Precompiled layouts (big-endian as both specs say), unpacked from an offset with no slicing.
_IBEACON = struct.Struct(">16sHHb")  # after the 0x02 0x15 prefix
_UID = struct.Struct(">b10s6s")  # after the frame type
_TLM = struct.Struct(">HhII")  # after the frame type and version
_ETLM = struct.Struct(">12sHH")  # after the frame type and version
_EID = struct.Struct(">b8s")  # after the frame type

_URL_SCHEMES: Final = ("http://www.", "https://www.", "http://", "https://")
_URL_EXPANSIONS: Final = (
    ".com/",
    ".org/",
    ".edu/",
    ".net/",
    ".info/",
    ".biz/",
    ".gov/",
    ".com",
    ".org",
    ".edu",
    ".net",
    ".info",
    ".biz",
    ".gov",
)


def _url_table() -> tuple[str | None, ...]:
    # One lookup per byte: expansion codes 0x00-0x0d, printable ASCII 0x21-0x7e as itself, and None for the
    # ranges the spec reserves (0x0e-0x20, 0x7f-0xff).
    table: list[str | None] = [None] * 256
    for code, text in enumerate(_URL_EXPANSIONS):
        table[code] = text
    for code in range(0x21, 0x7F):
        table[code] = chr(code)
    return tuple(table)


_URL_CHARS: Final = _url_table()


@dataclass(slots=True, frozen=True)
class IBeacon:
    """An Apple iBeacon frame; ``power`` is the measured RSSI at 1 m (dBm)."""

    uuid: str  # lower case, with dashes
    major: int
    minor: int
    power: int

    @property
    def key(self) -> str:
        """Stable id of a store beacon: ``ibeacon:<uuid>:<major>:<minor>``."""
        return f"ibeacon:{self.uuid}:{self.major}:{self.minor}"


@dataclass(slots=True, frozen=True)
class EddystoneUid:
    """An Eddystone-UID frame; ``tx_power`` is the calibrated power at 0 m (dBm)."""

    tx_power: int
    namespace: str  # 20 lower-case hex characters
    instance: str  # 12 lower-case hex characters

    @property
    def key(self) -> str:
        """Stable id of a store beacon: ``eddystone-uid:<namespace>:<instance>``."""
        return f"eddystone-uid:{self.namespace}:{self.instance}"


@dataclass(slots=True, frozen=True)
class EddystoneUrl:
    """An Eddystone-URL frame with its URL expanded."""

    tx_power: int
    url: str


@dataclass(slots=True, frozen=True)
class EddystoneTlm:
    """An unencrypted Eddystone-TLM frame; it names no beacon, its sender's address links it to one."""

    battery_mv: int | None  # None: the beacon sends 0, "not supported" (mains powered)
    temperature_c: float | None  # None: the beacon sends 0x8000, "not supported"
    adv_count: int  # advertising PDUs since power-on
    uptime_s: float  # since power-on, 0.1 s resolution


@dataclass(slots=True, frozen=True)
class EncryptedTlm:
    """An encrypted (EID-configured) TLM frame, kept opaque: decrypting it needs AES-EAX and the beacon's key.

    Returned rather than None so it is not counted as malformed; nothing downstream uses its content.
    """

    etlm: bytes  # 12 bytes of ciphertext
    salt: int
    mic: int


@dataclass(slots=True, frozen=True)
class EddystoneEid:
    """An Eddystone-EID frame: an 8-byte ephemeral id that only a holder of the identity key can resolve."""

    tx_power: int
    eid: bytes


EddystoneFrame: TypeAlias = EddystoneUid | EddystoneUrl | EddystoneTlm | EncryptedTlm | EddystoneEid
Frame: TypeAlias = IBeacon | EddystoneFrame


class FrameCounter(Counter[str]):
    """Malformed input by reason (the labels in ``REJECTION_REASONS``); one per source, read by health.

    Adverts that carry no frame we parse (most phones) are not malformed and are not counted here.
    """


def parse_ibeacon(manufacturer_data: bytes, counter: FrameCounter | None = None) -> IBeacon | None:
    """Bleak's manufacturer data for Apple (0x004C, id bytes excluded) -> an iBeacon, or None."""
    size = len(manufacturer_data)
    if size == 0 or manufacturer_data[0] != IBEACON_TYPE:
        return None  # another Apple advert type (most iPhones): not an iBeacon, not malformed
    if size >= IBEACON_SIZE and manufacturer_data[1] == IBEACON_LENGTH:
        raw_uuid, major, minor, power = _IBEACON.unpack_from(manufacturer_data, 2)
        h = raw_uuid.hex()
        return IBeacon(f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}", major, minor, power)
    if counter is not None:
        bad_length = size >= 2 and manufacturer_data[1] != IBEACON_LENGTH
        counter["ibeacon_bad_length" if bad_length else "ibeacon_short"] += 1
    return None


def parse_eddystone(service_data: bytes, counter: FrameCounter | None = None) -> EddystoneFrame | None:
    """Bleak's service data for 0xFEAA -> one Eddystone frame, or None (counted in ``counter``)."""
    frame = _eddystone(service_data)
    if isinstance(frame, str):
        if counter is not None:
            counter[frame] += 1
        return None
    return frame


def parse_advert(advert: Advert, counter: FrameCounter | None = None) -> Frame | None:
    """The frame an advert carries (Eddystone first, then iBeacon), or None: not a frame we know."""
    service_data = advert.service_data.get(EDDYSTONE_SERVICE_UUID)
    if service_data is not None:
        return parse_eddystone(service_data, counter)
    manufacturer_data = advert.manufacturer_data.get(APPLE_COMPANY_ID)
    if manufacturer_data is not None:
        return parse_ibeacon(manufacturer_data, counter)
    return None


# The parsers below return a frame or the reason it was refused, so counting happens in one place.


def _eddystone(data: bytes) -> EddystoneFrame | str:
    size = len(data)
    if size == 0:
        return "eddystone_empty"
    frame_type = data[0]
    if frame_type == FRAME_EID:  # first: the frame every opted-in shopper's phone sends
        if size < EID_SIZE:
            return "eddystone_truncated"
        tx_power, eid = _EID.unpack_from(data, 1)
        return EddystoneEid(tx_power, eid)
    if frame_type == FRAME_UID:
        if size < UID_MIN_SIZE:
            return "eddystone_truncated"
        tx_power, namespace, instance = _UID.unpack_from(data, 1)
        return EddystoneUid(tx_power, namespace.hex(), instance.hex())
    if frame_type == FRAME_TLM:
        return _tlm(data, size)
    if frame_type == FRAME_URL:
        return _url(data, size)
    return "eddystone_unknown_type"


def _tlm(data: bytes, size: int) -> EddystoneTlm | EncryptedTlm | str:
    if size < 2:
        return "eddystone_truncated"
    version = data[1]
    if version == TLM_PLAIN:
        if size < TLM_PLAIN_SIZE:
            return "eddystone_truncated"
        battery, temperature, adv_count, uptime = _TLM.unpack_from(data, 2)
        return EddystoneTlm(
            battery or None,
            None if temperature == TLM_NO_TEMPERATURE else temperature / TLM_TEMPERATURE_SCALE,
            adv_count,
            uptime / TLM_UPTIME_SCALE,
        )
    if version == TLM_ENCRYPTED:
        if size < TLM_ENCRYPTED_SIZE:
            return "eddystone_truncated"
        etlm, salt, mic = _ETLM.unpack_from(data, 2)
        return EncryptedTlm(etlm, salt, mic)
    return "tlm_unknown_version"


def _url(data: bytes, size: int) -> EddystoneUrl | str:
    if size < URL_MIN_SIZE:
        return "eddystone_truncated"
    scheme = data[2]
    if scheme >= len(_URL_SCHEMES):
        return "url_bad_scheme"
    text = [_URL_SCHEMES[scheme]]
    for byte in data[3:]:
        piece = _URL_CHARS[byte]
        if piece is None:
            return "url_bad_char"
        text.append(piece)
    tx_power = data[1] - 256 if data[1] > 127 else data[1]  # a signed byte
    return EddystoneUrl(tx_power, "".join(text))
