"""Bounds-checked cursor over bytes (``Reader``) and its writing twin (``Writer``).

All integers are network byte order.  A ``Reader`` may be restricted to a window
(``sub``) so that a nested structure (an LCAF body, the authentication data) cannot
read past its own length; overrunning that window raises the error class given to
``sub`` (``BadLcaf`` for an LCAF) rather than plain ``Truncated``.
"""

from __future__ import annotations

from .errors import DecodeError, TrailingBytes, Truncated


class Reader:
    """A read cursor over ``data[pos:end]``."""

    __slots__ = ("data", "pos", "end", "msg_type", "overrun", "depth")

    def __init__(
        self,
        data: bytes,
        pos: int = 0,
        end: int | None = None,
        msg_type: int | None = None,
        overrun: type[DecodeError] = Truncated,
    ) -> None:
        self.data = data
        self.pos = pos
        self.end = len(data) if end is None else end
        self.msg_type = msg_type
        self.overrun = overrun
        self.depth = 0
        """LCAF nesting depth of this window (bounded to stop hostile recursion)."""

    @property
    def remaining(self) -> int:
        return self.end - self.pos

    def at_end(self) -> bool:
        return self.pos >= self.end

    def error(self, cls: type[DecodeError], message: str, offset: int | None = None) -> DecodeError:
        """Build an error of ``cls`` located at ``offset`` (default: the cursor)."""
        return cls(message, self.pos if offset is None else offset, self.msg_type)

    def _need(self, n: int, what: str) -> None:
        if self.pos + n > self.end:
            raise self.overrun(
                f"{what}: need {n} byte(s), {max(self.end - self.pos, 0)} left", self.pos, self.msg_type
            )

    def read_u8(self, what: str = "u8") -> int:
        self._need(1, what)
        v = self.data[self.pos]
        self.pos += 1
        return v

    def read_u16(self, what: str = "u16") -> int:
        self._need(2, what)
        p = self.pos
        self.pos = p + 2
        return int.from_bytes(self.data[p : p + 2], "big")

    def read_u24(self, what: str = "u24") -> int:
        self._need(3, what)
        p = self.pos
        self.pos = p + 3
        return int.from_bytes(self.data[p : p + 3], "big")

    def read_u32(self, what: str = "u32") -> int:
        self._need(4, what)
        p = self.pos
        self.pos = p + 4
        return int.from_bytes(self.data[p : p + 4], "big")

    def read_u64(self, what: str = "u64") -> int:
        self._need(8, what)
        p = self.pos
        self.pos = p + 8
        return int.from_bytes(self.data[p : p + 8], "big")

    def read_uint(self, n: int, what: str = "uint") -> int:
        self._need(n, what)
        p = self.pos
        self.pos = p + n
        return int.from_bytes(self.data[p : p + n], "big")

    def read_bytes(self, n: int, what: str = "bytes") -> bytes:
        if n < 0:
            raise self.error(DecodeError, f"{what}: negative length {n}")
        self._need(n, what)
        p = self.pos
        self.pos = p + n
        return bytes(self.data[p : p + n])

    def peek_u8(self, what: str = "u8") -> int:
        self._need(1, what)
        return self.data[self.pos]

    def peek_u16(self, what: str = "u16") -> int:
        self._need(2, what)
        return int.from_bytes(self.data[self.pos : self.pos + 2], "big")

    def read_rest(self) -> bytes:
        p = self.pos
        self.pos = self.end
        return bytes(self.data[p : self.end])

    def sub(self, n: int, what: str = "sub-structure", overrun: type[DecodeError] | None = None) -> Reader:
        """Take the next ``n`` bytes as a window of their own and advance past them."""
        self._need(n, what)
        r = Reader(self.data, self.pos, self.pos + n, self.msg_type, overrun or self.overrun)
        r.depth = self.depth
        self.pos += n
        return r

    def expect_end(self, what: str = "message") -> None:
        if self.pos < self.end:
            raise TrailingBytes(f"{what}: {self.end - self.pos} trailing byte(s)", self.pos, self.msg_type)


class Writer:
    """An append-only byte builder with network-order integer helpers."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def __len__(self) -> int:
        return len(self.buf)

    def _check(self, v: int, bits: int, what: str) -> None:
        if not 0 <= v < (1 << bits):
            raise ValueError(f"{what}={v} does not fit in {bits} bits")

    def write_u8(self, v: int, what: str = "u8") -> None:
        self._check(v, 8, what)
        self.buf.append(v)

    def write_u16(self, v: int, what: str = "u16") -> None:
        self._check(v, 16, what)
        self.buf += v.to_bytes(2, "big")

    def write_u24(self, v: int, what: str = "u24") -> None:
        self._check(v, 24, what)
        self.buf += v.to_bytes(3, "big")

    def write_u32(self, v: int, what: str = "u32") -> None:
        self._check(v, 32, what)
        self.buf += v.to_bytes(4, "big")

    def write_u64(self, v: int, what: str = "u64") -> None:
        self._check(v, 64, what)
        self.buf += v.to_bytes(8, "big")

    def write_uint(self, v: int, n: int, what: str = "uint") -> None:
        self._check(v, 8 * n, what)
        self.buf += v.to_bytes(n, "big")

    def write_bytes(self, b: bytes) -> None:
        self.buf += b

    def reserve_u16(self) -> int:
        """Write a placeholder 16-bit field and return its position for ``patch_u16``."""
        pos = len(self.buf)
        self.buf += b"\x00\x00"
        return pos

    def patch_u16(self, pos: int, v: int, what: str = "u16") -> None:
        self._check(v, 16, what)
        self.buf[pos : pos + 2] = v.to_bytes(2, "big")

    def getvalue(self) -> bytes:
        return bytes(self.buf)
