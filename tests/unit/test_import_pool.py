"""Mapping spread over processes gives exactly the chunks one process gives: same rows, same
rejects (duplicates across tasks included), same boundaries."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

from tournesol.ingest import importer
from tournesol.ingest.readers import open_reader
from tournesol.ingest.schemas import parse_mapping

MAPPING = parse_mapping(
    {
        "source": {"name": "cartes", "kind": "loyalty"},
        "entity": "customer",
        "key": "carte",
        "fields": {
            "last_name": "nom",
            "email": "email",
            "birth_date": {"column": "naissance", "type": "date", "formats": ["%d/%m/%Y"]},
        },
        "required": ["last_name"],
    }
)


def write_file(path: Path, rows: int) -> Path:
    lines = ["carte;nom;email;naissance"]
    for i in range(1, rows + 1):
        key = f"C{i % 1700 if i % 97 == 0 else i}"  # some keys come back much later
        birth = "31/02/1980" if i % 211 == 0 else f"{1 + i % 28:02d}/05/1970"
        name = "" if i % 307 == 0 else f"NOM{i}"
        lines.append(f"{key};{name};n{i}@GMIAL.com;{birth}")
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def shape(chunks: list[importer._Mapped]) -> list[tuple[object, ...]]:
    return [
        (
            [(r.line_no, r.key, r.normalized_json, r.flags) for r in c.rows],
            c.rejects,
            c.read,
            c.last_line,
        )
        for c in chunks
    ]


def test_pooled_mapping_equals_mapping_in_one_process(tmp_path: Path) -> None:
    path = write_file(tmp_path / "cartes.csv", 5000)
    with open_reader(path, MAPPING.format) as reader:
        alone = list(importer._mapped_chunks(reader, MAPPING, 1000, after_line=120))
    with (
        open_reader(path, MAPPING.format) as reader,
        mock.patch.object(importer, "POOL_TASK_ROWS", 300),
    ):
        pooled = list(importer._pooled_chunks(reader, MAPPING, 1000, 120, processes=2))
    assert shape(pooled) == shape(alone)
    codes = {code for c in alone for _, code, _, _ in c.rejects}
    assert codes == {"DUPLICATE_KEY", "INVALID_DATE", "MISSING_REQUIRED"}
    assert sum(c.read for c in pooled) == 5000 - 119
