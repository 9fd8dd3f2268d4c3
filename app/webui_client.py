"""Open WebUI's HTTP API as kb uses it, signed in as an admin: which files and users
exist, and kb's Filter function and webhook there."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx

from app.settings import Settings
from app.webui_scope import FILTER_ID
from retrieval.errors import ConfigurationError, KbError

PAGE_SIZE = 50  # Open WebUI's file list page


class WebUIUnavailable(KbError):
    """Open WebUI does not answer, or answers with an error."""


class WebUIAdmin:
    """Open WebUI's API as an admin: which of its files exist."""

    def __init__(
        self, url: str, api_key: str | None = None, email: str | None = None,
        password: str | None = None, timeout: float = 10.0,
    ) -> None:
        if not api_key and not (email and password):
            raise ConfigurationError(
                "KB_WEBUI_URL is set but kb cannot sign in to Open WebUI: set KB_WEBUI_API_KEY "
                "(an admin's API key) or KB_WEBUI_ADMIN_EMAIL and KB_WEBUI_ADMIN_PASSWORD"
            )
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, timeout=timeout)
        self._email, self._password = email, password
        self._token = api_key

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def exists(self, file_id: str) -> bool:
        """Whether Open WebUI still has this file."""
        response = self._get(f"/api/v1/files/{quote(file_id, safe='')}/process/status")
        if response.status_code == 404:
            return False
        self._check(response)
        return True

    def user_exists(self, user_id: str) -> bool:
        """Whether Open WebUI has this user."""
        response = self._get(f"/api/v1/users/{quote(user_id, safe='')}")
        if response.status_code in (400, 404):  # Open WebUI says 400 for an unknown user
            return False
        self._check(response)
        return True

    def file_ids(self) -> set[str]:
        """The ids of every file Open WebUI has."""
        ids: set[str] = set()
        page = 1
        while True:
            response = self._get("/api/v1/files/", page=page, content="false")
            self._check(response)
            body = response.json()
            items = body.get("items", []) if isinstance(body, dict) else body
            ids.update(str(item["id"]) for item in items)
            if len(items) < PAGE_SIZE:
                return ids
            page += 1

    def ensure_filter(self, source: str, secret: str) -> list[str]:
        """Install kb's Filter function, active and global, with this source and secret;
        what had to change (nothing when it was in place)."""
        path = f"/api/v1/functions/id/{FILTER_ID}"
        body = {"id": FILTER_ID, "name": "kb scope", "content": source,
                "meta": {"description": "what a chat picked, for kb (installed by kb)"}}
        function, valves = self._filter()
        changed = []
        if function is None:
            self._json("POST", "/api/v1/functions/create", json=body)
            function, valves = self._filter()
            changed.append("installed the filter")
        elif function.get("content") != source:
            self._json("POST", f"{path}/update", json=body)
            changed.append("updated the filter")
        assert function is not None
        for flag, toggle in (("is_active", "toggle"), ("is_global", "toggle/global")):
            if not function.get(flag):
                self._json("POST", f"{path}/{toggle}")
                changed.append(f"turned on {flag.removeprefix('is_')}")
        if valves.get("secret") != secret:
            self._json("POST", f"{path}/valves/update", json={"secret": secret})
            changed.append("set the filter's secret")
        return changed

    def filter_problems(self, source: str, secret: str) -> list[str]:
        """What is wrong with kb's Filter function in Open WebUI (nothing: all in place)."""
        function, valves = self._filter()
        if function is None:
            return [f"the filter {FILTER_ID} is not installed"]
        problems = []
        if function.get("content") != source:
            problems.append("the filter is not this kb's version")
        problems += [f"the filter is not {flag.removeprefix('is_')}"
                     for flag in ("is_active", "is_global") if not function.get(flag)]
        if valves.get("secret") != secret:
            problems.append("the filter's secret is not kb's (scopes would be ignored)")
        return problems

    def _filter(self) -> tuple[dict[str, Any] | None, dict[str, Any]]:
        """kb's Filter function as Open WebUI has it (``None``: not installed), and its valves."""
        # Found by listing: Open WebUI answers 401, not 404, for an unknown function id.
        if not any(f.get("id") == FILTER_ID for f in self._json("GET", "/api/v1/functions/")):
            return None, {}
        path = f"/api/v1/functions/id/{FILTER_ID}"
        return self._json("GET", path), self._json("GET", f"{path}/valves") or {}

    def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        """The JSON answer to a call that must succeed."""
        response = self._call(method, path, **kwargs)
        self._check(response)
        return response.json()

    def webhook_to(self, url: str) -> dict[str, Any] | None:
        """The enabled webhook that sends every event to ``url`` (query aside), if any."""
        for hook in self._json("GET", "/api/events/webhooks"):
            if (str(hook.get("url", "")).split("?")[0] == url and hook.get("enabled")
                    and "*" in (hook.get("events") or ["*"])):
                return dict(hook)
        return None

    def add_webhook(self, url: str) -> None:
        """Register a webhook sending every event to ``url``."""
        body = {"name": "kb", "url": url, "enabled": True, "events": ["*"]}
        self._json("POST", "/api/events/webhooks", json=body)

    def _get(self, path: str, **params: Any) -> httpx.Response:
        return self._call("GET", path, params=params)

    def _call(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        for attempt in (1, 2):
            if self._token is None:
                self._token = self._sign_in()
            try:
                response = self._http.request(
                    method, path, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
                )
            except httpx.HTTPError as exc:
                raise WebUIUnavailable(f"Open WebUI at {self.url} does not answer: {exc}") from exc
            if response.status_code == 401 and self._email and attempt == 1:
                self._token = None  # the session expired: sign in again
                continue
            return response
        raise AssertionError("unreachable")

    def _sign_in(self) -> str:
        try:
            response = self._http.post(
                "/api/v1/auths/signin", json={"email": self._email, "password": self._password}
            )
        except httpx.HTTPError as exc:
            raise WebUIUnavailable(f"Open WebUI at {self.url} does not answer: {exc}") from exc
        if response.status_code in (400, 401, 403):
            raise WebUIUnavailable(
                f"Open WebUI at {self.url} refused kb's sign-in as {self._email} "
                "(KB_WEBUI_ADMIN_EMAIL, KB_WEBUI_ADMIN_PASSWORD)"
            )
        self._check(response)
        user = response.json()
        if user.get("role") != "admin":
            raise ConfigurationError(
                f"{self._email} is not an admin in Open WebUI: kb needs an admin to see every file"
            )
        return str(user["token"])

    def _check(self, response: httpx.Response) -> None:
        if response.status_code == 401:
            raise WebUIUnavailable(
                f"Open WebUI at {self.url} refused kb's credentials (KB_WEBUI_API_KEY or "
                "KB_WEBUI_ADMIN_EMAIL/PASSWORD)"
            )
        if response.status_code >= 400:
            raise WebUIUnavailable(
                f"Open WebUI at {self.url} answered {response.status_code} to "
                f"{response.request.url.path}"
            )


def admin_from(settings: Settings) -> WebUIAdmin | None:
    """The Open WebUI client the settings describe (KB_WEBUI_*), or ``None`` without a URL."""
    if not settings.webui_url:
        return None
    plain = lambda s: s.get_secret_value() if s is not None else None  # noqa: E731
    return WebUIAdmin(
        settings.webui_url, plain(settings.webui_api_key), settings.webui_admin_email,
        plain(settings.webui_admin_password),
    )
