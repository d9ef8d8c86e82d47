"""UART (8N1) and the UART-to-Wishbone bridge of the board demo (docs/spec.md §10): a host PC reads
and writes the bus through framed, CRC-checked commands over the board's USB-UART.

Frame protocol (host → board; every multi-byte field little-endian)::

    0xA5 | cmd | seq | [addr: 4, byte address] | [sel: 1, low 4 bits] | [data: 4] | crc
    READ   (0x01): sync cmd seq addr crc            8 bytes
    WRITE  (0x02): sync cmd seq addr sel data crc  13 bytes
    STATUS (0x03): sync cmd seq crc                 4 bytes

Board → host, always 9 bytes: ``0x5A | cmd|0x80 | seq | code | data: 4 | crc``. The CRC is
CRC-8 (polynomial 0x07, init 0, no reflection, no final xor) over every byte after the sync byte
up to the CRC. The constants and :func:`crc8` here are the one definition both the gateware and
the host codec (:mod:`virtio_mmio_sim.bridge_host`) use.
"""

from amaranth.hdl import *
from amaranth.lib import enum, stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out

from ..bus import WishboneSignature


__all__ = ["Command", "ResponseCode", "REQUEST_SYNC", "RESPONSE_SYNC", "RESPONSE_FLAG",
           "REQUEST_LENGTH", "RESPONSE_LENGTH", "crc8", "UartRx", "UartTx", "UartBridge"]


REQUEST_SYNC = 0xA5
RESPONSE_SYNC = 0x5A
#: Set in a response's command byte.
RESPONSE_FLAG = 0x80


class Command(enum.IntEnum, shape=8):
    READ = 0x01
    WRITE = 0x02
    STATUS = 0x03


class ResponseCode(enum.IntEnum, shape=8):
    OK = 0
    BUS_ERROR = 1       # the subordinate answered err
    BAD_CRC = 2
    BAD_COMMAND = 3
    TIMEOUT = 4         # no ack within ack_timeout cycles; the bridge dropped cyc
    MISALIGNED = 5      # address bits 1:0 set; no bus access


#: Whole request frame length per command, sync and CRC included.
REQUEST_LENGTH = {Command.READ: 8, Command.WRITE: 13, Command.STATUS: 4}
RESPONSE_LENGTH = 9

CRC8_POLYNOMIAL = 0x07


def crc8(data, crc=0):
    """CRC-8 with polynomial 0x07, no reflection, no final xor, continuing from ``crc``."""
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = ((crc << 1) ^ CRC8_POLYNOMIAL if crc & 0x80 else crc << 1) & 0xFF
    return crc


def _crc8_next(crc, byte):
    """The CRC after one more byte, as XOR trees: the update is linear in ``crc ^ byte``, so
    output bit ``i`` is the parity of the input bits in ``mask[i]``, taken from :func:`crc8`
    applied to each single-bit input."""
    value = crc ^ byte
    masks = [sum(1 << j for j in range(8) if crc8([1 << j]) >> i & 1) for i in range(8)]
    return Cat(*((value & mask).xor() for mask in masks))


def _check_int(name, value, minimum, what):
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an integer, not {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be {what}, not {value!r}")
    return value


def _check_divisor(divisor):
    return _check_int("divisor", divisor, 4, "an integer ≥ 4 (clock cycles per bit)")


class UartRx(wiring.Component):
    """8N1 UART receiver.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit (clock frequency / baud rate), at least 4.

    Members
    -------
    rx : ``In(1)``
        The pin, idle high; synchronised by two flip-flops.
    o : ``Out(stream.Signature(8))``
        Received bytes. There is no back-pressure on a wire: a byte completed while the
        previous one is still waiting on ``o`` is dropped and counted as an overrun.
    framing_error, overrun : ``Out(1)``
        One-cycle pulses: a stop bit sampled low (the byte is dropped, and the receiver waits
        for the line to go high before looking for the next start bit); a byte dropped because
        ``o`` was still full.
    framing_errors, overruns : ``Out(16)``
        Counts of those pulses (wrapping).

    Behaviour
    ---------
    A low level starts a byte; it is checked again at mid-bit (a glitch shorter than half a bit
    is ignored), and every bit is sampled at mid-bit from then on.

    Latency
    -------
    ``o.valid`` rises ``divisor // 2 + 3`` cycles after the stop bit starts on ``rx`` (2 of
    them the synchroniser). The receiver is idle again from the middle of the stop bit, so
    back-to-back bytes are received at the full line rate.

    Reset
    -----
    Synchronous ``rst`` abandons a byte in progress and empties ``o``; counters go to 0.
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "framing_error": Out(1), "overrun": Out(1),
            "framing_errors": Out(16), "overruns": Out(16),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        line = Signal(init=1)
        m.submodules.synchroniser = FFSynchronizer(self.rx, line, init=1)

        timer = Signal(range(divisor))
        bit = Signal(range(8))
        shift = Signal(8)

        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(divisor // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    m.d.sync += [timer.eq(divisor - 1), bit.eq(0)]
                    m.next = "DATA"
                    with m.If(line):            # shorter than half a bit: a glitch
                        m.next = "IDLE"
            with m.State("DATA"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    # LSB first: shift in from the top.
                    m.d.sync += [timer.eq(divisor - 1), shift.eq(Cat(shift[1:], line)),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                m.d.sync += timer.eq(timer - 1)
                with m.If(timer == 0):
                    with m.If(~line):
                        m.d.comb += self.framing_error.eq(1)
                        m.d.sync += self.framing_errors.eq(self.framing_errors + 1)
                        m.next = "BREAK"
                    with m.Elif(self.o.valid & ~self.o.ready):
                        m.d.comb += self.overrun.eq(1)
                        m.d.sync += self.overruns.eq(self.overruns + 1)
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shift), self.o.valid.eq(1)]
                        m.next = "IDLE"
            with m.State("BREAK"):
                # After a low stop bit the line may be held low (a break): wait for idle.
                with m.If(line):
                    m.next = "IDLE"
        return m


class UartTx(wiring.Component):
    """8N1 UART transmitter.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    i : ``In(stream.Signature(8))``
        Bytes to send. ``i.ready`` is high while idle, which includes the last cycle of a stop
        bit, so a byte offered back to back follows with no gap.
    tx : ``Out(1)``
        The pin, idle high, driven from a flip-flop.

    Latency and throughput
    ----------------------
    The start bit is on ``tx`` the cycle after the transfer on ``i``; one byte per
    ``10 * divisor`` cycles.

    Reset
    -----
    Synchronous ``rst`` abandons a byte in progress and sets ``tx`` high.
    """

    def __init__(self, divisor):
        self._divisor = _check_divisor(divisor)
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self):
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor
        shift = Signal(9)                   # data bits then the stop bit, LSB first
        bits_left = Signal(range(10))       # bits still to put on the line after the current
        timer = Signal(range(divisor))      # cycles left of the current bit
        idle = (bits_left == 0) & (timer == 0)
        m.d.comb += self.i.ready.eq(idle)
        with m.If(self.i.valid & idle):
            m.d.sync += [
                self.tx.eq(0),
                shift.eq(Cat(self.i.payload, C(1, 1))),
                bits_left.eq(9),
                timer.eq(divisor - 1),
            ]
        with m.Elif(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.Elif(bits_left != 0):
            m.d.sync += [
                self.tx.eq(shift[0]),
                shift.eq(shift >> 1),
                bits_left.eq(bits_left - 1),
                timer.eq(divisor - 1),
            ]
        return m


class UartBridge(wiring.Component):
    """UART-to-Wishbone bridge: framed READ/WRITE/STATUS commands from a host PC become
    Wishbone classic accesses (the frame protocol is in this module's docstring).

    Parameters
    ----------
    divisor : int
        Clock cycles per UART bit (clock frequency / baud rate), at least 4.
    frame_timeout : int
        A partial frame with no new byte for this many cycles is dropped and counted in
        ``frames_bad``; at least two byte times (``20 * divisor``). Default: 16 byte times
        (``160 * divisor``).
    ack_timeout : int
        Cycles ``cyc``/``stb`` are held waiting for ``ack``/``err`` before the bridge drops
        ``cyc`` and answers TIMEOUT; at least 1. Default 1024.

    Members
    -------
    rx : ``In(1)``, tx : ``Out(1)``
        The UART pins (idle high).
    bus : ``Out(WishboneSignature(30))``
        Wishbone classic manager: ``adr`` is the word address (byte address bits 31:2), ``sel``
        the byte lanes (0xF for a READ, the frame's ``sel`` for a WRITE). One access at a time.
    status : ``In(32)``
        Returned by STATUS, sampled when the STATUS frame's CRC byte is checked.
    frames_ok : ``Out(16)``
        Frames with a good CRC and a known command (MISALIGNED, BUS_ERROR and TIMEOUT answers
        included: the frame was fine, the access was refused or failed).
    frames_bad : ``Out(16)``
        Frames answered BAD_CRC or BAD_COMMAND, and partial frames dropped after
        ``frame_timeout``.
    framing_errors, overruns : ``Out(16)``
        From the receiver: stop bits sampled low; bytes lost because the RX FIFO was full.

    Behaviour
    ---------
    Bytes outside a frame other than 0xA5 are skipped. The command byte is judged as soon as
    the sequence byte after it has arrived: an unknown command is answered BAD_COMMAND at once
    (its length is unknown, so its CRC is not checked) and the rest of that frame is skipped as
    bytes outside a frame (an 0xA5 among them would start a frame that then fails or times
    out). A bad CRC is answered BAD_CRC with no bus access; both echo the command and sequence
    bytes as received and return data 0.

    One frame is handled at a time. Bytes arriving meanwhile (during the bus access or while
    the response is being queued) wait in a 16-byte RX FIFO and are parsed afterwards; only if
    more than 16 bytes pile up are bytes lost (counted in ``overruns``), which a host waiting
    for each response before sending the next frame never causes. The 9-byte response goes
    into a 16-byte TX FIFO, so the parser is free again 9 cycles after the access while the
    response is still on the wire; with a host sending a burst of frames without waiting, the
    TX FIFO can fill, the parser then waits, and the RX FIFO takes the slack.

    Latency and throughput
    ----------------------
    The bus access (``cyc``/``stb``) starts ``divisor // 2 + 6`` cycles after the stop bit of
    the frame's CRC byte starts on ``rx``: 3 cycles after the receiver delivers the byte
    (RX FIFO write and read-out, CRC check), the rest being the synchroniser and the wait to
    mid-bit. The response's start bit is on ``tx`` 3 cycles after the clock edge that samples
    ``ack``/``err`` (or ends the timeout); the 9 bytes go out back to back. A STATUS, a
    MISALIGNED or a bad frame is answered with the start bit on ``tx`` ``divisor // 2 + 9``
    cycles after its last stop bit starts on ``rx``. Throughput is the line rate: a READ round
    trip is about 17 byte times (``170 * divisor`` cycles) plus the access, a WRITE 22.

    Reset
    -----
    Synchronous ``rst`` drops a frame in progress, an access (``cyc`` low), both FIFOs and
    the counters.
    """

    def __init__(self, divisor, *, frame_timeout=None, ack_timeout=1024):
        self._divisor = _check_divisor(divisor)
        if frame_timeout is None:
            frame_timeout = 16 * 10 * divisor
        self._frame_timeout = _check_int(
            "frame_timeout", frame_timeout, 20 * divisor,
            f"an integer ≥ 20 * divisor = {20 * divisor} (two byte times), in clock cycles")
        self._ack_timeout = _check_int("ack_timeout", ack_timeout, 1,
                                       "a positive integer (clock cycles)")
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "bus": Out(WishboneSignature(30)),
            "status": In(32),
            "frames_ok": Out(16), "frames_bad": Out(16),
            "framing_errors": Out(16), "overruns": Out(16),
        })

    @property
    def divisor(self):
        return self._divisor

    @property
    def frame_timeout(self):
        return self._frame_timeout

    @property
    def ack_timeout(self):
        return self._ack_timeout

    def elaborate(self, platform):
        m = Module()
        bus = self.bus

        m.submodules.receiver = receiver = UartRx(self._divisor)
        m.submodules.rx_fifo = rx_fifo = SyncFIFOBuffered(width=8, depth=16)
        m.submodules.tx_fifo = tx_fifo = SyncFIFOBuffered(width=8, depth=16)
        m.submodules.transmitter = transmitter = UartTx(self._divisor)
        wiring.connect(m, receiver.o, rx_fifo.w_stream)
        wiring.connect(m, tx_fifo.r_stream, transmitter.i)
        m.d.comb += [
            receiver.rx.eq(self.rx),
            self.tx.eq(transmitter.tx),
            self.framing_errors.eq(receiver.framing_errors),
            self.overruns.eq(receiver.overruns),
        ]

        byte = rx_fifo.r_data
        byte_valid = rx_fifo.r_rdy

        command = Signal(8)
        seq = Signal(8)
        body = Signal(9 * 8)                # addr 4 | sel 1 | data 4, as received
        index = Signal(range(9))
        crc = Signal(8)
        silent = Signal(range(self._frame_timeout))
        address = body[0:32]
        sel = body[32:36]
        write_data = body[40:72]

        response_code = Signal(ResponseCode)
        response_data = Signal(32)
        response_crc = Signal(8)
        waited = Signal(range(self._ack_timeout))

        body_length = Mux(command == Command.WRITE, 9, 4)
        is_write = command == Command.WRITE

        m.d.comb += [
            bus.adr.eq(address[2:]),
            bus.dat_w.eq(write_data),
            bus.sel.eq(Mux(is_write, sel, 0xF)),
            bus.we.eq(is_write),
        ]

        def good_frame(code, data=0):
            m.d.sync += [response_code.eq(code), response_data.eq(data), index.eq(0),
                         self.frames_ok.eq(self.frames_ok + 1)]

        def bad_frame(code):
            m.d.sync += [response_code.eq(code), response_data.eq(0), index.eq(0),
                         self.frames_bad.eq(self.frames_bad + 1)]

        with m.FSM():
            with m.State("SYNC"):
                m.d.comb += rx_fifo.r_en.eq(1)
                m.d.sync += [silent.eq(0), crc.eq(0), index.eq(0)]
                with m.If(byte_valid & (byte == REQUEST_SYNC)):
                    m.next = "COMMAND"

            receiving = ("COMMAND", "SEQUENCE", "BODY", "CRC")
            for state in receiving:
                with m.State(state):
                    m.d.comb += rx_fifo.r_en.eq(1)
                    with m.If(byte_valid):
                        m.d.sync += [silent.eq(0), crc.eq(_crc8_next(crc, byte))]
                    with m.Elif(silent == self._frame_timeout - 1):
                        m.d.sync += self.frames_bad.eq(self.frames_bad + 1)
                        m.next = "SYNC"
                    with m.Else():
                        m.d.sync += silent.eq(silent + 1)
                    if state == "COMMAND":
                        with m.If(byte_valid):
                            m.d.sync += command.eq(byte)
                            m.next = "SEQUENCE"
                    elif state == "SEQUENCE":
                        with m.If(byte_valid):
                            m.d.sync += seq.eq(byte)
                            with m.Switch(command):
                                with m.Case(Command.READ, Command.WRITE):
                                    m.next = "BODY"
                                with m.Case(Command.STATUS):
                                    m.next = "CRC"
                                with m.Default():
                                    bad_frame(ResponseCode.BAD_COMMAND)
                                    m.next = "RESPOND"
                    elif state == "BODY":
                        with m.If(byte_valid):
                            m.d.sync += [body.word_select(index, 8).eq(byte),
                                         index.eq(index + 1)]
                            with m.If(index == body_length - 1):
                                m.next = "CRC"
                    elif state == "CRC":
                        with m.If(byte_valid):
                            with m.If(byte != crc):
                                bad_frame(ResponseCode.BAD_CRC)
                                m.next = "RESPOND"
                            with m.Elif(command == Command.STATUS):
                                good_frame(ResponseCode.OK, self.status)
                                m.next = "RESPOND"
                            with m.Elif(address[:2] != 0):
                                good_frame(ResponseCode.MISALIGNED)
                                m.next = "RESPOND"
                            with m.Else():
                                m.d.sync += waited.eq(0)
                                m.next = "ACCESS"

            with m.State("ACCESS"):
                m.d.comb += [bus.cyc.eq(1), bus.stb.eq(1)]
                m.d.sync += waited.eq(waited + 1)
                with m.If(bus.err):
                    good_frame(ResponseCode.BUS_ERROR)
                    m.next = "RESPOND"
                with m.Elif(bus.ack):
                    good_frame(ResponseCode.OK, Mux(is_write, 0, bus.dat_r))
                    m.next = "RESPOND"
                with m.Elif(waited == self._ack_timeout - 1):
                    good_frame(ResponseCode.TIMEOUT)
                    m.next = "RESPOND"

            with m.State("RESPOND"):
                out = Signal(8)
                with m.Switch(index):
                    with m.Case(0):
                        m.d.comb += out.eq(RESPONSE_SYNC)
                    with m.Case(1):
                        m.d.comb += out.eq(command | RESPONSE_FLAG)
                    with m.Case(2):
                        m.d.comb += out.eq(seq)
                    with m.Case(3):
                        m.d.comb += out.eq(response_code)
                    for lane in range(4):
                        with m.Case(4 + lane):
                            m.d.comb += out.eq(response_data.word_select(lane, 8))
                    with m.Default():
                        m.d.comb += out.eq(response_crc)
                m.d.comb += [tx_fifo.w_data.eq(out), tx_fifo.w_en.eq(1)]
                with m.If(tx_fifo.w_rdy):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == 0):
                        m.d.sync += response_crc.eq(0)
                    with m.Else():
                        m.d.sync += response_crc.eq(_crc8_next(response_crc, out))
                    with m.If(index == RESPONSE_LENGTH - 1):
                        m.next = "SYNC"
        return m
