"""Device status and device reset (docs/spec.md §5, §4 0x070)."""

from dataclasses import dataclass

from amaranth.hdl import C, Mux, Signal

from ..regmap import Feature, Field, Register, Status
from .block import Block, BlockLogic


__all__ = ["DeviceStatus"]


class StatusLogic(BlockLogic):
    """``status``: the Status register. Writing 0 is a device reset (``t.device_reset``, which
    this block drives); FEATURES_OK is refused unless the accepted features are a subset of the
    offered ones with VERSION_1; DEVICE_NEEDS_RESET comes from the device side only."""

    def __init__(self, block, params, regmap):
        super().__init__(block, params, regmap)
        self.status = Signal(8)
        self.status_next = Signal(8)
        self.device_reset_pulse = Signal()

    def elaborate(self, m, t):
        p, wd, dt = self.params, t.data, t.dt
        status, status_next = self.status, self.status_next
        accepted = t["features"].accepted
        core = t.core
        m.d.comb += status_next.eq(status)
        # (A plain expression, so that event-driven simulators such as Icarus see its value
        # from time 0 even before the first write.)
        m.d.comb += t.device_reset.eq(t.written("Status") & t.full & dt.zero)
        with m.If(t.written("Status") & t.full & ~dt.zero):
            driver_bits = ~C(Status.DEVICE_NEEDS_RESET, 8)
            new = wd[:8] & driver_bits
            # Drivers only ever add bits; a write that clears one is ignored.
            with m.If((status & driver_bits & ~new) == 0):
                offered = C(p.features, 64)
                features_valid = (((accepted & ~offered) == 0) &
                                  accepted[Feature.VERSION_1])
                refuse = (new[3] & ~status[3] & ~features_valid)
                keep = Mux(refuse, C(0xFF & ~Status.FEATURES_OK, 8), C(0xFF, 8))
                m.d.comb += status_next.eq(
                    (new & keep) | (status & Status.DEVICE_NEEDS_RESET))
        m.d.sync += status.eq(status_next |
                              Mux(core.needs_reset, Status.DEVICE_NEEDS_RESET, 0))
        m.d.sync += self.device_reset_pulse.eq(t.device_reset)
        m.d.comb += [
            core.status.eq(status),
            core.driver_ok.eq(status[2]),
            core.device_reset.eq(self.device_reset_pulse),
        ]

    def read(self, t):
        return {"Status": self.status}

    def device_reset(self):
        return [self.status.eq(0)]


@dataclass(frozen=True)
class DeviceStatus(Block):
    name = "status"
    Logic = StatusLogic

    def rows(self, profile):
        return (
            Register("Status", 0x070, "RW",
                     "Device status; writing 0 resets the device; writes that clear a bit are "
                     "ignored",
                     fields=(Field("ACKNOWLEDGE", 0, 1), Field("DRIVER", 1, 1),
                             Field("DRIVER_OK", 2, 1), Field("FEATURES_OK", 3, 1),
                             Field("DEVICE_NEEDS_RESET", 6, 1), Field("FAILED", 7, 1))),
        )

    def data_tags(self, params):
        # The word is 0: Status = 0 is a device reset.
        return {"zero": lambda value, strb: value == 0}
