"""Import the official WVS-7 release into the canonical population.

``import_wvs7`` reads the file users download (CSV with comma or semicolon, SPSS ``.sav``,
Stata ``.dta``, or a ``.zip`` holding one of them) in chunks of rows and only the columns it
needs, and streams each chunk as one shard into an atomic ``ShardWriter``: 97,220 x 611 never
sits in memory at once, and nothing already at ``out`` changes unless the import succeeds.

Every problem is a one-line ``WVS7ImportError`` naming the file: not WVS-7 shaped, corrupt
or truncated, a non-integer answer, a bad id / country / weight, a duplicated interview id,
and, with ``strict``, an answer code the codebook does not know (otherwise such a code is
stored as null and counted in the ``ImportReport``).
"""

from __future__ import annotations

import csv
import io
import re
import shutil
import tempfile
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd
import pyreadstat

from .codebook import MISSING_CODES, Codebook, Item, load_codebook
from .official_layout import COUNTRY_COLUMN, ID_COLUMN, WEIGHT_COLUMN
from .population import COUNTRY, ID, WEIGHT, ShardWriter, write_json_atomic

REPORT_FILE = "import_report.json"
VALUE_LABELS_FILE = "value_labels.json"
FORMATS = (".csv", ".sav", ".dta")
DEFAULT_CHUNK_ROWS = 10_000
_MAX_NAMED = 10
_INT32 = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
_ALPHA3 = re.compile(r"^[A-Z]{3}$")
_DTA_OPEN, _DTA_CLOSE = b"<stata_dta>", b"</stata_dta>"
_READ_ERRORS = (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeError, zipfile.BadZipFile,
                zlib.error, EOFError, OSError, pyreadstat.ReadstatError,
                pyreadstat.PyreadstatError)


class WVS7ImportError(ValueError):
    """A file that cannot be imported as WVS-7; the message is one line naming the file."""


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_MAX_NAMED])
    return shown + (f" and {len(names) - _MAX_NAMED} more" if len(names) > _MAX_NAMED else "")


@dataclass
class ImportReport:
    source: str
    format: str
    """``csv``, ``sav`` or ``dta``, prefixed ``zip:`` when read from inside a zip."""
    output: str
    codebook: str
    rows: int = 0
    countries: dict[str, int] = field(default_factory=dict)
    """Respondents per country, in order of first appearance."""
    anomalies: dict[str, dict[int, int]] = field(default_factory=dict)
    """column -> code -> count of answer codes the codebook does not know (stored as null)."""
    weights: bool = True
    """False when the file had no W_WEIGHT column and every weight is 1.0."""
    value_labels: list[str] = field(default_factory=list)
    """Coded items whose value labels were kept in ``value_labels.json``."""

    @property
    def anomaly_count(self) -> int:
        return sum(sum(c.values()) for c in self.anomalies.values())

    def to_json(self) -> dict:
        d = asdict(self)
        d["anomalies"] = {q: {str(c): n for c, n in codes.items()}
                          for q, codes in self.anomalies.items()}
        return d

    def lines(self) -> list[str]:
        """What the CLI prints after an import."""
        out = [f"imported {self.rows} respondents from {len(self.countries)} countries "
               f"({self.format}) into {self.output}"]
        if not self.weights:
            out.append(f"no {WEIGHT_COLUMN} column: every weight is 1.0")
        if self.anomalies:
            out.append(f"{self.anomaly_count} answer(s) with codes the codebook does not know, "
                       "stored as null:")
            out += [f"  {q} code {c}: {n}"
                    for q, codes in self.anomalies.items() for c, n in sorted(codes.items())]
        return out


# ---- sources ---------------------------------------------------------------------------

@dataclass
class _Source:
    """One data file: its columns, and chunked reading of some of them."""

    where: str
    format: str
    columns: list[str]
    chunks: Callable[[list[str], int], Iterator[pd.DataFrame]]
    value_labels: dict[str, dict[float, str]] = field(default_factory=dict)


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


def _fields(line: str, sep: str) -> list[str]:
    return next(csv.reader([line], delimiter=sep), [])


def _csv_source(opener: Callable[[], IO[bytes]], where: str, fmt: str) -> _Source:
    with opener() as f:
        first = f.readline(1 << 20).decode("utf-8-sig", errors="replace").rstrip("\r\n")
    sep = max((",", ";", "\t"), key=lambda s: len(_fields(first, s)))
    header = [h.strip() for h in _fields(first, sep)]

    def chunks(usecols: list[str], rows: int) -> Iterator[pd.DataFrame]:
        wanted = set(usecols)
        with opener() as raw:
            tail = _Tail(raw)
            reader = pd.read_csv(io.BufferedReader(tail), sep=sep, chunksize=rows,
                                 usecols=lambda c: c.strip() in wanted,
                                 encoding="utf-8-sig", encoding_errors="replace")
            for chunk in reader:
                yield chunk.rename(columns=str.strip)
        last = tail.tail.rstrip(b"\r\n").rsplit(b"\n", 1)
        if len(last) == 2:  # a data row follows the header
            got = len(_fields(last[1].decode("utf-8", errors="replace").rstrip("\r"), sep))
            if got < len(header):
                raise WVS7ImportError(f"{where}: truncated file: the last row has {got} of "
                                      f"{len(header)} fields")

    return _Source(where, fmt, header, chunks)


def _check_dta_end(path: Path, where: str) -> None:
    """Stata 13+ files are framed by <stata_dta> tags; the value labels come last, so a file
    cut short there still reads, minus its labels, unless the closing tag is checked."""
    with open(path, "rb") as f:
        opened = f.read(len(_DTA_OPEN)) == _DTA_OPEN
        f.seek(max(0, path.stat().st_size - len(_DTA_CLOSE)))
        if opened and f.read() != _DTA_CLOSE:
            raise WVS7ImportError(f"{where}: truncated file: the Stata file does not end with "
                                  f"{_DTA_CLOSE.decode()}")


def _stat_source(path: Path, where: str, fmt: str) -> _Source:
    read = pyreadstat.read_sav if fmt.endswith("sav") else pyreadstat.read_dta
    if read is pyreadstat.read_dta:
        _check_dta_end(path, where)
    _, meta = read(str(path), metadataonly=True)

    def chunks(usecols: list[str], rows: int) -> Iterator[pd.DataFrame]:
        n = 0
        for chunk, _ in pyreadstat.read_file_in_chunks(read, str(path), chunksize=rows, usecols=usecols):
            n += len(chunk)
            yield chunk
        expected = meta.number_rows
        if expected is not None and expected >= 0 and n != expected:
            raise WVS7ImportError(f"{where}: truncated file: {n} of {expected} rows could be read")

    return _Source(where, fmt, list(meta.column_names), chunks, dict(meta.variable_value_labels))


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
    else:
        raise WVS7ImportError(f"{where}: not a WVS-7 file format; expected .csv, .sav, .dta or .zip")


@contextmanager
def _read_errors(where: str) -> Iterator[None]:
    """Library errors from a damaged file become one-line WVS7ImportErrors."""
    try:
        yield
    except WVS7ImportError:
        raise
    except _READ_ERRORS as e:
        raise WVS7ImportError(f"{where}: corrupt or truncated file ({_one_line(e)})") from e


def _guarded(chunks: Iterator[pd.DataFrame], where: str) -> Iterator[pd.DataFrame]:
    while True:
        with _read_errors(where):
            chunk = next(chunks, None)
        if chunk is None:
            return
        yield chunk


# ---- validation and conversion ---------------------------------------------------------

def _check_header(src: _Source, codebook: Codebook) -> None:
    have = set(src.columns)
    required = [ID_COLUMN, COUNTRY_COLUMN] + list(codebook.items)
    missing = [c for c in required if c not in have]
    if not missing:
        return
    inverted = [c for c in missing if f"{c}P" in have]
    if inverted:
        shown = inverted[:3]
        raise WVS7ImportError(
            f"{src.where}: this looks like the 'Inverted' WVS-7 release (reversed scales in "
            f"columns such as {_names([c + 'P' for c in shown])}); import the standard release, "
            f"whose columns are {_names(shown)}")
    raise WVS7ImportError(f"{src.where}: not a WVS-7 file: missing column(s) {_names(missing)}")


def _numbers(s: pd.Series, column: str, row0: int, where: str, *, integer: bool) -> np.ndarray:
    """float64 values with NaN for empty cells; text (or, with ``integer``, a fraction) is an error."""
    if not pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype):
        text = s.astype("string").str.strip().replace("", pd.NA)
        s = pd.to_numeric(text, errors="coerce")
        bad = np.flatnonzero((text.notna() & s.isna()).to_numpy())
        if bad.size:
            raise WVS7ImportError(f"{where}: column {column} holds non-numeric value "
                                  f"{text.iloc[bad[0]]!r} at row {row0 + bad[0]}")
    values = s.to_numpy(dtype=np.float64, na_value=np.nan)
    fraction = integer & np.isfinite(values) & (values != np.floor(values))
    bad = np.flatnonzero(np.isinf(values) | fraction)
    if bad.size:
        raise WVS7ImportError(f"{where}: column {column} holds non-integer value "
                              f"{float(values[bad[0]])!r} at row {row0 + bad[0]}")
    return values


@dataclass
class _Converter:
    """Turns chunks of the official file into canonical frames, checking as it goes."""

    codebook: Codebook
    where: str
    strict: bool
    weights: bool
    report: ImportReport
    seen: dict[int, int] = field(default_factory=dict)
    anomalies: Counter = field(default_factory=Counter)

    def ids(self, chunk: pd.DataFrame, row0: int) -> np.ndarray:
        values = _numbers(chunk[ID_COLUMN], ID_COLUMN, row0, self.where, integer=True)
        bad = np.flatnonzero(np.isnan(values))
        if bad.size:
            raise WVS7ImportError(f"{self.where}: {ID_COLUMN} is empty at row {row0 + bad[0]}")
        ids = values.astype(np.int64)
        for i, rid in enumerate(ids.tolist()):
            first = self.seen.setdefault(rid, row0 + i)
            if first != row0 + i:
                raise WVS7ImportError(f"{self.where}: duplicated {ID_COLUMN} {rid} "
                                      f"(rows {first} and {row0 + i})")
        return ids

    def countries(self, chunk: pd.DataFrame, row0: int) -> np.ndarray:
        codes = chunk[COUNTRY_COLUMN].astype("string").str.strip()
        ok = codes.str.fullmatch(_ALPHA3).fillna(False).to_numpy(dtype=bool)
        bad = np.flatnonzero(~ok)
        if bad.size:
            raise WVS7ImportError(f"{self.where}: {COUNTRY_COLUMN} {codes.iloc[bad[0]]!r} at row "
                                  f"{row0 + bad[0]} is not an ISO alpha-3 code")
        return codes.to_numpy(dtype=object)

    def weight(self, chunk: pd.DataFrame, row0: int) -> np.ndarray:
        if not self.weights:
            return np.ones(len(chunk))
        values = _numbers(chunk[WEIGHT_COLUMN], WEIGHT_COLUMN, row0, self.where, integer=False)
        bad = np.flatnonzero(np.isnan(values) | (values < 0))
        if bad.size:
            v = values[bad[0]]
            what = "empty" if np.isnan(v) else f"negative ({float(v)})"
            raise WVS7ImportError(f"{self.where}: {WEIGHT_COLUMN} is {what} at row {row0 + bad[0]}")
        return values

    def item(self, item: Item, s: pd.Series, row0: int) -> pd.arrays.IntegerArray:
        values = _numbers(s, item.id, row0, self.where, integer=True)
        answered = ~np.isnan(values) & ~np.isin(values, list(MISSING_CODES))
        valid = answered.copy()
        codes, counts = np.unique(values[answered], return_counts=True)
        for code, count in zip(codes.tolist(), counts.tolist()):
            if _INT32[0] <= code <= _INT32[1] and item.valid_code(int(code)):
                continue
            at = values == code
            if self.strict:
                raise WVS7ImportError(
                    f"{self.where}: column {item.id} holds code {int(code)}, which codebook "
                    f"{self.codebook.name!r} does not know (first at row {row0 + int(np.argmax(at))})")
            self.anomalies[(item.id, int(code))] += count
            valid &= ~at
        out = np.zeros(len(values), dtype=np.int32)
        out[valid] = values[valid].astype(np.int32)
        return pd.arrays.IntegerArray(out, ~valid)

    def convert(self, chunk: pd.DataFrame) -> pd.DataFrame:
        row0 = self.report.rows + 1  # rows are numbered from 1, the header not counted
        ids = self.ids(chunk, row0)
        countries = self.countries(chunk, row0)
        data: dict[str, object] = {ID: ids, COUNTRY: countries, WEIGHT: self.weight(chunk, row0)}
        for q, item in self.codebook.items.items():
            data[q] = self.item(item, chunk[q], row0)
        self.report.rows += len(chunk)
        for c, n in Counter(countries.tolist()).items():
            self.report.countries[c] = self.report.countries.get(c, 0) + n
        return pd.DataFrame(data)

    def finish(self) -> None:
        for (q, code), n in sorted(self.anomalies.items()):
            self.report.anomalies.setdefault(q, {})[code] = n


def _coded_labels(src: _Source, codebook: Codebook) -> dict[str, dict[str, str]]:
    """Value labels of country-specific (coded) items, {qid: {code: label}}, answers only."""
    out: dict[str, dict[str, str]] = {}
    for q, item in codebook.items.items():
        labels = src.value_labels.get(q)
        if item.kind == "coded" and labels:
            kept = {int(float(c)): str(lab) for c, lab in labels.items() if float(c) >= 0}
            if kept:
                out[q] = {str(c): lab for c, lab in sorted(kept.items())}
    return out


def import_wvs7(path: str | Path, out: str | Path, *, overwrite: bool = False,
                strict: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                codebook: Codebook | None = None) -> ImportReport:
    """Import an official WVS-7 file into a canonical population shard directory ``out``.

    ``out`` receives one Parquet shard per ``chunk_rows`` rows, ``import_report.json`` and,
    for ``.sav``/``.dta`` sources with labelled country-specific items, ``value_labels.json``.
    Answer codes -1..-5 become null. An answer code the codebook does not know is an error
    with ``strict``; otherwise it becomes null and is counted in ``ImportReport.anomalies``.
    """
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    path, out = Path(path), Path(out)
    codebook = codebook or load_codebook("wvs7")
    with ExitStack() as stack:
        with _read_errors(str(path)):  # opening reads the header (and unpacks a zip member)
            src = stack.enter_context(_open_source(path))
        _check_header(src, codebook)
        has_weight = WEIGHT_COLUMN in src.columns
        usecols = [ID_COLUMN, COUNTRY_COLUMN] + [WEIGHT_COLUMN] * has_weight + list(codebook.items)
        report = ImportReport(source=str(path), format=src.format, output=str(out),
                              codebook=codebook.name, weights=has_weight)
        convert = _Converter(codebook, src.where, strict, has_weight, report)
        out.parent.mkdir(parents=True, exist_ok=True)
        writer = ShardWriter(out, codebook, overwrite=overwrite)
        try:
            for chunk in _guarded(src.chunks(usecols, chunk_rows), src.where):
                writer.write(convert.convert(chunk))
            if report.rows == 0:
                raise WVS7ImportError(f"{src.where}: the file holds no respondents")
            convert.finish()
            labels = _coded_labels(src, codebook)
            if labels:
                write_json_atomic(labels, writer.tmp / VALUE_LABELS_FILE)
                report.value_labels = list(labels)
            write_json_atomic(report.to_json(), writer.tmp / REPORT_FILE)
        except BaseException:
            writer.abort()
            raise
        writer.commit()
    return report
