// Plain-Verilog testbench (no cocotb): the generated endpoint with `rst` held high from time 0,
// as a hand-written SoC testbench would drive it. Checks that every handshake output is a known
// value from the first clock edge on, then makes a few register accesses through the CPU bus.
// Prints "PASS" or "FAIL: <why>" and finishes.
//
// Macros: DUT (module name, default virtio_mmio_endpoint); DEVICE_ID (default 4); ADDR_WIDTH (byte-address bits of
// the register window, the JSON's addr_width); WISHBONE (Wishbone classic subordinate instead
// of AXI4-Lite). Verilog-2005: runs under Icarus -g2005 and -g2012 and Verilator --binary.
`timescale 1ns / 1ps
// The outputs this test does not look at are left unconnected on purpose.
/* verilator lint_off PINMISSING */
`ifndef DUT
`define DUT virtio_mmio_endpoint
`endif
`ifndef ADDR_WIDTH
`define ADDR_WIDTH 10
`endif
`ifndef DEVICE_ID
`define DEVICE_ID 4
`endif

module reset_from_t0_tb;
    localparam AW = `ADDR_WIDTH;
    localparam [31:0] MAGIC = 32'h74726976;

    reg clk = 1'b0;
    reg rst = 1'b1;
    always #5 clk = ~clk;

    integer cycles = 0;
    integer failures = 0;
    reg [31:0] data;

    // Device side: quiet, always ready.
    reg notify_ready = 1'b1;
    reg used_valid = 1'b0;
    reg [15:0] used_queue = 16'd0;
    reg config_changed = 1'b0;
    reg needs_reset = 1'b0;
    reg [15:0] q_sel = 16'd0;
    reg [31:0] cfg_rdata = 32'd0;
    wire irq;
    wire notify_valid;

`ifdef WISHBONE
    reg [AW-3:0] wb_adr = 0;
    reg [31:0] wb_dat_w = 32'd0;
    wire [31:0] wb_dat_r;
    reg [3:0] wb_sel = 4'd0;
    reg wb_cyc = 1'b0, wb_stb = 1'b0, wb_we = 1'b0;
    wire wb_ack, wb_err;
    wire m_wb_cyc, m_wb_stb;

    `DUT dut (
        .clk(clk), .rst(rst),
        .s_wb_adr(wb_adr), .s_wb_dat_w(wb_dat_w), .s_wb_dat_r(wb_dat_r), .s_wb_sel(wb_sel),
        .s_wb_cyc(wb_cyc), .s_wb_stb(wb_stb), .s_wb_we(wb_we), .s_wb_ack(wb_ack),
        .s_wb_err(wb_err),
        .m_wb_cyc(m_wb_cyc), .m_wb_stb(m_wb_stb), .m_wb_ack(1'b0), .m_wb_err(1'b0),
        .irq(irq), .used_valid(used_valid), .used_queue(used_queue),
        .config_changed(config_changed), .needs_reset(needs_reset),
        .notify_valid(notify_valid), .notify_ready(notify_ready),
        .q_sel(q_sel), .cfg_rdata(cfg_rdata)
    );

    wire known = ^{wb_ack, wb_err, m_wb_cyc, m_wb_stb, irq, notify_valid} !== 1'bx;

    task access(input write, input [31:0] address, input [31:0] wdata,
                output [31:0] rdata);
        integer waited;
        begin
            @(negedge clk);
            wb_adr = address[AW-1:2]; wb_dat_w = wdata; wb_sel = 4'hf; wb_we = write;
            wb_cyc = 1'b1; wb_stb = 1'b1;
            waited = 0;
            @(posedge clk);
            while (wb_ack !== 1'b1 && waited < 16) begin
                @(posedge clk);
                waited = waited + 1;
            end
            if (wb_ack !== 1'b1) begin
                $display("FAIL: no ack for the access at 0x%0h", address);
                $finish;
            end
            rdata = wb_dat_r;
            @(negedge clk);
            wb_cyc = 1'b0; wb_stb = 1'b0; wb_we = 1'b0;
        end
    endtask
`else
    reg [AW-1:0] awaddr = 0, araddr = 0;
    reg awvalid = 1'b0, wvalid = 1'b0, arvalid = 1'b0;
    reg [31:0] wdata_r = 32'd0;
    reg [3:0] wstrb = 4'd0;
    wire awready, wready, bvalid, arready, rvalid;
    wire [1:0] bresp, rresp;
    wire [31:0] rdata_w;
    wire m_awvalid, m_wvalid;

    `DUT dut (
        .clk(clk), .rst(rst),
        .s_axil_awaddr(awaddr), .s_axil_awprot(3'd0), .s_axil_awvalid(awvalid),
        .s_axil_awready(awready), .s_axil_wdata(wdata_r), .s_axil_wstrb(wstrb),
        .s_axil_wvalid(wvalid), .s_axil_wready(wready), .s_axil_bresp(bresp),
        .s_axil_bvalid(bvalid), .s_axil_bready(1'b1), .s_axil_araddr(araddr),
        .s_axil_arprot(3'd0), .s_axil_arvalid(arvalid), .s_axil_arready(arready),
        .s_axil_rdata(rdata_w), .s_axil_rresp(rresp), .s_axil_rvalid(rvalid),
        .s_axil_rready(1'b1),
        .m_axil_awvalid(m_awvalid), .m_axil_awready(1'b1), .m_axil_wvalid(m_wvalid),
        .m_axil_wready(1'b1), .m_axil_bresp(2'd0), .m_axil_bvalid(1'b0),
        .irq(irq), .used_valid(used_valid), .used_queue(used_queue),
        .config_changed(config_changed), .needs_reset(needs_reset),
        .notify_valid(notify_valid), .notify_ready(notify_ready),
        .q_sel(q_sel), .cfg_rdata(cfg_rdata)
    );

    wire known = ^{awready, wready, bvalid, arready, rvalid, m_awvalid, m_wvalid, irq,
                   notify_valid} !== 1'bx;

    // One AXI4-Lite access; AW and W presented together, the handshakes counted separately.
    task access(input write, input [31:0] address, input [31:0] wdata,
                output [31:0] rdata);
        integer waited;
        reg aw_done, w_done;
        begin
            @(negedge clk);
            waited = 0;
            if (write) begin
                awaddr = address[AW-1:0]; wdata_r = wdata; wstrb = 4'hf;
                awvalid = 1'b1; wvalid = 1'b1; aw_done = 1'b0; w_done = 1'b0;
                while (!(aw_done && w_done) && waited < 16) begin
                    @(posedge clk);
                    if (awready === 1'b1) aw_done = 1'b1;
                    if (wready === 1'b1) w_done = 1'b1;
                    @(negedge clk);
                    if (aw_done) awvalid = 1'b0;
                    if (w_done) wvalid = 1'b0;
                    waited = waited + 1;
                end
                while (bvalid !== 1'b1 && waited < 16) begin
                    @(negedge clk);
                    waited = waited + 1;
                end
                if (bvalid !== 1'b1) begin
                    $display("FAIL: no write response for 0x%0h (awready=%b wready=%b)",
                             address, awready, wready);
                    $finish;
                end
                rdata = 32'd0;
            end else begin
                araddr = address[AW-1:0]; arvalid = 1'b1;
                @(posedge clk);
                while (arready !== 1'b1 && waited < 16) begin
                    @(posedge clk);
                    waited = waited + 1;
                end
                @(negedge clk);
                arvalid = 1'b0;
                while (rvalid !== 1'b1 && waited < 16) begin
                    @(negedge clk);
                    waited = waited + 1;
                end
                if (rvalid !== 1'b1) begin
                    $display("FAIL: no read data for 0x%0h (arready=%b rvalid=%b)",
                             address, arready, rvalid);
                    $finish;
                end
                rdata = rdata_w;
            end
        end
    endtask
`endif

    // Every handshake output is 0 or 1 from the first clock edge on, reset or not.
    always @(posedge clk) begin
        cycles <= cycles + 1;
        if (!known) begin
            if (failures == 0)
                $display("an output is x or z at clock %0d (rst=%b)", cycles, rst);
            failures <= failures + 1;
        end
    end

    task expect_read(input [31:0] address, input [31:0] expected);
        begin
            access(1'b0, address, 32'd0, data);
            if (data !== expected) begin
                $display("FAIL: read 0x%0h = 0x%08h, expected 0x%08h", address, data, expected);
                $finish;
            end
        end
    endtask

    initial begin
        // Reset held from time 0 for four clocks.
        repeat (4) @(posedge clk);
        @(negedge clk);
        rst = 1'b0;
        expect_read(32'h000, MAGIC);
        expect_read(32'h008, `DEVICE_ID);
        access(1'b1, 32'h070, 32'd1, data);        // Status = ACKNOWLEDGE
        expect_read(32'h070, 32'd1);
        access(1'b1, 32'h070, 32'd3, data);        // + DRIVER
        expect_read(32'h070, 32'd3);
        access(1'b1, 32'h070, 32'd0, data);        // device reset
        expect_read(32'h070, 32'd0);
        expect_read(32'h000, MAGIC);
        repeat (2) @(posedge clk);
        if (failures == 0)
            $display("PASS: %0d clocks", cycles);
        else
            $display("FAIL: %0d clock(s) with x or z outputs", failures);
        $finish;
    end

    // Nothing may hang: give up after 2000 clocks.
    initial begin
        #20000;
        $display("FAIL: timeout");
        $finish;
    end
endmodule
