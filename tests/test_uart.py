"""UART and UART bridge (docs/spec.md §10): validation, the host codec, UART loopback and errors,
and the bridge against a Wishbone subordinate model through the real host client."""

import asyncio
import os
import random
import sys

import pytest

from amaranth.hdl import Fragment, Module
from amaranth.sim import Simulator

from virtio_mmio.board.uart import Command, ResponseCode, UartBridge, UartRx, UartTx, crc8
from virtio_mmio_sim.bridge_host import (
    AmaranthUartTransport, BridgeClient, BridgeError, BridgeNak, ChecksumError, FrameError,
    NoAnswer, PortError, Response, SerialTransport, decode_response, encode_read,
    encode_status, encode_write, run_sync)


DIVISOR = 4


# ---- validation

def elaborated(component):
    Fragment.get(component, None)          # builds, and is not reported as unused
    return component


# A constructor that raises leaves an object Amaranth reports as unused.
@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
@pytest.mark.parametrize("component", [UartRx, UartTx, UartBridge])
def test_divisor_validation(component):
    with pytest.raises(ValueError, match=r"divisor must be an integer ≥ 4.*not 3"):
        component(3)
    with pytest.raises(TypeError, match=r"divisor must be an integer, not 4.0"):
        component(4.0)
    with pytest.raises(TypeError, match=r"divisor must be an integer, not True"):
        component(True)
    assert elaborated(component(4)).divisor == 4


@pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")
def test_bridge_timeout_validation():
    with pytest.raises(ValueError, match=r"frame_timeout must be an integer ≥ 20 \* divisor "
                                         r"= 80 \(two byte times\).*not 79"):
        UartBridge(4, frame_timeout=79)
    with pytest.raises(TypeError, match=r"frame_timeout must be an integer, not '1000'"):
        UartBridge(4, frame_timeout="1000")
    with pytest.raises(ValueError, match=r"ack_timeout must be a positive integer.*not 0"):
        UartBridge(4, ack_timeout=0)
    with pytest.raises(TypeError, match=r"ack_timeout must be an integer, not 1.5"):
        UartBridge(4, ack_timeout=1.5)
    bridge = elaborated(UartBridge(8))
    assert (bridge.frame_timeout, bridge.ack_timeout) == (16 * 10 * 8, 1024)


def test_host_argument_validation():
    with pytest.raises(ValueError, match=r"seq must be an integer in 0..0xff, not 256"):
        encode_status(256)
    with pytest.raises(ValueError, match=r"addr must be an integer in 0..0xffffffff"):
        encode_read(0, 1 << 32)
    with pytest.raises(ValueError, match=r"sel must be an integer in 0..0xf, not 16"):
        encode_write(0, 0, 0, sel=16)
    with pytest.raises(TypeError, match=r"data must be an integer, not None"):
        encode_write(0, 0, None)
    with pytest.raises(ValueError, match=r"retries must be a non-negative integer, not -1"):
        BridgeClient(ScriptedTransport([]), retries=-1)
    with pytest.raises(ValueError, match=r"addr must be a multiple of 4, not 0x6"):
        run_sync(BridgeClient(ScriptedTransport([])).read_at(6))
    with pytest.raises(ValueError, match=r"divisor must be an integer ≥ 4.*not 2"):
        AmaranthUartTransport(None, None, None, 2)


# ---- host codec, against a scripted transport

def response(command, seq, code=ResponseCode.OK, data=0):
    body = bytes([command | 0x80, seq, code]) + data.to_bytes(4, "little")
    return bytes([0x5A]) + body + bytes([crc8(body)])


class ScriptedTransport:
    """Answers each request with the next entry of ``answers``: bytes, or a function of the
    request frame returning bytes."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.sent = []

    async def send(self, data):
        self.sent.append(bytes(data))

    async def receive(self, count, timeout=None):
        answer = self.answers.pop(0)
        return answer(self.sent[-1]) if callable(answer) else answer


def echo(code=ResponseCode.OK, data=0):
    return lambda request: response(request[1], request[2], code, data)


def test_crc8_known_values():
    assert crc8(b"123456789") == 0xF4            # CRC-8 (SMBus) check value
    assert crc8(b"") == 0
    assert crc8(b"\x01") == 0x07
    frame = encode_write(9, 0x1234, 0xCAFEF00D)
    assert crc8(frame[1:]) == 0                  # a frame followed by its CRC checks to 0


def test_encoders_give_the_fixed_layout():
    assert encode_read(0x11, 0x8000_0004) == bytes.fromhex("a5 01 11 04 00 00 80") + \
        bytes([crc8(bytes.fromhex("01 11 04 00 00 80"))])
    write = encode_write(0x22, 0x10, 0x44332211, sel=0x5)
    assert write[:12] == bytes.fromhex("a5 02 22 10 00 00 00 05 11 22 33 44")
    assert len(write) == 13 and write[12] == crc8(write[1:12])
    assert encode_status(0x33) == bytes([0xA5, 0x03, 0x33, crc8(b"\x03\x33")])


def test_decode_round_trip_and_every_error():
    raw = response(Command.READ, 7, ResponseCode.OK, 0xDEADBEEF)
    assert decode_response(raw) == Response(Command.READ, 7, ResponseCode.OK, 0xDEADBEEF)
    assert decode_response(response(0x07, 1, ResponseCode.BAD_COMMAND)).command == 0x07
    with pytest.raises(ChecksumError, match="does not match"):
        decode_response(raw[:5] + bytes([raw[5] ^ 0x10]) + raw[6:])
    with pytest.raises(FrameError, match="9 bytes, not 8"):
        decode_response(raw[:8])
    with pytest.raises(FrameError, match="sync byte must be 0x5a, not 0xa5"):
        decode_response(b"\xA5" + raw[1:])
    body = bytes([0x01, 7, 0, 0, 0, 0, 0])
    with pytest.raises(FrameError, match="lacks the response flag"):
        decode_response(b"\x5A" + body + bytes([crc8(body)]))
    assert issubclass(ChecksumError, BridgeError) and issubclass(FrameError, BridgeError)


def test_client_sequence_numbers_and_errors():
    transport = ScriptedTransport([echo(data=0x1234), echo(), echo(data=0x55)])
    client = BridgeClient(transport, base=0x1000)
    assert run_sync(client.read_word(8)) == 0x1234
    run_sync(client.write_word(4, 0xAB00, 0x2))
    assert run_sync(client.status()) == 0x55
    assert [frame[2] for frame in transport.sent] == [0, 1, 2]
    assert transport.sent[0] == encode_read(0, 0x1008)
    assert transport.sent[1] == encode_write(1, 0x1004, 0xAB00, 0x2)

    with pytest.raises(NoAnswer, match=r"2 of 9 bytes came back \(5a81\) \(after 2 attempts\)"):
        run_sync(BridgeClient(ScriptedTransport([b"", b"\x5A\x81"])).status())
    with pytest.raises(BridgeNak, match="BUS_ERROR to READ at 0x00000010") as nak:
        run_sync(BridgeClient(ScriptedTransport([echo(ResponseCode.BUS_ERROR)])).read_at(0x10))
    assert nak.value.code.name == "BUS_ERROR"
    wrong_seq = lambda request: response(request[1], request[2] + 1)
    with pytest.raises(FrameError, match="seq 1, expected"):
        run_sync(BridgeClient(ScriptedTransport([wrong_seq])).status())
    corrupt = lambda request: response(request[1], request[2])[:8] + b"\x00"
    with pytest.raises(ChecksumError):
        run_sync(BridgeClient(ScriptedTransport([corrupt]), retries=0).status())
    retried = BridgeClient(ScriptedTransport([corrupt, echo(data=3)]), retries=1)
    assert run_sync(retried.status()) == 3 and retried.attempts == 2


def test_client_runs_under_asyncio_too():
    client = BridgeClient(ScriptedTransport([echo(data=0x99)]))
    assert asyncio.run(client.status()) == 0x99


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_serial_transport_over_a_pty():
    pytest.importorskip("serial")
    board, host = os.openpty()
    try:
        with SerialTransport(os.ttyname(host), timeout_s=0.05) as port:
            client = BridgeClient(port, retries=0)
            os.write(board, response(Command.STATUS, 0, data=0x42))
            assert run_sync(client.status()) == 0x42
            assert os.read(board, 64) == encode_status(0)
            with pytest.raises(NoAnswer, match="0 of 9 bytes"):
                run_sync(client.read_at(0x10))
    finally:
        os.close(board)
        os.close(host)


def test_serial_port_errors_name_the_port(monkeypatch):
    with pytest.raises(PortError, match=r"'/dev/ttyNOPE9': no such device; is the board "
                                        r"plugged in\? \(--port\)"):
        SerialTransport("/dev/ttyNOPE9")
    monkeypatch.setitem(sys.modules, "serial", None)       # as if pyserial were missing
    with pytest.raises(PortError, match="pyserial is not installed"):
        SerialTransport("/dev/ttyUSB0")


# ---- UART

def simulate(dut, *testbenches, processes=()):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for testbench in testbenches:
        sim.add_testbench(testbench)
    for process in processes:
        sim.add_process(process)
    sim.run()


@pytest.mark.parametrize("divisor", [4, 5, 7, 16])
def test_uart_loopback_random_bytes(divisor):
    rng = random.Random(divisor)
    m = Module()
    m.submodules.tx = tx = UartTx(divisor)
    m.submodules.rx = rx = UartRx(divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    sent = [rng.randrange(256) for _ in range(24)]
    got = []

    async def producer(ctx):
        for value in sent:
            ctx.set(tx.i.payload, value)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
            for _ in range(rng.choice([0, 0, 1, 3 * divisor])):
                await ctx.tick()

    async def consumer(ctx):
        ctx.set(rx.o.ready, 1)
        while len(got) < len(sent):
            _, _, valid, payload = await ctx.tick().sample(rx.o.valid, rx.o.payload)
            if valid:
                got.append(payload)
        assert (ctx.get(rx.framing_errors), ctx.get(rx.overruns)) == (0, 0)

    simulate(m, producer, consumer)
    assert got == sent


def test_uart_tx_is_idle_high_and_back_to_back():
    dut = UartTx(DIVISOR)

    async def testbench(ctx):
        assert ctx.get(dut.tx) == 1
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.i.payload, 0x00)
        line = []
        for _ in range(20 * DIVISOR):
            await ctx.tick()
            line.append(ctx.get(dut.tx))
        # Two bytes of zeros: start + 8 data bits low, stop high for exactly one bit each.
        assert line == ([0] * 9 * DIVISOR + [1] * DIVISOR) * 2

    simulate(dut, testbench)


def test_uart_rx_framing_error_glitch_and_overrun():
    dut = UartRx(DIVISOR)
    got, pulses = [], []

    async def testbench(ctx):
        line = AmaranthUartTransport(ctx, dut.rx, None, DIVISOR)
        ctx.set(dut.o.ready, 1)
        await line.send_byte(0x3C, stop=0)       # stop bit low: dropped, counted
        await line.idle(2 * DIVISOR)
        ctx.set(dut.rx, 0)                       # a one-cycle glitch: not a start bit
        await ctx.tick()
        await line.idle(3 * DIVISOR)
        await line.send_byte(0xC3)
        await line.idle(2 * DIVISOR)
        assert got == [0xC3]
        assert (ctx.get(dut.framing_errors), ctx.get(dut.overruns)) == (1, 0)
        # No back-pressure: with o full, the next byte is lost and counted.
        ctx.set(dut.o.ready, 0)
        await line.send(b"\x11\x22")
        await line.idle(2 * DIVISOR)
        assert (ctx.get(dut.o.valid), ctx.get(dut.o.payload)) == (1, 0x11)
        assert ctx.get(dut.overruns) == 1 and pulses.count("overrun") == 1

    async def monitor(ctx):
        async for _, _, valid, ready, payload, framing, overrun in ctx.tick().sample(
                dut.o.valid, dut.o.ready, dut.o.payload, dut.framing_error, dut.overrun):
            if valid and ready:
                got.append(payload)
            if framing:
                pulses.append("framing")
            if overrun:
                pulses.append("overrun")

    simulate(dut, testbench, processes=[monitor])
    assert pulses.count("framing") == 1


# ---- the bridge against a Wishbone classic subordinate model

ERR_ADDR = 0x0000_0100        # answers err
HANG_ADDR = 0x0000_0200       # never answers
SLOW_ADDR = 0x0000_0300       # answers after SLOW_CYCLES
SLOW_CYCLES = 400


class WishboneModel:
    """A Wishbone classic subordinate with a word memory, random ack delays (0..3 cycles,
    registered feedback) and the special addresses above. ``accesses`` records every request
    as ``(we, byte address, sel, dat_w)`` (``dat_w`` 0 for a read: it is not looked at);
    ``abandoned`` the requests dropped unanswered and after how many cycles."""

    def __init__(self, bus, rng):
        self.bus = bus
        self.rng = rng
        self.memory = {}
        self.accesses = []
        self.abandoned = []

    async def process(self, ctx):
        bus = self.bus
        request, delay, held, answered = None, 0, 0, False
        while True:
            _, _, cyc, stb, adr, we, sel, dat_w = await ctx.tick().sample(
                bus.cyc, bus.stb, bus.adr, bus.we, bus.sel, bus.dat_w)
            ctx.set(bus.ack, 0)
            ctx.set(bus.err, 0)
            if answered:                 # the request seen at this edge was answered by it
                answered = False
                continue
            if not (cyc and stb):
                if request is not None:
                    self.abandoned.append((request, held))
                request = None
                continue
            if request is None:
                request = (we, adr << 2, sel, dat_w if we else 0)   # dat_w: writes only
                self.accesses.append(request)
                delay = SLOW_CYCLES if adr << 2 == SLOW_ADDR else self.rng.randrange(4)
                held = 0
            assert (we, adr << 2, sel, dat_w if we else 0) == request, \
                "request changed before ack"
            held += 1
            if adr << 2 == HANG_ADDR or held <= delay:
                continue
            if adr << 2 == ERR_ADDR:
                ctx.set(bus.err, 1)
            else:
                word = self.memory.get(adr, 0)
                if we:
                    mask = sum(0xFF << 8 * lane for lane in range(4) if sel >> lane & 1)
                    self.memory[adr] = (word & ~mask) | (dat_w & mask)
                ctx.set(bus.dat_r, word if not we else 0)
                ctx.set(bus.ack, 1)
            request, answered = None, True


def run_bridge(body, *, seed=1, retries=1, transport_wrapper=None, **kwargs):
    dut = UartBridge(DIVISOR, **kwargs)
    model = WishboneModel(dut.bus, random.Random(seed))
    finished = []

    async def testbench(ctx):
        line = AmaranthUartTransport(ctx, dut.rx, dut.tx, DIVISOR)
        transport = transport_wrapper(line) if transport_wrapper else line
        await body(ctx, dut, BridgeClient(transport, retries=retries), line, model)
        finished.append(True)

    simulate(dut, testbench, processes=[model.process])
    assert finished
    return model


async def raw_exchange(line, frame):
    await line.send(frame)
    return decode_response(await line.receive(9))


def test_bridge_reads_and_writes_with_byte_lanes():
    rng = random.Random(3)
    shadow = {}
    operations = []

    async def body(ctx, dut, client, line, model):
        for _ in range(30):
            addr = 0x40 + 4 * rng.randrange(4)
            if rng.random() < 0.5:
                value, sel = rng.randrange(1 << 32), rng.randrange(1, 16)
                await client.write_at(addr, value, sel)
                mask = sum(0xFF << 8 * lane for lane in range(4) if sel >> lane & 1)
                shadow[addr] = (shadow.get(addr, 0) & ~mask) | (value & mask)
                operations.append((1, addr, sel, value))
            else:
                assert await client.read_at(addr) == shadow.get(addr, 0)
                operations.append((0, addr, 0xF, 0))
        # RegisterAccess on top: narrow accesses at base + offset become byte lanes.
        board = BridgeClient(client.transport, base=0x40)
        board.seq = client.seq
        await board.write(0x6, 0xBEEF, size=2)
        assert await board.read(0x6, size=2) == 0xBEEF
        assert await board.read(0x7, size=1) == 0xBE
        assert model.accesses[-3:] == [(1, 0x44, 0xC, 0xBEEF << 16), (0, 0x44, 0xF, 0),
                                       (0, 0x44, 0xF, 0)]
        assert (ctx.get(dut.frames_ok), ctx.get(dut.frames_bad)) == (33, 0)

    model = run_bridge(body)
    assert model.accesses[:30] == operations


def test_bridge_status_and_failed_accesses():
    async def body(ctx, dut, client, line, model):
        ctx.set(dut.status, 0xDEADBEEF)
        assert await client.status() == 0xDEADBEEF
        assert model.accesses == []
        with pytest.raises(BridgeNak, match="BUS_ERROR") as nak:
            await client.read_at(ERR_ADDR)
        assert nak.value.code == ResponseCode.BUS_ERROR
        with pytest.raises(BridgeNak, match="TIMEOUT"):
            await client.write_at(HANG_ADDR, 1)
        assert model.abandoned == [((1, HANG_ADDR, 0xF, 1), 64)]   # cyc held ack_timeout
        answer = await raw_exchange(line, encode_read(0x44, 0x402))
        assert (answer.code, answer.seq, answer.data) == (ResponseCode.MISALIGNED, 0x44, 0)
        assert len(model.accesses) == 2                              # none for MISALIGNED
        assert await client.read_at(0x8) == 0                        # and still working
        assert (ctx.get(dut.frames_ok), ctx.get(dut.frames_bad)) == (5, 0)

    run_bridge(body, ack_timeout=64)


def test_bridge_rejects_corrupted_frames():
    async def body(ctx, dut, client, line, model):
        frame = encode_write(0x21, 0x10, 0x12345678)
        answer = await raw_exchange(line, frame[:-1] + bytes([frame[-1] ^ 0x01]))
        assert answer == Response(Command.WRITE, 0x21, ResponseCode.BAD_CRC, 0)
        assert model.accesses == []
        # Unknown command: answered as soon as its sequence byte is in, echoed as received.
        answer = await raw_exchange(line, bytes([0xA5, 0x07, 0x31, 0x00]))
        assert answer == Response(0x07, 0x31, ResponseCode.BAD_COMMAND, 0)
        assert (ctx.get(dut.frames_ok), ctx.get(dut.frames_bad)) == (0, 2)
        # Garbage before the sync byte (including the response sync 0x5A) is skipped.
        await line.send(bytes([0x00, 0xFF, 0x5A, 0x13, 0x01]))
        await client.write_at(0x10, 0x12345678)
        assert await client.read_at(0x10) == 0x12345678
        assert (ctx.get(dut.frames_ok), ctx.get(dut.frames_bad)) == (2, 2)

    run_bridge(body)


def test_bridge_drops_a_truncated_frame_after_frame_timeout():
    async def body(ctx, dut, client, line, model):
        await line.send(encode_write(0x01, 0x20, 0xFFFFFFFF)[:6])
        assert await line.receive(9, 100 + 20 * 10 * DIVISOR) == b""    # nothing answered
        assert (ctx.get(dut.frames_ok), ctx.get(dut.frames_bad)) == (0, 1)
        await client.write_at(0x20, 0xA5A5A5A5)          # sync bytes inside a frame's data
        assert await client.read_at(0x20) == 0xA5A5A5A5
        assert model.accesses == [(1, 0x20, 0xF, 0xA5A5A5A5), (0, 0x20, 0xF, 0)]

    run_bridge(body, frame_timeout=20 * DIVISOR)


class CorruptFirstAnswer:
    """Passes bytes through, but flips a bit in the first response received."""

    def __init__(self, line):
        self.line = line
        self.corrupted = False

    async def send(self, data):
        await self.line.send(data)

    async def receive(self, count, timeout=None):
        raw = await self.line.receive(count, timeout)
        if not self.corrupted:
            self.corrupted = True
            raw = raw[:5] + bytes([raw[5] ^ 0x04]) + raw[6:]
        return raw


@pytest.mark.parametrize("retries", [0, 1])
def test_bridge_corrupted_response_is_a_checksum_error(retries):
    async def body(ctx, dut, client, line, model):
        model.memory[0x30 >> 2] = 0x0BADCAFE
        if retries:
            assert await client.read_at(0x30) == 0x0BADCAFE
        else:
            with pytest.raises(ChecksumError):
                await client.read_at(0x30)
        assert client.attempts == retries + 1
        assert model.accesses == [(0, 0x30, 0xF, 0)] * (retries + 1)

    run_bridge(body, retries=retries, transport_wrapper=CorruptFirstAnswer)


def test_bridge_keeps_bytes_arriving_during_a_long_access():
    """A host sending three frames back to back: the second and third arrive while the
    first's bus access is still waiting for ack; the RX FIFO keeps them."""
    async def body(ctx, dut, client, line, model):
        model.memory[SLOW_ADDR >> 2] = 0x5105
        ctx.set(dut.status, 0x77)
        await line.send(encode_read(1, SLOW_ADDR) + encode_write(2, 0x4, 0x99) +
                        encode_status(3))
        raw = await line.receive(27)
        answers = [decode_response(raw[i:i + 9]) for i in range(0, 27, 9)]
        assert answers == [Response(Command.READ, 1, ResponseCode.OK, 0x5105),
                           Response(Command.WRITE, 2, ResponseCode.OK, 0),
                           Response(Command.STATUS, 3, ResponseCode.OK, 0x77)]
        assert ctx.get(dut.overruns) == 0 and model.memory[1] == 0x99

    run_bridge(body)


def test_bridge_latency_from_last_stop_bit_to_bus_access():
    """The figure in :class:`UartBridge`'s docstring: ``cyc`` rises ``divisor // 2 + 6``
    cycles after the CRC byte's stop bit starts on the pin, here 4 after it ends."""
    async def body(ctx, dut, client, line, model):
        await line.send(encode_read(5, 0x8))
        cycles = 0
        while not ctx.get(dut.bus.cyc):
            await ctx.tick()
            cycles += 1
        assert cycles == DIVISOR // 2 + 6 - DIVISOR
        assert decode_response(await line.receive(9)).seq == 5

    run_bridge(body)
