"""``virtio-mmio bench``: the bus figures of docs/spec.md §11, measured in Amaranth's simulator.

Each figure is counted in clock cycles on the endpoint's own ports, with a manager that never
holds back (valid always high, ready always high), so what is measured is the endpoint alone.
"""

import sys
from dataclasses import dataclass

from amaranth.sim import Simulator

from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.params import BUSES, WISHBONE_MODES
from virtio_mmio.regmap import PROFILES

from .amaranth_bus import AmaranthAxiLite
from .driver import VirtioMmioDriver


__all__ = ["Figure", "measure", "run_bench"]


@dataclass
class Figure:
    name: str
    value: float
    target: str
    met: bool

    def row(self):
        value = f"{self.value:.2f}" if isinstance(self.value, float) else str(self.value)
        return (self.name, value, self.target, "yes" if self.met else "NO")


def _run(dut, testbench, processes=()):
    result = {}
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for process in processes:
        sim.add_process(process)

    async def wrapper(ctx):
        result.update(await testbench(ctx))
    sim.add_testbench(wrapper)
    sim.run()
    return result


def _rate(cycles):
    """Clocks per transfer between the first and the last of ``cycles``."""
    if len(cycles) < 2:
        return float("inf")
    return (cycles[-1] - cycles[0]) / (len(cycles) - 1)


def _axi_figures(params, accesses):
    dut = VirtioMmioEndpoint(params)
    regs = params.regmap
    read_at = regs.offset("MagicValue")
    # DeviceFeaturesSel: a plain register write with no side effect beyond the selector.
    write_at = regs.offset("DeviceFeaturesSel")

    async def stream(ctx, reads, writes):
        ctx.set(dut.bus.araddr, read_at)
        ctx.set(dut.bus.awaddr, write_at)
        ctx.set(dut.bus.wdata, 0)
        ctx.set(dut.bus.wstrb, 0xF)
        ctx.set(dut.bus.rready, 1)
        ctx.set(dut.bus.bready, 1)
        ar, r, b = [], [], []
        cycle = 0
        while (reads and len(r) < accesses) or (writes and len(b) < accesses):
            ctx.set(dut.bus.arvalid, reads and len(ar) < accesses)
            ctx.set(dut.bus.awvalid, writes and len(b) < accesses)
            ctx.set(dut.bus.wvalid, writes and len(b) < accesses)
            _, _, arv, arr, rv, rr, bv, br = await ctx.tick().sample(
                dut.bus.arvalid, dut.bus.arready, dut.bus.rvalid,
                dut.bus.rready, dut.bus.bvalid, dut.bus.bready)
            if arv and arr:
                ar.append(cycle)
            if rv and rr:
                r.append(cycle)
            if bv and br:
                b.append(cycle)
            cycle += 1
            if cycle > 20 * accesses + 100:
                raise RuntimeError("bench: the endpoint stopped answering")
        for name in ("arvalid", "awvalid", "wvalid"):
            ctx.set(getattr(dut.bus, name), 0)
        await ctx.tick().repeat(4)
        return ar, r, b

    handshakes = {"aw": [], "w": [], "notify": []}

    async def monitor(ctx):
        cycle = 0
        async for _, _, awv, awr, wv, wr, nv in ctx.tick().sample(
                dut.bus.awvalid, dut.bus.awready, dut.bus.wvalid,
                dut.bus.wready, dut.device.notify.valid):
            for name, fired in (("aw", awv and awr), ("w", wv and wr), ("notify", nv)):
                if fired:
                    handshakes[name].append(cycle)
            cycle += 1

    async def notify_latency(ctx):
        """Cycles from the write being taken (both AW and W handshaken) to notify_valid."""
        ctx.set(dut.device.notify.ready, 1)
        await AmaranthAxiLite(ctx, dut).write_word(regs.offset("QueueNotify"), 0)
        taken = max(handshakes["aw"][0], handshakes["w"][0])
        return handshakes["notify"][0] - taken

    async def testbench(ctx):
        out = {"notify_latency": await notify_latency(ctx)}
        await ctx.tick().repeat(4)
        ar, r, _ = await stream(ctx, True, False)
        out["read_rate"] = _rate(r)
        out["read_latency"] = r[0] - ar[0]
        _, _, b = await stream(ctx, False, True)
        out["write_rate"] = _rate(b)
        _, r, b = await stream(ctx, True, True)
        out["concurrent_read_rate"] = _rate(r)
        out["concurrent_write_rate"] = _rate(b)
        return out

    m = _run(dut, testbench, [monitor])
    latency = _latency(params)
    return [
        Figure("AXI4-Lite clocks per read, back-to-back", m["read_rate"], "1.0",
               m["read_rate"] <= 1.0),
        Figure("AXI4-Lite clocks per write, back-to-back", m["write_rate"], "1.0",
               m["write_rate"] <= 1.0),
        Figure("AXI4-Lite clocks per read, concurrent with writes", m["concurrent_read_rate"],
               "1.0", m["concurrent_read_rate"] <= 1.0),
        Figure("AXI4-Lite clocks per write, concurrent with reads",
               m["concurrent_write_rate"], "1.0", m["concurrent_write_rate"] <= 1.0),
        Figure("AXI4-Lite read latency (AR handshake -> RVALID), clocks", m["read_latency"],
               f"{latency}", m["read_latency"] <= latency),
        Figure("notify: write handshake -> notify_valid, clocks", m["notify_latency"],
               f"<= {latency}", m["notify_latency"] <= latency),
    ]


def _latency(params):
    """The read latency (and the latency of a write's effect) the configuration promises:
    1, or 2 with the request stage (``params.pipeline``)."""
    return 2 if params.pipeline else 1


def _wishbone_figures(params, accesses, modes):
    latency = _latency(params)
    figures = []
    read_at = params.regmap.offset("MagicValue") >> 2
    for mode in ("pipelined", "classic"):
        if mode not in modes:
            continue
        dut = VirtioMmioEndpoint(params.replace(bus="wishbone", wishbone_mode=mode))

        async def testbench(ctx, dut=dut, mode=mode):
            ctx.set(dut.bus.adr, read_at)
            ctx.set(dut.bus.sel, 0xF)
            ctx.set(dut.bus.cyc, 1)
            ctx.set(dut.bus.stb, 1)
            # stb stays high: in classic mode the next access starts in the cycle after ack.
            acks, cycle = [], 0
            while len(acks) < accesses:
                _, _, ack = await ctx.tick().sample(dut.bus.ack)
                if ack:
                    acks.append(cycle)
                cycle += 1
                if cycle > 10 * accesses + 100:
                    raise RuntimeError("bench: the endpoint stopped acknowledging")
            ctx.set(dut.bus.cyc, 0)
            ctx.set(dut.bus.stb, 0)
            # The first request is presented in cycle 0.
            return {"rate": _rate(acks), "latency": acks[0]}

        m = _run(dut, testbench)
        if mode == "pipelined":
            figures.append(Figure("Wishbone pipelined clocks per access", m["rate"], "1",
                                  m["rate"] <= 1.0))
        else:
            figures.append(Figure("Wishbone classic clocks from stb to ack", m["latency"],
                                  f"{latency}", m["latency"] <= latency))
            figures.append(Figure("Wishbone classic clocks per access, stb held high",
                                  m["rate"], "-", True))
    return figures


def _msi_figures(params):
    """Event -> AWVALID, and all N+1 vectors pending at once drained with the manager always
    ready (docs/spec.md §11)."""
    n = params.queues
    if not PROFILES[params.profile].msi_registers:
        return [Figure("MSI figures", "n/a", f"profile {params.profile} has no MSI", True)]
    dut = VirtioMmioEndpoint(params.replace(bus="axil", msi_window=None))
    seen = {"enabled": [], "aw": [], "awvalid": []}

    async def monitor(ctx):
        cycle = 0
        ctx.set(dut.msi.awready, 1)
        ctx.set(dut.msi.wready, 1)
        async for _, _, enabled, awv, awr in ctx.tick().sample(
                dut.msi_enabled, dut.msi.awvalid, dut.msi.awready):
            seen["enabled"].append(enabled)
            seen["awvalid"].append(awv)
            if awv and awr:
                seen["aw"].append(cycle)
            cycle += 1

    async def testbench(ctx):
        driver = VirtioMmioDriver(AmaranthAxiLite(ctx, dut), params.profile)
        # (A profile that takes staged addresses only while MSI is on: on around the UPDATEs.)
        staging_needs_enable = PROFILES[params.profile].msi.stages_while_enabled
        if staging_needs_enable:
            await driver.msi_enable(True)
        for vector in range(n + 1):
            await driver.msi_update(vector, 0x1000 + 4 * vector, vector)
        if staging_needs_enable:
            await driver.msi_enable(False)
        # INTx first: both InterruptStatus bits set, so enabling makes every vector pending.
        ctx.set(dut.device.config_changed, 1)
        ctx.set(dut.device.used_valid, 1)
        await ctx.tick()
        ctx.set(dut.device.config_changed, 0)
        ctx.set(dut.device.used_valid, 0)
        enabling_from = len(seen["enabled"])
        await driver.msi_enable(True)
        while len(seen["aw"]) < n + 1:
            await ctx.tick()
        await ctx.tick().repeat(4)
        drained_from = seen["enabled"].index(1, enabling_from)
        drain = seen["aw"][n] - drained_from + 1
        # One event on an idle endpoint: cycles from the event's cycle to AWVALID.
        event_cycle = len(seen["awvalid"])
        ctx.set(dut.device.used_queue, n - 1)
        ctx.set(dut.device.used_valid, 1)
        await ctx.tick()
        ctx.set(dut.device.used_valid, 0)
        await ctx.tick().repeat(6)
        latency = seen["awvalid"].index(1, event_cycle) - event_cycle
        return {"drain": drain, "latency": latency}

    m = _run(dut, testbench, [monitor])
    return [
        Figure("MSI: event input -> AWVALID, clocks", m["latency"], "<= 2", m["latency"] <= 2),
        Figure(f"MSI: all {n + 1} vectors pending, clocks to send all", m["drain"],
               f"<= {n + 5}", m["drain"] <= n + 5),
    ]


def measure(params, accesses=64, *, buses=BUSES, wishbone_modes=WISHBONE_MODES):
    """The figures for the endpoint built with ``params``, on each of ``buses`` (whatever
    ``params.bus`` says), Wishbone in each of ``wishbone_modes``. The notify and MSI figures
    are taken on the AXI4-Lite ports, so they come with ``"axil"``."""
    if accesses < 2:
        raise ValueError(f"accesses must be at least 2, not {accesses!r}")
    for name, values, allowed in (("buses", buses, BUSES),
                                  ("wishbone_modes", wishbone_modes, WISHBONE_MODES)):
        if not values or not set(values) <= set(allowed):
            raise ValueError(f"{name} must be some of {', '.join(allowed)}, not {values!r}")
    figures = []
    if "axil" in buses:
        figures += _axi_figures(params.replace(bus="axil"), accesses) + _msi_figures(params)
    if "wishbone" in buses:
        figures += _wishbone_figures(params, accesses, wishbone_modes)
    return figures


def run_bench(params, *, accesses=64, buses=BUSES, wishbone_modes=WISHBONE_MODES,
              out=sys.stdout):
    figures = measure(params, accesses, buses=buses, wishbone_modes=wishbone_modes)
    rows = [("figure", "measured", "target", "met")] + [f.row() for f in figures]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    print(f"virtio-mmio bench: {params.profile}, {params.queues} queue(s)"
          f"{', pipelined (request stage)' if params.pipeline else ''}, "
          f"{accesses} accesses per figure (Amaranth simulator, clock cycles)", file=out)
    for index, row in enumerate(rows):
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip(),
              file=out)
        if index == 0:
            print("  ".join("-" * width for width in widths), file=out)
    return 0
