"""Read survey files: the official WVS-7 release as users download it, or any survey table.

``_open_source`` opens a CSV (comma, semicolon or tab), SPSS ``.sav``, Stata ``.dta``, or a
``.zip`` holding one of them, or a Parquet or JSON table (``.parquet``, ``.json`` array of
records, ``.jsonl`` one record a line: e.g. narrative personas with their attributes), and reads
chunks of rows of only the columns asked for, so
97,220 x 611 never sits in memory at once. Damaged files (corrupt, truncated) become one-line
``WVS7ImportError``s naming the file. ``raysim.survey.importer`` turns what is read into a
population.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pandas as pd
import pyreadstat

FORMATS = (".csv", ".sav", ".dta")
TABLE_FORMATS = (".parquet", ".json", ".jsonl")
_MAX_NAMED = 10
_DTA_OPEN, _DTA_CLOSE = b"<stata_dta>", b"</stata_dta>"
_READ_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, zipfile.BadZipFile, ValueError,
                zlib.error, EOFError, OSError, pyreadstat.ReadstatError,
                pyreadstat.PyreadstatError)


class WVS7ImportError(ValueError):
    """A file that cannot be imported (WVS-7 or another survey); the message is one line naming the file."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    return shown + (f" and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else "")


# ---- sources ---------------------------------------------------------------------------

@dataclass
class _Source:
    """One data file: its columns, and chunked reading of some of them."""

    where: str
    format: str
    columns: list[str]
    chunks: Callable[[list[str], int], Iterator[pd.DataFrame]]
    value_labels: dict[str, dict[float, str]] = field(default_factory=dict)
    encoding: str | None = None
    """The text encoding the file is read with (a CSV's is sniffed: ``utf-8`` or ``cp1252``)."""


class _Tail(io.RawIOBase):
    """A pass-through reader that keeps the last bytes it read, so the final CSV row can be
    checked for truncation without a second pass over a (possibly zipped) file."""

    def __init__(self, raw: IO[bytes], keep: int = 1 << 16):
        self.raw, self.keep, self.tail = raw, keep, b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        data = self.raw.read(len(b))
        b[:len(data)] = data
        if data:
            self.tail = (self.tail + data)[-self.keep:]
        return len(data)


_BLANK = ' \t\r\n"'
"""With the separator: what a line holding no data is made of."""
_SAMPLE_BYTES = 1 << 20
"""How much of a CSV is read up front for its header, separator, encoding and decimal mark."""
_SAMPLE_ROWS = 200
_COMMA_DECIMAL = re.compile(r"[-+]?\d*,\d+")
_POINT_DECIMAL = re.compile(r"[-+]?\d*\.\d+")


class _NonBlankLines(io.RawIOBase):
    """A reader that drops lines holding nothing but separators, quotes and whitespace: the
    rows a spreadsheet leaves at the end of a sheet (``,,,,``). pandas skips only truly empty
    lines and would read these as respondents with every column empty. (A blank line inside a
    quoted multi-line text field is dropped too: only text changes.)"""

    def __init__(self, raw: IO[bytes], sep: str, block: int = 1 << 16):
        self.raw, self.block = raw, block
        self.blank = (_BLANK + sep).encode()
        # A line end and the blank line after it, found by one regex pass over whole lines (a
        # Python call per line would slow reading by half; so would a (?m)^ anchor).
        self.blank_lines = re.compile(rb"\n[" + re.escape(self.blank.replace(b"\n", b"")) + rb"]*(?=\n)")
        self.pending, self.pos, self.carry, self.eof = b"", 0, b"", False

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while len(self.pending) - self.pos < len(b) and not self.eof:
            block = self.raw.read(max(len(b), self.block))
            if block:
                data = self.carry + block
                cut = data.rfind(b"\n") + 1  # whole lines only: a partial last one waits
                data, self.carry = data[:cut], data[cut:]
            else:  # end of file: a last line without a line end, unless it is blank
                self.eof = True
                data, self.carry = (self.carry if self.carry.strip(self.blank) else b""), b""
            kept = self.blank_lines.sub(b"", b"\n" + data)[1:]  # "\n": the first line is one too
            self.pending, self.pos = self.pending[self.pos:] + kept, 0
        n = min(len(b), len(self.pending) - self.pos)
        b[:n] = memoryview(self.pending)[self.pos:self.pos + n]
        self.pos += n
        return n


def _fields(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep), [])


def _is_blank(line: str, sep: str) -> bool:
    return not line.strip(_BLANK + sep)


def _sample(opener: Callable[[], IO[bytes]]) -> bytes:
    """The first whole lines of the file (up to ``_SAMPLE_BYTES``)."""
    with opener() as f:
        sample = f.read(_SAMPLE_BYTES)
    if len(sample) == _SAMPLE_BYTES and b"\n" in sample:
        sample = sample[:sample.rindex(b"\n") + 1]
    return sample


def _text_encoding(sample: bytes) -> str:
    """UTF-8 (a BOM skipped), unless the sample is not UTF-8: then Windows-1252, what Excel and
    SPSS on Western-European Windows write (a superset of Latin-1's letters). Bytes it does not
    define are replaced, so a file never fails on decoding; answers are ASCII digits either way."""
    try:
        sample.decode("utf-8")
    except UnicodeDecodeError as e:
        if e.reason != "unexpected end of data":  # not just a character cut by the sample's end
            return "cp1252"
    return "utf-8-sig"


def _decimal_mark(rows: list[list[str]], sep: str) -> str:
    """``,`` for a file that writes decimals with a comma (European exports, ``;``-separated):
    one decimal comma in the sample, or no decimals seen in a ``;`` file. A decimal point in a
    decimal-comma file still reads (as text that the conversion parses); a decimal comma in a
    decimal-point file would not, hence the lean towards the comma."""
    if sep == ",":
        return "."
    fields = [f.strip() for row in rows for f in row]
    if any(_COMMA_DECIMAL.fullmatch(f) for f in fields):
        return ","
    return "," if sep == ";" and not any(_POINT_DECIMAL.fullmatch(f) for f in fields) else "."


def _csv_source(opener: Callable[[], IO[bytes]], where: str, fmt: str) -> _Source:
    sample = _sample(opener)
    encoding = _text_encoding(sample)
    lines = [line.rstrip("\r") for line in sample.decode(encoding, errors="replace").split("\n")]
    first = next((line for line in lines if not _is_blank(line, ",;")), "")
    sep = max((",", ";", "\t"), key=lambda s: len(_fields(first, s)))
    # The lines pandas will see (``_NonBlankLines``): the header, then data rows.
    lines = [line for line in lines if not _is_blank(line, sep)] or [""]
    header = [h.strip() for h in _fields(lines[0], sep)]
    sample_rows = [_fields(line, sep) for line in lines[1:_SAMPLE_ROWS + 1]]
    # Rows one field longer than the header: a trailing separator (Excel, some exports) leaves
    # that field empty; R's write.table (row.names=TRUE) puts unnamed row names first instead.
    offset = int(any(len(r) == len(header) + 1 and r[-1].strip() for r in sample_rows))
    # A last row with fewer fields was cut short; trailing empty names in the header (,,,)
    # need no fields in the rows.
    named = len(header)
    while named and not header[named - 1]:
        named -= 1
    width = named + offset
    decimal = _decimal_mark(sample_rows, sep)

    def chunks(usecols: list[str], rows: int) -> Iterator[pd.DataFrame]:
        # Columns are picked by position in the header as read here, so a blank, padded or
        # repeated name means the same to the caller and to pandas (which would rename it).
        position: dict[str, int] = {}
        for i, name in enumerate(header):
            position.setdefault(name, i)
        picked = sorted({position[c] for c in usecols if c in position})
        with opener() as raw:
            tail = _Tail(_NonBlankLines(raw, sep))
            reader = pd.read_csv(io.BufferedReader(tail), sep=sep, header=None, skiprows=1,
                                 index_col=False, usecols=[i + offset for i in picked],
                                 chunksize=rows, decimal=decimal, encoding=encoding,
                                 encoding_errors="replace")
            for chunk in reader:
                chunk.columns = [header[i] for i in picked]
                yield chunk
        last = tail.tail.rstrip(b"\r\n").rsplit(b"\n", 1)
        if len(last) == 2:  # a data row follows the header
            got = len(_fields(last[1].decode(encoding, errors="replace").rstrip("\r"), sep))
            if got < width:
                raise WVS7ImportError(f"{where}: truncated file: the last row has {got} of "
                                      f"{width} fields")

    return _Source(where, fmt, header, chunks, encoding=encoding.removesuffix("-sig"))


def _check_dta_end(path: Path, where: str) -> None:
    """Stata 13+ files are framed by <stata_dta> tags; the value labels come last, so a file
    cut short there still reads, minus its labels, unless the closing tag is checked."""
    with open(path, "rb") as f:
        opened = f.read(len(_DTA_OPEN)) == _DTA_OPEN
        f.seek(max(0, path.stat().st_size - len(_DTA_CLOSE)))
        if opened and f.read() != _DTA_CLOSE:
            raise WVS7ImportError(f"{where}: truncated file: the Stata file does not end with "
                                  f"{_DTA_CLOSE.decode()}")


_STAT_FALLBACK_ENCODINGS = ("WINDOWS-1252", "LATIN1")


def _stat_metadata(read: Callable, path: Path):
    """The file's metadata and the encoding to read its text with: the one the file declares
    (None), unless its text is not in it (tools other than SPSS write files that declare UTF-8
    over Windows-1252 labels, which ReadStat refuses): then Windows-1252, then Latin-1, which
    decodes any byte."""
    for encoding in (None, *_STAT_FALLBACK_ENCODINGS):
        try:
            return read(str(path), metadataonly=True, encoding=encoding)[1], encoding
        except pyreadstat.ReadstatError as e:
            if "convert string" not in str(e) or encoding == _STAT_FALLBACK_ENCODINGS[-1]:
                raise
    raise AssertionError("unreachable")


def _stat_source(path: Path, where: str, fmt: str) -> _Source:
    read = pyreadstat.read_sav if fmt.endswith("sav") else pyreadstat.read_dta
    if read is pyreadstat.read_dta:
        _check_dta_end(path, where)
    meta, encoding = _stat_metadata(read, path)

    def chunks(usecols: list[str], rows: int) -> Iterator[pd.DataFrame]:
        # pyreadstat.read_file_in_chunks would not do: it reads the metadata again without
        # the encoding, which fails on the files the fallback is for.
        n, expected = 0, meta.number_rows
        while expected is None or expected < 0 or n < expected:
            chunk, _ = read(str(path), row_offset=n, row_limit=rows, usecols=usecols,
                            encoding=encoding)
            if not len(chunk):
                break
            n += len(chunk)
            yield chunk
        if expected is not None and expected >= 0 and n != expected:
            raise WVS7ImportError(f"{where}: truncated file: {n} of {expected} rows could be read")

    return _Source(where, fmt, list(meta.column_names), chunks, dict(meta.variable_value_labels),
                   encoding=encoding or meta.file_encoding)


def _zip_member(zf: zipfile.ZipFile, where: str) -> zipfile.ZipInfo:
    members = [m for m in zf.infolist()
               if not m.is_dir() and Path(m.filename).suffix.lower() in FORMATS
               # macOS zips add resource-fork twins (__MACOSX/..., ._name) of every file
               and not m.filename.startswith("__MACOSX/") and not Path(m.filename).name.startswith("._")]
    if len(members) != 1:
        found = ", ".join(m.filename for m in members) or "none"
        raise WVS7ImportError(f"{where}: a WVS-7 zip must hold exactly one .csv, .sav or .dta "
                              f"file; found {len(members)} ({found})")
    return members[0]


def _table_source(path: Path, where: str, fmt: str) -> _Source:
    """Parquet in record batches; JSON read whole (a persona file, not a 97,220-row release)."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        names = pq.read_schema(path).names

        def chunks(usecols: list[str], rows: int) -> Iterator[pd.DataFrame]:
            for batch in pq.ParquetFile(path).iter_batches(batch_size=rows, columns=usecols):
                yield batch.to_pandas()
        return _Source(where, fmt, names, chunks)
    frame = pd.read_json(path, lines=fmt == "jsonl", orient="records", dtype=False)
    if not isinstance(frame, pd.DataFrame) or frame.empty and not len(frame.columns):
        raise WVS7ImportError(f"{where}: expected a list of records (objects with the same keys)")

    def chunks(usecols: list[str], rows: int) -> Iterator[pd.DataFrame]:
        for start in range(0, len(frame), rows):
            yield frame.iloc[start:start + rows][usecols].reset_index(drop=True)
    return _Source(where, fmt, [str(c) for c in frame.columns], chunks, encoding="utf-8")


@contextmanager
def _open_source(path: Path) -> Iterator[_Source]:
    where = str(path)
    if not path.is_file():
        raise WVS7ImportError(f"{where}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".zip":
        with zipfile.ZipFile(path) as zf:
            member = _zip_member(zf, where)
            inner = f"{where}!{member.filename}"
            kind = Path(member.filename).suffix.lower()
            if kind == ".csv":
                yield _csv_source(lambda: zf.open(member), inner, "zip:csv")
            else:  # pyreadstat reads from a path: unpack the one member
                with tempfile.TemporaryDirectory(prefix="raysim-wvs7-") as tmp:
                    target = Path(tmp) / f"data{kind}"
                    with zf.open(member) as src, open(target, "wb") as dst:
                        shutil.copyfileobj(src, dst)
                    yield _stat_source(target, inner, "zip:" + kind[1:])
    elif suffix == ".csv":
        yield _csv_source(lambda: open(path, "rb"), where, "csv")
    elif suffix in (".sav", ".dta"):
        yield _stat_source(path, where, suffix[1:])
    elif suffix in TABLE_FORMATS:
        yield _table_source(path, where, suffix[1:])
    else:
        raise WVS7ImportError(f"{where}: not a survey file format; expected .csv, .sav, .dta, .zip, "
                              ".parquet, .json or .jsonl")


@contextmanager
def _read_errors(where: str) -> Iterator[None]:
    """Library errors from a damaged file become one-line WVS7ImportErrors."""
    try:
        yield
    except WVS7ImportError:
        raise
    except _READ_ERRORS as e:
        raise WVS7ImportError(f"{where}: corrupt or truncated file ({_one_line(e)})") from None


def _guarded(chunks: Iterator[pd.DataFrame], where: str) -> Iterator[pd.DataFrame]:
    while True:
        with _read_errors(where):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk
