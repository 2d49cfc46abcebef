"""Source file readers: every record comes out, readable or as an error row, with its line."""

from __future__ import annotations

import codecs
import contextlib
import csv
import datetime as dt
import hashlib
import io
import json
import re
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tournesol.ingest.readers import (
    MAX_RECORD_LINES,
    RawRow,
    ReadError,
    SourceReader,
    base,
    encodings,
    json_document,
    open_reader,
)
from tournesol.ingest.schemas import FormatSpec

FRENCH = "Hélène Lefèvre, garçon, cœur, 12 €"


@contextlib.contextmanager
def chunk_bytes(size: int) -> Iterator[None]:
    """Read files in pieces of ``size`` bytes: patched in every reader module that reads them."""
    with contextlib.ExitStack() as stack:
        for module in (base, encodings, json_document):
            stack.enter_context(mock.patch.object(module, "CHUNK_BYTES", size))
        yield


def write(tmp_path: Path, name: str, data: bytes | str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_bytes(data.encode(encoding) if isinstance(data, str) else data)
    return path


def read_all(path: Path, fmt: FormatSpec | None = None) -> tuple[SourceReader, list[RawRow]]:
    with open_reader(path, fmt) as reader:
        return reader, list(reader)


def by_line(rows: list[RawRow]) -> dict[int, RawRow]:
    return {row.line_no: row for row in rows}


def error_codes(rows: list[RawRow]) -> dict[int, str]:
    return {row.line_no: row.error[0] for row in rows if row.error is not None}


# ------------------------------------------------------------------------------ encodings


def test_utf8_file_is_detected(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", f"id;nom\n1;{FRENCH}\n2;Zoé\n")
    reader, rows = read_all(path)
    assert reader.info.encoding == "utf-8"
    assert [row.values for row in rows] == [{"id": "1", "nom": FRENCH}, {"id": "2", "nom": "Zoé"}]


def test_utf8_bom_is_detected_and_removed_from_the_header(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", f"\ufeffid;nom\r\n1;{FRENCH}\r\n", "utf-8")
    reader, rows = read_all(path)
    assert reader.info.encoding == "utf-8-sig"
    assert reader.info.columns == ["id", "nom"]
    assert rows[0].values == {"id": "1", "nom": FRENCH}


def test_cp1252_file_is_detected(tmp_path: Path) -> None:
    lines = ["id;nom;ville", f"1;{FRENCH};Besançon", "2;Benoît Dubœuf;Nîmes", "3;plain;ascii"]
    path = write(tmp_path, "c.csv", "\r\n".join(lines) + "\r\n", "cp1252")
    reader, rows = read_all(path)
    assert reader.info.encoding == "cp1252"
    assert [row.values for row in rows] == [
        {"id": "1", "nom": FRENCH, "ville": "Besançon"},
        {"id": "2", "nom": "Benoît Dubœuf", "ville": "Nîmes"},
        {"id": "3", "nom": "plain", "ville": "ascii"},
    ]


def test_latin1_file_decodes_right(tmp_path: Path) -> None:
    # Latin-1 has no œ nor €; for the rest its bytes mean the same in cp1252, which is reported.
    text = "id;nom\n1;Hélène Lefèvre\n2;François garçon\n3;Maëlle Côté\n"
    reader, rows = read_all(write(tmp_path, "c.csv", text, "latin-1"))
    assert reader.info.encoding in ("cp1252", "latin-1")
    assert [row.values["nom"] for row in rows if row.values] == [
        "Hélène Lefèvre",
        "François garçon",
        "Maëlle Côté",
    ]


def test_legacy_file_that_cp1252_cannot_decode_is_latin1(tmp_path: Path) -> None:
    data = b"id;v\n" + b"".join(b"%d;caf\xe9 \x81\x8d\x90\n" % i for i in range(10))
    reader, rows = read_all(write(tmp_path, "c.csv", data))
    assert reader.info.encoding == "latin-1"
    assert len(rows) == 10
    assert all(row.error is None for row in rows)
    assert rows[0].values == {"id": "0", "v": "caf\xe9 \x81\x8d\x90"}


def test_utf8_file_with_a_few_invalid_lines(tmp_path: Path) -> None:
    good = "".join(f"{i};Zoé n°{i}\n" for i in range(2, 12))
    data = b"id;nom\n" + good.encode() + b"12;caf\xe9 cr\xe8me\n13;fin\n"
    reader, rows = read_all(write(tmp_path, "c.csv", data))
    assert reader.info.encoding == "utf-8"
    assert len(rows) == 12
    bad = by_line(rows)[12]
    assert bad.values is None
    assert bad.error is not None
    assert bad.error[0] == "DECODE_ERROR"
    assert "bytes not valid utf-8 at column 7 of line 12" in bad.error[1]
    assert bad.raw_text == "12;caf\\xe9 cr\\xe8me"
    assert by_line(rows)[13].values == {"id": "13", "nom": "fin"}
    assert by_line(rows)[2].values == {"id": "2", "nom": "Zoé n°2"}


def test_cp1252_file_with_a_byte_cp1252_does_not_define(tmp_path: Path) -> None:
    lines = [f"{i};Benoît Dubœuf {i} €".encode("cp1252") for i in range(2, 30)]
    lines.insert(5, b"99;bad \x81 byte")  # becomes line 7
    data = b"id;nom\r\n" + b"\r\n".join(lines) + b"\r\n"
    reader, rows = read_all(write(tmp_path, "c.csv", data))
    assert reader.info.encoding == "cp1252"
    assert error_codes(rows) == {7: "DECODE_ERROR"}
    assert by_line(rows)[7].raw_text == "99;bad \\x81 byte"
    assert by_line(rows)[6].values == {"id": "6", "nom": "Benoît Dubœuf 6 €"}
    assert len(rows) == 29


def test_explicit_encoding_wins(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "id;nom\n1;Zoé\n", "utf-8")
    reader, rows = read_all(path, FormatSpec(encoding="latin-1"))
    assert reader.info.encoding == "latin-1"
    assert rows[0].values == {"id": "1", "nom": "ZoÃ©"}


@pytest.mark.parametrize("encoding", ["no-such-codec", "utf-16"])
def test_unusable_explicit_encoding(tmp_path: Path, encoding: str) -> None:
    path = write(tmp_path, "c.csv", "id;nom\n1;a\n")
    with pytest.raises(ReadError, match="encoding"):
        open_reader(path, FormatSpec(encoding=encoding))


# ------------------------------------------------------------------------------ delimiters


@pytest.mark.parametrize("delimiter", [";", ",", "\t", "|"])
def test_delimiter_is_sniffed(tmp_path: Path, delimiter: str) -> None:
    # every row also holds the other candidates, inside quotes or as plain text
    rows = [["id", "nom", "montant"], ["1", "Dupont, Jean; fils", "12,50"], ["2", "a|b", "3"]]
    buffer = io.StringIO()
    csv.writer(buffer, delimiter=delimiter, lineterminator="\n").writerows(rows)
    reader, out = read_all(write(tmp_path, "c.csv", buffer.getvalue()))
    assert reader.info.delimiter == delimiter
    assert reader.info.columns == ["id", "nom", "montant"]
    assert [row.values for row in out] == [dict(zip(rows[0], row, strict=True)) for row in rows[1:]]


@pytest.mark.parametrize("given", ["\t", "tab", "TAB"])
def test_explicit_tab_delimiter(tmp_path: Path, given: str) -> None:
    path = write(tmp_path, "c.txt", "id\tnom;x\n1\ta;b\n")
    reader, rows = read_all(path, FormatSpec(delimiter=given))
    assert reader.info.delimiter == "\t"
    assert rows[0].values == {"id": "1", "nom;x": "a;b"}


def test_single_column_file(tmp_path: Path) -> None:
    reader, rows = read_all(write(tmp_path, "c.csv", "email\na@b.fr\n\nc@d.fr\n"))
    assert reader.info.columns == ["email"]
    assert [(row.line_no, row.values) for row in rows] == [
        (2, {"email": "a@b.fr"}),
        (4, {"email": "c@d.fr"}),
    ]


# ------------------------------------------------------------------------- CSV structure


def test_quoted_fields_with_delimiters_quotes_and_newlines(tmp_path: Path) -> None:
    text = (
        "id;nom;adresse\r\n"
        '1;"Dupont; Jean";"12 rue ""des Lilas"""\r\n'
        '2;Martin;"Bâtiment B\r\n3e étage\r\nporte 5"\r\n'
        "3;Durand;Lyon\r\n"
    )
    _, rows = read_all(write(tmp_path, "c.csv", text))
    assert [(row.line_no, row.values) for row in rows] == [
        (2, {"id": "1", "nom": "Dupont; Jean", "adresse": '12 rue "des Lilas"'}),
        (3, {"id": "2", "nom": "Martin", "adresse": "Bâtiment B\r\n3e étage\r\nporte 5"}),
        (6, {"id": "3", "nom": "Durand", "adresse": "Lyon"}),
    ]
    assert rows[1].raw_text == '2;Martin;"Bâtiment B\r\n3e étage\r\nporte 5"'
    assert rows[0].raw_text == '1;"Dupont; Jean";"12 rue ""des Lilas"""'


@pytest.mark.parametrize("newline", ["\n", "\r\n", "\r"])
def test_line_endings(tmp_path: Path, newline: str) -> None:
    text = newline.join(["id;v", "1;a", "", '2;"x', 'y"', "3;b"])  # no final line break
    _, rows = read_all(write(tmp_path, "c.csv", text))
    assert [(row.line_no, row.values) for row in rows] == [
        (2, {"id": "1", "v": "a"}),
        (4, {"id": "2", "v": f"x{newline}y"}),
        (6, {"id": "3", "v": "b"}),
    ]


def test_values_are_strings_kept_as_they_are(tmp_path: Path) -> None:
    _, rows = read_all(write(tmp_path, "c.csv", "id;a;b\n 1 ;;  x \n"))
    assert rows[0].values == {"id": " 1 ", "a": "", "b": "  x "}


def test_wrong_column_counts_and_repeated_header(tmp_path: Path) -> None:
    text = "id;nom;ville\n1;a;b\n2;a\n3;a;b;c\n   \n ID ; Nom;VILLE\n4;a;b\n5;a;b;\n"
    _, rows = read_all(write(tmp_path, "c.csv", text))
    assert error_codes(rows) == {
        3: "COLUMN_COUNT",
        4: "COLUMN_COUNT",
        6: "REPEATED_HEADER",
        8: "COLUMN_COUNT",
    }
    assert by_line(rows)[3].error == ("COLUMN_COUNT", "expected 3 columns, found 2")
    assert by_line(rows)[4].error == ("COLUMN_COUNT", "expected 3 columns, found 4")
    assert by_line(rows)[6].error == ("REPEATED_HEADER", "line 6 repeats the header")
    assert by_line(rows)[4].raw_text == "3;a;b;c"
    assert [row.line_no for row in rows if row.error is None] == [2, 7]
    assert 5 not in by_line(rows)  # a blank line is skipped


def test_unterminated_quote_up_to_the_end_of_the_file(tmp_path: Path) -> None:
    text = 'id;nom\n1;a\n2;"never closed\n3;b\n4;c\n'
    _, rows = read_all(write(tmp_path, "c.csv", text))
    assert [(row.line_no, row.error and row.error[0]) for row in rows] == [
        (2, None),
        (3, "UNTERMINATED_QUOTE"),
        (4, None),
        (5, None),
    ]
    assert rows[1].raw_text == '2;"never closed'
    assert rows[3].values == {"id": "4", "nom": "c"}


def test_unterminated_quote_on_the_last_line(tmp_path: Path) -> None:
    _, rows = read_all(write(tmp_path, "c.csv", 'id;nom\n1;a\n2;"open'))
    assert error_codes(rows) == {3: "UNTERMINATED_QUOTE"}
    assert len(rows) == 2


def test_quote_open_for_more_than_the_limit(tmp_path: Path) -> None:
    count = MAX_RECORD_LINES + 50
    text = 'id;nom\n1;"open\n' + "".join(f"{i};x\n" for i in range(3, 3 + count))
    _, rows = read_all(write(tmp_path, "c.csv", text))
    assert error_codes(rows) == {2: "UNTERMINATED_QUOTE"}
    assert [row.line_no for row in rows] == list(range(2, 3 + count))
    assert rows[-1].values == {"id": str(2 + count), "nom": "x"}


def test_quote_closed_by_a_stray_quote_further_down(tmp_path: Path) -> None:
    text = 'id;nom;ville\n1;"open;Lyon\n2;ok;Nice\n3;"x"y;Caen\n4;"a""b";c\n'
    _, rows = read_all(write(tmp_path, "c.csv", text))
    assert error_codes(rows) == {2: "UNTERMINATED_QUOTE", 4: "MALFORMED_CSV"}
    assert by_line(rows)[3].values == {"id": "2", "nom": "ok", "ville": "Nice"}
    assert by_line(rows)[5].values == {"id": "4", "nom": 'a"b', "ville": "c"}
    assert by_line(rows)[4].raw_text == '3;"x"y;Caen'


def test_decode_error_inside_a_multiline_record(tmp_path: Path) -> None:
    data = b'id;nom\n1;"a\nb\xff"\n2;ok\n' + "3;é\n".encode() * 5
    _, rows = read_all(write(tmp_path, "c.csv", data))
    assert error_codes(rows) == {2: "DECODE_ERROR"}
    assert by_line(rows)[2].raw_text == '1;"a\nb\\xff"'
    assert by_line(rows)[4].values == {"id": "2", "nom": "ok"}


def test_header_after_blank_lines_and_on_several_lines(tmp_path: Path) -> None:
    reader, rows = read_all(write(tmp_path, "c.csv", '\n\n"code\nclient";nom\n1;a\n'))
    assert reader.info.columns == ["code\nclient", "nom"]
    assert [(row.line_no, row.values) for row in rows] == [(5, {"code\nclient": "1", "nom": "a"})]


def test_header_only_file_has_no_rows(tmp_path: Path) -> None:
    reader, rows = read_all(write(tmp_path, "c.csv", "id;nom\r\n"))
    assert reader.info.columns == ["id", "nom"]
    assert rows == []


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id;nom;id\n1;2;3\n", "duplicate column name"),
        ("id;Nom;NOM\n1;2;3\n", "duplicate column name"),
        ("id;;nom\n1;2;3\n", "have no name"),
        ("id;nom;\n1;2;\n", "have no name"),
        ('"";""\n1;2\n', "is empty"),
        ("\n \n\r\n", "only blank lines"),
        ('"id;nom\n1;a\n', "cannot read the header"),
    ],
)
def test_unusable_header(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ReadError, match=message):
        open_reader(write(tmp_path, "c.csv", text))


def test_small_chunks_give_the_same_rows(tmp_path: Path) -> None:
    text = 'id;nom\r\n1;"a\r\nb"\r\n2;Zoé\r\n\r\n3;"open\r\n4;x\r' + "5;y\n"
    path = write(tmp_path, "c.csv", text.encode() + b"6;\xe9\n")
    expected = read_all(path)[1]
    for size in (1, 2, 3, 5, 8):
        with chunk_bytes(size):
            assert read_all(path)[1] == expected


# --------------------------------------------------------------------------- whole files


def test_read_info_of_a_csv(tmp_path: Path) -> None:
    data = "id;nom\n1;Zoé\n".encode()
    reader, _ = read_all(write(tmp_path, "c.csv", data))
    assert reader.info.format == "csv"
    assert reader.info.sha256 == hashlib.sha256(data).hexdigest()
    assert reader.info.size_bytes == len(data)
    assert reader.bytes_read() == len(data)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="file not found"):
        open_reader(tmp_path / "absent.csv")


def test_directory(tmp_path: Path) -> None:
    (tmp_path / "d.csv").mkdir()
    with pytest.raises(ReadError, match="not a file"):
        open_reader(tmp_path / "d.csv")


@pytest.mark.parametrize("name", ["c.xls", "c.doc", "noextension"])
def test_unknown_extension(tmp_path: Path, name: str) -> None:
    with pytest.raises(ReadError, match="unknown file type"):
        open_reader(write(tmp_path, name, "id;nom\n1;a\n"))


@pytest.mark.parametrize("name", ["c.csv", "c.xlsx", "c.json", "c.jsonl", "c.parquet"])
def test_empty_file(tmp_path: Path, name: str) -> None:
    with pytest.raises(ReadError, match="empty"):
        open_reader(write(tmp_path, name, b""))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"PK\x03\x04rest of a zip", "xlsx"),
        (b"PAR1rest", "parquet"),
        ("id;nom\n1;é\n".encode("utf-16"), "UTF-16"),
    ],
)
def test_binary_file_with_a_text_extension(tmp_path: Path, data: bytes, message: str) -> None:
    with pytest.raises(ReadError, match=message):
        open_reader(write(tmp_path, "c.csv", data))


def test_close_stops_an_iteration(tmp_path: Path) -> None:
    path = write(tmp_path, "c.csv", "id\n" + "".join(f"{i}\n" for i in range(100)))
    reader = open_reader(path)
    rows = iter(reader)
    assert next(rows).values == {"id": "0"}
    reader.close()
    assert list(rows) == []
    assert len(list(reader)) == 100  # a new iteration reads the file again


# ----------------------------------------------------------------------------------- Excel


def make_workbook(path: Path) -> None:
    from openpyxl import Workbook

    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "Clients"
    sheet.append([])
    sheet.append([" Code ", "Nom", "Naissance", "Montant"])
    sheet.append(["C1", "Hélène", dt.date(1980, 5, 17), 12.5])
    sheet.append([])
    sheet.append(["C2", "Zoé"])  # shorter: padded with None
    sheet.append(["C3", "Jérôme", dt.datetime(1990, 1, 2, 3, 4), 3, None, "extra"])
    sheet.append(["code", "NOM", "naissance", "montant"])
    other = workbook.create_sheet("Produits")
    other.append(["sku", "prix"])
    other.append(["A1", 9.99])
    workbook.save(path)


def test_xlsx_rows_keep_their_types_and_sheet_row_numbers(tmp_path: Path) -> None:
    path = tmp_path / "c.xlsx"
    make_workbook(path)
    reader, rows = read_all(path)
    assert reader.info.format == "xlsx"
    assert reader.info.columns == ["Code", "Nom", "Naissance", "Montant"]
    assert reader.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [(row.line_no, row.values) for row in rows if row.error is None] == [
        (
            3,
            {"Code": "C1", "Nom": "Hélène", "Naissance": dt.datetime(1980, 5, 17), "Montant": 12.5},
        ),
        (5, {"Code": "C2", "Nom": "Zoé", "Naissance": None, "Montant": None}),
    ]
    assert error_codes(rows) == {6: "COLUMN_COUNT", 7: "REPEATED_HEADER"}
    assert by_line(rows)[6].error == ("COLUMN_COUNT", "expected 4 columns, found 6")
    assert json.loads(by_line(rows)[6].raw_text) == [
        "C3",
        "Jérôme",
        "1990-01-02 03:04:00",
        3,
        None,
        "extra",
    ]
    assert reader.bytes_read() == reader.info.size_bytes


def test_xlsx_other_sheet(tmp_path: Path) -> None:
    path = tmp_path / "c.xlsx"
    make_workbook(path)
    reader, rows = read_all(path, FormatSpec(sheet="Produits"))
    assert reader.info.columns == ["sku", "prix"]
    assert [(row.line_no, row.values) for row in rows] == [(2, {"sku": "A1", "prix": 9.99})]


def test_xlsx_unknown_sheet(tmp_path: Path) -> None:
    path = tmp_path / "c.xlsx"
    make_workbook(path)
    with pytest.raises(ReadError, match=r"no sheet 'Ventes'.*'Clients', 'Produits'"):
        open_reader(path, FormatSpec(sheet="Ventes"))


def test_broken_xlsx(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="cannot be opened as an Excel workbook"):
        open_reader(write(tmp_path, "c.xlsx", b"this is not a zip file"))


def test_empty_sheet(tmp_path: Path) -> None:
    from openpyxl import Workbook

    path = tmp_path / "c.xlsx"
    Workbook().save(path)
    with pytest.raises(ReadError, match="is empty"):
        open_reader(path)


# ------------------------------------------------------------------------------------ JSON


def test_json_array_of_records(tmp_path: Path) -> None:
    records: list[Any] = [
        {"id": 1, "nom": "Zoé", "lignes": [{"sku": "A", "qte": 2}, {"sku": "B", "qte": 1}]},
        "not a record",
        {"id": 3, "actif": True, "remise": None, "pays": "FR"},
    ]
    path = write(tmp_path, "c.json", json.dumps(records, indent=2, ensure_ascii=False))
    reader, rows = read_all(path)
    assert reader.info.format == "json"
    assert reader.info.columns == ["id", "nom", "lignes", "actif", "remise", "pays"]
    assert [row.line_no for row in rows] == [1, 2, 3]
    assert rows[0].values == records[0]
    assert rows[0].raw_text == json.dumps(records[0], ensure_ascii=False)
    assert rows[1].error == ("NOT_AN_OBJECT", "record 2 is a string, not an object")
    assert rows[1].raw_text == '"not a record"'
    assert rows[2].values == records[2]


def test_json_records_path(tmp_path: Path) -> None:
    document = {
        "meta": {"export": "2024-05-01", "lists": [1, 2]},
        "data": {"count": 2, "orders": [{"id": "A"}, {"id": "B", "total": 12.5}]},
        "after": [{"ignored": True}],
    }
    path = write(tmp_path, "c.json", json.dumps(document))
    reader, rows = read_all(path, FormatSpec(records_path="data.orders"))
    assert reader.info.columns == ["id", "total"]
    assert [row.values for row in rows] == document["data"]["orders"]  # type: ignore[index]
    with pytest.raises(ReadError, match="no key 'orders' in the top level"):
        open_reader(path, FormatSpec(records_path="orders"))
    with pytest.raises(ReadError, match=r"records_path.*keys holding an array: after"):
        open_reader(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[{"id": 1},\n {"id": 2,}]', "not valid JSON.*line 2"),
        ('[{"id": 1}] trailing', "after the end"),
        ('[{"id": 1}', "not valid JSON"),
        ('"just a string"', "not a JSON array"),
        ("   \n ", "no JSON"),
    ],
)
def test_invalid_json_document(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ReadError, match=message):
        open_reader(write(tmp_path, "c.json", text))


def test_json_that_is_not_utf8(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", '[{"nom": "Zoé"}]', "cp1252")
    with pytest.raises(ReadError, match="not valid utf-8"):
        open_reader(path)
    _, rows = read_all(path, FormatSpec(encoding="cp1252"))
    assert rows[0].values == {"nom": "Zoé"}


@pytest.mark.parametrize(
    "numbers",
    [
        "[1, -0, 1.5, 0.1, 1e5, -0.0, 2.5E-3, 9223372036854775807]",
        # beyond a C long long and beyond a double: read like json.load all the same
        "[1.5, 123456789012345678901234567890, -9223372036854775809, 1e400, 1e-400]",
    ],
)
def test_json_numbers_as_json_load(tmp_path: Path, numbers: str) -> None:
    text = f'{{"records": [{{"n": {numbers}, "x": {{"y": 2.25}}}}, 7.5]}}'
    path = write(tmp_path, "c.json", text)
    _, rows = read_all(path, FormatSpec(records_path="records"))
    expected = json.loads(text)["records"]
    assert rows[0].values == expected[0]
    assert [type(v) for v in rows[0].values["n"]] == [type(v) for v in expected[0]["n"]]  # type: ignore[index]
    assert rows[0].raw_text == json.dumps(expected[0], ensure_ascii=False)
    assert rows[1].error == ("NOT_AN_OBJECT", "record 2 is a number, not an object")
    assert rows[1].raw_text == "7.5"


def test_json_utf8_with_bom(tmp_path: Path) -> None:
    path = write(tmp_path, "c.json", codecs.BOM_UTF8 + '[{"nom": "Zoé"}]'.encode())
    reader, rows = read_all(path)
    assert reader.info.encoding == "utf-8-sig"
    assert reader.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [row.values for row in rows] == [{"nom": "Zoé"}]


@pytest.mark.parametrize("chunk", [1, 5, 1 << 20])
def test_json_error_location(tmp_path: Path, chunk: int) -> None:
    path = write(tmp_path, "c.json", '[{"id": 1},\n {"id": 2,}]')
    with (
        chunk_bytes(chunk),
        pytest.raises(ReadError, match=r"not valid JSON: .* at line 2, column 11; fix the file"),
    ):
        open_reader(path)


@pytest.mark.parametrize(
    ("text", "records_path", "message"),
    [
        ('{"a": 1, "b": [1], "c": {"d": []}}', None, r"object.*records_path.*array: b\)$"),
        ('{"data": {"x": 1}}', "data.orders", r"no key 'orders' in data \(keys: x\)"),
        ('{"data": [1]}', "data.orders", "records_path is 'data.orders' but data is not an object"),
        ('{"data": {"orders": 3}}', "data.orders", "'data.orders' is not an array of records"),
        ("[" * 600 + "]" * 600, None, "nested more than 500 levels"),
        ('[{"a": NaN}]', None, "not valid JSON.*line 1, column 8"),
        ('[{"a": 1}]\n\n[', None, "after the end of the JSON document at line 3"),
    ],
)
def test_json_document_errors(
    tmp_path: Path, text: str, records_path: str | None, message: str
) -> None:
    with pytest.raises(ReadError, match=message):
        open_reader(write(tmp_path, "c.json", text), FormatSpec(records_path=records_path))


def test_json_streams_in_constant_memory(tmp_path: Path) -> None:
    record = {"id": 0, "nom": FRENCH * 30, "prix": 12.5, "lignes": [{"sku": "A", "qte": 2}]}
    path = tmp_path / "c.json"
    with path.open("w", encoding="utf-8") as f:
        f.write('{"data": [')
        f.write(",\n".join(json.dumps({**record, "id": i}) for i in range(4_000)))
        f.write("]}")
    size = path.stat().st_size
    tracemalloc.start()
    try:
        reader = open_reader(path, FormatSpec(records_path="data"))
        progress = []
        with reader:
            for count, row in enumerate(reader, 1):
                if count % 1_000 == 0:
                    progress.append(reader.bytes_read())
                assert row.values is not None
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 4_000
    assert reader.info.columns == list(record)
    assert progress == sorted(progress) and 0 < progress[0] < size
    assert peak < size / 4  # json.load would hold several times the file


def test_jsonl(tmp_path: Path) -> None:
    lines = [
        b'{"id": 1, "nom": "Zo\xc3\xa9 H\xc3\xa9l\xc3\xa8ne"}',
        b"",
        b'{"id": 2, "lignes": [{"sku": "A"}]}',
        b'{"id": 3, "nom": ',
        b"[1, 2]",
        b'{"id": 4, "nom": "caf\xe9"}',
        b'{"id": 5, "nom": "\xc3\x89ric"}',
    ]
    path = write(tmp_path, "c.jsonl", b"\r\n".join(lines) + b"\r\n")
    reader, rows = read_all(path)
    assert reader.info.format == "jsonl"
    assert reader.info.encoding == "utf-8"
    assert reader.info.columns == ["id", "nom", "lignes"]
    assert [(row.line_no, row.error and row.error[0]) for row in rows] == [
        (1, None),
        (3, None),
        (4, "INVALID_JSON"),
        (5, "NOT_AN_OBJECT"),
        (6, "DECODE_ERROR"),
        (7, None),
    ]
    assert rows[0].values == {"id": 1, "nom": "Zoé Hélène"}
    assert rows[5].values == {"id": 5, "nom": "Éric"}
    assert rows[1].values == {"id": 2, "lignes": [{"sku": "A"}]}
    assert rows[2].error is not None
    assert rows[2].error[1].startswith("line 4: Expecting value")
    assert rows[2].raw_text == '{"id": 3, "nom": '
    assert rows[4].raw_text == '{"id": 4, "nom": "caf\\xe9"}'


# --------------------------------------------------------------------------------- Parquet


def test_parquet(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": [1, 2, 3],
            "nom": ["Hélène", None, "Zoé"],
            "naissance": [dt.date(1980, 5, 17), None, dt.date(2001, 1, 1)],
            "lignes": [[{"sku": "A"}], [], None],
        }
    )
    path = tmp_path / "c.parquet"
    pq.write_table(table, path, row_group_size=2)
    reader, rows = read_all(path)
    assert reader.info.format == "parquet"
    assert reader.info.columns == ["id", "nom", "naissance", "lignes"]
    assert reader.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert [row.line_no for row in rows] == [1, 2, 3]
    assert rows[0].values == {
        "id": 1,
        "nom": "Hélène",
        "naissance": dt.date(1980, 5, 17),
        "lignes": [{"sku": "A"}],
    }
    assert rows[1].values == {"id": 2, "nom": None, "naissance": None, "lignes": []}
    assert json.loads(rows[0].raw_text)["naissance"] == "1980-05-17"
    assert reader.bytes_read() == reader.info.size_bytes


def test_broken_parquet(tmp_path: Path) -> None:
    with pytest.raises(ReadError, match="Parquet"):
        open_reader(write(tmp_path, "c.parquet", b"PAR1 but not really"))


# ------------------------------------------------------------------------- property tests

# Characters that cp1252 encodes as a byte below 0x80 or at 0xC0 and above: none of them can
# be followed by a UTF-8 continuation byte, so a cp1252 line with any of them is never valid
# UTF-8 by accident (a real file's accidental UTF-8 would be read as such, by design).
CP1252_TEXT = "".join(chr(c) for c in range(0x20, 0x7F)) + bytes(range(0xC0, 0x100)).decode(
    "cp1252"
)
SPECIAL = [";", ",", "\t", "|", '"', "\n", "\r", "\r\n", " ", "", '""', "é", "œ€"]
LINE_BREAKS = re.compile(r"\r\n|\r|\n")


def values(encoding: str) -> st.SearchStrategy[str]:
    if encoding == "cp1252":
        text = st.text(st.sampled_from(CP1252_TEXT + "\n\r\t"), max_size=10)
        special = [v for v in SPECIAL if v != "œ€"]
    else:
        text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=10)
        special = [*SPECIAL, "\x85", "\u2028", "\x0b\x0c", "\ufeff"]
    return st.one_of(
        text, st.sampled_from(special), st.lists(st.sampled_from(special)).map("".join)
    )


@st.composite
def csv_files(draw: st.DrawFn) -> dict[str, Any]:
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252"]))
    delimiter = draw(st.sampled_from([";", ",", "\t", "|"]))
    terminator = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    ncols = draw(st.integers(2, 5))
    header = [f"col{i}" for i in range(ncols)]
    rows = draw(st.lists(st.lists(values(encoding), min_size=ncols, max_size=ncols), max_size=12))
    for row in rows:
        assume([v.strip().lower() for v in row] != header)
    token = st.text(st.sampled_from("abcxyzABC019 "), min_size=1, max_size=6).filter(str.strip)
    widths = st.integers(1, ncols + 2).filter(lambda n: n != ncols)
    junk = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(rows)),
                widths.flatmap(lambda n: st.lists(token, min_size=n, max_size=n)),
            ),
            max_size=4,
        )
    )
    records: list[tuple[str, dict[str, str] | None]] = []
    for index, row in enumerate(rows):
        records.extend(
            (delimiter.join(tokens) + terminator, None) for at, tokens in junk if at == index
        )
        # csv.writer quotes the characters of its line terminator only: write with "\r\n",
        # so that any \r or \n in a value is quoted, then use the drawn terminator
        buffer = io.StringIO()
        csv.writer(buffer, delimiter=delimiter, lineterminator="\r\n").writerow(row)
        record = buffer.getvalue().removesuffix("\r\n") + terminator
        records.append((record, dict(zip(header, row, strict=True))))
    records.extend(
        (delimiter.join(tokens) + terminator, None) for at, tokens in junk if at == len(rows)
    )
    text = delimiter.join(header) + terminator
    expected: list[tuple[int, dict[str, str] | None]] = []
    for chunk, row_values in records:
        expected.append((len(LINE_BREAKS.findall(text)) + 1, row_values))
        text += chunk
    return {
        "data": text.encode(encoding),
        "encoding": encoding,
        "delimiter": delimiter,
        "explicit": draw(st.booleans()),
        "chunk": draw(st.sampled_from([1, 3, 16, 1 << 20])),
        "header": header,
        "expected": expected,
        "ascii": text.isascii(),
    }


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=csv_files())
def test_csv_round_trip_loses_nothing(
    tmp_path_factory: pytest.TempPathFactory, case: dict[str, Any]
) -> None:
    path = tmp_path_factory.mktemp("prop") / "c.csv"
    path.write_bytes(case["data"])
    fmt = FormatSpec(delimiter=case["delimiter"]) if case["explicit"] else None
    with chunk_bytes(case["chunk"]):
        reader, rows = read_all(path, fmt)
    detected = {"utf-8": "utf-8", "utf-8-sig": "utf-8-sig", "cp1252": "cp1252"}[case["encoding"]]
    if case["ascii"] and detected == "cp1252":
        detected = "utf-8"
    assert reader.info.encoding == detected
    assert reader.info.delimiter == case["delimiter"]
    assert reader.info.columns == case["header"]
    assert len(rows) == len(case["expected"])  # nothing lost, nothing invented
    for row, (line_no, row_values) in zip(rows, case["expected"], strict=True):
        assert row.line_no == line_no
        if row_values is None:
            assert row.error is not None
            assert row.error[0] == "COLUMN_COUNT"
        else:
            assert row.error is None
            assert row.values == row_values


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=8),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=60, deadline=None)
@given(
    records=st.lists(
        st.dictionaries(st.text(max_size=5), json_values, max_size=4) | json_scalars, max_size=8
    ),
    indent=st.sampled_from([None, 0, 2]),
    wrapped=st.booleans(),
    chunk=st.sampled_from([1, 2, 7, 1 << 20]),
)
def test_json_streaming_round_trip(
    tmp_path_factory: pytest.TempPathFactory,
    records: list[Any],
    indent: int | None,
    wrapped: bool,
    chunk: int,
) -> None:
    document: Any = (
        {"meta": {"n": [1, {"x": "]"}]}, "records": records, "z": "}"} if wrapped else records
    )
    path = tmp_path_factory.mktemp("json") / "c.json"
    path.write_text(json.dumps(document, indent=indent, ensure_ascii=False), encoding="utf-8")
    fmt = FormatSpec(records_path="records") if wrapped else None
    with chunk_bytes(chunk):
        reader, rows = read_all(path, fmt)
    assert [row.line_no for row in rows] == list(range(1, len(records) + 1))
    for row, record in zip(rows, records, strict=True):
        if isinstance(record, dict):
            assert row.values == record
        else:
            assert row.error is not None
            assert row.error[0] == "NOT_AN_OBJECT"
            assert json.loads(row.raw_text) == record
    columns: dict[str, None] = {}
    for record in records:
        if isinstance(record, dict):
            columns.update(dict.fromkeys(record))
    assert reader.info.columns == list(columns)
