"""DLMS HDLC frames (IEC 62056-46) and the IEC 62056-47 wrapper (selector: compiled or pure twin).

See `fastcodec._hdlc_py` for the frame format, the strategy and the spec clauses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._hdlc_py import (
        DEFAULT_MAX_INFO_LENGTH,
        DEFAULT_WINDOW_SIZE,
        FLAG,
        MAX_FRAME_LENGTH,
        NEED_DATA,
        WRAPPER_HEADER_LENGTH,
        WRAPPER_VERSION,
        FrameKind,
        FrameSplitter,
        HdlcFrame,
        HdlcParameters,
        NeedData,
        Reassembler,
        WrapperFrame,
        WrapperSplitter,
        build_frame,
        build_parameters,
        build_segmented_frames,
        build_wrapper,
        decode_control,
        encode_address,
        encode_control,
        negotiate_parameters,
        parse_frame,
        parse_parameters,
        parse_wrapper,
        server_address,
        server_address_parts,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("hdlc")
    DEFAULT_MAX_INFO_LENGTH = _impl.DEFAULT_MAX_INFO_LENGTH
    DEFAULT_WINDOW_SIZE = _impl.DEFAULT_WINDOW_SIZE
    FLAG = _impl.FLAG
    MAX_FRAME_LENGTH = _impl.MAX_FRAME_LENGTH
    NEED_DATA = _impl.NEED_DATA
    WRAPPER_HEADER_LENGTH = _impl.WRAPPER_HEADER_LENGTH
    WRAPPER_VERSION = _impl.WRAPPER_VERSION
    FrameKind = _impl.FrameKind
    FrameSplitter = _impl.FrameSplitter
    HdlcFrame = _impl.HdlcFrame
    HdlcParameters = _impl.HdlcParameters
    NeedData = _impl.NeedData
    Reassembler = _impl.Reassembler
    WrapperFrame = _impl.WrapperFrame
    WrapperSplitter = _impl.WrapperSplitter
    build_frame = _impl.build_frame
    build_parameters = _impl.build_parameters
    build_segmented_frames = _impl.build_segmented_frames
    build_wrapper = _impl.build_wrapper
    decode_control = _impl.decode_control
    encode_address = _impl.encode_address
    encode_control = _impl.encode_control
    negotiate_parameters = _impl.negotiate_parameters
    parse_frame = _impl.parse_frame
    parse_parameters = _impl.parse_parameters
    parse_wrapper = _impl.parse_wrapper
    server_address = _impl.server_address
    server_address_parts = _impl.server_address_parts

__all__ = [
    "DEFAULT_MAX_INFO_LENGTH",
    "DEFAULT_WINDOW_SIZE",
    "FLAG",
    "IMPLEMENTATION",
    "MAX_FRAME_LENGTH",
    "NEED_DATA",
    "WRAPPER_HEADER_LENGTH",
    "WRAPPER_VERSION",
    "FrameKind",
    "FrameSplitter",
    "HdlcFrame",
    "HdlcParameters",
    "NeedData",
    "Reassembler",
    "WrapperFrame",
    "WrapperSplitter",
    "build_frame",
    "build_parameters",
    "build_segmented_frames",
    "build_wrapper",
    "decode_control",
    "encode_address",
    "encode_control",
    "negotiate_parameters",
    "parse_frame",
    "parse_parameters",
    "parse_wrapper",
    "server_address",
    "server_address_parts",
]
