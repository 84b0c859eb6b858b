"""Credential detectors: find secrets in prompts, suffixes, chat messages and completions.

Each finding is the character span of the secret *value* (never the whole assignment), a
stable snake-case `type` (the kind of credential: the key of per-type policy actions and the
name in the `<redacted:type>` placeholder) and a dotted `rule` id (which detector matched: what a
403 names and what the audit log records). Findings never carry the secret itself.

This runs on every request on the gateway's hot path, so the cost is kept near a handful of
substring searches over the text:
- every vendor rule's regex starts with a literal (a leading look-behind or character class
  would defeat that, so left boundaries are checked in Python instead). The literal heads are
  read off each compiled pattern (`_literal_heads`); they and the substrings the other
  detectors need (`_GUARDS`) are all searched for in one pass by an RE2 set (a DFA over every
  literal at once: ~10 µs for a 6 KB prompt, where one substring search each cost ~140 µs).
  Only the rules whose head occurs run their regex; the rules that cannot start with a
  literal are guarded by a substring in the same set;
- the keyword-driven assignment rule searches the lower-cased text once for its keywords
  (case-insensitive regexes are many times slower) and only then runs an anchored match right
  after each keyword-bearing name;
- validation (entropy, placeholders, base64 decoding) only ever runs on candidates.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import math
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from re import _constants as _sre  # type: ignore[attr-defined]
from re import _parser as _sre_parser  # type: ignore[attr-defined]
from typing import Any, Final
from urllib.parse import unquote

import orjson
import re2


@dataclass(frozen=True, slots=True)
class SecretMatch:
    """One credential found in a text: `text[start:end]` is the secret value."""

    type: str
    start: int
    end: int
    rule: str


@dataclass(frozen=True, slots=True)
class RuleInfo:
    """A detector as documented to admins (`cove policy rules`)."""

    rule: str
    type: str
    description: str


# ---- character sets and small helpers -------------------------------------------------------

_DIGITS = frozenset("0123456789")
_ALNUM = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_WORD = _ALNUM | {"_"}
_TOKEN = _WORD | {"-"}
_B64 = _ALNUM | {"+", "/"}
_KEY_CHARS = _WORD | {".", "-"}
_NO_BOUNDARY: frozenset[str] = frozenset()


def _entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    n = len(value)
    if n == 0:
        return 0.0
    counts: dict[str, int] = {}
    for ch in value:
        counts[ch] = counts.get(ch, 0) + 1
    return -sum(c / n * math.log2(c / n) for c in counts.values())


def _char_classes(value: str) -> int:
    lower = upper = digit = other = 0
    for ch in value:
        if "a" <= ch <= "z":
            lower = 1
        elif "A" <= ch <= "Z":
            upper = 1
        elif "0" <= ch <= "9":
            digit = 1
        else:
            other = 1
    return lower + upper + digit + other


def _lower_same_length(text: str) -> str:
    """`text.lower()` with the same offsets. U+0130 (capital I with dot) is the one code point
    whose lower case is two characters; it can never be part of a keyword anyway."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return lowered
    return text.replace("\u0130", "I").lower()


# Sequential runs mark hand-typed fakes ("ghp_1234567890abcdef..."); random bodies of the
# lengths we check contain one with a probability around 1e-6.
_RUNS: Final = tuple(
    alphabet[i : i + 6]
    for alphabet in ("abcdefghijklmnopqrstuvwxyz", "0123456789", "9876543210")
    for i in range(len(alphabet) - 5)
)
_FAKE_MARKERS: Final = ("example", "xxxx", "placeholder", "dummy", "redacted", "your", "fake")


def _looks_fake(body: str) -> bool:
    """A token body that is a documentation fixture or a hand-made stand-in."""
    low = body.lower()
    if any(marker in low for marker in _FAKE_MARKERS):
        return True
    if any(run in low for run in _RUNS):
        return True
    return len(set(low)) <= 3


# Pieces of ordinary words and identifiers: a capitalised or lower-case word, an acronym, a lone
# capital before a separator, a short number. Atomic groups keep a failed match linear.
_WORD_PIECE: Final = (
    r"(?>[A-Z]?[a-z]{2,}|[A-Z]{2,}(?![a-z])|[A-Z](?![A-Za-z0-9])|[A-Z]\d{1,2}(?!\d)"
    r"|[a-z](?![A-Za-z0-9])|[a-z](?=[A-Z][a-z]{2})|\d{1,4}(?!\d))"
)
_WORDY: Final = re.compile(rf"[\s_\-./:]*(?:{_WORD_PIECE}[\s_\-./:]*)+")
_PIECES: Final = re.compile(_WORD_PIECE)
_SEPARATORS: Final = str.maketrans("", "", " \t_-./:")
# Short words joined by separators ("i-am-the-worst", "my_db_pw"): words however short.
_SLUG: Final = re.compile(r"[a-z]+(?:[ _\-][a-z0-9]+)+|[A-Z]+(?:[ _\-][A-Z0-9]+)+")


def _is_wordy(value: str) -> bool:
    """Built from words (`userPassword`, `API_TOKEN_V2`, `Mot-de-passe`), not random.

    Any string splits into such pieces if they may be short enough, so words must also be
    long on average: "nDmkm7XmcsQL4Xgw" splits into seven pieces of 2.3 characters."""
    if _WORDY.fullmatch(value) is None:
        return False
    pieces = _PIECES.findall(value)
    if len(value.translate(_SEPARATORS)) < 3 * len(pieces) and not _SLUG.fullmatch(value):
        return False
    # Words carry vowels (about a third of their letters); random letters only a fifth.
    letters = [ch for piece in pieces if not piece.isupper() for ch in piece if ch.isalpha()]
    if len(letters) < 8:
        return True
    return sum(ch in "aeiouAEIOU" for ch in letters) >= 0.22 * len(letters)


# Whole template expressions, not their opening characters alone: a random password may well
# contain "${" or "{{" somewhere.
_TEMPLATE: Final = re.compile(
    r"\$\{[^}]*\}|\{\{.*?\}\}|#\{[^}]*\}|%\([A-Za-z_]\w*\)[sdr]|<%.*?%>|\$\([^)]*\)|\{%.*?%\}"
    r"|<[A-Za-z][A-Za-z0-9_\- ]*>|\{[A-Za-z_][\w\-]+\}|^%[sdr](?:$|[_\-./:]\w)|^#\w+#$"
    # Regular expressions: a character class with a range.
    r"|\[[^\]]{0,40}(?:a-z|A-Z|0-9)"
)
_PLACEHOLDER_WORDS: Final = (
    "example",
    "placeholder",
    "dummy",
    "changeme",
    "change_me",
    "change-me",
    "changeit",
    "redacted",
    "***",
    "...",
    "your_",
    "your-",
    "yourpass",
    "yoursecret",
    "yourtoken",
    "yourkey",
    "yourapi",
    "replace_me",
    "replaceme",
    "replace-me",
    "insert_",
    "insert-",
    "enter_",
    "enter-",
    "todo",
    "fixme",
    "notasecret",
    "not_a_secret",
    "not-a-secret",
    "fake",
    "sample",
    "\u2022",
)
_PLACEHOLDER_PREFIXES: Final = ("test", "dummy", "demo", "mock", "my_", "my-", "some_", "some-")
_PLACEHOLDER_SUFFIXES: Final = ("_here", "-here", ".here")
_PLACEHOLDER_VALUES: Final = frozenset(
    {
        "none",
        "null",
        "nil",
        "undefined",
        "true",
        "false",
        "yes",
        "no",
        "on",
        "off",
        "password",
        "passwd",
        "pass",
        "pwd",
        "secret",
        "secrets",
        "token",
        "key",
        "apikey",
        "api_key",
        "api-key",
        "admin",
        "administrator",
        "root",
        "default",
        "user",
        "username",
        "guest",
        "foo",
        "bar",
        "baz",
        "foobar",
        "qux",
        "empty",
        "blank",
        "string",
        "str",
        "required",
        "optional",
        "hidden",
        "masked",
        "n/a",
        "na",
        "tbd",
        "unset",
        "secret123",
        "password1",
        "password123",
        "pass123",
        "admin123",
        "letmein",
        "qwerty",
        "qwerty123",
        "123456",
        "12345678",
        "abc123",
        "mysecret",
        "mypassword",
        "supersecret",
        "topsecret",
        "s3cr3t",
        "p@ssw0rd",
        "passw0rd",
        "hunter2",
    }
)
# `$DB_PASSWORD`, `$password`, `%APPDATA%`, `%s`: a variable, not a value. Mixed-case `$Xy9...`
# is left alone: it is as likely a password that starts with '$'.
_ENV_REFERENCE: Final = re.compile(r"\$(?:[A-Z_][A-Z0-9_]*|[a-z_][a-z0-9_]*)|%[A-Za-z_]\w*%|%[sdr]")
# Example credentials printed in RFC 6749 (OAuth 2.0) and copied into every OAuth library's
# docs and tests: public, never live.
_PUBLIC_EXAMPLES: Final = frozenset(
    {
        "2YotnFZFEjr1zCsicMWpAA",
        "tGzv3JOkF0XG5Qx2TlKWIA",
        "SplxlOBeZQQYbYS6WxSbIA",
        "gX1fBat3bV",
        "czZCaGRSa3F0MzpnWDFmQmF0M2JW",
        "8xLOxBtZp8",
        "mF_9.B5f-4.1JqM",
    }
)
# What sits inside "<password>", "[API_KEY]", "{token}", "(optional)".
_BRACKETED_NAME: Final = re.compile(r"[\w\s.:/|\-]*")
_BRACKETS: Final = {"<": ">", "[": "]", "{": "}", "(": ")"}
_ENCRYPTED_PREFIXES: Final = ("enc[", "$ansible_vault", "!vault", "vault:", "ref+", "op://")


_BASE64_TEXT: Final = re.compile(
    r"(?:[A-Za-z0-9+/]{4}){2,}(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?"
)


def _encoded_placeholder(value: str) -> bool:
    """A stand-in hidden under base64 (Kubernetes Secret data, docker `auth`):
    base64("not my real password"), base64("user:changeme")."""
    if not _BASE64_TEXT.fullmatch(value):
        return False
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        return False
    if not decoded.isprintable():
        return False
    secret = decoded.partition(":")[2] or decoded
    return _names_a_secret(secret) or _is_placeholder(secret)


def _is_placeholder(value: str) -> bool:
    """Not a credential: empty, a template, an environment reference or a stand-in."""
    stripped = value.strip()
    if not stripped:
        return True
    low = stripped.lower()
    if len(set(low)) <= 2:
        return True
    if _ENV_REFERENCE.fullmatch(stripped):
        return True
    if stripped[0] == ":" and stripped[1:].replace("_", "").isalnum():
        return True
    if _BRACKETS.get(stripped[0]) == stripped[-1] and _BRACKETED_NAME.fullmatch(stripped[1:-1]):
        return True
    if _TEMPLATE.search(stripped):
        return True
    if any(word in low for word in _PLACEHOLDER_WORDS) or "xxxx" in stripped or "XXXX" in stripped:
        return True
    if low.startswith(_ENCRYPTED_PREFIXES):
        return True
    if (low.startswith(_PLACEHOLDER_PREFIXES) or low.endswith(_PLACEHOLDER_SUFFIXES)) and _is_wordy(
        stripped
    ):
        return True
    if stripped in _PUBLIC_EXAMPLES:
        return True
    return low in _PLACEHOLDER_VALUES or low.strip("[]{}<>()") in _PLACEHOLDER_VALUES


_HASH_FORMAT: Final = re.compile(
    r"\$(?:2[abxy]?|1|5|6|7|y|gy|argon2(?:id|i|d)|scrypt|pbkdf2[-\w]*|sha\d*)\$"
    r"|(?:pbkdf2_sha\d+|bcrypt(?:_sha256)?|argon2|sha1|md5|scrypt|crypt|unsalted_\w+)\$"
    r"|\{(?:S?SHA\d*|CRYPT|S?MD5|PBKDF2[-\w]*|ARGON2)\}"
    r"|(?:sha(?:1|224|256|384|512)|md5)[:\-]",
    re.IGNORECASE,
)
_HEX: Final = re.compile(r"[0-9a-fA-F]+")
_UUID: Final = re.compile(
    r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
)
_EMAIL: Final = re.compile(r"[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+")
_REFERENCE_PREFIXES: Final = ("arn:", "projects/", "secrets/", "secret/", "sm://", "kms:", "gcp:")
# At least two path segments of ordinary file-name characters: "/run/secrets/db", "~/.ssh/id",
# "C:\\keys\\app.pfx" (a password may start with '/', but rarely looks like this).
_PATH: Final = re.compile(
    r"(?:~|\.{1,2})?/[\w.\-@]+(?:/[\w.\-@]+)+/?|\.{1,2}/[\w.\-@/]+|[A-Za-z]:[\\/][\w.\-\\/ ]+"
)


_LOWER_NAME: Final = re.compile(r"[a-z0-9_\-@]+")
_NAME_PART: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_\-]*")


def _is_reference(value: str) -> bool:
    """A path, URL, e-mail or cloud resource name: where a secret lives, not the secret."""
    if "://" in value:
        return True
    low = value.lower()
    if low.startswith(("file:", "\\\\")) or low.startswith(_REFERENCE_PREFIXES):
        return True
    if _PATH.fullmatch(value):
        # File names are words or lower-case ("id_ed25519"); random base64 that happens to
        # start with '/' has mixed-case segments.
        return all(
            _is_wordy(part) or _LOWER_NAME.fullmatch(part)
            for part in re.split(r"[/\\.:~]", value)
            if part
        )
    return _EMAIL.fullmatch(value) is not None


def _is_dotted_name(value: str) -> bool:
    """`myapp.auth.TokenBackend`, `config.db.password`, `realms/master/token`: a name or a
    route, not a value."""
    parts = [part for part in re.split(r"[./]", value) if part]
    return len(parts) >= 2 and all(_NAME_PART.fullmatch(p) and _is_wordy(p) for p in parts)


_LEET: Final = str.maketrans("@0134$5", "aoieass")


def _names_a_secret(value: str) -> bool:
    """ "P@ssw0rd!", "not-my-password", "mysecret": a stand-in that says what it stands for."""
    low = value.lower().translate(_LEET)
    return any(word in low for word in ("password", "passwd", "secret", "token"))


def _plausible_password(value: str) -> bool:
    n = len(value)
    if n < 6 or n > 128 or any(ch.isspace() for ch in value):
        return False
    if _is_reference(value) or _HASH_FORMAT.match(value) or _is_dotted_name(value):
        return False
    if value.isdigit() or _UUID.fullmatch(value):
        return False
    if n in (32, 40, 56, 64, 96, 128) and _HEX.fullmatch(value):
        return False
    if _names_a_secret(value):
        return False
    # Words alone are labels ("Password", "Mot-de-passe") or names; a human password mixes in
    # digits or symbols ("Tr0ub4dor&3", "summer2024").
    return not (_is_wordy(value) and not any(ch in _DIGITS for ch in value))


def _plausible_secret(value: str) -> bool:
    n = len(value)
    if n < 12 or n > 4096 or any(ch.isspace() for ch in value):
        return False
    if _is_reference(value) or _HASH_FORMAT.match(value) or _is_dotted_name(value):
        return False
    if value.isdigit() or _is_wordy(value) or _char_classes(value) < 2:
        return False
    # Below the 0.5 % quantile of random hex of the same length: "aaaabbbbccccdddd".
    return _entropy(value) >= min(2.5, math.log2(n) - 1.5)


# Random key material as configuration holds it: base64, base64url or hex.
_ENCODED_KEY: Final = re.compile(r"[A-Za-z0-9+/_\-]+={0,2}")


def _plausible_weak_key(value: str) -> bool:
    """For names that merely end in `key`: only clearly random values count."""
    if len(value) < 16 or _HEX.fullmatch(value) or _UUID.fullmatch(value):
        return False
    if not _ENCODED_KEY.fullmatch(value):
        return False
    if not any(ch.isalpha() for ch in value) or not any(ch in _DIGITS for ch in value):
        return False
    return _plausible_secret(value) and _entropy(value) >= 3.0


# ---- vendor tokens: literal prefixes --------------------------------------------------------

_Check = Callable[[str, re.Match[str]], bool]


@dataclass(frozen=True, slots=True)
class _TokenRule:
    rule: str
    type: str
    description: str
    pattern: re.Pattern[str]
    # Characters that may not come right before the match (checked in Python: a look-behind
    # at the start of the pattern would disable the engine's fast literal search).
    boundary: frozenset[str]
    min_entropy: float
    # Every match starts with (or, for a hand-given guard, contains) one of these; the regex
    # only runs on a text that holds one. Never empty (`_head_set` refuses such a rule).
    anchors: tuple[str, ...]
    check: _Check | None


# Alternations and small character classes multiply a pattern's heads; past this many the
# head stops at the shorter prefix read so far.
_MAX_HEADS: Final = 12


def _heads_of(items: Sequence[tuple[Any, Any]]) -> tuple[list[str], bool]:
    """The literal prefixes a parsed regex sequence can start with, and whether the whole
    sequence is literal (so a following item may extend them)."""
    heads = [""]
    for op, arg in items:
        whole = True
        if op is _sre.LITERAL:
            options = [chr(arg)]
        elif op is _sre.IN and all(kind is _sre.LITERAL for kind, _ in arg):
            options = [chr(value) for _, value in arg]
        elif op is _sre.SUBPATTERN and not arg[1] and not arg[2]:
            options, whole = _heads_of(arg[3].data)
        elif op is _sre.BRANCH:
            options = []
            for alternative in arg[1]:
                found, complete = _heads_of(alternative.data)
                options.extend(found)
                whole = whole and complete
        else:
            return heads, False
        if len(heads) * len(options) > _MAX_HEADS:
            return heads, False
        heads = [head + option for head in heads for option in options]
        if not whole:
            return heads, False
    return heads, True


def _literal_heads(pattern: re.Pattern[str]) -> tuple[str, ...]:
    """Literal strings one of which starts every match of `pattern`; empty when the pattern
    does not start with one of at least two characters (or ignores case)."""
    if pattern.flags & re.IGNORECASE:
        return ()
    heads, _ = _heads_of(_sre_parser.parse(pattern.pattern, pattern.flags).data)
    if any(len(head) < 2 for head in heads):
        return ()
    return tuple(sorted(set(heads)))


def _token(
    rule: str,
    type_: str,
    description: str,
    pattern: str,
    *,
    boundary: frozenset[str] = _ALNUM,
    min_entropy: float = 3.0,
    guard: str | None = None,
    check: _Check | None = None,
) -> _TokenRule:
    compiled = re.compile(pattern)
    anchors = (guard,) if guard is not None else _literal_heads(compiled)
    return _TokenRule(rule, type_, description, compiled, boundary, min_entropy, anchors, check)


def _sas_signature(text: str, match: re.Match[str]) -> bool:
    start = match.start()
    return start > 0 and text[start - 1] in "?&" and "sv=" in text


def _openai_body(text: str, match: re.Match[str]) -> bool:
    body = match.group("body")
    return any(ch in _DIGITS for ch in body) and any(ch.isalpha() for ch in body)


def _slack_body(text: str, match: re.Match[str]) -> bool:
    return any(ch in _DIGITS for ch in match.group("body"))


_TOKEN_RULES: Final = (
    _token(
        "aws.access_key_id",
        "aws_access_key_id",
        "AWS access key id (AKIA long-term, ASIA temporary, ABIA, ACCA).",
        r"(?:AKIA|ASIA|ABIA|ACCA)(?P<body>[A-Z0-9]{16})(?![A-Za-z0-9])",
        min_entropy=2.5,
    ),
    _token(
        "gcp.api_key",
        "gcp_api_key",
        "Google Cloud / Firebase API key (AIza...).",
        r"AIza(?P<body>[0-9A-Za-z_\-]{35})(?![0-9A-Za-z_\-])",
        boundary=_TOKEN,
    ),
    _token(
        "gcp.oauth_client_secret",
        "gcp_oauth_client_secret",
        "Google OAuth client secret (GOCSPX-...).",
        r"GOCSPX-(?P<body>[0-9A-Za-z_\-]{28})(?![0-9A-Za-z_\-])",
    ),
    _token(
        "gcp.oauth_access_token",
        "gcp_oauth_access_token",
        "Google OAuth access token (ya29.).",
        r"ya29\.(?P<body>[0-9A-Za-z_\-]{30,512}+)",
    ),
    _token(
        "azure.storage_account_key",
        "azure_storage_account_key",
        "Azure storage account key in a connection string (AccountKey=...).",
        r"AccountKey=(?P<secret>(?P<body>[A-Za-z0-9+/]{40,512}+)={0,2}+)(?![A-Za-z0-9+/=])",
        boundary=_NO_BOUNDARY,
    ),
    _token(
        "azure.shared_access_key",
        "azure_shared_access_key",
        "Azure Service Bus / Event Hubs / IoT shared access key (SharedAccessKey=...).",
        r"SharedAccessKey=(?P<secret>(?P<body>[A-Za-z0-9+/]{30,512}+)={0,2}+)(?![A-Za-z0-9+/=])",
        boundary=_NO_BOUNDARY,
    ),
    _token(
        "azure.sas_signature",
        "azure_sas_token",
        "Signature of an Azure shared access signature URL (sv=...&sig=...).",
        r"sig=(?P<secret>(?P<body>[A-Za-z0-9%+/]{30,512}+)(?:%3[dD]|=){0,2}+)(?![A-Za-z0-9%+/=])",
        boundary=_NO_BOUNDARY,
        check=_sas_signature,
    ),
    _token(
        "azure.client_secret",
        "azure_client_secret",
        "Microsoft Entra ID (Azure AD) application client secret (...Q~...).",
        r"(?P<body>[A-Za-z0-9_~.\-]{3}\dQ~[A-Za-z0-9_~.\-]{31,34}+)(?![A-Za-z0-9_~.\-])",
        boundary=_TOKEN | {"~", "."},
        guard="Q~",
    ),
    _token(
        "github.token",
        "github_token",
        "GitHub token: personal (ghp_), OAuth (gho_), user-to-server (ghu_), "
        "server-to-server (ghs_), refresh (ghr_).",
        r"gh[pousr]_(?P<body>[A-Za-z0-9]{36,251}+)(?![A-Za-z0-9_])",
        boundary=_WORD,
    ),
    _token(
        "github.fine_grained_pat",
        "github_token",
        "GitHub fine-grained personal access token (github_pat_...).",
        r"github_pat_(?P<body>[A-Za-z0-9_]{60,512}+)(?![A-Za-z0-9_])",
        boundary=_WORD,
    ),
    _token(
        "gitlab.token",
        "gitlab_token",
        "GitLab token: personal/project/group access (glpat-), deploy (gldt-), runner (glrt-), "
        "pipeline trigger (glptt-), feed (glft-), CI job (glcbt-), incoming mail (glimt-), "
        "OAuth app secret (gloas-), SCIM (glsoat-), agent (glagent-).",
        r"gl(?:pat|dt|rt|ptt|ft|cbt|imt|oas|soat|agent)-(?P<body>[0-9A-Za-z_\-]{20,512}+)"
        r"(?:\.[0-9a-z]{2}\.[0-9a-z]{7,9}+)?(?![0-9A-Za-z_\-])",
        boundary=_WORD,
    ),
    _token(
        "gitlab.runner_registration_token",
        "gitlab_token",
        "GitLab runner registration token (GR1348941...).",
        r"GR1348941(?P<body>[0-9A-Za-z_\-]{20,512}+)(?![0-9A-Za-z_\-])",
    ),
    _token(
        "bitbucket.app_password",
        "bitbucket_app_password",
        "Bitbucket app password (ATBB...).",
        r"ATBB(?P<body>[A-Za-z0-9_=.\-]{24,512}+)(?![A-Za-z0-9_=.\-])",
    ),
    _token(
        "bitbucket.access_token",
        "bitbucket_access_token",
        "Bitbucket repository/project/workspace access token (ATCTT3...).",
        r"ATCTT3(?P<body>[A-Za-z0-9_=.\-]{60,512}+)(?![A-Za-z0-9_=.\-])",
    ),
    _token(
        "atlassian.api_token",
        "atlassian_api_token",
        "Atlassian (Bitbucket, Jira, Confluence) API token (ATATT3...).",
        r"ATATT3(?P<body>[A-Za-z0-9_=.\-]{60,512}+)(?![A-Za-z0-9_=.\-])",
    ),
    _token(
        "slack.token",
        "slack_token",
        "Slack bot/user/app/workspace/refresh token (xoxb-, xoxp-, xoxa-, xoxo-, xoxs-, xoxr-, "
        "xoxe-).",
        r"xox(?:e\.xox[bp]|[abposre])-(?P<body>[0-9A-Za-z\-]{10,512}+)(?![0-9A-Za-z\-])",
        boundary=_WORD,
        check=_slack_body,
    ),
    _token(
        "slack.app_token",
        "slack_token",
        "Slack app-level token (xapp-).",
        r"xapp-(?P<body>\d-[A-Za-z0-9\-]{20,512}+)(?![0-9A-Za-z\-])",
        boundary=_WORD,
    ),
    _token(
        "slack.webhook",
        "slack_webhook_url",
        "Slack incoming webhook / workflow trigger URL (the path after hooks.slack.com).",
        r"hooks\.slack\.com/(?:services|workflows|triggers)/"
        r"(?P<secret>(?P<body>[A-Za-z0-9_\-]+/[A-Za-z0-9_/\-]{16,512}+))",
        boundary=_NO_BOUNDARY,
    ),
    _token(
        "discord.webhook",
        "discord_webhook_url",
        "Discord webhook URL (the id/token path after /api/webhooks/).",
        r"discord(?:app)?\.com/api/webhooks/(?P<secret>\d{15,21}+/(?P<body>[A-Za-z0-9_\-]{50,512}+))",
        boundary=_NO_BOUNDARY,
    ),
    _token(
        "stripe.secret_key",
        "stripe_secret_key",
        "Stripe secret key (sk_live_, sk_test_).",
        r"sk_(?:live|test)_(?P<body>[0-9A-Za-z]{20,512}+)(?![0-9A-Za-z_])",
        boundary=_WORD,
    ),
    _token(
        "stripe.restricted_key",
        "stripe_restricted_key",
        "Stripe restricted key (rk_live_, rk_test_).",
        r"rk_(?:live|test)_(?P<body>[0-9A-Za-z]{20,512}+)(?![0-9A-Za-z_])",
        boundary=_WORD,
    ),
    _token(
        "stripe.webhook_secret",
        "stripe_webhook_secret",
        "Stripe webhook signing secret (whsec_).",
        r"whsec_(?P<body>[A-Za-z0-9+/=]{24,512}+)(?![A-Za-z0-9+/=])",
        boundary=_WORD,
    ),
    _token(
        "twilio.api_key",
        "twilio_api_key",
        "Twilio API key SID (SK + 32 hex), half of a Twilio credential pair.",
        r"SK(?P<body>[0-9a-fA-F]{32})(?![0-9A-Za-z])",
    ),
    _token(
        "sendgrid.api_key",
        "sendgrid_api_key",
        "SendGrid API key (SG.<22>.<43>).",
        r"SG\.(?P<body>[A-Za-z0-9_\-]{22}\.[A-Za-z0-9_\-]{43})(?![A-Za-z0-9_\-])",
    ),
    _token(
        "anthropic.api_key",
        "anthropic_api_key",
        "Anthropic API or admin key (sk-ant-...).",
        r"sk-ant-(?P<body>[a-z]+\d*-[A-Za-z0-9_\-]{32,512}+)(?![A-Za-z0-9_\-])",
        boundary=_TOKEN,
    ),
    _token(
        "openai.api_key",
        "openai_api_key",
        "OpenAI API key: project (sk-proj-), service account (sk-svcacct-), admin (sk-admin-) "
        "and legacy user keys (sk- + 32 or more alphanumerics).",
        r"sk-(?P<body>(?:proj|svcacct|admin|None)-[A-Za-z0-9_\-]{20,512}+|[A-Za-z0-9]{32,512}+)"
        r"(?![A-Za-z0-9_\-])",
        boundary=_TOKEN,
        check=_openai_body,
    ),
    _token(
        "npm.token",
        "npm_token",
        "npm access token (npm_).",
        r"npm_(?P<body>[A-Za-z0-9]{36})(?![A-Za-z0-9])",
        boundary=_WORD,
    ),
    _token(
        "pypi.token",
        "pypi_token",
        "PyPI / TestPyPI upload token (pypi-Ag...).",
        r"pypi-(?P<body>Ag[A-Za-z0-9_\-]{50,512}+)(?![A-Za-z0-9_\-])",
        boundary=_WORD,
    ),
    _token(
        "huggingface.token",
        "huggingface_token",
        "Hugging Face access token (hf_).",
        r"hf_(?P<body>[A-Za-z]{34,40}+)(?![A-Za-z0-9_])",
        boundary=_WORD,
    ),
    _token(
        "hashicorp.vault_token",
        "vault_token",
        "HashiCorp Vault service, batch or recovery token (hvs., hvb., hvr.).",
        r"hv[sbr]\.(?P<body>[A-Za-z0-9_\-]{24,512}+)(?![A-Za-z0-9_\-])",
        boundary=_WORD,
    ),
    _token(
        "digitalocean.token",
        "digitalocean_token",
        "DigitalOcean personal access, OAuth or refresh token (dop_v1_, doo_v1_, dor_v1_).",
        r"do[por]_v1_(?P<body>[a-f0-9]{64})(?![A-Za-z0-9])",
        boundary=_WORD,
    ),
    _token(
        "shopify.token",
        "shopify_token",
        "Shopify access token or shared secret (shpat_, shpca_, shppa_, shpss_).",
        r"shp(?:at|ca|pa|ss)_(?P<body>[a-fA-F0-9]{32})(?![A-Za-z0-9])",
        boundary=_WORD,
    ),
    _token(
        "databricks.token",
        "databricks_token",
        "Databricks personal access token (dapi + 32 hex).",
        r"dapi(?P<body>[a-f0-9]{32})(?:-\d)?(?![A-Za-z0-9])",
    ),
    _token(
        "grafana.token",
        "grafana_token",
        "Grafana service account token (glsa_) or Grafana Cloud token (glc_).",
        r"gl(?:sa|c)_(?P<body>[A-Za-z0-9+/_]{32,512}+={0,2}+)(?![A-Za-z0-9+/=_])",
        boundary=_WORD,
    ),
    _token(
        "sentry.token",
        "sentry_token",
        "Sentry auth token (sntrys_, sntryu_).",
        r"sntr[ysu]_(?P<body>[A-Za-z0-9+/=_\-]{40,512}+)(?![A-Za-z0-9+/=_\-])",
        boundary=_WORD,
    ),
    _token(
        "postman.api_key",
        "postman_api_key",
        "Postman API key (PMAK-).",
        r"PMAK-(?P<body>[a-f0-9]{24}-[a-f0-9]{34})(?![A-Za-z0-9])",
    ),
    _token(
        "age.secret_key",
        "age_secret_key",
        "age encryption secret key (AGE-SECRET-KEY-1...).",
        r"AGE-SECRET-KEY-1(?P<body>[02-9AC-HJ-NP-Z]{58})(?![A-Z0-9])",
    ),
    _token(
        "telegram.bot_token",
        "telegram_bot_token",
        "Telegram bot token (<bot id>:AA...).",
        r"(?P<body>\d{8,10}+:AA[0-9A-Za-z_\-]{33})(?![0-9A-Za-z_\-])",
        guard=":AA",
    ),
    _token(
        "microsoft.teams_webhook",
        "teams_webhook_url",
        "Microsoft Teams incoming webhook URL (the path after webhook.office.com/webhookb2/).",
        r"\.webhook\.office\.com/webhookb2/(?P<secret>(?P<body>[A-Za-z0-9@\-]+/[A-Za-z0-9@/\-]{30,512}+))",
        boundary=_NO_BOUNDARY,
    ),
    _token(
        "mapbox.secret_token",
        "mapbox_token",
        "Mapbox secret access token (sk.eyJ...).",
        r"sk\.(?P<body>eyJ[A-Za-z0-9_\-]{20,512}+\.[A-Za-z0-9_\-]{20,512}+)(?![A-Za-z0-9_\-])",
        boundary=_WORD,
    ),
)


# Substrings without which a detector's pattern cannot match: looked up in the same RE2 pass
# as the vendor heads, instead of one substring search each over the whole text.
_GUARDS: Final = (
    "Private-Lines: ",
    "-----BEGIN ",
    "--",
    " -p",
    "machine",
    "uthorization",
    "earer",
    "EARER",
    "asic",
    "ASIC",
    "-u",
    "value=",
)


@dataclass(frozen=True, slots=True)
class _Seen:
    """What one RE2 pass found in a text: the vendor rules whose head occurs (in declaration
    order) and which guard substrings occur."""

    rules: tuple[_TokenRule, ...]
    guards: frozenset[str]


def _head_set(
    rules: Sequence[_TokenRule], guards: Sequence[str]
) -> tuple[re2.Set, list[tuple[tuple[int, ...], str | None]]]:
    """One RE2 set of every rule's anchors and every guard; per set entry, the rules it stands
    for and the guard it is (if any)."""
    heads = re2.Set.SearchSet()
    owners: dict[str, list[int]] = {}
    for index, rule in enumerate(rules):
        if not rule.anchors:
            raise ValueError(f"vendor rule {rule.rule} has no literal head or guard")
        for anchor in rule.anchors:
            owners.setdefault(anchor, []).append(index)
    for guard in guards:
        owners.setdefault(guard, [])
    entries: list[tuple[tuple[int, ...], str | None]] = []
    for literal, indexes in owners.items():
        if heads.Add(re.escape(literal)) != len(entries):
            raise RuntimeError("RE2 set entries out of order")
        entries.append((tuple(indexes), literal if literal in guards else None))
    heads.Compile()
    return heads, entries


_HEADS, _HEAD_ENTRIES = _head_set(_TOKEN_RULES, _GUARDS)
_NOTHING_SEEN: Final = _Seen((), frozenset())


def _seen(text: str) -> _Seen:
    hits = _HEADS.Match(text)
    if not hits:
        return _NOTHING_SEEN
    found: set[int] = set()
    guards: set[str] = set()
    for entry in hits:
        indexes, guard = _HEAD_ENTRIES[entry]
        found.update(indexes)
        if guard is not None:
            guards.add(guard)
    return _Seen(tuple(_TOKEN_RULES[i] for i in sorted(found)), frozenset(guards))


def _scan_tokens(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    for rule in seen.rules:
        for m in rule.pattern.finditer(text):
            start = m.start()
            if start and text[start - 1] in rule.boundary:
                continue
            body = m.group("body")
            if _looks_fake(body) or _entropy(body) < rule.min_entropy:
                continue
            if rule.check is not None and not rule.check(text, m):
                continue
            span = m.span("secret") if "secret" in rule.pattern.groupindex else m.span()
            yield _PRIORITY_VENDOR, SecretMatch(rule.type, span[0], span[1], rule.rule)
            if rule.rule == "aws.access_key_id":
                yield from _aws_secret_near(text, m.end())


# A secret access key usually sits right after its key id (credentials CSV, INI, env files).
_AWS_SECRET_NEAR: Final = re.compile(r"(?<![A-Za-z0-9/+])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=])")


def _looks_like_aws_secret(value: str) -> bool:
    return (
        _char_classes(value) >= 3
        and _entropy(value) >= 4.0
        and "EXAMPLE" not in value
        and not _looks_fake(value)
    )


def _aws_secret_near(text: str, after: int) -> Iterator[tuple[int, SecretMatch]]:
    m = _AWS_SECRET_NEAR.search(text, after, min(len(text), after + 200))
    if m is not None and _looks_like_aws_secret(m.group()):
        yield (
            _PRIORITY_VENDOR,
            SecretMatch("aws_secret_access_key", m.start(), m.end(), "aws.secret_access_key"),
        )


# ---- private keys ---------------------------------------------------------------------------

_PEM_BEGIN: Final = re.compile(
    r"-----BEGIN (?P<label>(?:[A-Z0-9]+ ){0,3}PRIVATE KEY(?: BLOCK)?)-----"
)
# Lines of a key: real newlines, or `\n` escapes when the key sits in a JSON or code string.
_PEM_LINE_BREAK: Final = re.compile(r"\\r\\n|\\n|\r?\n")
_PEM_NOISE: Final = " \t\"'+,;()\\"
_PEM_DATA: Final = re.compile(r"=?[A-Za-z0-9+/]+={0,2}")
_PEM_HEADER: Final = re.compile(r"[A-Za-z][A-Za-z0-9\-]*: ?.*")
_PEM_MAX_SCAN: Final = 65_536
_PEM_MIN_DATA: Final = 64
_GCP_KEY_FIELD: Final = re.compile(r"[\"']private_key[\"']\s*:\s*[\"']$")


def _pem_block(text: str, begin: re.Match[str]) -> tuple[int, int] | None:
    """Span of the key block opened by `begin`; a block cut off by the prompt window counts."""
    label = begin.group("label")
    limit = min(len(text), begin.end() + _PEM_MAX_SCAN)
    pos = begin.end()
    end = pos
    data = headers = 0
    while pos < limit:
        brk = _PEM_LINE_BREAK.search(text, pos, limit)
        line_end = brk.start() if brk is not None else limit
        raw = text[pos:line_end]
        line = raw.strip(_PEM_NOISE)
        if line:
            if line.startswith("-----END "):
                if line.startswith(f"-----END {label}-----") and data >= _PEM_MIN_DATA:
                    return begin.start(), pos + raw.index("-----END") + len(label) + 14
                break
            chunks = line.split()
            if all(_PEM_DATA.fullmatch(chunk) for chunk in chunks):
                data += sum(len(chunk) for chunk in chunks)
            elif headers < 4 and data == 0 and _PEM_HEADER.fullmatch(line):
                headers += 1
            else:
                break
            end = pos + len(raw.rstrip(_PEM_NOISE))
        if brk is None:
            break
        pos = brk.end()
    if data < _PEM_MIN_DATA:
        return None
    return begin.start(), end


_PUTTY_PRIVATE: Final = re.compile(
    r"Private-Lines: \d{1,4}\r?\n"
    r"(?P<secret>[A-Za-z0-9+/=]{4,128}(?:\r?\n[A-Za-z0-9+/=]{4,128}){0,256})"
)
# base64 of "-----BEGIN": a whole PEM file base64-encoded again (kubeconfig client-key-data,
# Kubernetes Secret data, CI variables).
_PEM_BASE64: Final = re.compile(r"LS0tLS1CRUdJTi[A-Za-z0-9+/]{60,65536}+={0,2}(?![A-Za-z0-9+/=])")


def _scan_wrapped_private_keys(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    if "Private-Lines: " in seen.guards:
        for m in _PUTTY_PRIVATE.finditer(text):
            if len(m.group("secret")) >= _PEM_MIN_DATA and not _looks_fake(m.group("secret")):
                start, end = m.span("secret")
                yield _PRIORITY_VENDOR, SecretMatch("private_key", start, end, "putty.private_key")
    for m in _anchored_matches(text, "LS0tLS1CRUdJTi", _PEM_BASE64, _B64):
        try:
            head = base64.b64decode(m.group()[:80])
        except binascii.Error:
            continue
        if b"PRIVATE KEY" in head:
            yield (
                _PRIORITY_VENDOR,
                SecretMatch("private_key", m.start(), m.end(), "pem.base64_private_key"),
            )


def _scan_private_keys(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    yield from _scan_wrapped_private_keys(text, seen)
    if "-----BEGIN " not in seen.guards:
        return
    for m in _PEM_BEGIN.finditer(text):
        span = _pem_block(text, m)
        if span is None:
            continue
        start, end = span
        body = text[m.end() : end]
        if len(set(body)) <= 12 or "xxxxxxxx" in body.lower() or "EXAMPLE" in body:
            continue
        before = text[max(0, start - 40) : start]
        if _GCP_KEY_FIELD.search(before) and (
            "gserviceaccount.com" in text or "service_account" in text
        ):
            yield (
                _PRIORITY_VENDOR,
                SecretMatch("gcp_service_account_key", start, end, "gcp.service_account_key"),
            )
        else:
            yield _PRIORITY_VENDOR, SecretMatch("private_key", start, end, "pem.private_key")


# ---- JSON Web Tokens -------------------------------------------------------------------------

_JWT: Final = re.compile(
    r"eyJ[A-Za-z0-9_\-]{8,4096}+\.[A-Za-z0-9_\-]{4,16384}+\.[A-Za-z0-9_\-]{0,4096}+"
    r"(?![A-Za-z0-9_\-])"
)


def _anchored_matches(
    text: str, literal: str, pattern: re.Pattern[str], boundary: frozenset[str]
) -> Iterator[re.Match[str]]:
    """Matches of `pattern` starting at each `literal` that does not follow a `boundary`
    character. For patterns with long bodies: checking the boundary before matching keeps
    a run like "eyJeyJeyJ..." linear (finditer would rescan the run from every occurrence)."""
    i = text.find(literal)
    while i >= 0:
        if not (i and text[i - 1] in boundary):
            m = pattern.match(text, i)
            if m is not None:
                yield m
                i = text.find(literal, m.end())
                continue
        i = text.find(literal, i + 1)


def _jwt_header_has_alg(segment: str) -> bool:
    try:
        raw = base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
        header = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return False
    return isinstance(header, dict) and isinstance(header.get("alg"), str)


def _is_jwt_docs_example(payload_segment: str) -> bool:
    """The sample tokens of the JWT introduction (sub 1234567890, name John Doe) and of
    PyJWT's README ({"some": "payload"}): public, copied into countless codebases."""
    try:
        raw = base64.urlsafe_b64decode(payload_segment + "=" * (-len(payload_segment) % 4))
        payload = orjson.loads(raw)
    except (binascii.Error, ValueError):
        return False
    if not isinstance(payload, dict):
        return False
    jwt_io = payload.get("sub") == "1234567890" and payload.get("name") == "John Doe"
    return jwt_io or payload == {"some": "payload"}


def _scan_jwts(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    for m in _anchored_matches(text, "eyJ", _JWT, _TOKEN):
        header, payload, _ = m.group().split(".", 2)
        if _jwt_header_has_alg(header) and not _is_jwt_docs_example(payload):
            yield _PRIORITY_JWT, SecretMatch("jwt", m.start(), m.end(), "jwt.token")


# ---- passwords in URLs and connection strings ------------------------------------------------

# The password may contain ':' and (unencoded, as people do write it) '@': the greedy match
# backs off to the last '@' before the host.
_URL_CREDENTIALS: Final = re.compile(
    r"://(?P<user>[^\s:/?#@\"'`<>\\]{0,256}):(?P<secret>[^\s/,\"'`<>\\]{1,256})@"
    r"(?P<host>[^\s/?#@\"'`<>\\]+)"
)
_SCHEME_CHARS: Final = _ALNUM | {"+", ".", "-"}
_DATABASE_SCHEMES: Final = frozenset(
    {
        "postgres",
        "postgresql",
        "pgsql",
        "mysql",
        "mariadb",
        "mssql",
        "sqlserver",
        "oracle",
        "db2",
        "cockroachdb",
        "clickhouse",
        "mongodb",
        "redis",
        "rediss",
        "valkey",
        "memcached",
        "amqp",
        "amqps",
        "kafka",
        "nats",
        "mqtt",
        "mqtts",
        "stomp",
        "cassandra",
        "neo4j",
        "bolt",
        "couchdb",
        "couchbase",
        "snowflake",
        "redshift",
        "influxdb",
        "elasticsearch",
        "opensearch",
        "ldap",
        "ldaps",
        "sqlalchemy",
        "jdbc",
    }
)


def _url_password_type(scheme: str) -> tuple[str, str]:
    base = scheme.split("+", 1)[0]
    if base in _DATABASE_SCHEMES or "sql" in base:
        return "connection_string_password", "connstr.url_password"
    return "url_password", "url.password"


def _scan_url_passwords(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    for m in _URL_CREDENTIALS.finditer(text):
        begin = m.start()
        scheme_start = begin
        while scheme_start > 0 and text[scheme_start - 1] in _SCHEME_CHARS:
            scheme_start -= 1
        if scheme_start == begin:
            continue
        user = unquote(m.group("user"))
        password = unquote(m.group("secret"))
        if len(password) < 3 or _is_placeholder(password) or password.lower() == user.lower():
            continue
        if (password.isdigit() and len(password) <= 5) or _names_a_secret(password):
            continue
        if _is_wordy(password.strip("[]")) and not any(ch in _DIGITS for ch in password):
            # "tiger", "masterkey", "SAS_KEY", "repo": documentation, not a password.
            continue
        type_, rule = _url_password_type(text[scheme_start:begin].lower())
        yield _PRIORITY_URL, SecretMatch(type_, m.start("secret"), m.end("secret"), rule)


# ---- Authorization headers and command-line credentials -------------------------------------

_BEARER: Final = re.compile(
    r"(?:Bearer|bearer|BEARER)[ \t]+(?P<secret>[A-Za-z0-9\-._~+/]{1,4096}+=*)"
    r"(?![A-Za-z0-9\-._~+/=])"
)
_BASIC: Final = re.compile(
    r"(?:Basic|basic|BASIC)[ \t]+(?P<secret>[A-Za-z0-9+/]{8,1024}+={0,2})(?![A-Za-z0-9+/=])"
)
_CLI_USER: Final = re.compile(
    r"(?:-u|--user)[ \t=]+[\"']?(?P<user>[^\s:\"'$`]{1,128}):(?P<secret>[^\s\"'`]{1,256})"
)


def _basic_credentials(value: str) -> bool:
    try:
        decoded = base64.b64decode(value + "=" * (-len(value) % 4), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        return False
    user, sep, password = decoded.partition(":")
    return bool(sep) and len(password) >= 3 and not _is_placeholder(password) and user != password


_AUTHORIZATION: Final = re.compile(
    r"uthorization[\"']?\]?[ \t]*[:=][ \t]*[\"']?(?:(?P<scheme>[A-Za-z][\w\-]*)[ \t]+)?"
    r"(?P<secret>[A-Za-z0-9\-._~+/]{16,4096}+=*)(?![A-Za-z0-9\-._~+/=])"
)
_CLI_FLAG: Final = re.compile(
    r"--(?:[a-z0-9]+-)*(?P<name>password|passwd|pass|token|secret|api-key|apikey|access-key"
    r"|secret-key|client-secret|auth-token|access-token|private-key)(?:[ \t]+|=)"
    r"(?:\"(?P<dq>[^\"\n]{0,1024})\"|'(?P<sq>[^'\n]{0,1024})'|(?P<bare>[^\s\"'`|;&<>()]{1,512}))"
)
_LOGIN_PASSWORD_FLAG: Final = re.compile(
    r"login\b[^\n|;&]{0,200}?[ \t]-p[ \t]+"
    r"(?:\"(?P<dq>[^\"\n]{0,1024})\"|'(?P<sq>[^'\n]{0,1024})'|(?P<bare>[^\s\"'`|;&<>()]{1,512}))"
)
_NETRC: Final = re.compile(
    r"machine[ \t]+\S{1,256}\s+login[ \t]+\S{1,256}\s+password[ \t]+(?P<bare>[^\s\"'`]{1,256})"
)


def _quoted_or_bare_span(m: re.Match[str]) -> tuple[int, int]:
    for group in ("dq", "sq"):
        if m.group(group) is not None:
            return m.span(group)
    return m.span("bare")


def _scan_command_lines(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    if "--" in seen.guards:
        for m in _CLI_FLAG.finditer(text):
            start, end = _quoted_or_bare_span(m)
            value = text[start:end]
            if _is_placeholder(value):
                continue
            if m.group("name") in ("password", "passwd", "pass"):
                if _plausible_password(value):
                    yield _PRIORITY_HEADER, SecretMatch("password", start, end, "cli.flag")
            elif _plausible_secret(value):
                yield _PRIORITY_HEADER, SecretMatch("generic_secret", start, end, "cli.flag")
    if " -p" in seen.guards:
        for m in _LOGIN_PASSWORD_FLAG.finditer(text):
            start, end = _quoted_or_bare_span(m)
            value = text[start:end]
            if not _is_placeholder(value) and _plausible_password(value):
                yield _PRIORITY_HEADER, SecretMatch("password", start, end, "cli.login_password")
    if "machine" in seen.guards:
        for m in _NETRC.finditer(text):
            value = m.group("bare")
            if not _is_placeholder(value) and len(value) >= 6:
                start, end = m.span("bare")
                yield _PRIORITY_HEADER, SecretMatch("password", start, end, "netrc.password")


def _scan_headers(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    if "uthorization" in seen.guards:
        for m in _AUTHORIZATION.finditer(text):
            scheme = (m.group("scheme") or "").lower()
            value = m.group("secret")
            if scheme in ("basic", "bearer") or _is_placeholder(value):
                continue
            if _plausible_secret(value):
                start, end = m.span("secret")
                yield (
                    _PRIORITY_HEADER,
                    SecretMatch("authorization_token", start, end, "http.authorization"),
                )
    if "earer" in seen.guards or "EARER" in seen.guards:
        for m in _BEARER.finditer(text):
            value = m.group("secret")
            if m.start() and text[m.start() - 1] in _WORD:
                continue
            if not _is_placeholder(value) and len(value) >= 16 and _plausible_secret(value):
                start, end = m.span("secret")
                yield _PRIORITY_HEADER, SecretMatch("bearer_token", start, end, "http.bearer")
    if "asic" in seen.guards or "ASIC" in seen.guards:
        for m in _BASIC.finditer(text):
            if m.start() and text[m.start() - 1] in _WORD:
                continue
            if _basic_credentials(m.group("secret")):
                start, end = m.span("secret")
                yield _PRIORITY_HEADER, SecretMatch("basic_auth", start, end, "http.basic")
    if "-u" in seen.guards:
        for m in _CLI_USER.finditer(text):
            if m.start() and not text[m.start() - 1].isspace():
                continue
            password = m.group("secret")
            if (
                len(password) >= 3
                and not _is_placeholder(password)
                and password != m.group("user")
                and not password.isdigit()
            ):
                start, end = m.span("secret")
                yield _PRIORITY_HEADER, SecretMatch("password", start, end, "cli.user_password")


# ---- assignments: `password = "..."`, `"api_key": "..."`, `SECRET_KEY=...` -------------------

# Keywords are found with plain substring searches over the lower-cased text (one fast pass
# each; a regex alternation tries every position). A hit counts when the keyword ends a name
# (`db_password`, `apiKey`, `SECRET_KEY`; not `password_hash`) and is followed by something
# that can introduce a value, so most mentions of "key" or "token" in code cost one match.
_KEYWORD_NEEDLES: Final = ("pass", "pw", "secret", "token", "key", "cred", "auth")
_KEYWORD_AT: Final = re.compile(
    r"(?:pass(?:word|wd|phrase)?|pwd?|secret|token|key|credentials?|creds|auth)"
    r"(?![a-z0-9_.\-])(?=(?:\\?[\"'`]\]?|\])?[ \t]*[=:,>])"
)


def _keyword_ends(lowered: str, present: set[str]) -> list[int]:
    """End offsets of credential keywords that end a name followed by a value separator;
    adds each needle found to `present`."""
    ends: set[int] = set()
    for needle in _KEYWORD_NEEDLES:
        i = lowered.find(needle)
        if i >= 0:
            present.add(needle)
        while i >= 0:
            m = _KEYWORD_AT.match(lowered, i)
            if m is not None:
                ends.add(m.end())
            i = lowered.find(needle, i + 1)
    return sorted(ends)


_PASSWORD_SUFFIXES: Final = ("password", "passwd", "passphrase", "pwd")
_SECRET_SUFFIXES: Final = (
    "secret",
    "token",
    "apikey",
    "credential",
    "credentials",
    "creds",
    "auth",
    "authkey",
    "privatekey",
    "secretkey",
    "accesskey",
    "signingkey",
    "encryptionkey",
    "encryptkey",
    "decryptionkey",
    "masterkey",
    "clientkey",
    "appkey",
    "accountkey",
    "storagekey",
    "hmackey",
    "jwtkey",
    "licensekey",
    "subscriptionkey",
    "webhookkey",
    "sharedkey",
    "servicekey",
    "adminkey",
    "writekey",
    "deploykey",
    "consumerkey",
    "cryptokey",
    "cipherkey",
    "aeskey",
    "serverkey",
    "securekey",
)
# Names that end like a credential but hold something else: pagination cursors, tokenizer
# special tokens, database and cache keys, public material.
_NOT_SECRET_SUFFIXES: Final = (
    "csrftoken",
    "xsrftoken",
    "pagetoken",
    "nexttoken",
    "continuationtoken",
    "cancellationtoken",
    "synctoken",
    "resumetoken",
    "cursortoken",
    "bostoken",
    "eostoken",
    "padtoken",
    "unktoken",
    "masktoken",
    "septoken",
    "clstoken",
    "starttoken",
    "endtoken",
    "stoptoken",
    "specialtoken",
    "publickey",
    "pubkey",
    "primarykey",
    "foreignkey",
    "sortkey",
    "partitionkey",
    "cachekey",
    "hashkey",
    "rangekey",
    "routingkey",
    "idempotencykey",
    "dictkey",
    "mapkey",
    "rowkey",
    "lookupkey",
    "shortcutkey",
    "hotkey",
    "uniquekey",
    "compositekey",
    "indexkey",
    "objectkey",
    "s3key",
    "i18nkey",
    "translationkey",
    "messagekey",
    "labelkey",
    "fieldkey",
    "columnkey",
    "tablekey",
    "groupkey",
    "statekey",
    "registrykey",
    "gpgkey",
    "pgpkey",
    "sshkey",
    "authorizedkey",
    "authorizedkeys",
    "publishablekey",
    "publickeytoken",
    "websocketkey",
    "storagekeyname",
)

_PASSWORD = "password"
_SECRET = "secret"
_WEAK = "weak"


def _ends_with_word(name: str, word: str) -> bool:
    """`name` ends with `word` as its own word: `DB_PASS`, `dbPass`, `pass` — not `bypass`."""
    n = len(word)
    if len(name) < n or name[-n:].lower() != word:
        return False
    if len(name) == n:
        return True
    before = name[-n - 1]
    return before in "_-." or (name[-n].isupper() and (before.islower() or before in _DIGITS))


def _classify_key(name: str) -> str | None:
    parts = name.lstrip("-").split(".")
    segment = parts[-1]
    if not segment:
        return None
    # `api.key`, `secret.key` (properties files): the word before the dot qualifies the key.
    norm = "".join(parts[-2:]).lower().replace("_", "").replace("-", "")
    if norm.endswith(_NOT_SECRET_SUFFIXES):
        return None
    if norm.endswith(_PASSWORD_SUFFIXES) or _ends_with_word(segment, "pass"):
        return _PASSWORD
    if _ends_with_word(segment, "pw"):
        return _PASSWORD
    if norm.endswith(_SECRET_SUFFIXES):
        return _SECRET
    if _ends_with_word(segment, "key"):
        return _WEAK
    return None


# Everything that may follow a credential-like name up to its value. Branches: `=>` (PHP,
# Ruby), `=` / `:=` optionally after a type annotation (`password: str = "..."`,
# `val token: String = "..."`), `:` (YAML, JSON, object literals, headers) and `,` (the value
# argument after a quoted name: `setProperty("password", "...")`).
_ASSIGN_TAIL: Final = re.compile(
    r"""
    (?P<close>\\?["'`]\]?|\])?
    [ \t]*
    (?:
        (?P<arrow>=>)
      | (?:(?P<typed>:[ \t]*[&*]?(?:'[A-Za-z_]+[ \t]+)?(?:mut[ \t]+)?[A-Za-z_][\w.:]*
                     (?:\[[^\]\n]{0,80}\]|<[^>\n]{0,80}>)?\??[ \t]+)?
           (?P<eq>:?=)(?!=[\s"'`]|=$))
      | (?P<colon>:)(?![:=])
      | (?P<comma>,)
    )
    [ \t]*
    (?:
        \\"(?P<edq>[^"\\\n]{0,1024})\\"
      | [rRbBuU]{0,2}(?:"(?P<dq>[^"\n]{0,1024})"|'(?P<sq>[^'\n]{0,1024})'|`(?P<bq>[^`\n]{0,1024})`)
      | (?P<bare>[^\s"'`,;()\[\]{}<>]{1,512})
    )
    """,
    re.VERBOSE,
)
_XML_VALUE: Final = re.compile(r">(?P<value>[^<\n]{1,256})</")
_ENV_LEADS: Final = frozenset({"", "export", "-", "ENV", "set", "SET", "declare -x", "setenv"})
_CONNECTION_MARKERS: Final = re.compile(
    r"(?:^|[\s;\"'?&])(?:server|data source|host|hostname|dbname|database|initial catalog|uid"
    r"|user id|userid|driver)=|jdbc:"
)
_IDENTIFIER: Final = re.compile(r"[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)*")


# How far context checks look around a candidate. Bounded so that a long single-line input
# with many candidates (minified code, hostile input) stays linear.
_CONTEXT: Final = 512


def _line_start(text: str, pos: int) -> int:
    floor = max(0, pos - _CONTEXT)
    return max(text.rfind("\n", floor, pos) + 1, floor)


def _line_end(text: str, pos: int) -> int:
    ceiling = min(len(text), pos + _CONTEXT)
    end = text.find("\n", pos, ceiling)
    return end if end >= 0 else ceiling


def _rest_of_line_is_empty(text: str, pos: int) -> bool:
    rest = text[pos : _line_end(text, pos)].strip()
    return not rest or rest.startswith(("#", "//", ";"))


def _is_literal_context(
    text: str, key_start: int, key_end: int, name: str, m: re.Match[str], vend: int
) -> bool:
    """Whether an unquoted value is a literal (env files, YAML, INI, connection strings,
    command-line flags) rather than a variable, call or type in code."""
    prev = text[key_start - 1] if key_start else "\n"
    before = text[_line_start(text, key_start) : key_start]
    lead = before.strip()
    close = m.group("close")
    eq = m.group("eq")
    vstart = m.start("bare")
    tight = eq == "=" and not close and vstart == key_end + 1
    if prev in ";?&" or name.startswith("-") or (prev in "\"'" and not close):
        return True
    if tight and vend < len(text) and text[vend] in ",)}]":
        # `f(a, password=pw)` split over lines: a keyword argument, not a setting.
        return False
    if tight and (lead in _ENV_LEADS or name.replace("_", "").isupper()):
        return True
    if tight and prev in " \t" and any(q in before for q in "\"'"):
        # libpq key=value strings: "host=db user=app password=..."
        return _CONNECTION_MARKERS.search(before.lower()) is not None
    if tight and prev in " \t" and lead and not any(c in before for c in "(,"):
        # Inventory and command lines: `db1 ansible_password=...`, `tool login password=...`.
        return True
    if m.group("colon") is not None and lead in ("", "-") and not close:
        return _rest_of_line_is_empty(text, vend)
    if eq == "=" and lead == "" and not close:
        # INI/properties look like code (`password = value`): a value made of words could be a
        # variable, a random one cannot.
        value = text[vstart:vend]
        variable_like = _IDENTIFIER.fullmatch(value) is not None and (
            "." in value or (_is_wordy(value) and _char_classes(value.replace("_", "")) < 3)
        )
        return (
            not variable_like
            and not value.replace(".", "").isdigit()
            and _rest_of_line_is_empty(text, vend)
        )
    return False


def _bare_value_span(
    text: str, key_start: int, key_end: int, name: str, m: re.Match[str]
) -> tuple[int, int] | None:
    vstart, vend = m.span("bare")
    if m.group("comma") is not None or m.group("typed") is not None:
        return None
    if vend < len(text) and (text[vend] in "([" or vend - vstart == 512):
        return None
    if not _is_literal_context(text, key_start, key_end, name, m, vend):
        return None
    if key_start and text[key_start - 1] in "?&":
        # A query string: the value ends at the next parameter.
        amp = text.find("&", vstart, vend)
        if amp >= 0:
            vend = amp
    return (vstart, vend) if vend > vstart else None


def _is_first_call_argument(text: str, key_start: int, m: re.Match[str]) -> bool:
    """`setProperty("password", "...")`, `define('DB_PASSWORD', '...')`: the name is a quoted
    first argument, so the next argument is its value (unlike a list of names)."""
    close = (m.group("close") or "").lstrip("\\")
    if not close or close[0] not in "'\"" or key_start < 2 or text[key_start - 1] != close[0]:
        return False
    return text[max(0, key_start - 40) : key_start - 1].rstrip().endswith("(")


def _assignment_value(text: str, key_start: int, key_end: int, name: str) -> tuple[int, int] | None:
    m = _ASSIGN_TAIL.match(text, key_end)
    if m is None:
        if key_start and text[key_start - 1] == "<":
            x = _XML_VALUE.match(text, key_end)
            if x is not None:
                return x.span("value")
        return None
    if m.group("comma") is not None and not _is_first_call_argument(text, key_start, m):
        return None
    for group in ("edq", "dq", "sq", "bq"):
        if m.group(group) is not None:
            return m.span(group)
    return _bare_value_span(text, key_start, key_end, name, m)


def _classify_value(
    text: str, kind: str, name: str, value: str, key_start: int
) -> tuple[str, str] | None:
    """(type, rule) of a value assigned to a credential-like name, or None if it is not one."""
    norm = name.lower().replace("_", "").replace("-", "").replace(".", "")
    if (
        ("secretaccesskey" in norm or ("aws" in norm and norm.endswith(("secret", "secretkey"))))
        and len(value) == 40
        and all(ch in _B64 for ch in value)
    ):
        if _looks_like_aws_secret(value):
            return "aws_secret_access_key", "aws.secret_access_key"
        return None
    if "sessiontoken" in norm and "aws" in norm and len(value) >= 100:
        return "aws_session_token", "aws.session_token"
    if (
        len(value) == 32
        and _HEX.fullmatch(value)
        and ("twilio" in norm or "twilio" in text[max(0, key_start - 200) : key_start].lower())
    ):
        return "twilio_auth_token", "twilio.auth_token"
    if kind == _PASSWORD:
        if not _plausible_password(value):
            return None
        line = text[_line_start(text, key_start) : _line_end(text, key_start)].lower()
        if _CONNECTION_MARKERS.search(line):
            return "connection_string_password", "connstr.password"
        return "password", "assignment.password"
    if kind == _SECRET:
        return ("generic_secret", "assignment.secret") if _plausible_secret(value) else None
    return ("generic_secret", "assignment.key") if _plausible_weak_key(value) else None


_ATTRIBUTE_VALUE: Final = re.compile(r"value=(?P<q>[\"'])(?P<secret>[^\"'\n]{1,256})(?P=q)")
_ATTRIBUTE_NAME: Final = re.compile(r"(?:key|name)=[\"'](?P<name>[\w.:\-]+)[\"'][ \t]+$")
_SQL_PASSWORD: Final = re.compile(r"(?:password|identified by)[ \t]+'(?P<secret>[^'\n]{1,128})'")
_CREDENTIAL_CALLS: Final = (
    "auth=(",
    "auth = (",
    "auth=[",
    "basicauth(",
    "digestauth(",
    ".login(",
    "networkcredential(",
    "usernamepasswordcredentials(",
    "passwordauthentication(",
)
_CREDENTIAL_PAIR: Final = re.compile(
    r"[ \t]*(?:\"[^\"\n]{0,100}\"|'[^'\n]{0,100}'|[\w.\[\]]{1,60})[ \t]*,[ \t]*"
    r"(?:\"(?P<dq>[^\"\n]{1,200})\"|'(?P<sq>[^'\n]{1,200})')"
)


def _scan_attribute_pairs(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    """`<add key="DbPassword" value="..."/>`, `<property name="password" value="..."/>`."""
    if "value=" not in seen.guards:
        return
    for m in _ATTRIBUTE_VALUE.finditer(text):
        named = _ATTRIBUTE_NAME.search(text, max(0, m.start() - 160), m.start())
        if named is None:
            continue
        name = named.group("name")
        kind = _classify_key(name)
        value = m.group("secret")
        if kind is None or _is_placeholder(value):
            continue
        found = _classify_value(text, kind, name, value, m.start())
        if found is not None:
            start, end = m.span("secret")
            yield _PRIORITY_GENERIC, SecretMatch(found[0], start, end, found[1])


def _scan_sql_and_calls(
    text: str, lowered: str, present: set[str]
) -> Iterator[tuple[int, SecretMatch]]:
    if ("pass" in present and "password '" in lowered) or "identified by" in lowered:
        for m in _SQL_PASSWORD.finditer(lowered):
            start, end = m.span("secret")
            value = text[start:end]
            if not _is_placeholder(value) and _plausible_password(value):
                yield _PRIORITY_NAMED, SecretMatch("password", start, end, "sql.password")
    # Every call needle contains "auth", "cred" or "login(": skip them all in one test.
    if not ("auth" in present or "cred" in present or "login(" in lowered):
        return
    for needle in _CREDENTIAL_CALLS:
        i = lowered.find(needle)
        while i >= 0:
            pair = _CREDENTIAL_PAIR.match(text, i + len(needle))
            if pair is not None:
                start, end = _quoted_or_bare_span(pair)
                value = text[start:end]
                if not _is_placeholder(value) and _plausible_password(value):
                    yield (
                        _PRIORITY_NAMED,
                        SecretMatch("password", start, end, "call.credentials"),
                    )
            i = lowered.find(needle, i + 1)


def _scan_assignments(text: str, seen: _Seen) -> Iterator[tuple[int, SecretMatch]]:
    lowered = _lower_same_length(text)
    present: set[str] = set()
    ends = _keyword_ends(lowered, present)
    yield from _scan_sql_and_calls(text, lowered, present)
    for end in ends:
        start = end
        while start and text[start - 1] in _KEY_CHARS:
            start -= 1
        name = text[start:end]
        kind = _classify_key(name)
        if kind is None:
            continue
        span = _assignment_value(text, start, end, name)
        if span is None:
            continue
        value = text[span[0] : span[1]]
        if _is_placeholder(value) or _encoded_placeholder(value):
            continue
        found = _classify_value(text, kind, name, value, start)
        if found is not None:
            priority = _PRIORITY_GENERIC if found[1].startswith("assignment.") else _PRIORITY_NAMED
            yield priority, SecretMatch(found[0], span[0], span[1], found[1])


# ---- putting it together ---------------------------------------------------------------------

# When two detectors claim overlapping text the more specific one wins: a GitHub token in
# `token = "ghp_..."` is a github_token, not a generic secret.
_PRIORITY_VENDOR: Final = 100
_PRIORITY_JWT: Final = 90
_PRIORITY_URL: Final = 80
_PRIORITY_HEADER: Final = 70
_PRIORITY_NAMED: Final = 60
_PRIORITY_GENERIC: Final = 50

_SCANNERS: Final[tuple[Callable[[str, _Seen], Iterator[tuple[int, SecretMatch]]], ...]] = (
    _scan_tokens,
    _scan_private_keys,
    _scan_jwts,
    _scan_url_passwords,
    _scan_headers,
    _scan_command_lines,
    _scan_attribute_pairs,
    _scan_assignments,
)


def scan_secrets(text: str) -> list[SecretMatch]:
    """Every credential in `text`, ordered by position, with non-overlapping spans."""
    seen = _seen(text)
    candidates = [found for scanner in _SCANNERS for found in scanner(text, seen)]
    if not candidates:
        return []
    candidates.sort(key=lambda c: (-c[0], c[1].start, c[1].start - c[1].end))
    # Kept spans never overlap, so ordered by start they are also ordered by end: a new span
    # only has to be checked against its two neighbours.
    starts: list[int] = []
    kept: list[SecretMatch] = []
    for _, match in candidates:
        i = bisect.bisect_left(starts, match.start)
        if i < len(kept) and kept[i].start < match.end:
            continue
        if i and kept[i - 1].end > match.start:
            continue
        starts.insert(i, match.start)
        kept.insert(i, match)
    return kept


def contains_secret(text: str) -> bool:
    """Whether `text` holds any credential (stops at the first one)."""
    seen = _seen(text)
    return any(next(scanner(text, seen), None) is not None for scanner in _SCANNERS)


_OTHER_RULES: Final = (
    RuleInfo(
        "aws.secret_access_key",
        "aws_secret_access_key",
        "AWS secret access key: 40 base64 characters assigned to an AWS secret name "
        "(aws_secret_access_key, SecretAccessKey, ...) or right after an access key id.",
    ),
    RuleInfo(
        "aws.session_token",
        "aws_session_token",
        "AWS session token assigned to an aws_session_token-like name.",
    ),
    RuleInfo(
        "twilio.auth_token",
        "twilio_auth_token",
        "Twilio auth token: 32 hex characters assigned to a Twilio token/secret name.",
    ),
    RuleInfo(
        "pem.private_key",
        "private_key",
        "PEM private key block (RSA, EC, DSA, OPENSSH, ENCRYPTED, PKCS#8, PGP), also inside "
        "JSON/code strings and when cut off by the prompt window.",
    ),
    RuleInfo(
        "gcp.service_account_key",
        "gcp_service_account_key",
        "The private_key of a Google Cloud service-account JSON key.",
    ),
    RuleInfo(
        "putty.private_key",
        "private_key",
        "Private lines of a PuTTY (.ppk) private key.",
    ),
    RuleInfo(
        "pem.base64_private_key",
        "private_key",
        "A PEM private key base64-encoded again (kubeconfig client-key-data, Kubernetes "
        "Secret data, CI variables).",
    ),
    RuleInfo(
        "jwt.token",
        "jwt",
        "JSON Web Token: three base64url parts whose header decodes to JSON with `alg`.",
    ),
    RuleInfo(
        "url.password",
        "url_password",
        "Password in a URL's user info (scheme://user:password@host).",
    ),
    RuleInfo(
        "connstr.url_password",
        "connection_string_password",
        "Password in a database or broker URL (postgres://, mysql://, mongodb+srv://, redis://, "
        "amqp://, jdbc:..., ...).",
    ),
    RuleInfo(
        "connstr.password",
        "connection_string_password",
        "Password=/Pwd= in a key-value connection string (ADO.NET, ODBC, JDBC parameters, libpq).",
    ),
    RuleInfo(
        "http.bearer",
        "bearer_token",
        "Bearer token in an Authorization header or string.",
    ),
    RuleInfo(
        "http.basic",
        "basic_auth",
        "HTTP Basic credentials (base64 of user:password).",
    ),
    RuleInfo(
        "http.authorization",
        "authorization_token",
        "Credential in an Authorization header with another or no scheme (Token, SSWS, "
        "raw API keys).",
    ),
    RuleInfo(
        "cli.flag",
        "password",
        "Value of a --password / --token / --api-key / --secret ... command-line flag "
        "(type generic_secret for the non-password flags).",
    ),
    RuleInfo(
        "cli.login_password",
        "password",
        "Password after -p in a `... login ... -p <password>` command (docker, helm, podman).",
    ),
    RuleInfo(
        "netrc.password",
        "password",
        "Password of a .netrc / _netrc `machine ... login ... password ...` entry.",
    ),
    RuleInfo(
        "sql.password",
        "password",
        "Password literal in SQL: `CREATE/ALTER USER ... PASSWORD '...'`, `IDENTIFIED BY '...'`.",
    ),
    RuleInfo(
        "call.credentials",
        "password",
        "Password literal passed with a user name: `auth=(user, '...')`, "
        "`HTTPBasicAuth(user, '...')`, `.login(user, '...')`, `NetworkCredential(user, '...')`.",
    ),
    RuleInfo(
        "cli.user_password",
        "password",
        "Password in a `-u user:password` / `--user user:password` command-line flag.",
    ),
    RuleInfo(
        "assignment.password",
        "password",
        "Literal assigned to a password-like name (password, passwd, pwd, passphrase, DB_PASS, "
        "...) in code, JSON, YAML, .env, INI/properties, XML or a command-line flag.",
    ),
    RuleInfo(
        "assignment.secret",
        "generic_secret",
        "High-entropy literal assigned to a secret-like name (secret, token, api_key, "
        "credentials, auth, SECRET_KEY, private_key, ...).",
    ),
    RuleInfo(
        "assignment.key",
        "generic_secret",
        "Random-looking literal (letters and digits, high entropy, not a hash or UUID) "
        "assigned to a name ending in `key`.",
    ),
)

RULES: Final[tuple[RuleInfo, ...]] = (
    tuple(RuleInfo(r.rule, r.type, r.description) for r in _TOKEN_RULES) + _OTHER_RULES
)
SECRET_TYPES: Final[frozenset[str]] = frozenset(r.type for r in RULES)
