"""Import a survey file into the canonical population: the official WVS-7 release
(``import_wvs7``), or any survey with a codebook (``import_survey``).

Both read the file (``raysim.survey.loaders``: CSV, SPSS ``.sav``, Stata ``.dta``, or a ``.zip``
holding one) twice: once for the id and country columns alone, which gives every row a unique
``respondent_id`` (``raysim.survey.respondent_ids``: published files repeat their own ids), then in
chunks of rows and only the columns needed, each chunk streamed as one shard into an atomic
``ShardWriter``: nothing already at ``out`` changes unless the import succeeds.

Every problem is a one-line ``WVS7ImportError`` naming the file: a missing column, a corrupt or
truncated file, a non-integer answer, an empty id, a bad country or weight, and, with
``strict``, an answer code or label the codebook does not know (otherwise such an answer is
stored as null and counted in the ``ImportReport``).
"""

from __future__ import annotations

import re
from collections import Counter
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from .codebook import MISSING_CODES, Codebook, Item, load_codebook
from .loaders import WVS7ImportError, _guarded, _names, _open_source, _read_errors, _Source
from .official_layout import COUNTRY_COLUMN, ID_COLUMN, WEIGHT_COLUMN
from .population import COUNTRY, ID, PERSONA, WEIGHT, ShardWriter, write_json_atomic
from .respondent_ids import SOURCE_ID, IdAssignment, RespondentIdError, assign_ids

REPORT_FILE = "import_report.json"
VALUE_LABELS_FILE = "value_labels.json"
DEFAULT_CHUNK_ROWS = 10_000
_INT32 = (np.iinfo(np.int32).min, np.iinfo(np.int32).max)
_ALPHA3 = re.compile(r"^[A-Z]{3}$")


@dataclass(frozen=True)
class Layout:
    """Where a file keeps what a population needs besides the codebook's items."""

    id: str | None = None
    """Column of the source's respondent ids; None: rows are numbered in file order."""
    country: str | None = None
    """Column of ISO alpha-3 country codes; or ``country_code`` for a one-country survey."""
    country_code: str | None = None
    weight: str | None = None
    """Column of survey weights; None: every weight is 1.0."""
    labels: bool = True
    """Item columns may hold option labels instead of codes."""
    text: str | None = None
    """Column of each respondent's narrative persona, kept as the population's ``persona`` column
    (the system turn of ``system: narrative``); a persona file may lack item columns (null)."""

    def __post_init__(self) -> None:
        if (self.country is None) == (self.country_code is None):
            raise ValueError("a survey needs its countries: give a country column (--country COL) or the "
                             "one country's code (--country-code ISO3), not both")
        if self.country_code is not None and not _ALPHA3.match(self.country_code):
            raise ValueError(f"country code {self.country_code!r} is not an ISO alpha-3 code (e.g. NZL)")

    @property
    def columns(self) -> list[str]:
        return [c for c in (self.id, self.country, self.weight, self.text) if c is not None]


WVS7_LAYOUT = Layout(id=ID_COLUMN, country=COUNTRY_COLUMN, weight=WEIGHT_COLUMN, labels=False)


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
    anomalies: dict[str, dict[int | str, int]] = field(default_factory=dict)
    """column -> code (or label) -> count of answers the codebook does not know (stored as null)."""
    weights: bool = True
    """False when the file had no weight column and every weight is 1.0."""
    value_labels: list[str] = field(default_factory=list)
    """Coded items whose value labels were kept in ``value_labels.json``."""
    encoding: str | None = None
    """The text encoding the file was read with (a CSV's is sniffed; a ``.sav`` may need a fallback)."""
    id_column: str | None = None
    derived_ids: int = 0
    """Rows whose respondent id was derived (their source id repeats or is text)."""
    repeated_ids: list[dict] = field(default_factory=list)
    """Every source id given to more than one row: its count, countries and first rows."""
    _ids: IdAssignment | None = field(default=None, repr=False)

    @property
    def anomaly_count(self) -> int:
        return sum(sum(c.values()) for c in self.anomalies.values())

    def to_json(self) -> dict:
        d = {k: v for k, v in asdict(self).items() if not k.startswith("_")}
        d["anomalies"] = {q: {str(c): n for c, n in codes.items()} for q, codes in self.anomalies.items()}
        return d

    def lines(self) -> list[str]:
        """What the CLI prints after an import."""
        n = len(self.countries)
        out = [f"imported {self.rows} respondents from {n} countr{'y' if n == 1 else 'ies'} "
               f"({self.format}) into {self.output}"]
        if self._ids is not None:
            out += self._ids.summary(self.id_column or "id")
        if not self.weights:
            out.append("no weight column: every weight is 1.0")
        if self.anomalies:
            out.append(f"{self.anomaly_count} answer(s) the codebook does not know, stored as null:")
            out += [f"  {q} {'code' if isinstance(c, int) else 'label'} {c if isinstance(c, int) else repr(c)}: {n}"
                    for q, codes in self.anomalies.items() for c, n in sorted(codes.items(), key=lambda kv: str(kv[0]))]
        return out


# ---- validation and conversion ---------------------------------------------------------

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


def _label_codes(item: Item) -> dict[str, int]:
    """Label (case-folded) -> code: the item's options, extra codes and the missing codes."""
    pairs = (*MISSING_CODES.items(), *item.extra_codes, *item.options)
    return {label.strip().casefold(): code for code, label in pairs}


@dataclass
class _Converter:
    """Turns chunks of a survey file into canonical frames, checking as it goes."""

    codebook: Codebook
    layout: Layout
    where: str
    strict: bool
    report: ImportReport
    ids: IdAssignment
    countries: np.ndarray
    anomalies: Counter = field(default_factory=Counter)

    def weight(self, chunk: pd.DataFrame, row0: int) -> np.ndarray:
        column = self.layout.weight
        if column is None:
            return np.ones(len(chunk))
        values = _numbers(chunk[column], column, row0, self.where, integer=False)
        bad = np.flatnonzero(np.isnan(values) | (values < 0))
        if bad.size:
            v = values[bad[0]]
            what = "empty" if np.isnan(v) else f"negative ({float(v)})"
            raise WVS7ImportError(f"{self.where}: {column} is {what} at row {row0 + bad[0]}")
        return values

    def _unknown(self, item: Item, answer: int | str, count: int, row: int) -> None:
        if self.strict:
            what = f"code {answer}" if isinstance(answer, int) else f"label {answer!r}"
            raise WVS7ImportError(f"{self.where}: column {item.id} holds {what}, which codebook "
                                  f"{self.codebook.name!r} does not know (first at row {row})")
        self.anomalies[(item.id, answer)] += count

    def _codes(self, item: Item, s: pd.Series, row0: int) -> np.ndarray:
        """Answer codes (float, NaN where empty); option labels are mapped to their codes."""
        if not self.layout.labels or pd.api.types.is_numeric_dtype(s.dtype):
            return _numbers(s, item.id, row0, self.where, integer=True)
        text = s.astype("string").str.strip().replace("", pd.NA)
        numbers = pd.to_numeric(text, errors="coerce")
        labelled = text.notna() & numbers.isna()
        codes = text[labelled].str.casefold().map(_label_codes(item))
        unknown = text[labelled][codes.isna()]
        for label, count in unknown.value_counts(sort=False).items():
            self._unknown(item, str(label), int(count), row0 + int(np.argmax((text == label).fillna(False).to_numpy(dtype=bool))))
        numbers[labelled] = codes
        return _numbers(numbers, item.id, row0, self.where, integer=True)

    def item(self, item: Item, s: pd.Series, row0: int) -> pd.arrays.IntegerArray:
        values = self._codes(item, s, row0)
        answered = ~np.isnan(values) & ~np.isin(values, list(MISSING_CODES))
        valid = answered.copy()
        codes, counts = np.unique(values[answered], return_counts=True)
        for code, count in zip(codes.tolist(), counts.tolist()):
            if _INT32[0] <= code <= _INT32[1] and item.valid_code(int(code)):
                continue
            at = values == code
            self._unknown(item, int(code), count, row0 + int(np.argmax(at)))
            valid &= ~at
        out = np.zeros(len(values), dtype=np.int32)
        out[valid] = values[valid].astype(np.int32)
        return pd.arrays.IntegerArray(out, ~valid)

    def text(self, s: pd.Series, row0: int) -> pd.Series:
        text = s.astype("string").str.strip()
        empty = np.flatnonzero((text.isna() | (text == "")).to_numpy(dtype=bool))
        if empty.size:
            raise WVS7ImportError(f"{self.where}: {self.layout.text} is empty at row {row0 + empty[0]}: every "
                                  "persona needs its text")
        return text

    def convert(self, chunk: pd.DataFrame) -> pd.DataFrame:
        start = self.report.rows
        row0 = start + 1  # rows are numbered from 1, the header not counted
        rows = slice(start, start + len(chunk))
        countries = self.countries[rows]
        data: dict[str, object] = {ID: self.ids.respondent_ids[rows], COUNTRY: countries,
                                   WEIGHT: self.weight(chunk, row0)}
        if self.ids.source_ids is not None:
            data[SOURCE_ID] = self.ids.source_ids[rows]
        if self.layout.text is not None:
            data[PERSONA] = self.text(chunk[self.layout.text], row0)
        for q, item in self.codebook.items.items():
            if q in chunk.columns:   # (a persona file may lack an item: its column stays null)
                data[q] = self.item(item, chunk[q], row0)
        self.report.rows += len(chunk)
        for c, n in Counter(countries.tolist()).items():
            self.report.countries[c] = self.report.countries.get(c, 0) + n
        return pd.DataFrame(data)

    def finish(self) -> None:
        for (q, code), n in sorted(self.anomalies.items(), key=lambda kv: (kv[0][0], str(kv[0][1]))):
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


def _countries(values: pd.Series, column: str, where: str) -> np.ndarray:
    codes = values.astype("string").str.strip().reset_index(drop=True)
    ok = codes.str.fullmatch(_ALPHA3).fillna(False).to_numpy(dtype=bool)
    bad = np.flatnonzero(~ok)
    if bad.size:
        raise WVS7ImportError(f"{where}: {column} {codes.iloc[bad[0]]!r} at row "
                              f"{bad[0] + 1} is not an ISO alpha-3 code")
    return codes.to_numpy(dtype=object)


def _identify(src: _Source, layout: Layout, chunk_rows: int) -> tuple[IdAssignment, np.ndarray]:
    """The first pass: every row's respondent id and country, from those two columns alone."""
    wanted = [c for c in (layout.id, layout.country) if c is not None]
    parts = list(_guarded(src.chunks(wanted, chunk_rows), src.where)) if wanted else []
    if not wanted:   # neither column: count the rows through the first item's column
        parts = list(_guarded(src.chunks(src.columns[:1], chunk_rows), src.where))
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=wanted)
    if layout.country is not None:
        countries = _countries(frame[layout.country], layout.country, src.where)
    else:
        countries = np.full(len(frame), layout.country_code, dtype=object)
    try:
        ids = assign_ids(frame[layout.id] if layout.id else None, countries, layout.id or "id")
    except RespondentIdError as e:
        raise WVS7ImportError(f"{src.where}: {e}") from None
    return ids, countries


def _check_columns(src: _Source, layout: Layout, codebook: Codebook) -> None:
    have = set(src.columns)
    items = [] if layout.text is not None else list(codebook.items)
    missing = [c for c in layout.columns + items if c not in have]
    if missing:
        raise WVS7ImportError(f"{src.where}: missing column(s) {_names(missing)} "
                              f"(codebook {codebook.name!r})")


def _import(src: _Source, out: Path, codebook: Codebook, layout: Layout, *, overwrite: bool,
            strict: bool, chunk_rows: int) -> ImportReport:
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
    if out.suffix.lower() in (".parquet", ".pq", ".csv"):
        raise ValueError(f"-o {out}: a population is a directory (shards and their codebook inside); "
                         "give a directory name without a file suffix")
    ids, countries = _identify(src, layout, chunk_rows)
    if len(countries) == 0:
        raise WVS7ImportError(f"{src.where}: the file holds no respondents")
    report = ImportReport(source=src.where, format=src.format, output=str(out), codebook=codebook.name,
                          encoding=src.encoding, weights=layout.weight is not None, id_column=layout.id, derived_ids=ids.derived,
                          repeated_ids=[r.to_json() for r in ids.repeats], _ids=ids)
    usecols = list(dict.fromkeys([c for c in (layout.weight, layout.text) if c] +
                                 [q for q in codebook.items if q in src.columns]))
    convert = _Converter(codebook, layout, src.where, strict, report, ids, countries)
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = ShardWriter(out, codebook, overwrite=overwrite)
    try:
        for chunk in _guarded(src.chunks(usecols, chunk_rows), src.where):
            writer.write(convert.convert(chunk))
        if report.rows != len(countries):
            raise WVS7ImportError(f"{src.where}: the file changed while it was read "
                                  f"({len(countries)} rows, then {report.rows})")
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


def _check_wvs7_header(src: _Source, codebook: Codebook) -> None:
    have = set(src.columns)
    missing = [c for c in [ID_COLUMN, COUNTRY_COLUMN] + list(codebook.items) if c not in have]
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


def import_wvs7(path: str | Path, out: str | Path, *, overwrite: bool = False,
                strict: bool = False, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                codebook: Codebook | None = None) -> ImportReport:
    """Import an official WVS-7 file into a canonical population shard directory ``out``.

    ``out`` receives one Parquet shard per ``chunk_rows`` rows, ``import_report.json`` and,
    for ``.sav``/``.dta`` sources with labelled country-specific items, ``value_labels.json``.
    ``D_INTERVIEW`` is the respondent id where it is unique; the release repeats some, whose rows
    get derived ids (``respondent_ids``), ``D_INTERVIEW`` kept as ``source_id``. Answer codes
    -1..-5 become null. An answer code the codebook does not know is an error with ``strict``;
    otherwise it becomes null and is counted in ``ImportReport.anomalies``.
    """
    path, out = Path(path), Path(out)
    codebook = codebook or load_codebook("wvs7")
    with ExitStack() as stack:
        with _read_errors(str(path)):  # opening reads the header (and unpacks a zip member)
            src = stack.enter_context(_open_source(path))
        _check_wvs7_header(src, codebook)
        layout = WVS7_LAYOUT if WEIGHT_COLUMN in src.columns else replace(WVS7_LAYOUT, weight=None)
        return _import(src, out, codebook, layout, overwrite=overwrite, strict=strict, chunk_rows=chunk_rows)


def import_survey(path: str | Path, codebook: Codebook | str, out: str | Path, layout: Layout, *,
                  overwrite: bool = False, strict: bool = False,
                  chunk_rows: int = DEFAULT_CHUNK_ROWS) -> ImportReport:
    """Import any survey file whose columns a codebook describes (codes or option labels) into a
    canonical population ``out``, which carries a copy of the codebook (``population``)."""
    path, out = Path(path), Path(out)
    codebook = load_codebook(codebook) if isinstance(codebook, str) else codebook
    with ExitStack() as stack:
        with _read_errors(str(path)):
            src = stack.enter_context(_open_source(path))
        _check_columns(src, layout, codebook)
        return _import(src, out, codebook, layout, overwrite=overwrite, strict=strict, chunk_rows=chunk_rows)
