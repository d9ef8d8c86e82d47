"""Notifications (docs/spec.md §6): QueueNotify and the doorbells, their address decode, and the
queue of notifications waiting for the device logic."""

from dataclasses import dataclass

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from ..compare import below
from ..regmap import Feature, Field, Register
from .block import Block, BlockLogic


__all__ = ["NotifyLayout", "DoorbellAddresses", "DoorbellDecoder", "NotifyQueue", "Notify"]


#: Payload of the notification stream (docs/spec.md §6, §9): the queue (decoded from the doorbell
#: address, or taken from the data word), the word as written, and whether it is a
#: notification-data word (VIRTIO_F_NOTIFICATION_DATA negotiated).
NotifyLayout = data.StructLayout({"queue": 16, "data": 32, "has_data": 1})


class DoorbellAddresses:
    """Which word addresses are notifications.

    QueueNotify (0x050) in every profile; in profiles with doorbells, ``notify_base + q *
    notify_multiplier`` for q < N, or the single doorbell at ``notify_base`` when the
    multiplier is 0. Without a divider: with the multiplier ``m = 4 · 2^t · d`` (d odd), the
    word offset ``x`` from the base is a doorbell iff its low t bits are 0 and ``(x >> t) ·
    d⁻¹ mod 2^w`` is below N, which is then the queue (the product maps multiples of d to
    their quotient and everything else above ``(2^w - 1) / d``; d⁻¹ is the inverse of d modulo
    2^w). For a power-of-two multiplier d = 1 and this is a shift.
    """

    def __init__(self, params, queue_notify_word):
        self._params = params
        self._queue_notify_word = queue_notify_word

    def queue_doorbell(self, word):
        """``(is a per-queue doorbell of an existing queue, its queue)`` for a word address
        (both constant 0 in profiles without per-queue doorbells)."""
        p = self._params
        n = p.queues
        base = p.notify_base // 4
        stride = p.notify_multiplier // 4
        if not p.has_doorbells or stride == 0:
            return C(0), C(0, 16)
        shift = (stride & -stride).bit_length() - 1
        odd = stride >> shift
        last = base + (n - 1) * stride
        span_bits = (last - base).bit_length()
        if base % (1 << span_bits) == 0:
            # The doorbells sit in an aligned block: the offset is the word's low bits and
            # the range check a compare of the high bits (no subtractor, no carry chain).
            offset = word[:span_bits]
            in_range = (word[span_bits:] == base >> span_bits) & \
                (below(offset, last - base + 1) if span_bits else C(1))
        else:
            offset = (word - base)[:max(1, span_bits)]
            in_range = (word >= base) & (word <= last)
        width = max(1, ((n - 1) * odd).bit_length())
        quotient = ((offset >> shift) * pow(odd, -1, 1 << width))[:width]
        aligned = offset[:shift] == 0 if shift else C(1)
        return in_range & aligned & below(quotient, n), quotient

    def data_doorbell(self, word):
        """QueueNotify, or the single doorbell: the queue is in the data."""
        p = self._params
        hit = word == self._queue_notify_word
        if p.has_doorbells and p.notify_multiplier == 0:
            hit = hit | (word == p.notify_base // 4)
        return hit


class DoorbellDecoder(wiring.Component):
    """A write's notification, from its address and data and their tags (``data_doorbell``,
    ``queue_doorbell``; ``full``, ``low_queue_ok``, ``word_queue_ok``).

    At QueueNotify and the single doorbell the queue comes from the data: bits 15:0 when
    notification data is negotiated, else the whole word. At a per-queue doorbell it comes
    from the address.

    Members
    -------
    word, data, address_tags, data_tags, data_negotiated : In
        The write: word address, data, their tags, NOTIFICATION_DATA negotiated.
    hit : Out
        The address is QueueNotify or a doorbell (the write is a notification or is dropped).
    valid : Out
        A full write for an existing queue: it becomes a notification for ``queue``.
    queue : Out(16)
    """

    def __init__(self, addresses, addr_width, address_layout, data_layout):
        self._addresses = addresses
        super().__init__({
            "word": In(addr_width - 2), "data": In(32),
            "address_tags": In(address_layout), "data_tags": In(data_layout),
            "data_negotiated": In(1),
            "hit": Out(1), "valid": Out(1), "queue": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        at, dt = self.address_tags, self.data_tags
        queue_from_data = Mux(self.data_negotiated, self.data[:16], self.data)
        data_queue_ok = Mux(self.data_negotiated, dt.low_queue_ok, dt.word_queue_ok)
        m.d.comb += [
            self.hit.eq(at.data_doorbell | at.queue_doorbell),
            self.valid.eq(dt.full & ((at.data_doorbell & data_queue_ok) | at.queue_doorbell)),
            self.queue.eq(Mux(at.data_doorbell, queue_from_data, self._doorbell_queue())),
        ]
        return m

    def _doorbell_queue(self):
        """The queue of a per-queue doorbell write: the one its address belongs to."""
        _, queue = self._addresses.queue_doorbell(self.word)
        return queue


class NotifyQueue(wiring.Component):
    """The notifications waiting for the device logic, in write order.

    ``depth`` 1 is a single register that can take a new notification in the cycle the device
    takes the old one; a larger depth is a FIFO. When nothing is held, a notification passes
    straight through: it is on ``o`` in the cycle it is written (and is held only if the device
    does not take it then), so the bus front-end's register stage adds no latency to
    ``notify_valid``. ``reset`` (a device reset) discards everything not yet taken.

    Members
    -------
    i : In(stream.Signature(NotifyLayout))
        ``i.ready`` is combinational from ``o.ready`` for depth 1.
    o : Out(stream.Signature(NotifyLayout))
        Combinational from ``i`` while nothing is held.
    reset : In(1)
    held : Out(1)
        Observation (for proofs): a notification is held (written and not yet taken).
    """

    def __init__(self, depth=1):
        if not isinstance(depth, int) or depth < 1:
            raise ValueError(f"Notify FIFO depth must be a positive integer, not {depth!r}")
        self._depth = depth
        super().__init__({
            "i": In(stream.Signature(NotifyLayout)),
            "o": Out(stream.Signature(NotifyLayout)),
            "reset": In(1), "held": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        held = self.held                    # something is held (then it goes first)
        held_payload = Signal(NotifyLayout)
        store = Signal()                    # the incoming notification must be held
        m.d.comb += [
            self.o.valid.eq(held | self.i.valid),
            self.o.payload.eq(Mux(held, held_payload, self.i.payload)),
            store.eq(self.i.valid & self.i.ready & (held | ~self.o.ready)),
        ]
        if self._depth == 1:
            m.d.comb += self.i.ready.eq(self._ready(held))
            with m.If(self.o.ready):
                m.d.sync += held.eq(0)
            with m.If(store):
                m.d.sync += held.eq(1)
            # The payload is captured whenever a store could happen, so the (late) decision
            # to store drives one flip-flop, not the whole payload's enables.
            with m.If(~held | self.o.ready):
                m.d.sync += held_payload.eq(self.i.payload)
            with m.If(self.reset):
                m.d.sync += held.eq(0)
        else:
            fifo = SyncFIFO(width=NotifyLayout.size, depth=self._depth)
            m.submodules.fifo = ResetInserter(self.reset)(fifo)
            m.d.comb += [
                fifo.w_en.eq(store), fifo.w_data.eq(self.i.payload),
                self.i.ready.eq(fifo.w_rdy),
                held.eq(fifo.r_rdy), held_payload.eq(fifo.r_data),
                fifo.r_en.eq(self.o.ready),
            ]
        return m

    def _ready(self, held):
        """Depth 1: ``i.ready``: nothing is ``held``, or what is held is taken now."""
        return ~held | self.o.ready


class NotifyLogic(BlockLogic):
    """The doorbell decode of each write, the :class:`NotifyQueue` towards the core's
    ``notify`` stream (a notification waits on the bus while it is full), and the count of
    dropped notify writes (``notify_dropped``)."""

    def __init__(self, block, params, regmap):
        super().__init__(block, params, regmap)
        self.queue = NotifyQueue(params.notify_fifo_depth)
        self.addresses = DoorbellAddresses(params, regmap["QueueNotify"].word)

    def elaborate(self, m, t):
        core, bus, wd = t.core, t.bus, t.data
        m.submodules.doorbells = doorbells = DoorbellDecoder(
            self.addresses, self.params.addr_width, t.classifier.address_layout,
            t.classifier.data_layout)
        m.submodules.notify_queue = notify_queue = self.queue
        status = t["status"].status
        accepted = t["features"].accepted
        m.d.comb += [
            doorbells.word.eq(t.word), doorbells.data.eq(wd),
            doorbells.address_tags.eq(t.at),
            doorbells.data_tags.eq(t.dt),
            doorbells.data_negotiated.eq(status[3] & accepted[Feature.NOTIFICATION_DATA]),
        ]
        # A notify write waits on the bus while the queue is full; everything else goes on.
        # (Any write to a notify address, even one that will be dropped: the decision to
        # hold starts from the address tags alone, not from the data, the negotiated
        # features and the queue check — the bus's write path, which also gates the
        # subordinate's buffers.)
        notify_blocked = doorbells.hit & ~notify_queue.i.ready
        t.write_holds.append(notify_blocked)
        m.d.comb += [
            # (Not gated by w_ready: a waiting notification is offered, and valid must not
            # depend on ready, or notify_ready would reach notify_valid combinationally.)
            notify_queue.i.valid.eq(bus.w_valid & doorbells.valid),
            notify_queue.i.payload.queue.eq(doorbells.queue),
            notify_queue.i.payload.data.eq(wd),
            notify_queue.i.payload.has_data.eq(doorbells.data_negotiated),
            notify_queue.reset.eq(t.device_reset),
        ]
        wiring.connect(m, notify_queue.o, wiring.flipped(core.notify))
        # Partial writes and queues >= N: dropped, and counted for the integrator.
        with m.If(t.we & doorbells.hit & ~doorbells.valid):
            m.d.sync += core.notify_dropped.eq(core.notify_dropped + 1)

    def read(self, t):
        if self.block.layout_readable:
            return {"QueueNotify": self.params.notify_layout}
        return {}


@dataclass(frozen=True)
class Notify(Block):
    """QueueNotify, and (``doorbells``) one doorbell per queue at ``notify_base + q *
    notify_multiplier``; ``layout_readable``: QueueNotify reads ``{notify_multiplier,
    notify_base}``; ``default_base``: the profile's default ``notify_base``."""

    doorbells: bool
    layout_readable: bool
    #: ``notify_base`` when the parameters give none (``None``: right after config space).
    default_base: int = None
    #: The one ``notify_multiplier`` the profile allows (``None``: any valid one, default 4).
    fixed_multiplier: int = None

    name = "notify"
    Logic = NotifyLogic
    decodes_own_writes = ("QueueNotify",)

    def rows(self, profile):
        layout = "{notify_multiplier[31:16], notify_base[15:0]}"
        readable = self.layout_readable
        return (
            Register("QueueNotify", 0x050, "RW" if readable else "W",
                     "Write: notification (queue index or notification-data word). Read: " +
                     (layout if readable else "0"),
                     reset="notify_layout" if readable else 0,
                     fields=((Field("notify_base", 0, 16), Field("notify_multiplier", 16, 16))
                             if readable else ())),
        )

    def address_tags(self, params, regmap):
        # ``data_doorbell``: QueueNotify, or the single doorbell (the queue is in the data);
        # ``queue_doorbell``: a per-queue doorbell of an existing queue.
        addresses = DoorbellAddresses(params, regmap["QueueNotify"].word)
        return {"data_doorbell": addresses.data_doorbell,
                "queue_doorbell": lambda word: addresses.queue_doorbell(word)[0]}

    def data_tags(self, params):
        # Bits 15:0 name an existing queue (notification data).
        return {"low_queue_ok": lambda value, strb: below(value[:16], params.queues)}
