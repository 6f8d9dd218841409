"""The canonical population: one row per respondent, as (sharded) Parquet.

Columns: ``respondent_id`` (int64, unique per row: WVS ``D_INTERVIEW`` where that is unique),
``country`` (ISO alpha-3, ``B_COUNTRY_ALPHA``), ``weight`` (float64, ``W_WEIGHT`` or 1.0),
``source_id`` where the population was imported from a file with ids (``respondent_ids``),
``persona`` (string) where it was imported from narrative personas, then
one nullable int32 column per codebook item (null where a missing code was given). The schema metadata
names the codebook (``raysim.codebook``) so readers know which items the columns hold: a
shipped one by name; any other is copied into the population directory as ``codebook.yaml``
and recorded by its hash (``raysim.codebook_sha256``), so the population carries its codebook
wherever it is read from.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

from ..atomic import publish_dir, staging_dir, write_atomic
from .codebook import CODEBOOKS, Codebook, codebook_hash, load_codebook
from .columns import BASE_COLUMNS, COUNTRY, ID, PERSONA, WEIGHT  # noqa: F401  (the population's columns, named here too)
from .respondent_ids import SOURCE_ID

META_CODEBOOK, META_CODEBOOK_SHA = b"raysim.codebook", b"raysim.codebook_sha256"
CODEBOOK_FILE = "codebook.yaml"


class PopulationError(ValueError):
    """A population file or directory that does not follow the canonical contract."""


def schema(codebook: Codebook, source_id: pa.DataType | None = None, persona: bool = False) -> pa.Schema:
    """``source_id``: the type of the source's own id column (``respondent_ids``), if kept;
    ``persona``: a narrative persona column."""
    fields = [pa.field(ID, pa.int64(), nullable=False), pa.field(COUNTRY, pa.string(), nullable=False),
              pa.field(WEIGHT, pa.float64(), nullable=False)]
    if source_id is not None:
        fields.append(pa.field(SOURCE_ID, source_id, nullable=False))
    if persona:
        fields.append(pa.field(PERSONA, pa.string()))
    fields += [pa.field(q, pa.int32()) for q in codebook.items]
    if codebook.name in CODEBOOKS:
        return pa.schema(fields, metadata={META_CODEBOOK: codebook.name.encode()})
    return pa.schema(fields, metadata={META_CODEBOOK: CODEBOOK_FILE.encode(),
                                       META_CODEBOOK_SHA: codebook.sha256.encode()})


def _copy_codebook(codebook: Codebook, directory: Path) -> None:
    """A codebook read from a file goes into the population directory, checked against the
    content it was parsed from."""
    data = Path(codebook.name).read_bytes()
    if codebook_hash(data) != codebook.sha256:
        raise PopulationError(f"codebook {codebook.name} changed while the population was written")
    (directory / CODEBOOK_FILE).write_bytes(data)


def to_table(df: pd.DataFrame, codebook: Codebook) -> pa.Table:
    """A canonical table from a frame holding the base columns and any subset of items
    (absent items become all-null columns)."""
    missing = [c for c in BASE_COLUMNS if c not in df.columns]
    if missing:
        raise PopulationError(f"population frame lacks column(s) {missing}")
    source_id = None
    if SOURCE_ID in df.columns:
        source_id = pa.int64() if pd.api.types.is_integer_dtype(df[SOURCE_ID].dtype) else pa.string()
    sch = schema(codebook, source_id, PERSONA in df.columns)
    n = len(df)
    arrays = []
    for f in sch:
        if f.name in df.columns:
            arrays.append(pa.array(df[f.name], type=f.type, from_pandas=True))
        else:
            arrays.append(pa.nulls(n, type=f.type))
    return pa.Table.from_arrays(arrays, schema=sch)


@dataclass
class ShardWriter:
    """Writes a population as ``part-NNNNN.parquet`` shards into ``out`` atomically:
    shards go to a hidden temporary directory that replaces ``out`` on ``commit``."""

    out: Path
    codebook: Codebook
    overwrite: bool = False

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        if self.out.exists() and not self.overwrite:
            raise PopulationError(f"{self.out} exists; pass overwrite to replace it")
        self.tmp = staging_dir(self.out)
        if self.codebook.name not in CODEBOOKS:
            _copy_codebook(self.codebook, self.tmp)
        self.n_shards = 0
        self.n_rows = 0

    def write(self, df: pd.DataFrame) -> None:
        table = to_table(df, self.codebook)
        pq.write_table(table, self.tmp / f"part-{self.n_shards:05d}.parquet")
        self.n_shards += 1
        self.n_rows += table.num_rows

    def commit(self) -> Path:
        publish_dir(self.tmp, self.out)
        return self.out

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def write_population(frames: pd.DataFrame | Iterable[pd.DataFrame], out: str | Path,
                     codebook: Codebook, overwrite: bool = False) -> Path:
    """Write one frame or a stream of frames (one shard each). ``out`` ending in
    ``.parquet`` gives a single file, anything else a shard directory."""
    out = Path(out)
    if isinstance(frames, pd.DataFrame):
        frames = [frames]
    if out.suffix == ".parquet":
        if codebook.name not in CODEBOOKS:
            raise PopulationError(f"{out}: a population with its own codebook is a directory (it holds "
                                  f"{CODEBOOK_FILE}); give a path without .parquet")
        if out.exists() and not overwrite:
            raise PopulationError(f"{out} exists; pass overwrite to replace it")
        table = pa.concat_tables([to_table(f, codebook) for f in frames])
        out.parent.mkdir(parents=True, exist_ok=True)
        return write_atomic(out, lambda tmp: pq.write_table(table, tmp))
    out.parent.mkdir(parents=True, exist_ok=True)
    with ShardWriter(out, codebook, overwrite=overwrite) as w:
        for f in frames:
            w.write(f)
    return out


def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.parquet") if not any(s.startswith(".") for s in p.relative_to(path).parts))
        if files:
            return files
    raise PopulationError(f"{path}: no population Parquet file(s) found")


def codebook_of(path: str | Path) -> Codebook:
    """The codebook named in a population's Parquet metadata."""
    files = _files(Path(path))
    try:
        meta = pq.read_schema(files[0]).metadata or {}
    except pa.ArrowInvalid as e:
        raise PopulationError(f"{files[0]}: not a Parquet file ({e})") from None
    if META_CODEBOOK not in meta:
        raise PopulationError(f"{files[0]}: not a raysim population (no {META_CODEBOOK.decode()} metadata)")
    name = meta[META_CODEBOOK].decode()
    if META_CODEBOOK_SHA not in meta:
        return load_codebook(name)
    path, sha = Path(path), meta[META_CODEBOOK_SHA].decode()
    copy = (path if path.is_dir() else path.parent) / CODEBOOK_FILE
    if not copy.is_file():
        raise PopulationError(f"{path}: the population's codebook {copy} is missing")
    if codebook_hash(copy.read_bytes()) != sha:
        raise PopulationError(f"{copy}: not the codebook the population was written with (sha256 differs)")
    return load_codebook(str(copy))


def dataset(path: str | Path) -> pads.Dataset:
    return pads.dataset([str(f) for f in _files(Path(path))], format="parquet")


def read_population(path: str | Path, columns: list[str] | None = None,
                    ids: Iterable[int] | None = None) -> pd.DataFrame:
    """Read a population (file or shard directory) into pandas, nullable ints kept; only the
    respondents ``ids`` if given (filtered while reading: a sample of a large population)."""
    ds = dataset(path)
    if columns is not None:
        absent = [c for c in columns if c not in ds.schema.names]
        if absent:
            raise PopulationError(f"{path}: population has no column(s) {absent}")
    where = None if ids is None else pads.field(ID).isin(pa.array(list(ids), pa.int64()))
    return ds.to_table(columns=columns, filter=where).to_pandas(types_mapper=_nullable)


def iter_batches(path: str | Path, batch_size: int = 65536, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
    for batch in dataset(path).to_batches(columns=columns, batch_size=batch_size):
        yield batch.to_pandas(types_mapper=_nullable)


def records(respondents: pd.DataFrame) -> list[dict]:
    """Rows as dicts with None for missing cells (pandas' NA, or NaN after a trip through Ray),
    which the profile and the injection plans read as "not answered"."""
    return respondents.astype(object).where(respondents.notna(), None).to_dict("records")


def _nullable(t: pa.DataType):
    if pa.types.is_integer(t):
        return pd.Int64Dtype() if t == pa.int64() else pd.Int32Dtype()
    return None


def write_json_atomic(obj: object, path: str | Path) -> None:
    write_atomic(Path(path), lambda tmp: tmp.write_text(json.dumps(obj, indent=2, sort_keys=True)))
