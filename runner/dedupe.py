"""Which recipients an audience already named, in a few bytes per recipient.

A dict of a million recipient strings costs well over 100 MB; this open-addressing table of
(64-bit hash, row) pairs in two arrays costs 16 bytes a slot, so a million-row plan stays flat.
Two different recipients would have to share a 64-bit hash to be confused: about one chance in
30 million for a million-row audience, and the cost is a skip with its reason, never a double
send.
"""

from __future__ import annotations

from array import array

_EMPTY = 0
_PRESIZED = 1 << 21  # slots (32 MB): enough for a million keys
_BITS = 0xFFFF_FFFF_FFFF_FFFF


class SeenIndex:
    def __init__(self, capacity: int = 1 << 12) -> None:
        capacity = 1 << max(12, (capacity - 1).bit_length())  # a power of two
        self._size = capacity
        self._mask = capacity - 1
        self._hashes = array("Q", bytes(8 * capacity))
        self._rows = array("Q", bytes(8 * capacity))
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def first_row(self, key: str, row: int) -> int | None:
        """The row that named ``key`` before, or None after remembering it at ``row``."""
        # The index lives for one run, so the interpreter's own (cached) string hash serves;
        # folded to unsigned 64 bits, and never the empty marker.
        h = (hash(key) & _BITS) or 1
        hashes, mask = self._hashes, self._mask
        i = h & mask
        while True:
            found = hashes[i]
            if found == h:
                return int(self._rows[i])
            if found == _EMPTY:
                break
            i = (i + 1) & mask
        hashes[i] = h
        self._rows[i] = row
        self._count += 1
        if self._count * 2 > self._size:
            self._grow()
        return None

    def _grow(self) -> None:
        old_hashes, old_rows = self._hashes, self._rows
        self.__init__(self._size * 2)  # type: ignore[misc]
        count = 0
        hashes, rows, mask = self._hashes, self._rows, self._mask
        for h, row in zip(old_hashes, old_rows, strict=True):
            if h == _EMPTY:
                continue
            i = h & mask
            while hashes[i] != _EMPTY:
                i = (i + 1) & mask
            hashes[i] = h
            rows[i] = row
            count += 1
        self._count = count

    @classmethod
    def for_about(cls, keys: int) -> SeenIndex:
        """Sized for about ``keys`` keys from the start: growing re-hashes every key so far
        (in Python, a few percent of a plan). Up to `_PRESIZED` slots: a guess is a guess,
        and past that the table grows as keys come."""
        return cls(min(2 * keys + 1, _PRESIZED))
