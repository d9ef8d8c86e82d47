"""Comparisons against constants that stay off the carry chain.

Yosys maps every ``<``/``<=`` to an adder with a carry chain as wide as the wider operand, even
against a small constant; on the register file's write path a 32-bit chain is the critical
path. ``value < bound`` is "the bits above the bound's width are zero, and the rest are below
it" — a wide AND and a short comparison.
"""

from amaranth.hdl import C, Value


__all__ = ["below", "at_most"]


def below(value, bound):
    """``value < bound`` for a constant ``bound`` ≥ 1 and an unsigned ``value``."""
    value = Value.cast(value)
    if not isinstance(bound, int) or bound < 1:
        raise ValueError(f"bound must be a positive integer, not {bound!r}")
    width = max(1, (bound - 1).bit_length())
    if width >= len(value):
        return value < bound
    low_ok = C(1) if bound >= 1 << width else value[:width] < bound
    return (value[width:] == 0) & low_ok


def at_most(value, limit, width):
    """``value <= limit`` for an unsigned ``value`` and a ``limit`` signal of ``width`` bits
    (so no larger than ``2**width - 1``)."""
    value = Value.cast(value)
    if width >= len(value):
        return value <= limit
    return (value[width:] == 0) & (value[:width] <= limit)
