"""Shared-memory regions (docs/spec.md §4 0x0AC–0x0BC): SHMSel and the selected region's length
and base, constants from the parameters (all ones when there is no such region)."""

from dataclasses import dataclass

from amaranth.hdl import Array, C, Mux, Signal

from ..regmap import Register
from .block import Block, BlockLogic


__all__ = ["SharedMemory"]


_M32 = 0xFFFF_FFFF


def _shm_word_reset(attr, high):
    def reset(params):
        # SHMSel resets to 0: region 0, or all ones (docs/spec.md §4) in both halves when there is
        # none.
        region = next((r for r in params.shm if r.id == 0), None)
        word = _M32 if region is None else getattr(region, attr) >> (32 if high else 0)
        return word & _M32
    return reset


_SHM_RESETS = {(attr, high): _shm_word_reset(attr, high)
               for attr in ("length", "base") for high in (False, True)}

#: The four read-only words: (register, region attribute, high half).
_WORDS = (("SHMLenLow", "length", False), ("SHMLenHigh", "length", True),
          ("SHMBaseLow", "base", False), ("SHMBaseHigh", "base", True))


class SharedMemoryLogic(BlockLogic):
    """``shm_index``: the configured region SHMSel names, valid while ``shm_ok``."""

    def __init__(self, block, params, regmap):
        super().__init__(block, params, regmap)
        # SHMSel resets to 0: start with the lookup of region 0 done.
        shm_zero = [i for i, region in enumerate(params.shm) if region.id == 0]
        # (at least one bit: a zero-width register would be `wire [-1:0]` in the Verilog)
        self.shm_index = Signal(range(max(2, len(params.shm))),
                                init=shm_zero[0] if shm_zero else 0)
        self.shm_ok = Signal(init=bool(shm_zero))

    def elaborate(self, m, t):
        with m.If(t.written("SHMSel") & t.full):
            m.d.sync += self.shm_ok.eq(0)
            for i, region in enumerate(self.params.shm):
                with m.If(t.data == region.id):
                    m.d.sync += [self.shm_index.eq(i), self.shm_ok.eq(1)]

    def read(self, t):
        p = self.params
        if not p.shm:
            return {name: _M32 for name, _, _ in _WORDS}
        ones = C(_M32, 32)
        tables = {attr: Array(C(getattr(r, attr), 64) for r in p.shm)
                  for attr in ("length", "base")}
        values = {}
        for name, attr, high in _WORDS:
            entry = tables[attr][self.shm_index]
            word = entry[32:] if high else entry[:32]
            values[name] = Mux(self.shm_ok, word, ones)
        return values

    def device_reset(self):
        return [self.shm_index.eq(self.shm_index.init), self.shm_ok.eq(self.shm_ok.init)]


@dataclass(frozen=True)
class SharedMemory(Block):
    name = "shm"
    Logic = SharedMemoryLogic

    def rows(self, profile):
        return (
            Register("SHMSel", 0x0AC, "W", "Selects the shared-memory region"),
            Register("SHMLenLow", 0x0B0, "R", "Length of region SHMSel [31:0]; all ones if none",
                     reset=_SHM_RESETS["length", False]),
            Register("SHMLenHigh", 0x0B4, "R",
                     "Length of region SHMSel [63:32]; all ones if none",
                     reset=_SHM_RESETS["length", True]),
            Register("SHMBaseLow", 0x0B8, "R", "Base of region SHMSel [31:0]; all ones if none",
                     reset=_SHM_RESETS["base", False]),
            Register("SHMBaseHigh", 0x0BC, "R",
                     "Base of region SHMSel [63:32]; all ones if none",
                     reset=_SHM_RESETS["base", True]),
        )
