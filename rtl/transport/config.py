"""Device-specific configuration (docs/spec.md §4 0x0FC, 0x100…, §9 config port):
ConfigGeneration and the config-space window passed through to the device logic."""

from dataclasses import dataclass

from amaranth.hdl import C, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..regmap import CONFIG_BASE, Register
from .block import Block, BlockLogic


__all__ = ["ConfigPort", "config_addr_width", "ConfigSpace"]


class ConfigPort(wiring.Signature):
    """Config-space pass-through (docs/spec.md §4 0x100…, §9), seen from the core (it drives the
    requests, the device logic answers).

    ``addr`` is the byte offset of the 32-bit word inside config space (bits 1:0 zero).
    ``re`` requests a read; the device answers on ``rdata`` in the next cycle. ``we`` writes
    ``wdata`` into the lanes ``be``. ``re`` and ``we`` are never high in the same cycle."""

    def __init__(self, addr_width):
        super().__init__({
            "addr": Out(addr_width), "re": Out(1), "rdata": In(32),
            "we": Out(1), "wdata": Out(32), "be": Out(4),
        })


def config_addr_width(params):
    """Width of ``cfg_addr``: byte offsets into config space (at least 2 bits)."""
    return max(2, (max(params.config_size, 4) - 1).bit_length())


def in_config(params, word):
    """Whether a word address (of a read or a write) is inside config space."""
    if not params.config_size:
        return C(0)
    return (word >= CONFIG_BASE // 4) & (word < (CONFIG_BASE + params.config_size) // 4)


class ConfigLogic(BlockLogic):
    """The core's ``config`` port: reads of config space are passed through (answered by the
    device in the next cycle), writes too; a write to config space waits while a read of it
    is requested in the same cycle (the port has one address). ConfigGeneration counts the
    device's ``config_changed`` events and is kept across a device reset."""

    def __init__(self, block, params, regmap):
        super().__init__(block, params, regmap)
        self.config_generation = Signal(32)
        self.r_cfg = Signal()

    def elaborate(self, m, t):
        bus, cfg, core = t.bus, t.core.config, t.core
        cfg_lo = CONFIG_BASE // 4
        r_cfg = self.r_cfg
        m.d.comb += r_cfg.eq(bus.r_valid & in_config(self.params, bus.r_addr))
        w_cfg = t.at.config
        t.write_holds.append(w_cfg & r_cfg)
        m.d.comb += [
            bus.w_conflict.eq(bus.w_valid & w_cfg & r_cfg),
            cfg.re.eq(r_cfg),
            cfg.we.eq(t.we & w_cfg),
            cfg.wdata.eq(t.data),
            cfg.be.eq(Mux(r_cfg, 0xF, t.strb)),
            cfg.addr.eq(Mux(r_cfg, bus.r_addr - cfg_lo, t.word - cfg_lo) << 2),
        ]
        with m.If(core.config_changed):
            m.d.sync += self.config_generation.eq(self.config_generation + 1)

    def read(self, t):
        return {"ConfigGeneration": self.config_generation}

    def window_read(self, t):
        return self.r_cfg, t.core.config.rdata


@dataclass(frozen=True)
class ConfigSpace(Block):
    name = "config"
    Logic = ConfigLogic

    def rows(self, profile):
        return (
            Register("ConfigGeneration", 0x0FC, "R",
                     "Increments on every device-side configuration change; kept across "
                     "device reset"),
        )

    def address_tags(self, params, regmap):
        # Inside config space.
        return {"config": lambda word: in_config(params, word)}
