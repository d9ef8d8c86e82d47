"""The transport's write classifier: the tags of every block, packed by name."""

from amaranth.lib import data

from ..bus import WriteClassifier, pack_tags


__all__ = ["TransportClassifier"]


class TransportClassifier(WriteClassifier):
    """The decode of a write for the blocks of a profile, split into what the address says
    (:attr:`address_layout`) and what the data and lanes say (:attr:`data_layout`).

    A bus subordinate applies it where it first has the address and the data — the AXI4-Lite
    subordinate as the AW and W entries are buffered, so the decision to take a buffered write
    starts from flip-flops — and passes the tags beside the write on
    :class:`~virtio_mmio.bus.RegisterBus`.

    Address tags: each block's own (:meth:`~.block.Block.address_tags`, in block order), then
    one bit per writable register word, named by its first writable register (``MsiStatus``
    covers MsiCmd too), except the rows a block decodes itself (QueueNotify). Data tags:
    ``full`` (all four lanes), then each block's :meth:`~.block.Block.data_tags`. The tags are
    one-hot over the register words, so each register's write is its own condition.
    """

    def __init__(self, params, regmap, blocks):
        self._address = {}
        self._data = {}
        own = set()
        for block in blocks:
            own.update(block.decodes_own_writes)
            self._add(self._address, block.address_tags(params, regmap), block)
            self._add(self._data, block.data_tags(params), block)
        words = {}
        for register in regmap:
            if register.writable and register.name not in own:
                words.setdefault(register.word, register.name)
        self._register_words = {name: word for word, name in sorted(words.items())}
        self.address_layout = data.StructLayout({
            **{name: 1 for name in self._address},
            **{name: 1 for name in self._register_words}})
        self.data_layout = data.StructLayout({"full": 1, **{name: 1 for name in self._data}})

    @staticmethod
    def _add(tags, new, block):
        for name, function in new.items():
            if name in tags or name == "full":
                raise ValueError(f"Tag {name!r} of block {block.name!r} is declared twice")
            tags[name] = function

    def address(self, word):
        """The tags (:attr:`address_layout`) of a word address, as a value."""
        return pack_tags(self.address_layout,
                         **{name: function(word) for name, function in self._address.items()},
                         **{name: word == at for name, at in self._register_words.items()})

    def data(self, value, strb):
        """The tags (:attr:`data_layout`) of a data word and its byte lanes, as a value."""
        return pack_tags(self.data_layout, full=strb == 0xF,
                         **{name: function(value, strb)
                            for name, function in self._data.items()})
