import json

import pytest

from phased_cpt.data.jsonl import RecordScan, read_documents, scan_documents, write_rejected
from phased_cpt.errors import DataError

GOOD = b'{"training_content": "fine"}'


def test_reads_documents_skipping_blank_lines_and_accepting_crlf(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"training_content": "one"}\r\n\n{"training_content": "two", "path": "x"}\n')
    docs, scan = read_documents(path, "training_content")
    assert [d.text for d in docs] == ["one", "two"]
    assert docs[1].source == f"{path}:3"
    assert scan.rejected == []


BAD_LINES = [
    (b'{"training_content": "ok"', "invalid JSON"),
    (b'["training_content"]', "expected a JSON object, got list"),
    (b'{"text": "x"}', "missing field 'training_content' (keys present: text"),
    (b'{"training_content": 42}', "must be a string, got int"),
    (b'{"training_content": null}', "must be a string, got NoneType"),
    (b'{"training_content": ""}', "is empty"),
    (b'{"training_content": "   \\n\\t"}', "is empty or whitespace only"),
    (b'{"training_content": "\xff\xfe"}', "invalid UTF-8 at byte 22"),
    (b'\xef\xbb\xbf{"training_content": "bom"}', "byte order mark"),
    (b'{"training_content": "a\x00b"}', "NUL byte at byte 23"),
    (b'{"training_content": "a\\u0000b"}', "NUL character"),
    (b'{"training_content": "a\\ud800b"}', "contains a lone surrogate \\ud800 at character 1"),
    (b'{"training_content": "x\\udfff"}', "contains a lone surrogate \\udfff at character 1"),
    (b"[" * 100_000 + b"]" * 100_000, "invalid JSON: nested too deeply"),
    (b'{"training_content": "x", "meta": ' + b'{"a": ' * 50_000 + b"1" + b"}" * 50_001, "nested too deeply"),
]


@pytest.mark.parametrize("line, reason", BAD_LINES)
def test_bad_line_is_an_error_with_file_and_line(tmp_path, line, reason):
    path = tmp_path / "p.jsonl"
    path.write_bytes(GOOD + b"\n" + line + b"\n")
    with pytest.raises(DataError) as err:
        read_documents(path, "training_content")
    assert f"{path}:2: " in str(err.value)
    assert reason in str(err.value)
    assert "data.on_bad_record: skip" in str(err.value)  # says what to do


@pytest.mark.parametrize("line, reason", BAD_LINES)
def test_skip_policy_keeps_the_rejected_line_verbatim_with_its_reason(tmp_path, line, reason):
    path = tmp_path / "p.jsonl"
    path.write_bytes(GOOD + b"\r\n" + line + b"\r\n" + GOOD + b"\n")
    docs, scan = read_documents(path, "training_content", on_bad_record="skip")
    assert [d.source for d in docs] == [f"{path}:1", f"{path}:3"]
    (rejected,) = scan.rejected
    assert rejected.source == f"{path}:2" and reason in rejected.reason
    assert rejected.line.encode("utf-8", errors="backslashreplace").replace(b"\\xff\\xfe", b"\xff\xfe") == line
    out = tmp_path / "rejected.jsonl"
    write_rejected(out, scan.rejected)
    (record,) = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert record == {"source": f"{path}:2", "reason": rejected.reason, "line": rejected.line}


def test_many_bad_lines_are_all_counted_and_the_first_twenty_shown(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(["not json"] * 25 + [json.dumps({"training_content": "x"})]))
    with pytest.raises(DataError) as err:
        read_documents(path, "training_content")
    message = str(err.value)
    assert message.startswith(f"25 bad line(s) in {path} (1 good)")
    assert f"{path}:20:" in message and f"{path}:21:" not in message
    assert "... and 5 more" in message


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match="no documents"):
        read_documents(path, "training_content")


def test_a_file_with_every_line_skipped_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("nope\n[]\n")
    with pytest.raises(DataError, match="all 2 line"):
        read_documents(path, "training_content", on_bad_record="skip")


def test_dedup_exact_removes_later_copies_and_records_them_even_under_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"training_content": t, "n": i}) for i, t in enumerate(["a", "b", "a", "a "])))
    docs, scan = read_documents(path, "training_content", seen={})
    assert [d.text for d in docs] == ["a", "b", "a "]  # exact: whitespace differs, kept
    (duplicate,) = scan.rejected
    assert duplicate.reason == f"duplicate of {path}:1" and duplicate.source == f"{path}:3"
    assert json.loads(duplicate.line)["n"] == 2 and scan.duplicates == 1 and scan.bad_lines == []
    docs, scan = read_documents(path, "training_content")  # dedup off: every copy kept
    assert len(docs) == 4 and scan.rejected == []


def test_dedup_spans_files_sharing_the_seen_table(tmp_path):
    train, held = tmp_path / "t.jsonl", tmp_path / "e.jsonl"
    train.write_text(json.dumps({"training_content": "same"}) + "\n")
    held.write_text(json.dumps({"training_content": "same"}) + "\n" + json.dumps({"training_content": "new"}) + "\n")
    seen: dict = {}
    read_documents(train, "training_content", seen=seen)
    scan = RecordScan(held)
    assert [d.text for d in scan_documents(held, "training_content", scan, seen)] == ["new"]
    assert scan.rejected[0].reason == f"duplicate of {train}:1"


def test_the_text_field_is_configurable(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text('{"body": "from another field", "training_content": "not this one"}\n')
    (doc,), _ = read_documents(path, "body")
    assert doc.text == "from another field"


def test_a_surrogate_pair_is_one_character_not_a_bad_record(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"training_content": "smile \\ud83d\\ude00"}\n')
    docs, _ = read_documents(path, "training_content")
    assert [d.text for d in docs] == ["smile \U0001f600"]
