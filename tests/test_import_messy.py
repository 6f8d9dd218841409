"""Published WVS-7 files are messier than files written in the documented layout: index columns,
quoted numbers, BOMs, CRLF, Windows-1252 text, decimal commas, trailing separators and blank
rows. Each messy variant must import to exactly what the clean file imports to."""

import csv
import io
import json
import struct
import zipfile

import pandas as pd
import pytest

from raysim.survey import loaders
from raysim.survey.codebook import load_codebook
from raysim.survey.importer import VALUE_LABELS_FILE, import_wvs7
from raysim.survey.loaders import WVS7ImportError, _open_source
from raysim.survey.official_layout import to_official_frame, write_official
from raysim.survey.population import read_population, write_population
from raysim.survey.synthetic import synth_frames

N = 36
COUNTRIES = ["BRA", "DEU", "MEX", "TUR"]
CHUNK = 10  # several chunks, so what is sniffed from the first rows must hold for the rest
TOWNS = ["São Paulo", "Zürich", "Köln", "€ Ciudad de México"]
# Country-specific (coded) items' labels as a national file carries them.
LABELS = {"Q272": {1: "Türkçe", 2: "Español", 3: "Português", 4: "Français"},
          "Q266": {76: "Brasil", 276: "Österreich", 484: "México", 792: "Türkiye"}}


@pytest.fixture(scope="module")
def cb():
    return load_codebook("wvs7")


@pytest.fixture(scope="module")
def population(cb):
    return pd.concat(list(synth_frames(N, 11, countries=COUNTRIES, codebook=cb)), ignore_index=True)


@pytest.fixture(scope="module")
def official(population, cb):
    return to_official_frame(population, cb)


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    return tmp_path_factory.mktemp("messy")


@pytest.fixture(scope="module")
def clean_csv(official, dirs):
    return write_official(official, dirs / "clean.csv")


@pytest.fixture(scope="module")
def clean(clean_csv, dirs):
    """What every messy variant must import to."""
    import_wvs7(clean_csv, dirs / "clean-pop", chunk_rows=CHUNK)
    return read_population(dirs / "clean-pop")


@pytest.fixture(scope="module")
def lines(clean_csv):
    """The clean file's header and rows, without line ends."""
    return clean_csv.read_text(encoding="utf-8").splitlines()


def imported(path, tmp_path, **kw) -> pd.DataFrame:
    out = tmp_path / f"pop-{path.stem}"
    import_wvs7(path, out, chunk_rows=CHUNK, **kw)
    return read_population(out)


def assert_same(got: pd.DataFrame, clean: pd.DataFrame) -> None:
    # Same respondents in the same order, countries, weights (a decimal comma or a quoted
    # weight may take another parse path: last-bit differences only) and answers.
    pd.testing.assert_frame_equal(got, clean, check_exact=False, rtol=1e-12)


def write(path, text: str | bytes):
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return path


def csv_text(frame: pd.DataFrame, **kw) -> str:
    buf = io.StringIO()
    frame.to_csv(buf, index=kw.pop("index", False), lineterminator="\n", **kw)
    return buf.getvalue()


def test_clean_file_imports_to_the_population(clean, population, cb, dirs):
    """The baseline the other tests compare against is itself right."""
    expected = read_population(write_population(population, dirs / "expected.parquet", cb))
    # the importer may keep D_INTERVIEW as source_id too (respondent_ids); the rest must match
    pd.testing.assert_frame_equal(clean.drop(columns=["source_id"], errors="ignore"), expected)
    assert len(clean) == N and set(clean["country"]) == set(COUNTRIES)


# ---- 1. a row-index column before the data --------------------------------------------

LEADING = {
    # pandas' to_csv(index=True): an empty header name, rows numbered from 0
    "pandas": lambda header, rows: ["," + header] + [f"{i},{r}" for i, r in enumerate(rows)],
    # that file read back and written again keeps the name pandas gave it
    "Unnamed: 0": lambda header, rows: ["Unnamed: 0," + header] + [f"{i},{r}" for i, r in enumerate(rows)],
    # R's write.csv: a quoted empty name, quoted row names from 1
    "R write.csv": lambda header, rows: ['"",' + header] + [f'"{i + 1}",{r}' for i, r in enumerate(rows)],
    # R's read.csv names that column X; write.csv again
    "R X": lambda header, rows: ['"X",' + header] + [f'"{i + 1}",{r}' for i, r in enumerate(rows)],
    # R's write.table(row.names=TRUE): row names with no header field at all
    "R write.table": lambda header, rows: [header] + [f'"{i + 1}",{r}' for i, r in enumerate(rows)],
}


@pytest.mark.parametrize("style", LEADING)
def test_leading_index_column_is_ignored(style, lines, clean, tmp_path):
    path = write(tmp_path / "indexed.csv", "\n".join(LEADING[style](lines[0], lines[1:])) + "\n")
    assert_same(imported(path, tmp_path), clean)


def test_pandas_index_column_is_read_by_its_blank_name(official, tmp_path):
    """The generic importer numbers rows by reading the first column alone: a blank name
    must read as that column (pandas would call it 'Unnamed: 0' and match nothing)."""
    path = write(tmp_path / "indexed.csv", csv_text(official, index=True))
    with _open_source(path) as src:
        assert src.columns[:2] == ["", "version"]
        got = pd.concat(src.chunks(["D_INTERVIEW", ""], CHUNK))
    assert got.columns.tolist() == ["", "D_INTERVIEW"]  # file order
    assert got[""].tolist() == list(range(N))
    assert got["D_INTERVIEW"].tolist() == official["D_INTERVIEW"].tolist()


# ---- 2. every field quoted -------------------------------------------------------------

def test_quoted_numbers_and_weight(official, clean, tmp_path):
    path = write(tmp_path / "quoted.csv", csv_text(official, quoting=csv.QUOTE_ALL))
    header, first = path.read_text().splitlines()[:2]
    weight = next(csv.reader([header])).index("W_WEIGHT")
    assert first.split(",")[weight] == f'"{float(official["W_WEIGHT"].iloc[0])!r}"'  # e.g. "1.234"
    assert_same(imported(path, tmp_path), clean)


# ---- 3. BOM and CRLF, also inside a zip ------------------------------------------------

@pytest.mark.parametrize("zipped", [False, True], ids=["csv", "zip"])
@pytest.mark.parametrize("bom,crlf", [(True, False), (False, True), (True, True)],
                         ids=["bom", "crlf", "bom+crlf"])
def test_bom_and_crlf(bom, crlf, zipped, clean_csv, clean, tmp_path):
    text = clean_csv.read_text(encoding="utf-8")
    data = (("\ufeff" if bom else "") + (text.replace("\n", "\r\n") if crlf else text)).encode("utf-8")
    if zipped:
        path = tmp_path / "wvs7.zip"
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr("F00011356/WVS_Cross-National_Wave_7_csv_v6_0.csv", data)
    else:
        path = write(tmp_path / "wvs7.csv", data)
    assert_same(imported(path, tmp_path), clean)


# ---- 4. Windows-1252 / Latin-1 text ----------------------------------------------------

def with_towns(official: pd.DataFrame) -> pd.DataFrame:
    frame = official.copy()
    frame["N_TOWN"] = [TOWNS[i % len(TOWNS)] for i in range(len(frame))]
    frame["Partyname"] = "Partido Señor Müller"
    return frame


@pytest.mark.parametrize("encoding", ["cp1252", "latin-1"])
def test_windows_1252_text_imports(encoding, official, clean, tmp_path):
    frame = with_towns(official)
    if encoding == "latin-1":  # no euro sign in Latin-1
        frame["N_TOWN"] = frame["N_TOWN"].str.replace("€ ", "")
    path = write(tmp_path / "latin.csv", csv_text(frame).encode(encoding))
    with pytest.raises(UnicodeDecodeError):
        path.read_bytes().decode("utf-8")  # the file really is not UTF-8
    assert_same(imported(path, tmp_path), clean)


@pytest.mark.parametrize("encoding", ["utf-8", "cp1252"])
def test_text_is_decoded_in_the_file_encoding(encoding, official, tmp_path):
    """Not replacement characters: a text column (what the generic importer may read) reads
    back as written, whichever of the two encodings the file is in."""
    frame = with_towns(official)
    path = write(tmp_path / "towns.csv", csv_text(frame).encode(encoding))
    with _open_source(path) as src:
        assert src.encoding == encoding
        got = pd.concat(src.chunks(["N_TOWN", "Partyname"], CHUNK))
    assert got["N_TOWN"].tolist() == frame["N_TOWN"].tolist()
    assert set(got["Partyname"]) == {"Partido Señor Müller"}


# ---- 5. non-ASCII value labels in .sav / .dta, and a .sav in Windows-1252 ------------

def kept_labels(out) -> dict:
    return json.loads((out / VALUE_LABELS_FILE).read_text(encoding="utf-8"))


def expected_labels() -> dict:
    return {q: {str(c): lab for c, lab in sorted(v.items())} for q, v in LABELS.items()}


@pytest.mark.parametrize("fmt", ["sav", "dta"])
def test_non_ascii_value_labels_are_kept(fmt, official, clean, cb, tmp_path):
    path = write_official(official, tmp_path / f"labelled.{fmt}", codebook=cb, value_labels=LABELS)
    assert_same(imported(path, tmp_path), clean)
    assert kept_labels(tmp_path / f"pop-{path.stem}") == expected_labels()


def placeholder(label: str) -> str:
    """ASCII of the same length in Windows-1252 (one byte a character), to patch over."""
    return "".join(c if c.isascii() else "~" for c in label)


def sav_in_cp1252(official, cb, path, declares: str | None):
    """pyreadstat writes UTF-8 only, so write ASCII placeholders and patch in the Windows-1252
    bytes (same length: nothing moves), then make the file declare ``declares`` in its
    character-encoding record (None: no record, as SPSS before 14 wrote, and code page 1252 in
    the machine-integer record)."""
    labels = {q: {c: placeholder(lab) for c, lab in v.items()} for q, v in LABELS.items()}
    data = write_official(official, path, codebook=cb, value_labels=labels).read_bytes()
    for q, v in LABELS.items():
        for lab in v.values():
            assert data.count(placeholder(lab).encode()) == 1
            data = data.replace(placeholder(lab).encode(), lab.encode("cp1252"))
    record = struct.pack("<4i", 7, 20, 1, 5) + b"UTF-8"  # rec type 7, subtype 20: encoding
    assert data.count(record) == 1
    if declares is None:
        data = data.replace(record, b"")
        machine = data.index(struct.pack("<4i", 7, 3, 4, 8)) + 16 + 7 * 4  # 8th int: code page
        assert struct.unpack("<i", data[machine:machine + 4]) == (65001,)
        data = data[:machine] + struct.pack("<i", 1252) + data[machine + 4:]
    else:
        data = data.replace(record, struct.pack("<4i", 7, 20, 1, len(declares)) + declares.encode())
    return write(path, data)


@pytest.mark.parametrize("declares", ["windows-1252", None, "UTF-8"],
                         ids=["declared", "code-page-only", "mislabelled-utf8"])
def test_sav_in_windows_1252(declares, official, clean, cb, tmp_path):
    """A file that declares UTF-8 over Windows-1252 labels (other tools write those) is read
    in Windows-1252 rather than refused."""
    path = sav_in_cp1252(official, cb, tmp_path / "cp1252.sav", declares)
    assert "Türkçe".encode("cp1252") in path.read_bytes() and "Türkçe".encode() not in path.read_bytes()
    assert_same(imported(path, tmp_path), clean)
    assert kept_labels(tmp_path / "pop-cp1252") == expected_labels()


# ---- 6. decimal comma in a semicolon file ----------------------------------------------

@pytest.mark.parametrize("quoting", [csv.QUOTE_MINIMAL, csv.QUOTE_ALL], ids=["bare", "quoted"])
def test_semicolon_csv_with_decimal_comma(quoting, official, clean, tmp_path):
    path = write(tmp_path / "eu.csv", csv_text(official, sep=";", decimal=",", quoting=quoting))
    header, first = path.read_text().splitlines()[:2]
    weight = next(csv.reader([header], delimiter=";")).index("W_WEIGHT")
    assert "," in first.split(";")[weight]  # e.g. 1,234
    assert_same(imported(path, tmp_path), clean)


def test_decimal_comma_after_whole_numbers_in_the_sniffed_rows(official, clean, tmp_path, monkeypatch):
    """The rows the reader samples show no decimals (weights that happen to be whole, written
    as 1): a ; file still reads a decimal comma further down."""
    monkeypatch.setattr(loaders, "_SAMPLE_ROWS", 5)
    frame = official.copy()
    for column in ("W_WEIGHT", "S018"):  # the file's fractional columns
        whole = frame[column].round(0).clip(lower=1).astype(int)
        frame[column] = [str(w) if i < 8 else repr(float(x)).replace(".", ",")
                         for i, (w, x) in enumerate(zip(whole, frame[column]))]
    path = write(tmp_path / "eu.csv", csv_text(frame, sep=";"))
    assert not any(f.count(",") for line in path.read_text().splitlines()[:6] for f in line.split(";"))
    got = imported(path, tmp_path)
    expected = clean.copy()
    expected.loc[:7, "weight"] = frame["W_WEIGHT"][:8].astype(float).to_numpy()  # as written
    assert_same(got, expected)


# ---- 7. trailing separators, empty columns and blank rows ------------------------------

def sep_only(width: int) -> str:
    return "," * (width - 1)


TRAILING = {
    "separator on every line": lambda ls: [line + "," for line in ls],
    # header without it: pandas would take the first column for an index and shift the rest
    "separator on data lines only": lambda ls: ls[:1] + [line + "," for line in ls[1:]],
    "empty columns": lambda ls: [line + ",,," for line in ls],
    "empty names in the header only": lambda ls: [ls[0] + ",,,"] + ls[1:],
    "blank lines at the end": lambda ls: ls + ["", "", ""],
    "whitespace line at the end": lambda ls: ls + ["   "],
    # what a spreadsheet saves for rows it once had
    "separator-only lines at the end": lambda ls: ls + [sep_only(611)] * 3,
    "quoted empty line at the end": lambda ls: ls + [",".join(['""'] * 611)],
}


@pytest.mark.parametrize("crlf", [False, True], ids=["lf", "crlf"])
@pytest.mark.parametrize("shape", TRAILING)
def test_trailing_separators_and_blank_rows(shape, crlf, lines, clean, tmp_path):
    eol = "\r\n" if crlf else "\n"
    path = write(tmp_path / "trailing.csv", eol.join(TRAILING[shape](lines)) + eol)
    assert_same(imported(path, tmp_path), clean)


def cut(row: str) -> str:
    return ",".join(row.split(",")[:300])


CUT = {
    "separator on data lines only": lambda ls: ls[:1] + [line + "," for line in ls[1:-1]] + [cut(ls[-1])],
    "R write.table": lambda ls: LEADING["R write.table"](ls[0], ls[1:-1] + [cut(ls[-1])]),
    "blank lines after the cut": lambda ls: ls[:-1] + [cut(ls[-1]), "", ""],
    "separator-only lines after the cut": lambda ls: ls[:-1] + [cut(ls[-1]), sep_only(611)],
}


@pytest.mark.parametrize("shape", CUT)
def test_a_cut_last_row_is_still_truncation(shape, lines, tmp_path):
    """Tolerating trailing mess must not hide a file cut short in its last row."""
    path = write(tmp_path / "cut.csv", "\n".join(CUT[shape](lines)) + "\n")
    with pytest.raises(WVS7ImportError, match=r"truncated file: the last row has 30[01] of 61[12] fields"):
        import_wvs7(path, tmp_path / "pop")
    assert not (tmp_path / "pop").exists()
