"""Call center: the call list handed to the agents, and the outcomes they send back.

Call list (:func:`write_call_list`): CSV, ``;`` separated, UTF-8 with a byte-order mark (so that
Excel opens it with its accents), CRLF line ends, one row per customer to call, columns
:data:`CALL_LIST_COLUMNS`. Phones are given twice: E.164 for the dialer (``+33612345678``;
Excel shows it as a number without its ``+``) and the French display form for the agent
(``06 12 34 56 78``; the international form for numbers outside the French ten-digit plan).
Dates are ISO 8601 (``2026-03-02``), amounts and scores use a decimal comma (French Excel reads
them as numbers). A text cell starting with ``=``, ``+``, ``-`` or ``@`` gets a leading ``'``
so that a spreadsheet never runs it as a formula (the outbox key, the customer id and phones
in E.164 excepted: the outcome file and the dialer need them as they are). The last columns,
:data:`OUTCOME_COLUMNS` but the key, are left empty for the call center to fill in, so the
same file can come back as the outcome file.

Outcomes (:func:`read_outcomes`): a CSV with at least ``outbox_key``, ``outcome`` and
``called_at`` columns, ``agent`` and ``note`` optional, other columns ignored (French header
names are understood too: ``cle``, ``resultat``, ``date_appel``, ``conseiller``,
``commentaire``...). The encoding is detected (byte-order mark; UTF-8; otherwise the Western
encoding charset-normalizer prefers among cp1252, ISO 8859-15, latin-1, cp850 and Mac Roman),
the separator too (``;``, ``,``, tab or ``|``: the one that makes the header's known columns).
Every data row ends up either as a :class:`CallOutcome` or as a :class:`Reject` with its line
number, a code and a reason; only blank rows are skipped. A file whose header lacks a required
column raises :class:`OutcomeFileError`. The whole file is held in memory (outcome files are
call lists, not the customer base).
"""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import unicodedata
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, datetime, tzinfo
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Final, cast
from zoneinfo import ZoneInfo

import phonenumbers

from tournesol.quality.phones import FRENCH_PLAN

PARIS: Final = ZoneInfo("Europe/Paris")
MAX_PHONES: Final = 3
MAX_RECORD_LINES: Final = 50  # a quoted field still open after this many lines: a stray quote
DELIMITERS: Final = (";", ",", "\t", "|")  # in order of preference on a tie
LEGACY_ENCODINGS: Final = ("cp1252", "iso8859_15", "latin_1", "cp850", "mac_roman")
YEARS: Final = (1970, 2100)  # called_at outside these years is refused


class Outcome(StrEnum):
    """What came of one call attempt."""

    REACHED_INTERESTED = "reached_interested"
    REACHED_NOT_INTERESTED = "reached_not_interested"
    CALLBACK = "callback"  # reached, asks to be called again later
    NO_ANSWER = "no_answer"
    BUSY = "busy"
    WRONG_NUMBER = "wrong_number"
    DO_NOT_CALL = "do_not_call"  # the customer objects to calls: record an opposition
    VOICEMAIL = "voicemail"

    @property
    def reached(self) -> bool:
        """The customer was spoken to."""
        return self in _REACHED


_REACHED: Final = frozenset(
    {Outcome.REACHED_INTERESTED, Outcome.REACHED_NOT_INTERESTED, Outcome.CALLBACK,
     Outcome.DO_NOT_CALL}
)  # fmt: skip

# Other ways call centers write the outcomes, after _key() (lower case, no accents, "_").
OUTCOME_ALIASES: Final[Mapping[str, Outcome]] = {
    "interesse": Outcome.REACHED_INTERESTED,
    "joint_interesse": Outcome.REACHED_INTERESTED,
    "interested": Outcome.REACHED_INTERESTED,
    "pas_interesse": Outcome.REACHED_NOT_INTERESTED,
    "non_interesse": Outcome.REACHED_NOT_INTERESTED,
    "joint_pas_interesse": Outcome.REACHED_NOT_INTERESTED,
    "not_interested": Outcome.REACHED_NOT_INTERESTED,
    "rappel": Outcome.CALLBACK,
    "a_rappeler": Outcome.CALLBACK,
    "call_back": Outcome.CALLBACK,
    "pas_de_reponse": Outcome.NO_ANSWER,
    "non_reponse": Outcome.NO_ANSWER,
    "ne_repond_pas": Outcome.NO_ANSWER,
    "no_reply": Outcome.NO_ANSWER,
    "occupe": Outcome.BUSY,
    "faux_numero": Outcome.WRONG_NUMBER,
    "mauvais_numero": Outcome.WRONG_NUMBER,
    "numero_errone": Outcome.WRONG_NUMBER,
    "numero_invalide": Outcome.WRONG_NUMBER,
    "ne_plus_appeler": Outcome.DO_NOT_CALL,
    "opposition": Outcome.DO_NOT_CALL,
    "refus_appels": Outcome.DO_NOT_CALL,
    "dnc": Outcome.DO_NOT_CALL,
    "repondeur": Outcome.VOICEMAIL,
    "messagerie": Outcome.VOICEMAIL,
    "message_laisse": Outcome.VOICEMAIL,
}

OUTCOME_COLUMNS: Final = ("outbox_key", "outcome", "called_at", "agent", "note")
REQUIRED_COLUMNS: Final = ("outbox_key", "outcome", "called_at")
# Header names understood for each outcome column, after _key().
COLUMN_ALIASES: Final[Mapping[str, tuple[str, ...]]] = {
    "outbox_key": ("outbox_key", "outbox", "outbox_id", "cle", "cle_envoi", "key"),
    "outcome": ("outcome", "resultat", "result", "statut_appel", "issue", "qualification"),
    "called_at": ("called_at", "date_appel", "date_heure", "date_heure_appel", "call_date"),
    "agent": ("agent", "conseiller", "teleconseiller", "operateur", "operator"),
    "note": ("note", "notes", "commentaire", "commentaires", "comment", "remarque"),
}

CALL_LIST_COLUMNS: Final = (
    "outbox_key",
    "customer_id",
    "civility",
    "first_name",
    "last_name",
    *(f"phone_{i}{suffix}" for i in range(1, MAX_PHONES + 1) for suffix in ("", "_display")),
    "preferred_days",
    "preferred_hours",
    "language",
    "last_purchase_date",
    "last_purchase_amount",
    "rfm_segment",
    "score",
    "campaign",
    "script_reference",
    *OUTCOME_COLUMNS[1:],
)

_E164: Final = re.compile(r"\+[1-9][0-9]{6,14}")
_FORMULA_START: Final = ("=", "+", "-", "@")
_FRENCH_DATE: Final = re.compile(
    r"(\d{1,2})[/.\-](\d{1,2})[/.\-](\d{4})(?:\s*[T ,]\s*|\s+[àa]\s+)"
    r"(\d{1,2})(?::(\d{2})(?::(\d{2}))?|\s*[hH]\s*(\d{2})?)"
)
_FRENCH_DAY: Final = re.compile(r"\d{1,2}[/.\-]\d{1,2}[/.\-]\d{4}")
_LINE: Final = re.compile(r"[^\r\n]*(?:\r\n|\r|\n)|[^\r\n]+\Z")


# --- call list ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallRow:
    """One customer to call, with what the agent needs to know.

    ``phones``: 1 to 3 numbers in E.164, the preferred first. ``preferred_days`` and
    ``preferred_hours`` are written as the consent preferences store them (``mon,tue,fri``,
    ``09:00-12:00,14:00-18:00``). ``score`` is the campaign's model score; ``script_reference``
    names the call script. Raises :class:`ValueError` (never quoting a number) when a phone is
    not E.164 or there is none or more than 3.

    >>> row = CallRow(outbox_key=7, customer_id=42, phones=("+33612345678",),
    ...               campaign_name="Printemps")
    >>> row.displayed_phones
    ('06 12 34 56 78',)
    """

    outbox_key: int | str
    customer_id: int | str
    phones: tuple[str, ...]
    campaign_name: str
    civility: str | None = None
    first_name: str | None = None
    last_name: str | None = None
    preferred_days: str | None = None
    preferred_hours: str | None = None
    language: str | None = None
    last_purchase_date: date | None = None
    last_purchase_amount: Decimal | None = None
    rfm_segment: str | None = None
    score: float | None = None
    script_reference: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.phones, str):
            raise TypeError("phones must be a tuple of E.164 numbers, not one string")
        object.__setattr__(self, "phones", tuple(self.phones))
        if not str(self.outbox_key).strip():
            raise ValueError("a call row needs its outbox key")
        if not 1 <= len(self.phones) <= MAX_PHONES:
            raise ValueError(f"a call row needs 1 to {MAX_PHONES} phone numbers")
        for number, phone in enumerate(self.phones, start=1):
            if not isinstance(phone, str) or not _E164.fullmatch(phone):
                raise ValueError(f"phone {number} is not an E.164 number (+ and digits)")
            if not phonenumbers.is_possible_number(phonenumbers.parse(phone)):
                raise ValueError(f"phone {number} is not a possible number for its country")

    @property
    def displayed_phones(self) -> tuple[str, ...]:
        """The phones as an agent reads them (see :func:`display_phone`)."""
        return tuple(display_phone(phone) for phone in self.phones)


def display_phone(e164: str) -> str:
    """A phone number in E.164 as written in France: the national form (``06 12 34 56 78``,
    ``0690 00 12 34`` for Guadeloupe) in the French ten-digit plan, the international form
    (``+44 20 7946 0958``) elsewhere.

    >>> display_phone("+33612345678"), display_phone("+442079460958")
    ('06 12 34 56 78', '+44 20 7946 0958')
    """
    parsed = phonenumbers.parse(e164)
    region = phonenumbers.region_code_for_number(parsed)
    style = (
        phonenumbers.PhoneNumberFormat.NATIONAL
        if region in FRENCH_PLAN
        else phonenumbers.PhoneNumberFormat.INTERNATIONAL
    )
    return phonenumbers.format_number(parsed, style)


def _text_cell(value: str | None) -> str:
    """Free text as a cell: never a formula, line breaks kept (the CSV quotes them)."""
    if value is None:
        return ""
    return "'" + value if value.startswith(_FORMULA_START) else value


def _decimal_comma(value: Decimal | float | None, places: int | None) -> str:
    if value is None:
        return ""
    if places is not None:
        text = str(Decimal(value).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))
    else:
        text = format(value, ".6g")
    return text.replace(".", ",")


def _call_cells(row: CallRow) -> list[str]:
    phones: list[str] = []
    for index in range(MAX_PHONES):
        if index < len(row.phones):
            phones += [row.phones[index], display_phone(row.phones[index])]
        else:
            phones += ["", ""]
    return [
        str(row.outbox_key),  # system ids, read back as they are: never prefixed
        str(row.customer_id),
        _text_cell(row.civility),
        _text_cell(row.first_name),
        _text_cell(row.last_name),
        *phones,
        _text_cell(row.preferred_days),
        _text_cell(row.preferred_hours),
        _text_cell(row.language),
        row.last_purchase_date.isoformat() if row.last_purchase_date is not None else "",
        _decimal_comma(row.last_purchase_amount, 2),
        _text_cell(row.rfm_segment),
        _decimal_comma(row.score, None),
        _text_cell(row.campaign_name),
        _text_cell(row.script_reference),
        *([""] * (len(OUTCOME_COLUMNS) - 1)),
    ]


def write_call_list(
    target: str | os.PathLike[str] | IO[str] | IO[bytes], rows: Iterable[CallRow]
) -> int:
    """Write a call list; return the number of rows written.

    Takes a path (the file is created or replaced), a binary stream (UTF-8 with BOM is written
    to it) or a text stream (a BOM character is written first; open it with ``newline=""``),
    and the rows, consumed one at a time (memory stays flat). The stream is flushed, not
    closed.

    >>> out = io.BytesIO()
    >>> write_call_list(out, [CallRow(outbox_key=7, customer_id=42,
    ...                               phones=("+33612345678",), campaign_name="Printemps")])
    1
    >>> out.getvalue().decode("utf-8-sig").splitlines()[1][:40]
    '7;42;;;;+33612345678;06 12 34 56 78;;;;;'
    """
    if isinstance(target, str | os.PathLike):
        with Path(target).open("w", encoding="utf-8-sig", newline="") as out:
            return _write_rows(out, rows)
    if isinstance(target, io.TextIOBase):
        target.write("\ufeff")
        return _write_rows(target, rows)
    wrapper = io.TextIOWrapper(cast(IO[bytes], target), encoding="utf-8-sig", newline="")
    try:
        return _write_rows(wrapper, rows)
    finally:
        wrapper.detach()  # leave the caller's stream open


def _write_rows(out: IO[str], rows: Iterable[CallRow]) -> int:
    writer = csv.writer(out, delimiter=";", lineterminator="\r\n")
    writer.writerow(CALL_LIST_COLUMNS)
    count = 0
    for row in rows:
        writer.writerow(_call_cells(row))
        count += 1
    out.flush()
    return count


# --- outcomes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CallOutcome:
    """One call attempt read back: the outbox key (as written in the file), the outcome, when
    (timezone-aware), the agent and the agent's note; ``line_no`` is where its row starts."""

    line_no: int
    outbox_key: str
    outcome: Outcome
    called_at: datetime
    agent: str | None = None
    note: str | None = None

    @property
    def opposition(self) -> bool:
        """The customer objected to calls: the caller records an opposition for the phone."""
        return self.outcome is Outcome.DO_NOT_CALL


@dataclass(frozen=True, slots=True)
class Reject:
    """A row that gave no outcome: where it starts (1-based, the header is its own line),
    a code (``decode``, ``unterminated_quote``, ``csv``, ``field_count``, ``missing_key``,
    ``not_called``, ``missing_outcome``, ``bad_outcome``, ``missing_called_at``,
    ``bad_called_at``, ``duplicate``), a reason without personal data, and the row as read
    (personal data: store it with the rejects, never log it)."""

    line_no: int
    code: str
    reason: str
    raw_text: str


class OutcomeFileError(ValueError):
    """The file cannot be read as outcomes at all (no header, a required column missing)."""


def parse_called_at(text: str, *, tz: tzinfo = PARIS) -> datetime:
    """Read when a call was made; return an aware datetime.

    Takes ISO 8601 (``2026-03-02T14:30:00+01:00``, ``2026-03-02 14:30``, ``...Z``) or the
    French ``dd/mm/yyyy hh:mm[:ss]`` (also with ``-`` or ``.`` between the date's parts and
    ``14h30``); a time without offset is read in ``tz`` (Europe/Paris); on the night clocks
    change, a time that does not exist or occurs twice takes the offset in force before the
    change. Raises :class:`ValueError` for anything else, a date without a time, or a year
    outside 1970-2100 (the message never quotes the text).

    >>> parse_called_at("02/03/2026 14h30").isoformat()
    '2026-03-02T14:30:00+01:00'
    >>> parse_called_at("2026-07-01T08:00:00Z").isoformat()
    '2026-07-01T08:00:00+00:00'
    """
    value = text.strip()
    found = _FRENCH_DATE.fullmatch(value)
    try:
        if found is not None:
            day, month, year, hour, minute, second, minute_h = found.groups()
            moment = datetime(
                int(year),
                int(month),
                int(day),
                int(hour),
                int(minute or minute_h or 0),
                int(second or 0),
            )
        else:
            if _FRENCH_DAY.fullmatch(value):
                raise ValueError("called_at has a date but no time")
            try:
                date.fromisoformat(value)
            except ValueError:
                pass
            else:
                raise ValueError("called_at has a date but no time")
            moment = datetime.fromisoformat(value)
    except ValueError as exc:
        if "no time" in str(exc):
            raise
        raise ValueError(
            "called_at is not a date and time: write ISO 8601 (2026-03-02T14:30:00+01:00) "
            "or dd/mm/yyyy hh:mm"
        ) from None
    if not YEARS[0] <= moment.year <= YEARS[1]:
        raise ValueError(f"called_at is outside the years {YEARS[0]}-{YEARS[1]}")
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=tz)
    return moment


def outcome_of(text: str) -> Outcome:
    """An outcome code or one of its French or English aliases; :class:`ValueError` if none.

    >>> outcome_of("Répondeur"), outcome_of("DO-NOT-CALL")
    (<Outcome.VOICEMAIL: 'voicemail'>, <Outcome.DO_NOT_CALL: 'do_not_call'>)
    """
    key = _key(text)
    try:
        return Outcome(key)
    except ValueError:
        pass
    alias = OUTCOME_ALIASES.get(key)
    if alias is None:
        raise ValueError(
            "unknown outcome; expected one of " + ", ".join(outcome.value for outcome in Outcome)
        )
    return alias


def _key(text: str) -> str:
    """Lower case, accents off, every run of other characters one ``_``."""
    folded = unicodedata.normalize("NFKD", text.strip().lower())
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return re.sub(r"[^a-z0-9]+", "_", folded).strip("_")


def read_outcomes(
    source: IO[bytes] | bytes | str | os.PathLike[str],
) -> tuple[list[CallOutcome], list[Reject]]:
    """Read a call center's outcome file; return the outcomes and the rejected rows.

    Takes a binary stream, the file's bytes or its path. Every non-blank data row becomes one
    :class:`CallOutcome` or one :class:`Reject`, in file order. Several attempts for the same
    key are kept (no answer, then a callback...); the same key, outcome and time twice is a
    ``duplicate``. A row with neither outcome nor time is ``not_called``. Raises
    :class:`OutcomeFileError` when the header lacks ``outbox_key``, ``outcome`` or
    ``called_at`` (or a known alias).

    >>> outcomes, rejects = read_outcomes(
    ...     b"outbox_key;outcome;called_at\\n7;busy;02/03/2026 14:30\\n8;lunch;02/03/2026 15:00\\n")
    >>> [(o.outbox_key, o.outcome.value) for o in outcomes], [(r.line_no, r.code) for r in rejects]
    ([('7', 'busy')], [(3, 'bad_outcome')])
    """
    if isinstance(source, bytes):
        data = source
    elif isinstance(source, str | os.PathLike):
        data = Path(source).read_bytes()
    else:
        data = source.read()
    encoding, lines, bad = _decode(data)
    header_index = next((i for i, line in enumerate(lines) if line.strip()), None)
    if header_index is None:
        return [], []
    delimiter, columns, width = _header(lines[header_index])
    outcomes: list[CallOutcome] = []
    rejects: list[Reject] = []
    seen: dict[tuple[str, Outcome, datetime], int] = {}
    for record in _records(lines, delimiter, header_index + 1):
        raw = "".join(lines[record.first - 1 : record.last]).rstrip("\r\n")
        if record.fields is None:
            rejects.append(Reject(record.first, record.code, record.reason, raw))
            continue
        if not any(field.strip() for field in record.fields):
            continue  # a row of separators only: nothing to read
        undecodable = [no for no in range(record.first, record.last + 1) if no in bad]
        if undecodable:
            rejects.append(
                Reject(record.first, "decode", f"bytes not valid {encoding} in this row", raw)
            )
            continue
        result = _outcome(record, columns, width)
        if isinstance(result, Reject):
            rejects.append(Reject(result.line_no, result.code, result.reason, raw))
            continue
        identity = (result.outbox_key, result.outcome, result.called_at)
        if identity in seen:
            rejects.append(
                Reject(record.first, "duplicate", f"the same call as line {seen[identity]}", raw)
            )
            continue
        seen[identity] = record.first
        outcomes.append(result)
    return outcomes, rejects


def _outcome(record: _Record, columns: dict[str, int], width: int) -> CallOutcome | Reject:
    """One data row checked; the Reject's raw text is filled in by the caller."""
    fields = record.fields or []
    line = record.first
    if len(fields) > width and any(field.strip() for field in fields[width:]):
        return Reject(
            line,
            "field_count",
            f"{len(fields)} fields where the header has {width} (a separator inside an "
            "unquoted note?)",
            "",
        )
    fields = fields + [""] * (width - len(fields))

    def value(name: str) -> str:
        index = columns.get(name)
        return fields[index].strip() if index is not None else ""

    key, outcome_text, called_text = value("outbox_key"), value("outcome"), value("called_at")
    if not key:
        return Reject(line, "missing_key", "outbox_key is empty", "")
    if not outcome_text and not called_text:
        return Reject(line, "not_called", "no outcome and no called_at: not called yet?", "")
    if not outcome_text:
        return Reject(line, "missing_outcome", "outcome is empty", "")
    try:
        outcome = outcome_of(outcome_text)
    except ValueError as exc:
        return Reject(line, "bad_outcome", str(exc), "")
    if not called_text:
        return Reject(line, "missing_called_at", "called_at is empty", "")
    try:
        called_at = parse_called_at(called_text)
    except ValueError as exc:
        return Reject(line, "bad_called_at", str(exc), "")
    return CallOutcome(
        line_no=line,
        outbox_key=key,
        outcome=outcome,
        called_at=called_at,
        agent=value("agent") or None,
        note=value("note") or None,
    )


# --- decoding and CSV records ---------------------------------------------------------------


def _decode(data: bytes) -> tuple[str, list[str], set[int]]:
    """The encoding's name, the physical lines (with their breaks) and the 1-based numbers of
    the lines that did not decode (kept with ``\\xNN`` escapes)."""
    for bom, codec in (
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return _decode_as(data[len(bom) :], codec)
    if len(data) >= 4 and data[1::2][:64].count(0) > 16 and not data[0::2][:64].count(0):
        return _decode_as(data, "utf-16-le")  # Excel's "Unicode text" without its BOM
    if len(data) >= 4 and data[0::2][:64].count(0) > 16 and not data[1::2][:64].count(0):
        return _decode_as(data, "utf-16-be")
    utf8 = other = 0
    sample: list[bytes] = []
    for raw in data.splitlines():
        if raw.isascii():
            continue
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            other += 1
            if len(sample) < 500:
                sample.append(raw)
        else:
            utf8 += 1
    if other == 0 or utf8 > other:
        return _decode_as(data, "utf-8")
    from charset_normalizer import from_bytes

    best = from_bytes(b"\n".join(sample), cp_isolation=list(LEGACY_ENCODINGS)).best()
    return _decode_as(data, best.encoding if best is not None else "cp1252")


def _decode_as(data: bytes, codec: str) -> tuple[str, list[str], set[int]]:
    bad: set[int] = set()
    if codec.startswith("utf-16"):
        # line breaks are two bytes: decode the whole text, then find its lines
        try:
            text = data.decode(codec)
        except UnicodeDecodeError:
            text = data.decode(codec, "replace")
            lines = _LINE.findall(text)
            bad = {no for no, line in enumerate(lines, start=1) if "\ufffd" in line}
            return codec, lines, bad
        return codec, _LINE.findall(text), bad
    lines = []
    for no, raw in enumerate(data.splitlines(keepends=True), start=1):
        try:
            lines.append(raw.decode(codec))
        except UnicodeDecodeError:
            lines.append(raw.decode(codec, "backslashreplace"))
            bad.add(no)
    return codec, lines, bad


def _header(line: str) -> tuple[str, dict[str, int], int]:
    """The separator, each known column's index and the number of columns."""
    best: tuple[int, str, dict[str, int], int] | None = None
    for delimiter in DELIMITERS:
        try:
            names = next(csv.reader([line], delimiter=delimiter), [])
        except csv.Error:
            continue
        columns = _known_columns([_key(name.lstrip("\ufeff")) for name in names])
        if best is None or len(columns) > best[0]:
            best = (len(columns), delimiter, columns, len(names))
    assert best is not None
    _count, delimiter, columns, width = best
    missing = [name for name in REQUIRED_COLUMNS if name not in columns]
    if missing:
        raise OutcomeFileError(
            "the outcome file's header lacks "
            + ", ".join(missing)
            + "; expected columns "
            + ";".join(OUTCOME_COLUMNS)
            + " (separated by ; , tab or |)"
        )
    return delimiter, columns, width


def _known_columns(keys: list[str]) -> dict[str, int]:
    """Column name -> index; a canonical name wins over an alias, else the first alias."""
    columns: dict[str, int] = {}
    for name, aliases in COLUMN_ALIASES.items():
        if name in keys:
            columns[name] = keys.index(name)
            continue
        index = next((i for i, key in enumerate(keys) if key in aliases), None)
        if index is not None:
            columns[name] = index
    return columns


@dataclass(frozen=True, slots=True)
class _Record:
    """A CSV record's first and last physical lines (1-based) and its fields, or why it has
    none (``code`` and ``reason``)."""

    first: int
    last: int
    fields: list[str] | None
    code: str = ""
    reason: str = ""


def _records(lines: list[str], delimiter: str, start: int) -> Iterator[_Record]:
    """The CSV records from ``lines[start]`` on. A quoted field may span lines, but one still
    open at the end of the file or after MAX_RECORD_LINES lines (an odd number of quotes) is
    taken for a stray quote: its first line is rejected and reading starts again on the next
    line, so a stray quote costs one row."""
    position = start
    total = len(lines)
    while position < total:
        if not lines[position].strip():
            position += 1
            continue
        limit = min(total, position + MAX_RECORD_LINES)
        reader = csv.reader(lines[position:limit], delimiter=delimiter)
        try:
            fields = next(reader)
        except csv.Error as exc:
            yield _Record(position + 1, position + 1, None, "csv", f"unreadable CSV ({exc})")
            position += 1
            continue
        except StopIteration:  # pragma: no cover - a non-blank line always gives a record
            position = limit
            continue
        used = max(reader.line_num, 1)
        raw = "".join(lines[position : position + used])
        if used > 1 and position + used >= limit and raw.count('"') % 2 == 1:
            yield _Record(
                position + 1,
                position + 1,
                None,
                "unterminated_quote",
                "a quote opened on this line is never closed; the next lines are read on their own",
            )
            position += 1
            continue
        yield _Record(position + 1, position + used, fields)
        position += used
