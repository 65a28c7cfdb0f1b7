"""``lispnet decode`` on hex strings, raw files and captures (typer CliRunner + one subprocess)."""

from __future__ import annotations

import json
import subprocess
import sys
from ipaddress import IPv4Address
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from typer.testing import CliRunner

from lispnet.cli.decode import decode_payload, ethernet_summary, ip_summary, render_message
from lispnet.cli.main import app
from lispnet.wire.data import LispHeader, VxlanGbpHeader, VxlanGpeHeader, VxlanHeader
from lispnet.wire.jsonview import to_json
from lispnet.wire.pcap import UdpDatagram, iter_frames, read_udp, write_pcap

CAPTURES = Path(__file__).parent.parent / "wire" / "captures"
OOR = CAPTURES / "oor-xtr-msmr.pcap"
LISPERS = CAPTURES / "lispersnet-xtr-msmr.pcap"

V1 = "10000001 0102030405060708 0001c0000201 0001c6336401 0008 0001 0a000000"
V4 = "20000001 0102030405060708 0000000f 00082000 0000 0001 0a000000"

runner = CliRunner()


def run(*args: str) -> tuple[int, str]:
    res = runner.invoke(app, ["decode", *args])
    if res.exception is not None and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res.exit_code, res.output


def json_lines(out: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --- single payloads ----------------------------------------------------------------------


def test_hex_map_request_text() -> None:
    code, out = run(V1)
    assert code == 0
    assert "Map-Request, nonce 0x0102030405060708" in out
    assert "source-EID 192.0.2.1, ITR-RLOCs: 198.51.100.1" in out
    assert "request for 10.0.0.0/8" in out


def test_hex_negative_map_reply_text() -> None:
    code, out = run("0x" + V4.replace(" ", ""))
    assert code == 0
    assert "Map-Reply, nonce 0x0102030405060708" in out
    assert "EID 10.0.0.0/8, TTL 15 min, action natively-forward" in out
    assert "(negative, no locator-set)" in out


def test_hex_json() -> None:
    code, out = run("--json", V1)
    assert code == 0
    (obj,) = json_lines(out)
    assert obj["protocol"] == "lisp-control"
    msg = obj["message"]
    assert isinstance(msg, dict)
    assert msg["type"] == "MapRequest"
    assert msg["nonce"] == "0x102030405060708"
    assert msg["itr_rlocs"] == ["198.51.100.1"]
    assert msg["records"] == [{"type": "RequestRecord", "eid": "10.0.0.0", "mask_len": 8, "notify": False,
                               "prefix": "10.0.0.0/8"}]


def test_hex_data_header() -> None:
    inner = bytes.fromhex("4500001c000000004001" + "0000" + "0a010102" + "0a020102") + bytes([8, 0]) + bytes(6)
    code, out = run("--data", "c81234560003e801" + inner.hex())
    assert code == 0
    assert "LISP data header, flags NLI, nonce 0x123456, IID 1000, LSBs 0x01" in out
    assert "inner IPv4 10.1.1.2 -> 10.2.1.2, ICMP, TTL 64, 28 bytes, type 8 code 0" in out
    code, out = run("--json", "--port", "4341", "881234560003e800")
    (obj,) = json_lines(out)
    assert obj["message"] == {"type": "LispHeader", "nonce": "0x123456", "lsb": None, "echo_nonce_request": False,
                              "map_version": None, "instance_id": 1000, "key_id": 0}


@pytest.mark.parametrize(
    ("port", "header", "text"),
    [
        ("4789", VxlanHeader(100), "VXLAN, VNI 100"),
        ("4789", VxlanGbpHeader(100, 0x123, dont_learn=True), "VXLAN-GBP, VNI 100, group-policy-id 291, flags: dont-learn"),
        ("4790", VxlanGpeHeader(7, 3), "VXLAN-GPE, VNI 7, next-protocol 3 (ETHERNET), version 0"),
        ("8472", LispHeader(nonce=5, instance_id=9), "LISP data header, flags NI, nonce 0x000005, IID 9"),
    ],
)
def test_vxlan_family(port: str, header: LispHeader | VxlanHeader | VxlanGbpHeader | VxlanGpeHeader, text: str) -> None:
    frame = bytes.fromhex("020000000002 020000000001 0806") + bytes(28)
    code, out = run("--port", port, header.to_bytes().hex() + frame.hex())
    assert code == 0
    assert text in out
    assert "inner Ethernet 02:00:00:00:00:01 -> 02:00:00:00:00:02, type 0x0806" in out


def test_malformed_hex_reports_and_exits_zero() -> None:
    code, out = run(V1.replace(" ", "")[:40])
    assert code == 0
    assert "malformed lisp-control packet: Truncated:" in out
    assert "(offset " in out
    code, out = run("--json", V1.replace(" ", "")[:40])
    (obj,) = json_lines(out)
    err = obj["error"]
    assert isinstance(err, dict) and err["class"] == "Truncated" and isinstance(err["offset"], int)


def test_unreadable_input_exits_one() -> None:
    code, out = run("not-hex-and-not-a-file")
    assert code == 1
    assert "cannot read input" in out


def test_usage_errors() -> None:
    assert run("--port", "1234", "00")[0] == 2
    assert run("--data", "--port", "4342", "00")[0] == 2


def test_raw_file(tmp_path: Path) -> None:
    f = tmp_path / "msg.bin"
    f.write_bytes(bytes.fromhex(V4.replace(" ", "")))
    code, out = run(str(f))
    assert code == 0 and "Map-Reply" in out


# --- captures -----------------------------------------------------------------------------------


def test_oor_capture_text() -> None:
    code, out = run(str(OOR))
    assert code == 0
    assert out.count("Map-Register,") == 2
    assert out.count("Map-Notify,") == 2
    assert out.count("Encapsulated Control Message") == 4
    assert out.count("Map-Reply,") == 2
    assert out.count("LISP data header, flags -") == 7
    assert "RLOC 10.0.0.11  priority/weight 1/100" in out
    # OOR's "key id 1" is RFC 6833's 16-bit Key ID; RFC 9301 reads it as key-id 0, algorithm 1
    assert "key-id 0, hmac-sha-1-96, auth-data 20 bytes" in out
    assert "-- 17 frame(s): 17 decoded, 0 malformed, 0 not LISP/VXLAN" in out


def test_lispers_capture_json() -> None:
    code, out = run("--json", str(LISPERS))
    assert code == 0
    objs = json_lines(out)
    assert len(objs) == 29
    assert [o["frame"] for o in objs] == list(range(1, 30))
    assert all("error" not in o for o in objs)
    types = [o["message"]["type"] for o in objs]  # type: ignore[index]
    assert types[:3] == ["MapRegister", "MapNotify", "MapNotifyAck"]
    assert types.count("LispHeader") == 9
    assert types[9] == "MapRequest" and objs[9]["message"]["probe"] is True  # type: ignore[index]
    data = objs[10]
    assert data["protocol"] == "lisp-data" and data["inner"]["protocol"] == "ICMP"  # type: ignore[index]
    assert data["src"] == "192.168.100.11" and data["dport"] == 4341


def test_pcapng_capture() -> None:
    code, out = run(str(CAPTURES / "oor-xtr-msmr.pcapng"))
    assert code == 0
    assert "-- 17 frame(s): 17 decoded, 0 malformed" in out


def test_corrupted_packet_in_the_middle(tmp_path: Path) -> None:
    dgrams = read_udp(LISPERS)
    # frame 9 is a Map-Reply: cut it inside its locator; frame 12's UDP length is broken below
    bad = dgrams[8]
    dgrams[8] = UdpDatagram(bad.src, bad.dst, bad.sport, bad.dport, bad.payload[:30], ttl=bad.ttl)
    path = tmp_path / "corrupt.pcap"
    write_pcap(path, dgrams)
    raw = bytearray(path.read_bytes())
    frames = list(iter_frames(bytes(raw)))
    off = 24 + sum(16 + len(f.data) for f in frames[:11]) + 16  # start of frame 12
    udp_len_at = off + 14 + 20 + 4
    raw[udp_len_at : udp_len_at + 2] = (0xFFFF).to_bytes(2, "big")
    path.write_bytes(bytes(raw))

    expected = decode_payload(dgrams[8].payload, 4342).error
    assert expected is not None
    err_class = type(expected).__name__  # Truncated or BadCount, as the codec sees fit

    code, out = run(str(path))
    assert code == 0
    assert "frame 9 " in out
    assert f"malformed lisp-control packet: {err_class}: {expected.message} (offset {expected.offset})" in out
    assert "frame 12\n  malformed frame: BadFrame: UDP length 65535" in out
    # decoding went on after both
    assert "frame 10 " in out and "frame 29 " in out
    assert "-- 29 frame(s): 27 decoded, 2 malformed, 0 not LISP/VXLAN" in out

    code, out = run("--json", str(path))
    assert code == 0
    objs = json_lines(out)
    assert len(objs) == 29
    errs = {o["frame"]: o["error"] for o in objs if "error" in o}
    assert set(errs) == {9, 12}
    assert errs[9]["class"] == err_class  # type: ignore[index]
    assert errs[9]["offset"] == expected.offset  # type: ignore[index]
    assert errs[12]["class"] == "BadFrame"  # type: ignore[index]


def test_truncated_capture_exits_one(tmp_path: Path) -> None:
    path = tmp_path / "cut.pcap"
    path.write_bytes(OOR.read_bytes()[:-10])
    code, out = run(str(path))
    assert code == 1
    assert "frame 16 " in out
    assert "cannot read input: TruncatedCapture" in out


def test_non_lisp_udp_is_skipped(tmp_path: Path) -> None:
    a, b = IPv4Address("10.0.0.1"), IPv4Address("10.0.0.2")
    path = tmp_path / "mixed.pcap"
    write_pcap(path, [UdpDatagram(a, b, 5353, 53, b"dns"), UdpDatagram(a, b, 1000, 4342, bytes.fromhex(V1.replace(" ", "")))])
    code, out = run(str(path))
    assert code == 0
    assert "-- 2 frame(s): 1 decoded, 0 malformed, 1 not LISP/VXLAN" in out


def test_console_script_subprocess() -> None:
    res = subprocess.run(
        [sys.executable, "-m", "lispnet", "decode", "--json", str(OOR)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert len(json_lines(res.stdout)) == 17


@given(st.binary(max_size=64), st.sampled_from([4341, 4342, 4789, 4790, 8472]))
def test_decode_payload_total(data: bytes, port: int) -> None:
    res = decode_payload(data, port)
    assert (res.message is None) == (res.error is not None)
    if res.message is not None:
        render_message(res.message)
    json.dumps(to_json(res.message))


@given(st.binary(max_size=80))
def test_inner_summaries_total(data: bytes) -> None:
    json.dumps(ip_summary(data))
    json.dumps(ethernet_summary(data))


def test_json_short_flag() -> None:
    code, out = run("-j", V1)
    assert code == 0 and json_lines(out)[0]["message"]["type"] == "MapRequest"  # type: ignore[index]


def test_stdin_hex_and_raw() -> None:
    res = runner.invoke(app, ["decode", "-"], input=V1 + "\n")
    assert res.exit_code == 0 and "Map-Request, nonce 0x0102030405060708" in res.output
    res = runner.invoke(app, ["decode", "-"], input=bytes.fromhex(V4.replace(" ", "")))
    assert res.exit_code == 0 and "Map-Reply, nonce 0x0102030405060708" in res.output
    res = runner.invoke(app, ["decode", "-j", "-"], input=OOR.read_bytes())
    assert res.exit_code == 0 and len(json_lines(res.output)) == 17


@pytest.mark.parametrize(("capture", "key", "signed"), [(OOR, "oor-secret", 4), (LISPERS, "lnet-secret", 12)])
def test_key_verifies_interop_signatures(capture: Path, key: str, signed: int) -> None:
    """The interop README's site keys verify every signed message of both captures."""
    code, out = run("--key", key, str(capture))
    assert code == 0
    assert out.count("authentication: verified") == signed
    assert "FAILED" not in out
    code, out = run("--key", "wrong-key", str(capture))
    assert out.count("authentication: FAILED") == signed
    code, out = run("-j", "--key", key, str(capture))
    flags = [o.get("auth_ok") for o in json_lines(out)]
    assert flags.count(True) == signed and False not in flags
