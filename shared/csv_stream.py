"""The byte stream under training-data validation: blob chunks in, the header line and then blocks of whole lines
out (each parsed by pyarrow in one go), checked on the way through.

Every chunk is checked as it passes, so a bad file is rejected with the line it goes wrong on while memory stays
at a chunk: UTF-8 (an incremental decoder, skipped for ASCII chunks; a BOM is dropped), no line longer than
`max_line_bytes` (a file with no newline at all is rejected once it has run past the limit, not read whole), and
quotes closed on the line that opens them (rows are lines). The header line is taken off
the front (`header()`); `blocks()` gives the data lines with the file line each block starts at.
"""

from __future__ import annotations

import codecs
import itertools
from collections.abc import Iterable, Iterator

from shared.errors import DataRejected

BOM = b"\xef\xbb\xbf"


class CheckedStream:
    """The lines of `chunks`, rejecting what is not UTF-8 text in lines of at most `max_line_bytes`."""

    def __init__(self, chunks: Iterable[bytes], max_line_bytes: int) -> None:
        self._chunks: Iterator[bytes] = iter(chunks)
        self._max = max_line_bytes
        self._decoder = codecs.getincrementaldecoder("utf-8")("strict")
        self._data, self._pos = b"", 0  # the chunk being read, and how far
        self._partial = 0  # bytes of the line that runs past the end of the chunks seen so far
        self._open_quote = False  # the partial line has an odd number of quotes
        self._first = True
        self.bytes = 0  # bytes read from the source (the BOM included)
        self.lines = 0  # newlines seen

    def blocks(self, size: int) -> Iterator[tuple[int, memoryview]]:
        """The rest of the file in blocks of whole lines of about `size` bytes: (file line of the block's first
        line, the block, ending with a newline; a view, valid until the next block is asked for). Memory: a chunk
        and the line that runs past its end."""
        line = self.lines - self._data.count(b"\n", self._pos) + 1
        rest, carry = self._data[self._pos:], b""
        self._data, self._pos = b"", 0
        for data in itertools.chain([rest], map(self._check, self._chunks)):
            first = data.find(b"\n")
            if first < 0:
                carry += data
                continue
            if carry:  # the line that ran past the last chunk, completed: a small block of its own
                yield line, memoryview(carry + data[:first + 1])
                line += 1
                start = first + 1
            else:
                start = 0
            view = memoryview(data)
            while True:
                cut = data.rfind(b"\n", start, start + size) if len(data) - start > size else -1
                if cut < 0:  # the rest (or a line longer than `size`): up to the chunk's last newline
                    cut = data.rfind(b"\n", start)
                    if cut < 0:
                        break
                yield line, view[start:cut + 1]
                line += data.count(b"\n", start, cut + 1)
                start = cut + 1
            carry = data[start:]
        self._finish()
        if carry:
            yield line, memoryview(carry + b"\n")

    def _fill_line(self) -> int:
        """Make the buffer hold the next whole line (reading chunks as needed); the index of its newline, or -1
        at the end of the file. Used at the start only: the buffer then spans at most a line and a chunk."""
        while True:
            end = self._data.find(b"\n", self._pos)
            if end >= 0:
                return end
            chunk = next(self._chunks, None)
            if chunk is None:
                self._finish()
                return -1
            self._data, self._pos = self._data[self._pos:] + self._check(chunk), 0

    def peek_line(self) -> bytes:
        """The next line (without its newline), left on the stream."""
        end = self._fill_line()
        return self._data[self._pos:end if end >= 0 else len(self._data)].rstrip(b"\r")

    def header(self) -> bytes:
        """The first line (without its newline), taken off the stream; b"" for an empty file."""
        line = self.peek_line()
        end = self._data.find(b"\n", self._pos)
        self._pos = end + 1 if end >= 0 else len(self._data)
        return line

    def _check(self, chunk: bytes) -> bytes:
        self.bytes += len(chunk)
        if self._first:
            self._first = False
            if chunk.startswith(BOM):
                chunk = chunk[len(BOM):]
        try:
            if not (chunk.isascii() and not self._decoder.getstate()[0]):  # ASCII needs no decoding
                self._decoder.decode(chunk)
        except UnicodeDecodeError as exc:
            raise DataRejected("NotUtf8", "the file is not UTF-8 text",
                               self.lines + chunk[:exc.start].count(b"\n") + 1) from None
        self._check_lines(chunk)
        if b'"' in chunk or self._open_quote:
            self._check_quotes(chunk)
        return chunk

    def _check_quotes(self, chunk: bytes) -> None:
        """Every line closes the quotes it opens (a line break inside a quoted value is refused: rows are lines,
        and an open quote at the end of the file is a cut-off file)."""
        parts = chunk.split(b"\n")
        for number, part in enumerate(parts[:-1], start=self.lines - chunk.count(b"\n") + 1):
            if (part.count(b'"') % 2 == 1) != self._open_quote:
                self._unclosed(number)
            self._open_quote = False
        self._open_quote = (parts[-1].count(b'"') % 2 == 1) != self._open_quote

    def _unclosed(self, line: int) -> None:
        raise DataRejected("MalformedCsv", "a quoted value is not closed on its line (line breaks inside values "
                                           "are not accepted)", line)

    def _check_lines(self, chunk: bytes) -> None:
        first = chunk.find(b"\n")
        if first < 0:
            self._partial += len(chunk)
            if self._partial > self._max:
                self._too_long(self.lines + 1)
            return
        if self._partial + first > self._max:
            self._too_long(self.lines + 1)
        last = chunk.rfind(b"\n")
        if last - first - 1 > self._max and self._gap(chunk, first, last):  # a line in between may be too long
            for number, line in enumerate(chunk[first + 1:last].split(b"\n"), start=self.lines + 2):
                if len(line) > self._max:
                    self._too_long(number)
        self.lines += chunk.count(b"\n")
        self._partial = len(chunk) - last - 1

    def _gap(self, chunk: bytes, start: int, end: int) -> bool:
        """True when some window of half the limit between `start` and `end` has no newline: only then can a
        line in between be too long (a few `find`s instead of splitting the chunk into lines)."""
        step = max(self._max // 2, 1)
        return any(chunk.find(b"\n", p, min(p + step, end)) < 0 for p in range(start + 1, end, step))

    def _too_long(self, line: int) -> None:
        raise DataRejected("LineTooLong", f"a line is longer than {self._max:,} bytes (RETRAIN_MAX_LINE_BYTES)", line)

    def _finish(self) -> None:
        if self._open_quote:
            self._unclosed(self.lines + 1)
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise DataRejected("NotUtf8", "the file ends inside a UTF-8 character", self.lines + 1) from None
