"""Secret detection: which file names and which text look like credentials.

Two checks, both applied to every phase and impossible to switch off:

- `is_secret_path(path)`: the file *name* says it holds secrets (`.env`, private keys, key stores,
  credential files). Templates such as `.env.example` are not secret by name (their content is
  still scanned).
- `find_credential(text)`: the *content* contains a credential pattern (AWS access key ids,
  PEM private key blocks, GitHub/GitLab/Slack/Stripe/Google/Hugging Face/npm/Anthropic tokens,
  an `aws_secret_access_key = ...` assignment). It returns the pattern's name, never the match,
  so a secret can't leak into a log line or a summary through this function.

Both checks err on the side of dropping: a false positive costs one document, a false negative
leaks a credential into model weights.
"""

from __future__ import annotations

import fnmatch
import re
from pathlib import PurePosixPath

SECRET_FILE_GLOBS: tuple[str, ...] = (
    ".env",
    ".env.*",
    "*.env",
    "*.pem",
    "*.key",
    "*.p12",
    "*.pfx",
    "*.jks",
    "*.keystore",
    "*.kdbx",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
    ".netrc",
    "_netrc",
    ".pgpass",
    ".git-credentials",
    ".pypirc",
    ".htpasswd",
    "credentials",
)
"""Base names that are treated as secrets whatever their content."""

SECRET_FILE_TEMPLATES: tuple[str, ...] = (
    ".env.example",
    ".env.sample",
    ".env.template",
    ".env.dist",
    "*.env.example",
    "*.env.sample",
)
"""Base names matching `SECRET_FILE_GLOBS` that are templates, not secrets."""

CREDENTIAL_PATTERNS: dict[str, str] = {
    "aws-access-key-id": r"\b(?:AKIA|ASIA|ABIA|ACCA)[0-9A-Z]{16}\b",
    "aws-secret-access-key": r"(?i:aws_secret_access_key)\s*[=:]\s*[\"']?[A-Za-z0-9/+=]{40}",
    "private-key": r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----",
    "github-token": r"\b(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{36,}",
    "github-fine-grained-token": r"\bgithub_pat_[A-Za-z0-9_]{22,}",
    "gitlab-token": r"\bglpat-[A-Za-z0-9_\-]{20,}",
    "slack-token": r"\bxox[abposr]-[A-Za-z0-9\-]{10,}",
    "google-api-key": r"\bAIza[0-9A-Za-z_\-]{35}",
    "stripe-live-key": r"\b[rs]k_live_[0-9A-Za-z]{24,}",
    "huggingface-token": r"\bhf_[A-Za-z]{34,}",
    "npm-token": r"\bnpm_[A-Za-z0-9]{36,}",
    "anthropic-key": r"\bsk-ant-[A-Za-z0-9_\-]{20,}",
    "openai-key": r"\bsk-(?:proj-)?[A-Za-z0-9_\-]{20,}T3BlbkFJ[A-Za-z0-9_\-]{20,}",
}
"""Pattern name -> regular expression of a credential; any match drops the text."""

_HINTS = re.compile(
    r"AKIA|ASIA|ABIA|ACCA|(?i:secret_access_key)|PRIVATE KEY|gh[pousr]_|github_pat_|glpat-|xox"
    r"|AIza|k_live_|hf_|npm_|sk-ant-|T3BlbkFJ"
)
"""A literal every credential pattern contains: a cheap first pass that spares most texts the
full (much slower) search."""
_CREDENTIALS = re.compile("|".join(f"(?P<{name.replace('-', '_')}>{pattern})"
                                   for name, pattern in CREDENTIAL_PATTERNS.items()))


_SECRET_NAMES = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in SECRET_FILE_GLOBS))
_TEMPLATE_NAMES = re.compile("|".join(f"(?:{fnmatch.translate(glob)})" for glob in SECRET_FILE_TEMPLATES))


def is_secret_path(path: str) -> bool:
    """True when the base name of `path` marks a secret file (see `SECRET_FILE_GLOBS`)."""
    name = PurePosixPath(path).name
    return _SECRET_NAMES.match(name) is not None and _TEMPLATE_NAMES.match(name) is None


def find_credential(text: str) -> str | None:
    """Name of the first credential pattern found in `text`, or None when it looks clean."""
    if _HINTS.search(text) is None:
        return None
    match = _CREDENTIALS.search(text)
    if match is None:
        return None
    return str(match.lastgroup).replace("_", "-")
