"""Call center: the call list as a call center opens it, and outcome files as they come back
(encodings, separators, French headers and dates, every bad row rejected with its line)."""

from __future__ import annotations

import codecs
import csv
import io
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tournesol.channels.callcenter import (
    CALL_LIST_COLUMNS,
    OUTCOME_COLUMNS,
    PARIS,
    CallOutcome,
    CallRow,
    Outcome,
    OutcomeFileError,
    display_phone,
    outcome_of,
    parse_called_at,
    read_outcomes,
    write_call_list,
)


def call_row(**changes: object) -> CallRow:
    values: dict[str, object] = {
        "outbox_key": 101,
        "customer_id": 42,
        "phones": ("+33612345678", "+33140000000"),
        "campaign_name": "Printemps 2026",
        "civility": "Mme",
        "first_name": "Élodie",
        "last_name": "Cœur",
        "preferred_days": "mon,tue,fri",
        "preferred_hours": "09:00-12:00,14:00-18:00",
        "language": "fr",
        "last_purchase_date": date(2026, 1, 15),
        "last_purchase_amount": Decimal("1234.5"),
        "rfm_segment": "champions",
        "score": 0.8125,
        "script_reference": "SCRIPT-PRINTEMPS-V2",
    }
    values.update(changes)
    return CallRow(**values)  # type: ignore[arg-type]


def read_list(raw: bytes) -> list[dict[str, str]]:
    assert raw.startswith(codecs.BOM_UTF8)
    text = raw.decode("utf-8-sig")
    assert "\r\n" in text
    return list(csv.DictReader(io.StringIO(text, newline=""), delimiter=";"))


# --- call list ------------------------------------------------------------------------------


def test_the_call_list_has_one_row_per_customer_with_phones_in_both_forms(tmp_path: Path) -> None:
    target = tmp_path / "calls.csv"
    rows = [
        call_row(),
        call_row(
            outbox_key="OB-2",
            customer_id="C-7",
            phones=("+590690001234", "+442079460958", "+33999999999"),
            civility=None,
            first_name=None,
            last_purchase_date=None,
            last_purchase_amount=None,
            score=None,
        ),
    ]
    assert write_call_list(target, rows) == 2
    read = read_list(target.read_bytes())
    assert tuple(read[0]) == CALL_LIST_COLUMNS
    first, second = read
    assert first["outbox_key"] == "101" and first["customer_id"] == "42"
    assert (first["first_name"], first["last_name"]) == ("Élodie", "Cœur")
    assert (first["phone_1"], first["phone_1_display"]) == ("+33612345678", "06 12 34 56 78")
    assert (first["phone_2"], first["phone_2_display"]) == ("+33140000000", "01 40 00 00 00")
    assert (first["phone_3"], first["phone_3_display"]) == ("", "")
    assert first["preferred_days"] == "mon,tue,fri"
    assert first["preferred_hours"] == "09:00-12:00,14:00-18:00"
    assert first["last_purchase_date"] == "2026-01-15"
    assert first["last_purchase_amount"] == "1234,50"
    assert first["score"] == "0,8125"
    assert first["rfm_segment"] == "champions"
    assert first["campaign"] == "Printemps 2026"
    assert first["script_reference"] == "SCRIPT-PRINTEMPS-V2"
    assert all(first[name] == "" for name in OUTCOME_COLUMNS[1:])
    assert second["phone_1_display"] == "0690 00 12 34"  # Guadeloupe: dialled as in France
    assert second["phone_2_display"] == "+44 20 7946 0958"
    assert second["phone_3_display"] == "09 99 99 99 99"
    assert second["civility"] == "" and second["score"] == "" and second["last_purchase_date"] == ""


def test_text_cells_never_become_spreadsheet_formulas() -> None:
    out = io.BytesIO()
    write_call_list(out, [call_row(last_name="=HYPERLINK(\"http://x\")", first_name="@SUM(A1)",
                                   campaign_name="-promo", rfm_segment="+1")])  # fmt: skip
    row = read_list(out.getvalue())[0]
    assert row["last_name"] == '\'=HYPERLINK("http://x")'
    assert row["first_name"] == "'@SUM(A1)"
    assert row["campaign"] == "'-promo" and row["rfm_segment"] == "'+1"
    assert row["phone_1"] == "+33612345678"  # the dialer needs E.164 as it is


def test_streams_text_or_binary_are_written_and_left_open() -> None:
    binary = io.BytesIO()
    assert write_call_list(binary, (call_row(outbox_key=i) for i in range(3))) == 3
    assert not binary.closed
    assert len(read_list(binary.getvalue())) == 3
    text = io.StringIO(newline="")
    assert write_call_list(text, [call_row()]) == 1
    assert text.getvalue().startswith("\ufeffoutbox_key;customer_id;")
    one = io.BytesIO()
    write_call_list(one, [call_row()])
    assert text.getvalue().encode("utf-8") == one.getvalue()


def test_notes_with_separators_quotes_and_line_breaks_survive_the_csv() -> None:
    out = io.BytesIO()
    write_call_list(out, [call_row(last_name='Dupont; "dit" le\nGrand')])
    assert read_list(out.getvalue())[0]["last_name"] == 'Dupont; "dit" le\nGrand'


def test_call_rows_check_their_phones_without_quoting_them() -> None:
    with pytest.raises(ValueError, match=r"phone 1 is not an E\.164 number") as error:
        call_row(phones=("0612345678",))
    assert "0612345678" not in str(error.value)
    with pytest.raises(ValueError, match="phone 2 is not a possible number"):
        call_row(phones=("+33612345678", "+3361234"))
    with pytest.raises(ValueError, match="1 to 3 phone numbers"):
        call_row(phones=())
    with pytest.raises(ValueError, match="1 to 3 phone numbers"):
        call_row(phones=("+33612345678",) * 4)
    with pytest.raises(TypeError):
        call_row(phones="+33612345678")
    with pytest.raises(ValueError, match="outbox key"):
        call_row(outbox_key=" ")


def test_display_phone() -> None:
    assert display_phone("+33612345678") == "06 12 34 56 78"
    assert display_phone("+262692123456") == "0692 12 34 56"
    assert display_phone("+37793152000") == "+377 93 15 20 00"  # Monaco: not the French plan


# --- outcomes -------------------------------------------------------------------------------


def test_a_call_list_comes_back_filled_in_and_is_read(tmp_path: Path) -> None:
    out = io.BytesIO()
    write_call_list(out, [call_row(outbox_key=k) for k in (1, 2, 3)])
    rows = read_list(out.getvalue())
    rows[0].update(outcome="reached_interested", called_at="02/03/2026 10:15", agent="Zoé",
                   note="Veut un devis")  # fmt: skip
    rows[1].update(outcome="do_not_call", called_at="2026-03-02T10:20:00+01:00", agent="Zoé")
    filled = io.StringIO(newline="")
    writer = csv.DictWriter(filled, fieldnames=CALL_LIST_COLUMNS, delimiter=";",
                            lineterminator="\r\n")  # fmt: skip
    writer.writeheader()
    writer.writerows(rows)
    outcomes, rejects = read_outcomes(filled.getvalue().encode("cp1252"))  # Excel saved it
    assert outcomes == [
        CallOutcome(2, "1", Outcome.REACHED_INTERESTED,
                    datetime(2026, 3, 2, 10, 15, tzinfo=PARIS), "Zoé", "Veut un devis"),
        CallOutcome(3, "2", Outcome.DO_NOT_CALL,
                    datetime(2026, 3, 2, 10, 20, tzinfo=timezone(timedelta(hours=1))), "Zoé"),
    ]  # fmt: skip
    assert outcomes[1].opposition and not outcomes[0].opposition
    assert [(r.line_no, r.code) for r in rejects] == [(4, "not_called")]
    assert rejects[0].raw_text.startswith("3;42;Mme;")


def test_french_headers_other_separators_and_encodings_are_understood() -> None:
    text = (
        "Clé;Résultat;Date appel;Conseiller;Commentaire\r\n"
        "A1;Répondeur;15/03/2026 14h30;Léa;Message laissé\r\n"
        "A2;Ne plus appeler;15/03/2026 à 14h35;Léa;\r\n"
        "A3;OCCUPÉ;15.03.2026 14:40:05;;\r\n"
    )
    expected = [
        ("A1", Outcome.VOICEMAIL, datetime(2026, 3, 15, 14, 30, tzinfo=PARIS), "Léa"),
        ("A2", Outcome.DO_NOT_CALL, datetime(2026, 3, 15, 14, 35, tzinfo=PARIS), "Léa"),
        ("A3", Outcome.BUSY, datetime(2026, 3, 15, 14, 40, 5, tzinfo=PARIS), None),
    ]
    variants = [
        text.encode("utf-8"),
        codecs.BOM_UTF8 + text.encode("utf-8"),
        text.encode("cp1252"),
        text.replace(";", ",").encode("cp1252"),
        codecs.BOM_UTF16_LE + text.replace(";", "\t").encode("utf-16-le"),
        text.replace(";", "\t").encode("utf-16-le"),
        text.replace(";", "|").encode("mac_roman"),
        text.encode("cp850"),
    ]
    for data in variants:
        outcomes, rejects = read_outcomes(data)
        assert rejects == []
        assert [(o.outbox_key, o.outcome, o.called_at, o.agent) for o in outcomes] == expected
        assert outcomes[0].note == "Message laissé"


def test_every_outcome_and_its_aliases() -> None:
    assert {outcome_of(o.value) for o in Outcome} == set(Outcome)
    assert outcome_of(" Reached-Interested ") is Outcome.REACHED_INTERESTED
    assert outcome_of("pas intéressé") is Outcome.REACHED_NOT_INTERESTED
    assert outcome_of("À rappeler") is Outcome.CALLBACK
    assert outcome_of("Pas de réponse") is Outcome.NO_ANSWER
    assert outcome_of("faux numéro") is Outcome.WRONG_NUMBER
    assert [o.reached for o in Outcome] == [True, True, True, False, False, False, True, False]
    with pytest.raises(ValueError, match="unknown outcome; expected one of reached_interested"):
        outcome_of("déjeuner")


def test_every_bad_row_is_rejected_with_its_line_and_nothing_is_dropped() -> None:
    data = (
        b"outbox_key;outcome;called_at;agent;note\n"  # 1
        b"K1;busy;02/03/2026 10:00;A;d\xc3\xa9j\xc3\xa0 vu\n"  # 2 (UTF-8)
        b"K2;lunch;02/03/2026 10:00;A;\n"  # 3 bad outcome
        b"K3;busy;31/02/2026 10:00;A;\n"  # 4 impossible date
        b"K4;busy;02/03/2026;A;\n"  # 5 no time
        b";busy;02/03/2026 10:00;A;\n"  # 6 no key
        b"K5;;02/03/2026 10:00;A;\n"  # 7 no outcome
        b"K6;busy;;A;\n"  # 8 no time at all
        b"K7;busy;02/03/2026 10:00;A;note;extra\n"  # 9 a separator in the note
        b'K8;callback;02/03/2026 11:00;A;"rappeler\n'  # 10 a note over two lines
        b'apres 18h"\n'  # 11
        b'K9;busy;02/03/2026 10:00;A;"stray quote\n'  # 12 never closed
        b"K10;no_answer;02/03/2026 12:00;A;\n"  # 13 still read
        b"\n"  # 14 blank
        b";;;;\n"  # 15 separators only
        b"K1;busy;02/03/2026 10:00;B;again\n"  # 16 the same call twice
        b"K1;no_answer;02/03/2026 16:00;B;\xc3\xa9t\xc3\xa9\n"  # 17 another attempt: kept
        b"K11;voicemail;02/03/2026 17:00;B;caf\xe9\n"  # 18 not UTF-8 (most lines are)
        b"K12;busy;1899-12-30T10:00;B;\n"  # 19 Excel's day zero
    )
    outcomes, rejects = read_outcomes(data)
    assert [(o.line_no, o.outbox_key, o.outcome) for o in outcomes] == [
        (2, "K1", Outcome.BUSY),
        (10, "K8", Outcome.CALLBACK),
        (13, "K10", Outcome.NO_ANSWER),
        (17, "K1", Outcome.NO_ANSWER),
    ]
    assert outcomes[1].note == "rappeler\napres 18h"
    assert [(r.line_no, r.code) for r in rejects] == [
        (3, "bad_outcome"),
        (4, "bad_called_at"),
        (5, "bad_called_at"),
        (6, "missing_key"),
        (7, "missing_outcome"),
        (8, "missing_called_at"),
        (9, "field_count"),
        (12, "unterminated_quote"),
        (16, "duplicate"),
        (18, "decode"),
        (19, "bad_called_at"),
    ]
    by_line = {r.line_no: r for r in rejects}
    assert by_line[5].reason == "called_at has a date but no time"
    assert by_line[16].reason == "the same call as line 2"
    assert by_line[9].raw_text == "K7;busy;02/03/2026 10:00;A;note;extra"
    assert by_line[18].raw_text.endswith("caf\\xe9")
    assert "1970-2100" in by_line[19].reason
    assert outcomes[0].note == "déjà vu"
    for reject in rejects:  # reasons can be logged: they quote nothing from the row
        assert not any(word in reject.reason for word in ("lunch", "31/02", "stray", "extra"))


def test_a_header_without_the_required_columns_is_a_file_error() -> None:
    with pytest.raises(OutcomeFileError, match="lacks outcome, called_at"):
        read_outcomes(b"outbox_key;result_code;when\n1;busy;x\n")
    with pytest.raises(OutcomeFileError):
        read_outcomes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    assert read_outcomes(b"") == ([], [])
    assert read_outcomes(b"\n\r\n  \n") == ([], [])


def test_paths_streams_and_bytes_are_read(tmp_path: Path) -> None:
    data = b"outbox_key,outcome,called_at\n7,busy,2026-03-02 10:00\n"
    path = tmp_path / "outcomes.csv"
    path.write_bytes(data)
    expected = read_outcomes(data)
    assert expected[0][0].outbox_key == "7"
    assert read_outcomes(path) == expected
    assert read_outcomes(str(path)) == expected
    assert read_outcomes(io.BytesIO(data)) == expected


# --- called_at --------------------------------------------------------------------------------


def test_called_at_formats() -> None:
    paris = datetime(2026, 3, 2, 14, 30, tzinfo=PARIS)
    for text in (
        "02/03/2026 14:30",
        "2/3/2026 14:30",
        "02/03/2026 14h30",
        "02-03-2026 14:30:00",
        "02.03.2026 à 14h30",
        "2026-03-02 14:30",
        "2026-03-02T14:30:00",
        "2026-03-02T14:30:00+01:00",
        "2026-03-02T13:30:00Z",
        "20260302T143000",
    ):
        assert parse_called_at(text) == paris, text
    assert parse_called_at("02/03/2026 14h").hour == 14
    assert parse_called_at("2026-07-01 09:00").utcoffset() == timedelta(hours=2)
    # the night clocks go forward, 02:30 does not exist: read with the offset before
    assert parse_called_at("29/03/2026 02:30").utcoffset() == timedelta(hours=1)
    for bad in ("", "hier", "2026-03-02", "02/03/2026", "32/01/2026 10:00", "2026-13-01T10:00",
                "02/03/26 10:00", "1969-12-31T23:00Z"):  # fmt: skip
        with pytest.raises(ValueError):
            parse_called_at(bad)


moments = st.datetimes(min_value=datetime(1970, 1, 2), max_value=datetime(2099, 12, 30))


@given(moments)
def test_naive_times_in_every_format_are_read_in_paris(moment: datetime) -> None:
    minute = moment.replace(second=0, microsecond=0)
    second = moment.replace(microsecond=0)
    cases = {
        f"{moment:%d/%m/%Y %H:%M}": minute,
        f"{moment:%d/%m/%Y %H:%M:%S}": second,
        f"{moment:%d-%m-%Y %Hh%M}": minute,
        f"{moment.day}/{moment.month}/{moment.year} {moment.hour}:{moment:%M}": minute,
        moment.isoformat(): moment,
        moment.isoformat(sep=" ", timespec="minutes"): minute,
    }
    for text, expected in cases.items():
        parsed = parse_called_at(text)
        assert parsed.tzinfo is PARIS
        assert parsed.replace(tzinfo=None) == expected, text


@given(moments, st.integers(min_value=-14 * 60, max_value=14 * 60))
def test_times_with_an_offset_keep_their_instant(moment: datetime, minutes: int) -> None:
    aware = moment.replace(tzinfo=timezone(timedelta(minutes=minutes)))
    parsed = parse_called_at(aware.isoformat())
    assert parsed == aware and parsed.utcoffset() == aware.utcoffset()
    utc = aware.astimezone(UTC)
    if 1970 <= utc.year <= 2100:
        assert parse_called_at(utc.strftime("%Y-%m-%dT%H:%M:%S.%fZ")) == aware


@given(st.text(max_size=40))
def test_any_text_is_a_time_or_a_value_error(text: str) -> None:
    try:
        parsed = parse_called_at(text)
    except ValueError as error:  # one of three fixed messages: never the text itself
        assert str(error).startswith(
            ("called_at is not a date and time", "called_at has a date but no time",
             "called_at is outside the years")
        )  # fmt: skip
    else:
        assert parsed.tzinfo is not None and 1970 <= parsed.year <= 2100


# --- arbitrary input ----------------------------------------------------------------------------


@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash_the_reader(data: bytes) -> None:
    try:
        outcomes, rejects = read_outcomes(data)
    except OutcomeFileError:
        return
    lines = [o.line_no for o in outcomes] + [r.line_no for r in rejects]
    assert len(lines) == len(set(lines))
    assert all(line >= 2 for line in lines)


@given(st.text(max_size=400))
@settings(max_examples=200)
def test_arbitrary_text_after_a_valid_header_never_crashes(body: str) -> None:
    data = ("outbox_key;outcome;called_at;agent;note\n" + body).encode("utf-8", "surrogatepass")
    try:
        outcomes, rejects = read_outcomes(data)
    except UnicodeError:  # pragma: no cover - surrogates cannot be encoded
        return
    lines = [o.line_no for o in outcomes] + [r.line_no for r in rejects]
    assert len(lines) == len(set(lines))
    assert all(2 <= line <= data.count(b"\n") + data.count(b"\r") + 1 for line in lines)


cells = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)
rows = st.lists(
    st.tuples(
        st.one_of(st.just(""), st.from_regex(r"K[0-9]{1,4}", fullmatch=True), cells),
        st.one_of(st.sampled_from([o.value for o in Outcome]), cells),
        st.one_of(moments.map(lambda m: f"{m:%d/%m/%Y %H:%M}"), cells),
        cells,
        cells,
    ),
    max_size=25,
)


def _breaks(text: str) -> int:
    return text.count("\n") + text.count("\r") - text.count("\r\n")


@given(rows, st.sampled_from([";", ",", "\t"]), st.sampled_from(["utf-8", "utf-8-sig"]))
@settings(max_examples=150)
def test_every_written_row_is_an_outcome_or_a_reject_at_its_line(
    written: list[tuple[str, str, str, str, str]], delimiter: str, encoding: str
) -> None:
    out = io.StringIO(newline="")
    writer = csv.writer(out, delimiter=delimiter, lineterminator="\r\n")
    writer.writerow(OUTCOME_COLUMNS)
    starts: dict[int, tuple[str, str, str, str, str]] = {}
    line = 2
    for row in written:
        writer.writerow(row)
        starts[line] = row
        line += 1 + sum(_breaks(cell) for cell in row)
    outcomes, rejects = read_outcomes(out.getvalue().encode(encoding))
    # a row whose cells are all blank is skipped; every other row is accounted for, once
    kept = {line for line, row in starts.items() if any(cell.strip() for cell in row)}
    assert sorted([o.line_no for o in outcomes] + [r.line_no for r in rejects]) == sorted(kept)
    for outcome in outcomes:
        key, code, called_at, agent, note = starts[outcome.line_no]
        assert outcome.outbox_key == key.strip()
        assert outcome.outcome is outcome_of(code)
        assert outcome.called_at == parse_called_at(called_at)
        assert (outcome.agent, outcome.note) == (agent.strip() or None, note.strip() or None)
    for reject in rejects:  # the row exactly as written, without its final line break
        assert reject.raw_text == writer_line(starts[reject.line_no], delimiter)


def writer_line(row: tuple[str, ...], delimiter: str) -> str:
    out = io.StringIO(newline="")
    csv.writer(out, delimiter=delimiter, lineterminator="\r\n").writerow(row)
    return out.getvalue().removesuffix("\r\n")
