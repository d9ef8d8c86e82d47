"""The ``dragonball`` profile (docs/spec.md §3): Version 2 with the Dragonball VMM's extensions —
VendorID bits 7:0 advertising MSI and doorbells, MsiStatus bit 15 switching MSI until
DRIVER_OK, MsiCmd UPDATE/MASK/UNMASK with per-vector masks (others counted), staging only while
enabled, InterruptStatus kept while MSI is on, doorbells at 0x1000 + 4q — in Amaranth's
simulator with the driver model's Dragonball sequence and an MSI receiver on the manager
port, on both buses and both vector-state implementations."""

import random

import pytest

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import DragonballMsiOp, RegisterMap, Status
from virtio_mmio.transport.profiles import PROFILES
from virtio_mmio_sim.amaranth_harness import (random_events, settle, simulate,
                                              vector_event as event)
from virtio_mmio_sim.driver import ProbeInfo
from virtio_mmio_sim.msi_receiver import MsiReceiver


MAP = RegisterMap("dragonball")
MSI_BASE = 0xFEE0_0000
ENABLE = 0x8000


def target(vector):
    return MSI_BASE + 64 * vector, 0x5000_0000 | vector


def vector_of(address):
    return (address - MSI_BASE) // 64


#: N = 4 keeps the vector state in flip-flops, N = 40 in block RAM (``vector_state``).
BOTH = pytest.mark.parametrize("queues", [4, 40], ids=["flip-flops", "block-ram"])
BUSES = pytest.mark.parametrize("bus,mode", [("axil", "classic"), ("wishbone", "pipelined")])


def run(body, receiver=None, processes=(), **kwargs):
    kwargs.setdefault("queues", 4)
    kwargs.setdefault("profile", "dragonball")
    receiver = receiver or MsiReceiver()
    simulate(EndpointParams(**kwargs), body, processes=[receiver.process, *processes])
    return receiver


def command(op, arg):
    return op << 12 | arg


def test_profile_row():
    profile = PROFILES["dragonball"]
    assert profile.version == 2 and profile.doorbells and profile.msi_registers
    params = EndpointParams(profile="dragonball", queues=3)
    assert (params.notify_base, params.notify_multiplier) == (0x1000, 4)
    # Doorbells at base + 4q only; the base may move.
    with pytest.raises(ValueError, match="notify_multiplier must be 4 in profile dragonball"):
        EndpointParams(profile="dragonball", notify_multiplier=8)
    assert EndpointParams(profile="dragonball", notify_base=0x2000).notify_base == 0x2000
    # The register map: what differs from seed is in the rows.
    assert MAP["VendorID"].reset(params) == 0x1A06
    assert "ignored once DRIVER_OK" in MAP["MsiStatus"].doc
    ops = {name: value for name, value, _ in
           next(f for f in MAP["MsiCmd"].fields if f.name == "op").values}
    assert ops == {"UPDATE": 1, "MASK": 2, "UNMASK": 3}
    assert "kept while MSI is enabled" in MAP["InterruptStatus"].doc


@BUSES
def test_identification_and_doorbells(bus, mode):
    seen = []

    def recorder(dut):
        async def process(ctx):
            ctx.set(dut.device.notify.ready, 1)
            async for _, _, valid, queue in ctx.tick().sample(dut.device.notify.valid,
                                                               dut.device.notify.payload.queue):
                if valid:
                    seen.append(queue)
        return process

    async def body(ctx, dut, b, drv):
        info = await drv.probe()
        assert info.version == 2
        # The configured vendor ID's upper bytes, the extensions below.
        assert info.vendor_id == 0x1234_5600 | ProbeInfo.DRAGONBALL_MSI | \
            ProbeInfo.DRAGONBALL_DOORBELLS
        assert info.notify_layout == (0x1000, 4)
        await drv.initialize()
        for queue in (2, 0, 3):
            await drv.notify(queue)
        # QueueNotify works too.
        await b.write(MAP.offset("QueueNotify"), 1)
        await settle(ctx, 4)
        assert drv.doorbell(3) == 0x100C
        assert ctx.get(dut.device.notify_dropped) == 0
    run(body, processes=[recorder], bus=bus, wishbone_mode=mode, vendor_id=0x1234_56F4)
    assert seen == [2, 0, 3, 1]


@BOTH
@BUSES
def test_driver_sequence_delivers_each_vector(bus, mode, queues):
    """The Dragonball guest's order: enable (before DRIVER_OK), stage + UPDATE + UNMASK each
    vector; then every event is one message, irq stays low, InterruptStatus keeps counting
    and InterruptACK clears it."""
    vectors = {v: target(v) for v in range(queues + 1)}

    async def body(ctx, dut, b, drv):
        await drv.initialize(msi=(vectors, "dragonball"))
        assert ctx.get(dut.msi_enabled)
        assert await drv.msi_status() == ENABLE | queues
        order = [3, 0, 1, queues, 2]
        for vector in order:
            await event(ctx, dut, vector)
            await settle(ctx, 6)
            assert not ctx.get(dut.irq)
        # InterruptStatus is maintained while MSI is on; the line stays quiet.
        assert await b.read(MAP.offset("InterruptStatus")) == 0b11
        await b.write(MAP.offset("InterruptACK"), 0b01)
        assert await b.read(MAP.offset("InterruptStatus")) == 0b10
        assert not ctx.get(dut.irq)
        assert ctx.get(dut.msi_rejected) == 0
    receiver = run(body, bus=bus, wishbone_mode=mode, queues=queues)
    assert [(a, d) for _, a, d in receiver.messages] == \
        [target(v) for v in (3, 0, 1, queues, 2)]


@BOTH
def test_mask_holds_events_and_unmask_sends_them(queues):
    async def body(ctx, dut, b, drv):
        await drv.initialize(msi=({v: target(v) for v in range(queues + 1)}, "dragonball"))
        start = len(receiver.messages)
        await drv.msi_mask(2)
        await drv.msi_mask(0)
        for vector in (2, 2, 0, 1, 2):
            await event(ctx, dut, vector)
            await settle(ctx, 4)
        await settle(ctx, 30)
        # Only the unmasked vector 1 went out; 2 and 0 wait, each merged into one.
        assert [vector_of(a) for _, a, _ in receiver.messages[start:]] == [1]
        await drv.msi_mask(2, False)
        await settle(ctx, 20)
        assert [vector_of(a) for _, a, _ in receiver.messages[start:]] == [1, 2]
        # An event while unmasked goes out at once; masking again holds the next.
        await event(ctx, dut, 2)
        await settle(ctx, 10)
        await drv.msi_mask(2)
        await event(ctx, dut, 2)
        await settle(ctx, 20)
        assert [vector_of(a) for _, a, _ in receiver.messages[start:]] == [1, 2, 2]
        await drv.msi_mask(0, False)
        await drv.msi_mask(2, False)
        await settle(ctx, 20)
        assert sorted(vector_of(a) for _, a, _ in receiver.messages[start + 3:]) == [0, 2]
        # A device reset unmasks everything (and MSI is off, vectors invalid).
        await drv.msi_mask(1)
        await drv.reset()
        assert not ctx.get(dut.msi_enabled)
    receiver = MsiReceiver()
    run(body, receiver, queues=queues)


def test_enable_only_before_driver_ok_and_staging_only_while_enabled():
    async def body(ctx, dut, b, drv):
        await drv.probe()
        await drv.reset()
        await drv.add_status(Status.ACKNOWLEDGE | Status.DRIVER)
        # Staged while disabled: not taken. UPDATE then programs vector 1 with zeros.
        await b.write(MAP.offset("MsiAddrLow"), 0x1111_0000)
        await b.write(MAP.offset("MsiData"), 0x77)
        await drv.msi_enable_dragonball(True)
        assert ctx.get(dut.msi_enabled)
        await b.write(MAP.offset("MsiCmd"), command(DragonballMsiOp.UPDATE, 1), 2)
        await event(ctx, dut, 1)
        await settle(ctx, 10)
        assert [(a, d) for _, a, d in receiver.messages] == [(0, 0)]
        # Disable and enable again: fine before DRIVER_OK.
        await drv.msi_enable_dragonball(False)
        assert not ctx.get(dut.msi_enabled)
        await drv.msi_enable_dragonball(True)
        await drv.negotiate()
        await drv.add_status(Status.DRIVER_OK)
        # After DRIVER_OK the enable bit is refused both ways.
        await drv.msi_enable_dragonball(False)
        assert ctx.get(dut.msi_enabled)
        await drv.reset()
        await drv.add_status(Status.ACKNOWLEDGE | Status.DRIVER)
        await drv.negotiate()
        await drv.add_status(Status.DRIVER_OK)
        await drv.msi_enable_dragonball(True)
        assert not ctx.get(dut.msi_enabled)
        # MsiStatus reads "supported" and N whatever the state.
        assert await drv.msi_status() == ENABLE | 4
    receiver = MsiReceiver()
    run(body, receiver)


def test_other_ops_are_refused_and_counted():
    async def body(ctx, dut, b, drv):
        await drv.initialize(msi=({v: target(v) for v in range(5)}, "dragonball"))
        start = len(receiver.messages)
        refused = 0
        for op in (0, 4, 7, 15):
            await b.write(MAP.offset("MsiCmd"), command(op, 1), 2)
            refused += 1
            assert ctx.get(dut.msi_rejected) == refused
        # Op 2 is MASK here, not seed's ENABLE: 0x2001 masks vector 1, MSI stays on.
        await b.write(MAP.offset("MsiCmd"), command(2, 1), 2)
        await b.write(MAP.offset("MsiCmd"), command(2, 0), 2)
        assert ctx.get(dut.msi_enabled) and ctx.get(dut.msi_rejected) == refused
        await event(ctx, dut, 1)
        await event(ctx, dut, 3)
        await settle(ctx, 20)
        assert [vector_of(a) for _, a, _ in receiver.messages[start:]] == [3]
        # UPDATE, MASK, UNMASK of a vector > N are ignored, not counted.
        for op in (1, 2, 3):
            await b.write(MAP.offset("MsiCmd"), command(op, 5), 2)
        assert ctx.get(dut.msi_rejected) == refused
        # A partial write to MsiCmd (one lane) is no command at all.
        await b.write(MAP.offset("MsiCmd"), command(4, 1) & 0xFF, 1)
        assert ctx.get(dut.msi_rejected) == refused
    receiver = MsiReceiver()
    run(body, receiver)


@pytest.mark.parametrize("bus,mode,n", [("axil", "classic", 5), ("wishbone", "pipelined", 5),
                                        ("axil", "classic", 40)])
def test_mask_storm_scoreboard(bus, mode, n):
    """Random events on every vector and random back-pressure while the driver races MASK,
    UNMASK and UPDATE; quiet spells unmask everything. Every message must be owed by an event
    and its vector unmasked when it was issued; nothing is owed after a quiet spell (nothing
    lost across MASK/UNMASK)."""
    rng = random.Random(f"{bus}{mode}{n}")
    receiver = MsiReceiver(busy=0.4, seed=2)
    trace = []              # per cycle: event vectors
    masked_log = []         # per cycle: the vectors masked at the start of the cycle
    masked = set()
    storm_on = [False]      # on once MSI is set up (the enable itself is seed's business)
    checkpoints = []

    def storm(dut):
        async def process(ctx):
            async for _, _, used, queue, config in ctx.tick().sample(
                    dut.device.used_valid, dut.device.used_queue, dut.device.config_changed):
                vectors = set()
                if used and queue < n:
                    vectors.add(queue + 1)
                if config:
                    vectors.add(0)
                trace.append(vectors)
                masked_log.append(frozenset(masked))
                random_events(ctx, dut, rng, n, storm_on[0])
        return process

    async def body(ctx, dut, b, drv):
        await drv.initialize(msi=({v: target(v) for v in range(n + 1)}, "dragonball"))
        for _ in range(12):
            storm_on[0] = True
            burst_end = len(trace) + rng.randrange(100, 400)
            while len(trace) < burst_end:
                action = rng.random()
                v = rng.randrange(n + 1)
                if action < 0.35:
                    await drv.msi_mask(v, True)
                    masked.add(v)
                elif action < 0.7:
                    # (Forgotten before the write: the log may only under-report masks.)
                    masked.discard(v)
                    await drv.msi_mask(v, False)
                elif action < 0.8:
                    await drv.msi_update(v, *target(v))
                else:
                    await settle(ctx, rng.randrange(1, 10))
            storm_on[0] = False
            for v in sorted(masked):
                masked.discard(v)
                await drv.msi_mask(v, False)
            await settle(ctx, 150)
            checkpoints.append(len(trace) - 1)
        assert not ctx.get(dut.irq)

    run(body, receiver, processes=[storm], bus=bus, wishbone_mode=mode, queues=n)

    # A message presented at cycle s was issued at s - 1; the sampled masks lag the register
    # write by at most the write's own cycle, so a vector counts as masked for an issue at
    # cycle c only if it was masked at both c - 1 and c (the command took effect before c).
    issued = {}
    for start, address, data in receiver.messages:
        assert (address, data) == target(vector_of(address))
        issued.setdefault(start - 1, []).append(vector_of(address))
    owed = [False] * (n + 1)
    total = 0
    for cycle, events in enumerate(trace):
        for v in issued.get(cycle, []):
            assert owed[v], f"message for vector {v} at cycle {cycle} not owed"
            if cycle >= 1:
                assert not (v in masked_log[cycle] and v in masked_log[cycle - 1]), \
                    f"vector {v} sent while masked at cycle {cycle}"
            owed[v] = False
            total += 1
        for v in events:
            owed[v] = True
        if cycle in checkpoints:
            assert not any(owed), f"lost: {[v for v in range(n + 1) if owed[v]]} at {cycle}"
    assert total > 300
