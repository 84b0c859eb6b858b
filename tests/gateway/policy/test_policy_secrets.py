"""Each detector finds its secret at the right offsets and leaves look-alikes alone."""

from __future__ import annotations

import base64
import itertools
import random
import time
from collections.abc import Callable

import pytest

from cove.gateway.policy.secrets import RULES, SECRET_TYPES, contains_secret, scan_secrets
from tests.gateway.policy.fakes import ALNUM, B64, B64URL, HEX, LOWER, Fakes, render

SEED = 20240611


@pytest.fixture
def fakes() -> Fakes:
    return Fakes(random.Random(SEED))


def only_finding(text: str) -> tuple[str, str, str]:
    """(type, rule, matched text) of the single finding in `text`."""
    found = scan_secrets(text)
    assert len(found) == 1, f"expected one finding in {text!r}, got {found}"
    f = found[0]
    return f.type, f.rule, text[f.start : f.end]


# (secret type, generator, template): the template puts the value in a realistic spot.
Case = tuple[str, Callable[[Fakes], str], str]

TOKEN_CASES: list[Case] = [
    ("aws_access_key_id", Fakes.aws_access_key_id, "aws_access_key_id = @@value@@"),
    ("aws_access_key_id", Fakes.aws_access_key_id, '{"AccessKeyId": "@@value@@"}'),
    ("gcp_api_key", Fakes.gcp_api_key, 'const firebaseConfig = { apiKey: "@@value@@" };'),
    ("gcp_api_key", Fakes.gcp_api_key, "https://maps.googleapis.com/maps/api?key=@@value@@&v=3"),
    ("azure_client_secret", Fakes.azure_client_secret, "AZURE_CLIENT_SECRET=@@value@@"),
    ("github_token", Fakes.github_token, 'GITHUB_TOKEN="@@value@@"'),
    ("github_token", Fakes.github_token, "git clone https://@@value@@@github.com/acme/app.git"),
    ("gitlab_token", Fakes.gitlab_token, 'curl -H "PRIVATE-TOKEN: @@value@@" https://gl/api'),
    ("bitbucket_app_password", Fakes.bitbucket_app_password, "BITBUCKET_APP_PASSWORD=@@value@@"),
    ("atlassian_api_token", Fakes.atlassian_api_token, 'jira_token = "@@value@@"'),
    ("slack_token", Fakes.slack_token, "client = WebClient(token='@@value@@')"),
    ("stripe_secret_key", Fakes.stripe_secret_key, "stripe.api_key = '@@value@@'"),
    ("stripe_restricted_key", Fakes.stripe_restricted_key, "STRIPE_KEY=@@value@@"),
    ("twilio_api_key", Fakes.twilio_api_key, "client = Client('@@value@@', secret, sid)"),
    ("sendgrid_api_key", Fakes.sendgrid_api_key, "sg = SendGridAPIClient('@@value@@')"),
    ("openai_api_key", Fakes.openai_api_key, 'client = OpenAI(api_key="@@value@@")'),
    ("anthropic_api_key", Fakes.anthropic_api_key, "ANTHROPIC_API_KEY=@@value@@"),
    ("npm_token", Fakes.npm_token, "//registry.npmjs.org/:_authToken=@@value@@"),
    ("pypi_token", Fakes.pypi_token, "[pypi]\nusername = __token__\npassword = @@value@@"),
    ("huggingface_token", Fakes.huggingface_token, "huggingface-cli login --token @@value@@"),
    ("jwt", Fakes.jwt, 'fetch(url, { headers: { Authorization: "Bearer @@value@@" } })'),
    ("jwt", Fakes.jwt, "id_token = '@@value@@'"),
]


@pytest.mark.parametrize(("secret_type", "make", "template"), TOKEN_CASES)
def test_vendor_token_is_found_at_its_exact_offsets(
    fakes: Fakes, secret_type: str, make: Callable[[Fakes], str], template: str
) -> None:
    value = make(fakes)
    text, start, end = render(template, value)
    found = scan_secrets(text)
    assert [(f.type, f.start, f.end) for f in found] == [(secret_type, start, end)], text


def test_every_rule_has_a_known_type_and_a_description() -> None:
    assert len({r.rule for r in RULES}) == len(RULES)
    for rule in RULES:
        assert rule.type in SECRET_TYPES
        assert rule.type == rule.type.lower()
        assert " " not in rule.type
        assert rule.description


def test_aws_secret_access_key_in_credentials_file_and_csv(fakes: Fakes) -> None:
    key_id, secret = fakes.aws_access_key_id(), fakes.aws_secret_access_key()
    ini = f"[prod]\naws_access_key_id = {key_id}\naws_secret_access_key = {secret}\n"
    found = {(f.type, ini[f.start : f.end]) for f in scan_secrets(ini)}
    assert found == {("aws_access_key_id", key_id), ("aws_secret_access_key", secret)}

    csv = f"User name,Access key ID,Secret access key\nci,{key_id},{secret}\n"
    found = {(f.type, csv[f.start : f.end]) for f in scan_secrets(csv)}
    assert found == {("aws_access_key_id", key_id), ("aws_secret_access_key", secret)}


def test_aws_secret_access_key_in_json_camel_case(fakes: Fakes) -> None:
    secret = fakes.aws_secret_access_key()
    text = f'{{"SecretAccessKey": "{secret}", "SessionToken": null}}'
    assert only_finding(text) == ("aws_secret_access_key", "aws.secret_access_key", secret)


def test_azure_storage_connection_string_redacts_only_the_account_key(fakes: Fakes) -> None:
    key = fakes.azure_storage_account_key()
    text = (
        f'"Storage": "DefaultEndpointsProtocol=https;AccountName=acmeprod;AccountKey={key};'
        'EndpointSuffix=core.windows.net"'
    )
    assert only_finding(text) == ("azure_storage_account_key", "azure.storage_account_key", key)


def test_azure_sas_url_signature(fakes: Fakes) -> None:
    sig = base64.b64encode(fakes.rng.randbytes(32)).decode().replace("+", "%2B").replace("=", "%3D")
    text = f"https://acme.blob.core.windows.net/c/f.txt?sv=2022-11-02&se=2030-01-01&sig={sig}"
    assert only_finding(text) == ("azure_sas_token", "azure.sas_signature", sig)


def test_slack_webhook_keeps_the_host_and_redacts_the_path(fakes: Fakes) -> None:
    path = fakes.slack_webhook_path()
    text = f'SLACK_URL = "https://hooks.slack.com/services/{path}"'
    assert only_finding(text) == ("slack_webhook_url", "slack.webhook", path)


@pytest.mark.parametrize(
    "label", ["RSA PRIVATE KEY", "EC PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY"]
)
def test_pem_private_key_block_is_one_finding(fakes: Fakes, label: str) -> None:
    key = fakes.pem(label)
    text = f"# deploy key\n{key}\n# end\n"
    assert only_finding(text) == ("private_key", "pem.private_key", key)


def test_pgp_private_key_block(fakes: Fakes) -> None:
    key = fakes.pgp_private_key()
    assert only_finding(f"{key}\n") == ("private_key", "pem.private_key", key)


def test_private_key_in_a_json_string_with_escaped_newlines(fakes: Fakes) -> None:
    key = fakes.pem("RSA PRIVATE KEY", newline="\\n")
    text = f'{{"tls_key": "{key}\\n", "port": 443}}'
    assert only_finding(text) == ("private_key", "pem.private_key", key)


def test_private_key_cut_off_by_the_prompt_window_is_still_found(fakes: Fakes) -> None:
    key = fakes.pem("RSA PRIVATE KEY")
    truncated = key[: len(key) // 2]
    # The tail of a truncated block may end mid-line; the finding covers what is there.
    found = scan_secrets(f"KEY = '''{truncated}")
    assert [f.type for f in found] == ["private_key"]
    assert found[0].end - found[0].start >= len(truncated) - 64


def test_gcp_service_account_json(fakes: Fakes) -> None:
    text, start, end = fakes.gcp_service_account()
    found = scan_secrets(text)
    assert [(f.type, f.start, f.end) for f in found] == [("gcp_service_account_key", start, end)]


def test_base64_wrapped_private_key_in_kubeconfig(fakes: Fakes) -> None:
    wrapped = base64.b64encode(fakes.pem("RSA PRIVATE KEY").encode()).decode()
    text = f"users:\n- name: admin\n  user:\n    client-key-data: {wrapped}\n"
    assert only_finding(text) == ("private_key", "pem.base64_private_key", wrapped)


@pytest.mark.parametrize(
    ("template", "secret_type"),
    [
        ("https://deploy:@@value@@@nexus.acme.io/repository/", "url_password"),
        ("git clone https://ci-bot:@@value@@@git.acme.io/org/repo.git", "url_password"),
        ('DATABASE_URL="postgres://app:@@value@@@db:5432/payments"', "connection_string_password"),
        ("mongodb+srv://admin:@@value@@@cluster0.x1y2z.mongodb.net/", "connection_string_password"),
        ("CELERY_BROKER_URL=amqp://worker:@@value@@@rabbit:5672//", "connection_string_password"),
        ("REDIS_URL=redis://:@@value@@@cache:6379/0", "connection_string_password"),
        (
            'create_engine("postgresql+psycopg://app:@@value@@@db/app")',
            "connection_string_password",
        ),
        (
            "Server=tcp:db.acme.io,1433;Initial Catalog=app;User ID=sa;Password=@@value@@;",
            "connection_string_password",
        ),
        (
            'url = "jdbc:mysql://db:3306/app?user=app&password=@@value@@&useSSL=true"',
            "connection_string_password",
        ),
        (
            'psycopg.connect("host=db port=5432 dbname=app user=app password=@@value@@")',
            "connection_string_password",
        ),
        (
            'pyodbc.connect("DRIVER={ODBC Driver 18};SERVER=db;UID=sa;PWD=@@value@@;")',
            "connection_string_password",
        ),
    ],
)
def test_passwords_in_urls_and_connection_strings(
    fakes: Fakes, template: str, secret_type: str
) -> None:
    password = fakes.password("!*-_.~")
    text, start, end = render(template, password)
    found = scan_secrets(text)
    assert [(f.type, f.start, f.end) for f in found] == [(secret_type, start, end)], text


@pytest.mark.parametrize(
    "template",
    [
        'password = "@@value@@"',
        'DB_PASSWORD="@@value@@"',
        "DB_PASSWORD=@@value@@",
        "export MYSQL_ROOT_PASSWORD=@@value@@",
        "  password: @@value@@",
        "  - POSTGRES_PASSWORD=@@value@@",
        '{"password": "@@value@@", "user": "app"}',
        'conn = connect(user="app", password="@@value@@")',
        "const dbPassword = '@@value@@';",
        'private static final String DB_PASSWORD = "@@value@@";',
        'props.setProperty("mail.smtp.password", "@@value@@");',
        "spring.datasource.password=@@value@@",
        "<password>@@value@@</password>",
        '<add key="SmtpPassword" value="@@value@@" />',
        'Password: "@@value@@",',
        'password: str = "@@value@@"',
        "CREATE USER app WITH PASSWORD '@@value@@';",
        "GRANT ALL ON *.* TO 'app'@'%' IDENTIFIED BY '@@value@@';",
        "requests.get(url, auth=('admin', '@@value@@'))",
        "mysqldump --password=@@value@@ payments",
        "docker login -u ci -p @@value@@ registry.acme.io",
        "machine api.acme.io login ci password @@value@@",
        "curl -u admin:@@value@@ https://api.acme.io",
    ],
)
def test_password_assignments_in_many_languages(fakes: Fakes, template: str) -> None:
    password = fakes.password("!*-_.~")
    text, start, end = render(template, password)
    found = scan_secrets(text)
    assert [(f.type, f.start, f.end) for f in found] == [("password", start, end)], text


@pytest.mark.parametrize(
    "template",
    [
        'API_KEY = "@@value@@"',
        "SECRET_KEY=@@value@@",
        '"client_secret": "@@value@@"',
        "auth_token: '@@value@@'",
        "const apiKey = `@@value@@`;",
        "headers = {'X-Api-Key': '@@value@@'}",
        'curl -H "X-API-Key: @@value@@" https://api.acme.io',
        'let access_token: &str = "@@value@@";',
        "webhook_secret = '@@value@@'",
        "JWT_SIGNING_KEY=@@value@@",
    ],
)
@pytest.mark.parametrize("alphabet", ["hex", "base64", "alnum"])
def test_generic_secret_assignments(fakes: Fakes, template: str, alphabet: str) -> None:
    if alphabet == "hex":
        value = fakes.s(HEX, 40)
    elif alphabet == "base64":
        value = base64.b64encode(fakes.rng.randbytes(30)).decode()
    else:
        value = fakes.s(ALNUM, 32)
    text, start, end = render(template, value)
    found = scan_secrets(text)
    assert [(f.type, f.start, f.end) for f in found] == [("generic_secret", start, end)], text


def test_bearer_and_basic_authorization_headers(fakes: Fakes) -> None:
    token = fakes.s(ALNUM + "-._", 48)
    assert only_finding(f"Authorization: Bearer {token}") == ("bearer_token", "http.bearer", token)
    basic = base64.b64encode(f"svc:{fakes.password('!*')}".encode()).decode()
    assert only_finding(f'-H "Authorization: Basic {basic}"') == (
        "basic_auth",
        "http.basic",
        basic,
    )
    raw = fakes.s(ALNUM, 40)
    assert only_finding(f"Authorization: Token {raw}") == (
        "authorization_token",
        "http.authorization",
        raw,
    )


LOOK_ALIKES = [
    # hashes and identifiers
    'commit = "9fceb02d0ae598e95dc970b74767f19372d61af8"',
    "git checkout 9fceb02d0ae598e95dc970b74767f19372d61af8",
    "  rev: 3b5c8a1e9f2d4c6b8a0e1f3d5c7b9a2e4f6d8c0a",
    'sha256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
    'cache_key = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"',
    '"key": "d41d8cd98f00b204e9800998ecf8427e"',
    "FROM python:3.12@sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    'request_id = "7c9e6679-7425-40de-944b-e07fc1f90ae7"',
    'idempotency_key = "7c9e6679-7425-40de-944b-e07fc1f90ae7"',
    # environment lookups and templates
    'password = os.environ["PASSWORD"]',
    'password = os.getenv("PASSWORD")',
    "api_key = os.environ.get('API_KEY', '')",
    "password: ${PASSWORD}",
    'token: "${{ secrets.GITHUB_TOKEN }}"',
    "const token = process.env.TOKEN;",
    "token: process.env.TOKEN,",
    'password: "{{ .Values.db.password }}"',
    'String pw = System.getenv("DB_PASSWORD");',
    "DB_PASSWORD=$DB_PASSWORD",
    "spring.datasource.password=${DB_PASSWORD}",
    "DATABASE_URL=postgres://${DB_USER}:${DB_PASSWORD}@db:5432/app",
    # placeholders
    'password = "changeme"',
    'password = "<password>"',
    'api_key = "xxx"',
    'api_key = "your-api-key-here"',
    'secret = "***"',
    'password = ""',
    "OPENAI_API_KEY=sk-...",
    'token = "<redacted:github_token>"',
    "aws_access_key_id = AKIAIOSFODNN7EXAMPLE",
    "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
    "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
    "postgres://user:password@localhost:5432/app",
    "amqp://guest:guest@localhost:5672//",
    "https://hooks.slack.com/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX",
    "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----",
    'if pem.startswith("-----BEGIN OPENSSH PRIVATE KEY-----"):',
    # variable references, calls, annotations
    "password = get_password()",
    "conn = connect(host=host, password=password)",
    "    password=password_from_vault,",
    "self.password = password",
    "password: str",
    "password: Optional[str] = None",
    "token: string;",
    "private String password;",
    "def login(user: str, password: str) -> bool:",
    "password = models.CharField(max_length=128)",
    'auth=("admin", password)',
    # keywords that are not credentials
    'token_type = "bearer"',
    "max_tokens = 256",
    'eos_token = "</s>"',
    "id = Column(Integer, primary_key=True)",
    'sort_key = "created_at"',
    'token_url = "https://oauth2.googleapis.com/token"',
    'secret_name = "prod/payments/db"',
    'credentials_path = "/var/run/secrets/gcp/key.json"',
    'password = "/run/secrets/db_password"',
    'DB_SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:db-Ab12Cd"',
    'pk = "pk_live_51HqLyjWDarjtT1zdp7dc0a"',
    'STRIPE_PUBLISHABLE_KEY="pk_test_51HqLyjWDarjtT1zdp7dc0a"',
    # labels, hashes of passwords, public material
    '"password": "Password"',
    '"password": "Mot de passe"',
    '"apiKey": "API Key"',
    '"password": "pbkdf2_sha256$600000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA="',
    "password: '$2b$12$KIXQJ8Jc1Vq3H7s5b6t8UOe2m4n6p8r0t2v4x6z8B0D2F4H6J8L0N'",
    "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAu1SU1LfVLPHCozMxH2Mo\n"
    "-----END PUBLIC KEY-----",
    # prose, URLs without credentials, the JWT tutorial token
    "The password must be at least 12 characters long.",
    "git@github.com:acme/payments.git",
    "ssh://git@gitlab.acme.io:2222/platform/cove.git",
    "https://example.com:8443/api/v1/items",
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaW"
    "F0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c",
    "from sklearn.svm import SVC  # sk-learn",
    "docker run -u 1000:1000 acme/app",
]


@pytest.mark.parametrize("text", LOOK_ALIKES)
def test_look_alike_is_not_a_secret(text: str) -> None:
    assert scan_secrets(text) == []
    assert not contains_secret(text)


def test_offsets_are_python_string_indices_even_after_non_ascii(fakes: Fakes) -> None:
    token = fakes.github_token()
    # U+0130 grows when lower-cased; emoji are one index each in a Python str.
    text = f"# Übergabe İstanbul 🚀\nTOKEN = '{token}'\npassword = 'Zk3!{fakes.s(ALNUM, 10)}'"
    found = scan_secrets(text)
    assert [f.type for f in found] == ["github_token", "password"]
    assert text[found[0].start : found[0].end] == token
    assert text[found[1].start : found[1].end].startswith("Zk3!")


def test_findings_are_ordered_and_do_not_overlap(fakes: Fakes) -> None:
    github, jwt = fakes.github_token(), fakes.jwt()
    text = (
        f'token = "{github}"\n'
        f"url = 'https://bot:{github}@github.com/acme/x'\n"
        f"Authorization: Bearer {jwt}\n"
    )
    found = scan_secrets(text)
    assert [f.type for f in found] == ["github_token", "github_token", "jwt"]
    for a, b in itertools.pairwise(found):
        assert a.end <= b.start


def test_contains_secret_for_completions(fakes: Fakes) -> None:
    assert contains_secret(f'    api_key="{fakes.openai_api_key()}",')
    assert not contains_secret("    return sum(values) / len(values)\n")


def test_a_redacted_text_scans_clean(fakes: Fakes) -> None:
    text = (
        f'password = "<redacted:password>"\nTOKEN=<redacted:github_token>\n'
        f"url = postgres://app:<redacted:connection_string_password>@db/app\n"
        f"key = {fakes.s(LOWER, 3)}"
    )
    assert scan_secrets(text) == []


@pytest.mark.parametrize(
    "text",
    [
        "a" * 200_000,
        "=" * 200_000,
        "password=" * 20_000,
        "://" * 50_000,
        "eyJ" + "A" * 200_000,
        "-----BEGIN PRIVATE KEY-----\n" + ("A" * 63 + "\n") * 3000,
        'key: "' + "x" * 200_000,
        "ghp_" * 40_000,
        ("user:" + "@" * 1000 + " ") * 100,
        ("a." * 50_000),
        ("ab_" * 60_000) + "!",
        "eyJ" * 70_000,
        "LS0tLS1CRUdJTi" * 15_000,
        "glpat-" * 35_000,
        "sk-proj-" * 25_000,
        "ATBB" * 50_000,
        "xoxb-1" * 35_000,
        "--password=" * 20_000,
        "--token " * 25_000,
        "login " * 40_000,
        "-u=" * 70_000,
        "Bearer " * 30_000,
        "Authorization: " * 15_000,
        'password="' * 20_000,
        "machine x login y password " * 8_000,
        'value="' * 30_000,
        "auth=(" * 30_000,
        "http://a:" * 25_000,
        "Private-Lines: 1\n" * 12_000,
    ],
    ids=lambda t: repr(t[:12]),
)
def test_pathological_inputs_scan_in_linear_time(text: str) -> None:
    # A backtracking blow-up would take seconds to hours; linear scans take milliseconds.
    started = time.perf_counter()
    scan_secrets(text)
    assert time.perf_counter() - started < 2.0


def test_secrets_in_a_large_prompt_are_all_found(fakes: Fakes) -> None:
    filler = "def handler(event):\n    return process(event)\n" * 300
    tokens = [fakes.github_token(), fakes.npm_token(), fakes.gcp_api_key()]
    text = filler + f"A = '{tokens[0]}'\n" + filler + f"B = '{tokens[1]}'\nC = '{tokens[2]}'\n"
    found = scan_secrets(text)
    assert [text[f.start : f.end] for f in found] == tokens
    assert [f.type for f in found] == ["github_token", "npm_token", "gcp_api_key"]


def test_generated_fakes_have_the_right_shape(fakes: Fakes) -> None:
    # Guards the generators themselves: a wrong alphabet would make the tests above vacuous.
    assert fakes.aws_access_key_id()[4:].isupper()
    assert len(fakes.gcp_api_key()) == 39
    assert len(fakes.npm_token()) == 40
    assert set(fakes.s(B64URL, 100)) <= set(B64URL)
    assert set(fakes.s(B64, 100)) <= set(B64)


def test_every_vendor_rule_is_prefiltered_by_literal_heads() -> None:
    # A rule without heads would make every prompt pay for its regex search again.
    from cove.gateway.policy.secrets import _TOKEN_RULES

    for rule in _TOKEN_RULES:
        assert rule.anchors, rule.rule
        assert all(len(anchor) >= 2 for anchor in rule.anchors), rule.rule


@pytest.mark.parametrize(
    ("pattern", "heads"),
    [
        (r"(?:AKIA|ASIA)(?P<body>[A-Z0-9]{16})", ("AKIA", "ASIA")),
        (r"gh[pos]_(?P<body>[A-Za-z0-9]{36})", ("gho_", "ghp_", "ghs_")),
        (r"sk-(?P<body>(?:proj|admin)-[a-z]+|[a-z]{32})", ("sk-", "sk-admin-", "sk-proj-")),
        (r"hooks\.slack\.com/(?:a|b)/x", ("hooks.slack.com/a/x", "hooks.slack.com/b/x")),
        (r"(?P<body>\d{8}:AA)", ()),
        (r"x[a-z]y", ()),
        (r"(?i)token_", ()),
    ],
)
def test_literal_heads_are_read_off_the_pattern(pattern: str, heads: tuple[str, ...]) -> None:
    import re

    from cove.gateway.policy.secrets import _literal_heads

    assert _literal_heads(re.compile(pattern)) == heads


@pytest.mark.parametrize(("type_", "make", "template"), TOKEN_CASES)
def test_vendor_token_after_non_ascii_text_is_still_found(
    fakes: Fakes, type_: str, make: Callable[[Fakes], str], template: str
) -> None:
    # The head search runs on UTF-8 bytes; offsets must stay Python string indices.
    lead = "# Grüße, 東京 — ünïcödé\n" * 50
    text, start, end = render(template, make(fakes))
    found = scan_secrets(lead + text)
    assert [(f.type, f.start, f.end) for f in found] == [
        (type_, len(lead) + start, len(lead) + end)
    ], text


@pytest.mark.parametrize(("type_", "make", "template"), TOKEN_CASES)
def test_the_one_pass_prefilter_sees_what_substring_searches_see(
    fakes: Fakes, type_: str, make: Callable[[Fakes], str], template: str
) -> None:
    from cove.gateway.policy.secrets import _GUARDS, _TOKEN_RULES, _seen

    text, _, _ = render(template, make(fakes))
    text += "\ncurl -u admin:x --data value=1 -----BEGIN Authorization: Basic machine"
    seen = _seen(text)
    assert seen.guards == {g for g in _GUARDS if g in text}
    assert seen.rules == tuple(r for r in _TOKEN_RULES if any(a in text for a in r.anchors))
    # JWTs have their own detector; every other case is a vendor token.
    assert bool(seen.rules) == (type_ != "jwt"), text
