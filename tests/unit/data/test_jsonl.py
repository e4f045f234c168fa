import json

import pytest

from phased_cpt.data.jsonl import read_documents
from phased_cpt.errors import DataError


def test_reads_documents_skipping_blank_lines_and_accepting_crlf(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"training_content": "one"}\r\n\n{"training_content": "two", "path": "x"}\n')
    docs = read_documents(path, "training_content")
    assert [d.text for d in docs] == ["one", "two"]
    assert docs[1].source == f"{path}:3"


@pytest.mark.parametrize(
    "line, reason",
    [
        (b'{"training_content": "ok"', "invalid JSON"),
        (b'["training_content"]', "expected a JSON object, got list"),
        (b'{"text": "x"}', "missing field 'training_content' (keys present: text"),
        (b'{"training_content": 42}', "must be a string, got int"),
        (b'{"training_content": "   \\n"}', "is empty"),
        (b'{"training_content": "\xff\xfe"}', "invalid UTF-8"),
    ],
)
def test_bad_line_is_reported_with_file_and_line(tmp_path, line, reason):
    path = tmp_path / "p.jsonl"
    path.write_bytes(b'{"training_content": "fine"}\n' + line + b"\n")
    with pytest.raises(DataError) as err:
        read_documents(path, "training_content")
    assert f"{path}:2: " in str(err.value)
    assert reason in str(err.value)


def test_many_bad_lines_are_all_counted_and_the_first_twenty_shown(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(["not json"] * 25 + [json.dumps({"training_content": "x"})]))
    with pytest.raises(DataError) as err:
        read_documents(path, "training_content")
    message = str(err.value)
    assert message.startswith("25 bad line(s)")
    assert f"{path}:20:" in message and f"{path}:21:" not in message
    assert "... and 5 more" in message


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "p.jsonl"
    path.write_text("\n")
    with pytest.raises(DataError, match="no documents"):
        read_documents(path, "training_content")
