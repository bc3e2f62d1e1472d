"""fastcodec's HDLC codec against gurux-dlms, the peer the simulators and many meters use.

(a) frames gurux's client produces parse with ours into what gurux meant;
(b) frames we build (UA with negotiated parameters, I frames, segmented I frames)
are accepted by gurux's client and give it the same parameters and payload, and
the RR frames gurux sends back acknowledge what we expect.

gurux-dlms is GPL-2.0; it is only driven here through its public client API.
Addresses, payload sizes, negotiated lengths and sequence positions come from
hypothesis.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

gurux_dlms = pytest.importorskip("gurux_dlms")

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData  # noqa: E402
from gurux_dlms.enums import Authentication, DataType, InterfaceType  # noqa: E402
from gurux_dlms.objects import GXDLMSData, GXDLMSRegister  # noqa: E402

pytestmark = pytest.mark.integration

SETTINGS = settings(max_examples=100, deadline=None)

# An AARE accepting LN referencing without authentication (the synthetic gurux
# session's AARE, LLC included).
AARE_INFORMATION = bytes.fromhex(
    "e6e7006129a109060760857405080101a203020100a305a103020100be10040e0800065f1f0400401e5dffff0007"
)
LLC_REQUEST = bytes.fromhex("e6e600")
LLC_RESPONSE = bytes.fromhex("e6e700")


@st.composite
def server_addresses(draw: st.DrawFn) -> tuple[int, int, int]:
    """(upper, lower, address field length) of a server."""
    length = draw(st.sampled_from([1, 2, 4]))
    if length == 1:
        return draw(st.integers(1, 0x7E)), 0, 1
    limit = 0x7F if length == 2 else 0x3FFF
    return draw(st.integers(1, limit)), draw(st.integers(0x10, limit)), length


client_addresses = st.integers(1, 0x7E)


def _client(hdlc: ModuleType, client_address: int, server: tuple[int, int, int]) -> GXDLMSClient:
    upper, lower, length = server
    client = GXDLMSClient(
        True,
        client_address,
        hdlc.server_address(upper, lower, length),
        Authentication.NONE,
        None,
        InterfaceType.HDLC,
    )
    client.serverAddressSize = length
    return client


def _reply(client: GXDLMSClient, frame: bytes) -> GXReplyData:
    reply = GXReplyData()
    assert client.getData(GXByteBuffer(frame), reply)
    return reply


class _Server:
    """Our side of the link: builds the server's frames with fastcodec."""

    def __init__(self, hdlc: ModuleType, client_address: int, server: tuple[int, int, int]):
        self.hdlc = hdlc
        self.client_address = client_address
        self.address = hdlc.server_address(server[0], server[1], server[2])
        self.address_length = server[2]
        self.send_sequence = 0
        self.max_info_transmit = hdlc.DEFAULT_MAX_INFO_LENGTH

    def frame(self, kind: Any, information: bytes = b"", **fields: Any) -> bytes:
        frame: bytes = self.hdlc.build_frame(
            kind,
            self.client_address,
            self.address,
            information,
            destination_address_length=1,
            source_address_length=self.address_length,
            **fields,
        )
        return frame

    def parse_request(self, raw: bytes) -> Any:
        request = self.hdlc.parse_frame(raw)
        assert request.destination_address == self.address
        assert request.destination_address_length == self.address_length
        assert request.source_address == self.client_address
        return request

    def receive(self, client: GXDLMSClient, frames: list[Any]) -> tuple[Any, bytes]:
        """Take a request gurux sent as one or more frames, acknowledging each
        segment with RR as the server would; returns the last frame and the APDU."""
        reassembler = self.hdlc.Reassembler()
        for raw in frames:
            request = self.parse_request(bytes(raw))
            apdu = reassembler.add(request)
            if request.segmented:
                rr = self.frame(
                    self.hdlc.FrameKind.RR, receive_sequence=(request.send_sequence + 1) & 7
                )
                _reply(client, rr)
        assert apdu is not self.hdlc.NEED_DATA
        return request, apdu

    def deliver(self, client: GXDLMSClient, request: Any, information: bytes) -> GXReplyData:
        """Send a response as segmented I frames; check the RR gurux sends for each."""
        frames = self.respond(request, information)
        assert all(
            len(self.hdlc.parse_frame(f).information) <= self.max_info_transmit for f in frames
        )
        reply = GXReplyData()
        for index, frame in enumerate(frames):
            assert client.getData(GXByteBuffer(frame), reply)
            if index < len(frames) - 1:
                assert reply.isMoreData()
                rr = self.parse_request(bytes(client.receiverReady(reply)))
                # RR acknowledges the segment: N(R) is the next N(S) we send.
                assert rr.kind is self.hdlc.FrameKind.RR
                assert rr.receive_sequence == self.hdlc.parse_frame(frames[index + 1]).send_sequence
        assert not reply.isMoreData()
        return reply

    def respond(self, request: Any, information: bytes) -> list[bytes]:
        frames: list[bytes] = self.hdlc.build_segmented_frames(
            information,
            self.max_info_transmit,
            self.client_address,
            self.address,
            send_sequence=self.send_sequence,
            receive_sequence=(request.send_sequence + 1) & 7,
            destination_address_length=1,
            source_address_length=self.address_length,
        )
        self.send_sequence = (self.send_sequence + len(frames)) & 7
        return frames


def _connect(hdlc: ModuleType, client: GXDLMSClient, server: _Server, limits: Any) -> Any:
    """SNRM/UA with negotiation, then AARQ/AARE; returns the agreed parameters."""
    snrm = server.parse_request(bytes(client.snrmRequest()))
    assert snrm.kind is hdlc.FrameKind.SNRM and snrm.poll_final
    proposal = hdlc.parse_parameters(snrm.information)
    agreed = hdlc.negotiate_parameters(proposal, limits)
    server.max_info_transmit = agreed.max_info_transmit
    reply = _reply(client, server.frame(hdlc.FrameKind.UA, hdlc.build_parameters(agreed)))
    client.parseUAResponse(reply.data)
    # gurux states the UA from its own side: it receives what the server transmits.
    assert client.hdlcSettings.maxInfoRX == agreed.max_info_transmit
    assert client.hdlcSettings.maxInfoTX == agreed.max_info_receive
    assert client.hdlcSettings.windowSizeRX == agreed.window_transmit

    aarq, aarq_apdu = server.receive(client, client.aarqRequest())
    assert aarq.kind is hdlc.FrameKind.I
    assert aarq_apdu.startswith(LLC_REQUEST + b"\x60")  # AARQ tag
    client.parseAareResponse(server.deliver(client, aarq, AARE_INFORMATION).data)
    return agreed


# --- (a) gurux's frames parse with ours ---------------------------------------------------------


@SETTINGS
@given(
    client_address=client_addresses,
    server=server_addresses(),
    max_info=st.integers(32, 2030),
    window=st.integers(1, 7),
    written=st.binary(max_size=1200),
)
def test_gurux_client_frames_parse_into_what_gurux_meant(
    hdlc: ModuleType,
    client_address: int,
    server: tuple[int, int, int],
    max_info: int,
    window: int,
    written: bytes,
) -> None:
    client = _client(hdlc, client_address, server)
    client.hdlcSettings.maxInfoTX = max_info
    client.hdlcSettings.maxInfoRX = max_info
    client.hdlcSettings.windowSizeTX = window
    client.hdlcSettings.windowSizeRX = window
    ours = _Server(hdlc, client_address, server)

    snrm = ours.parse_request(bytes(client.snrmRequest()))
    assert snrm.kind is hdlc.FrameKind.SNRM
    proposal = hdlc.parse_parameters(snrm.information)
    assert proposal == hdlc.HdlcParameters(max_info, max_info, window, window)

    _connect_after_snrm(hdlc, client, ours, proposal)

    register, register_apdu = ours.receive(client, client.read(GXDLMSRegister("1.0.1.8.0.255"), 2))
    assert register.kind is hdlc.FrameKind.I
    # GET-Request-Normal: c0 01 invoke-id, class 3, 1.0.1.8.0.255, attribute 2, no selector.
    assert register_apdu == LLC_REQUEST + bytes.fromhex("c001c100030100010800ff0200")
    ours.deliver(client, register, LLC_RESPONSE + bytes.fromhex("c401c1000600000001"))

    # A SET of a long octet string: gurux segments it under the agreed length.
    data_object = GXDLMSData("0.0.96.1.0.255")
    data_object.value = written
    data_object.setDataType(2, DataType.OCTET_STRING)
    write_frames = client.write(data_object, 2)
    segments = [hdlc.parse_frame(bytes(f)) for f in write_frames]
    assert all(len(f.information) <= max_info for f in segments)
    assert [f.segmented for f in segments] == [True] * (len(segments) - 1) + [False]
    _, apdu = ours.receive(client, write_frames)
    # SET-Request-Normal (c1 01), class 1, 0.0.96.1.0.255, attribute 2, then the value.
    assert apdu.startswith(LLC_REQUEST + bytes.fromhex("c101c100010000600100ff0200"))
    assert apdu.endswith(b"\x09" + _axdr_length(len(written)) + written)

    release = ours.parse_request(bytes(client.releaseRequest()[0]))
    assert release.kind is hdlc.FrameKind.I
    assert release.information.startswith(LLC_REQUEST + b"\x62")  # RLRQ tag
    disc = ours.parse_request(bytes(client.disconnectRequest()))
    assert (disc.kind, disc.poll_final, disc.information) == (hdlc.FrameKind.DISC, True, b"")


def _connect_after_snrm(
    hdlc: ModuleType, client: GXDLMSClient, ours: _Server, proposal: Any
) -> None:
    agreed = hdlc.negotiate_parameters(proposal, hdlc.HdlcParameters(2030, 2030, 7, 7))
    ours.max_info_transmit = agreed.max_info_transmit
    client.parseUAResponse(
        _reply(client, ours.frame(hdlc.FrameKind.UA, hdlc.build_parameters(agreed))).data
    )
    aarq, _ = ours.receive(client, client.aarqRequest())
    client.parseAareResponse(ours.deliver(client, aarq, AARE_INFORMATION).data)


# --- (b) our frames are accepted by gurux --------------------------------------------------------


@SETTINGS
@given(
    client_address=client_addresses,
    server=server_addresses(),
    limits=st.builds(
        lambda transmit, receive: (transmit, receive),
        st.integers(32, 512),
        st.integers(32, 512),
    ),
    reads_before=st.integers(0, 9),
    value=st.binary(max_size=1500),
)
def test_gurux_accepts_our_ua_and_segmented_i_frames(
    hdlc: ModuleType,
    client_address: int,
    server: tuple[int, int, int],
    limits: tuple[int, int],
    reads_before: int,
    value: bytes,
) -> None:
    client = _client(hdlc, client_address, server)
    ours = _Server(hdlc, client_address, server)
    agreed = _connect(hdlc, client, ours, hdlc.HdlcParameters(limits[0], limits[1], 1, 1))

    register = GXDLMSRegister("1.0.1.8.0.255")
    # Move the sequence numbers round the modulo-8 counters first.
    for count in range(reads_before):
        request, _ = ours.receive(client, client.read(register, 2))
        response = LLC_RESPONSE + bytes.fromhex("c401c10006") + count.to_bytes(4, "big")
        client.updateValue(register, 2, ours.deliver(client, request, response).value)
        assert register.value == count

    data_object = GXDLMSData("0.0.96.1.0.255")
    request, _ = ours.receive(client, client.read(data_object, 2))
    octet_string = b"\x09" + _axdr_length(len(value)) + value
    response = LLC_RESPONSE + bytes.fromhex("c401c100") + octet_string
    reply = ours.deliver(client, request, response)
    assert agreed.max_info_transmit == ours.max_info_transmit
    assert bytes(reply.value) == value


def _axdr_length(length: int) -> bytes:
    if length < 0x80:
        return bytes((length,))
    if length < 0x100:
        return bytes((0x81, length))
    return b"\x82" + length.to_bytes(2, "big")


@SETTINGS
@given(client_address=client_addresses, server=server_addresses(), rr_sequence=st.integers(0, 7))
def test_our_control_frames_match_gurux_s(
    hdlc: ModuleType, client_address: int, server: tuple[int, int, int], rr_sequence: int
) -> None:
    # The same SNRM and DISC bytes from both sides of the comparison.
    client = _client(hdlc, client_address, server)
    upper, lower, length = server
    address = hdlc.server_address(upper, lower, length)
    ours_snrm = hdlc.build_frame(
        hdlc.FrameKind.SNRM, address, client_address, destination_address_length=length
    )
    assert bytes(client.snrmRequest()) == ours_snrm
    client.settings.connected = 1  # HDLC connected, as after a UA
    ours_disc = hdlc.build_frame(
        hdlc.FrameKind.DISC, address, client_address, destination_address_length=length
    )
    assert bytes(client.disconnectRequest()) == ours_disc
    rr = hdlc.parse_frame(
        hdlc.build_frame(
            hdlc.FrameKind.RR,
            address,
            client_address,
            receive_sequence=rr_sequence,
            destination_address_length=length,
        )
    )
    assert rr.receive_sequence == rr_sequence
