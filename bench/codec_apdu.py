"""DLMS APDU codec: fastcodec compiled and pure beside gurux-dlms's client.

Cases, each checked against gurux before timing:
- parse an AARE (LN, accepted, InitiateResponse): ours `parse_apdu` vs gurux
  `GXDLMSClient.parseAareResponse` on the same APDU bytes;
- build an LLS AARQ: ours `encode_apdu` vs gurux `aarqRequest` (which also
  writes the 8-byte wrapper header);
- parse a GET-Response-Normal and decode its value: ours `parse_apdu` +
  `fastcodec.axdr.decode` vs gurux `getData` on the wrapper frame.
"""

from __future__ import annotations

from typing import Any

from bench._timing import machine_line, report, seconds_per_call
from fastcodec import _apdu_c, _apdu_py, _axdr_py, axdr
from fastcodec._apdu_types import (
    Aare,
    Aarq,
    AcseServiceUserDiagnostic,
    AssociationResult,
    AuthenticationMechanism,
    Conformance,
    InitiateRequest,
    InitiateResponse,
)

PASSWORD = "12345678"


def _wrap(apdu_bytes: bytes) -> bytes:
    header = (1, 1, 16, len(apdu_bytes))
    return b"".join(value.to_bytes(2, "big") for value in header) + apdu_bytes


def _gurux_client() -> Any:
    from gurux_dlms import GXDLMSClient
    from gurux_dlms.enums import Authentication, InterfaceType

    return GXDLMSClient(True, 16, 1, Authentication.LOW, PASSWORD, InterfaceType.WRAPPER)


def run() -> None:
    from gurux_dlms import GXByteBuffer, GXReplyData

    print(machine_line())
    aare = Aare(
        AssociationResult.ACCEPTED,
        AcseServiceUserDiagnostic.NULL,
        user_information=InitiateResponse(Conformance(0x001E1D), 1024),
    )
    aare_bytes = _apdu_py.encode_apdu(aare)
    client = _gurux_client()
    client.aarqRequest()
    client.parseAareResponse(GXByteBuffer(aare_bytes))
    assert (
        client.maxReceivePDUSize
        == _apdu_c.parse_apdu(aare_bytes).user_information.server_max_receive_pdu_size
    )  # type: ignore[union-attr]

    def gurux_parse_aare() -> None:
        client.parseAareResponse(GXByteBuffer(aare_bytes))

    report(
        f"parse AARE ({len(aare_bytes)} B)",
        {
            "fastcodec cython": seconds_per_call(lambda: _apdu_c.parse_apdu(aare_bytes)),
            "fastcodec python": seconds_per_call(lambda: _apdu_py.parse_apdu(aare_bytes)),
            "gurux-dlms": seconds_per_call(gurux_parse_aare),
        },
        baseline="gurux-dlms",
    )

    aarq = Aarq(
        user_information=InitiateRequest(Conformance(0x401E5D), 0xFFFF),
        mechanism=AuthenticationMechanism.LLS,
        authentication_value=PASSWORD.encode(),
        sender_acse_requirements=b"\x07\x80",
    )
    gurux_aarq = bytes(_gurux_client().aarqRequest()[0])[8:]
    assert _apdu_c.encode_apdu(aarq) == _apdu_py.encode_apdu(aarq) == gurux_aarq
    builder = _gurux_client()
    report(
        f"build LLS AARQ ({len(gurux_aarq)} B)",
        {
            "fastcodec cython": seconds_per_call(lambda: _apdu_c.encode_apdu(aarq)),
            "fastcodec python": seconds_per_call(lambda: _apdu_py.encode_apdu(aarq)),
            "gurux-dlms": seconds_per_call(builder.aarqRequest),
        },
        baseline="gurux-dlms",
    )

    response = bytes.fromhex("c401c10006000186a0")  # double-long-unsigned 100000
    frame = _wrap(response)

    def gurux_get() -> object:
        reply = GXReplyData()
        client.getData(GXByteBuffer(frame), reply)
        return reply.value

    def ours_compiled() -> object:
        return axdr.decode(_apdu_c.parse_apdu(response).result)  # type: ignore[union-attr, arg-type]

    def ours_pure() -> object:
        return _axdr_py.decode(_apdu_py.parse_apdu(response).result)  # type: ignore[union-attr, arg-type]

    assert gurux_get() == ours_compiled() == ours_pure() == 100000
    report(
        f"parse+decode GET response ({len(response)} B)",
        {
            "fastcodec cython": seconds_per_call(ours_compiled),
            "fastcodec python": seconds_per_call(ours_pure),
            "gurux-dlms": seconds_per_call(gurux_get),
        },
        baseline="gurux-dlms",
    )
