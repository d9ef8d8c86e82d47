"""Flat port names for Verilog: a component's nested interfaces as the top-level ports of the
Verilog port contract (docs/spec.md §9).

In Amaranth the endpoint is a component with interfaces (``bus``, ``msi``, ``device``); a
Verilog user sees one flat list of ports (``s_axil_awaddr``, ``notify_valid``, ``q_sel``).
:class:`FlatPorts` turns one into the other, and only Verilog generation (and what must match
the Verilog: the JSON port list, the instantiation template, the scaling harness) uses it;
simulations and proofs drive the interfaces.

Naming: a member's path is joined with ``_`` after replacing its longest prefix found in the
component's ``port_prefixes`` (a dict ``{path tuple: prefix}``; an empty prefix drops the
path's head). A port of a struct shape (a stream's payload) becomes one port per field, after
the stream's ``valid`` and ``ready`` — the order of the port table of docs/spec.md §9.
"""

from amaranth.hdl import Module
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In


__all__ = ["FlatPorts", "flat_ports", "port_signal", "inspected"]


def inspected(component):
    """``component``, marked as built only to be looked at (its ports), so Amaranth does not
    warn that it was never elaborated."""
    component._MustUse__silence = True
    return component


def _name(path, prefixes):
    for length in range(len(path), 0, -1):
        if path[:length] in prefixes:
            head = prefixes[path[:length]]
            return "_".join(part for part in (head, *path[length:]) if part)
    return "_".join(path)


def _leaves(signature, path=()):
    """``(path, flow, shape, field)`` of every port below ``signature``, where ``field`` is the
    struct field's name (its path is the port's path plus the field) or ``None``."""
    members = signature.members
    names = list(members)
    if {"valid", "ready", "payload"} <= set(names):       # a stream: handshake first
        names = ["valid", "ready", *(name for name in names if name not in ("valid", "ready"))]
    for name in names:
        member = members[name]
        if member.is_signature:
            # (An In(...) member's signature is already flipped.)
            yield from _leaves(member.signature, (*path, name))
            continue
        layout = member.shape if isinstance(member.shape, data.StructLayout) else None
        if layout is None:
            yield (*path, name), member.flow, member.shape, None
        else:
            for field_name, field in layout:
                yield (*path, name), member.flow, field.shape, field_name


def flat_ports(component):
    """``{flat name: (path, field, member)}`` of ``component``'s ports in port-table order,
    named by its ``port_prefixes`` (see the module documentation)."""
    prefixes = getattr(component, "port_prefixes", {})
    ports = {}
    for path, flow, shape, field in _leaves(component.signature):
        name = _name(path if field is None else (*path, field), prefixes)
        if name in ports:
            raise NameError(f"Two ports of {type(component).__name__} flatten to {name!r}")
        ports[name] = (path, field, flow(shape))
    return ports


def port_signal(component, path, field=None):
    """The value of ``component`` a flat port stands for: the member at ``path`` (a
    :func:`flat_ports` path) and, for a stream payload's field, its ``field``."""
    value = component
    for part in path:
        value = getattr(value, part)
    return value if field is None else getattr(value, field)


class FlatPorts(wiring.Component):
    """``component`` with flat ports (see the module documentation), as the top of generated
    Verilog. The component is a submodule named ``inner``; ``inner`` is also an attribute."""

    def __init__(self, component):
        self.inner = component
        self._ports = flat_ports(component)
        super().__init__({name: member for name, (_, _, member) in self._ports.items()})

    @property
    def params(self):
        return self.inner.params

    def elaborate(self, platform):
        m = Module()
        m.submodules.inner = self.inner
        for name, (path, field, member) in self._ports.items():
            inner = port_signal(self.inner, path, field)
            outer = getattr(self, name)
            if member.flow == In:
                m.d.comb += inner.eq(outer)
            else:
                m.d.comb += outer.eq(inner)
        return m

