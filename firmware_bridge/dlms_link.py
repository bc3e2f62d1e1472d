"""DLMS APDUs over a byte pipe, framed by fastcodec: HDLC I frames or the TCP wrapper,
and the GET service with block transfer — the reader's hot path for profile buffers.

What it implements:

- IEC 62056-46 (HDLC, client side, window size 1), inside a connection someone
  else opened (gurux's SNRM/UA and AARQ/AARE in `edge_agent.adapters.dlms_reader`):
  the request goes out as I frames with the LLC header E6 E6 00, segmented at
  the negotiated maximum information length (§6.4.4.3, each segment but the
  last waits for the meter's RR); the answer comes back as I frames, one per RR
  we send while the S bit says more follows; N(S)/N(R) are ours for the
  exchange and start from, and end in, `HdlcSequence` — the caller carries the
  state over from and back to whoever frames before and after us.
- IEC 62056-47 (the wrapper over TCP): version, wPorts, length, APDU.
- Green Book §9.3.5 GET-Request-Normal with selective access, answered
  normally or with datablocks (GET-Request-Next for each block,
  `fastcodec.apdu.BlockReassembler`).

Strategy: fastcodec does every byte (FrameSplitter, Reassembler, WrapperSplitter,
parse_apdu/encode_apdu); this module only moves bytes and keeps the link state.
A garbled frame is dropped and counted by the splitter; when the line then goes
quiet, the client polls the meter again with RR carrying the unchanged N(R),
which IEC 62056-46 servers answer by sending their last frame again (at most
`repolls` times per frame). An RR whose N(R) shows the meter missed our I frame
gets the frame again.

What the GET refuses and what it hands back: a data-access-result, an
exception response or a confirmed-service-error is the meter's verdict
(`DataAccessError`); an answer this path does not decode is returned as
`Unhandled(reason)` so that the caller can ask again through gurux. Those are:
an APDU fastcodec cannot parse (an unknown tag — ciphered glo-/ded- APDUs,
general-block-transfer —, an unknown GET-Response choice, a malformed or
truncated APDU: also counted in `undecoded_answers`), an APDU of another kind
(GET-Response-With-List, Data-Notification, …), an answer whose
invoke-id-and-priority is not the request's (a meter that clears the priority
bit), and a normal answer in the middle of a block transfer. The Data inside a
normal answer is not looked at here: the reader decodes it, whichever path
brought it.

Invariants: every wait is bounded (`DlmsTimeout`); any bytes from the meter give
an answer, `Unhandled` or a `DlmsError`, never another exception.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from fastcodec import apdu, hdlc
from fastcodec.exceptions import CodecError
from fastcodec.hdlc import FrameKind, HdlcFrame
from firmware_bridge.exceptions import DataAccessError, DlmsError, DlmsTimeout
from firmware_bridge.links import BytePipe

log = logging.getLogger(__name__)

__all__ = [
    "LLC_REQUEST",
    "LLC_RESPONSE",
    "ApduLink",
    "DlmsLinkStatistics",
    "HdlcApduLink",
    "HdlcSequence",
    "Unhandled",
    "WrapperApduLink",
    "get",
]

LLC_REQUEST = b"\xe6\xe6\x00"
LLC_RESPONSE = b"\xe6\xe7\x00"
_READ_BYTES = 4096
# A line that stays quiet this long after a garbled frame has nothing more to
# say: poll again at once rather than wait for the whole answer timeout.
_QUIET_AFTER_BAD_FRAME_S = 0.1
_QUIET_CHARACTERS = 40


@dataclass
class DlmsLinkStatistics:
    """Counters of the fastcodec path, kept across exchanges of one session.

    Attributes:
        exchanges: APDUs sent and answered.
        frames_sent, frames_received: HDLC frames (or wrapper PDUs) each way.
        bad_frames: frames from the meter dropped by the splitter (FCS, HCS, length).
        discarded_bytes: bytes on the line that were in no frame (noise, halves).
        repolls: RR frames sent again to ask for a frame lost or garbled.
        retransmissions: our I frames sent again because the meter missed them.
        fallbacks: GETs handed back to gurux (answer not handled here).
        undecoded_answers: answers fastcodec could not decode at all (an unknown
            APDU tag, a malformed or truncated APDU); each is also a fallback.
    """

    exchanges: int = 0
    frames_sent: int = 0
    frames_received: int = 0
    bad_frames: int = 0
    discarded_bytes: int = 0
    repolls: int = 0
    retransmissions: int = 0
    fallbacks: int = 0
    undecoded_answers: int = 0


@dataclass
class HdlcSequence:
    """The HDLC connection's sequence state, client side (ISO/IEC 13239 V(S), V(R)).

    Attributes:
        send: V(S), the N(S) of our next I frame.
        receive: V(R), the N(S) we expect in the meter's next I frame.
        last_sent_rr: our last frame was an RR (else an I frame).
        last_sent_receive: the N(R) our last frame carried.
        last_received_receive: the N(R) of the meter's last I frame.
    """

    send: int
    receive: int
    last_sent_rr: bool = False
    last_sent_receive: int = 0
    last_received_receive: int = 0


class ApduLink(Protocol):
    """One APDU out, the answer's APDU back."""

    name: str
    statistics: DlmsLinkStatistics

    def exchange(self, request: bytes, what: str) -> bytes:
        """Send `request`, return the meter's answer (LLC or wrapper header removed).

        Raises:
            DlmsTimeout: no complete answer in time.
            DlmsError: the meter dropped the link, or the link state is lost.
            LinkClosed: the port went away.
        """
        ...


@dataclass(frozen=True)
class Unhandled:
    """An answer this path does not decode; the caller asks again another way."""

    reason: str


class WrapperApduLink:
    """APDUs in IEC 62056-47 wrapper PDUs over a TCP pipe.

    Args:
        pipe: the TCP connection (the association is already open on it).
        client_wport: our wPort (the client SAP).
        server_wport: the meter's logical device.
        timeout_s: the longest wait for one answer.
        name: the meter, in messages.
    """

    def __init__(
        self,
        pipe: BytePipe,
        *,
        client_wport: int,
        server_wport: int,
        timeout_s: float,
        name: str,
        statistics: DlmsLinkStatistics | None = None,
    ) -> None:
        self.pipe, self.name, self.timeout_s = pipe, name, timeout_s
        self.client_wport, self.server_wport = client_wport, server_wport
        self.statistics = statistics or DlmsLinkStatistics()
        self._splitter = hdlc.WrapperSplitter()

    def exchange(self, request: bytes, what: str) -> bytes:
        self._write(hdlc.build_wrapper(request, self.client_wport, self.server_wport))
        deadline = time.monotonic() + self.timeout_s
        while True:
            try:
                frame = self._splitter.next_frame()
            except CodecError as exc:  # TCP cannot resynchronise: the stream is lost
                raise DlmsError(self.name, f"answer to {what}: bad wrapper header: {exc}") from exc
            if frame is not hdlc.NEED_DATA:
                assert isinstance(frame, hdlc.WrapperFrame)
                self.statistics.frames_received += 1
                if frame.destination_wport == self.client_wport:
                    self.statistics.exchanges += 1
                    return frame.apdu
                continue  # for another client on a shared connection: not ours
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DlmsTimeout(
                    self.name, f"no complete answer to {what} within {self.timeout_s:g} s"
                )
            chunk = self.pipe.read(_READ_BYTES, remaining)
            if chunk:
                log.debug("%s <- %s", self.name, chunk.hex(" "))
                try:
                    self._splitter.feed(chunk)
                except CodecError as exc:
                    raise DlmsError(self.name, f"answer to {what}: {exc}") from exc

    def _write(self, data: bytes) -> None:
        log.debug("%s -> %s", self.name, data.hex(" "))
        self.pipe.write(data)
        self.statistics.frames_sent += 1


class HdlcApduLink:
    """APDUs in HDLC I frames (window size 1) inside an open HDLC connection.

    Args:
        pipe: the serial line (RS-485, optical port in mode E).
        client_address: our HDLC address (1 byte).
        server_address: the meter's address value (`fastcodec.hdlc.server_address`).
        server_address_length: 1, 2 or 4 bytes.
        sequence: V(S)/V(R) where the connection is now; updated as frames go.
        max_info_transmit: the negotiated maximum information length we may send.
        timeout_s: the longest wait for one frame.
        repolls: RR polls per frame after a garbled or lost frame.
        name: the meter, in messages.
    """

    def __init__(
        self,
        pipe: BytePipe,
        *,
        client_address: int,
        server_address: int,
        server_address_length: int,
        sequence: HdlcSequence,
        max_info_transmit: int,
        timeout_s: float,
        repolls: int = 1,
        name: str,
        statistics: DlmsLinkStatistics | None = None,
    ) -> None:
        self.pipe, self.name, self.timeout_s = pipe, name, timeout_s
        self.client_address = client_address
        self.server_address, self.server_address_length = server_address, server_address_length
        self.sequence = sequence
        self.max_info_transmit = max_info_transmit
        self.repolls = repolls
        self.statistics = statistics or DlmsLinkStatistics()
        self._splitter = hdlc.FrameSplitter()
        self._reassembler = hdlc.Reassembler()
        self._bad_frames_seen = 0
        self._last_i_frame = b""
        quiet = _QUIET_CHARACTERS * pipe.character_time_s
        self._quiet_s = max(_QUIET_AFTER_BAD_FRAME_S, quiet)

    def exchange(self, request: bytes, what: str) -> bytes:
        segments = hdlc.build_segmented_frames(
            LLC_REQUEST + request,
            self.max_info_transmit,
            self.server_address,
            self.client_address,
            send_sequence=self.sequence.send,
            receive_sequence=self.sequence.receive,
            destination_address_length=self.server_address_length,
            source_address_length=1,
        )
        for index, segment in enumerate(segments):
            self._send_i_frame(segment)
            if index < len(segments) - 1:
                self._await_acknowledgement(what)
        self._reassembler.reset()
        while True:
            frame = self._next_frame(what)
            if frame.kind is FrameKind.RR:
                self._on_receive_ready(frame)
                continue
            whole = self._take_i_frame(frame, what)
            if whole is None:
                continue
            if whole is hdlc.NEED_DATA:
                self._send_receive_ready()
                continue
            assert isinstance(whole, bytes)
            self.statistics.exchanges += 1
            return whole[3:] if whole.startswith(LLC_RESPONSE) else whole

    # -- sending ----------------------------------------------------------------

    def _write(self, frame: bytes) -> None:
        log.debug("%s -> %s", self.name, frame.hex(" "))
        self.pipe.write(frame)
        self.statistics.frames_sent += 1

    def _send_i_frame(self, frame: bytes) -> None:
        self._write(frame)
        self._last_i_frame = frame
        self.sequence.last_sent_rr = False
        self.sequence.last_sent_receive = self.sequence.receive
        self.sequence.send = (self.sequence.send + 1) & 7

    def _send_receive_ready(self) -> None:
        self._write(
            hdlc.build_frame(
                FrameKind.RR,
                self.server_address,
                self.client_address,
                receive_sequence=self.sequence.receive,
                destination_address_length=self.server_address_length,
                source_address_length=1,
            )
        )
        self.sequence.last_sent_rr = True
        self.sequence.last_sent_receive = self.sequence.receive

    # -- receiving --------------------------------------------------------------

    def _await_acknowledgement(self, what: str) -> None:
        """Window 1: the meter's RR for a segment before we send the next."""
        while True:
            frame = self._next_frame(what)
            if frame.kind is FrameKind.RR and frame.receive_sequence == self.sequence.send:
                return
            if frame.kind is FrameKind.RR:
                self._on_receive_ready(frame)
                continue
            raise DlmsError(self.name, f"{what}: {frame.kind.name} frame while sending segments")

    def _on_receive_ready(self, frame: HdlcFrame) -> None:
        """The meter's RR while we wait: its N(R) says whether our I frame arrived."""
        if frame.receive_sequence != self.sequence.send and self._last_i_frame:
            self.statistics.retransmissions += 1
            log.info("%s: the meter missed our I frame: sending it again", self.name)
            self._write(self._last_i_frame)

    def _take_i_frame(self, frame: HdlcFrame, what: str) -> bytes | hdlc.NeedData | None:
        if frame.kind is not FrameKind.I:
            raise DlmsError(
                self.name, f"{what}: the meter answered {frame.kind.name}: HDLC connection lost"
            )
        if frame.send_sequence == (self.sequence.receive - 1) & 7:
            return None  # the meter repeated a frame we already have
        if frame.send_sequence != self.sequence.receive:
            raise DlmsError(
                self.name,
                f"{what}: I frame N(S)={frame.send_sequence}, expected {self.sequence.receive}",
            )
        self.sequence.receive = (self.sequence.receive + 1) & 7
        self.sequence.last_received_receive = frame.receive_sequence or 0
        try:
            return self._reassembler.add(frame)
        except CodecError as exc:
            raise DlmsError(self.name, f"{what}: {exc}") from exc

    def _next_frame(self, what: str) -> HdlcFrame:
        """The meter's next frame to us; polls again (RR) after a garbled or lost one."""
        deadline = time.monotonic() + self.timeout_s
        polls = 0
        while True:
            frame = self._splitter.next_frame()
            self._count_splitter()
            if frame is not hdlc.NEED_DATA:
                assert isinstance(frame, HdlcFrame)
                if self._is_ours(frame):
                    self.statistics.frames_received += 1
                    return frame
                continue
            now = time.monotonic()
            garbled = self._splitter.bad_frames > self._bad_frames_seen
            wait = min(deadline - now, self._quiet_s) if garbled else deadline - now
            chunk = self.pipe.read(_READ_BYTES, max(wait, 0.0)) if wait > 0 else b""
            if chunk:
                log.debug("%s <- %s", self.name, chunk.hex(" "))
                self._feed(chunk, what)
                continue
            if not garbled and time.monotonic() < deadline:
                continue
            if polls >= self.repolls:
                raise DlmsTimeout(
                    self.name, f"no (complete) answer to {what} within {self.timeout_s:g} s"
                )
            polls += 1
            self._bad_frames_seen = self._splitter.bad_frames
            self.statistics.repolls += 1
            log.info("%s: %s: frame lost or garbled, polling again", self.name, what)
            self._send_receive_ready()
            deadline = time.monotonic() + self.timeout_s

    def _feed(self, chunk: bytes, what: str) -> None:
        try:
            self._splitter.feed(chunk)
        except CodecError as exc:  # only when nobody drains: cannot happen here
            raise DlmsError(self.name, f"answer to {what}: {exc}") from exc

    def _count_splitter(self) -> None:
        self.statistics.bad_frames = self._splitter.bad_frames
        self.statistics.discarded_bytes = self._splitter.discarded_bytes

    def _is_ours(self, frame: HdlcFrame) -> bool:
        # On RS-485 we may hear our own frames (echo) and other meters' traffic.
        return (
            frame.destination_address == self.client_address
            and frame.source_address == self.server_address
        )


# --- the GET service -----------------------------------------------------------------


def _parse(link: ApduLink, answer: bytes) -> apdu.Apdu | Unhandled:
    try:
        return apdu.parse_apdu(answer)
    except CodecError as exc:
        link.statistics.undecoded_answers += 1
        tag = f"0x{answer[0]:02X}" if answer else "empty"
        log.debug("%s: undecoded answer %s", link.name, answer[:64].hex(" "))
        return Unhandled(f"answer APDU {tag} not decoded here: {exc}")


def get(
    link: ApduLink,
    request: apdu.GetRequestNormal,
    what: str,
    *,
    max_bytes: int = 16 * 1024 * 1024,
) -> bytes | Unhandled:
    """GET one attribute; its Data encoding, reassembled from datablocks if need be.

    Args:
        link: the APDU link (HDLC or wrapper).
        request: the GET-Request-Normal (selective access included).
        what: for messages ("GET 1-0:99.1.0.255/2 by range").
        max_bytes: the largest Data accepted over block transfer.

    Returns:
        The raw Data bytes, or `Unhandled` when the answer is not one this path
        decodes.

    Raises:
        DataAccessError: the meter refused (data-access-result, exception
            response, confirmed-service-error) or broke the block transfer.
        DlmsTimeout, DlmsError, LinkClosed: from the link.
    """
    answer = _parse(link, link.exchange(apdu.encode_apdu(request), what))
    blocks: apdu.BlockReassembler | None = None
    invoke = request.invoke_id_and_priority
    while True:
        if isinstance(answer, Unhandled):
            return answer
        if isinstance(answer, apdu.ExceptionResponse):
            raise DataAccessError(
                link.name,
                f"{what} refused: exception response ({_name(answer.state_error)}, "
                f"{_name(answer.service_error)})",
            )
        if isinstance(answer, apdu.ConfirmedServiceError):
            # A refusal too (some meters refuse a GET so, Green Book §9.5): asking
            # gurux again would only bring the same refusal, read as "unreadable".
            raise DataAccessError(
                link.name,
                f"{what} refused: confirmed-service-error ({_name(answer.service)}, "
                f"{_name(answer.error_type)} {answer.error_value})",
            )
        if not isinstance(answer, apdu.GetResponseNormal | apdu.GetResponseWithDatablock):
            return Unhandled(f"{what}: answer {type(answer).__name__} not handled here")
        if answer.invoke_id_and_priority != invoke:
            return Unhandled(
                f"{what}: answer for invoke-id 0x{answer.invoke_id_and_priority:02X},"
                f" asked 0x{invoke:02X}"
            )
        if isinstance(answer, apdu.GetResponseNormal):
            if blocks is not None:
                return Unhandled(f"{what}: a normal answer in the middle of a block transfer")
            if isinstance(answer.result, bytes):
                return answer.result
            raise _refused(link.name, what, answer.result)
        blocks = blocks or apdu.BlockReassembler(max_bytes)
        try:
            step = blocks.receive(answer)
        except CodecError as exc:
            raise DataAccessError(link.name, f"{what}: block transfer broken: {exc}") from exc
        if isinstance(step, apdu.BlockTransferComplete):
            return step.data
        if isinstance(step, apdu.BlockTransferFailed):
            raise _refused(link.name, what, step.result)
        answer = _parse(link, link.exchange(apdu.encode_apdu(step), what))


def _name(value: object) -> str:
    return getattr(value, "name", str(value)).lower().replace("_", "-")


def _refused(meter: str, what: str, result: object) -> DataAccessError:
    code = int(result)  # type: ignore[call-overload]
    return DataAccessError(
        meter, f"{what} refused: data-access-result {code} ({_name(result)})", code
    )
