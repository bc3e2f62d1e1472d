"""HDLC frame parsing: fastcodec compiled and pure beside gurux-dlms's own HDLC layer.

Input: one 692-byte I frame (server 1 to client 16, 1-byte addresses) carrying a
GET-Response-Normal with a 24-row profile buffer (rows of {clock, status u8,
1.8.0 u32, 2.8.0 u32}), the frame the project's 20 µs goal (HDLC + data
decoding) is stated for. Each implementation checks HCS and FCS and extracts the
information field:

- fastcodec: `parse_frame` (compiled `_hdlc_c`, pure `_hdlc_py`), and the
  splitter path (`FrameSplitter.feed` + `next_frame`) a reader would use;
- gurux-dlms: `GXDLMS.getHdlcData` + `GXDLMS.getDataFromFrame`, the HDLC layer of
  `GXDLMSClient.getData` without the APDU decoding that follows it.

Every result is checked against ours before timing.
"""

from __future__ import annotations

from collections.abc import Callable
from types import ModuleType

from bench._timing import machine_line, report, seconds_per_call
from fastcodec import _hdlc_c, _hdlc_py

GOAL_HDLC_PLUS_DATA_US = 20.0


def _profile_buffer_information() -> bytes:
    rows = []
    for row in range(24):
        hour, minute = divmod(row * 15, 60)
        clock = bytes((0x07, 0xE8, 0x03, 0x01, 0xFF, hour, minute, 0, 0, 0x00, 0x00, 0x00))
        rows.append(
            b"\x02\x04"
            + b"\x09\x0c"
            + clock
            + b"\x11\x00"
            + b"\x06"
            + (100_000 + 37 * row).to_bytes(4, "big")
            + b"\x06"
            + (5_000 + 3 * row).to_bytes(4, "big")
        )
    # LLC, GET-Response-Normal, invoke id 0xC1, data, array of 24 structures.
    return bytes.fromhex("e6e700c401c1000118") + b"".join(rows)


def build_frame() -> bytes:
    """The 692-byte frame every implementation parses."""
    frame: bytes = _hdlc_py.build_frame(
        _hdlc_py.FrameKind.I,
        16,
        1,
        _profile_buffer_information(),
        send_sequence=0,
        receive_sequence=1,
    )
    return frame


def _gurux_parser(frame: bytes) -> Callable[[], bytes]:
    from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
    from gurux_dlms.enums import Authentication, InterfaceType
    from gurux_dlms.GXDLMS import GXDLMS

    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.HDLC)
    settings = client.settings
    # gurux checks the I-frame sequence against the link state: put it where it is
    # after the client sent an AARQ I(0, 0), before each parse, so every call
    # accepts the frame as the AARE-like I(0, 1) response.
    settings.resetFrameSequence()
    settings.senderFrame = 0x10
    receiver_frame = settings.receiverFrame

    def parse() -> bytes:
        settings.receiverFrame = receiver_frame
        settings.senderFrame = 0x10
        reply = GXByteBuffer(frame)
        data = GXReplyData()
        GXDLMS.getHdlcData(False, settings, reply, data, None)
        GXDLMS.getDataFromFrame(reply, data, True)
        return bytes(data.data.array())

    return parse


def run() -> None:
    frame = build_frame()
    assert len(frame) == 692, len(frame)
    information = _hdlc_py.parse_frame(frame).information
    gurux_parse = _gurux_parser(frame)
    # gurux strips the 3 LLC bytes; the rest must be the same APDU.
    assert gurux_parse() == information[3:], "gurux-dlms extracted another payload"
    assert _hdlc_c.parse_frame(frame) == _hdlc_py.parse_frame(frame)

    def splitter_call(module: ModuleType) -> Callable[[], object]:
        splitter = module.FrameSplitter()

        def call() -> object:
            splitter.feed(frame)
            return splitter.next_frame()

        assert call() == _hdlc_py.parse_frame(frame)
        return call

    compiled_split = splitter_call(_hdlc_c)
    pure_split = splitter_call(_hdlc_py)
    print(machine_line())
    report(
        "HDLC parse 692 B I frame (HCS+FCS)",
        {
            "fastcodec cython": seconds_per_call(lambda: _hdlc_c.parse_frame(frame)),
            "fastcodec python": seconds_per_call(lambda: _hdlc_py.parse_frame(frame)),
            "gurux-dlms": seconds_per_call(gurux_parse),
        },
        baseline="gurux-dlms",
    )
    gurux_s = seconds_per_call(gurux_parse)
    compiled_split_s = seconds_per_call(compiled_split)
    report(
        "HDLC splitter 692 B feed+next_frame",
        {
            "fastcodec cython": compiled_split_s,
            "fastcodec python": seconds_per_call(pure_split),
            "gurux-dlms": gurux_s,
        },
        baseline="gurux-dlms",
    )
    print(
        f"HDLC share of the {GOAL_HDLC_PLUS_DATA_US:.0f} µs HDLC+data goal (compiled splitter): "
        f"{compiled_split_s * 1e6 / GOAL_HDLC_PLUS_DATA_US:.0%}"
    )


if __name__ == "__main__":
    run()
