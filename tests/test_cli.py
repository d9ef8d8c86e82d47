"""The command line (SPEC §10): generate writes the Verilog and its artefacts; bad options
give one line on stderr and exit status 2."""

import re
import subprocess
import sys

import pytest

from virtio_mmio.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "virtio_mmio.cli", *args],
                          capture_output=True, text=True, timeout=300)


SPEC_PORTS = {
    "axil": ["s_axil_awaddr", "s_axil_awprot", "s_axil_awvalid", "s_axil_awready",
             "s_axil_wdata", "s_axil_wstrb", "s_axil_wvalid", "s_axil_wready", "s_axil_bresp",
             "s_axil_bvalid", "s_axil_bready", "s_axil_araddr", "s_axil_arprot",
             "s_axil_arvalid", "s_axil_arready", "s_axil_rdata", "s_axil_rresp",
             "s_axil_rvalid", "s_axil_rready", "m_axil_awaddr", "m_axil_awprot",
             "m_axil_awvalid", "m_axil_awready", "m_axil_wdata", "m_axil_wstrb",
             "m_axil_wvalid", "m_axil_wready", "m_axil_bresp", "m_axil_bvalid",
             "m_axil_bready"],
    "wishbone": ["s_wb_adr", "s_wb_dat_w", "s_wb_dat_r", "s_wb_sel", "s_wb_cyc", "s_wb_stb",
                 "s_wb_we", "s_wb_ack", "s_wb_err", "m_wb_adr", "m_wb_dat_w", "m_wb_sel",
                 "m_wb_cyc", "m_wb_stb", "m_wb_we", "m_wb_ack", "m_wb_err"],
    "common": ["clk", "rst", "irq", "msi_error", "used_valid", "used_queue", "config_changed",
               "needs_reset", "notify_valid", "notify_ready", "notify_queue", "notify_data",
               "status", "driver_ok", "device_reset", "features", "q_sel", "q_ready", "q_num",
               "q_desc", "q_driver", "q_device", "cfg_addr", "cfg_re", "cfg_rdata", "cfg_we",
               "cfg_wdata", "cfg_be"],
}
WIDTHS = {"m_axil_awaddr": 64, "notify_queue": 16, "notify_data": 32, "status": 8,
          "features": 64, "q_num": 16, "q_desc": 64, "q_driver": 64, "q_device": 64,
          "cfg_rdata": 32, "cfg_wdata": 32, "cfg_be": 4, "m_wb_adr": 62}


def ports_of(verilog, module):
    body = verilog[verilog.index(f"module {module}("):]
    body = body[:body.index("endmodule")]
    ports = {}
    for match in re.finditer(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\w+);", body, re.M):
        ports[match[3]] = (match[1], int(match[2]) + 1 if match[2] else 1)
    return ports


@pytest.mark.parametrize("bus,extra", [("axil", []), ("wishbone", []),
                                       ("wishbone", ["--wishbone-mode", "pipelined"])])
def test_generate_port_contract(tmp_path, bus, extra):
    out = tmp_path / "ep.v"
    result = run_cli("generate", "--bus", bus, *extra, "--queues", "4", "-o", str(out),
                     "--no-artefacts")
    assert result.returncode == 0, result.stderr
    ports = ports_of(out.read_text(), "virtio_mmio_endpoint")
    for name in SPEC_PORTS[bus] + SPEC_PORTS["common"]:
        assert name in ports, name
    for name, width in WIDTHS.items():
        if name in ports:
            assert ports[name][1] == width, name
    assert ("s_wb_stall" in ports) == ("pipelined" in extra)
    assert ("m_wb_stall" in ports) == ("pipelined" in extra)
    assert not [p for p in ports if "__" in p]


def test_generate_writes_artefacts_and_module_name(tmp_path):
    out = tmp_path / "sub" / "my_ep.v"
    assert main(["generate", "--queues", "2", "--name", "my_ep", "-o", str(out)]) == 0
    assert "module my_ep(" in out.read_text()
    for suffix in (".json", ".dtsi", ".rdl", ".h", ".md", ".xml"):
        assert (tmp_path / "sub" / f"my_ep{suffix}").exists(), suffix


@pytest.mark.parametrize("args,message", [
    (["generate", "--queues", "0"], "--queues must be an integer in 1..2047, not 0"),
    (["generate", "--queues", "four"], "--queues: expected an integer"),
    (["generate", "--bus", "apb"], "--bus: invalid choice"),
    (["generate", "--profile", "v9"], "--profile: invalid choice"),
    (["generate", "--device-id", "0"], "--device-id must be a non-zero"),
    (["generate", "--features", "1"], "--features must include VIRTIO_F_VERSION_1"),
    (["generate", "--notify-multiplier", "3"], "--notify-multiplier must be 0 or a multiple"),
    (["generate", "--profile", "plain-v2", "--notify-base", "0x400"],
     "--notify-base/--notify-multiplier need a profile with doorbells"),
    (["generate", "--shm", "1:2"], "--shm: expected ID:BASE:LEN"),
    (["generate", "--msi-window", "0x1000"], "--msi-window: expected BASE:SIZE"),
    (["generate", "--wishbone-mode", "pipelined"], "--wishbone-mode needs --bus wishbone"),
    (["generate", "--name", "9x"], "--name must be a Verilog identifier"),
    (["generate", "-o", "out.txt"], "-o must name a .v file"),
    (["generate", "--frobnicate"], "unrecognized arguments"),
    (["bench", "--queues", "3000"], "--queues must be an integer in 1..2047"),
    (["linux", "--bus", "pci"], "--bus: invalid choice"),
    (["linux", "--sim", "vcs"], "--sim: invalid choice"),
    (["linux", "--device", "fpga"], "--device: invalid choice"),
    (["linux", "--timeout", "0"], "--timeout must be positive"),
    (["linux", "--queues", "2"], "unrecognized arguments"),
    (["build"], "--board is required"),
    (["build", "--board", "de10"], "--board must be one of icebreaker, ulx3s-85f"),
    (["build", "--board", "ulx3s-85f", "--device", "net"], "--device: invalid choice"),
    (["host", "--simulate", "--device", "net"], "--device: invalid choice"),
    (["host"], "--port is required"),
    (["host", "--port", "/dev/ttyNOPE"], "cannot open serial port '/dev/ttyNOPE': no such"),
    (["host", "--port", "/dev/ttyNOPE", "--timeout", "0"], "--timeout must be positive"),
    (["explode"], "invalid choice"),
    ([], "required"),
])
def test_bad_options_one_line_exit_2(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "virtio_mmio.cli", *args],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def test_build_lists_the_boards():
    result = subprocess.run([sys.executable, "-m", "virtio_mmio.cli", "build", "--list"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    assert [line.split()[0] for line in result.stdout.splitlines()] == \
        ["icebreaker", "ulx3s-85f", "orangecrab-r0.2-25f"]


def test_bench_prints_the_table():
    result = run_cli("bench", "--accesses", "16")
    assert result.returncode == 0, result.stderr
    for figure in ("clocks per read", "clocks per write", "read latency",
                   "Wishbone pipelined clocks per access", "Wishbone classic clocks from stb"):
        assert figure in result.stdout


def test_host_reports_a_board_that_does_not_answer():
    """A serial port with nothing behind it (a pseudo-terminal nobody answers on): one line,
    naming what went wrong, exit status 1."""
    import os
    controller, terminal = os.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "virtio_mmio.cli", "host", "--port",
                                 os.ttyname(terminal), "--timeout", "0.2"],
                                capture_output=True, text=True, timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NoAnswer" in lines[0] and "demo bitstream" in lines[0], \
        result.stderr
