"""`/hooks/<source>` and `/hooks/<source>/` reach the same source for every vendor; nothing else does."""

from __future__ import annotations

from typing import Any

import httpx

from processors.queue import open_queue
from processors.store import open_store
from receiver.app import create_app
from tests.support import LiveServer, callback_body, sign


def test_both_url_forms_reach_the_same_source_and_other_forms_do_not(make_settings: Any) -> None:
    settings = make_settings(
        LABELHOOK_SOURCES="acme,tf",
        LABELHOOK_TF_VENDOR="techforge",
        LABELHOOK_TF_API_KEY="tf-key",
        LABELHOOK_TF_API_URL="http://127.0.0.1:9",
    )
    queue, store = open_queue(settings.queue_url), open_store(settings.store_url)
    with LiveServer(create_app(settings, queue, store)) as live:
        body = callback_body("url-forms")
        headers = sign(body, "msg_url_forms")
        first = httpx.post(f"{live.url}/hooks/acme/", content=body, headers=headers, timeout=10)
        assert first.status_code == 202
        again = httpx.post(f"{live.url}/hooks/acme", content=body, headers=headers, timeout=10)
        assert again.status_code == 200 and again.json()["delivery_id"] == first.json()["delivery_id"]
        for path in ("/hooks/tf", "/hooks/tf/"):  # a polled vendor: the same answer either way
            reply = httpx.post(live.url + path, content=body, headers=headers, timeout=10)
            assert (reply.status_code, reply.json()["error"]) == (404, "callbacks_not_supported")
        for path in ("/hooks/acme//", "/hooks/acme/x", "/hooks/"):
            reply = httpx.post(live.url + path, content=body, headers=headers, timeout=10)
            assert (reply.status_code, reply.json()["error"]) == (404, "unknown_source"), path
        reply = httpx.get(f"{live.url}/hooks/acme/", timeout=10)
        assert reply.status_code == 405 and reply.json()["error"]
