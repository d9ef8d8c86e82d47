"""MSI (docs/spec.md §4 0x0C0–0x0CC, §7): vector table, message generator, INTx/MSI transitions,
address window, manager ports — in Amaranth's simulator, with the driver model and an MSI
receiver on the manager port."""

import random

import pytest

from virtio_mmio.params import EndpointParams
from virtio_mmio.regmap import MsiOp, RegisterMap
from virtio_mmio_sim.amaranth_harness import (random_events, settle, simulate,
                                              vector_event as event)
from virtio_mmio_sim.msi_receiver import MsiReceiver


SEED = RegisterMap("seed")
MSI_BASE = 0xFEE0_0000


def target(vector, generation=0):
    """The (address, data) the tests program for ``vector``: one 64-byte slot per vector."""
    return MSI_BASE + 64 * vector, 0x4000_0000 | generation << 16 | vector


def vector_of(address):
    return (address - MSI_BASE) // 64


#: N = 4 keeps the vector state in flip-flops, N = 40 in block RAM (``vector_state``).
BOTH = pytest.mark.parametrize("queues", [4, 40], ids=["flip-flops", "block-ram"])


def run(body, receiver=None, processes=(), **kwargs):
    kwargs.setdefault("queues", 4)
    receiver = receiver or MsiReceiver()
    simulate(EndpointParams(**kwargs), body, processes=[receiver.process, *processes])
    return receiver


@BOTH
@pytest.mark.parametrize("bus,mode", [("axil", "classic"), ("wishbone", "classic"),
                                      ("wishbone", "pipelined")])
def test_seed_sequence_delivers_each_vector(bus, mode, queues):
    async def body(ctx, dut, b, drv):
        await drv.initialize()
        assert await drv.setup_msi({v: target(v) for v in range(5)})
        assert await drv.msi_status() == 0x8000 | queues
        for vector in (3, 0, 1, 4, 2):
            await event(ctx, dut, vector)
            await settle(ctx, 6)
            assert not ctx.get(dut.irq)
        assert await b.read(SEED.offset("InterruptStatus")) == 0
    receiver = run(body, bus=bus, wishbone_mode=mode, queues=queues)
    assert [(a, d) for _, a, d in receiver.messages] == [target(v) for v in (3, 0, 1, 4, 2)]


def test_linux_k1_sequence():
    async def body(ctx, dut, b, drv):
        # K1 reads bit 15 first: linux-k1 says "capable" before anything is enabled.
        assert await drv.msi_status() == 0x8000 | 4
        await drv.initialize()
        assert await drv.setup_msi({v: target(v) for v in range(5)}, style="linux-k1")
        assert ctx.get(dut.msi_enabled)
        await event(ctx, dut, 2)
        await settle(ctx)
        await drv.teardown_msi(style="linux-k1")
        assert not ctx.get(dut.msi_enabled)
        assert await drv.msi_status() == 0x8000 | 4       # still "capable"
        await event(ctx, dut, 2)
        assert await drv.interrupt() == 0b01               # INTx again
    receiver = run(body, profile="linux-k1")
    assert [(a, d) for _, a, d in receiver.messages] == [target(2)]


def test_k1_driver_falls_back_to_intx_on_seed_and_plain_v2():
    for profile in ("seed", "plain-v2"):
        async def body(ctx, dut, b, drv):
            await drv.initialize()
            assert not await drv.setup_msi({0: target(0)}, style="linux-k1")
            await event(ctx, dut, 0)
            assert ctx.get(dut.irq)
        assert run(body, profile=profile).messages == []


@BOTH
def test_event_to_awvalid_within_two_clocks(queues):
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({v: target(v) for v in range(5)})
        await settle(ctx, 3)
        ctx.set(dut.device.used_queue, 1)
        ctx.set(dut.device.used_valid, 1)
        await ctx.tick()                                  # the event's cycle ends
        ctx.set(dut.device.used_valid, 0)
        assert not ctx.get(dut.msi.awvalid)
        await ctx.tick()
        assert ctx.get(dut.msi.awvalid) and ctx.get(dut.msi.wvalid)
        assert ctx.get(dut.msi.awaddr) == target(2)[0]
        assert ctx.get(dut.msi.wdata) == target(2)[1]
        assert ctx.get(dut.msi.wstrb) == 0xF
    run(body, queues=queues)


@pytest.mark.parametrize("n", [8, 40, 200])
def test_all_vectors_drain_within_n_plus_5_clocks(n):
    """Flip-flops (N = 8): strictly one per clock from the first message. Block RAM: the
    first word is read before its vectors go out, so vector 0 may lead by a clock."""
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({v: target(v) for v in range(n + 1)})
        # All pending at once: enable with both InterruptStatus bits set.
        await drv.msi_enable_seed(False)
        await event(ctx, dut, 0)
        await event(ctx, dut, 1)
        await drv.msi_enable_seed(True)
        await settle(ctx, n + 30)
    receiver = run(body, queues=n)
    cycles = [c for c, _, _ in receiver.messages]
    assert sorted(vector_of(a) for _, a, _ in receiver.messages) == list(range(n + 1))
    assert cycles[-1] - cycles[0] + 1 <= n + 5
    # One per clock (after vector 0 for the block-RAM version).
    assert cycles[-1] - cycles[0] == n if n <= 32 else cycles[-1] - cycles[1] == n - 1


@BOTH
def test_pending_vector_merges_and_later_event_sends_again(queues):
    receiver = MsiReceiver(stall_for=400)
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({v: target(v) for v in range(5)})
        # The port is stalled: vector 3's first message waits; more events merge into one.
        for _ in range(5):
            await event(ctx, dut, 3)
        while receiver.cycle < 410:
            await ctx.tick()
        await event(ctx, dut, 3)                            # after the issue: another one
        await settle(ctx)
    run(body, receiver, queues=queues)
    assert [(a, d) for _, a, d in receiver.messages] == [target(3)] * 3 or \
        [(a, d) for _, a, d in receiver.messages] == [target(3)] * 2


@pytest.mark.parametrize("n", [4, 40])
def test_no_vector_starves(n):
    """Vector 1 fires every cycle; vector 0 and vector N still get their messages."""
    receiver = MsiReceiver(busy=0.5, seed=3)
    def storm(dut):
        async def process(ctx):
            async for _ in ctx.tick():
                ctx.set(dut.device.used_valid, 1)
                ctx.set(dut.device.used_queue, 0)
        return process
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({v: target(v) for v in range(n + 1)})
        ctx.set(dut.device.config_changed, 1)                     # vector 0 once
        await ctx.tick()
        ctx.set(dut.device.config_changed, 0)
        await event(ctx, dut, n)
        await settle(ctx, 200)
    receiver = run(body, receiver, processes=[storm], queues=n)
    vectors = [vector_of(a) for _, a, _ in receiver.messages]
    assert 0 in vectors and n in vectors and vectors.count(1) > 10


@BOTH
def test_invalid_vector_waits_for_update(queues):
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({0: target(0)})
        await event(ctx, dut, 2)                            # vector 2 not valid yet
        await settle(ctx)
        await drv.msi_update(2, *target(2))
        await settle(ctx)
    receiver = run(body, queues=queues)
    assert [(a, d) for _, a, d in receiver.messages] == [target(2)]


@BOTH
def test_update_retargets_and_arg_above_n_is_ignored(queues):
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({v: target(v) for v in range(5)})
        await drv.msi_update(1, *target(1, generation=1))
        await drv.msi_update(queues + 1, *target(1, generation=2))   # arg > N: ignored
        await b.write(SEED.offset("MsiCmd"), 7 << 12 | 1, 2)  # unknown op: ignored
        await event(ctx, dut, 1)
        await settle(ctx)
    receiver = run(body, queues=queues)
    assert [(a, d) for _, a, d in receiver.messages] == [target(1, generation=1)]


@BOTH
def test_intx_to_msi_and_back_loses_nothing(queues):
    async def body(ctx, dut, b, drv):
        await drv.initialize()
        for v in range(5):
            await drv.msi_update(v, *target(v))
        # INTx: a used and a config event are in InterruptStatus.
        await event(ctx, dut, 2)
        await event(ctx, dut, 0)
        assert ctx.get(dut.irq) and await b.read(SEED.offset("InterruptStatus")) == 0b11
        await drv.msi_enable_seed(True)
        # Enabling moved them: vector 0, and every queue vector for bit 0.
        assert not ctx.get(dut.irq)
        assert await b.read(SEED.offset("InterruptStatus")) == 0
        await settle(ctx)
        # MSI -> INTx: a pending vector (invalid, so it cannot be sent) goes back.
        await drv.msi_update(3, 0xFFFF_FFFF_0000_0000, 0)   # still valid: no window
        await b.write(SEED.offset("Status"), 0)             # device reset: vectors invalid
        await drv.initialize()
        await drv.msi_enable_seed(True)
        await event(ctx, dut, 4)                            # vector 4 invalid: waits
        await event(ctx, dut, 0)
        await settle(ctx)
        await drv.msi_enable_seed(False)
        assert await b.read(SEED.offset("InterruptStatus")) == 0b11 and ctx.get(dut.irq)
        # ACK is ignored while enabled, works while disabled.
        assert await drv.interrupt() == 0b11 and not ctx.get(dut.irq)
    receiver = run(body, queues=queues)
    assert sorted((a, d) for _, a, d in receiver.messages) == sorted(
        target(v) for v in range(5))


@BOTH
def test_ack_ignored_and_status_zero_while_enabled(queues):
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({})
        await event(ctx, dut, 1)                            # pending, vector invalid
        await b.write(SEED.offset("InterruptACK"), 3)
        assert await b.read(SEED.offset("InterruptStatus")) == 0 and not ctx.get(dut.irq)
        await drv.msi_enable_seed(False)
        assert await b.read(SEED.offset("InterruptStatus")) == 0b01
    assert run(body, queues=queues).messages == []


@BOTH
def test_device_reset_clears_msi_state(queues):
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({v: target(v) for v in range(5)})
        await drv.reset()
        assert not ctx.get(dut.msi_enabled)
        assert await drv.msi_status() == queues
        await event(ctx, dut, 1)                            # INTx again
        assert ctx.get(dut.irq)
        await drv.interrupt()
        await drv.msi_enable_seed(True)                     # vectors were invalidated
        await event(ctx, dut, 1)
        await settle(ctx)
        # Staging was cleared too: an UPDATE without staging sends to address 0.
        await b.write(SEED.offset("MsiCmd"), MsiOp.UPDATE << 12 | 1, 2)
        await settle(ctx)
    receiver = run(body, queues=queues)
    assert [(a, d) for _, a, d in receiver.messages] == [(0, 0)]


def test_full_write_applies_status_half_then_command():
    """linux-k1: MsiStatus bit 15 switches MSI; a full write at 0x0C0 applies that half first,
    then the command."""
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({})
        # Status half disables, the command half re-enables: enabled at the end.
        await b.write(SEED.offset("MsiStatus"), (MsiOp.ENABLE << 12 | 1) << 16 | 0x0000)
        assert ctx.get(dut.msi_enabled)
        # One lane of a half does nothing.
        await b.write(SEED.offset("MsiStatus"), 0x00, 1)
        await b.write(SEED.offset("MsiCmd") + 1, MsiOp.ENABLE << 4, 1)
        assert ctx.get(dut.msi_enabled)
        await b.write(SEED.offset("MsiStatus"), 0x0000, 2)      # K1-style disable
        assert not ctx.get(dut.msi_enabled)
        await b.write(SEED.offset("MsiStatus"), 0x8000, 2)      # K1-style enable
        assert ctx.get(dut.msi_enabled)
    run(body, profile="linux-k1")


@BOTH
def test_seed_msi_status_is_read_only(queues):
    """seed: writes to MsiStatus are ignored, so a driver that writes MsiCmd as a 32-bit word
    (the command in bits 31:16, zeros below) does not switch MSI off with every UPDATE."""
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({1: target(1)})
        assert ctx.get(dut.msi_enabled)
        address, data = target(1, generation=1)
        await b.write(SEED.offset("MsiAddrLow"), address & 0xFFFF_FFFF)
        await b.write(SEED.offset("MsiAddrHigh"), address >> 32)
        await b.write(SEED.offset("MsiData"), data)
        await b.write(SEED.offset("MsiStatus"), (MsiOp.UPDATE << 12 | 1) << 16)   # word write
        assert ctx.get(dut.msi_enabled)
        await b.write(SEED.offset("MsiStatus"), 0x0000, 2)
        assert ctx.get(dut.msi_enabled)
        assert await b.read(SEED.offset("MsiStatus")) & 0xFFFF == 1 << 15 | queues
        await event(ctx, dut, 1)
        await settle(ctx)
        # Disabled, bit 15 written as 1 does not enable either.
        await b.write(SEED.offset("MsiCmd"), MsiOp.ENABLE << 12 | 0, 2)
        await b.write(SEED.offset("MsiStatus"), 0x8000, 2)
        assert not ctx.get(dut.msi_enabled)
        assert await b.read(SEED.offset("MsiStatus")) & 0xFFFF == queues
    receiver = run(body, queues=queues)
    # The message went to the vector's updated address: UPDATE applied, MSI stayed on.
    assert [(a, d) for _, a, d in receiver.messages] == [target(1, generation=1)]


@BOTH
def test_msi_window(queues):
    window = (0xFEE0_0000, 0x1000)
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({0: (0xFEE0_0FFC, 1), 1: (0xFEE0_0FFE, 2), 2: (0xFEDF_FFFC, 3),
                             3: (0xDEAD_0000_0000, 4)})
        assert ctx.get(dut.msi_rejected) == 3
        for v in range(4):
            await event(ctx, dut, v)
        await settle(ctx)
        # A rejected vector stays pending until a good UPDATE.
        await drv.msi_update(2, 0xFEE0_0010, 5)
        await settle(ctx)
    receiver = run(body, msi_window=window, queues=queues)
    assert [(a, d) for _, a, d in receiver.messages] == [(0xFEE0_0FFC, 1), (0xFEE0_0010, 5)]


@pytest.mark.parametrize("bus,mode", [("axil", "classic"), ("wishbone", "classic"),
                                      ("wishbone", "pipelined")])
def test_error_responses_are_counted_and_latched(bus, mode):
    receiver = MsiReceiver(error=0.5, seed=9)
    async def body(ctx, dut, b, drv):
        await drv.setup_msi({v: target(v) for v in range(5)})
        for i in range(40):
            await event(ctx, dut, i % 5)
            await settle(ctx, 3)
        await settle(ctx)
        assert ctx.get(dut.msi_errors) == receiver.errors_sent > 0
        assert ctx.get(dut.msi_error)
    run(body, receiver, bus=bus, wishbone_mode=mode)
    assert len(receiver.messages) == 40


@pytest.mark.parametrize("bus,mode,profile,n", [("axil", "classic", "seed", 5),
                                                ("axil", "classic", "linux-k1", 5),
                                                ("wishbone", "classic", "seed", 5),
                                                ("wishbone", "pipelined", "linux-k1", 5),
                                                ("axil", "classic", "seed", 40),
                                                ("wishbone", "pipelined", "seed", 100)])
def test_event_storm_scoreboard(bus, mode, profile, n):
    """Random events on every vector, random back-pressure, random enable/disable and UPDATE
    (some outside the window) while running, no INTx acks; bursts alternate with quiet
    spells. A reference model of docs/spec.md §7 is replayed cycle by cycle against what happened:
    each vector owes a message from its first event (or from an enable that moves
    InterruptStatus into it) until a message for it is issued; every message must be owed
    (nothing spurious), nothing may be owed at the end of a quiet spell (nothing lost), and
    InterruptStatus is 0 at the end. ``irq`` stays low while MSI is enabled. N = 40 and 100
    keep the vector state in block RAM."""
    rng = random.Random(f"{bus}{mode}{profile}{n}")
    window = (MSI_BASE, 64 * (n + 1))
    receiver = MsiReceiver(busy=0.4, seed=1)
    trace = []          # per cycle: (event vectors, msi_enabled)
    violations = []
    storm_on = [True]
    checkpoints = set()     # cycles at which nothing may be owed any more

    def storm(dut):
        async def process(ctx):
            async for _, _, used, queue, config, enabled, irq in ctx.tick().sample(
                    dut.device.used_valid, dut.device.used_queue, dut.device.config_changed,
                    dut.msi_enabled, dut.irq):
                vectors = set()
                if used and queue < n:
                    vectors.add(queue + 1)
                if config:
                    vectors.add(0)
                if enabled and irq:
                    violations.append(("irq while MSI enabled", len(trace)))
                trace.append((vectors, enabled))
                random_events(ctx, dut, rng, n, storm_on[0])
        return process

    async def body(ctx, dut, b, drv):
        await drv.initialize()
        await drv.setup_msi({v: target(v) for v in range(n + 1)}, style=(
            "linux-k1" if profile == "linux-k1" else "seed"))
        while sum(len(v) for v, _ in trace) < 10_000:
            # A burst: events, with the driver racing enables, disables and UPDATEs.
            storm_on[0] = True
            burst_end = len(trace) + rng.randrange(30, 300)
            while len(trace) < burst_end:
                action = rng.random()
                if action < 0.15:
                    await drv.teardown_msi(style="seed")
                elif action < 0.35:
                    await drv.msi_enable_seed(True)
                elif action < 0.6:
                    v = rng.randrange(n + 1)
                    bad = rng.random() < 0.2
                    await drv.msi_update(v, 0x1000 if bad else target(v)[0], target(v)[1])
                else:
                    await settle(ctx, rng.randrange(1, 20))
            # A quiet spell with every vector valid: whatever is owed must go out.
            storm_on[0] = False
            for v in range(n + 1):
                await drv.msi_update(v, *target(v))
            await settle(ctx, 150)
            checkpoints.add(len(trace) - 1)
        # The end: MSI on, so what InterruptStatus holds is delivered too.
        await drv.msi_enable_seed(True)
        await settle(ctx, 150)
        checkpoints.add(len(trace) - 1)
        assert await b.read(SEED.offset("InterruptStatus")) == 0

    run(body, receiver, processes=[storm], bus=bus, wishbone_mode=mode, profile=profile,
        queues=n, msi_window=window)

    assert violations == []
    assert sum(len(v) for v, _ in trace) >= 10_000
    issued_at = {}      # a message presented at cycle s was issued at s - 1
    for start, address, data in receiver.messages:
        v = vector_of(address)
        assert (address, data) == target(v)
        issued_at.setdefault(start - 1, []).append(v)
    assert all(len(vs) == 1 for vs in issued_at.values())
    owed = [False] * (n + 1)
    interrupt_status = 0
    for cycle, (vectors, enabled) in enumerate(trace):
        for v in issued_at.get(cycle, ()):
            assert enabled, f"message for vector {v} issued at {cycle} while disabled"
            assert owed[v], f"spurious message for vector {v} issued at {cycle}"
            owed[v] = False
        for v in vectors:
            if enabled:
                owed[v] = True
            else:
                interrupt_status |= 0b10 if v == 0 else 0b01
        following = trace[cycle + 1][1] if cycle + 1 < len(trace) else enabled
        if following and not enabled:          # INTx -> MSI: InterruptStatus moves
            owed[0] |= bool(interrupt_status & 0b10)
            for v in range(1, n + 1):
                owed[v] |= bool(interrupt_status & 0b01)
            interrupt_status = 0
        elif enabled and not following:        # MSI -> INTx: pending vectors move back
            interrupt_status |= (0b10 if owed[0] else 0) | (0b01 if any(owed[1:]) else 0)
            owed = [False] * (n + 1)
        if cycle in checkpoints:
            assert not any(owed), f"owed messages never sent by cycle {cycle}: {owed}"
    assert owed == [False] * (n + 1), "events never delivered"
    assert interrupt_status == 0
