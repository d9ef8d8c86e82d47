"""Feature negotiation (docs/spec.md §4 0x010–0x024): DeviceFeatures and DriverFeatures with
their selectors."""

from dataclasses import dataclass

from amaranth.hdl import Mux, Signal

from ..compare import below
from ..regmap import Register
from .block import Block, BlockLogic


__all__ = ["Features"]


_M32 = 0xFFFF_FFFF


def _device_features_reset(params):
    # DeviceFeaturesSel resets to 0: word 0 of the offered features.
    return params.features & _M32


class FeaturesLogic(BlockLogic):
    """``accepted``: the driver's feature words as written (the status block checks them at
    FEATURES_OK); the ``features`` port shows them once FEATURES_OK is set."""

    def __init__(self, block, params, regmap):
        super().__init__(block, params, regmap)
        self.dev_feat_sel_ok = Signal(init=1)      # DeviceFeaturesSel < 2
        self.dev_feat_sel_hi = Signal()
        self.drv_feat_sel_ok = Signal(init=1)
        self.drv_feat_sel_hi = Signal()
        self.accepted = Signal(64)

    def elaborate(self, m, t):
        wd, dt = t.data, t.dt
        features_ok = t["status"].status[3]
        with m.If(t.written("DeviceFeaturesSel") & t.full):
            m.d.sync += [self.dev_feat_sel_ok.eq(dt.below_2), self.dev_feat_sel_hi.eq(wd[0])]
        with m.If(t.written("DriverFeaturesSel") & t.full):
            m.d.sync += [self.drv_feat_sel_ok.eq(dt.below_2), self.drv_feat_sel_hi.eq(wd[0])]
        with m.If(t.written("DriverFeatures") & t.full & self.drv_feat_sel_ok & ~features_ok):
            with m.If(self.drv_feat_sel_hi):
                m.d.sync += self.accepted[32:].eq(wd)
            with m.Else():
                m.d.sync += self.accepted[:32].eq(wd)
        m.d.comb += t.core.features.eq(Mux(features_ok, self.accepted, 0))

    def read(self, t):
        p = self.params
        return {"DeviceFeatures": Mux(self.dev_feat_sel_ok,
                                      Mux(self.dev_feat_sel_hi, p.features >> 32,
                                          p.features & _M32), 0)}

    def device_reset(self):
        return [self.accepted.eq(0),
                self.dev_feat_sel_ok.eq(1), self.dev_feat_sel_hi.eq(0),
                self.drv_feat_sel_ok.eq(1), self.drv_feat_sel_hi.eq(0)]


@dataclass(frozen=True)
class Features(Block):
    """The offered 64-bit set (a parameter) read through a selector, and the accepted set
    written through another; selectors >= 2 read 0 / are ignored."""

    name = "features"
    Logic = FeaturesLogic

    def rows(self, profile):
        return (
            Register("DeviceFeatures", 0x010, "R",
                     "Word DeviceFeaturesSel of the offered 64-bit feature set; selector >= 2 "
                     "reads 0", reset=_device_features_reset),
            Register("DeviceFeaturesSel", 0x014, "W", "Selects the word of DeviceFeatures"),
            Register("DriverFeatures", 0x020, "W",
                     "Word DriverFeaturesSel of the accepted feature set; selector >= 2 "
                     "ignored; ignored once FEATURES_OK is set"),
            Register("DriverFeaturesSel", 0x024, "W", "Selects the word of DriverFeatures"),
        )

    def data_tags(self, params):
        # The word is 0 or 1: a valid feature selector.
        return {"below_2": lambda value, strb: below(value, 2)}
