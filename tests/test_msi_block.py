"""The interrupt controller against a cycle-by-cycle model of docs/spec.md §7, driven directly (no
bus): with both vector-state stores of :mod:`virtio_mmio.transport.vector_state`, flip-flops and
block RAM, the block-RAM state with one word (N = 5), with words of 16 (N = 40, 100) and with more words than
the scanner chooses among in one clock (N = 300: 19 words, two clocks).

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


class Model:
    """What docs/spec.md §7 says the controller holds: per vector whether a message is owed,
    valid and masked; InterruptStatus and the MSI enable; the messages issued and not yet
    taken."""

    def __init__(self, vectors):
        self.owed = [False] * vectors
        self.valid = [False] * vectors
        self.masked = [False] * vectors
        self.status = 0
        self.enabled = False
        self.in_flight = []


def cycle(used=False, queue=0, config=False, ack=0, ready=True, action=None):
    """One cycle's inputs. ``action``: ("enable", on), ("update", vector, in_window),
    ("mask", vector, masked), ("reset",) or None."""
    return dict(used=used, queue=queue, config=config, ack=ack, ready=ready, action=action)


def quiet_spell(model, extra=0):
    """Every vector made valid and unmasked, MSI enabled, the port always ready, no events:
    what is owed goes out (the run checks nothing is owed at the end)."""
    vectors = len(model.owed)
    plan = [("update", v, True) for v in range(vectors) if not model.valid[v]]
    plan += [("mask", v, False) for v in range(vectors) if model.masked[v]]
    plan += [("enable", True)] * extra
    plan += [None] * (2 * vectors + 20)
    for action in plan:
        yield cycle(action=action)


def random_spells(rng, n, masks, model):
    """60 spells, every other one quiet; the others random events on every vector (and on
    queues >= N), ACKs, UPDATEs (some outside the window or of no vector), MASKs, enables,
    disables, device resets and back-pressure."""
    vectors = n + 1
    for spell in range(60):
        if spell % 2 == 1:
            yield True, quiet_spell(model, extra=spell % 4 == 1)
            continue
        cycles = []
        for _ in range(rng.randrange(50, 400)):
            r = rng.random()
            if r < 0.04:
                action = ("enable", rng.random() < 0.6)
            elif r < 0.12:
                v = rng.randrange(vectors) if rng.random() < 0.9 else vectors + 3
                action = ("update", v, rng.random() < 0.8)
            elif masks and r < 0.16:
                action = ("mask", rng.randrange(vectors), rng.random() < 0.5)
            elif r < 0.165:
                action = ("reset",)
            else:
                action = None
            cycles.append(cycle(
                used=rng.random() < 0.5,
                # Mostly near N; sometimes any 16-bit queue (ignored, but still decoded).
                queue=rng.randrange(n + 2) if rng.random() < 0.95 else rng.randrange(1 << 16),
                config=rng.random() < 0.05, ready=rng.random() < 0.6,
                ack=rng.randrange(4) if rng.random() < 0.1 else 0, action=action))
        yield False, cycles


def run_against_model(dut, n, dialect, spells):
    """Drive ``dut`` with ``spells(model)`` (an iterable of (quiet, cycles)) and check it
    against the model every cycle. Returns the statistics and the vector issued in each
    cycle (None: none)."""
    keeps = DIALECTS[dialect]["keeps_status"]
    vectors = n + 1
    model = Model(vectors)
    stats = {"messages": 0, "disables_with_pending": 0, "quiet_checks": 0, "merged": 0,
             "held_by_mask": 0}
    trace = []

    async def bench(ctx):
        for quiet, cycles in spells(model):
            if quiet:
                stats["held_by_mask"] += sum(model.owed[v] and model.masked[v]
                                             for v in range(vectors))
            for inputs in cycles:
                _one_cycle(ctx, dut, n, model, inputs, stats, trace, keeps)
                await ctx.tick()
            if quiet:
                assert not any(model.owed), \
                    f"never sent: {[v for v in range(vectors) if model.owed[v]]}"
                stats["quiet_checks"] += 1

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return stats, trace


def _one_cycle(ctx, dut, n, model, inputs, stats, trace, keeps):
    vectors = n + 1
    used, queue, config = inputs["used"], inputs["queue"], inputs["config"]
    ack, ready, action = inputs["ack"], inputs["ready"], inputs["action"]
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
    ctx.set(dut.command.address, good_address(action[1]) if update and action[2] else 0x10)
    ctx.set(dut.command.data, action[1] if update else 0)
    ctx.set(dut.command.enable, enable)
    ctx.set(dut.command.enable_value, enable and action[1])
    ctx.set(dut.command.mask, mask)
    ctx.set(dut.command.mask_value, mask and action[2])
    ctx.set(dut.reset, reset)

    # ---- outputs before the edge
    assert ctx.get(dut.enabled) == model.enabled
    if model.enabled and not keeps:
        assert ctx.get(dut.interrupt_status) == 0 and not ctx.get(dut.irq)
    else:
        assert ctx.get(dut.interrupt_status) == model.status, \
            f"InterruptStatus {ctx.get(dut.interrupt_status)} != model {model.status}"
        assert ctx.get(dut.irq) == (model.status != 0 and not model.enabled)
    if ctx.get(dut.message.valid) and ready:
        assert model.in_flight, "a message nobody issued"
        v = model.in_flight.pop(0)
        assert ctx.get(dut.message.payload.data) == v
        assert ctx.get(dut.message.payload.address) == good_address(v)
        stats["messages"] += 1
    issued = one_hot(ctx.get(dut.issued), vectors)
    trace.append(issued)
    if issued is not None:
        assert model.enabled, f"vector {issued} issued while disabled"
        assert model.owed[issued], f"spurious or duplicate message for vector {issued}"
        # Only valid, unmasked vectors are sent.
        assert model.valid[issued], f"invalid vector {issued} issued"
        assert not model.masked[issued], f"masked vector {issued} issued"
        model.owed[issued] = False
        model.in_flight.append(issued)

    # ---- the model takes the rest of the cycle
    events = set()
    if used and queue < n:
        events.add(queue + 1)
    if config:
        events.add(0)
    if reset:
        model.owed = [False] * vectors
        model.valid = [False] * vectors
        model.masked = [False] * vectors
        model.status, model.enabled = 0, False
        # What is issued stays issued: a message already presented (or issued in this very
        # cycle) still goes out.
        if not (ctx.get(dut.message.valid) and not ready):
            model.in_flight = [issued] if issued is not None else []
        return
    if update and action[1] < vectors:
        model.valid[action[1]] = action[2]
    if mask:
        model.masked[action[1]] = action[2]
    wired = (model.status & ~ack) | (1 if any(v > 0 for v in events) else 0) | \
        (2 if 0 in events else 0)
    if model.enabled:
        for v in events:
            stats["merged"] += model.owed[v]
            model.owed[v] = True
        if keeps:
            model.status = wired
        if enable and not action[1]:
            stats["disables_with_pending"] += any(model.owed)
            model.status |= (2 if model.owed[0] else 0) | (1 if any(model.owed[1:]) else 0)
            model.owed = [False] * vectors
            model.enabled = False
    else:
        model.status = wired
        if enable and action[1]:
            model.owed[0] = bool(model.status & 2)
            for v in range(1, vectors):
                model.owed[v] = bool(model.status & 1)
            model.enabled = True
            if not keeps:
                model.status = 0


@pytest.mark.parametrize("dialect", list(DIALECTS))
@pytest.mark.parametrize("kind,n", [("flip-flops", 5), ("block", 5), ("block", 40),
                                    ("block", 100), ("block", 300)])
def test_controller_against_model(kind, n, dialect):
    rng = random.Random(f"{kind}{n}{dialect}")
    dut = controller(kind, n, dialect)
    masks = DIALECTS[dialect]["masks"]
    stats, _ = run_against_model(dut, n, dialect,
                                 lambda model: random_spells(rng, n, masks, model))
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


def scripted(cycles):
    """Spells: ``cycles`` (as :func:`cycle` dicts), then a quiet spell."""
    def spells(model):
        yield False, cycles
        yield True, quiet_spell(model)
    return spells


@pytest.mark.parametrize("n", [5, 40])
def test_event_behind_a_cancelled_fast_try_is_not_sent_twice(n):
    """The block-RAM store's fast path tries an event's vector before knowing whether it is
    valid and cancels the message if not. Here vector 2 becomes valid (UPDATE in cycle 1)
    between two events on it (cycles 1 and 2): the first event's try is cancelled (its V word
    was read before the UPDATE) and makes the vector pending; the second event must then
    merge into that pending vector, not go out on a fast path of its own (one message for
    both events; the model fails a second one as a duplicate)."""
    dut = controller("block", n, "seed")
    cycles = [cycle(action=("enable", True)), cycle(),
              cycle(used=True, queue=1, action=("update", 2, True)),
              cycle(used=True, queue=1)] + [cycle() for _ in range(6)]
    stats, trace = run_against_model(dut, n, "seed", scripted(cycles))
    # Sent once, from the scanner (not in cycle 4, the fast path's cycle for either event).
    assert trace.count(2) == 1 and trace.index(2) > 4, trace
    assert stats["messages"] == 1 and stats["merged"] == 1, stats


@pytest.mark.parametrize("n", [5, 40])
@pytest.mark.parametrize("delay", [0, 1, 2, 3])
def test_disable_with_an_event_in_the_pipeline(n, delay):
    """MSI is disabled ``delay`` cycles after an event on an invalid vector, the only one, with
    the event at each stage of the block-RAM store's pipeline (this cycle's input, stage 2,
    stage 3, counted): it must move back into InterruptStatus bit 0 (the model fails a
    missing bit); and the same with the vector valid and its message waiting behind a full
    port, where it must not (it is issued, not pending)."""
    for valid in (False, True):
        dut = controller("block", n, "seed")
        setup = [cycle(ready=False, action=("enable", True))]
        if valid:
            setup += [cycle(ready=False, action=("update", 2, True)), cycle(ready=False),
                      cycle(ready=False)]
        disable = cycle(ready=False, action=("enable", False))
        if delay:
            cycles = setup + [cycle(used=True, queue=1, ready=False)] + \
                [cycle(ready=False) for _ in range(delay - 1)] + [disable]
        else:
            cycles = setup + [dict(disable, used=True, queue=1)]
        cycles += [cycle() for _ in range(4)]
        stats, trace = run_against_model(dut, n, "seed", scripted(cycles))
        assert stats["disables_with_pending"] == (0 if valid and delay >= 2 else 1), \
            (valid, delay, stats, trace)
