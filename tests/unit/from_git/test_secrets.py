"""Secrets: secret stores by name and content are dropped, credential values are redacted, and
no planted value reaches any output file (phase files or report) in any phase."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from phased_cpt.from_git import PHASE1_FILE, PHASE2_FILE, PHASE3_FILE, REPORT_FILE
from phased_cpt.from_git.secrets import (
    REDACT_PATTERNS,
    STORE_PATTERNS,
    find_secret_store,
    is_random_looking,
    is_secret_path,
    redact_secrets,
)
from tests.unit.from_git.conftest import FIXTURES, SECRET_VALUES
from tests.unit.from_git.repos import (
    FAKE_AWS_KEY,
    FAKE_GITHUB_TOKEN,
    FAKE_PEM,
    all_output_bytes,
    build,
    commit,
    git,
    merge,
    new_repo,
    read,
    report,
)

# Fake values, assembled at run time so this file holds no credential pattern.
AWS_SECRET = "wJalrXUtnFEMI" + "/K7MDENG/bPxRfiCY3XAMPLEKEY"
SLACK_HOOK = "https://hooks.slack.com/services/" + "T0A1B2C3D/B0A1B2C3D/" + "x9Y8z7W6v5U4t3S2r1Q0p9O8"
OAUTH_SECRET = "GOCSPX" + "-9f8e7d6c5b4a3Z2Y1X0W9V8U"
NPM_AUTH = "npm" + "_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
ENVRC_VALUE = "envrc" + "-Q7w8E9r0T1y2U3i4"
SECRETS_YML_VALUE = "yml" + "-Z9x8C7v6B5n4M3a2"
TFSTATE_VALUE = "tfstate" + "-P0o9I8u7Y6t5R4e3"
DEPLOY_KEY_BODY = "b3BlbnNzaC1rZXktdjEAAAAAfakeDEPLOYkeyBODY0123456789"
DEPLOY_KEY = f"-----BEGIN OPENSSH {'PRIVATE'} KEY-----\n{DEPLOY_KEY_BODY}\n-----END OPENSSH PRIVATE KEY-----\n"
GCP_KEY_ID = "0123456789abcdef" + "0123456789abcdef01234567"
PLANTED = [
    AWS_SECRET,
    SLACK_HOOK,
    OAUTH_SECRET,
    NPM_AUTH,
    ENVRC_VALUE,
    SECRETS_YML_VALUE,
    TFSTATE_VALUE,
    DEPLOY_KEY_BODY,
    GCP_KEY_ID,
    FAKE_AWS_KEY,
    FAKE_GITHUB_TOKEN,
    "PRIVATE KEY-----",
]

STORES = {  # every secret store the issue names, each in a file that would otherwise be kept
    ".envrc": f"export API_TOKEN={ENVRC_VALUE}\n",
    "config/credentials.json": json.dumps({"installed": {"client_id": "x.apps", "client_secret": OAUTH_SECRET}}),
    "config/secrets.yml": f"production:\n  secret_key_base: {SECRETS_YML_VALUE}\n",
    ".npmrc": f"//registry.npmjs.org/:_authToken={NPM_AUTH}\n",
    "infra/terraform.tfstate": json.dumps(
        {
            "version": 4,
            "terraform_version": "1.5.0",
            "serial": 3,
            "lineage": "abc",
            "outputs": {"pw": {"value": TFSTATE_VALUE}},
        }
    ),
    "infra/state-copy.json": json.dumps(
        {
            "version": 4,
            "terraform_version": "1.5.0",
            "serial": 3,
            "lineage": "abc",
            "outputs": {"pw": {"value": TFSTATE_VALUE}},
        }
    ),
    "ops/github-actions": DEPLOY_KEY,  # a raw deploy key with no .pem or id_* name
    "config/gcp.json": json.dumps({"type": "service_account", "private_key_id": GCP_KEY_ID, "private_key": FAKE_PEM}),
}
CODE = {  # ordinary code holding credential values: kept, values redacted
    "scripts/notify.sh": f"#!/bin/sh\ncurl -X POST -d @msg.json {SLACK_HOOK}\n",
    "app/settings.py": f"DEBUG = False\nAWS_SECRET = \"{AWS_SECRET}\"\nREGION = 'eu-west-1'\n",
}


@pytest.fixture(scope="module")
def secret_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Secrets in the tree at HEAD, in phase-2 history and in a pull-request merge (phase 3)."""
    root = new_repo(tmp_path_factory.mktemp("secrets"), {"README.md": "# App\n"})
    commit(root, CODE, "Add scripts", "2024-01-02T10:00:00+00:00")
    git(root, "checkout", "-q", "-b", "add-config")
    commit(root, STORES, f"Add configuration\n\nkey {FAKE_AWS_KEY}", "2024-01-03T10:00:00+00:00")
    git(root, "checkout", "-q", "main")
    commit(root, {"src/app.py": "print(1)\n"}, "Add app", "2024-01-04T10:00:00+00:00")
    merge(
        root,
        "add-config",
        f"Merge pull request #5 from ann/add-config\n\nAdd config with {FAKE_GITHUB_TOKEN}",
        "2024-01-05T10:00:00+00:00",
    )
    return root


def test_no_planted_secret_value_appears_in_any_output_file(secret_repo, tmp_path):
    build(secret_repo, tmp_path / "default")
    build(
        secret_repo,
        tmp_path / "everything",
        use_default_excludes=False,
        includes=["*"],
        keep_duplicates=True,
        max_file_bytes=10**6,
    )
    written = all_output_bytes(tmp_path)
    assert len(list(tmp_path.rglob("*.jsonl"))) == 6
    for value in PLANTED:
        assert value.encode() not in written, value[:12]


def test_each_secret_store_is_left_out_and_listed_with_its_rule(secret_repo, tmp_path):
    build(secret_repo, tmp_path, includes=["*"])  # --include never brings a secret back
    left_out = {e["file"]: e["rule"] for e in report(tmp_path)["outputs"][PHASE1_FILE]["left_out"]}
    assert left_out == {
        ".envrc": "secret file name",
        "config/credentials.json": "secret file name",
        "config/secrets.yml": "secret file name",
        ".npmrc": "secret file name",
        "infra/terraform.tfstate": "secret file name",
        "infra/state-copy.json": "terraform-state",
        "config/gcp.json": "cloud-credentials-json",
    }
    kept = {d["path"]: d["training_content"] for d in read(tmp_path, PHASE1_FILE)}
    assert kept["ops/github-actions"] == "File: ops/github-actions\n\n[REDACTED:private-key]\n"
    assert "-d @msg.json [REDACTED:slack-token]\n" in kept["scripts/notify.sh"]
    assert 'AWS_SECRET = "[REDACTED:secret-keyword]"\nREGION' in kept["app/settings.py"]


def test_secret_stores_are_cut_out_of_history_and_merge_diffs(secret_repo, tmp_path):
    summary = build(secret_repo, tmp_path)
    [config] = [d for d in read(tmp_path, PHASE3_FILE) if "* Add configuration" in d["training_content"]]
    for path in STORES:
        if path != "ops/github-actions":
            assert f"[diff of {path} omitted: secret]\n" in config["training_content"]
    assert "key [REDACTED:aws-access-key]" in config["training_content"]
    [merge] = read(tmp_path, PHASE3_FILE)
    assert merge["training_content"].startswith(
        "Pull request #5: Add config with [REDACTED:github-token]\nBranch: ann/add-config\n"
    )
    listed = report(tmp_path)["outputs"]
    assert {e["path"] for e in listed[PHASE3_FILE]["left_out"] if e["reason"] == "secret"} == set(STORES) - {
        "ops/github-actions"
    }
    redacted = {(e["rule"], e.get("field")) for e in listed[PHASE3_FILE]["redacted"]}
    assert ("github-token", "training_content") in redacted
    assert summary.output(PHASE3_FILE).redactions["private-key"] == 1


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (".env", True),
        ("app/.env.production", True),
        ("certs/server.pem", True),
        ("id_rsa", True),
        (".envrc", True),
        ("credentials.json", True),
        ("config/secrets.yml", True),
        (".ENV", True),
        ('"conf/new\\nline.env"', True),  # a name git quotes
        ('"\\377.pem"', True),
        ("deploy/Prod.Env", True),
        ("ID_RSA", True),
        (".npmrc", True),
        ("infra/terraform.tfstate", True),
        ("prod.tfvars", True),
        ("keys/deploy_key", True),
        ("client_secret_123.apps.json", True),
        ("putty.ppk", True),
        ("id_ed25519_sk", True),
        (".env.example", False),
        ("src/env.py", False),
        ("id_rsa.pub", False),
        ("src/secrets.py", False),
        ("prod.tfvars.example", False),
        ("docs/credentials.md", False),
    ],
)
def test_secret_file_names(path, expected):
    assert is_secret_path(path) is expected


DER_KEY = (  # base64 of a PKCS#8 PrivateKeyInfo header (SEQUENCE, INTEGER 0, rsaEncryption) and filler
    "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"
    + "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
    + "\n"
    + "MzEfYyjiWA4R4/M2bS1GB4t7NXp98C3SC6dV"
)
KUBE_KEY = base64.b64encode(f"-----BEGIN RSA {'PRIVATE'} KEY-----\nMIIEow\n".encode()).decode()
JWT = "eyJhbGciOiJIUzI1NiJ9" + ".eyJzdWIiOiIxMjM0NTY3ODkwIn0" + ".dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U"

REDACT_SAMPLES = {  # fake values, assembled at run time; each sample holds exactly one
    # our rules (REDACT_PATTERNS): formats detect-secrets has no plugin for
    "private-key": FAKE_PEM,
    "aws-secret-access-key": "AWS_SECRET_ACCESS_KEY = " + "Ab1/" * 10,
    "github-fine-grained-token": "github" + "_pat_" + "A1_" * 8,
    "discord-webhook": "https://discord.com/api/webhooks/" + "123456/abcDEF_ghi-JKL",
    "teams-webhook": "https://acme.webhook.office.com/webhookb2/" + "a1b2@c3d4/IncomingWebhook/e5",
    "google-api-key": "AIza" + "x1-" * 12,
    "huggingface-token": "hf" + "_" + "ab" * 17,
    "npm-token": NPM_AUTH,
    "anthropic-key": "sk-ant" + "-" + "a1" * 10,
    "stripe-webhook-secret": "whsec" + "_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "der-private-key": DER_KEY,
    "base64-pem-private-key": "client-key-data: " + KUBE_KEY,
    "docker-auth": '{"auths": {"registry.example.com": {"auth": "' + base64.b64encode(b"ada:pw").decode() + '"}}}',
    "netrc-password": "machine api.example.com login ada password " + "hunter2",
    "secret-assignment": "API_TOKEN=" + "q8W2e7R4t1Y6u3I9",
    # detect-secrets 1.5.0's plugins, named after their secret type
    "aws-access-key": FAKE_AWS_KEY,
    "github-token": "gho" + "_" + "a1" * 18,
    "gitlab-token": "glpat" + "-" + "x1" * 10,
    "slack-token": SLACK_HOOK,
    "stripe-access-key": "sk" + "_live_" + "a1" * 12,
    "openai-token": "sk-" + "a1" * 10 + "T3Blbk" + "FJ" + "b2" * 10,
    "basic-auth-credentials": "postgres://admin:" + "pw" + "@db:5432/app",
    "json-web-token": "Authorization: Bearer " + JWT,
    "secret-keyword": 'api_key: "' + "q8W2e7R4t1Y6u3I9" + '"',
}


@pytest.mark.parametrize("rule", sorted(REDACT_SAMPLES))
def test_every_redaction_rule_replaces_its_value_and_names_the_rule(rule):
    text = f"line one\nconfig = {REDACT_SAMPLES[rule]}\nline three\n"
    redacted, found = redact_secrets(text)
    assert [(item.rule, item.line) for item in found] == [(rule, 2)]
    assert f"[REDACTED:{rule}]" in redacted and redacted.startswith("line one\nconfig = ")
    assert redacted.endswith("\nline three\n")


def test_every_redaction_rule_has_a_sample():
    assert set(REDACT_PATTERNS) <= set(REDACT_SAMPLES)


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("pw", "DATABASE_URL=postgres://admin:pw@db.internal/app"),
        (JWT, "curl -H 'Authorization: Bearer " + JWT + "' https://api.example.com"),
        ("hunter2", "default login ada password hunter2"),
        (DER_KEY.split("\n")[1], DER_KEY),
        ("pass", "http://user:pass@example.com/"),
    ],
)
def test_short_and_multi_line_credentials_leave_no_part_behind(value, text):
    redacted, found = redact_secrets(text)
    assert found and value not in redacted


@pytest.mark.parametrize(
    "text",
    [
        'token = "the_token_name"',
        "password: example",
        "token = self._get_token()",
        "//registry.npmjs.org/:_authToken=${NPM_TOKEN}",
        "AKIA is a prefix; BEGIN PUBLIC KEY is fine; ghp_short",
        "url = 'http://${USER}:${PASSWORD}@host/'",
        "the password reset form",
        "commit 5e1b3c0f3a9d2b8e7f6a5c4d3e2f1a0b9c8d7e6f",
        "sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
        "MIIDdzCCAl+gAwIBAgIEAgAAuTANBgkqhkiG9w0BAQUFADBaMQswCQYDVQQGEwJJRTESMBAGA1UEChMJQmFsdGltb3Jl",  # a certificate
    ],
)
def test_written_or_placeholder_values_are_not_redacted(text):
    assert redact_secrets(text) == (text, [])


@pytest.mark.parametrize(
    ("rule", "text"),
    [
        ("terraform-state", '{"version": 4, "terraform_version": "1.5.0", "lineage": "x"}'),
        ("cloud-credentials-json", '{"type": "service_account", "project_id": "p"}'),
        ("private-key", f"-----BEGIN EC {'PRIVATE'} KEY-----\nMHcCAQEE (no end line: cut)"),
        ("putty-private-key", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\n"),
    ],
)
def test_secret_stores_are_found_by_content(rule, text):
    assert find_secret_store(text) == rule


def test_every_store_rule_has_a_sample():
    tested = {"terraform-state", "cloud-credentials-json", "private-key", "putty-private-key"}
    assert tested == set(STORE_PATTERNS)


def test_a_complete_key_block_is_redacted_not_a_store():
    assert find_secret_store(f"key = '''{FAKE_PEM}'''") is None


def test_random_looking_values():
    assert is_random_looking("q8W2e7R4t1Y6u3I9")
    assert not is_random_looking("aaaaaaaaaaaaaaaaaaaa1")  # low entropy
    assert not is_random_looking("the_token_name_here")  # no digit
    assert not is_random_looking("a1b2c3")  # short


ISSUE_29 = {  # every credential hardening round 3 found written verbatim, each in a file that is kept
    "app/db.py": 'DATABASE_URL = "postgres://admin:' + "pw" + '@db.internal/app"\n',
    "scripts/call.sh": "curl -H 'Authorization: Bearer " + JWT + "' https://api.example.com\n",
    "certs/key.b64": DER_KEY + "\n",
    "app/stripe.py": "WEBHOOK = '" + "whsec" + "_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw'\n",
    "deploy/kubeconfig.yaml": "users:\n- name: ci\n  user:\n    client-key-data: " + KUBE_KEY + "\n",
    "ci/docker-config.json": '{"auths": {"r.example.com": {"auth": "'
    + base64.b64encode(b"ada:s3cr3t").decode()
    + '"}}}\n',
    "deploy/.ENV": "API_KEY=plain\n",
    "ci/auth.txt": "machine api.example.com login ada password " + "hunter2" + "\n",
}
ISSUE_29_VALUES = [
    ":pw@",
    JWT.rsplit(".", 1)[1],
    DER_KEY.split("\n")[1],
    "whsec" + "_MfKQ",
    KUBE_KEY[:40],
    base64.b64encode(b"ada:s3cr3t").decode(),
    "API_KEY=plain",
    "hunter2",
]


def test_round_3_credentials_are_redacted_in_files_diffs_and_commit_messages(tmp_path):
    repo = new_repo(tmp_path / "repo", {"README.md": "# App\n"})
    message = f"Deploy\n\nUsed postgres://admin:{'pw'}@db.internal/app and Bearer {JWT} to test"
    commit(repo, ISSUE_29, message, "2024-01-02T10:00:00+00:00")
    summary = build(repo, tmp_path / "out", max_file_bytes=10**6)
    written = all_output_bytes(tmp_path / "out")
    for value in ISSUE_29_VALUES:
        assert value.encode() not in written, value
    kept = {d["path"] for d in read(tmp_path / "out", PHASE1_FILE)}
    assert kept == {"README.md", *ISSUE_29} - {"deploy/.ENV"}
    [history] = [d for d in read(tmp_path / "out", PHASE2_FILE) if d["subject"] == "Deploy"]
    assert (
        "Used postgres://admin:[REDACTED:basic-auth-credentials]@db.internal/app and Bearer "
        in history["training_content"]
    )
    redacted = report(tmp_path / "out")["outputs"][PHASE2_FILE]["redacted"]
    assert {"commit", "rule", "line", "field"} <= set(redacted[0]) and "value" not in redacted[0]
    assert summary.output(PHASE1_FILE).redactions == {
        "basic-auth-credentials": 1,
        "json-web-token": 1,
        "der-private-key": 1,
        "stripe-webhook-secret": 1,
        "base64-pem-private-key": 1,
        "docker-auth": 1,
        "netrc-password": 1,
    }


def test_secret_values_never_appear_in_any_output(repo, tmp_path):
    build(repo, tmp_path / "a")
    build(repo, tmp_path / "b", prs=FIXTURES / "pulls.json", use_default_excludes=False, max_file_bytes=10**6)
    written = all_output_bytes(tmp_path)
    assert len(list(tmp_path.rglob("*.jsonl"))) == 6 and len(list(tmp_path.rglob(REPORT_FILE))) == 2
    for value in SECRET_VALUES:
        assert value.encode() not in written
