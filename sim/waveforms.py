"""Timing diagrams from traces of the real simulation
(``.venv/bin/python -m virtio_mmio_sim.waveforms [DIR]``, default ``docs/timing``).

Each scenario of :data:`SCENARIOS` runs the endpoint in Amaranth's simulator (the AXI4-Lite
flavour, profile ``seed``), records the named ports clock by clock (the values each clock edge
samples) over a window, and turns the trace into WaveDrom's WaveJSON; :func:`write_waveforms`
writes ``<name>.json`` and ``<name>.svg`` (rendered by the ``wavedrom`` package) for each. The
stimulus is the driver model's register sequence for the set-up and direct port activity in
the window, so the diagrams show what the RTL does, not what anybody drew.
"""

import json
from dataclasses import dataclass
from pathlib import Path

from amaranth.sim import Simulator

from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.flatten import flat_ports, port_signal
from virtio_mmio.params import EndpointParams

from .amaranth_bus import AmaranthAxiLite
from .driver import VirtioMmioDriver


__all__ = ["Scenario", "SCENARIOS", "trace", "wavejson", "write_waveforms"]


#: The parameters every scenario uses: 2 queues, 8 bytes of config space (the doorbells
#: follow it).
PARAMS = EndpointParams(queues=2, queue_size=16, config_size=8)


@dataclass(frozen=True)
class Scenario:
    """One diagram: ``title``, the ports shown (their flat Verilog names, docs/spec.md §9; data
    ports are shown as hexadecimal values) and
    the stimulus ``run(ctx, dut, driver, window)``: an async function that sets up through
    ``driver`` and calls ``await window(cycles)`` around the activity to record."""

    name: str
    title: str
    ports: tuple
    run: object


async def _read(ctx, dut, address):
    ctx.set(dut.bus.araddr, address)
    ctx.set(dut.bus.arvalid, 1)
    await ctx.tick()
    ctx.set(dut.bus.arvalid, 0)


async def _write(ctx, dut, address, data):
    """AW and W together for one clock (the endpoint takes both at once)."""
    ctx.set(dut.bus.awaddr, address)
    ctx.set(dut.bus.awvalid, 1)
    ctx.set(dut.bus.wdata, data)
    ctx.set(dut.bus.wstrb, 0xF)
    ctx.set(dut.bus.wvalid, 1)
    await ctx.tick()
    ctx.set(dut.bus.awvalid, 0)
    ctx.set(dut.bus.wvalid, 0)


async def _axil_read(ctx, dut, driver, window):
    ctx.set(dut.bus.rready, 1)
    async def activity():
        await ctx.tick()
        await _read(ctx, dut, 0x004)                    # Version
        await ctx.tick().repeat(2)
    await window(activity)


async def _axil_write(ctx, dut, driver, window):
    ctx.set(dut.bus.bready, 1)
    async def activity():
        await ctx.tick()
        await _write(ctx, dut, 0x070, 0x1)              # Status = ACKNOWLEDGE
        await ctx.tick().repeat(3)
    await window(activity)


async def _back_to_back(ctx, dut, driver, window):
    ctx.set(dut.bus.rready, 1)
    ctx.set(dut.bus.bready, 1)
    async def activity():
        await ctx.tick()
        reads = [0x000, 0x004, 0x008, 0x00C]            # MagicValue, Version, DeviceID, VendorID
        for index, address in enumerate(reads):
            ctx.set(dut.bus.araddr, address)
            ctx.set(dut.bus.arvalid, 1)
            # Writes of DriverFeaturesSel (0x24) at the same time, one per clock.
            ctx.set(dut.bus.awaddr, 0x024)
            ctx.set(dut.bus.awvalid, 1)
            ctx.set(dut.bus.wdata, index)
            ctx.set(dut.bus.wstrb, 0xF)
            ctx.set(dut.bus.wvalid, 1)
            await ctx.tick()
        for name in ("arvalid", "awvalid", "wvalid"):
            ctx.set(getattr(dut.bus, name), 0)
        await ctx.tick().repeat(2)
    await window(activity)


async def _doorbell(ctx, dut, driver, window):
    await driver.initialize(queues=[dict(index=q, size=16, desc=0x1000 * (q + 1),
                                         driver=0x2000 * (q + 1), device=0x3000 * (q + 1))
                                    for q in range(2)])
    ctx.set(dut.bus.bready, 1)
    ctx.set(dut.device.notify.ready, 0)
    async def activity():
        await ctx.tick()
        await _write(ctx, dut, PARAMS.notify_base + PARAMS.notify_multiplier, 0)   # queue 1
        await ctx.tick().repeat(2)
        ctx.set(dut.device.notify.ready, 1)               # the device takes it
        await ctx.tick()
        ctx.set(dut.device.notify.ready, 0)
        await ctx.tick()
    await window(activity)


async def _event_msi(ctx, dut, driver, window):
    ctx.set(dut.msi.awready, 1)
    ctx.set(dut.msi.wready, 1)
    await driver.initialize(queues=[dict(index=0, size=16, desc=0x1000, driver=0x2000,
                                         device=0x3000)],
                            msi=({0: (0xFEE0_0000, 0), 1: (0xFEE0_0004, 1)}, "seed"))
    async def activity():
        await ctx.tick()
        ctx.set(dut.device.used_queue, 0)                 # a used buffer of queue 0: vector 1
        ctx.set(dut.device.used_valid, 1)
        await ctx.tick()
        ctx.set(dut.device.used_valid, 0)
        await ctx.tick()
        await ctx.tick()
        ctx.set(dut.msi.bvalid, 1)                        # the interconnect answers
        await ctx.tick()
        ctx.set(dut.msi.bvalid, 0)
        await ctx.tick().repeat(2)
    await window(activity)


async def _device_ports(ctx, dut, driver, window):
    await driver.initialize(queues=[dict(index=1, size=16, desc=0x1_0000, driver=0x2_0000,
                                         device=0x3_0000)])
    ctx.set(dut.bus.rready, 1)
    async def activity():
        await ctx.tick()
        ctx.set(dut.device.queue.sel, 1)
        await ctx.tick()
        ctx.set(dut.device.queue.sel, 0)
        await ctx.tick()
        await _read(ctx, dut, 0x100)                      # config space, word 0
        ctx.set(dut.device.config.rdata, 0xC0FFEE)        # the device answers the next clock
        await ctx.tick()
        ctx.set(dut.device.config.rdata, 0)
        await ctx.tick().repeat(2)
    await window(activity)


SCENARIOS = {scenario.name: scenario for scenario in (
    Scenario("axil-read", "AXI4-Lite read: RVALID with the data one clock after the AR "
             "handshake (read latency 1)",
             ("s_axil_araddr", "s_axil_arvalid", "s_axil_arready", "s_axil_rvalid", "s_axil_rready",
              "s_axil_rdata"),
             _axil_read),
    Scenario("axil-write", "AXI4-Lite write: AW and W together; the register (Status) "
             "changes and BVALID rises two clocks after the handshake",
             ("s_axil_awaddr", "s_axil_awvalid", "s_axil_awready", "s_axil_wdata", "s_axil_wvalid",
              "s_axil_wready", "s_axil_bvalid", "s_axil_bready", "status"),
             _axil_write),
    Scenario("axil-back-to-back", "Back to back: one read and one write every clock, "
             "concurrently",
             ("s_axil_araddr", "s_axil_arvalid", "s_axil_arready", "s_axil_rvalid", "s_axil_rdata",
              "s_axil_awvalid", "s_axil_wdata", "s_axil_awready", "s_axil_bvalid"),
             _back_to_back),
    Scenario("doorbell-notify", "A doorbell write (queue 1) → notify_valid one clock later, "
             "held until notify_ready",
             ("s_axil_awaddr", "s_axil_awvalid", "s_axil_awready", "s_axil_wvalid", "notify_valid",
              "notify_ready", "notify_queue", "s_axil_bvalid"),
             _doorbell),
    Scenario("event-msi", "A used-buffer event (queue 0, MSI vector 1) → the MSI write's "
             "AWVALID two clocks later",
             ("used_valid", "used_queue", "m_axil_awvalid", "m_axil_awaddr", "m_axil_wvalid",
              "m_axil_wdata", "m_axil_bvalid", "irq"),
             _event_msi),
    Scenario("device-ports", "q_sel → that queue's state one clock later; a config-space "
             "read: cfg_re, the device's cfg_rdata the next clock, then RVALID",
             ("q_sel", "q_ready", "q_num", "q_desc", "s_axil_arvalid", "cfg_re", "cfg_addr",
              "cfg_rdata", "s_axil_rvalid", "s_axil_rdata"),
             _device_ports),
)}


def trace(scenario):
    """Run ``scenario``; ``[(label, [value per clock])]`` over its window."""
    dut = VirtioMmioEndpoint(PARAMS)
    ports = flat_ports(dut)
    signals = [port_signal(dut, *ports[name][:2]) for name in scenario.ports]
    rows = []
    state = {"recording": False, "done": False}

    async def recorder(ctx):
        async for _, _, *values in ctx.tick().sample(*signals):
            if state["recording"]:
                rows.append(values)

    async def testbench(ctx):
        driver = VirtioMmioDriver(AmaranthAxiLite(ctx, dut), PARAMS.profile)

        async def window(activity):
            state["recording"] = True
            await activity()
            state["recording"] = False

        await scenario.run(ctx, dut, driver, window)
        state["done"] = True

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_process(recorder)
    sim.add_testbench(testbench)
    sim.run_until(1e-4)
    if not state["done"]:
        raise RuntimeError(f"waveform scenario {scenario.name} did not finish")
    return [(name, [int(row[index]) for row in rows])
            for index, name in enumerate(scenario.ports)]


def wavejson(scenario, rows):
    """WaveDrom's WaveJSON for ``rows`` (from :func:`trace`): 1-bit ports as levels, wider
    ones as hexadecimal values."""
    cycles = len(rows[0][1])
    signals = [{"name": "clk", "wave": "p" + "." * (cycles - 1)}]
    for label, values in rows:
        bit = not _is_data(label)
        wave, data, last = "", [], None
        for value in values:
            if value == last:
                wave += "."
            elif bit:
                wave += str(value)
            else:
                wave += "="
                data.append(f"{value:x}")
            last = value
        signal = {"name": label, "wave": wave}
        if data:
            signal["data"] = data
        signals.append(signal)
    longest = max((len(label) for signal in signals for label in signal.get("data", ())),
                  default=0)
    # Wide enough for the longest value (8 hex digits need two units per clock).
    return {"signal": signals, "head": {"text": scenario.title},
            "config": {"hscale": 2 if longest > 4 else 1}}


def _is_data(label):
    """Ports shown as values rather than levels (addresses, data, indices, counts)."""
    return label.endswith(("addr", "data", "queue", "num", "desc", "status", "sel"))


def write_waveforms(directory, names=None):
    """Write ``<name>.json`` and ``<name>.svg`` for each scenario (all by default) into
    ``directory``; returns the paths written."""
    import wavedrom

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names or SCENARIOS:
        scenario = SCENARIOS[name]
        wave = wavejson(scenario, trace(scenario))
        text = json.dumps(wave, indent=1) + "\n"
        (directory / f"{name}.json").write_text(text)
        wavedrom.render(json.dumps(wave)).saveas(str(directory / f"{name}.svg"))
        written += [directory / f"{name}.json", directory / f"{name}.svg"]
    return written


def main(argv=None):
    import sys
    argv = sys.argv[1:] if argv is None else argv
    directory = argv[0] if argv else "docs/timing"
    for path in write_waveforms(directory):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
