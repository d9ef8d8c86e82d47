"""Choosing one of many requests: one-hot to index, the lowest request as a tree, round
robin; a comparison with a constant that is not a carry chain."""

from amaranth.hdl import *


__all__ = ["below_constant", "lowest_set", "onehot_index", "round_robin"]


def onehot_index(onehot):
    """The index of the set bit of a one-hot vector: each index bit is the OR of the vector's
    bits at indices having that bit set (log-depth, no priority chain)."""
    width = len(onehot)
    index_bits = max(1, (width - 1).bit_length())
    return Cat(*(Cat(*(onehot[i] for i in range(width) if i >> b & 1)).any()
                 if width > 1 << b else C(0, 1) for b in range(index_bits)))


def below_constant(value, bound):
    """``value < bound`` for an unsigned ``value`` and an integer ``bound``, as AND/OR terms of
    ``value``'s bits rather than the carry chain Yosys builds for ``<`` (so a set of them, one
    per position, is a few LUT levels from ``value``). From the lowest bit up: where the
    bound has a 1, a 0 in ``value`` makes it below whatever the lower bits are; where the
    bound has a 0, a 1 makes it not below."""
    value = Value.cast(value)
    if bound <= 0:
        return C(0, 1)
    if bound >= 1 << len(value):
        return C(1, 1)
    result = C(0, 1)
    for b in range(len(value)):
        if bound >> b & 1:
            result = ~value[b] | result
        else:
            result = ~value[b] & result
    return result


def lowest_set(bits):
    """``(any, index)``: whether any bit of ``bits`` is set, and the index of the lowest one
    (meaningless when none is). Built as a binary tree of (any, index) pairs — each node takes
    its lower child's index if that child has a bit set — so the depth grows with log2 of the
    width and no carry chain or wide OR sits in front of the index (the choice over 128 hint
    words of the block-RAM MSI store is one)."""
    nodes = [(bits[i], Cat()) for i in range(len(bits))]
    while len(nodes) > 1:
        paired = []
        for k in range(0, len(nodes) - 1, 2):
            (any_lo, index_lo), (any_hi, index_hi) = nodes[k], nodes[k + 1]
            paired.append((any_lo | any_hi,
                           Mux(any_lo, Cat(index_lo, C(0, 1)), Cat(index_hi, C(1, 1)))))
        if len(nodes) % 2:
            any_last, index_last = nodes[-1]
            paired.append((any_last, Cat(index_last, C(0, 1))))
        nodes = paired
    any_set, index = nodes[0]
    return any_set, (index if len(index) else C(0, 1))


def round_robin(m, requests, take, reset):
    """Round-robin choice among the bits of ``requests``: the lowest one above the one taken
    last, else the lowest of all. Returns the choice as (one-hot, index). The choice is
    recorded as the last one taken in cycles where ``take`` is true (only meaningful with a
    request set); ``reset`` starts over from bit 0.

    The index comes from two :func:`lowest_set` trees (above the last one taken, and over
    all), the one-hot is decoded from it, and the next "above" mask comes from comparisons of
    it with each position (:func:`below_constant`), so none of them waits for a carry chain
    across the width."""
    width = len(requests)
    above = Signal(width, init=(1 << width) - 1)       # the bits above the last one taken
    above_requests = requests & above
    any_above, index_above = lowest_set(above_requests)
    any_all, index_all = lowest_set(requests)
    index = Signal(max(1, (width - 1).bit_length()))
    m.d.comb += index.eq(Mux(any_above, index_above, index_all))
    lowest = Signal(width)
    m.d.comb += lowest.eq(Mux(any_all, (C(1, width) << index)[:width], 0))
    with m.If(take):
        # Bit i is above the one taken when the index is below i.
        m.d.sync += above.eq(Cat(*(below_constant(index, i) for i in range(width))))
    with m.If(reset):
        m.d.sync += above.eq(above.init)
    return lowest, index
