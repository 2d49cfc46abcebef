"""Postal letters: the window geometry, the address block read back from the PDF with its
coordinates, the AFNOR limits, fonts, metadata, the print file and letter batches."""

from __future__ import annotations

import codecs
import csv
import io
import itertools
import string
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import pytest
from fontTools.ttLib import TTFont
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pypdf import PdfReader

from tournesol.channels.postal import (
    DEFAULT_LAYOUT,
    MANIFEST_NAME,
    PRINT_FILE_COLUMNS,
    PRINT_FILE_NAME,
    LetterBatch,
    PrintFileSummary,
    PrintRow,
    Rect,
    WindowLayout,
    _letter_font,
    check_address_lines,
    read_manifest,
    render_letter,
    write_print_file,
)

PT = 25.4 / 72  # mm per point
SENDER = ("Tournesol SA", "1 rue du Soleil", "75001 Paris")
ADDRESS = (
    "Mme Élodie Cœur-Lefèvre",
    "Appartement 12 Escalier B",
    "Résidence Les Tilleuls",
    "12 RUE DES LILAS",
    "BP 45",
    "75011 PARIS",
)
BODY = (
    "Madame,\n\nNous avons le plaisir de vous écrire : « oui », 100 € et l'œuvre.\n\nBien à vous."
)


@dataclass(frozen=True)
class Fragment:
    text: str
    x: float  # mm from the left edge
    baseline: float  # mm from the top edge
    size: float  # points


def fragments(pdf: bytes, page: int = 0) -> list[Fragment]:
    """The text of one page with its positions, as pypdf reads it (not as fpdf2 wrote it)."""
    reader = PdfReader(io.BytesIO(pdf))
    page_obj = reader.pages[page]
    height = float(page_obj.mediabox.height)
    found: list[Fragment] = []

    def visit(text: str, cm: list[float], tm: list[float], _font: object, size: float) -> None:
        if not text.strip():
            return
        x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
        y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
        scale = (tm[0] ** 2 + tm[1] ** 2) ** 0.5 * (cm[0] ** 2 + cm[1] ** 2) ** 0.5
        found.append(Fragment(text, x * PT, (height - y) * PT, size * scale))

    page_obj.extract_text(visitor_text=visit)
    return found


def lines_of(pdf: bytes, page: int = 0) -> list[Fragment]:
    """Fragments on the same baseline joined left to right, top to bottom."""
    rows: dict[float, list[Fragment]] = {}
    for frag in fragments(pdf, page):
        rows.setdefault(round(frag.baseline, 1), []).append(frag)
    joined = []
    for baseline in sorted(rows):
        parts = sorted(rows[baseline], key=lambda f: f.x)
        text = "".join(p.text for p in parts).strip("\n")
        joined.append(Fragment(text, parts[0].x, parts[0].baseline, parts[0].size))
    return joined


@cache
def _metrics() -> tuple[dict[int, int], int, float, float]:
    """Advance widths and vertical extent of the system's DejaVu Sans, read with fontTools:
    independent of how fpdf2 measures text."""
    path = _letter_font("auto").path
    assert path is not None
    with TTFont(path) as font:
        cmap = font.getBestCmap()
        hmtx = font["hmtx"]
        widths = {code: hmtx[name][0] for code, name in cmap.items()}
        units = font["head"].unitsPerEm
        return widths, units, font["hhea"].ascent / units, -font["hhea"].descent / units


def box(frag: Fragment) -> Rect:
    """The rectangle a line of text covers, in mm, from the font's own metrics."""
    widths, units, ascent, descent = _metrics()
    size = frag.size * PT
    width = sum(widths[ord(c)] for c in frag.text) / units * size
    return Rect(frag.x, frag.baseline - ascent * size, width, (ascent + descent) * size)


def inside(inner: Rect, outer: Rect, slack: float = 0.05) -> bool:
    return (
        inner.left >= outer.left - slack
        and inner.top >= outer.top - slack
        and inner.right <= outer.right + slack
        and inner.bottom <= outer.bottom + slack
    )


def overlaps(a: Rect, b: Rect) -> bool:
    return a.left < b.right and b.left < a.right and a.top < b.bottom and b.top < a.bottom


def letter(address: Sequence[str] = ADDRESS, **changes: object) -> bytes:
    arguments: dict[str, object] = {
        "layout": DEFAULT_LAYOUT,
        "sender_lines": SENDER,
        "address_lines": address,
        "date_line": "Paris, le 3 mars 2026",
        "body_text": BODY,
        "reference": "OB-000042",
    }
    arguments.update(changes)
    return render_letter(**arguments)  # type: ignore[arg-type]


needs_dejavu = pytest.mark.skipif(
    _letter_font("auto").path is None, reason="DejaVu Sans is not installed on this machine"
)


# --- geometry -----------------------------------------------------------------------------


def test_default_geometry_is_a_dl_window_envelope_with_an_a4_folded_in_three() -> None:
    layout = WindowLayout()
    assert (layout.play_x, layout.play_y) == (5.0, 5.5)
    assert layout.window_on_page == Rect(95.0, 44.5, 100.0, 45.0)
    assert layout.recipient_zone == Rect(100.0, 50.0, 90.0, 34.0)
    reach = layout.window_reach
    assert (reach.left, reach.top, reach.right, reach.bottom) == (90.0, 39.0, 200.0, 95.0)
    # the zone is the window's intersection over every position of the sheet in the envelope
    for dx in (0.0, 10.0):
        for dy in (0.0, 11.0):
            seen = Rect(100.0 - dx, 50.0 - dy, 100.0, 45.0)  # window in page coordinates
            assert inside(layout.recipient_zone, seen, slack=0)


def test_a_print_shop_envelope_is_configured_and_checked() -> None:
    layout = WindowLayout(
        window_width=90.0, window_height=40.0, window_from_right=15.0, inner_margin=1.0
    )
    zone = layout.recipient_zone
    assert (zone.left, zone.top, zone.width, zone.height) == (116.0, 56.0, 78.0, 27.0)
    with pytest.raises(ValueError, match="larger than the envelope"):
        WindowLayout(envelope_width=200.0)
    with pytest.raises(ValueError, match="does not fit the envelope"):
        WindowLayout(window_from_right=150.0)
    with pytest.raises(ValueError, match="cannot hold 6 lines"):
        WindowLayout(window_height=30.0)
    with pytest.raises(ValueError, match="must be positive"):
        WindowLayout(body_font_size=0)


# --- AFNOR lines ----------------------------------------------------------------------------


def test_address_lines_over_the_afnor_limits_are_refused_without_quoting_them() -> None:
    assert check_address_lines(["A" * 38, "75011 PARIS"]) == ("A" * 38, "75011 PARIS")
    with pytest.raises(ValueError, match=r"address line 2 has 39 characters") as error:
        check_address_lines(["M. DUPONT", "SECRET" + "X" * 33, "75011 PARIS"])
    assert "SECRET" not in str(error.value)
    with pytest.raises(ValueError, match="7 lines"):
        check_address_lines(["L"] * 7)
    with pytest.raises(ValueError, match="line break"):
        check_address_lines(["M. DUPONT\n12 RUE", "75011 PARIS"])
    with pytest.raises(ValueError, match="no line to print"):
        check_address_lines(["", "  "])
    with pytest.raises(TypeError):
        check_address_lines("M. DUPONT")


def test_length_is_counted_in_composed_characters() -> None:
    decomposed = "E\u0301" * 38  # 38 É written as E + combining acute: 76 code points
    assert check_address_lines([decomposed]) == ("É" * 38,)


printable = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cc", "Cs", "Zl", "Zp")),
    max_size=45,
)


@given(st.lists(printable, max_size=8))
def test_lines_are_accepted_exactly_when_they_respect_the_limits(lines: list[str]) -> None:
    import unicodedata

    composed = [unicodedata.normalize("NFC", line) for line in lines]
    expected_ok = (
        len(lines) <= 6
        and all(len(line) <= 38 for line in composed)
        and any(line.strip() for line in composed)
        and not any(c in line for line in composed for c in "\x85\u2028\u2029")
    )
    try:
        result = check_address_lines(lines)
    except ValueError:
        assert not expected_ok
    else:
        assert expected_ok
        assert result == tuple(composed)


# --- the letter -----------------------------------------------------------------------------


@needs_dejavu
def test_every_address_line_lies_inside_the_window_zone_in_order() -> None:
    pdf = letter()
    zone = DEFAULT_LAYOUT.recipient_zone
    lines = lines_of(pdf)
    texts = [line.text for line in lines]
    start = texts.index(ADDRESS[0])
    block = lines[start : start + len(ADDRESS)]
    assert [line.text for line in block] == list(ADDRESS)  # in order, accents intact
    assert all(a.baseline < b.baseline for a, b in itertools.pairwise(block))
    for line in block:
        assert inside(box(line), zone), (line, box(line), zone)
        assert line.size == DEFAULT_LAYOUT.address_font_size
    # nothing else may show through the window, wherever the sheet moves in the envelope
    others = [line for line in lines if line not in block]
    assert others
    for line in others:
        assert not overlaps(box(line), DEFAULT_LAYOUT.window_reach), line


@needs_dejavu
def test_sender_date_and_body_are_where_the_layout_puts_them() -> None:
    lines = lines_of(letter())
    by_text = {line.text: line for line in lines}
    sender = [by_text[text] for text in SENDER]
    assert all(abs(line.x - DEFAULT_LAYOUT.sender_left) < 0.01 for line in sender)
    assert all(box(line).right <= DEFAULT_LAYOUT.sender_left + 65 for line in sender)
    date = by_text["Paris, le 3 mars 2026"]
    assert box(date).top >= DEFAULT_LAYOUT.date_top - 0.05
    body = by_text["Madame,"]
    assert body.baseline > DEFAULT_LAYOUT.body_top
    assert "Nous avons le plaisir de vous écrire : « oui », 100 € et l'œuvre." in by_text


@needs_dejavu
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.text(alphabet=string.ascii_uppercase + "ÉÈÀÇÔœ -'0123456789", min_size=1, max_size=38)
        .map(str.strip)
        .filter(bool),
        min_size=1,
        max_size=6,
    )
)
def test_any_valid_block_fits_the_window_or_is_refused_as_too_wide(lines: list[str]) -> None:
    zone = DEFAULT_LAYOUT.recipient_zone
    try:
        pdf = letter(lines, body_text="Bonjour.", date_line="", sender_lines=())
    except ValueError as error:
        assert "wider than the envelope window" in str(error)
        return
    read = lines_of(pdf)[: len(lines)]
    assert [line.text for line in read] == lines
    for line in read:
        assert inside(box(line), zone), (line, box(line))
        assert DEFAULT_LAYOUT.address_min_font_size <= line.size <= 10


@needs_dejavu
def test_a_wide_line_shrinks_the_block_and_a_far_too_wide_one_is_refused() -> None:
    wide = ["M" * 31, "75011 PARIS"]
    read = lines_of(letter(wide, sender_lines=()))[:2]
    assert [line.text for line in read] == wide
    assert 9 <= read[0].size < 10 and read[0].size == read[1].size
    assert all(inside(box(line), DEFAULT_LAYOUT.recipient_zone) for line in read)
    with pytest.raises(ValueError, match="wider than the envelope window"):
        letter(["M" * 33, "75011 PARIS"])


@needs_dejavu
def test_a_low_window_gets_six_lines_in_a_smaller_size() -> None:
    layout = WindowLayout(window_height=35.0)  # 24 mm of recipient zone
    read = lines_of(letter(layout=layout, sender_lines=()))[:6]
    assert [line.text for line in read] == list(ADDRESS)
    assert all(9 <= line.size < 10 for line in read)
    assert all(inside(box(line), layout.recipient_zone) for line in read)
    three = lines_of(letter(ADDRESS[3:], layout=layout, sender_lines=()))[:3]
    assert all(line.size == 10 for line in three)  # fewer lines fit at the full size


def test_a_39_character_line_and_a_seventh_line_are_refused() -> None:
    with pytest.raises(ValueError, match="39 characters"):
        letter(["M. JEAN DUPONT", "X" * 39, "75011 PARIS"])
    with pytest.raises(ValueError, match="7 lines"):
        letter([*ADDRESS, "FRANCE"])


@needs_dejavu
def test_metadata_hold_no_personal_data() -> None:
    pdf = letter()
    metadata = PdfReader(io.BytesIO(pdf)).metadata
    assert metadata is not None
    assert set(metadata) <= {"/Creator", "/Producer", "/CreationDate"}
    assert metadata["/Creator"] == "Tournesol"
    flat = " ".join(str(value) for value in metadata.values())
    assert "Élodie" not in flat and "LILAS" not in flat
    assert b"Title" not in pdf and b"Author" not in pdf and b"Subject" not in pdf


@needs_dejavu
def test_a_long_body_continues_on_numbered_pages() -> None:
    body = "\n\n".join(f"Paragraphe {i} : " + "texte accentué, " * 30 for i in range(12))
    pdf = letter(body_text=body, reference="OB-7")
    reader = PdfReader(io.BytesIO(pdf))
    assert len(reader.pages) >= 2
    count = len(reader.pages)
    for number in range(count):
        texts = [line.text for line in lines_of(pdf, number)]
        assert f"OB-7 · {number + 1}/{count}" in texts
        for line in lines_of(pdf, number):
            assert box(line).bottom <= DEFAULT_LAYOUT.page_height - 5
    second = lines_of(pdf, 1)
    assert all(ADDRESS[0] != line.text for line in second)


@needs_dejavu
def test_characters_the_font_cannot_draw_are_refused_not_dropped() -> None:
    with pytest.raises(ValueError, match=r"body paragraph 1: character U\+6F22"):
        letter(body_text="Bonjour 漢")
    with pytest.raises(ValueError, match="address line 1"):
        letter(["M. 漢", "75011 PARIS"])
    with pytest.raises(ValueError, match="control character"):
        letter(body_text="Bonjour\x07")
    # Latin beyond French is printed: Polish, Czech, Vietnamese names
    pdf = letter(["Łukasz Dvořák Nguyễn", "75011 PARIS"], sender_lines=())
    assert lines_of(pdf)[0].text == "Łukasz Dvořák Nguyễn"


def test_helvetica_prints_windows_1252_and_refuses_the_rest() -> None:
    layout = WindowLayout(font="helvetica")
    pdf = letter(layout=layout)
    texts = [line.text for line in lines_of(pdf)]
    assert ADDRESS[0] in texts  # é, œ, è
    assert "Nous avons le plaisir de vous écrire : « oui », 100 € et l'œuvre." in texts
    with pytest.raises(ValueError, match=r"U\+0141 cannot be printed with Helvetica"):
        letter(["Łukasz", "75011 PARIS"], layout=layout)


def test_a_missing_font_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no font file"):
        letter(layout=WindowLayout(font=str(tmp_path / "none.ttf")))
    broken = tmp_path / "broken.ttf"
    broken.write_bytes(b"not a font")
    with pytest.raises(ValueError, match=r"cannot use broken\.ttf"):
        letter(layout=WindowLayout(font=str(broken)))


@needs_dejavu
def test_a_sender_line_wider_than_its_block_is_refused() -> None:
    with pytest.raises(ValueError, match="sender line 2 is wider"):
        letter(sender_lines=["Tournesol", "Une raison sociale beaucoup trop longue pour le bloc"])


# --- print file -----------------------------------------------------------------------------


def _rows() -> list[PrintRow]:
    return [
        PrintRow("k1", ("M. A", "69001 LYON"), "69001", "FR", "a.pdf", 1),
        PrintRow("k2", ("M. B", "1000 BRUXELLES", "BELGIQUE"), "1000", "be", "b.pdf", 2),
        PrintRow("k3", ("=HYPERLINK(x)", "13001 MARSEILLE"), "13001", "FR", "c.pdf", 1),
        PrintRow("k4", ("M. D", "69001 LYON"), "69001", "FR", "d.pdf", 3),
        PrintRow("k5", ("M. E", "97110 POINTE A PITRE"), "97110", "FR", "e.pdf", 1),
        PrintRow("k6", ("M. F", "10115 BERLIN", "ALLEMAGNE"), "10115", "DE", "f.pdf", 1),
        PrintRow("k7", ("M. G", "01000 BOURG EN BRESSE"), "01000", "FR", "g.pdf", 2),
    ]


def _read_print_file(path: Path) -> list[dict[str, str]]:
    raw = path.read_bytes()
    assert raw.startswith(codecs.BOM_UTF8)
    assert b"\r\n" in raw
    with path.open(encoding="utf-8-sig", newline="") as source:
        return list(csv.DictReader(source, delimiter=";"))


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 20_000])
def test_print_file_is_presorted_and_counted(tmp_path: Path, chunk_rows: int) -> None:
    target = tmp_path / "print.csv"
    summary = write_print_file(target, _rows(), chunk_rows=chunk_rows)
    assert summary == PrintFileSummary(letters=7, pages=11)
    rows = _read_print_file(target)
    assert list(rows[0]) == list(PRINT_FILE_COLUMNS)
    assert [r["outbox_key"] for r in rows] == ["k7", "k3", "k1", "k4", "k5", "k2", "k6"]
    assert [r["sequence"] for r in rows] == [str(i) for i in range(1, 8)]
    assert [r["country"] for r in rows] == ["FR"] * 5 + ["BE", "DE"]
    assert rows[1]["address_line_1"] == "'=HYPERLINK(x)"  # never a formula in a spreadsheet
    assert rows[5]["address_line_3"] == "BELGIQUE" and rows[5]["address_line_4"] == ""
    assert sum(int(r["page_count"]) for r in rows) == summary.pages


def test_an_empty_print_file_has_its_header(tmp_path: Path) -> None:
    target = tmp_path / "print.csv"
    assert write_print_file(target, []) == PrintFileSummary(0, 0)
    assert _read_print_file(target) == []
    assert target.read_text(encoding="utf-8-sig").startswith("sequence;outbox_key;")


@given(
    st.lists(
        st.tuples(
            st.sampled_from(["FR", "FR", "BE", "CH"]), st.from_regex(r"[0-9]{5}", fullmatch=True)
        ),
        max_size=40,
    ),
    st.integers(min_value=1, max_value=7),
)
@settings(max_examples=40, deadline=None)
def test_print_file_sort_is_stable_and_complete(
    items: list[tuple[str, str]], chunk_rows: int
) -> None:
    import tempfile

    rows = [
        PrintRow(f"k{i}", ("X", f"{code} VILLE"), code, country, f"{i}.pdf", 1)
        for i, (country, code) in enumerate(items)
    ]
    with tempfile.TemporaryDirectory() as folder:
        target = Path(folder) / "p.csv"
        write_print_file(target, rows, chunk_rows=chunk_rows)
        keys = [r["outbox_key"] for r in _read_print_file(target)]
    expected = sorted(
        range(len(rows)),
        key=lambda i: (rows[i].country != "FR", rows[i].country, rows[i].postal_code, i),
    )
    assert keys == [f"k{i}" for i in expected]


# --- batches --------------------------------------------------------------------------------


@needs_dejavu
def test_a_batch_writes_one_pdf_per_letter_a_manifest_and_the_print_file(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    recipients = [
        ("OB/3", ["M. TROIS", "3 RUE C", "69003 LYON"], "69003", "FR"),
        ("OB-1", ["Mme Un", "1 RUE A", "13001 MARSEILLE"], "13001", "FR"),
        ("OB-2", ["Herr Zwei", "Hauptstraße 2", "10115 BERLIN", "ALLEMAGNE"], "10115", "DE"),
    ]
    with LetterBatch(folder, sender_lines=SENDER, files_per_folder=2) as batch:
        rows = [
            batch.add(
                outbox_key=key,
                address_lines=lines,
                postal_code=code,
                country=country,
                date_line="Lyon, le 2 mars 2026",
                body_text=BODY,
            )
            for key, lines, code, country in recipients
        ]
        with pytest.raises(ValueError, match="already in the batch"):
            batch.add(
                outbox_key="OB-1",
                address_lines=["X", "75001 PARIS"],
                postal_code="75001",
                date_line="",
                body_text="x",
            )
        with pytest.raises(ValueError, match="39 characters"):
            batch.add(
                outbox_key="OB-9",
                address_lines=["X" * 39, "75001 PARIS"],
                postal_code="75001",
                date_line="",
                body_text="x",
            )
        assert batch.count == 3
        summary = batch.finish()
    assert summary == PrintFileSummary(letters=3, pages=3)
    assert [row.pdf_file for row in rows] == [
        "letters/0000/000001-OB_3.pdf",
        "letters/0000/000002-OB-1.pdf",
        "letters/0001/000003-OB-2.pdf",
    ]
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.pdf")) == sorted(
        row.pdf_file for row in rows
    )
    first = (folder / rows[0].pdf_file).read_bytes()
    assert lines_of(first)[3].text == "M. TROIS"  # after the three sender lines
    assert "OB/3 · 1/1" in [line.text for line in lines_of(first)]
    assert [row.outbox_key for row in read_manifest(folder)] == ["OB/3", "OB-1", "OB-2"]
    printed = _read_print_file(folder / PRINT_FILE_NAME)
    assert [r["outbox_key"] for r in printed] == ["OB-1", "OB/3", "OB-2"]
    assert printed[2]["address_line_2"] == "Hauptstraße 2"
    assert printed[0]["pdf_file"] == "letters/0000/000002-OB-1.pdf"


@needs_dejavu
def test_an_unfinished_batch_keeps_a_manifest_of_what_was_written(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    batch = LetterBatch(folder, sender_lines=SENDER)
    batch.add(
        outbox_key="OB-1",
        address_lines=["M. UN", "75001 PARIS"],
        postal_code="75001",
        date_line="",
        body_text="Bonjour.",
    )
    # a crash here: no print file, and the manifest lists the letter already written
    assert not (folder / PRINT_FILE_NAME).exists()
    assert [row.outbox_key for row in read_manifest(folder)] == ["OB-1"]
    batch.close()
    with pytest.raises(ValueError, match="closed"):
        batch.add(
            outbox_key="OB-2",
            address_lines=["M. DEUX", "75001 PARIS"],
            postal_code="75001",
            date_line="",
            body_text="x",
        )
    with pytest.raises(ValueError, match="already holds a batch"):
        LetterBatch(folder, sender_lines=SENDER)
    assert (folder / MANIFEST_NAME).read_bytes().startswith(codecs.BOM_UTF8)
