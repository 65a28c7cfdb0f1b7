"""``lispnet decode``: show LISP packets from a hex string, a raw file or a capture.

The input is, in this order of detection:

1. ``-`` : standard input (then treated like the contents of a file);
2. an existing file: a pcap / pcapng capture (by magic number), hex text, otherwise
   the raw bytes of one UDP payload;
3. otherwise a hex string (spaces, colons and a ``0x`` prefix allowed).

Captures are demultiplexed by UDP port, destination first, then source: 4342 is a
control message (``parse_control``), 4341 a LISP data header plus a summary of the
inner IP packet, 4789 VXLAN (VXLAN-GBP when the G bit is set), 4790 VXLAN-GPE and
8472 a LISP header followed by an Ethernet frame (lispers.net L2).  Other UDP
datagrams and non-UDP frames are counted and skipped.  A single payload (hex or raw
file) is a control message unless ``--data`` or ``--port N`` says otherwise.

Exit status (deliberately like a linter's): 0 when the input could be read, even if
some packets in it are malformed (each is reported with its error class, message and
offset, and decoding goes on with the next packet); 1 when the input itself cannot be
read (missing file, bad hex, a capture whose file structure is broken; the packets
before the break are still shown); 2 for usage errors.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, fields
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path
from typing import Any

import typer

from ..wire import ControlMessage, DecodeError, parse_control
from ..wire.address import Address
from ..wire.data import (
    PORT_LISP_CONTROL,
    PORT_LISP_DATA,
    PORT_LISP_L2,
    PORT_VXLAN,
    PORT_VXLAN_GPE,
    DataHeader,
    GpeNextProtocol,
    LispHeader,
    VxlanGbpHeader,
    VxlanGpeHeader,
    VxlanHeader,
    parse_data_header,
    parse_vxlan,
)
from ..wire.jsonview import JsonValue, to_json
from ..wire.pcap import CaptureError, UdpDatagram, capture_kind, iter_frames, udp_of_frame
from ..wire.prefix import EidPrefix

KNOWN_PORTS = {
    PORT_LISP_CONTROL: "lisp-control",
    PORT_LISP_DATA: "lisp-data",
    PORT_VXLAN: "vxlan",
    PORT_VXLAN_GPE: "vxlan-gpe",
    PORT_LISP_L2: "lisp-l2",
}

MESSAGE_NAMES = {
    "MapRequest": "Map-Request",
    "MapReply": "Map-Reply",
    "MapRegister": "Map-Register",
    "MapNotify": "Map-Notify",
    "MapNotifyAck": "Map-Notify-Ack",
    "MapReferral": "Map-Referral",
    "InfoRequest": "Info-Request",
    "InfoReply": "Info-Reply",
    "Ecm": "Encapsulated Control Message",
    "SharedExtension": "Shared Extension",
    "UnknownControl": "Unknown control message",
}

IP_PROTOCOLS = {1: "ICMP", 2: "IGMP", 6: "TCP", 17: "UDP", 47: "GRE", 50: "ESP", 58: "ICMPv6", 132: "SCTP"}


class InputError(Exception):
    """The input (file, hex string, capture) cannot be read at all."""


# --- what one decoded packet is -----------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decoded:
    """One UDP payload and what became of it."""

    protocol: str
    """lisp-control, lisp-data, vxlan, vxlan-gpe, lisp-l2."""
    message: ControlMessage | DataHeader | None
    """The decoded message or header (None on error)."""
    inner: dict[str, JsonValue] | None = None
    """Summary of the encapsulated packet (data-plane protocols)."""
    error: DecodeError | None = None
    """Why decoding failed."""


def decode_payload(payload: bytes, port: int) -> Decoded:
    """Decode one UDP payload as the protocol ``port`` implies.  Never raises DecodeError."""
    protocol = KNOWN_PORTS.get(port, "lisp-control")
    try:
        if protocol == "lisp-control":
            return Decoded(protocol, parse_control(payload))
        if protocol in ("lisp-data", "lisp-l2"):
            lisp = parse_data_header(payload)
            body = payload[8:]
            summary = ip_summary(body) if protocol == "lisp-data" else ethernet_summary(body)
            return Decoded(protocol, lisp, summary if body else None)
        vx = parse_vxlan(payload, "gpe" if protocol == "vxlan-gpe" else "auto")
        inner: dict[str, JsonValue] | None
        if len(payload) == 8:
            inner = None
        elif isinstance(vx, VxlanGpeHeader) and vx.next_protocol in (1, 2):
            inner = ip_summary(payload[8:])
        else:
            inner = ethernet_summary(payload[8:])
        return Decoded("vxlan-gbp" if isinstance(vx, VxlanGbpHeader) else protocol, vx, inner)
    except DecodeError as e:
        return Decoded(protocol, None, None, e)


def ip_summary(pkt: bytes) -> dict[str, JsonValue]:
    """A few facts about an inner IP packet; an ``error`` key when they cannot be read."""
    if not pkt:
        return {"error": "empty inner packet"}
    version = pkt[0] >> 4
    out: dict[str, JsonValue] = {"version": version, "length": len(pkt)}
    if version == 4 and len(pkt) >= 20:
        ihl = (pkt[0] & 0xF) * 4
        proto, off = pkt[9], ihl
        out.update(src=str(IPv4Address(pkt[12:16])), dst=str(IPv4Address(pkt[16:20])), ttl=pkt[8])
    elif version == 6 and len(pkt) >= 40:
        proto, off = pkt[6], 40
        out.update(src=str(IPv6Address(pkt[8:24])), dst=str(IPv6Address(pkt[24:40])), ttl=pkt[7])
    else:
        out["error"] = f"not an IPv4/IPv6 packet ({len(pkt)} bytes, version nibble {version})"
        return out
    out["protocol"] = IP_PROTOCOLS.get(proto, str(proto))
    if proto in (6, 17) and len(pkt) >= off + 4:
        out["sport"] = int.from_bytes(pkt[off : off + 2], "big")
        out["dport"] = int.from_bytes(pkt[off + 2 : off + 4], "big")
    elif proto in (1, 58) and len(pkt) >= off + 2:
        out["icmp_type"] = pkt[off]
        out["icmp_code"] = pkt[off + 1]
    return out


def ethernet_summary(frame: bytes) -> dict[str, JsonValue]:
    """Ethernet addresses and type of an inner frame, plus the IP summary when it is IP."""
    if len(frame) < 14:
        return {"error": f"inner Ethernet frame of {len(frame)} bytes"}
    etype = int.from_bytes(frame[12:14], "big")
    out: dict[str, JsonValue] = {
        "dst_mac": ":".join(f"{b:02x}" for b in frame[0:6]),
        "src_mac": ":".join(f"{b:02x}" for b in frame[6:12]),
        "ethertype": f"0x{etype:04x}",
    }
    if etype in (0x0800, 0x86DD):
        out["ip"] = ip_summary(frame[14:])
    return out


# --- input ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Packet:
    """One item to decode: a datagram from a capture, or a lone payload."""

    datagram: UdpDatagram | None
    payload: bytes
    port: int
    frame: int = 0
    frame_error: DecodeError | None = None


def _parse_hex(text: str) -> bytes:
    s = "".join(text.split()).replace(":", "").replace("-", "")
    if s[:2].lower() == "0x":
        s = s[2:]
    try:
        return bytes.fromhex(s)
    except ValueError:
        raise InputError(f"not a file and not a hex string: {text[:60]!r}") from None


_HEX_TEXT = frozenset(b"0123456789abcdefABCDEFxX: \t\r\n-")


def _looks_like_hex(data: bytes) -> bool:
    """A file or stdin holding hex text rather than raw bytes (no LISP message is all ASCII hex)."""
    text = data.strip()
    return len(text) >= 2 and all(b in _HEX_TEXT for b in text)


def read_input(arg: str) -> bytes | str:
    """The input bytes (file or stdin), or the argument itself when it is hex text."""
    if arg == "-":
        return sys.stdin.buffer.read()
    p = Path(arg)
    if p.is_file():
        try:
            return p.read_bytes()
        except OSError as e:
            raise InputError(f"cannot read {arg}: {e.strerror}") from None
    return arg


def pick_port(d: UdpDatagram) -> int | None:
    for port in (d.dport, d.sport):
        if port in KNOWN_PORTS:
            return port
    return None


class Stats:
    def __init__(self) -> None:
        self.frames = 0
        self.decoded = 0
        self.errors = 0
        self.skipped = 0
        self.first_time: float | None = None


def iter_capture(data: bytes, stats: Stats) -> Iterator[Packet]:
    """The LISP/VXLAN datagrams of a capture; frame-level errors become error packets."""
    for frame in iter_frames(data):
        stats.frames += 1
        try:
            d = udp_of_frame(frame)
        except CaptureError as e:
            yield Packet(None, b"", 0, frame.number, e)
            continue
        port = None if d is None else pick_port(d)
        if d is None or port is None:
            stats.skipped += 1
            continue
        yield Packet(d, d.payload, port, frame.number)


# --- text rendering ---------------------------------------------------------------------------


def _name(v: object) -> str:
    if isinstance(v, Enum):
        return v.name.lower().replace("_", "-")
    return str(v)


def _flags(msg: object, skip: tuple[str, ...] = ()) -> str:
    on = [
        f.name.replace("_", "-")
        for f in fields(msg)  # type: ignore[arg-type]
        if isinstance(getattr(msg, f.name), bool) and getattr(msg, f.name) and f.name not in skip
    ]
    return ", ".join(on) if on else "none"


def _prefix(eid: Address, mask_len: int) -> str:
    try:
        return str(EidPrefix.from_wire_eid(eid, mask_len))
    except ValueError:
        return f"{eid}/{mask_len}"


def _locator(loc: Any) -> str:
    marks = [n for n, on in (("local", loc.local), ("probed", loc.probed)) if on]
    marks.append("up" if loc.reachable else "down")
    return (
        f"RLOC {loc.address}  priority/weight {loc.priority}/{loc.weight}  "
        f"mpriority/mweight {loc.m_priority}/{loc.m_weight}  {', '.join(marks)}"
    )


def _eid_record(rec: Any, pad: str) -> list[str]:
    ttl = "infinite" if rec.ttl == 0xFFFFFFFF else f"{rec.ttl} min"
    extra = ", authoritative" if rec.authoritative else ""
    if getattr(rec, "incomplete", False):
        extra += ", incomplete"
    if rec.map_version:
        extra += f", map-version {rec.map_version}"
    locs = getattr(rec, "locators", None)
    if locs is None:
        locs = rec.referrals
    kind = "referral" if hasattr(rec, "referrals") else "locator-set"
    lines = [f"{pad}EID {_prefix(rec.eid, rec.mask_len)}, TTL {ttl}, action {_name(rec.action)}{extra}"]
    if not locs:
        lines.append(f"{pad}  (negative, no {kind})")
    lines += [f"{pad}  {_locator(loc)}" for loc in locs]
    return lines


def _auth(msg: Any) -> str:
    return f"key-id {msg.key_id}, {_name(msg.alg_id)}, auth-data {len(msg.auth_data)} bytes"


def _ids(msg: Any, pad: str) -> list[str]:
    xtr = getattr(msg, "xtr_id", None)
    if xtr is None:
        return []
    return [f"{pad}xTR-ID 0x{xtr:032x}, site-ID 0x{(msg.site_id or 0):016x}"]


def render_message(msg: object, pad: str = "") -> list[str]:
    """Router-style multi-line text for a control message or data header."""
    cls = type(msg).__name__
    name = MESSAGE_NAMES.get(cls, cls)
    m: Any = msg
    if isinstance(msg, LispHeader):
        return _render_lisp(msg, pad)
    if isinstance(msg, VxlanHeader | VxlanGpeHeader | VxlanGbpHeader):
        return _render_vxlan(msg, pad)
    if cls == "UnknownControl":
        return [f"{pad}{name} type {m.msg_type}, {len(m.data)} bytes: {m.data[:32].hex()}"]
    if cls == "SharedExtension":
        return [f"{pad}{name} sub-type {m.subtype}, {len(m.body)} bytes: {m.body[:32].hex()}"]
    head = f"{pad}{name}"
    if hasattr(m, "nonce"):
        head += f", nonce 0x{m.nonce:016x}"
    head += f", flags: {_flags(m)}"
    lines = [head]
    sub = pad + "  "
    if cls == "MapRequest":
        lines.append(f"{sub}source-EID {m.source_eid}, ITR-RLOCs: {', '.join(str(a) for a in m.itr_rlocs)}")
        for r in m.records:
            lines.append(f"{sub}request for {_prefix(r.eid, r.mask_len)}{' (notify)' if r.notify else ''}")
        if m.map_reply_record is not None:
            lines.append(f"{sub}map-reply record:")
            lines += _eid_record(m.map_reply_record, sub + "  ")
        lines += _ids(m, sub)
    elif cls in ("MapReply", "MapRegister", "MapNotify", "MapNotifyAck"):
        if cls != "MapReply":
            lines.append(f"{sub}{_auth(m)}")
        elif m.security_data:
            lines.append(f"{sub}LISP-SEC data {len(m.security_data)} bytes")
        lines.append(f"{sub}{len(m.records)} record(s)")
        for rec in m.records:
            lines += _eid_record(rec, sub)
        lines += _ids(m, sub)
    elif cls == "MapReferral":
        lines.append(f"{sub}{len(m.records)} record(s)")
        for rec in m.records:
            lines += _eid_record(rec, sub)
    elif cls in ("InfoRequest", "InfoReply"):
        lines.append(f"{sub}{_auth(m)}, TTL {m.ttl} min, EID {_prefix(m.eid, m.mask_len)}")
        if cls == "InfoRequest":
            if m.hostname is not None:
                lines.append(f"{sub}hostname {m.hostname!r}")
        else:
            lines.append(f"{sub}NAT info {m.nat}")
    elif cls == "Ecm":
        lines.append(
            f"{sub}inner IPv{m.inner_src.version} {m.inner_src}:{m.inner_sport} -> {m.inner_dst}:{m.inner_dport}, "
            f"TTL {m.inner_ttl}" + (f", auth-data {len(m.auth_data)} bytes" if m.auth_data else "")
        )
        lines += render_message(m.message, sub)
    return lines


def _render_lisp(h: LispHeader, pad: str) -> list[str]:
    parts = [f"{pad}LISP data header, flags {h.flags}"]
    if h.nonce is not None:
        parts.append(f"nonce 0x{h.nonce:06x}" + (" (echo requested)" if h.echo_nonce_request else ""))
    if h.map_version is not None:
        parts.append(f"map-version source {h.map_version[0]} dest {h.map_version[1]}")
    if h.instance_id is not None:
        parts.append(f"IID {h.instance_id}")
    if h.lsb is not None:
        parts.append(f"LSBs 0x{h.lsb:0{2 if h.instance_id is not None else 8}x}")
    if h.key_id:
        parts.append(f"key-id {h.key_id} (encrypted)")
    return [", ".join(parts)]


def _render_vxlan(h: VxlanHeader | VxlanGpeHeader | VxlanGbpHeader, pad: str) -> list[str]:
    if isinstance(h, VxlanGbpHeader):
        flags = [n for n, on in (("dont-learn", h.dont_learn), ("policy-applied", h.policy_applied)) if on]
        text = f"VXLAN-GBP, VNI {h.vni}, group-policy-id {h.group_policy_id}"
        return [f"{pad}{text}" + (f", flags: {', '.join(flags)}" if flags else "")]
    if isinstance(h, VxlanGpeHeader):
        if h.next_protocol is None:
            np = "none"
        else:
            np = str(h.next_protocol)
            if h.next_protocol in GpeNextProtocol._value2member_map_:
                np += f" ({GpeNextProtocol(h.next_protocol).name})"
        flags = [n for n, on in (("oam", h.oam), ("bum", h.bum)) if on]
        text = f"VXLAN-GPE, VNI {h.vni}, next-protocol {np}, version {h.version}"
        return [f"{pad}{text}" + (f", flags: {', '.join(flags)}" if flags else "")]
    return [f"{pad}VXLAN, VNI {h.vni}"]


def _render_inner(inner: dict[str, JsonValue], pad: str) -> list[str]:
    if "ethertype" in inner:
        line = f"{pad}inner Ethernet {inner['src_mac']} -> {inner['dst_mac']}, type {inner['ethertype']}"
        ip = inner.get("ip")
        return [line] + (_render_inner(ip, pad + "  ") if isinstance(ip, dict) else [])
    if "error" in inner and "src" not in inner:
        return [f"{pad}inner packet: {inner['error']}"]
    ports = f":{inner['sport']} -> {inner['dst']}:{inner['dport']}" if "sport" in inner else f" -> {inner['dst']}"
    text = f"{pad}inner IPv{inner['version']} {inner['src']}{ports}, {inner['protocol']}, TTL {inner['ttl']}"
    text += f", {inner['length']} bytes"
    if "icmp_type" in inner:
        text += f", type {inner['icmp_type']} code {inner['icmp_code']}"
    return [text]


def _error_text(e: DecodeError) -> str:
    where = f" (offset {e.offset})" if e.offset is not None else ""
    return f"{type(e).__name__}: {e.message}{where}"


# --- output -----------------------------------------------------------------------------------


def _packet_header(p: Packet, stats: Stats) -> str:
    d = p.datagram
    if d is None:
        return f"frame {p.frame}" if p.frame else f"UDP {p.port} payload, {len(p.payload)} bytes"
    if stats.first_time is None:
        stats.first_time = d.timestamp
    return (
        f"frame {p.frame}  {d.timestamp - stats.first_time:.6f}  {d.src}:{d.sport} -> {d.dst}:{d.dport}  "
        f"({len(d.payload)} bytes)"
    )


def check_auth(msg: object, key: bytes) -> bool | None:
    """Whether ``msg`` (or the message inside an ECM) verifies under ``key``; None if unsigned."""
    inner = getattr(msg, "message", msg) if type(msg).__name__ == "Ecm" else msg
    verify = getattr(inner, "verify", None)
    if verify is None or not getattr(inner, "auth_data", b""):
        return None
    return bool(verify(key))


def emit(p: Packet, as_json: bool, stats: Stats, key: bytes | None = None) -> None:
    if p.frame_error is not None:
        stats.errors += 1
        e = p.frame_error
        if as_json:
            typer.echo(json.dumps({"frame": p.frame, "error": _error_json(e)}))
        else:
            typer.echo(f"{_packet_header(p, stats)}\n  malformed frame: {_error_text(e)}")
        return
    res = decode_payload(p.payload, p.port)
    auth = None if key is None or res.message is None else check_auth(res.message, key)
    if res.error is None:
        stats.decoded += 1
    else:
        stats.errors += 1
    if as_json:
        obj: dict[str, JsonValue] = {}
        d = p.datagram
        if d is not None:
            obj.update(
                frame=p.frame, time=d.timestamp, src=str(d.src), dst=str(d.dst), sport=d.sport, dport=d.dport
            )
        obj["protocol"] = res.protocol
        if res.error is not None:
            obj["error"] = _error_json(res.error)
        else:
            obj["message"] = to_json(res.message, type_key="type")
            if auth is not None:
                obj["auth_ok"] = auth
            if res.inner is not None:
                obj["inner"] = res.inner
        typer.echo(json.dumps(obj))
        return
    lines = [_packet_header(p, stats)]
    if res.error is not None:
        lines.append(f"  malformed {res.protocol} packet: {_error_text(res.error)}")
    else:
        lines += render_message(res.message, "  ")
        if auth is not None:
            lines.append("    authentication: " + ("verified" if auth else "FAILED (wrong key or altered)"))
        if res.inner is not None:
            lines += _render_inner(res.inner, "    ")
    typer.echo("\n".join(lines))


def _error_json(e: DecodeError) -> dict[str, JsonValue]:
    return {"class": type(e).__name__, "reason": e.reason, "message": e.message, "offset": e.offset}


def run_decode(arg: str, as_json: bool, port: int | None, key: bytes | None = None) -> int:
    """Decode ``arg`` and print; return the exit status."""
    stats = Stats()
    try:
        data = read_input(arg)
        if isinstance(data, str):
            packets: Iterator[Packet] = iter([Packet(None, _parse_hex(data), port or PORT_LISP_CONTROL)])
        elif capture_kind(data) is not None:
            packets = iter_capture(data, stats)
        else:
            if _looks_like_hex(data):  # e.g. `echo 1000... | lispnet decode -`
                data = _parse_hex(data.decode("ascii"))
            packets = iter([Packet(None, data, port or PORT_LISP_CONTROL)])
        for p in packets:
            emit(p, as_json, stats, key)
    except (InputError, CaptureError) as e:
        msg = _error_text(e) if isinstance(e, CaptureError) else str(e)
        typer.echo(f"lispnet decode: cannot read input: {msg}", err=True)
        return 1
    if not as_json and stats.frames:
        typer.echo(
            f"-- {stats.frames} frame(s): {stats.decoded} decoded, {stats.errors} malformed, "
            f"{stats.skipped} not LISP/VXLAN"
        )
    return 0


def register(app: typer.Typer) -> None:
    @app.command("decode")
    def decode(
        source: str = typer.Argument(
            ..., help="Hex string, a file holding one raw UDP payload, a pcap/pcapng capture, or - for stdin."
        ),
        as_json: bool = typer.Option(False, "--json", "-j", help="One JSON object per packet (JSON Lines)."),
        data: bool = typer.Option(False, "--data", help="A single payload is a LISP data packet (UDP 4341)."),
        port: int | None = typer.Option(
            None, "--port", help="A single payload arrived on this UDP port (4342, 4341, 4789, 4790, 8472)."
        ),
        key: str | None = typer.Option(
            None, "--key", help="Site key: verify the HMAC of Map-Register/Notify/Notify-Ack/Info messages."
        ),
    ) -> None:
        """Decode LISP control/data and VXLAN packets.

        Capture packets are chosen by UDP port: 4342 control, 4341 LISP data, 4789 VXLAN
        (GBP when G is set), 4790 VXLAN-GPE, 8472 LISP + Ethernet.  A lone hex string or
        raw file is a control message unless --data or --port says otherwise.

        Exit status: 0 when the input was read, even if packets in it are malformed (each
        is reported with error class, message and offset); 1 when the input itself can't
        be read; 2 on usage errors.
        """
        if data and port is not None and port != PORT_LISP_DATA:
            raise typer.BadParameter("--data and --port disagree")
        if port is not None and port not in KNOWN_PORTS:
            raise typer.BadParameter(f"unknown port {port}; use one of {sorted(KNOWN_PORTS)}")
        status = run_decode(source, as_json, PORT_LISP_DATA if data else port, None if key is None else key.encode())
        raise typer.Exit(status)


__all__ = ["Decoded", "decode_payload", "register", "render_message", "run_decode"]
