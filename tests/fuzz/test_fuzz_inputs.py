"""Property-based fuzzing of what users feed phased-cpt (hypothesis, derandomized so CI is
deterministic): random JSONL bytes through `validate`'s scan and the data reader, random configs
and random `--set` paths through `load_config`, random `/set` commands through the REPL's parser.

The property everywhere: the outcome is a valid result or the project's own one-line error (a
`UserError` whose every problem/line is one line), never another exception; and nothing read is
silently dropped (documents + rejected lines = non-blank lines).
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from phased_cpt.config import DataConfig, PhaseConfig, load_config
from phased_cpt.config.schema import RunConfig
from phased_cpt.data.jsonl import RecordScan, scan_documents, scan_phase_files
from phased_cpt.errors import ConfigError, DataError
from phased_cpt.inference.params import GenerationParams, ParamError, set_param

pytestmark = pytest.mark.fuzz


def fuzz(examples: int) -> settings:
    """Deterministic in CI (derandomize, no example database), no per-example deadline."""
    return settings(
        max_examples=examples,
        deadline=None,
        derandomize=True,
        database=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )


FIELD = "training_content"

# --- JSONL ------------------------------------------------------------------------------------

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=20),
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=10,
)
escapes = st.sampled_from(["\\ud800", "\\udfff", "\\ud83d\\ude00", "\\u0000", "\\n", "\\\\", '\\"', "\\x", "\\u12"])
raw_texts = st.lists(st.one_of(st.text(max_size=10), escapes), max_size=6).map("".join)


@st.composite
def jsonl_lines(draw) -> bytes:
    kind = draw(st.integers(0, 6))
    if kind == 0:  # a good-looking record, perhaps with broken escapes in the text
        return f'{{"{FIELD}": "{draw(raw_texts)}"}}'.encode("utf-8", "surrogatepass")
    if kind == 1:  # any JSON value
        return json.dumps(draw(json_values)).encode()
    if kind == 2:  # a record with any value in the field
        return json.dumps({FIELD: draw(json_values), "x": draw(json_values)}).encode()
    if kind == 3:  # arbitrary bytes (invalid UTF-8, NUL, BOM, CR, lone line ends)
        return draw(st.binary(max_size=40))
    if kind == 4:  # deep nesting
        depth = draw(st.integers(1, 5000))
        return b'{"' + FIELD.encode() + b'": "x", "n": ' + b"[" * depth + b"]" * depth + b"}"
    if kind == 5:  # truncated good line
        line = json.dumps({FIELD: draw(st.text(min_size=1, max_size=20))}).encode()
        return line[: draw(st.integers(0, len(line)))]
    return draw(st.sampled_from([b"", b"   ", b"\xef\xbb\xbf{}", b'{"training_content": "a\\u0000"}']))


jsonl_files = st.lists(jsonl_lines(), max_size=12).map(lambda lines: b"\n".join(lines) + b"\n")


@fuzz(400)
@given(content=jsonl_files, policy=st.sampled_from(["error", "skip"]), dedup=st.sampled_from(["none", "exact"]))
def test_every_line_is_a_document_or_a_rejected_line_with_a_one_line_reason(tmp_path_factory, content, policy, dedup):
    path = tmp_path_factory.mktemp("fuzz") / "p.jsonl"
    path.write_bytes(content)
    scan = RecordScan(path, policy)
    seen = {} if dedup == "exact" else None
    documents = list(scan_documents(path, FIELD, scan, seen))
    lines = [line for line in content.split(b"\n") if line.rstrip(b"\r\n").strip()]
    assert len(documents) + len(scan.rejected) == len(lines) == scan.documents + len(scan.rejected)
    assert scan.sha256 == hashlib.sha256(content).hexdigest()
    for document in documents:
        document.text.encode("utf-8")  # no lone surrogate: every document can be tokenized and written
        assert document.text.strip() and "\x00" not in document.text
    for rejected in scan.rejected:
        assert rejected.reason and "\n" not in rejected.reason
        json.loads(rejected.to_json())  # the quarantine file stays valid JSONL
    try:
        scan.raise_if_bad(FIELD)
    except DataError as err:
        assert str(err).startswith(f"{len(scan.bad_lines)} bad line(s) in {path}") or "no documents" in str(err)


@fuzz(200)
@given(train=jsonl_files, held_out=jsonl_files, dedup=st.sampled_from(["none", "exact"]))
def test_validate_scan_of_a_phase_is_documents_or_a_data_error(tmp_path_factory, train, held_out, dedup):
    work = tmp_path_factory.mktemp("fuzz")
    (work / "t.jsonl").write_bytes(train)
    (work / "e.jsonl").write_bytes(held_out)
    try:
        phase = PhaseConfig(name="p", file=work / "t.jsonl", eval_file=work / "e.jsonl")
        scans = scan_phase_files(phase, DataConfig(dedup=dedup))
        for scan in scans:
            scan.raise_if_bad(FIELD)
    except DataError as err:
        assert str(err).strip()


# --- configs ----------------------------------------------------------------------------------

SCHEMA_KEYS = sorted(
    {
        "model",
        "name",
        "size",
        "dtype",
        "attn_implementation",
        "trust_remote_code",
        "training",
        "micro_batch_size",
        "gradient_accumulation_steps",
        "learning_rate",
        "lr_scheduler",
        "warmup_ratio",
        "weight_decay",
        "max_grad_norm",
        "gradient_checkpointing",
        "seed",
        "logging_steps",
        "save_steps",
        "save_total_limit",
        "max_steps",
        "max_nonfinite_losses",
        "lora",
        "r",
        "alpha",
        "dropout",
        "target_modules",
        "performance",
        "liger_kernel",
        "optimizer",
        "context",
        "max_tokens",
        "overlap_tokens",
        "chunk_long_samples",
        "sample_packing",
        "phases",
        "file",
        "epochs",
        "eval_file",
        "replay_ratio",
        "data",
        "text_field",
        "eval_ratio",
        "on_bad_record",
        "dedup",
        "cache_dir",
        "output",
        "dir",
        "run_name",
        "evaluation",
        "eval_steps",
        "batch_size",
        "wandb",
        "enabled",
        "project",
        "api_key",
        "tensorboard",
        "deepspeed",
        "deepspeed_offload",
        "phased_training",
        "dataset",
        "dataset_file",
        "output_dir",
    }
)
config_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.text(max_size=12),
    st.sampled_from(
        [
            "${HOME}",
            "${NOPE_UNSET_VAR}",
            "${X:-1}",
            "a.jsonl",
            "zero3",
            "auto",
            ".inf",
            "state.json",
            "phase1_foundation",
            "..",
            "-1",
            "1e400",
        ]
    ),
)
config_keys = st.one_of(st.sampled_from(SCHEMA_KEYS), st.text(max_size=8), st.integers(-3, 3))
config_values = st.recursive(
    config_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(config_keys, inner, max_size=5),
    max_leaves=25,
)
config_documents = st.dictionaries(st.sampled_from(SCHEMA_KEYS), config_values, max_size=6)


def assert_config_outcome(path: Path | None, overrides=(), base_data=None) -> None:
    try:
        cfg, warnings = load_config(path, list(overrides), base_data=base_data)
    except ConfigError as err:
        assert err.problems and all(p and "\n" not in p for p in err.problems), err.problems
        assert str(err).count("\n") == len(err.problems)  # a heading line, then one line per problem
    else:
        assert isinstance(cfg, RunConfig)
        assert all(isinstance(w, str) for w in warnings)


@fuzz(500)
@given(document=config_documents)
def test_random_configs_load_or_give_one_line_problems(tmp_path_factory, document):
    work = tmp_path_factory.mktemp("cfg")
    (work / "a.jsonl").write_text('{"training_content": "x"}\n')
    path = work / "c.yaml"
    try:
        path.write_text(yaml.safe_dump(document, allow_unicode=True))
    except yaml.YAMLError:
        return  # not representable as YAML: nothing a user could write
    assert_config_outcome(path)


yaml_tokens = st.sampled_from(
    [
        "training:",
        "phases:",
        "  - ",
        "{",
        "}",
        "[",
        "]",
        ": ",
        "&a ",
        "*a",
        "<<: *a",
        "\n",
        "  ",
        "- ",
        "!!python/object:os.system",
        "!!binary",
        "'",
        '"',
        "#",
        "? ",
        "---",
        "...",
        "%YAML 1.1",
        "name: p",
        "file: a.jsonl",
        ".inf",
        "${HOME}",
        "\t",
        "|",
        ">",
        "seed: 1",
        "seed: 2",
        "lora:",
        "r: 8",
    ]
)


@fuzz(500)
@given(text=st.lists(st.one_of(yaml_tokens, st.text(alphabet=string.printable, max_size=6)), max_size=40).map("".join))
def test_random_yaml_text_loads_or_gives_one_line_problems(tmp_path_factory, text):
    work = tmp_path_factory.mktemp("yaml")
    (work / "a.jsonl").write_text('{"training_content": "x"}\n')
    path = work / "c.yaml"
    path.write_text(text)
    assert_config_outcome(path)


set_paths = st.lists(
    st.one_of(
        st.sampled_from(SCHEMA_KEYS),
        st.sampled_from(["0", "1", "7", "p"]),
        st.text(alphabet=string.ascii_letters + "._", max_size=6),
    ),
    min_size=0,
    max_size=5,
)
set_values = st.one_of(
    st.text(max_size=12),
    st.sampled_from(
        ["1", "-1", ".inf", "nan", "[a, b]", "{a: 1, a: 2}", "&a [*a]", "null", "true", "1e400", "${HOME}", "x=y", ""]
    ),
)


@fuzz(500)
@given(assignments=st.lists(st.tuples(set_paths, set_values), min_size=1, max_size=4), bare=st.booleans())
def test_random_set_overrides_load_or_give_one_line_problems(tmp_path_factory, assignments, bare):
    work = tmp_path_factory.mktemp("set")
    (work / "a.jsonl").write_text('{"training_content": "x"}\n')
    path = work / "c.yaml"
    path.write_text("model: {name: m}\ntraining: {seed: 1, lora: {r: 8}}\nphases: [{name: p, file: a.jsonl}]\n")
    overrides = [".".join(keys) if bare and not value else f"{'.'.join(keys)}={value}" for keys, value in assignments]
    assert_config_outcome(path, overrides)


# --- REPL parameters --------------------------------------------------------------------------


@fuzz(1000)
@given(
    name=st.sampled_from(["temperature", "top_p", "top_k", "max_tokens", "repetition_penalty", "seed", "x"]),
    text=st.one_of(st.text(max_size=30), st.integers(-(2**80), 2**80).map(str), st.floats().map(str)),
)
def test_random_set_commands_give_a_parameter_or_one_line_error(name, text):
    try:
        params = set_param(GenerationParams(), name, text)
    except ParamError as err:
        assert "\n" not in str(err)
    else:
        value = getattr(params, name)
        assert math.isfinite(value)
        if isinstance(value, int):
            assert 0 <= value < 2**32  # what torch's and numpy's seeding and generation accept


# --- from-git: credentials in formats the scanner knows, hostile path bytes -------------------

token_chars = st.text(alphabet=string.ascii_letters + string.digits, min_size=40, max_size=40)


def _credential_texts(draw: st.DrawFn) -> tuple[str, str]:
    """(text holding one generated credential, the credential's secret part)."""
    body = draw(token_chars)
    kind = draw(st.sampled_from(["url", "jwt", "aws", "github", "whsec", "keyword", "netrc", "docker"]))
    password = body[: draw(st.integers(8, 40))]  # shorter ones: test_secrets (a short one may recur by chance)
    import base64

    if kind == "url":
        return f"DATABASE_URL=postgres://admin:{password}@db.internal:5432/app", password
    if kind == "jwt":
        head = base64.urlsafe_b64encode(b'{"alg":"HS256"}').decode().rstrip("=")
        claims = base64.urlsafe_b64encode(f'{{"sub":"{body[:8]}"}}'.encode()).decode().rstrip("=")
        token = f"{head}.{claims}.{body}"
        return f"Authorization: Bearer {token}", token
    if kind == "aws":
        return "key_id = " + "AKIA" + body[:16].upper(), "AKIA" + body[:16].upper()
    if kind == "github":
        return "token: " + "ghp_" + body[:36], "ghp_" + body[:36]
    if kind == "whsec":
        return "STRIPE_WEBHOOK=" + "whsec_" + body, "whsec_" + body
    if kind == "keyword":
        return f'password = "{body[:20]}"', body[:20]
    if kind == "netrc":
        return f"machine example.com login ada password {body[:12]}", body[:12]
    auth = base64.b64encode(f"ada:{password}".encode()).decode()
    return f'{{"auths": {{"r.example.com": {{"auth": "{auth}"}}}}}}', auth


surroundings = st.text(alphabet=" \t\n#;:,.()[]{}=-_'\"", max_size=40)


@fuzz(80)
@given(data=st.data(), before=surroundings, after=surroundings)
def test_generated_credentials_are_always_redacted(data, before, after):
    from phased_cpt.from_git.secrets import redact_secrets

    text, secret = data.draw(st.builds(lambda: None).flatmap(lambda _: st.composite(_credential_texts)()))
    redacted, found = redact_secrets(f"{before}\n{text}\n{after}")
    assert found, text
    assert secret not in redacted, text
    assert all(item.rule and item.line >= 1 for item in found)


@fuzz(150)
@given(raw=st.binary(min_size=1, max_size=30))
def test_quoted_paths_are_one_line_and_lossless(raw):
    from phased_cpt.from_git.git import quote_path

    shown = quote_path(raw)
    assert "\n" not in shown and "\ufffd" not in shown or "\ufffd".encode() in raw
    if shown.startswith('"'):
        from phased_cpt.from_git.diffs import _unquote

        assert _unquote(shown.encode("utf-8")) == raw
    else:
        assert shown.encode("utf-8") == raw


# --- from-git: whatever an output directory holds, what from-git did not write survives ---------

_OUT_NAMES = ["phase1_foundation.jsonl", "phase2_evolution.jsonl", "phase3_pr_mastery.jsonl", "from-git-report.json"]


@fuzz(8)
@given(
    present=st.lists(st.sampled_from([*_OUT_NAMES, "notes.md", "phase4.jsonl"]), unique=True, max_size=5),
    earlier_run=st.booleans(),
    force=st.booleans(),
    edit=st.sampled_from([None, *_OUT_NAMES]),
)
def test_files_from_git_did_not_write_survive_any_run(tmp_path_factory, present, earlier_run, force, edit):
    from phased_cpt.errors import UserError
    from tests.unit.from_git.repos import build, new_repo

    root = tmp_path_factory.mktemp("outfuzz")
    repo = new_repo(root / "repo", {"a.py": "a = 1\n"})
    out = root / "out"
    out.mkdir()
    if earlier_run:
        build(repo, out)
    if edit is not None and (out / edit).exists():
        (out / edit).write_text("edited by hand\n")
    for name in present:
        if not (out / name).exists():
            (out / name).write_text(f"mine: {name}\n")
    ours = set(_OUT_NAMES) if earlier_run else set()
    ours.discard(edit)
    foreign = {p.name: p.read_bytes() for p in out.iterdir() if p.name not in ours and not p.name.startswith(".")}
    try:
        build(repo, out, force=force)
    except UserError as err:
        assert "\n" not in str(err)
    assert {name: (out / name).read_bytes() for name in foreign} == foreign
