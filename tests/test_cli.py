"""The command line (docs/spec.md §10): generate writes the Verilog and its artefacts; bad options
give one line on stderr and exit status 2."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from virtio_mmio.params import EndpointParams
from virtio_mmio.tools.cli import main
from virtio_mmio_sim.verilog import module_ports


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "virtio_mmio.tools.cli", *args],
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


@pytest.mark.parametrize("bus,extra", [("axil", []), ("wishbone", []),
                                       ("wishbone", ["--wishbone-mode", "pipelined"]),
                                       ("axil", ["--pipeline"]),
                                       ("wishbone", ["--wishbone-mode", "pipelined",
                                                     "--pipeline"])])
def test_generate_port_contract(tmp_path, bus, extra):
    out = tmp_path / "ep.v"
    result = run_cli("generate", "--bus", bus, *extra, "--queues", "4", "-o", str(out),
                     "--no-artefacts")
    assert result.returncode == 0, result.stderr
    ports = module_ports(out.read_text(), "virtio_mmio_endpoint")
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


def test_generate_pipeline_is_recorded_in_the_register_map(tmp_path):
    out = tmp_path / "ep.v"
    result = run_cli("generate", "--pipeline", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "pipelined" in result.stdout
    params = json.loads((tmp_path / "ep.json").read_text())["parameters"]
    assert params["pipeline"] is True
    assert EndpointParams.from_dict(params).pipeline


def test_generate_dma_coherent_is_an_option(tmp_path):
    from virtio_mmio.tools.artefacts import DMA_COHERENT_OPTION
    plain, coherent = tmp_path / "plain" / "ep.v", tmp_path / "coherent" / "ep.v"
    assert main(["generate", "-o", str(plain)]) == 0
    assert main(["generate", DMA_COHERENT_OPTION, "-o", str(coherent)]) == 0
    assert "dma-coherent;" not in (plain.parent / "ep-node.dtsi").read_text()
    assert "\tdma-coherent;" in (coherent.parent / "ep-node.dtsi").read_text()


@pytest.mark.parametrize("args,message", [
    (["generate", "--dma-coherent", "--no-artefacts"], "--dma-coherent shapes the device-tree"),
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
    (["linux", "--timeout", "0"], "--timeout must be a positive number of seconds, not 0"),
    (["linux", "--queues", "2"], "unrecognized arguments"),
    (["build"], "--board is required"),
    (["build", "--board", "de10"], "--board must be one of icebreaker, ulx3s-85f"),
    (["build", "--board", "ulx3s-85f", "--device", "net"], "--device: invalid choice"),
    (["host", "--simulate", "--device", "net"], "--device: invalid choice"),
    (["host"], "--port is required"),
    (["host", "--port", "/dev/ttyNOPE"], "cannot open serial port '/dev/ttyNOPE': no such"),
    (["host", "--port", "/dev/ttyNOPE", "--timeout", "0"],
     "--timeout must be a positive number of seconds"),
    # Issue 16, end to end (the in-process table below has the rest).
    (["generate", "-o", "/proc/nope/x.v"], "-o must name a file in a writable directory"),
    (["generate", "--name", "module"], "not a Verilog or SystemVerilog keyword, not 'module'"),
    (["bench", "--accesses", "0"], "--accesses must be an integer of at least 2, not 0"),
    (["build", "--list", "--board", "nosuch"], "--board must be one of icebreaker"),
    (["host", "--port", "/dev/null", "--baud", "0"], "--baud must be an integer in 1.."),
    (["explode"], "invalid choice"),
    ([], "required"),
])
def test_bad_options_one_line_exit_2(args, message, tmp_path):
    result = subprocess.run([sys.executable, "-m", "virtio_mmio.tools.cli", *args],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert "Traceback" not in result.stderr


def _tree(root):
    return sorted(str(path.relative_to(root)) for path in root.rglob("*"))


@pytest.mark.parametrize("args,message", [
    # generate -o: where the Verilog and the artefacts go
    (["generate", "-o", "/proc/nope/x.v"],
     "-o must name a file in a writable directory, not '/proc/nope/x.v': cannot write in "
     "'/proc'"),
    (["generate", "-o", "afile/x.v"], "-o must name a file in a writable directory, not "
                                      "'afile/x.v': 'afile' is not a directory"),
    (["generate", "-o", "afile/deeper/x.v"], "'afile' is not a directory"),
    (["generate", "-o", "adir.v"], "-o must name a file, not the directory 'adir.v'"),
    (["generate", "-o", "doc.v"], "-o: 'doc_html', where the html output goes, is not a "
                                  "directory"),
    (["generate", "-o", "reg.v"], "-o: 'reg.json', where the json output goes, is a "
                                  "directory"),
    (["generate", "-o", ""], "-o must name a .v file (or .sv), not ''"),
    (["generate", "-o", "new.v/"], "-o must name a .v file (or .sv), not 'new.v/'"),
    (["generate", "--name", "module"], "--name must be a Verilog identifier"),
    (["generate", "--name", "logic"], "not a Verilog or SystemVerilog keyword, not 'logic'"),
    (["generate", "--name", "ep\n"], "--name must be a Verilog identifier"),
    # bench
    (["bench", "--accesses", "0"], "--accesses must be an integer of at least 2, not 0"),
    (["bench", "--accesses", "-5"], "--accesses must be an integer of at least 2, not -5"),
    (["bench", "--accesses", "1"], "--accesses must be an integer of at least 2, not 1"),
    (["bench", "--seeds", "3"], "--seeds needs --scaling"),
    (["bench", "--out-dir", "elsewhere"], "--out-dir needs --scaling"),
    (["bench", "--scaling", "--accesses", "8"], "--accesses does not go with --scaling"),
    (["bench", "--scaling", "--seeds", "0"], "--seeds must be an integer in 1..20, not 0"),
    (["bench", "--scaling", "--seeds", "21"], "--seeds must be an integer in 1..20, not 21"),
    (["bench", "--scaling", "--sizes", "1,0"], "--sizes must be an integer in 1..2047, not 0"),
    (["bench", "--scaling", "--devices", "ice40,gowin"],
     "--devices must be among ice40, ecp5, not 'gowin'"),
    (["bench", "--scaling", "--out-dir", "afile"],
     "--out-dir must name a writable directory, not 'afile': 'afile' is not a directory"),
    (["bench", "--scaling", "--out-dir", ""], "--out-dir must name a directory, not ''"),
    (["bench", "--scaling", "--configs", "default,fast"],
     "--configs must be among default, pipelined, not 'fast'"),
    (["bench", "--configs", "default"], "--configs needs --scaling"),
    (["bench", "--scaling", "--pipeline"], "--pipeline does not go with --scaling"),
    (["generate", "--pipeline", "yes"], "unrecognized arguments"),
    (["bench", "--wishbone-mode", "classic"], "--wishbone-mode needs --bus wishbone"),
    (["bench", "--bus", "pci"], "--bus: invalid choice"),
    # build
    (["build", "--list", "--board", "nosuch"],
     "--board must be one of icebreaker, ulx3s-85f, orangecrab-r0.2-25f, not 'nosuch'"),
    (["build", "--list", "--program"], "--program does not go with --list"),
    (["build", "--list", "--build-dir", "elsewhere"], "--build-dir does not go with --list"),
    (["build", "--board", "icebreaker", "--device", "rng"],
     "--device: the rng demo does not fit the icebreaker"),
    (["build", "--board", "icebreaker", "--build-dir", "afile"],
     "--build-dir must name a writable directory, not 'afile'"),
    (["build", "--board", "icebreaker", "--build-dir", "afile/sub"], "'afile' is not a "
                                                                      "directory"),
    (["build", "--board", "icebreaker", "--build-dir", "/proc/nope"], "cannot write in '/proc'"),
    (["build", "--board", "icebreaker", "--build-dir", ""],
     "--build-dir must name a directory, not ''"),
    # host
    (["host", "--port", "/dev/null", "--baud", "0"],
     "--baud must be an integer in 1..2147483647, not 0"),
    (["host", "--port", "/dev/null", "--baud", "-5"], "--baud must be an integer in 1.."),
    (["host", "--port", "/dev/null", "--baud", "99999999999999999999"],
     "--baud must be an integer in 1.."),
    (["host", "--port", "/dev/null", "--timeout", "nan"],
     "--timeout must be a positive number of seconds, not nan"),
    (["host", "--port", "/dev/null", "--timeout", "-1"],
     "--timeout must be a positive number of seconds, not -1"),
    (["host", "--simulate", "--port", "/dev/ttyUSB0"], "--port does not go with --simulate"),
    (["host", "--simulate", "--baud", "9600"], "--baud does not go with --simulate"),
    (["host", "--simulate", "--timeout", "2"], "--timeout does not go with --simulate"),
    # linux (never with good options: that boots QEMU)
    (["linux", "--timeout", "-1"], "--timeout must be a positive number of seconds, not -1"),
    (["linux", "--timeout", "inf"], "--timeout must be a positive number of seconds, not inf"),
    (["linux", "--timeout", "nan"], "--timeout must be a positive number of seconds, not nan"),
    (["linux", "--work-dir", "afile"],
     "--work-dir must name a writable directory, not 'afile': 'afile' is not a directory"),
    (["linux", "--work-dir", "/proc/nope"], "cannot write in '/proc'"),
    (["linux", "--work-dir", ""], "--work-dir must name a directory, not ''"),
    # the command itself
    (["--frobnicate", "generate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_input_one_line_exit_2_nothing_written(args, message, tmp_path, monkeypatch,
                                                   capsys):
    """Issue 16: every bad input gives one line on stderr naming the option, exit status 2,
    and leaves nothing behind, however far the command got before noticing."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("")
    (tmp_path / "adir.v").mkdir()
    (tmp_path / "doc_html").write_text("")
    (tmp_path / "reg.json").mkdir()
    before = _tree(tmp_path)
    assert main(args) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("virtio-mmio")
    assert message in lines[0]
    assert "Traceback" not in captured.err
    assert _tree(tmp_path) == before


def test_version():
    from importlib.metadata import version
    result = run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"virtio-mmio {version('virtio-mmio-endpoint')}"


def test_generate_replaces_its_outputs_and_leaves_no_staging(tmp_path):
    out = tmp_path / "new" / "ep.v"
    assert main(["generate", "-o", str(out)]) == 0
    (tmp_path / "new" / "ep_html" / "stale.html").write_text("from an older run")
    assert main(["generate", "--queues", "3", "-o", str(out)]) == 0
    assert not (tmp_path / "new" / "ep_html" / "stale.html").exists()
    assert (tmp_path / "new" / "ep_html" / "index.html").exists()
    assert '"queues": 3' in (tmp_path / "new" / "ep.json").read_text()
    assert not [path for path in tmp_path.rglob(".virtio-mmio-*")]


def test_generate_failing_exporter_leaves_nothing_behind(tmp_path, monkeypatch, capsys):
    """An artefact that cannot be produced after the Verilog and some artefacts were: one
    line, exit status 1 (not a bad option), and not one file of the run in place."""
    from virtio_mmio.tools import artefacts

    def half_then_fail(params, verilog_path, **options):
        Path(verilog_path).with_suffix(".json").write_text("{}")
        raise artefacts.ArtefactError("HTML export to ep_html/ failed: disk on fire")
    monkeypatch.setattr(artefacts, "write_artefacts", half_then_fail)
    assert main(["generate", "-o", str(tmp_path / "sub" / "ep.v")]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and "HTML export to ep_html/ failed" in lines[0], lines
    assert _tree(tmp_path) == []


@pytest.mark.parametrize("bus,present,absent", [
    ("axil", ["AXI4-Lite clocks per read", "notify:", "MSI:"], ["Wishbone"]),
    ("wishbone", ["Wishbone pipelined", "Wishbone classic"], ["AXI4-Lite", "MSI:"]),
])
def test_bench_measures_the_bus_asked_for(bus, present, absent, capsys):
    assert main(["bench", "--bus", bus, "--accesses", "4"]) == 0
    table = capsys.readouterr().out
    for figure in present:
        assert figure in table
    for figure in absent:
        assert figure not in table


def test_bench_measures_the_wishbone_mode_asked_for(capsys):
    assert main(["bench", "--bus", "wishbone", "--wishbone-mode", "pipelined",
                 "--accesses", "4"]) == 0
    table = capsys.readouterr().out
    assert "Wishbone pipelined" in table and "Wishbone classic" not in table


def test_build_lists_the_boards():
    result = subprocess.run([sys.executable, "-m", "virtio_mmio.tools.cli", "build", "--list"],
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
        result = subprocess.run([sys.executable, "-m", "virtio_mmio.tools.cli", "host", "--port",
                                 os.ttyname(terminal), "--timeout", "0.2"],
                                capture_output=True, text=True, timeout=120)
    finally:
        os.close(controller)
        os.close(terminal)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "NoAnswer" in lines[0] and "demo bitstream" in lines[0], \
        result.stderr
