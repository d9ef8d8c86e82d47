"""The interrupt controller against a cycle-by-cycle model of docs/spec.md §7, driven directly (no
bus): with both vector-state stores of :mod:`virtio_mmio.transport.vector_state`, flip-flops and
block RAM, the block-RAM state with one word (N = 5) and with words of 16 (N = 40, 100).

Every cycle: random events on every vector (and on queues >= N), ACKs, UPDATEs (some outside
the MSI window), enables and disables, device resets, message back-pressure. The model keeps,
per vector, whether a message is owed (from an event, or from an enable that moves
InterruptStatus into it, until a message for it is issued) and InterruptStatus. It checks
each cycle that every issued message is owed and enabled (nothing spurious, nothing
duplicated), that InterruptStatus matches exactly (so a disable moves exactly the pending
vectors back), and at the end of each quiet spell (every vector valid, port ready) that
nothing is owed any more (nothing lost)."""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from virtio_mmio.transport.msi import InterruptController
from virtio_mmio.transport.vector_state import (BLOCK_MSI_QUEUES, BlockVectorState,
                                                RegisterVectorState, vector_state)
from virtio_mmio.params import EndpointParams


WINDOW = (0x1_0000, 0x1_0000)


def good_address(vector):
    return WINDOW[0] + 4 * vector


def controller(kind, n, dialect):
    params = EndpointParams(queues=n, msi_window=WINDOW)
    options = DIALECTS[dialect]
    return InterruptController(params, msi=True, block=kind == "block", **options)


#: The controller options the profiles use: seed/linux-k1, and dragonball (per-vector masks,
#: InterruptStatus kept while MSI is enabled).
DIALECTS = {"seed": dict(masks=False, keeps_status=False),
            "dragonball": dict(masks=True, keeps_status=True)}


def one_hot(value, width):
    bits = [v for v in range(width) if value >> v & 1]
    assert len(bits) <= 1, f"more than one vector issued in a cycle: {bits}"
    return bits[0] if bits else None


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize("kind,n", [("flip-flops", 5), ("block", 5), ("block", 40),
                                    ("block", 100)])
def test_controller_against_model(kind, n, dialect):
    rng = random.Random(f"{kind}{n}{dialect}")
    dut = controller(kind, n, dialect)
    masks, keeps = DIALECTS[dialect]["masks"], DIALECTS[dialect]["keeps_status"]
    vectors = n + 1
    stats = {"messages": 0, "disables_with_pending": 0, "quiet_checks": 0, "merged": 0,
             "held_by_mask": 0}

    async def bench(ctx):
        owed = [False] * vectors
        valid = [False] * vectors
        masked = [False] * vectors
        status = 0
        enabled = False
        in_flight = []          # vectors issued, their messages not yet taken
        cycle = 0
        for spell in range(60):
            quiet = spell % 2 == 1
            if quiet:
                # Every vector valid and unmasked, the port always ready, no events: what is
                # owed goes out.
                stats["held_by_mask"] += sum(owed[v] and masked[v] for v in range(vectors))
                plan = [("update", v, True) for v in range(vectors) if not valid[v]]
                plan += [("mask", v, False) for v in range(vectors) if masked[v]]
                plan += [("enable", True)] * (spell % 4 == 1)
                length = len(plan) + 2 * vectors + 20
            else:
                plan = []
                length = rng.randrange(50, 400)
            for _ in range(length):
                # ---- inputs of this cycle
                if quiet:
                    used = config = False
                    queue, ack, ready = 0, 0, True
                    action = plan.pop(0) if plan else None
                else:
                    used = rng.random() < 0.5
                    # Mostly near N; sometimes any 16-bit queue (ignored, but still decoded).
                    queue = rng.randrange(n + 2) if rng.random() < 0.95 else \
                        rng.randrange(1 << 16)
                    config = rng.random() < 0.05
                    ready = rng.random() < 0.6
                    ack = rng.randrange(4) if rng.random() < 0.1 else 0
                    r = rng.random()
                    if r < 0.04:
                        action = ("enable", rng.random() < 0.6)
                    elif r < 0.12:
                        v = rng.randrange(vectors) if rng.random() < 0.9 else vectors + 3
                        action = ("update", v, rng.random() < 0.8)
                    elif masks and r < 0.16:
                        v = rng.randrange(vectors)
                        action = ("mask", v, rng.random() < 0.5)
                    elif r < 0.165:
                        action = ("reset",)
                    else:
                        action = None
                update = action is not None and action[0] == "update"
                enable = action is not None and action[0] == "enable"
                reset = action is not None and action[0] == "reset"
                mask = action is not None and action[0] == "mask"
                ctx.set(dut.used_valid, used)
                ctx.set(dut.used_queue, queue)
                ctx.set(dut.config_event, config)
                ctx.set(dut.ack, ack)
                ctx.set(dut.message.ready, ready)
                # The core only passes UPDATEs of vectors 0..N.
                ctx.set(dut.command.update, update and action[1] < vectors)
                ctx.set(dut.command.vector, action[1] if update or mask else 0)
                ctx.set(dut.command.address,
                        good_address(action[1]) if update and action[2] else 0x10)
                ctx.set(dut.command.data, action[1] if update else 0)
                ctx.set(dut.command.enable, enable)
                ctx.set(dut.command.enable_value, enable and action[1])
                ctx.set(dut.command.mask, mask)
                ctx.set(dut.command.mask_value, mask and action[2])
                ctx.set(dut.reset, reset)

                # ---- outputs before the edge
                assert ctx.get(dut.enabled) == enabled
                if enabled and not keeps:
                    assert ctx.get(dut.interrupt_status) == 0 and not ctx.get(dut.irq)
                else:
                    assert ctx.get(dut.interrupt_status) == status, \
                        f"InterruptStatus {ctx.get(dut.interrupt_status)} != model {status}"
                    assert ctx.get(dut.irq) == (status != 0 and not enabled)
                if ctx.get(dut.message.valid) and ready:
                    assert in_flight, "a message nobody issued"
                    v = in_flight.pop(0)
                    assert ctx.get(dut.message.payload.data) == v
                    assert ctx.get(dut.message.payload.address) == good_address(v)
                    stats["messages"] += 1
                issued = one_hot(ctx.get(dut.issued), vectors)
                if issued is not None:
                    assert enabled, f"vector {issued} issued while disabled"
                    assert owed[issued], f"spurious or duplicate message for vector {issued}"
                    # Only valid, unmasked vectors are sent.
                    assert valid[issued], f"invalid vector {issued} issued"
                    assert not masked[issued], f"masked vector {issued} issued"
                    owed[issued] = False
                    in_flight.append(issued)

                # ---- the model takes the rest of the cycle
                events = set()
                if used and queue < n:
                    events.add(queue + 1)
                if config:
                    events.add(0)
                if reset:
                    owed = [False] * vectors
                    valid = [False] * vectors
                    masked = [False] * vectors
                    status, enabled = 0, False
                    # What is issued stays issued: a message already presented (or issued
                    # in this very cycle) still goes out.
                    if not (ctx.get(dut.message.valid) and not ready):
                        in_flight = [issued] if issued is not None else []
                    await ctx.tick()
                    cycle += 1
                    continue
                if update and action[1] < vectors:
                    valid[action[1]] = action[2]
                if mask:
                    masked[action[1]] = action[2]
                wired = (status & ~ack) | (1 if any(v > 0 for v in events) else 0) | \
                    (2 if 0 in events else 0)
                if enabled:
                    for v in events:
                        stats["merged"] += owed[v]
                        owed[v] = True
                    if keeps:
                        status = wired
                    if enable and not action[1]:
                        stats["disables_with_pending"] += any(owed)
                        status |= (2 if owed[0] else 0) | (1 if any(owed[1:]) else 0)
                        owed = [False] * vectors
                        enabled = False
                else:
                    status = wired
                    if enable and action[1]:
                        owed[0] = bool(status & 2)
                        for v in range(1, vectors):
                            owed[v] = bool(status & 1)
                        enabled = True
                        if not keeps:
                            status = 0
                await ctx.tick()
                cycle += 1
            if quiet:
                assert not any(owed), f"never sent: {[v for v in range(vectors) if owed[v]]}"
                stats["quiet_checks"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert stats["messages"] > 200 and stats["quiet_checks"] == 30, stats
    assert stats["disables_with_pending"] > 10 and stats["merged"] > 100, stats
    if masks:
        assert stats["held_by_mask"] > 0, stats


def test_choice_by_queue_count():
    assert type(vector_state(BLOCK_MSI_QUEUES)) is RegisterVectorState
    assert type(vector_state(BLOCK_MSI_QUEUES + 1)) is BlockVectorState
    assert type(vector_state(BLOCK_MSI_QUEUES + 1, block=False)) is RegisterVectorState

    def store(n, profile="seed", **options):
        """The type of the controller's vector-state store (None: it has none)."""
        dut = InterruptController(EndpointParams(queues=n, profile=profile), **options)
        fragment = Fragment.get(dut, None)
        names = [name for _, name, _ in fragment.subfragments]
        return type(fragment.find_subfragment("vectors").origins[0]) \
            if "vectors" in names else None
    assert store(BLOCK_MSI_QUEUES) is RegisterVectorState
    assert store(BLOCK_MSI_QUEUES + 1) is BlockVectorState
    assert store(5, block=True) is BlockVectorState
    # Without MSI registers there is no vector state at all.
    assert store(2047, "plain-v2", msi=False) is None
