"""The board path without a board: every board top elaborates into a build plan, one real
iCE40 bitstream is built with the YoWASP tools, and the host tool's session runs against the
simulated demo SoC with its UART at bit level (the same code that drives a real board over a
serial port)."""

import zlib
from pathlib import Path

import pytest
from amaranth.sim import Simulator

from virtio_mmio.demo import (CONTROL_BASE, DEMO_ID, MSI_WINDOW, DemoRegister, DemoSoC,
                              demo_params)
from virtio_mmio_platforms import BAUD, BOARDS, Board, DemoTop, board
from virtio_mmio_platforms import dfu_suffix
from virtio_mmio_platforms.build import NAME, build, parse_nextpnr_log, plan
from virtio_mmio_sim.bridge_host import AmaranthUartTransport, BridgeClient
from virtio_mmio_sim.host import host_session, simulate_session


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


# ------------------------------------------------------------------------------ build plans

@pytest.mark.parametrize("name", list(BOARDS))
def test_every_board_elaborates_into_a_build_plan(name):
    build_plan = plan(name)
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


def _run_on_soc(divisor, body):
    soc = DemoSoC(divisor, n_leds=4, pulse_cycles=8)
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
