"""The port tables users read agree with the generated module: in the README's table and in
docs/spec.md §9, every port of the AXI4-Lite and both Wishbone flavours is listed, on the
side (in or out) the generated Verilog declares it."""

import re
from pathlib import Path

import pytest
from amaranth.lib.wiring import In

from virtio_mmio.endpoint import VirtioMmioEndpoint
from virtio_mmio.flatten import flat_ports, inspected
from virtio_mmio.params import EndpointParams


ROOT = Path(__file__).resolve().parent.parent

#: Together these have every port a generated endpoint can have.
CONFIGS = [EndpointParams(queues=2), EndpointParams(bus="wishbone", queues=2),
           EndpointParams(bus="wishbone", wishbone_mode="pipelined", queues=2)]


def _directions():
    """``{port: "in" | "out"}`` over :data:`CONFIGS`, clock and reset included."""
    ports = {"clk": "in", "rst": "in"}
    for params in CONFIGS:
        for name, (_, _, member) in flat_ports(inspected(VirtioMmioEndpoint(params))).items():
            ports[name] = "in" if member.flow == In else "out"
    return ports


def _names(cell, known):
    """The port names in the backticked spans of a table cell."""
    return {word for span in re.findall(r"`([^`]*)`", cell)
            for word in re.findall(r"[a-z][a-z0-9_]*", span) if word in known}


def _table(text, heading):
    """The rows (lists of cells) of the first table after ``heading``."""
    section = text[text.index(heading):]
    rows = []
    for line in section.splitlines()[1:]:
        if line.startswith("|"):
            rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
        elif rows:
            break
    return rows[2:]          # header and rule


def _check(sides, ports):
    for side in ("in", "out"):
        wrong = {port for port in sides[side] if ports[port] != side}
        assert not wrong, f"listed as {side}: {sorted(wrong)}"
    missing = set(ports) - sides["in"] - sides["out"]
    assert not missing, f"not listed: {sorted(missing)}"


#: Each document: its port table's heading, and how a row names its side (the column of the
#: ports for "in" and for "out"; or the column of the ports and the column of their direction).
TABLES = {"README.md": ("### Ports", 4), "docs/spec.md": ("## 9. Generated Verilog", 5)}


def _sides(doc, ports):
    """``{"in": ports, "out": ports}`` as the port table of ``doc`` lists them."""
    heading, columns = TABLES[doc]
    rows = _table((ROOT / doc).read_text(), heading)
    assert rows and all(len(row) == columns for row in rows)
    sides = {"in": set(), "out": set()}
    for row in rows:
        if doc == "README.md":            # group | in | out | notes
            sides["in"] |= _names(row[1], ports)
            sides["out"] |= _names(row[2], ports)
        else:                             # group | port | dir | width | notes
            assert row[2] in sides, row
            sides[row[2]] |= _names(row[1], ports)
    return sides


@pytest.mark.parametrize("doc", list(TABLES))
def test_port_table_has_every_port_on_its_side(doc):
    ports = _directions()
    _check(_sides(doc, ports), ports)


def test_the_check_sees_a_wrong_side():
    """A port listed on the wrong side fails the check (the row the issue found wrong)."""
    ports = _directions()
    sides = _sides("README.md", ports)
    sides["in"].add("cfg_addr")
    with pytest.raises(AssertionError, match="cfg_addr"):
        _check(sides, ports)
