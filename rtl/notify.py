"""Notifications (SPEC §6): the doorbell address decoder and the notification queue."""

from amaranth.hdl import *
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

from .bus import WriteClassifier as BusWriteClassifier, pack_tags
from .compare import below
from .regmap import MsiOp


__all__ = ["NotifyLayout", "DataTags", "WriteClassifier", "DoorbellDecoder",
           "NotifyQueue"]


#: Payload of the notification stream (SPEC §6, §9): the queue (decoded from the doorbell
#: address, or taken from the data word), the word as written, and whether it is a
#: notification-data word (VIRTIO_F_NOTIFICATION_DATA negotiated).
NotifyLayout = data.StructLayout({"queue": 16, "data": 32, "has_data": 1})


#: What a write's data and byte lanes are, decoded by :class:`WriteClassifier`.
DataTags = data.StructLayout({
    "full": 1,              # all four lanes enabled
    "low_queue_ok": 1,      # bits 15:0 name an existing queue (notification data)
    "word_queue_ok": 1,     # the whole word names an existing queue
    "zero": 1,              # the word is 0 (Status = 0 is a device reset)
    "below_2": 1,           # the word is 0 or 1 (a valid feature selector)
    # At MsiStatus/MsiCmd (SPEC §4): lanes 1:0 written (MsiStatus); lanes 3:2 written with
    # an UPDATE of an existing vector, or with an ENABLE (MsiCmd).
    "msi_status": 1, "msi_update": 1, "msi_enable": 1,
})


class WriteClassifier(BusWriteClassifier):
    """The decode of a write, split into what the address says (:attr:`address_layout`: is
    it a notification, config space, which register) and what the data and lanes say
    (:data:`DataTags`).

    The transport's :class:`virtio_mmio.bus.WriteClassifier`: a bus subordinate applies it
    where it first has the address and the data — the AXI4-Lite subordinate as the AW and W
    entries are buffered, so the decision to take a buffered write starts from flip-flops — and
    passes the tags beside the write on :class:`~virtio_mmio.bus.RegisterBus`. Both tag sets
    are built by name (:func:`~virtio_mmio.bus.pack_tags`).

    Doorbells: QueueNotify (0x050) in every profile; in profiles with doorbells, ``notify_base
    + q * notify_multiplier`` for q < N, or the single doorbell at ``notify_base`` when the
    multiplier is 0. Without a divider: with the multiplier ``m = 4 · 2^t · d`` (d odd), the
    word offset ``x`` from the base is a doorbell iff its low t bits are 0 and ``(x >> t) ·
    d⁻¹ mod 2^w`` is below N, which is then the queue (the product maps multiples of d to
    their quotient and everything else above ``(2^w - 1) / d``; d⁻¹ is the inverse of d modulo
    2^w). For a power-of-two multiplier d = 1 and this is a shift.
    """

    def __init__(self, params, regmap, config_base):
        self._params = params
        self._queue_notify_word = regmap["QueueNotify"].word
        self._config_lo = config_base // 4
        self._config_hi = (config_base + params.config_size) // 4
        # The writable register words other than QueueNotify, named by their first register.
        words = {}
        for register in regmap:
            if register.writable and register.name != "QueueNotify":
                words.setdefault(register.word, register.name)
        self._register_words = {name: word for word, name in sorted(words.items())}
        #: Layout of the address tags: ``data_doorbell`` (QueueNotify, or the single
        #: doorbell: the queue is in the data), ``queue_doorbell`` (a per-queue doorbell of an
        #: existing queue), ``config`` (inside config space), and one bit per writable
        #: register word (named by its first register; ``MsiStatus`` covers MsiCmd too).
        self.address_layout = data.StructLayout({
            "data_doorbell": 1, "queue_doorbell": 1, "config": 1,
            **{name: 1 for name in self._register_words}})
        self.data_layout = DataTags

    def doorbell(self, word):
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

    def in_config(self, word):
        """Whether a word address (of a read or a write) is inside config space."""
        if not self._params.config_size:
            return C(0)
        return (word >= self._config_lo) & (word < self._config_hi)

    def address(self, word):
        """The tags (:attr:`address_layout`) of a word address, as a value."""
        p = self._params
        data_doorbell = word == self._queue_notify_word
        if p.has_doorbells and p.notify_multiplier == 0:
            data_doorbell = data_doorbell | (word == p.notify_base // 4)
        queue_doorbell, _ = self.doorbell(word)
        return pack_tags(self.address_layout, data_doorbell=data_doorbell,
                         queue_doorbell=queue_doorbell, config=self.in_config(word),
                         **{name: word == at for name, at in self._register_words.items()})

    def data(self, value, strb):
        """:data:`DataTags` of a data word and its byte lanes, as a value."""
        n = self._params.queues
        command = strb[2:4] == 0b11
        op, arg = value[28:32], value[16:28]
        return pack_tags(DataTags, full=strb == 0xF, low_queue_ok=below(value[:16], n),
                         word_queue_ok=below(value, n), zero=value == 0,
                         below_2=below(value, 2), msi_status=strb[0:2] == 0b11,
                         msi_update=command & (op == MsiOp.UPDATE) & below(arg, n + 1),
                         msi_enable=command & (op == MsiOp.ENABLE))


class DoorbellDecoder(wiring.Component):
    """A write's notification, from its address and data and their tags
    (:class:`WriteClassifier`).

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

    def __init__(self, classifier, addr_width):
        self._classifier = classifier
        super().__init__({
            "word": In(addr_width - 2), "data": In(32),
            "address_tags": In(classifier.address_layout), "data_tags": In(DataTags),
            "data_negotiated": In(1),
            "hit": Out(1), "valid": Out(1), "queue": Out(16),
        })

    def elaborate(self, platform):
        m = Module()
        at, dt = self.address_tags, self.data_tags
        queue_from_data = Mux(self.data_negotiated, self.data[:16], self.data)
        data_queue_ok = Mux(self.data_negotiated, dt.low_queue_ok, dt.word_queue_ok)
        _, doorbell_queue = self._classifier.doorbell(self.word)
        m.d.comb += [
            self.hit.eq(at.data_doorbell | at.queue_doorbell),
            self.valid.eq(dt.full & ((at.data_doorbell & data_queue_ok) | at.queue_doorbell)),
            self.queue.eq(Mux(at.data_doorbell, queue_from_data, doorbell_queue)),
        ]
        return m


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
            m.d.comb += self.i.ready.eq(~held | self.o.ready)
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
