"""A chat's scope from kb's filter in Open WebUI: used only when signed for the asker.

The filter itself runs in a real Open WebUI in the end-to-end tests; here the scope
is signed the way the filter signs it (``app/webui_filter.py``).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from app.webui_scope import KEY_FILE, scope_secret, verify
from tests.app.test_openai import stream_events, text_of


def signed(secret: str, user: str, picked: Any = None, granted: Any = (), age: float = 0) -> dict:
    claim = json.dumps({"user": user, "exp": int(time.time() - age) + 300,
                        "picked": picked, "granted": list(granted)})
    return {"claim": claim, "sig": hmac.new(secret.encode(), claim.encode(),
                                            hashlib.sha256).hexdigest()}


def test_a_scope_counts_only_when_signed_for_this_user_and_recent(tmp_path: Path) -> None:
    secret = scope_secret(tmp_path)
    assert scope_secret(tmp_path) == secret and (tmp_path / KEY_FILE).stat().st_mode & 0o077 == 0
    good = signed(secret, "alice", picked=[["f1", "bob"]], granted=[["f2", None]])
    scope = verify(good, secret, "alice")
    assert scope is not None
    assert scope.picked == [("f1", "bob")] and scope.granted == [("f2", None)]
    assert verify(good, secret, "mallory") is None  # someone else's scope
    assert verify(good, "another-secret", "alice") is None  # not signed by kb's filter
    tampered = {**good, "claim": good["claim"].replace("f1", "f9")}
    assert verify(tampered, secret, "alice") is None
    assert verify(signed(secret, "alice", age=600), secret, "alice") is None  # too old
    assert verify({"claim": 1}, secret, "alice") is None and verify(None, secret, "alice") is None


def test_chat_searches_what_the_scope_picked_or_grants_and_nothing_forged(
    client: TestClient,
) -> None:
    def put(name: str, file_id: str, user: str, text: str) -> None:
        headers = {"X-Filename": name, "X-File-Id": file_id, "X-OpenWebUI-User-Id": user}
        assert client.put("/process", content=text.encode(), headers=headers).status_code == 200

    put("alice-notes.txt", "fa", "alice", "The lab's freezer code is 2741.")
    put("bob-policy.txt", "fb", "bob", "The lab's freezer must stay at minus eighty degrees.")
    put("alice-other.txt", "fc", "alice", "The lab's freezer was bought in 2019.")
    secret = client.app.state.scope_secret  # type: ignore[attr-defined]
    question = {"messages": [{"role": "user", "content": "What about the lab's freezer?"}]}

    def cited(user: str, scope: Any = None) -> set[str]:
        body = {**question, "kb_scope": scope} if scope is not None else question
        events = stream_events(client, body, **{"X-OpenWebUI-User-Id": user})
        return {e["event"]["data"]["source"]["name"] for e in events if "event" in e}

    assert cited("alice") == {"alice-notes.txt", "alice-other.txt"}  # her own, as before
    # A knowledge base shared with alice in Open WebUI: bob's file is granted.
    shared = signed(secret, "alice", granted=[["fb", "bob"]])
    assert cited("alice", shared) == {"alice-notes.txt", "alice-other.txt", "bob-policy.txt"}
    # Picked in the chat: that file alone, even among her own.
    assert cited("alice", signed(secret, "alice", picked=[["fc", "alice"]])) == {"alice-other.txt"}
    assert cited("alice", signed(secret, "alice", picked=[["fb", "bob"]])) == {"bob-policy.txt"}
    # Picked but nothing readable: nothing found, no fallback to everything.
    events = stream_events(
        client, {**question, "kb_scope": signed(secret, "alice", picked=[])},
        **{"X-OpenWebUI-User-Id": "alice"},
    )
    assert not [e for e in events if "event" in e] and "2741" not in text_of(events)
    # Forged: bob names alice's file without kb's signature; it is ignored.
    forged = signed("guessed-secret", "bob", picked=[["fa", "alice"]])
    assert cited("bob", forged) == {"bob-policy.txt"}
    assert cited("bob", signed(secret, "alice", picked=[["fa", "alice"]])) == {"bob-policy.txt"}
