"""The bus layer (``virtio_mmio.bus``) stands on its own: it imports nothing of the transport,
and its subordinates serve any register block through ``RegisterBus`` with the block's own
named tags (here a toy block of sixteen words, no ``RegisterCore``)."""

import ast
import random
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from amaranth.hdl import Cat, Elaboratable, Module, Mux, Signal
from amaranth.lib import data, memory, wiring
from amaranth.lib.wiring import In
from amaranth.sim import Simulator

from virtio_mmio.bus import (AXI4LiteSubordinate, RegisterBus, WishboneSubordinate,
                             WriteClassifier, below_constant, lowest_set, pack_tags,
                             round_robin)
from virtio_mmio_sim.amaranth_bus import AmaranthAxiLite, AmaranthWishbone


BUS_DIR = Path(__file__).resolve().parents[1] / "rtl" / "bus"


def test_bus_modules_import_only_amaranth_the_standard_library_and_each_other():
    """Every import of every module of rtl/bus/, read from its source: amaranth, the standard
    library, or a sibling module (``from .x import``); nothing of the package above."""
    # (sys.stdlib_module_names is Python 3.10+; on 3.9 a short list of what a bus module
    # could reasonably use.)
    stdlib = set(getattr(sys, "stdlib_module_names", ())) or {
        "abc", "collections", "dataclasses", "enum", "functools", "itertools", "math",
        "typing", "warnings"}
    checked = 0
    for path in sorted(BUS_DIR.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    assert node.level == 1, f"{path.name}: 'from {'.' * node.level}" \
                        f"{node.module or ''} import' leaves the bus layer"
                    checked += 1
                    continue
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                assert top == "amaranth" or top in stdlib, f"{path.name} imports {name}"
                checked += 1
    assert checked > 10


def test_importing_the_bus_layer_loads_nothing_of_the_transport():
    code = ("import sys, virtio_mmio.bus, virtio_mmio.bus.checkers; "
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('virtio_mmio'))))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert "virtio_mmio.bus" in loaded
    outside = [m for m in loaded if m != "virtio_mmio" and not m.startswith("virtio_mmio.bus")]
    assert outside == []


# ------------------------------------------------------------------------ a toy register block

class ToyClassifier(WriteClassifier):
    """Address tags: the word is odd, the word is the last one; data tags: the word is 0,
    all four lanes are written."""

    def __init__(self):
        super().__init__(data.StructLayout({"odd": 1, "last": 1}),
                         data.StructLayout({"zero": 1, "full": 1}))

    def address(self, word):
        return pack_tags(self.address_layout, odd=word[0], last=word == 15)

    def data(self, wdata, wstrb):
        return pack_tags(self.data_layout, zero=wdata == 0, full=wstrb == 0xF)


class ToyBlock(wiring.Component):
    """Words 0..14: memory with byte lanes. Word 15 (read-only): the address and data tags
    the last write arrived with, ``odd | last << 1 | zero << 2 | full << 3``. Writes to odd
    words wait ``hold`` cycles (``w_ready`` low), so a subordinate must keep them."""

    def __init__(self, classifier, hold=2):
        self._hold = hold
        super().__init__({"bus": In(RegisterBus(6, classifier.address_layout,
                                                classifier.data_layout))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.words = words = memory.Memory(shape=32, depth=16, init=[])
        r = words.read_port(transparent_for=())
        w = words.write_port(granularity=8)
        last_tags = Signal(4)
        waited = Signal(range(self._hold + 1))
        ready = ~bus.w_address_tags.odd | (waited == self._hold)
        m.d.comb += [r.addr.eq(bus.r_addr), bus.w_ready.eq(ready), bus.w_conflict.eq(0)]
        read_tags = Signal()
        m.d.sync += read_tags.eq(bus.r_addr == 15)
        with m.If(read_tags):
            m.d.comb += bus.r_data.eq(last_tags)
        with m.Else():
            m.d.comb += bus.r_data.eq(r.data)
        take = bus.w_valid & ready
        with m.If(bus.w_valid & ~ready):
            m.d.sync += waited.eq(waited + 1)
        with m.If(take):
            m.d.sync += [waited.eq(0), last_tags.eq(Cat(bus.w_address_tags.odd,
                                                        bus.w_address_tags.last,
                                                        bus.w_data_tags.zero,
                                                        bus.w_data_tags.full))]
            with m.If(~bus.w_address_tags.last):
                m.d.comb += [w.addr.eq(bus.w_addr), w.data.eq(bus.w_data),
                             w.en.eq(bus.w_strb)]
        return m


class ToyTop(Elaboratable):
    """A subordinate for ``bus`` ("axil", "classic", "pipelined") with ``classifier`` in
    front of ``block``."""

    def __init__(self, bus, classifier, block):
        self.block = block
        if bus == "axil":
            self.sub = AXI4LiteSubordinate(6, classifier)
            port = self.sub.axi
            self.backend = AmaranthAxiLite
        else:
            self.sub = WishboneSubordinate(6, classifier, mode=bus)
            port = self.sub.wb
            self.backend = AmaranthWishbone
        # The register-access backends drive an endpoint's ``bus`` interface.
        self.ports = SimpleNamespace(bus=port)

    def run(self, body, pause):
        """Simulate ``body(backend)`` with one register access at a time on the port."""
        async def bench(ctx):
            await body(self.backend(ctx, self.ports, pause=pause))
        sim = Simulator(self)
        sim.add_clock(1e-8)
        sim.add_testbench(bench)
        sim.run_until(1e-3)

    def elaborate(self, platform):
        m = Module()
        m.submodules.sub, m.submodules.block = self.sub, self.block
        wiring.connect(m, self.sub.reg, self.block.bus)
        return m


@pytest.mark.parametrize("bus", ["axil", "classic", "pipelined"])
def test_subordinate_serves_a_toy_block_with_its_named_tags(bus):
    """Random words and lanes to random words of the toy block, each followed by a read of the
    tags it arrived with and a read-back; a model of the block checks every value."""
    rng = random.Random(3)
    classifier = ToyClassifier()
    top = ToyTop(bus, classifier, ToyBlock(classifier))
    model = [0] * 15
    checked = []

    async def body(backend):
        for _ in range(40):
            word = rng.randrange(16)
            value = rng.choice([0, rng.getrandbits(32)])
            strobe = rng.choice([0xF, rng.randrange(1, 16)])
            await backend.write_word(word * 4, value, strobe)
            if word < 15:
                mask = sum(0xFF << 8 * lane for lane in range(4) if strobe >> lane & 1)
                model[word] = model[word] & ~mask | value & mask
            tags = await backend.read_word(15 * 4)
            assert tags == (word & 1) | (word == 15) << 1 | (value == 0) << 2 | \
                (strobe == 0xF) << 3, (word, value, strobe)
            probe = rng.randrange(15)
            assert await backend.read_word(probe * 4) == model[probe]
            checked.append(word)

    top.run(body, pause=lambda: rng.random() < 0.3)
    assert len(checked) == 40 and any(w % 2 for w in checked) and 15 in checked


class PlainBlock(wiring.Component):
    """Sixteen words of memory with byte lanes, for a classifier without tags."""

    def __init__(self):
        classifier = WriteClassifier()
        super().__init__({"bus": In(RegisterBus(6, classifier.address_layout,
                                                classifier.data_layout))})

    def elaborate(self, platform):
        m = Module()
        bus = self.bus
        m.submodules.words = words = memory.Memory(shape=32, depth=16, init=[])
        r = words.read_port(transparent_for=())
        w = words.write_port(granularity=8)
        m.d.comb += [r.addr.eq(bus.r_addr), bus.r_data.eq(r.data), bus.w_ready.eq(1),
                     bus.w_conflict.eq(0),
                     w.addr.eq(bus.w_addr), w.data.eq(bus.w_data),
                     w.en.eq(Mux(bus.w_valid, bus.w_strb, 0))]
        return m


@pytest.mark.parametrize("bus", ["axil", "classic", "pipelined"])
def test_subordinate_with_a_classifier_without_tags(bus):
    """The bus layer's own WriteClassifier (no tags) is enough for a plain memory."""
    rng = random.Random(8)
    top = ToyTop(bus, WriteClassifier(), PlainBlock())
    model = [0] * 16

    async def body(backend):
        for _ in range(30):
            word, value = rng.randrange(16), rng.getrandbits(32)
            await backend.write_word(word * 4, value)
            model[word] = value
            probe = rng.randrange(16)
            assert await backend.read_word(probe * 4) == model[probe]

    top.run(body, pause=lambda: rng.random() < 0.3)


def test_pack_tags_builds_by_name_and_refuses_a_wrong_set():
    layout = data.StructLayout({"a": 1, "b": 2})
    value = pack_tags(layout, b=Signal(2), a=Signal())
    assert len(value) == 3
    with pytest.raises(ValueError, match=r"missing \['b'\]"):
        pack_tags(layout, a=Signal())
    with pytest.raises(ValueError, match=r"unknown \['c'\]"):
        pack_tags(layout, a=Signal(), b=Signal(2), c=Signal())
    with pytest.raises(ValueError, match="'b' is 1 bits wide, not 2"):
        pack_tags(layout, a=Signal(), b=Signal())


@pytest.mark.parametrize("width", [1, 2, 3, 7, 16, 33, 128])
def test_lowest_set_finds_the_lowest_set_bit(width):
    """:func:`lowest_set`'s tree against Python on random vectors of a few bits set (and on
    none, on each single bit, and on all)."""
    bits = Signal(width)
    any_set, index = lowest_set(bits)
    found, at = Signal(), Signal(len(index))
    m = Module()
    m.d.comb += [found.eq(any_set), at.eq(index)]
    rng = random.Random(width)
    vectors = [0, (1 << width) - 1] + [1 << i for i in range(width)]
    for _ in range(200):
        value = 0
        for _ in range(rng.choice([1, 2, 3, width])):
            value |= 1 << rng.randrange(width)
        vectors.append(value)

    async def bench(ctx):
        for value in vectors:
            ctx.set(bits, value)
            assert ctx.get(found) == (value != 0), value
            if value:
                lowest = (value & -value).bit_length() - 1
                assert ctx.get(at) == lowest, (hex(value), ctx.get(at), lowest)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("width", [1, 2, 3, 5, 8, 17, 33])
def test_round_robin_against_a_model(width):
    """:func:`round_robin` clock by clock against a Python model: random requests, takes and
    resets; the choice (one-hot and index) is the lowest request above the one taken last,
    else the lowest of all, and a reset starts over from bit 0."""
    requests, take, reset = Signal(width), Signal(), Signal()
    m = Module()
    lowest, index = round_robin(m, requests, take, reset)
    rng = random.Random(width * 7 + 1)

    async def bench(ctx):
        last = None                              # the bit taken last (None: none since reset)
        for _ in range(600):
            value = 0
            for _ in range(rng.choice([0, 1, 2, 3, width])):
                value |= 1 << rng.randrange(width)
            # A choice is taken only when there is one (as the vector state issues).
            do_take, do_reset = value != 0 and rng.random() < 0.6, rng.random() < 0.05
            ctx.set(requests, value)
            ctx.set(take, do_take)
            ctx.set(reset, do_reset)
            above = [i for i in range(width) if value >> i & 1 and (last is None or i > last)]
            every = [i for i in range(width) if value >> i & 1]
            expected = (above or every or [None])[0]
            if expected is None:
                assert ctx.get(lowest) == 0
            else:
                assert ctx.get(lowest) == 1 << expected, (hex(value), last)
                assert ctx.get(index) == expected, (hex(value), last, ctx.get(index))
            await ctx.tick()
            if do_reset:
                last = None
            elif do_take:
                last = expected

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()


@pytest.mark.parametrize("width", [1, 3, 5, 7])
def test_below_constant_against_python(width):
    """:func:`below_constant` for every value of ``width`` bits against every bound from -1
    to two past the largest value."""
    value = Signal(width)
    bounds = list(range(-1, (1 << width) + 2))
    outs = [Signal(name=f"below_{i}") for i in range(len(bounds))]
    m = Module()
    m.d.comb += [out.eq(below_constant(value, bound)) for out, bound in zip(outs, bounds)]

    async def bench(ctx):
        for v in range(1 << width):
            ctx.set(value, v)
            for out, bound in zip(outs, bounds):
                assert ctx.get(out) == (v < bound), (v, bound)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
