"""Secret detection: which files are secret stores, and which text holds a credential.

Three checks, applied to every phase and impossible to switch off (`--include` cannot bring a
secret back):

- `is_secret_path(path)`: the file *name* says it is a secret store (`SECRET_FILE_GLOBS`: `.env`,
  `.envrc`, private keys, key stores, `credentials.json`, `secrets.yml`, `.npmrc`, Terraform
  state, ...). The file is dropped whole. Templates such as `.env.example` are not secret by name
  (their content is still scanned).
- `find_secret_store(text)`: the *content* is a secret store whatever its name
  (`STORE_PATTERNS`: Terraform state, a cloud service-account key, a private key block without
  its end line, a PuTTY key). The file, or the diff section, is dropped whole.
- `redact_secrets(text)`: every credential *value* in the text (`REDACT_PATTERNS`: cloud and SaaS
  tokens, private key blocks, webhook URLs, high-entropy values assigned to names such as
  `secret`, `token`, `password`, `api_key`) is replaced by `[REDACTED:<rule>]`, and the rule
  and line are returned, never the value, so a secret cannot leak into a log line or the report
  through this module.

All three err on the side of removing: a false positive costs one value or one file, a false
negative puts a credential into model weights.
"""

from __future__ import annotations

import fnmatch
import math
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import PurePosixPath

SECRET_FILE_GLOBS: tuple[str, ...] = (
    # environment files
    ".env",
    ".env.*",
    "*.env",
    ".envrc",
    # private keys and key stores
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "*.ppk",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    "id_*_sk",
    "*_rsa",
    "*_dsa",
    "*_ecdsa",
    "*_ed25519",
    "ssh_host_*_key",
    "*deploy_key*",
    "*deploy-key*",
    "secring.*",
    # credential and secret files
    ".netrc",
    "_netrc",
    ".pgpass",
    ".git-credentials",
    ".pypirc",
    ".htpasswd",
    ".npmrc",
    ".dockercfg",
    ".s3cfg",
    ".boto",
    ".my.cnf",
    "credentials",
    "credentials.json",
    "credentials.yml",
    "credentials.yaml",
    "client_secret*.json",
    "service-account*.json",
    "service_account*.json",
    "secrets.yml",
    "secrets.yaml",
    "secrets.json",
    "secrets.toml",
    "secrets.ini",
    "secrets.env",
    "secret.yml",
    "secret.yaml",
    "secret.json",
    # infrastructure state and variables
    "*.tfstate",
    "*.tfstate.*",
    "*.tfvars",
    "*.tfvars.json",
)
"""Base names that are secret stores whatever their content."""

SECRET_FILE_TEMPLATES: tuple[str, ...] = (
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    "*.env.example",
    "*.env.sample",
    "*.tfvars.example",
    "*.pub",
)
"""Base names matching `SECRET_FILE_GLOBS` that are templates or public halves, not secrets."""

_SECRET_NAMES = r"(?:secret|token|passw(?:or)?d|passwd|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential)"
_VALUE_CHARS = r"[A-Za-z0-9+/=_\-.~]"

REDACT_PATTERNS: dict[str, str] = {
    "private-key": r"-----BEGIN (?P<pem_label>(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?-----END (?P=pem_label)-----",
    "aws-access-key-id": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "aws-secret-access-key": r"(?i:aws_secret_access_key)\s*[=:]\s*[\"']?(?P<aws_value>[A-Za-z0-9/+=]{40})",
    "github-token": r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}",
    "github-fine-grained-token": r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    "gitlab-token": r"\bglpat-[A-Za-z0-9_\-]{20,}",
    "slack-token": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "slack-webhook": r"https://hooks\.slack\.com/(?:services|workflows|triggers)/[A-Za-z0-9_/\-]{16,}",
    "discord-webhook": r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]+",
    "teams-webhook": r"https://[A-Za-z0-9.\-]+\.webhook\.office\.com/webhookb2/[A-Za-z0-9@/\-]+",
    "google-api-key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "stripe-live-key": r"\b[rs]k_live_[0-9A-Za-z]{24,}",
    "huggingface-token": r"\bhf_[A-Za-z]{34,}",
    "npm-token": r"\bnpm_[A-Za-z0-9]{36,}",
    "anthropic-key": r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
    "openai-key": r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,}",
    "url-password": r"\b[a-z][a-z0-9+.\-]*://[^\s:/@'\"]+:(?P<url_value>[^\s:/@'\"]{12,})@",
    "secret-assignment": (
        rf"(?i:{_SECRET_NAMES})[\w.\-]*[\"']?\s*(?::=|=>|=|:)\s*(?P<quote>[\"'`]?)"
        rf"(?P<assigned_value>{_VALUE_CHARS}{{16,}})(?:(?P=quote)(?<=[\"'`])|(?=\s|$|[,;#]))"
    ),
}
"""Rule name -> regular expression of a credential; its value group (or the whole match) is
replaced. `secret-assignment` and `url-password` count only for a high-entropy value
(`is_random_looking`), so `token = "the_token_name"` or `password: example` stay."""

STORE_PATTERNS: dict[str, str] = {
    "terraform-state": r"\"terraform_version\"\s*:[\s\S]*\"lineage\"\s*:|\"lineage\"\s*:[\s\S]*\"terraform_version\"\s*:",
    "cloud-credentials-json": r"\"type\"\s*:\s*\"service_account\"|\"private_key_id\"\s*:\s*\"[0-9a-f]{20,}\"",
    "private-key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    "putty-private-key": r"PuTTY-User-Key-File-\d+:",
}
"""Rule name -> pattern of content that is a secret store as a whole: the file or diff section
is dropped. (`private-key` here catches a key block left after redaction: one without its end
line.)"""

_STORE_WORDS = ("terraform_version", "service_account", "PuTTY-User-Key-File-")
_ENTROPY_RULES = {"secret-assignment": "assigned_value", "url-password": "url_value"}
_MIN_ENTROPY_BITS = 3.0
_HINTS = re.compile(
    r"AKIA|ASIA|ABIA|ACCA|(?i:secret|token|passw|api[_-]?key|apikey|access[_-]?key|private[_-]?key|credential)"
    r"|PRIVATE KEY|gh[pousr]_|github_pat_|glpat-|xox|hooks\.slack|discord|webhook|AIza|k_live_"
    r"|hf_|npm_|sk-ant-|T3BlbkFJ|://[^\s:/@]+:"
)
"""A literal every pattern contains: a cheap first pass that spares most texts the full search."""
_PEM_BLOCK = re.compile(REDACT_PATTERNS["private-key"], re.DOTALL)
_SPECIFIC = re.compile(
    "|".join(
        f"(?P<{name.replace('-', '_')}>{pattern})"
        for name, pattern in REDACT_PATTERNS.items()
        if name not in _ENTROPY_RULES and name != "private-key"
    )
)
_ASSIGNED = re.compile(
    "|".join(
        f"(?P<{name.replace('-', '_')}>{pattern})"
        for name, pattern in REDACT_PATTERNS.items()
        if name in _ENTROPY_RULES
    )
)
_STORES = re.compile("|".join(f"(?P<{name.replace('-', '_')}>{pattern})" for name, pattern in STORE_PATTERNS.items()))
_SECRET_NAME_RE = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in SECRET_FILE_GLOBS))
_TEMPLATE_NAME_RE = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in SECRET_FILE_TEMPLATES))


@dataclass(frozen=True)
class Redaction:
    """One credential value removed from a text: which rule, on which line (1-based)."""

    rule: str
    line: int


def is_secret_path(path: str) -> bool:
    """True when the base name of `path` marks a secret store (see `SECRET_FILE_GLOBS`)."""
    name = PurePosixPath(path).name
    return _SECRET_NAME_RE.match(name) is not None and _TEMPLATE_NAME_RE.match(name) is None


def find_secret_store(text: str) -> str | None:
    """Name of the `STORE_PATTERNS` rule `text` matches after redaction, or None."""
    if _HINTS.search(text) is None and not any(word in text for word in _STORE_WORDS):
        return None
    match = _STORES.search(redact_secrets(text)[0])
    return None if match is None else _rule_name(match)


def redact_secrets(text: str) -> tuple[str, list[Redaction]]:
    """`text` with every credential value replaced by `[REDACTED:<rule>]`, and what was replaced.

    Key blocks are found in the whole text; every other rule fits on one line and is only
    looked for on the lines that hold one of its literals (`_HINTS`), which keeps this fast on
    large diffs. On a line, token-shaped rules are found first; the assignment and URL-password
    rules then only count where they do not overlap one (so `KEY_ID = "AKIA..."` is one
    `aws-access-key-id`).
    """
    hint = _HINTS.search(text)
    if hint is None:
        return text, []
    spans = [(match.start(), match.end(), "private-key") for match in _PEM_BLOCK.finditer(text)]
    while hint is not None:
        start = text.rfind("\n", 0, hint.start()) + 1
        end = text.find("\n", hint.end())
        end = len(text) if end < 0 else end
        spans += _line_spans(text[start:end], start, spans)
        hint = _HINTS.search(text, end)
    if not spans:
        return text, []
    pieces: list[str] = []
    found: list[Redaction] = []
    position = 0
    for start, end, rule in sorted(spans):
        pieces += [text[position:start], f"[REDACTED:{rule}]"]
        found.append(Redaction(rule, text.count("\n", 0, start) + 1))
        position = end
    pieces.append(text[position:])
    return "".join(pieces), found


def _line_spans(line: str, offset: int, taken: list[tuple[int, int, str]]) -> list[tuple[int, int, str]]:
    """The credential spans of one line (positions in the whole text), outside `taken`."""
    spans: list[tuple[int, int, str]] = []
    for match in _SPECIFIC.finditer(line):
        rule = _rule_name(match)
        start, end = match.span("aws_value") if rule == "aws-secret-access-key" else match.span()
        spans.append((start + offset, end + offset, rule))
    for match in _ASSIGNED.finditer(line):
        rule = _rule_name(match)
        start, end = match.span(_ENTROPY_RULES[rule])
        start, end = start + offset, end + offset
        if is_random_looking(line[start - offset : end - offset]) and not any(
            s < end and start < e for s, e, _ in [*taken, *spans]
        ):
            spans.append((start, end, rule))
    return [span for span in spans if not any(s < span[1] and span[0] < e for s, e, _ in taken)]


def is_random_looking(value: str) -> bool:
    """True for a value that looks generated rather than written: 16+ characters, letters and
    digits, and at least `_MIN_ENTROPY_BITS` bits of Shannon entropy per character."""
    if len(value) < 16 or not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= _MIN_ENTROPY_BITS


def _rule_name(match: re.Match[str]) -> str:
    """The rule of the outermost group that matched (group names are rule names with `_`)."""
    for name, value in match.groupdict().items():
        if value is not None and name.replace("_", "-") in REDACT_PATTERNS | STORE_PATTERNS:
            return name.replace("_", "-")
    raise AssertionError("a match of the combined pattern always has a rule group")
