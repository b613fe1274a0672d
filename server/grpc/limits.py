"""The native HTTP/2 edge's per-connection limits and the accounting that enforces them.

Each default is what a trusted server ships: output the client does not read stops the
reading of its connection (``pause_writing``), and control replies queued behind it are capped
(Envoy's max_outbound_control_frames), so a PING or SETTINGS flood cannot grow memory; streams
the client resets, or the server refuses or resets, spend a token bucket (nghttp2's 1000 burst,
33/s; CVE-2023-44487 and its 2025 "MadeYouReset" variant), and a reset stream counts against
the stream cap until its handler has ended (Go's fix); empty frames, PRIORITY and WINDOW_UPDATE
floods are bounded by Envoy's ratios (CVE-2019-9512..9518); SETTINGS may hold 32 entries
(nghttp2, CVE-2020-11080); buffered input per connection is capped; the preface, a header block
and an idle connection each have a deadline. A breach ends the connection with GOAWAY
ENHANCE_YOUR_CALM.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import frames as f


class ProtocolError(Exception):
    """The connection must end with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True, slots=True)
class Limits:
    max_message_bytes: int
    max_concurrent_streams: int = 1024
    stream_window: int = 4 << 20
    connection_window: int = 16 << 20
    max_frame_size: int = 1 << 20
    max_header_list_size: int = 64 << 10
    # Unsent output past which the connection stops reading until the client catches up.
    write_high_water: int = 256 << 10
    max_queued_control_frames: int = 1000  # Envoy's max_outbound_control_frames
    reset_burst: int = 1000  # nghttp2's stream reset burst and rate
    reset_rate: float = 33.0
    max_consecutive_empty_frames: int = 1  # Envoy
    window_updates_per_data_frame: int = 10  # Envoy
    priority_frames_per_stream: int = 100  # Envoy
    max_settings_entries: int = 32  # nghttp2
    max_buffered_input: int = 256 << 20
    handshake_timeout_s: float = 10.0
    header_timeout_s: float = 10.0
    idle_timeout_s: float = 300.0
    close_timeout_s: float = 5.0  # a closing connection whose client does not read is cut


class Budget:
    """A token bucket: ``burst`` tokens, refilled at ``rate`` per second."""

    def __init__(self, burst: int, rate: float, now: float) -> None:
        self.burst = burst
        self.rate = rate
        self.tokens = float(burst)
        self.at = now

    def spend(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        self.tokens -= 1
        return self.tokens >= 0


_CARRYING = (f.DATA, f.HEADERS, f.CONTINUATION)  # frames that must carry something


class Floods:
    """One connection's counts of what costs the server and gives the client nothing; each
    method raises ``ProtocolError`` (ENHANCE_YOUR_CALM) once its limit is passed."""

    def __init__(self, limits: Limits, now: float) -> None:
        self.limits = limits
        self.resets = Budget(limits.reset_burst, limits.reset_rate, now)
        self.empty = 0  # consecutive empty frames
        self.window_updates = 0
        self.priorities = 0
        self.streams = 0  # streams the client opened
        self.data_sent = 0  # DATA frames the server sent
        self.queued_control = 0  # control replies queued behind unsent output

    def frame(self, kind: int, flags: int, size: int) -> None:
        if kind not in _CARRYING:
            return
        if size or (kind == f.DATA and flags & f.END_STREAM):
            self.empty = 0
            return
        self.empty += 1
        if self.empty > self.limits.max_consecutive_empty_frames:
            raise ProtocolError(f.ENHANCE_YOUR_CALM, "a flood of empty frames")

    def reset(self, now: float) -> None:
        if not self.resets.spend(now):
            raise ProtocolError(f.ENHANCE_YOUR_CALM, "too many streams reset")

    def window_update(self) -> None:
        self.window_updates += 1
        limits = self.limits
        allowed = 5 + 2 * (self.streams + limits.window_updates_per_data_frame * self.data_sent)
        if self.window_updates > allowed:  # Envoy's formula
            raise ProtocolError(f.ENHANCE_YOUR_CALM, "a flood of WINDOW_UPDATE frames")

    def priority(self) -> None:
        self.priorities += 1
        if self.priorities > 5 + self.limits.priority_frames_per_stream * (1 + self.streams):
            raise ProtocolError(f.ENHANCE_YOUR_CALM, "a flood of PRIORITY frames")

    def settings(self, size: int) -> None:
        if size > 6 * self.limits.max_settings_entries:
            raise ProtocolError(f.ENHANCE_YOUR_CALM, "too many SETTINGS entries")

    def control(self, queued: bool) -> None:
        """A control reply written while output is ``queued`` in user space (the socket is
        full: the client is not reading) counts; past the cap the connection ends."""
        if not queued:
            self.queued_control = 0
            return
        self.queued_control += 1
        if self.queued_control > self.limits.max_queued_control_frames:
            raise ProtocolError(f.ENHANCE_YOUR_CALM, "the client does not read its replies")
