"""The board demo SoC: the endpoint behind a UART bridge with a demo device or the virtio-rng device, for amaranth-boards."""
