"""A generated Verilog module's ports, read back from its text: what the tests hold the port
lists (the flat ports, templates, IP-XACT, LiteX instances) against."""

import re


__all__ = ["module_ports"]


_DECLARATION = re.compile(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", re.M)


def module_ports(verilog, module):
    """``{port: ("input" | "output", width)}`` of ``module`` in the Verilog text ``verilog``, in
    the order of its header, from its declarations. ValueError if the header and the
    declarations name different ports."""
    start = verilog.index(f"module {module}(")
    body = verilog[start:verilog.index("endmodule", start)]
    header = [port.strip() for port in body[len(f"module {module}("):body.index(");")].split(",")]
    declared = {name: (direction, int(msb) + 1 if msb else 1)
                for direction, msb, name in _DECLARATION.findall(body)}
    if sorted(declared) != sorted(header):
        raise ValueError(f"module {module}: the header's ports are not the declared ones")
    return {name: declared[name] for name in header}
