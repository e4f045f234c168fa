"""Personal data: e-mail addresses in training text are replaced by a placeholder.

`mask_emails(text)` replaces every e-mail address (`EMAIL`) with `EMAIL_PLACEHOLDER`, as the
StarCoder data pipeline does with its `<EMAIL>` token, except the addresses that are public by
design (`is_public_address`):

- a documentation domain of RFC 2606 / RFC 6761 (`example.com`, `example.org`, `example.net`,
  `*.example`, `*.test`, `*.invalid`, `*.localhost`, `localhost`): code and tests use them as
  values, and nobody receives mail there;
- a role address that is not a person (`ROLE_LOCAL_PARTS`: `security@`, `support@`, `info@`,
  `git@` of an SSH remote, ...), unless it is at a personal-address host
  (`PERSONAL_HOSTS`: `users.noreply.github.com`, gmail.com, ...).

Everything else is masked: author and `Signed-off-by` / `Co-authored-by` trailers, maintainers'
addresses in file headers, GitHub's `ID+login@users.noreply.github.com` (it names the person)
and a bare `noreply@...` of a hosting service. The rule works on the text alone, so it is the
same in every phase and every repository; `--keep-emails` turns it off.
"""

from __future__ import annotations

import re

EMAIL_PLACEHOLDER = "<EMAIL>"
EMAIL = re.compile(r"(?<![\w.+-])[A-Za-z0-9._%+-]+@((?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}|localhost)\b")
ROLE_LOCAL_PARTS = frozenset(
    {
        "security",
        "secure",
        "support",
        "info",
        "contact",
        "conduct",
        "abuse",
        "press",
        "legal",
        "privacy",
        "help",
        "hello",
        "team",
        "maintainers",
        "opensource",
        "webmaster",
        "postmaster",
        "hostmaster",
        "git",
    }
)
PERSONAL_HOSTS = frozenset(
    {"users.noreply.github.com", "gmail.com", "googlemail.com", "hotmail.com", "outlook.com", "yahoo.com", "icloud.com"}
)
_DOC_DOMAINS = re.compile(
    r"(?i)(?:.*\.)?(?:example\.(?:com|org|net)|[^.]+\.(?:example|test|invalid|localhost))|localhost"
)


def is_public_address(address: str) -> bool:
    """True for an address kept as it is (see the module docstring)."""
    local, _, host = address.rpartition("@")
    host = host.lower()
    if _DOC_DOMAINS.fullmatch(host):
        return True
    return local.lower() in ROLE_LOCAL_PARTS and host not in PERSONAL_HOSTS


def mask_emails(text: str) -> tuple[str, int]:
    """`text` with every non-public e-mail address replaced by `EMAIL_PLACEHOLDER`, and how many."""
    if "@" not in text:
        return text, 0
    count = 0

    def replace(match: re.Match[str]) -> str:
        nonlocal count
        if is_public_address(match[0]):
            return match[0]
        count += 1
        return EMAIL_PLACEHOLDER

    return EMAIL.sub(replace, text), count
