"""Host side of the UART bridge (docs/spec.md §10): the frame codec, a :class:`RegisterAccess`
client, and transports for a serial port and for Amaranth's simulator.

The frame protocol and its constants are defined once, in :mod:`virtio_mmio.board.uart`.

Every coroutine here is a plain ``async def`` that awaits only its transport, so the same client
runs inside an Amaranth testbench (:class:`AmaranthUartTransport`), under ``asyncio.run``, or
under :func:`run_sync` (:class:`SerialTransport`, whose calls block).
"""

import abc
import errno
from collections import namedtuple

from virtio_mmio.board.uart import (Command, ResponseCode, REQUEST_SYNC, RESPONSE_SYNC, RESPONSE_FLAG,
                              RESPONSE_LENGTH, crc8)

from .access import RegisterAccess


__all__ = ["crc8", "Command", "ResponseCode", "Response",
           "encode_read", "encode_write", "encode_status", "decode_response",
           "BridgeError", "NoAnswer", "ChecksumError", "FrameError", "BridgeNak", "PortError",
           "Transport", "SerialTransport", "AmaranthUartTransport", "BridgeClient", "run_sync"]


# ---- errors

class BridgeError(Exception):
    """Any failure talking to the bridge."""


class NoAnswer(BridgeError):
    """Nothing, or less than a whole response, came back within the timeout."""


class ChecksumError(BridgeError):
    """A response whose CRC does not match its bytes."""


class FrameError(BridgeError):
    """A response that is not a well-formed answer to the request: wrong sync byte, length,
    command or sequence number."""


class BridgeNak(BridgeError):
    """The board answered with a code other than OK; ``code`` is the :class:`ResponseCode`
    (``code.name`` e.g. ``"BUS_ERROR"``), ``response`` the whole :class:`Response`."""

    def __init__(self, response, what):
        self.response = response
        self.code = response.code
        name = getattr(response.code, "name", f"code {response.code}")
        super().__init__(f"bridge answered {name} to {what}")


class PortError(BridgeError):
    """The serial port could not be opened (or pyserial is missing)."""


# ---- codec

#: A decoded response. ``command`` is a :class:`Command` when known (else the int, for
#: BAD_COMMAND answers), ``code`` a :class:`ResponseCode` when known (else the int).
Response = namedtuple("Response", "command seq code data")


def _check_field(name, value, bits):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if not 0 <= value < 1 << bits:
        raise ValueError(f"{name} must be an integer in 0..{(1 << bits) - 1:#x}, not {value!r}")
    return value


def _frame(command, seq, payload=b""):
    _check_field("seq", seq, 8)
    body = bytes([command, seq]) + payload
    return bytes([REQUEST_SYNC]) + body + bytes([crc8(body)])


def encode_read(seq, addr):
    """A READ frame (8 bytes) for byte address ``addr``. A misaligned ``addr`` is encoded as
    given; the board answers MISALIGNED."""
    _check_field("addr", addr, 32)
    return _frame(Command.READ, seq, addr.to_bytes(4, "little"))


def encode_write(seq, addr, data, sel=0xF):
    """A WRITE frame (13 bytes) of the byte lanes ``sel`` of ``data`` at byte address
    ``addr``."""
    _check_field("addr", addr, 32)
    _check_field("data", data, 32)
    _check_field("sel", sel, 4)
    return _frame(Command.WRITE, seq,
                  addr.to_bytes(4, "little") + bytes([sel]) + data.to_bytes(4, "little"))


def encode_status(seq):
    """A STATUS frame (4 bytes)."""
    return _frame(Command.STATUS, seq)


def _known(enumeration, value):
    try:
        return enumeration(value)
    except ValueError:
        return value


def decode_response(raw):
    """The :class:`Response` in the 9 bytes ``raw``. Raises :class:`FrameError` for a wrong
    length or sync byte or a command byte without the response flag, :class:`ChecksumError`
    for a CRC mismatch."""
    raw = bytes(raw)
    if len(raw) != RESPONSE_LENGTH:
        raise FrameError(f"a response is {RESPONSE_LENGTH} bytes, not {len(raw)}: {raw.hex()}")
    if raw[0] != RESPONSE_SYNC:
        raise FrameError(f"response sync byte must be {RESPONSE_SYNC:#04x}, not "
                         f"{raw[0]:#04x}: {raw.hex()}")
    if crc8(raw[1:8]) != raw[8]:
        raise ChecksumError(f"response CRC {raw[8]:#04x} does not match its bytes "
                            f"(expected {crc8(raw[1:8]):#04x}): {raw.hex()}")
    if not raw[1] & RESPONSE_FLAG:
        raise FrameError(f"response command byte {raw[1]:#04x} lacks the response flag "
                         f"{RESPONSE_FLAG:#04x}")
    return Response(command=_known(Command, raw[1] & ~RESPONSE_FLAG), seq=raw[2],
                    code=_known(ResponseCode, raw[3]), data=int.from_bytes(raw[4:8], "little"))


# ---- transports

class Transport(abc.ABC):
    """A byte pipe to the bridge."""

    @abc.abstractmethod
    async def send(self, data):
        """Send ``data`` (bytes)."""

    @abc.abstractmethod
    async def receive(self, count, timeout=None):
        """Up to ``count`` bytes: what arrived before ``timeout`` (the transport's unit; None:
        its default), possibly fewer."""


class SerialTransport(Transport):
    """A serial port through pyserial, opened on construction (:class:`PortError` if pyserial
    is missing or the port cannot be opened). Calls block: run the client with
    :func:`run_sync` or ``asyncio.run``. ``receive``'s timeout is in seconds (default
    ``timeout_s``). Use as a context manager, or :meth:`close`.
    """

    def __init__(self, port, baud=115200, *, timeout_s=1.0):
        try:
            import serial
        except ImportError:
            raise PortError(f"cannot open serial port {port!r}: pyserial is not installed "
                            f"(pip install pyserial)") from None
        self.port = port
        self.timeout_s = timeout_s
        try:
            self._serial = serial.Serial(port, baud, timeout=timeout_s)
        except (serial.SerialException, OSError) as error:
            raise PortError(self._explain(port, error)) from error

    @staticmethod
    def _explain(port, error):
        code = getattr(error, "errno", None)
        if code == errno.ENOENT or "No such file" in str(error) or "FileNotFound" in str(error):
            return (f"cannot open serial port {port!r}: no such device; is the board plugged "
                    f"in? (--port)")
        if code == errno.EACCES or "ermission" in str(error):
            return (f"cannot open serial port {port!r}: permission denied; is your user in "
                    f"the dialout (or uucp) group? (--port)")
        if code == errno.EBUSY or "busy" in str(error).lower():
            return (f"cannot open serial port {port!r}: busy; is a terminal program using "
                    f"it? (--port)")
        return f"cannot open serial port {port!r}: {error} (--port)"

    async def send(self, data):
        self._serial.write(bytes(data))
        self._serial.flush()

    async def receive(self, count, timeout=None):
        self._serial.timeout = self.timeout_s if timeout is None else timeout
        return bytes(self._serial.read(count))

    def discard_input(self):
        """Drop bytes already received (a late answer) before a retry."""
        self._serial.reset_input_buffer()

    def close(self):
        self._serial.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class AmaranthUartTransport(Transport):
    """The far end of a UART pin pair in Amaranth's simulator, for use inside an async
    testbench: :meth:`send` drives ``rx`` (the DUT's input) 8N1 at ``divisor`` clock cycles per
    bit, and every clock cycle the transport spends (sending, receiving or :meth:`idle`) also
    decodes ``tx`` (the DUT's output) at bit level, sampling at mid-bit, into a buffer, so an
    answer that starts while a frame is still being sent is not lost (full duplex, as a real
    UART). ``tx=None`` for a receiver-only DUT.

    :meth:`receive` takes bytes from that buffer, waiting up to ``timeout`` clock cycles
    (default ``timeout_cycles``) counted from the call for the rest; a byte already started when
    they run out is finished. A stop bit sampled low is counted in ``framing_errors`` and the
    byte kept. The line is watched only while the transport runs the clock, which for a client
    that sends and then receives is the whole time the DUT can answer.
    """

    def __init__(self, ctx, rx, tx, divisor, *, timeout_cycles=None):
        if isinstance(divisor, bool) or not isinstance(divisor, int):
            raise TypeError(f"divisor must be an integer, not {divisor!r}")
        if divisor < 4:
            raise ValueError(f"divisor must be an integer ≥ 4 (clock cycles per bit), "
                             f"not {divisor!r}")
        self.ctx = ctx
        self.rx = rx
        self.tx = tx
        self.divisor = divisor
        # Default: a READ round trip and a long bus access, with room to spare.
        self.timeout_cycles = 40 * 10 * divisor + 2048 if timeout_cycles is None \
            else timeout_cycles
        self.framing_errors = 0
        self._received = bytearray()
        self._since_start = None       # cycles since the start bit of a byte on tx was seen
        self._levels = []
        ctx.set(rx, 1)

    async def _tick(self):
        await self.ctx.tick()
        if self.tx is None:
            return
        level = self.ctx.get(self.tx)
        if self._since_start is None:
            if not level:
                self._since_start, self._levels = 0, []
            return
        self._since_start += 1
        middle = self._since_start - self.divisor // 2
        if middle % self.divisor:
            return
        self._levels.append(level)
        if self._levels[0]:
            self._since_start = None                    # a glitch, not a start bit
        elif len(self._levels) == 10:
            if not level:
                self.framing_errors += 1
            self._received.append(sum(bit << index
                                      for index, bit in enumerate(self._levels[1:9])))
            self._since_start = None                    # mid stop bit: ready for a start

    async def _hold(self, level, cycles):
        self.ctx.set(self.rx, level)
        for _ in range(cycles):
            await self._tick()

    async def send_byte(self, value, *, stop=1):
        """One 8N1 character; ``stop=0`` sends a low stop bit (a framing error)."""
        await self._hold(0, self.divisor)
        for bit in range(8):
            await self._hold(value >> bit & 1, self.divisor)
        await self._hold(stop, self.divisor)
        self.ctx.set(self.rx, 1)

    async def send(self, data):
        for value in bytes(data):
            await self.send_byte(value)

    async def idle(self, cycles):
        """Keep ``rx`` high for ``cycles`` clock cycles."""
        await self._hold(1, cycles)

    def discard_input(self):
        """Drop bytes already decoded (a late answer) before a retry."""
        self._received.clear()

    async def receive(self, count, timeout=None):
        left = self.timeout_cycles if timeout is None else timeout
        while len(self._received) < count and (left > 0 or self._since_start is not None):
            await self._tick()
            left -= 1
        taken = bytes(self._received[:count])
        del self._received[:count]
        return taken


def run_sync(coroutine):
    """Run ``coroutine`` to completion without an event loop: enough for a client over a
    blocking transport (:class:`SerialTransport`), which never suspends."""
    try:
        coroutine.send(None)
    except StopIteration as stop:
        return stop.value
    coroutine.close()
    raise RuntimeError("run_sync: the coroutine waited on an event loop; use asyncio.run")


# ---- client

class BridgeClient(RegisterAccess):
    """Bus accesses through the UART bridge: a :class:`RegisterAccess` whose ``offset`` is
    relative to ``base`` (a byte address on the bridge's bus), plus :meth:`status`,
    :meth:`read_at` and :meth:`write_at` at absolute bridge addresses.

    Each request carries the next sequence number (mod 256) and waits for its 9-byte response;
    ``timeout`` goes to the transport's ``receive`` (its unit; None: its default). A response
    with a bad CRC (:class:`ChecksumError`) or none at all (:class:`NoAnswer`) is retried with a
    new sequence number up to ``retries`` times, then raised. Retrying a READ is harmless. A
    WRITE is retried too, although the first attempt may have reached the bus with only its
    answer lost, so the write may happen twice: fine for the demo's registers, not for a
    register with side effects on write (a FIFO, a notify doorbell). A malformed response or
    one for another sequence number raises :class:`FrameError` at once, and a non-OK code
    :class:`BridgeNak`; neither is retried.
    """

    def __init__(self, transport, *, base=0, retries=1, timeout=None):
        super().__init__()
        _check_field("base", base, 32)
        if isinstance(retries, bool) or not isinstance(retries, int):
            raise TypeError(f"retries must be an integer, not {retries!r}")
        if retries < 0:
            raise ValueError(f"retries must be a non-negative integer, not {retries!r}")
        self.transport = transport
        self.base = base
        self.retries = retries
        self.timeout = timeout
        self.seq = 0
        self.attempts = 0            # requests sent, retries included

    async def _transact(self, command, encode, what):
        last_error = None
        for attempt in range(self.retries + 1):
            if attempt and hasattr(self.transport, "discard_input"):
                self.transport.discard_input()
            seq = self.seq
            self.seq = (self.seq + 1) & 0xFF
            self.attempts += 1
            await self.transport.send(encode(seq))
            raw = await self.transport.receive(RESPONSE_LENGTH, self.timeout)
            try:
                if len(raw) < RESPONSE_LENGTH:
                    raise NoAnswer(f"no answer to {what}: {len(raw)} of {RESPONSE_LENGTH} "
                                   f"bytes came back" + (f" ({raw.hex()})" if raw else ""))
                response = decode_response(raw)
            except (NoAnswer, ChecksumError) as error:
                last_error = error
                continue
            if response.seq != seq or response.command != command:
                raise FrameError(f"answer to {what} is for {response.command!r} seq "
                                 f"{response.seq}, expected {command!r} seq {seq}")
            if response.code != ResponseCode.OK:
                raise BridgeNak(response, what)
            return response.data
        if self.retries:
            raise type(last_error)(f"{last_error} (after {self.retries + 1} attempts)")
        raise last_error

    def _address(self, name, addr):
        _check_field(name, addr, 32)
        if addr % 4:
            raise ValueError(f"{name} must be a multiple of 4, not {addr:#x}")
        return addr

    async def read_at(self, addr):
        """The word at bridge byte address ``addr`` (a multiple of 4)."""
        self._address("addr", addr)
        return await self._transact(Command.READ, lambda seq: encode_read(seq, addr),
                                    f"READ at {addr:#010x}")

    async def write_at(self, addr, value, sel=0xF):
        """Write the byte lanes ``sel`` of ``value`` at bridge byte address ``addr``."""
        self._address("addr", addr)
        _check_field("value", value, 32)
        _check_field("sel", sel, 4)
        await self._transact(Command.WRITE, lambda seq: encode_write(seq, addr, value, sel),
                             f"WRITE at {addr:#010x}")

    async def status(self):
        """The bridge's ``status`` input."""
        return await self._transact(Command.STATUS, encode_status, "STATUS")

    async def read_word(self, offset):
        return await self.read_at(self._address("base + offset", self.base + offset))

    async def write_word(self, offset, value, strobe=0xF):
        await self.write_at(self._address("base + offset", self.base + offset), value, strobe)
