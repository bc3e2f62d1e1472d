"""IEC 62056-21 optical port: sign-on, mode C readout, programming mode.

(Selector: the compiled or the pure twin.)
See `fastcodec._iec62056_21_py` for the protocol, its spec clauses and the invariants.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._iec62056_21_py import (
        ACK,
        BAUD_RATES_MODE_B,
        BAUD_RATES_MODE_C,
        DEFAULT_MAX_FRAME_BYTES,
        EOT,
        ETX,
        NAK,
        SOH,
        STX,
        Ack,
        CommandMessage,
        DataMessage,
        DataReadout,
        DataSet,
        DataValue,
        ErrorMessage,
        Identification,
        Message,
        Nak,
        OpticalSplitter,
        OptionSelect,
        SignOnRequest,
        build_command,
        build_data_message,
        build_data_readout,
        build_identification,
        build_option_select,
        build_request,
        normalise_obis,
        parse_data_readout,
        parse_data_sets,
        parse_identification,
        parse_message,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("iec62056_21")
    ACK = _impl.ACK
    BAUD_RATES_MODE_B = _impl.BAUD_RATES_MODE_B
    BAUD_RATES_MODE_C = _impl.BAUD_RATES_MODE_C
    DEFAULT_MAX_FRAME_BYTES = _impl.DEFAULT_MAX_FRAME_BYTES
    EOT = _impl.EOT
    ETX = _impl.ETX
    NAK = _impl.NAK
    SOH = _impl.SOH
    STX = _impl.STX
    Ack = _impl.Ack
    CommandMessage = _impl.CommandMessage
    DataMessage = _impl.DataMessage
    DataReadout = _impl.DataReadout
    DataSet = _impl.DataSet
    DataValue = _impl.DataValue
    ErrorMessage = _impl.ErrorMessage
    Identification = _impl.Identification
    Message = _impl.Message
    Nak = _impl.Nak
    OpticalSplitter = _impl.OpticalSplitter
    OptionSelect = _impl.OptionSelect
    SignOnRequest = _impl.SignOnRequest
    build_command = _impl.build_command
    build_data_message = _impl.build_data_message
    build_data_readout = _impl.build_data_readout
    build_identification = _impl.build_identification
    build_option_select = _impl.build_option_select
    build_request = _impl.build_request
    normalise_obis = _impl.normalise_obis
    parse_data_readout = _impl.parse_data_readout
    parse_data_sets = _impl.parse_data_sets
    parse_identification = _impl.parse_identification
    parse_message = _impl.parse_message

__all__ = [
    "ACK",
    "BAUD_RATES_MODE_B",
    "BAUD_RATES_MODE_C",
    "DEFAULT_MAX_FRAME_BYTES",
    "EOT",
    "ETX",
    "IMPLEMENTATION",
    "NAK",
    "SOH",
    "STX",
    "Ack",
    "CommandMessage",
    "DataMessage",
    "DataReadout",
    "DataSet",
    "DataValue",
    "ErrorMessage",
    "Identification",
    "Message",
    "Nak",
    "OpticalSplitter",
    "OptionSelect",
    "SignOnRequest",
    "build_command",
    "build_data_message",
    "build_data_readout",
    "build_identification",
    "build_option_select",
    "build_request",
    "normalise_obis",
    "parse_data_readout",
    "parse_data_sets",
    "parse_identification",
    "parse_message",
]
