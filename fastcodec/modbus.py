"""Modbus RTU codec (selector: compiled or pure twin).

Request builders, response and request parsers, the resynchronising stream
splitter for RS-485 buses and the register decoders. See
`fastcodec._modbus_py` for the strategy and the spec clauses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastcodec import _select

if TYPE_CHECKING:
    from fastcodec._modbus_py import (
        MAX_ADU_BYTES,
        NEED_DATA,
        DataType,
        DeviceIdentificationRequest,
        DeviceIdentificationResponse,
        Direction,
        ExceptionCode,
        ExceptionResponse,
        Expect,
        FunctionCode,
        NeedData,
        ReadBitsResponse,
        ReadRegistersResponse,
        ReadRequest,
        RegisterField,
        RegisterOrder,
        RtuSplitter,
        WriteMultipleRequest,
        WriteMultipleResponse,
        WriteSingleCoilResponse,
        WriteSingleRegisterResponse,
        WriteSingleRequest,
        build_read_coils,
        build_read_device_identification,
        build_read_discrete_inputs,
        build_read_holding_registers,
        build_read_input_registers,
        build_write_multiple_coils,
        build_write_multiple_registers,
        build_write_single_coil,
        build_write_single_register,
        decode_floats,
        decode_registers,
        encode_value,
        parse_request,
        parse_response,
    )

    IMPLEMENTATION: str
else:
    _impl, IMPLEMENTATION = _select.load("modbus")
    MAX_ADU_BYTES = _impl.MAX_ADU_BYTES
    NEED_DATA = _impl.NEED_DATA
    DataType = _impl.DataType
    DeviceIdentificationRequest = _impl.DeviceIdentificationRequest
    DeviceIdentificationResponse = _impl.DeviceIdentificationResponse
    Direction = _impl.Direction
    ExceptionCode = _impl.ExceptionCode
    ExceptionResponse = _impl.ExceptionResponse
    Expect = _impl.Expect
    FunctionCode = _impl.FunctionCode
    NeedData = _impl.NeedData
    ReadBitsResponse = _impl.ReadBitsResponse
    ReadRegistersResponse = _impl.ReadRegistersResponse
    ReadRequest = _impl.ReadRequest
    RegisterField = _impl.RegisterField
    RegisterOrder = _impl.RegisterOrder
    RtuSplitter = _impl.RtuSplitter
    WriteMultipleRequest = _impl.WriteMultipleRequest
    WriteMultipleResponse = _impl.WriteMultipleResponse
    WriteSingleCoilResponse = _impl.WriteSingleCoilResponse
    WriteSingleRegisterResponse = _impl.WriteSingleRegisterResponse
    WriteSingleRequest = _impl.WriteSingleRequest
    build_read_coils = _impl.build_read_coils
    build_read_device_identification = _impl.build_read_device_identification
    build_read_discrete_inputs = _impl.build_read_discrete_inputs
    build_read_holding_registers = _impl.build_read_holding_registers
    build_read_input_registers = _impl.build_read_input_registers
    build_write_multiple_coils = _impl.build_write_multiple_coils
    build_write_multiple_registers = _impl.build_write_multiple_registers
    build_write_single_coil = _impl.build_write_single_coil
    build_write_single_register = _impl.build_write_single_register
    decode_floats = _impl.decode_floats
    decode_registers = _impl.decode_registers
    encode_value = _impl.encode_value
    parse_request = _impl.parse_request
    parse_response = _impl.parse_response

__all__ = [
    "IMPLEMENTATION",
    "MAX_ADU_BYTES",
    "NEED_DATA",
    "DataType",
    "DeviceIdentificationRequest",
    "DeviceIdentificationResponse",
    "Direction",
    "ExceptionCode",
    "ExceptionResponse",
    "Expect",
    "FunctionCode",
    "NeedData",
    "ReadBitsResponse",
    "ReadRegistersResponse",
    "ReadRequest",
    "RegisterField",
    "RegisterOrder",
    "RtuSplitter",
    "WriteMultipleRequest",
    "WriteMultipleResponse",
    "WriteSingleCoilResponse",
    "WriteSingleRegisterResponse",
    "WriteSingleRequest",
    "build_read_coils",
    "build_read_device_identification",
    "build_read_discrete_inputs",
    "build_read_holding_registers",
    "build_read_input_registers",
    "build_write_multiple_coils",
    "build_write_multiple_registers",
    "build_write_single_coil",
    "build_write_single_register",
    "decode_floats",
    "decode_registers",
    "encode_value",
    "parse_request",
    "parse_response",
]
