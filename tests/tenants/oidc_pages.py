"""A person at the test OIDC provider's pages, driven over HTTP.

oidc-provider's development pages (tests/oidc/server.mjs) are plain HTML forms: enter the
device code, confirm it, sign in (any password), consent. `SignInPages` fills them in the
order a person would, with one cookie jar, and returns the page the person ends on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser

import httpx


@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str] = field(default_factory=dict)
    buttons: dict[str, str] = field(default_factory=dict)


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: dict[str, Form] = {}
        self.title = ""
        self.texts: list[str] = []
        self._current: Form | None = None
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {name: value or "" for name, value in attrs}
        if tag == "form":
            form = Form(values.get("action", ""), values.get("method", "get").lower())
            self.forms[values.get("id") or f"form{len(self.forms)}"] = form
            self._current = form
        elif tag == "input" and "name" in values:
            form = self._form_of(values)
            if form is not None:
                form.fields[values["name"]] = values.get("value", "")
        elif tag == "button" and "name" in values:
            form = self._form_of(values)
            if form is not None:
                form.buttons[values["name"]] = values.get("value", "")
        elif tag == "title":
            self._in_title = True

    def _form_of(self, values: dict[str, str]) -> Form | None:
        return self.forms.get(values["form"]) if "form" in values else self._current

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._current = None
        elif tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data
        elif data.strip():
            self.texts.append(data.strip())


@dataclass
class Page:
    url: str
    status: int
    title: str
    text: str
    forms: dict[str, Form]
    redirected_to: str | None = None

    @classmethod
    def of(cls, response: httpx.Response) -> Page:
        parser = _Forms()
        parser.feed(response.text)
        return cls(
            str(response.url),
            response.status_code,
            parser.title.strip(),
            " ".join(parser.texts),
            parser.forms,
        )

    def form(self) -> Form:
        assert len(self.forms) == 1, f"expected one form on {self.url}: {self.text[:300]}"
        return next(iter(self.forms.values()))


class SignInPages:
    """One browser session (cookies, redirects) at the provider.

    Redirects are followed as a browser would, except to `app_url` (the console's redirect
    URI, where no server listens in these tests): the page then has `redirected_to` set and
    no body.
    """

    def __init__(self, app_url: str | None = None) -> None:
        self.http = httpx.Client(follow_redirects=False, timeout=10)
        self.app_url = app_url

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> SignInPages:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _follow(self, response: httpx.Response) -> Page:
        for _ in range(20):
            if not response.is_redirect:
                return Page.of(response)
            target = str(response.url.join(response.headers["location"]))
            if self.app_url is not None and target.startswith(self.app_url):
                return Page(target, response.status_code, "", "", {}, redirected_to=target)
            response = self.http.get(target)
        raise AssertionError(f"too many redirects from {response.url}")

    def open(self, url: str) -> Page:
        return self._follow(self.http.get(url))

    def submit(self, page: Page, extra: dict[str, str] | None = None) -> Page:
        form = page.form()
        data = {**form.fields, **(extra or {})}
        return self._follow(self.http.request(form.method.upper(), form.action, data=data))

    def sign_in(self, page: Page, login: str) -> Page:
        """The login page, then the consent page: the result is wherever the provider sends
        the browser afterwards (for the console, its redirect URI with the code)."""
        assert page.form().fields.get("prompt") == "login", page.text[:300]
        page = self.submit(page, {"login": login, "password": "any password"})
        if page.redirected_to is None and page.forms:
            assert page.form().fields.get("prompt") == "consent", page.text[:300]
            page = self.submit(page)
        return page

    def approve_device(self, verification_uri: str, user_code: str, login: str) -> Page:
        """Enter the code, confirm it, sign in and consent: the page the person ends on."""
        page = self.submit(self.open(verification_uri), {"user_code": user_code})
        assert page.title == "Device Login Confirmation", page.text[:300]
        page = self.submit(page)
        return self.sign_in(page, login)

    def deny_device(self, verification_uri: str, user_code: str) -> Page:
        """Enter the code, then press "Abort" on the confirmation page."""
        page = self.submit(self.open(verification_uri), {"user_code": user_code})
        assert page.title == "Device Login Confirmation", page.text[:300]
        return self.submit(page, {"abort": "yes"})
