"""Postal letters: one PDF per recipient, placed for French window envelopes, and the print-shop
file that goes with a batch.

Geometry (:class:`WindowLayout`, every length in millimetres from the page's top-left corner).
The defaults are an A4 sheet (210 x 297) folded in three (the top panel is 297 / 3 = 99 high)
into a DL envelope (110 x 220) whose window is 45 x 100, 20 from the envelope's right edge and
15 from its bottom edge: the usual French window envelope, with the recipient block in the
bottom-right part of the envelope's front, where La Poste asks for the address. The folded
sheet can move inside the envelope by the difference of sizes (10 sideways, 11 up and down).
The window falls on the page at 95-195 x 44.5-89.5 when the sheet is centred; the
*recipient zone* is the part of the page seen through the window wherever the sheet sits
(100-190 x 50-84, 90 x 34), minus an optional ``inner_margin``. The recipient block is printed
top-left in that zone; the sender block sits top-left of the page, away from the window; the
date line and the body start below the window's reach.

Address block: the customer's AFNOR NF Z10-011 lines, formatted upstream (at most 6 lines of at
most 38 characters, the last one ``POSTCODE CITY`` or the country). They are printed as given,
blank lines left out, in one sans-serif size (10 pt, down to 9 pt when a line of wide capitals
or six lines would not fit the zone; La Poste's addressing rules allow 9 to 12 pt). Too many
lines, a line too long, a control character or a line too wide even at 9 pt raise
:class:`ValueError`: the caller rejects that recipient.

Font: DejaVu Sans where Linux distributions install it (:data:`DEJAVU_CANDIDATES`; Debian's
``fonts-dejavu-core``) or any TTF given in the layout, reduced to its Latin, punctuation and
currency glyphs (once, cached in the temporary folder; a letter is then produced about twice
as fast); a character the reduced font cannot draw is refused with :class:`ValueError` rather
than printed as an empty box.
Without any TTF, the PDF core font Helvetica in its Windows-1252 encoding (French accents,
``œ``, ``€``, typographic quotes) is used and other characters are refused the same way.

Batches (:class:`LetterBatch`) write one PDF per recipient plus a manifest line, then a print
file sorted by postal code. fpdf2 keeps every page of a document in memory until the document
is written out, so one merged PDF of 100,000 letters would hold them all: per-recipient files
keep memory flat, and the print shop merges or prints them in the print file's order.

Print file (:func:`write_print_file`): CSV in UTF-8 with a byte-order mark (so that Excel,
which print shops open it with, reads the accents), ``;`` as separator (French Excel and most
French print-shop tools expect it), CRLF line ends, a header line. A cell starting with
``=``, ``+``, ``-`` or ``@`` is prefixed with ``'`` so that a spreadsheet never runs it as a
formula.
"""

from __future__ import annotations

import csv
import hashlib
import heapq
import os
import pickle
import re
import tempfile
import unicodedata
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Final, Self

from fontTools import subset  # type: ignore[import-untyped]
from fontTools.ttLib import TTFont  # type: ignore[import-untyped]
from fpdf import FPDF

MAX_ADDRESS_LINES: Final = 6
MAX_ADDRESS_LINE_LENGTH: Final = 38
MAX_REFERENCE_LENGTH: Final = 64
PT_TO_MM: Final = 25.4 / 72

# Where Linux distributions and macOS put DejaVu Sans.
DEJAVU_CANDIDATES: Final = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",  # Debian, Ubuntu
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",  # Fedora, RHEL
    "/usr/share/fonts/dejavu-sans-fonts/DejaVuSans.ttf",  # Fedora 36+
    "/usr/share/fonts/TTF/DejaVuSans.ttf",  # Arch
    "/usr/share/fonts/truetype/DejaVuSans.ttf",
    "/usr/local/share/fonts/DejaVuSans.ttf",
    "/Library/Fonts/DejaVuSans.ttf",
)
# The glyphs kept from a TTF: Latin (Basic, Latin-1, Extended-A and -B, Extended Additional),
# combining accents, general punctuation (French spaces and quotes), currency and letterlike
# symbols.
FONT_RANGES: Final = (
    (0x0020, 0x024F),
    (0x0300, 0x036F),
    (0x1E00, 0x1EFF),
    (0x2000, 0x206F),
    (0x20A0, 0x20CF),
    (0x2100, 0x214F),
)
PRINT_FILE_COLUMNS: Final = (
    "sequence",
    "outbox_key",
    *(f"address_line_{i}" for i in range(1, MAX_ADDRESS_LINES + 1)),
    "postal_code",
    "country",
    "pdf_file",
    "page_count",
)
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PARAGRAPH_BREAK: Final = re.compile(r"\n[ \t]*\n\s*")
_UNSAFE_NAME: Final = re.compile(r"[^A-Za-z0-9_.-]+")
_FORMULA_START: Final = ("=", "+", "-", "@")
# Helvetica's bounding box (Adobe's AFM): how far glyphs reach above and below the baseline.
_HELVETICA_ASCENT: Final = 0.931
_HELVETICA_DESCENT: Final = 0.225


@dataclass(frozen=True, slots=True)
class Rect:
    """A rectangle on the page, in millimetres from the top-left corner."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height


@dataclass(frozen=True, slots=True)
class WindowLayout:
    """Where things go on the letter, for one kind of paper, fold and window envelope.

    All lengths are millimetres. The envelope's window is given as La Poste and envelope
    makers state it: size, and distance from the envelope's right and bottom edges. The top
    panel of the folded sheet (``fold_height`` high) faces the window. ``font`` is ``"auto"``
    (DejaVu Sans from the system, else Helvetica), ``"helvetica"`` or the path of a TTF file.
    Raises :class:`ValueError` when the sheet does not fit the envelope, the window does not
    fit the envelope, or six address lines do not fit the recipient zone.

    >>> zone = WindowLayout().recipient_zone
    >>> (zone.left, zone.top, zone.right, zone.bottom)
    (100.0, 50.0, 190.0, 84.0)
    >>> WindowLayout(window_height=35.0).recipient_zone.height
    24.0
    """

    page_width: float = 210.0
    page_height: float = 297.0
    fold_height: float = 99.0
    envelope_width: float = 220.0
    envelope_height: float = 110.0
    window_width: float = 100.0
    window_height: float = 45.0
    window_from_right: float = 20.0
    window_from_bottom: float = 15.0
    inner_margin: float = 0.0
    margin_left: float = 20.0
    margin_right: float = 20.0
    margin_bottom: float = 20.0
    sender_left: float = 20.0
    sender_top: float = 15.0
    sender_width: float = 65.0
    date_top: float = 100.0
    body_top: float = 112.0
    font: str = "auto"
    address_font_size: float = 10.0
    address_min_font_size: float = 9.0
    address_line_spacing: float = 1.25
    sender_font_size: float = 9.0
    body_font_size: float = 10.0
    body_line_spacing: float = 1.4
    footer_font_size: float = 7.0

    def __post_init__(self) -> None:
        lengths = {
            name: getattr(self, name)
            for name in [
                "page_width",
                "page_height",
                "fold_height",
                "envelope_width",
                "envelope_height",
                "window_width",
                "window_height",
                "address_font_size",
                "address_min_font_size",
                "sender_font_size",
                "body_font_size",
                "footer_font_size",
                "sender_width",
            ]
        }
        for name, value in lengths.items():
            if not value > 0:
                raise ValueError(f"WindowLayout.{name} must be positive")
        if self.play_x < 0 or self.play_y < 0:
            raise ValueError(
                "WindowLayout: the folded sheet is larger than the envelope "
                f"({self.page_width} x {self.fold_height} in {self.envelope_width} x "
                f"{self.envelope_height})"
            )
        if (
            self.window_from_right < 0
            or self.window_from_bottom < 0
            or self.window_width + self.window_from_right > self.envelope_width
            or self.window_height + self.window_from_bottom > self.envelope_height
        ):
            raise ValueError("WindowLayout: the window does not fit the envelope")
        if self.address_min_font_size > self.address_font_size:
            raise ValueError("WindowLayout.address_min_font_size is above address_font_size")
        zone = self.recipient_zone
        needed = _block_height(MAX_ADDRESS_LINES, self.address_min_font_size, self)
        if zone.width <= 0 or zone.height < needed:
            raise ValueError(
                f"WindowLayout: the recipient zone ({zone.width:.1f} x {zone.height:.1f} mm) "
                f"cannot hold {MAX_ADDRESS_LINES} lines at {self.address_min_font_size} pt "
                f"({needed:.1f} mm high)"
            )
        if not self.body_top < self.page_height - self.margin_bottom:
            raise ValueError("WindowLayout.body_top is below the bottom margin")

    @property
    def play_x(self) -> float:
        """How far the sheet can move sideways either way from the envelope's centre."""
        return (self.envelope_width - self.page_width) / 2

    @property
    def play_y(self) -> float:
        """How far the folded sheet can move up or down from the envelope's centre."""
        return (self.envelope_height - self.fold_height) / 2

    @property
    def window_on_page(self) -> Rect:
        """The window, on the page, when the folded sheet is centred in the envelope."""
        left = self.envelope_width - self.window_from_right - self.window_width - self.play_x
        top = self.envelope_height - self.window_from_bottom - self.window_height - self.play_y
        return Rect(left, top, self.window_width, self.window_height)

    @property
    def recipient_zone(self) -> Rect:
        """The part of the page seen through the window wherever the sheet sits, minus
        ``inner_margin``: the recipient block is printed inside it."""
        window = self.window_on_page
        dx = self.play_x + self.inner_margin
        dy = self.play_y + self.inner_margin
        return Rect(
            window.left + dx, window.top + dy, window.width - 2 * dx, window.height - 2 * dy
        )

    @property
    def window_reach(self) -> Rect:
        """Every part of the page that may show through the window (the sheet moved as far as
        it can in each direction): nothing but the recipient block may be printed there."""
        window = self.window_on_page
        return Rect(
            window.left - self.play_x,
            window.top - self.play_y,
            window.width + 2 * self.play_x,
            window.height + 2 * self.play_y,
        )


def _block_height(lines: int, size_pt: float, layout: WindowLayout) -> float:
    """How high ``lines`` address lines are at ``size_pt``, with Helvetica's extent (the
    tallest of the fonts used: DejaVu Sans reaches 0.928 above and 0.236 below)."""
    size = size_pt * PT_TO_MM
    return size * ((lines - 1) * layout.address_line_spacing + 0.93 + 0.24)


DEFAULT_LAYOUT: Final = WindowLayout()


# --- text checks --------------------------------------------------------------------------


def check_address_lines(address_lines: Sequence[str]) -> tuple[str, ...]:
    """Check a recipient's AFNOR lines; return them as given, in Unicode NFC form.

    Takes up to 6 lines of at most 38 characters (blank lines are allowed and left out when
    printing; at least one line must not be blank). Raises :class:`ValueError` naming the line
    at fault, never quoting it (the text is personal data).

    >>> check_address_lines(["M. JEAN DUPONT", "12 RUE DES LILAS", "75011 PARIS"])
    ('M. JEAN DUPONT', '12 RUE DES LILAS', '75011 PARIS')
    >>> check_address_lines(["X" * 39, "75011 PARIS"])
    Traceback (most recent call last):
    ...
    ValueError: address line 1 has 39 characters; AFNOR NF Z10-011 allows at most 38
    """
    if isinstance(address_lines, str):
        raise TypeError("address_lines must be a sequence of lines, not one string")
    lines = tuple(address_lines)
    if len(lines) > MAX_ADDRESS_LINES:
        raise ValueError(
            f"the address has {len(lines)} lines; AFNOR NF Z10-011 allows at most "
            f"{MAX_ADDRESS_LINES}"
        )
    checked: list[str] = []
    for number, line in enumerate(lines, start=1):
        if not isinstance(line, str):
            raise TypeError(f"address line {number} is not a string")
        line = unicodedata.normalize("NFC", line)
        if _CONTROL.search(line):
            raise ValueError(f"address line {number} contains a line break or a control character")
        if len(line) > MAX_ADDRESS_LINE_LENGTH:
            raise ValueError(
                f"address line {number} has {len(line)} characters; AFNOR NF Z10-011 allows "
                f"at most {MAX_ADDRESS_LINE_LENGTH}"
            )
        checked.append(line)
    if not any(line.strip() for line in checked):
        raise ValueError("the address has no line to print")
    return tuple(checked)


def _check_line(text: str, what: str) -> str:
    text = unicodedata.normalize("NFC", text)
    if _CONTROL.search(text):
        raise ValueError(f"{what} contains a line break or a control character")
    return text


def _body_paragraphs(body_text: str) -> list[str]:
    """Paragraphs separated by blank lines; single line breaks kept; tabs become spaces."""
    text = unicodedata.normalize("NFC", body_text).replace("\r\n", "\n").replace("\r", "\n")
    text = text.replace("\t", " ")
    paragraphs = [p.strip("\n ") for p in _PARAGRAPH_BREAK.split(text.strip("\n"))]
    paragraphs = [p for p in paragraphs if p.strip()]
    for number, paragraph in enumerate(paragraphs, start=1):
        if _CONTROL.search(paragraph.replace("\n", " ")):
            raise ValueError(f"body paragraph {number} contains a control character")
    return paragraphs


# --- font ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Font:
    """The font a letter is printed with: a reduced TTF, or the core Helvetica."""

    family: str
    path: str | None  # the reduced TTF; None: core font
    source: str | None  # the TTF it was reduced from
    coverage: frozenset[int] | None  # None: Windows-1252
    ascent: float  # fractions of the font size
    descent: float

    def check(self, text: str, what: str) -> None:
        if self.coverage is None:
            try:
                text.encode("cp1252")
            except UnicodeEncodeError as exc:
                raise ValueError(
                    f"{what}: character U+{ord(text[exc.start]):04X} cannot be printed with "
                    "Helvetica (Windows-1252); install DejaVu Sans or set WindowLayout.font"
                ) from None
            return
        for char in text:
            if ord(char) not in self.coverage and char != "\n":
                raise ValueError(
                    f"{what}: character U+{ord(char):04X} cannot be printed with the letter "
                    f"font {self.family}"
                )

    def install(self, pdf: FPDF) -> None:
        if self.path is None or self.source is None:
            pdf.core_fonts_encoding = "windows-1252"
            return
        if not Path(self.path).is_file():  # the temporary folder was cleaned meanwhile
            _reduced_font(Path(self.source))
        pdf.add_font(self.family, fname=self.path)


_HELVETICA: Final = _Font("Helvetica", None, None, None, _HELVETICA_ASCENT, _HELVETICA_DESCENT)


@lru_cache(maxsize=8)
def _letter_font(spec: str) -> _Font:
    """The font for ``WindowLayout.font``; a TTF is reduced once and cached on disk."""
    if spec.lower() == "helvetica":
        return _HELVETICA
    if spec == "auto":
        found = next((p for p in DEJAVU_CANDIDATES if Path(p).is_file()), None)
        if found is None:
            return _HELVETICA
        source = Path(found)
    else:
        source = Path(spec)
        if not source.is_file():
            raise ValueError(f"WindowLayout.font: no font file at {spec}")
    try:
        reduced = _reduced_font(source)
        with TTFont(reduced, lazy=True) as ttf:
            coverage = frozenset(ttf.getBestCmap())
            units = ttf["head"].unitsPerEm
            ascent = ttf["hhea"].ascent / units
            descent = -ttf["hhea"].descent / units
    except Exception as exc:  # fontTools raises many kinds of errors on a bad file
        raise ValueError(f"WindowLayout.font: cannot use {source.name}: {exc}") from exc
    family = source.stem.replace(" ", "")
    return _Font(family, str(reduced), str(source), coverage, ascent, descent)


def _reduced_font(source: Path) -> Path:
    """A copy of ``source`` holding only the FONT_RANGES glyphs, cached in the temp folder
    under a name that changes with the source file."""
    stat = source.stat()
    key = f"{source.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{FONT_RANGES}".encode()
    folder = Path(tempfile.gettempdir()) / "tournesol-fonts"
    target = folder / f"{source.stem}-{hashlib.sha256(key).hexdigest()[:16]}.ttf"
    if target.is_file():
        return target
    options = subset.Options()
    options.notdef_outline = True
    options.name_IDs = ["*"]
    options.drop_tables = [*options.drop_tables, "FFTM"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(
        unicodes=[code for low, high in FONT_RANGES for code in range(low, high + 1)]
    )
    with TTFont(source) as ttf:
        subsetter.subset(ttf)
        folder.mkdir(parents=True, exist_ok=True)
        handle, temporary = tempfile.mkstemp(dir=folder, suffix=".tmp")
        try:
            with os.fdopen(handle, "wb") as out:
                ttf.save(out)
            os.replace(temporary, target)  # atomic: several processes may race here
        except BaseException:
            Path(temporary).unlink(missing_ok=True)
            raise
    return target


# --- rendering ----------------------------------------------------------------------------


class _LetterPDF(FPDF):
    """An FPDF document whose footer carries the letter's reference and page number."""

    def __init__(self, layout: WindowLayout, font: _Font, reference: str) -> None:
        super().__init__(unit="mm", format=(layout.page_width, layout.page_height))
        self.layout = layout
        self.letter_font = font
        self.reference = reference

    def footer(self) -> None:
        layout = self.layout
        self.set_font(self.letter_font.family, size=layout.footer_font_size)
        self.set_text_color(90)
        height = layout.footer_font_size * PT_TO_MM * 1.5
        # cell(), not text(): only cells replace the {nb} alias by the number of pages
        self.set_xy(layout.margin_left, layout.page_height - layout.margin_bottom / 2 - height)
        self.cell(0, height, f"{self.reference} · {self.page_no()}/{{nb}}")
        self.set_text_color(0)


def render_letter(
    *,
    layout: WindowLayout = DEFAULT_LAYOUT,
    sender_lines: Sequence[str],
    address_lines: Sequence[str],
    date_line: str,
    body_text: str,
    reference: str,
) -> bytes:
    """Render one letter as a PDF; return the PDF's bytes.

    Takes the layout, the sender block's lines (top-left), the recipient's AFNOR lines (see
    :func:`check_address_lines`), the date line (``"Paris, le 3 mars 2026"``), the body as plain
    text (paragraphs separated by blank lines, continued on further pages as needed) and a
    reference printed in every page's footer with the page number (the outbox key: never
    personal data). The PDF's metadata holds only the creator, producer and creation date.
    Raises :class:`ValueError` for an address that breaks the AFNOR limits or does not fit the
    window, a character the font cannot print, or a sender line too wide for its block.

    >>> pdf = render_letter(sender_lines=["Tournesol SA"], address_lines=["M. PAUL MARTIN",
    ...     "3 RUE VERTE", "69001 LYON"], date_line="Lyon, le 2 mars 2026",
    ...     body_text="Bonjour,\\n\\nMerci.", reference="OB-1")
    >>> pdf[:5]
    b'%PDF-'
    """
    data, _pages = _render(
        layout=layout,
        sender_lines=sender_lines,
        address_lines=address_lines,
        date_line=date_line,
        body_text=body_text,
        reference=reference,
    )
    return data


def _render(
    *,
    layout: WindowLayout,
    sender_lines: Sequence[str],
    address_lines: Sequence[str],
    date_line: str,
    body_text: str,
    reference: str,
) -> tuple[bytes, int]:
    """The letter's PDF bytes and its number of pages."""
    font = _letter_font(layout.font)
    address = [line for line in check_address_lines(address_lines) if line.strip()]
    for number, line in enumerate(address, start=1):
        font.check(line, f"address line {number}")
    senders = [_check_line(line, f"sender line {i}") for i, line in enumerate(sender_lines, 1)]
    for number, line in enumerate(senders, start=1):
        font.check(line, f"sender line {number}")
    date_text = _check_line(date_line, "date line")
    font.check(date_text, "date line")
    reference = _check_line(reference, "reference")
    if not reference.strip() or len(reference) > MAX_REFERENCE_LENGTH:
        raise ValueError(f"the reference must have 1 to {MAX_REFERENCE_LENGTH} characters")
    font.check(reference, "reference")
    paragraphs = _body_paragraphs(body_text)
    for number, paragraph in enumerate(paragraphs, start=1):
        font.check(paragraph, f"body paragraph {number}")

    pdf = _LetterPDF(layout, font, reference)
    pdf.set_creator("Tournesol")
    pdf.set_margins(layout.margin_left, layout.margin_bottom, layout.margin_right)
    pdf.set_auto_page_break(True, margin=layout.margin_bottom)
    font.install(pdf)
    pdf.add_page()
    _draw_sender(pdf, layout, font, senders)
    _draw_address(pdf, layout, font, address)
    if date_text.strip():
        pdf.set_font(font.family, size=layout.body_font_size)
        if layout.recipient_zone.left + pdf.get_string_width(date_text) > (
            layout.page_width - layout.margin_right
        ):
            raise ValueError("the date line is too wide for the page")
        size = layout.body_font_size * PT_TO_MM
        pdf.text(layout.recipient_zone.left, layout.date_top + font.ascent * size, date_text)
    _draw_body(pdf, layout, font, paragraphs)
    data = bytes(pdf.output())
    return data, pdf.page_no()


def _draw_sender(pdf: FPDF, layout: WindowLayout, font: _Font, lines: list[str]) -> None:
    pdf.set_font(font.family, size=layout.sender_font_size)
    size = layout.sender_font_size * PT_TO_MM
    step = size * layout.address_line_spacing
    baseline = layout.sender_top + font.ascent * size
    for number, line in enumerate(lines, start=1):
        if pdf.get_string_width(line) > layout.sender_width:
            raise ValueError(
                f"sender line {number} is wider than the sender block ({layout.sender_width} mm)"
            )
        if line.strip():
            pdf.text(layout.sender_left, baseline, line)
        baseline += step


def _draw_address(pdf: FPDF, layout: WindowLayout, font: _Font, lines: list[str]) -> None:
    """The recipient block, top-left in the recipient zone, at the largest size that fits."""
    zone = layout.recipient_zone
    size_pt = layout.address_font_size
    while True:
        pdf.set_font(font.family, size=size_pt)
        widths = [pdf.get_string_width(line) for line in lines]
        size = size_pt * PT_TO_MM
        height = font.ascent * size + (len(lines) - 1) * size * layout.address_line_spacing
        if max(widths) <= zone.width and height + font.descent * size <= zone.height:
            break
        size_pt -= 0.5
        if size_pt < layout.address_min_font_size:
            if max(widths) <= zone.width:
                raise ValueError("the address block is taller than the recipient zone")
            raise ValueError(
                f"address line {widths.index(max(widths)) + 1} is wider than the envelope "
                f"window ({zone.width:.0f} mm) even at {layout.address_min_font_size} pt"
            )
    baseline = zone.top + font.ascent * size
    for line in lines:
        pdf.text(zone.left, baseline, line)
        baseline += size * layout.address_line_spacing


def _draw_body(pdf: FPDF, layout: WindowLayout, font: _Font, paragraphs: list[str]) -> None:
    pdf.set_font(font.family, size=layout.body_font_size)
    height = layout.body_font_size * PT_TO_MM * layout.body_line_spacing
    pdf.set_xy(layout.margin_left, layout.body_top)
    for paragraph in paragraphs:
        pdf.multi_cell(0, height, paragraph, align="J", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(height * 0.6)


# --- print file ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PrintRow:
    """One letter in a print file: its outbox key (an outbox id; read back from a file as a
    string), address lines (as printed), postal code,
    country (ISO 3166 alpha-2, ``FR`` for France and its overseas departments), the PDF's path
    relative to the print file and its number of pages. Raises :class:`ValueError` for lines
    breaking the AFNOR limits or a page count below 1."""

    outbox_key: int | str
    address_lines: tuple[str, ...]
    postal_code: str
    country: str
    pdf_file: str
    page_count: int

    def __post_init__(self) -> None:
        object.__setattr__(self, "address_lines", check_address_lines(self.address_lines))
        object.__setattr__(self, "country", self.country.strip().upper())
        object.__setattr__(self, "postal_code", self.postal_code.strip())
        if not str(self.outbox_key).strip():
            raise ValueError("a print row needs its outbox key")
        if self.page_count < 1:
            raise ValueError("a letter has at least one page")


@dataclass(frozen=True, slots=True)
class PrintFileSummary:
    """What a print file holds: ``letters`` rows and ``pages`` pages in all."""

    letters: int
    pages: int


def _cell(value: str) -> str:
    """A cell a spreadsheet shows as text, never runs as a formula."""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _print_sort_key(row: PrintRow, index: int, domestic: str) -> tuple[int, str, str, int]:
    return (row.country != domestic, row.country, row.postal_code, index)


def write_print_file(
    path: Path | str,
    rows: Iterable[PrintRow],
    *,
    domestic_country: str = "FR",
    chunk_rows: int = 20_000,
) -> PrintFileSummary:
    """Write the print shop's file for a batch of letters, presorted; return its counts.

    Takes the target path and the letters in any order. Writes a CSV (UTF-8 with BOM, ``;``,
    CRLF; columns :data:`PRINT_FILE_COLUMNS`): domestic letters first by postal code (La
    Poste's presort), then foreign ones grouped by country and postal code; ties keep the
    order given. ``sequence`` numbers the rows 1..n in that order, the order of mailing.
    Memory stays flat: rows are sorted in chunks of ``chunk_rows`` spilled to temporary files
    and merged.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "print.csv"
    >>> rows = [PrintRow("k2", ("B", "69001 LYON"), "69001", "FR", "b.pdf", 2),
    ...         PrintRow("k1", ("A", "13001 MARSEILLE"), "13001", "FR", "a.pdf", 1)]
    >>> write_print_file(out, rows)
    PrintFileSummary(letters=2, pages=3)
    """
    if chunk_rows < 1:
        raise ValueError("chunk_rows must be at least 1")
    domestic = domestic_country.strip().upper()
    letters = pages = 0
    with tempfile.TemporaryDirectory(prefix="tournesol-print-") as spill:
        runs: list[Path] = []
        chunk: list[tuple[tuple[int, str, str, int], PrintRow]] = []
        for index, row in enumerate(rows):
            chunk.append((_print_sort_key(row, index, domestic), row))
            if len(chunk) >= chunk_rows:
                runs.append(_spill(chunk, Path(spill) / f"run{len(runs)}.pickle"))
                chunk = []
        chunk.sort(key=lambda item: item[0])
        merged: Iterator[tuple[tuple[int, str, str, int], PrintRow]] = heapq.merge(
            *(_read_run(run) for run in runs), iter(chunk), key=lambda item: item[0]
        )
        target = Path(path)
        with target.open("w", encoding="utf-8-sig", newline="") as out:
            writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
            writer.writerow(PRINT_FILE_COLUMNS)
            for _key, row in merged:
                letters += 1
                pages += row.page_count
                writer.writerow(_print_cells(letters, row))
    return PrintFileSummary(letters=letters, pages=pages)


def _print_cells(sequence: int, row: PrintRow) -> list[str]:
    lines = list(row.address_lines) + [""] * (MAX_ADDRESS_LINES - len(row.address_lines))
    return [
        str(sequence),
        _cell(str(row.outbox_key)),
        *(_cell(line) for line in lines),
        _cell(row.postal_code),
        _cell(row.country),
        row.pdf_file,
        str(row.page_count),
    ]


def _spill(chunk: list[tuple[tuple[int, str, str, int], PrintRow]], path: Path) -> Path:
    chunk.sort(key=lambda item: item[0])
    with path.open("wb") as out:
        for item in chunk:
            pickle.dump(item, out, protocol=pickle.HIGHEST_PROTOCOL)
    return path


def _read_run(path: Path) -> Iterator[tuple[tuple[int, str, str, int], PrintRow]]:
    """The items of one sorted run written by :func:`_spill` (our own temporary file)."""
    with path.open("rb") as run:
        while True:
            try:
                yield pickle.load(run)
            except EOFError:
                return


# --- batches ------------------------------------------------------------------------------

MANIFEST_NAME: Final = "manifest.csv"
PRINT_FILE_NAME: Final = "print_file.csv"
LETTERS_FOLDER: Final = "letters"


@dataclass
class LetterBatch:
    """A folder of letters for one print run, written one letter at a time.

    ``add`` renders a letter to ``letters/NNNN/SSSSSS-<key>.pdf`` (1,000 files per folder) and
    appends its line to ``manifest.csv`` (columns :data:`PRINT_FILE_COLUMNS`, ``sequence`` in
    the order of adding), flushed at once: after a crash the manifest lists exactly the letters
    written. ``finish`` writes ``print_file.csv`` sorted for the print shop from the manifest;
    a folder without a print file is an unfinished batch and must not be sent to print. Memory
    stays flat whatever the number of letters, except for the set of outbox keys already added
    (refused a second time: a letter is never printed twice in a batch).

    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp()) / "run-1"
    >>> with LetterBatch(folder, sender_lines=["Tournesol SA"]) as batch:
    ...     row = batch.add(outbox_key="OB-1", address_lines=["MME ANNE PETIT",
    ...         "5 PLACE BELLECOUR", "69002 LYON"], postal_code="69002", country="FR",
    ...         date_line="Lyon, le 2 mars 2026", body_text="Madame,\\n\\nBonjour.")
    ...     summary = batch.finish()
    >>> row.pdf_file, summary
    ('letters/0000/000001-OB-1.pdf', PrintFileSummary(letters=1, pages=1))
    """

    directory: Path
    sender_lines: Sequence[str]
    layout: WindowLayout = DEFAULT_LAYOUT
    files_per_folder: int = 1000
    count: int = field(default=0, init=False)
    pages: int = field(default=0, init=False)
    _keys: set[str] = field(default_factory=set, init=False, repr=False)
    _manifest: IO[str] | None = field(default=None, init=False, repr=False)
    _writer: Any = field(default=None, init=False, repr=False)
    _finished: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self.directory = Path(self.directory)
        if self.files_per_folder < 1:
            raise ValueError("files_per_folder must be at least 1")
        if (self.directory / MANIFEST_NAME).exists():
            raise ValueError(
                f"{self.directory} already holds a batch; give each print run its own folder"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._manifest = (self.directory / MANIFEST_NAME).open(
            "x", encoding="utf-8-sig", newline=""
        )
        self._writer = csv.writer(self._manifest, delimiter=";", lineterminator="\r\n")
        self._writer.writerow(PRINT_FILE_COLUMNS)
        self._manifest.flush()

    def add(
        self,
        *,
        outbox_key: int | str,
        address_lines: Sequence[str],
        postal_code: str,
        country: str = "FR",
        date_line: str,
        body_text: str,
    ) -> PrintRow:
        """Render one letter into the batch; return its print row.

        The outbox key is the letter's reference (footer) and part of its file name. Raises
        :class:`ValueError` for a recipient whose letter cannot be printed (see
        :func:`render_letter`) or a key already in the batch; nothing is written then.
        """
        if self._manifest is None or self._finished:
            raise ValueError("the batch is closed")
        key = str(outbox_key)
        if key in self._keys:
            raise ValueError("this outbox key is already in the batch")
        data, page_count = _render(
            layout=self.layout,
            sender_lines=self.sender_lines,
            address_lines=address_lines,
            date_line=date_line,
            body_text=body_text,
            reference=key,
        )
        sequence = self.count + 1
        folder = f"{(sequence - 1) // self.files_per_folder:04d}"
        safe_key = _UNSAFE_NAME.sub("_", key)[:48].strip("._") or "letter"
        relative = f"{LETTERS_FOLDER}/{folder}/{sequence:06d}-{safe_key}.pdf"
        target = self.directory / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        row = PrintRow(
            outbox_key=outbox_key,
            address_lines=tuple(address_lines),
            postal_code=postal_code,
            country=country,
            pdf_file=relative,
            page_count=page_count,
        )
        lines = list(row.address_lines) + [""] * (MAX_ADDRESS_LINES - len(row.address_lines))
        self._writer.writerow(
            [sequence, key, *lines, row.postal_code, row.country, relative, page_count]
        )
        self._manifest.flush()
        self._keys.add(key)
        self.count = sequence
        self.pages += page_count
        return row

    def finish(self) -> PrintFileSummary:
        """Close the manifest and write ``print_file.csv`` from it; return its counts."""
        self.close()
        if self._finished:
            raise ValueError("the batch is already finished")
        summary = write_print_file(self.directory / PRINT_FILE_NAME, read_manifest(self.directory))
        self._finished = True
        return summary

    def close(self) -> None:
        """Close the manifest without writing the print file (an unfinished batch)."""
        if self._manifest is not None:
            self._manifest.close()
            self._manifest = None

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def read_manifest(directory: Path | str) -> Iterator[PrintRow]:
    """The letters listed in a batch folder's ``manifest.csv``, in the order they were added.

    Takes the batch folder; yields :class:`PrintRow` objects, reading the file lazily.
    """
    with (Path(directory) / MANIFEST_NAME).open(encoding="utf-8-sig", newline="") as source:
        reader = csv.reader(source, delimiter=";")
        header = next(reader, None)
        if header is None or tuple(header) != PRINT_FILE_COLUMNS:
            raise ValueError(f"{directory}: {MANIFEST_NAME} is not a Tournesol batch manifest")
        for cells in reader:
            if not cells:
                continue
            lines = cells[2 : 2 + MAX_ADDRESS_LINES]
            while lines and not lines[-1]:
                lines.pop()
            yield PrintRow(
                outbox_key=cells[1],
                address_lines=tuple(lines),
                postal_code=cells[8],
                country=cells[9],
                pdf_file=cells[10],
                page_count=int(cells[11]),
            )
