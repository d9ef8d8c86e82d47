"""Tooling around the gateware: the command line, Verilog generation, the register artefacts, the YoWASP tool lookup."""
