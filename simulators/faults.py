"""Faults a simulated meter can be told to show, switchable while it runs."""

from __future__ import annotations

from dataclasses import dataclass

# The values `MeterFaults.profile_answer` takes ("" is a healthy meter).
PROFILE_ANSWERS = ("", "normal-priority", "service-error", "garbled")


@dataclass
class MeterFaults:
    """What is wrong with a meter right now (all off by default).

    Attributes:
        no_answer: the meter ignores every request (broken receiver).
        powered_down: the meter is off; DLMS meters log a power-down first.
        garble_crc: the frame check of each answer is wrong.
        truncate_bytes: each answer loses this many bytes at its end.
        noise: these bytes go on the line before each answer.
        slow_s: each answer comes this much later than the turnaround.
        exception_code: Modbus: answer every read with this exception code.
        clock_drift_s_per_day: DLMS: the meter's clock runs fast (+) or slow.
        profile_answer: DLMS: how the meter answers a GET of a profile buffer
            (class 7 attribute 2), one of `PROFILE_ANSWERS`: "" as it should;
            "normal-priority" with the priority bit of its invoke-id-and-priority
            cleared (a meter without priority management: valid DLMS that
            gurux takes, fastcodec's path refuses); "service-error" a
            ConfirmedServiceError (read, access, scope-of-access-violated)
            instead of the data; "garbled" a GET-Response of an unknown choice,
            which no client can read.
    """

    no_answer: bool = False
    powered_down: bool = False
    garble_crc: bool = False
    truncate_bytes: int = 0
    noise: bytes = b""
    slow_s: float = 0.0
    exception_code: int | None = None
    clock_drift_s_per_day: float = 0.0
    profile_answer: str = ""

    def __setattr__(self, name: str, value: object) -> None:
        # Checked here because the fleet's control socket sets faults by name.
        if name == "profile_answer" and value not in PROFILE_ANSWERS:
            raise ValueError(
                f"profile_answer {value!r} is none of {', '.join(map(repr, PROFILE_ANSWERS))}"
            )
        super().__setattr__(name, value)

    @property
    def answers(self) -> bool:
        return not (self.no_answer or self.powered_down)

    def apply_to_answer(self, frame: bytes) -> bytes:
        """The answer as the faults put it on the line."""
        if self.garble_crc and frame:
            frame = frame[:-1] + bytes([frame[-1] ^ 0xFF])
        if self.truncate_bytes:
            frame = frame[: max(0, len(frame) - self.truncate_bytes)]
        return self.noise + frame

    def clear(self) -> None:
        """Back to a healthy meter."""
        for name, value in MeterFaults().__dict__.items():
            setattr(self, name, value)
