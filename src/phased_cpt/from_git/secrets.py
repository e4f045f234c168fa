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

import base64
import binascii
import fnmatch
import functools
import math
import re
from collections import Counter
from collections.abc import Callable
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

DETECT_SECRETS_LEFT_OUT = {
    "Base64HighEntropyString": "flags any random-looking quoted string: hashes, test vectors, ids in code",
    "HexHighEntropyString": "flags every hex digest and commit id",
    "IPPublicDetector": "a public IP address is not a credential",
}
"""detect-secrets plugins not used, and why (our `secret-assignment` is the entropy rule)."""

REDACT_PATTERNS: dict[str, str] = {
    "private-key": r"-----BEGIN (?P<pem_label>(?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?)-----.*?-----END (?P=pem_label)-----",
    "aws-secret-access-key": r"(?i:aws_secret_access_key)\s*[=:]\s*[\"']?(?P<aws_value>[A-Za-z0-9/+=]{40})",
    "github-fine-grained-token": r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    "discord-webhook": r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d+/[A-Za-z0-9_\-]+",
    "teams-webhook": r"https://[A-Za-z0-9.\-]+\.webhook\.office\.com/webhookb2/[A-Za-z0-9@/\-]+",
    "google-api-key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "huggingface-token": r"\bhf_[A-Za-z]{34,}",
    "npm-token": r"\bnpm_[A-Za-z0-9]{36,}",
    "anthropic-key": r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
    "stripe-webhook-secret": r"\bwhsec_[A-Za-z0-9+/=]{24,}",
    "der-private-key": r"(?:(?<![A-Za-z0-9+/])|(?<=^\+)|(?<=\n\+))M[CI][A-Za-z0-9+/]{2}[A-Za-z0-9+/]{36,}={0,2}(?:\s*\n[ \t+\-\"']*[A-Za-z0-9+/]{16,}={0,2})*",
    "base64-pem-private-key": r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{20,}={0,2}",
    "docker-auth": r"[\"']auth[\"']\s*:\s*[\"'](?P<docker_value>[A-Za-z0-9+/]{4,}={0,2})[\"']",
    "netrc-password": r"\blogin\s+\S+\s+password\s+(?P<netrc_value>\S+)|(?m:^[ \t]*password[ \t]+(?P<netrc_line>\S+)[ \t]*$)",
    "secret-assignment": (
        rf"(?i:{_SECRET_NAMES})[\w.\-]*[\"']?\s*(?::=|=>|=|:)\s*(?P<quote>[\"'`]?)"
        rf"(?P<assigned_value>{_VALUE_CHARS}{{16,}})(?:(?P=quote)(?<=[\"'`])|(?=\s|$|[,;#]))"
    ),
}
"""Our rules, for formats detect-secrets 1.5.0 has no plugin for (rule name -> expression; its
value group, or the whole match, is replaced). `secret-assignment` counts only for a
high-entropy value (`is_random_looking`); `der-private-key`, `base64-pem-private-key` and
`docker-auth` only when the base64 decodes to a private key or a `user:password` pair."""

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
_MIN_ENTROPY_BITS = 3.0
_PEM_BLOCK = re.compile(REDACT_PATTERNS["private-key"], re.DOTALL)
_STORES = re.compile("|".join(f"(?P<{name.replace('-', '_')}>{pattern})" for name, pattern in STORE_PATTERNS.items()))
_SECRET_NAME_RE = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in SECRET_FILE_GLOBS), re.IGNORECASE)
_TEMPLATE_NAME_RE = re.compile(
    "|".join(f"(?:{fnmatch.translate(glob)})" for glob in SECRET_FILE_TEMPLATES), re.IGNORECASE
)
_VALUE_GROUPS = {
    "aws-secret-access-key": "aws_value",
    "docker-auth": "docker_value",
    "netrc-password": "netrc_value",  # or netrc_line: the one that matched
    "secret-assignment": "assigned_value",
}
_CHECKS: dict[str, Callable[[str], bool]] = {}  # filled below: rule -> test of the matched value


@dataclass(frozen=True)
class _Rule:
    """One expression of a rule: `value_group` (or the whole match) is replaced when `accept`s."""

    name: str
    pattern: re.Pattern[str]
    value_group: str | int | None = None
    accept: Callable[[str], bool] | None = None
    needs: tuple[str, ...] = ()  # lower-case literals: only lines holding one are searched


@dataclass(frozen=True)
class Redaction:
    """One credential value removed from a text: which rule, on which line (1-based)."""

    rule: str
    line: int


def is_secret_path(path: str) -> bool:
    """True when the base name of `path` marks a secret store (see `SECRET_FILE_GLOBS`)."""
    if len(path) >= 2 and path.startswith('"') and path.endswith('"'):
        path = path[1:-1]  # git's C quoting of an odd name (`git.quote_path`): its escapes keep the suffix
    name = PurePosixPath(path).name
    return _SECRET_NAME_RE.match(name) is not None and _TEMPLATE_NAME_RE.match(name) is None


def find_secret_store(text: str) -> str | None:
    """Name of the `STORE_PATTERNS` rule `text` matches once complete key blocks (which are
    redacted, not stores) are set aside, or None."""
    if "PRIVATE KEY" not in text and not any(word in text for word in _STORE_WORDS):
        return None
    match = _STORES.search(_PEM_BLOCK.sub("", text))
    return None if match is None else _rule_name(match)


def redact_secrets(text: str) -> tuple[str, list[Redaction]]:
    """`text` with every credential value replaced by `[REDACTED:<rule>]`, and what was replaced.

    Rules in order of precedence (a later rule counts only where it overlaps no earlier match,
    so `KEY = "AKIA..."` is one `aws-access-key`): complete PEM key blocks; our rules for what
    detect-secrets lacks (`REDACT_PATTERNS`); detect-secrets' regex plugins; detect-secrets'
    keyword rule (a quoted value assigned to a secret-looking name) with its own false-positive
    filters; our `secret-assignment` for unquoted high-entropy values.

    A rule with `needs` (literals one of which each of its expressions contains) is only run on
    the lines holding one of them, found with plain substring search: most lines of a diff hold
    none, and the expressions are many times slower than that search.
    """
    spans = [(match.start(), match.end(), "private-key") for match in _PEM_BLOCK.finditer(text)]
    lower = text.lower()
    by_line = len(lower) == len(text)  # lower() can change a length (e.g. U+0130): search whole text then
    present = {literal for literal in _all_needs() if literal in lower}
    lines: dict[tuple[str, ...], list[tuple[int, int]]] = {}
    for rule in _rules():
        if rule.needs and present.isdisjoint(rule.needs):
            continue
        if rule.needs and by_line:
            if rule.needs not in lines:
                lines[rule.needs] = _lines_holding(text, lower, [n for n in rule.needs if n in present])
            matches = (m for start, end in lines[rule.needs] for m in rule.pattern.finditer(text, start, end))
        else:
            matches = rule.pattern.finditer(text)
        for match in matches:
            start, end = _value_span(match, rule.value_group)
            if start == end or any(s < end and start < e for s, e, _ in spans):
                continue
            if rule.accept is not None and not rule.accept(text[start:end]):
                continue
            spans.append((start, end, rule.name))
    if not spans:
        return text, []
    pieces: list[str] = []
    found: list[Redaction] = []
    position = 0
    for start, end, rule_name in sorted(spans):
        pieces += [text[position:start], f"[REDACTED:{rule_name}]"]
        found.append(Redaction(rule_name, text.count("\n", 0, start) + 1))
        position = end
    pieces.append(text[position:])
    return "".join(pieces), found


def _lines_holding(text: str, lower: str, literals: list[str]) -> list[tuple[int, int]]:
    """(start, end) of every line of `text` whose lower case (`lower`) holds one of `literals`."""
    found: set[tuple[int, int]] = set()
    for literal in literals:
        index = lower.find(literal)
        while index >= 0:
            end = text.find("\n", index + len(literal))
            end = len(text) if end < 0 else end
            found.add((text.rfind("\n", 0, index) + 1, end))
            index = lower.find(literal, end)
    return sorted(found)


@functools.cache
def _all_needs() -> frozenset[str]:
    return frozenset(literal for rule in _rules() for literal in rule.needs)


def _value_span(match: re.Match[str], group: str | int | None) -> tuple[int, int]:
    """The part of a match to replace: `group` when given; for a detect-secrets expression
    (`group` 0), its one capture group unless that is the token's prefix, extended to the end
    of the token (a JWT's signature, a token longer than the plugin's fixed length)."""
    if isinstance(group, str):
        return match.span(group if match.group(group) is not None else match.lastgroup or 0)
    if group is not None and group > 0:
        return match.span(group)
    start, end = match.span()
    if group == 0 and match.re.groups == 1 and match.start(1) > start:
        start, end = match.span(1)
    if group == 0:
        text = match.string
        while end < len(text) and (text[end].isalnum() or text[end] in "_-+/=."):
            end += 1
        end = len(text[start:end].rstrip(".")) + start
    return start, end


@functools.cache
def _rules() -> tuple[_Rule, ...]:
    """Every redaction expression, in precedence order (built once: importing detect-secrets'
    plugins takes ~0.1 s)."""
    ours = [
        _Rule(
            name,
            re.compile(pattern),
            _VALUE_GROUPS.get(name),
            _CHECKS.get(name),
            _NEEDS.get(name, ()),
        )
        for name, pattern in REDACT_PATTERNS.items()
        if name not in ("private-key", "secret-assignment")
    ]
    assigned = REDACT_PATTERNS["secret-assignment"]
    entropy = [
        _Rule(
            "secret-assignment",
            re.compile(assigned),
            "assigned_value",
            is_random_looking,
            _NEEDS["secret-assignment"],
        )
    ]
    return (*ours, *_detect_secrets_rules(), *entropy)


def _detect_secrets_rules() -> list[_Rule]:
    """detect-secrets' regex plugins (all but `DETECT_SECRETS_LEFT_OUT`), named after their
    secret type (`AWS Access Key` -> `aws-access-key`), then its keyword rule."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class
    from detect_secrets.plugins import keyword
    from detect_secrets.plugins.base import RegexBasedDetector

    rules = []
    for secret_type, plugin in sorted(get_mapping_from_secret_type_to_class().items()):
        if plugin.__name__ in DETECT_SECRETS_LEFT_OUT or not issubclass(plugin, RegexBasedDetector):
            continue
        name = re.sub(r"[^a-z0-9]+", "-", secret_type.lower()).strip("-")
        needs = _DETECT_SECRETS_NEEDS.get(plugin.__name__, ())
        rules += [_Rule(name, pattern, 0, None, needs) for pattern in plugin.denylist]
    rules += [
        _Rule("secret-keyword", pattern, group, _is_written_value, _DETECT_SECRETS_NEEDS["KeywordDetector"])
        for pattern, group in keyword.QUOTES_REQUIRED_DENYLIST_REGEX_TO_GROUP.items()
    ]
    return rules


_NEEDS: dict[str, tuple[str, ...]] = {
    "github-fine-grained-token": ("github_pat_",),
    "discord-webhook": ("discord",),
    "teams-webhook": ("webhook.office",),
    "google-api-key": ("aiza",),
    "huggingface-token": ("hf_",),
    "npm-token": ("npm_",),
    "anthropic-key": ("sk-ant-",),
    "stripe-webhook-secret": ("whsec_",),
    "docker-auth": ("auth",),
    "netrc-password": ("password",),
    "aws-secret-access-key": ("aws_secret_access_key",),
    "base64-pem-private-key": ("ls0tls1crudjti",),
    "secret-assignment": ("secret", "token", "passw", "api", "access", "private", "credential"),
}
"""Lower-case literals of our rules (see `_DETECT_SECRETS_NEEDS`)."""
_NAMED = ("key", "pw", "pass", "token", "cloudant", "softlayer", "access")
_DETECT_SECRETS_NEEDS: dict[str, tuple[str, ...]] = {
    "AWSKeyDetector": ("a3t", "abia", "acca", "akia", "asia", "aws"),
    "AzureStorageKeyDetector": ("accountkey=",),
    "BasicAuthDetector": ("://",),
    "CloudantDetector": _NAMED,
    "IbmCloudIamDetector": _NAMED,
    "IbmCosHmacDetector": _NAMED,
    "SoftlayerDetector": _NAMED,
    "GitHubTokenDetector": ("ghp_", "gho_", "ghu_", "ghs_", "ghr_"),
    "GitLabTokenDetector": ("gl", "gr1348941"),
    "JwtTokenDetector": ("eyj",),
    "MailchimpDetector": ("-us",),
    "NpmDetector": ("_authtoken",),
    "OpenAIDetector": ("t3blbkfj",),
    "PrivateKeyDetector": ("begin ", "putty"),
    "PypiTokenDetector": ("pypi-",),
    "SendGridDetector": ("sg.",),
    "SlackDetector": ("xox", "hooks.slack.com"),
    "SquareOAuthDetector": ("sq0csp-",),
    "StripeDetector": ("k_live_",),
    "KeywordDetector": ("key", "pass", "pwd", "secret", "contrase"),
}
"""Lower-case literals one of which each expression of a plugin contains (read off the
expressions of detect-secrets 1.5.0; its plugins scan line by line too): only lines holding
one are searched. Plugins not listed (and our `der-private-key`, which spans lines) search
the whole text."""


def _is_written_value(value: str) -> bool:
    """detect-secrets' filters for a keyword match: False for a template, a `$VAR`, a sequence
    (`abcdef`, `123456`), a UUID-shaped id, or an empty value."""
    from detect_secrets.filters import heuristic

    return bool(value.strip()) and not (
        heuristic.is_templated_secret(value)
        or heuristic.is_prefixed_with_dollar_sign(value)
        or heuristic.is_sequential_string(value)
        or heuristic.is_potential_uuid(value)
    )


def is_random_looking(value: str) -> bool:
    """True for a value that looks generated rather than written: 16+ characters, letters and
    digits, and at least `_MIN_ENTROPY_BITS` bits of Shannon entropy per character."""
    if len(value) < 16 or not any(c.isdigit() for c in value) or not any(c.isalpha() for c in value):
        return False
    counts = Counter(value)
    entropy = -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())
    return entropy >= _MIN_ENTROPY_BITS


def _decode_base64(value: str) -> bytes:
    lines = re.sub(r"\n[ \t+\-\"']*", "\n", value)  # a diff's `+` before a line is not base64
    compact = re.sub(r"[^A-Za-z0-9+/=]", "", lines)
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=False)
    except (ValueError, binascii.Error):
        return b""


def _is_der_private_key(value: str) -> bool:
    """True when `value` is base64 of a DER private key: a SEQUENCE whose first element is the
    version INTEGER 0 or 1 (PKCS#8 `PrivateKeyInfo`, PKCS#1 `RSAPrivateKey`, SEC 1
    `ECPrivateKey`). Certificates and public keys start with a SEQUENCE instead."""
    der = _decode_base64(value)
    if len(der) < 8 or der[0] != 0x30:
        return False
    length_bytes = der[1] - 0x80 if der[1] & 0x80 else 0
    body = der[2 + length_bytes :]
    return body[:2] == b"\x02\x01" and body[2:3] in (b"\x00", b"\x01")


def _is_pem_private_key(value: str) -> bool:
    return b"PRIVATE KEY" in _decode_base64(value)[:80]


def _is_user_password(value: str) -> bool:
    user, colon, password = _decode_base64(value).partition(b":")
    return bool(colon and user and password)


_CHECKS.update(
    {
        "der-private-key": _is_der_private_key,
        "base64-pem-private-key": _is_pem_private_key,
        "docker-auth": _is_user_password,
    }
)


def _rule_name(match: re.Match[str]) -> str:
    """The rule of the outermost group that matched (group names are rule names with `_`)."""
    for name, value in match.groupdict().items():
        if value is not None and name.replace("_", "-") in REDACT_PATTERNS | STORE_PATTERNS:
            return name.replace("_", "-")
    raise AssertionError("a match of the combined pattern always has a rule group")
