"""Interrupts (docs/spec.md §7, §4 0x060, 0x064, 0x0C0–0x0CC): InterruptStatus and InterruptACK,
and in profiles with MSI the MSI registers, their command decode and the interrupt controller
(:mod:`virtio_mmio.transport.msi`, :mod:`virtio_mmio.transport.vector_state`)."""

from dataclasses import dataclass

from amaranth.hdl import C, Cat, Signal
from amaranth.lib import wiring

from ..compare import below
from .msi import InterruptController
from ..regmap import Field, MsiOp, Register
from .block import Block, BlockLogic


__all__ = ["Msi", "Interrupts"]


@dataclass(frozen=True)
class Msi:
    """The MSI registers' dialect.

    ``status_capable``: MsiStatus bit 15 reads 1 whenever MSI is implemented (the 2019 Linux
    patch's reading) instead of "MSI currently enabled". ``status_writable``: a write to
    MsiStatus (both lanes) enables (bit 15 = 1) or disables MSI; otherwise MsiStatus is
    read-only and only MsiCmd ENABLE switches MSI; ``status_until_driver_ok``: such a write is
    ignored once DRIVER_OK is set. ``ops``: the MsiCmd operations, a class with a code per
    name and their ``DOCS`` (:class:`~virtio_mmio.regmap.MsiOp`: UPDATE, ENABLE;
    :class:`~virtio_mmio.regmap.DragonballMsiOp`: UPDATE, MASK, UNMASK — per-vector masks).
    ``refuses_other_ops``: a command with any other op is counted (``msi_rejected``), not
    just ignored. ``keeps_interrupt_status``: InterruptStatus and InterruptACK keep working
    while MSI is enabled (``irq`` stays low). ``stages_while_enabled``: MsiAddrLow/High and
    MsiData take writes only while MSI is enabled.
    """

    status_capable: bool = False
    status_writable: bool = False
    status_until_driver_ok: bool = False
    ops: type = MsiOp
    refuses_other_ops: bool = False
    keeps_interrupt_status: bool = False
    stages_while_enabled: bool = False

    @property
    def op_names(self):
        return tuple(self.ops.DOCS)

    def op(self, name):
        """The code of operation ``name``."""
        return getattr(self.ops, name)

    @property
    def masks(self):
        """Per-vector masks (MASK/UNMASK)."""
        return "MASK" in self.op_names


#: MsiStatus's fields in every dialect: N in bits [10:0], the enabled/capable bit 15.
MSI_STATUS_QUEUES_LSB, MSI_STATUS_QUEUES_WIDTH = 0, 11
MSI_STATUS_ENABLED_LSB = 15


class InterruptsLogic(BlockLogic):
    """The interrupt controller (``controller``: made here, so proofs can reach its
    observation members before elaboration), InterruptACK, the MSI staging registers and
    the decode of MsiStatus/MsiCmd writes into controller commands."""

    def __init__(self, block, params, regmap):
        super().__init__(block, params, regmap)
        msi = block.msi
        self.controller = InterruptController(
            params, msi=msi is not None, masks=msi is not None and msi.masks,
            keeps_status=msi is not None and msi.keeps_interrupt_status)
        self.msi_addr = Signal(64)
        self.msi_data = Signal(32)

    def elaborate(self, m, t):
        core, wd, dt = t.core, t.data, t.dt
        msi = self.block.msi
        m.submodules.interrupts = interrupts = self.controller
        ack_bits = Signal(2)
        with m.If(t.written("InterruptACK") & t.full):
            m.d.comb += ack_bits.eq(wd[:2])
        m.d.comb += [
            interrupts.used_valid.eq(core.used_valid),
            interrupts.used_queue.eq(core.used_queue),
            interrupts.config_event.eq(core.config_changed | core.needs_reset),
            interrupts.ack.eq(ack_bits),
            interrupts.reset.eq(t.device_reset),
            core.msi_rejected.eq(interrupts.rejected),
            core.msi_enabled.eq(interrupts.enabled),
            core.irq.eq(interrupts.irq),
        ]
        wiring.connect(m, interrupts.message, wiring.flipped(core.msi_message))
        if msi is None:
            return

        msi_cmd = interrupts.command
        m.d.comb += [msi_cmd.address.eq(self.msi_addr), msi_cmd.data.eq(self.msi_data)]
        # 16-bit pair: MsiStatus in lanes 1:0, MsiCmd in lanes 3:2. The command's vector (and
        # MASK/UNMASK's value) come from the write data whether or not a command is written,
        # so that what they select does not wait for the decision to take the write.
        arg = wd[16:28]
        m.d.comb += msi_cmd.vector.eq(arg)
        if msi.masks:
            m.d.comb += msi_cmd.mask_value.eq(dt.msi_mask)
        with m.If(t.written("MsiStatus")):
            # A full write applies MsiStatus first, then the command (which then wins). (The
            # lanes and the command are decoded in the data tags.)
            if msi.status_writable:
                # Not in seed: there MsiStatus is read-only, as the proposal writes it, so a
                # word write that carries a command in bits 31:16 and zeros below cannot
                # switch MSI off.
                status_write = dt.msi_status
                if msi.status_until_driver_ok:
                    status_write = status_write & ~t["status"].status[2]
                with m.If(status_write):
                    m.d.comb += [msi_cmd.enable.eq(1), msi_cmd.enable_value.eq(wd[15])]
            ops = msi.op_names
            with m.If(dt.msi_update):
                m.d.comb += msi_cmd.update.eq(1)
            if "ENABLE" in ops:
                with m.If(dt.msi_enable):
                    m.d.comb += [msi_cmd.enable.eq(1), msi_cmd.enable_value.eq(arg[0])]
            if msi.masks:
                with m.If(dt.msi_mask | dt.msi_unmask):
                    m.d.comb += msi_cmd.mask.eq(1)
            if msi.refuses_other_ops:
                with m.If(dt.msi_refused):
                    m.d.comb += msi_cmd.refuse.eq(1)
        # Staging registers honour byte lanes: plain data, latched always (or only while MSI
        # is enabled).
        staging = C(1) if not msi.stages_while_enabled else interrupts.enabled
        for name, target in (("MsiAddrLow", self.msi_addr[:32]),
                             ("MsiAddrHigh", self.msi_addr[32:]),
                             ("MsiData", self.msi_data)):
            with m.If(t.written(name) & staging):
                for lane in range(4):
                    with m.If(t.strb[lane]):
                        m.d.sync += target[8 * lane:8 * lane + 8].eq(wd[8 * lane:8 * lane + 8])

    def read(self, t):
        values = {"InterruptStatus": self.controller.interrupt_status}
        if self.block.msi is not None:
            enabled = C(1) if self.block.msi.status_capable else self.controller.enabled
            # Lanes 3:2 (MsiCmd) are write-only and read 0.
            values["MsiStatus"] = Cat(C(self.params.queues, 11), C(0, 4), enabled)
        return values

    def device_reset(self):
        if self.block.msi is None:
            return []
        return [self.msi_addr.eq(0), self.msi_data.eq(0)]


@dataclass(frozen=True)
class Interrupts(Block):
    """InterruptStatus/InterruptACK (the wired interrupt, ``irq``), and with ``msi`` (an
    :class:`Msi`) the MSI registers: MsiStatus/MsiCmd at 0x0C0/0x0C2, the staged address and
    data."""

    msi: Msi = None

    name = "interrupts"
    Logic = InterruptsLogic

    def msi_status_reset(self, params):
        """MsiStatus after a reset: the queue count, and bit 15 when it reads "capable" (MSI
        is off after a reset, so an "enabled" bit 15 is 0)."""
        return (params.queues << MSI_STATUS_QUEUES_LSB |
                int(self.msi.status_capable) << MSI_STATUS_ENABLED_LSB)

    def rows(self, profile):
        msi = self.msi
        if msi is not None and msi.keeps_interrupt_status:
            while_enabled = "kept while MSI is enabled (irq stays low)"
        else:
            while_enabled = "0 while MSI is enabled"
        rows = [
            Register("InterruptStatus", 0x060, "R",
                     "Bit 0 used buffer, bit 1 configuration change; " + while_enabled,
                     fields=(Field("used_buffer", 0, 1), Field("config_change", 1, 1))),
            Register("InterruptACK", 0x064, "W", "Clears the written InterruptStatus bits",
                     fields=(Field("used_buffer", 0, 1), Field("config_change", 1, 1))),
        ]
        if msi is None:
            return tuple(rows)
        if msi.status_capable:
            enabled_doc = "Reads 1: MSI is implemented"
        else:
            enabled_doc = "1: MSI is enabled"
        if msi.status_writable:
            enabled_doc += "; a write with both lanes enables (1) or disables (0) MSI"
            if msi.status_until_driver_ok:
                enabled_doc += ", ignored once DRIVER_OK is set"
            enabled_access = "RW"
        else:
            enabled_doc += "; read-only (MsiCmd ENABLE switches MSI)"
            enabled_access = "R"
        ops = tuple((name, msi.op(name), doc) for name, doc in msi.ops.DOCS.items())
        other_ops = "counted in msi_rejected" if msi.refuses_other_ops else "ignored"
        staged = "; taken only while MSI is enabled" if msi.stages_while_enabled else ""
        rows += [
            # RW in every profile: the write decode names the 0x0C0 word (MsiStatus and
            # MsiCmd) after its first writable register. The fields say what a write to
            # MsiStatus itself does in this profile.
            Register("MsiStatus", 0x0C0, "RW",
                     "[10:0] number of queues N (vectors 0..N); [15] " + enabled_doc,
                     reset=self.msi_status_reset, width=16,
                     fields=(Field("queues", MSI_STATUS_QUEUES_LSB, MSI_STATUS_QUEUES_WIDTH,
                                   "Number of queues N (vectors 0..N)", access="R"),
                             Field("enabled", MSI_STATUS_ENABLED_LSB, 1, enabled_doc,
                                   access=enabled_access))),
            Register("MsiCmd", 0x0C2, "W",
                     "[15:12] op (" + ", ".join(f"{value} {name}" for name, value, _ in ops) +
                     (f"; others {other_ops}" if msi.refuses_other_ops else "") +
                     "), [11:0] arg", width=16,
                     fields=(Field("arg", 0, 12), Field("op", 12, 4, values=ops))),
            Register("MsiAddrLow", 0x0C4, "W", "Staged MSI address [31:0]" + staged,
                     full_write=False),
            Register("MsiAddrHigh", 0x0C8, "W", "Staged MSI address [63:32]" + staged,
                     full_write=False),
            Register("MsiData", 0x0CC, "W", "Staged MSI data" + staged, full_write=False),
        ]
        return tuple(rows)

    def data_tags(self, params):
        msi = self.msi
        if msi is None:
            return {}
        n = params.queues

        def command(strb):
            return strb[2:4] == 0b11

        def op_is(name):
            return lambda value, strb: command(strb) & (value[28:32] == msi.op(name))

        def on_vector(name):
            # ... of an existing vector (arg 0..N; a larger arg is ignored).
            return lambda value, strb: op_is(name)(value, strb) & below(value[16:28], n + 1)

        # At MsiStatus/MsiCmd: lanes 1:0 written (MsiStatus); lanes 3:2 written with each
        # operation of the dialect (MsiCmd): UPDATE, MASK, UNMASK of an existing vector,
        # ENABLE; and with an op the dialect does not have, where it refuses those.
        tags = {"msi_status": lambda value, strb: strb[0:2] == 0b11}
        for name in msi.op_names:
            tags[f"msi_{name.lower()}"] = op_is(name) if name == "ENABLE" else on_vector(name)
        if msi.refuses_other_ops:
            codes = [msi.op(name) for name in msi.op_names]
            tags["msi_refused"] = lambda value, strb: command(strb) & ~Cat(
                *(value[28:32] == code for code in codes)).any()
        return tags
