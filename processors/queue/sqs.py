"""Amazon SQS queue backend: a standard queue for work, its redrive dead-letter queue for dead letters.

How the `Queue` interface maps onto SQS:

- claim = ReceiveMessage (long poll, ≤ 10 per call); lease = visibility timeout; ``Lease.attempts`` =
  ``ApproximateReceiveCount``; ``Lease.receipt`` = the receipt handle. SQS counts whole seconds, so
  leases, waits and delays are rounded *up* to the next second (never shorter than asked).
- ack = DeleteMessage; extend / release / retry = ChangeMessageVisibility (lease / 0 / delay, ≤ 12 h).
- dead = SendMessage to the queue named by the main queue's RedrivePolicy ``deadLetterTargetArn``, with
  the reason and attempt count as message attributes, then DeleteMessage. Messages SQS moved itself
  (received more than ``maxReceiveCount`` times without an outcome) carry no reason; they are reported
  as "exceeded maxReceiveCount". A queue without a RedrivePolicy cannot dead-letter (QueueUnavailable).

Where SQS is weaker than the interface (documented here because callers must know):

- No duplicate detection at send time: `enqueue` always answers ``duplicate=False``. Exactly one output
  set per ``dedupe_key`` is enforced at processing time (a `Store.create_exclusive` claim marker).
- ``release`` costs an attempt: SQS cannot lower ``ApproximateReceiveCount``.
- `recent` is empty: SQS keeps no log of processed messages.
- `depth` is approximate, and ``in_flight`` includes deliveries waiting out a retry delay.

Stale leases: a `Lease` is only ever used by the queue object that claimed it, so that object keeps each
lease's deadline (erring early, see `claim`) and ignores ack/extend/release/retry/dead on a lease that
expired or was already settled: SQS may have handed the message to another worker, and an old receipt
handle can still delete or hide it. So a lease must be used with the `SQSQueue` that claimed it.

Message bodies are ``Delivery.to_json()``. SQS caps a message at 256 KiB (1 MiB on newer queues) while a
callback may be 4 MiB, so a body over ``offload_threshold`` is written to the store under ``_queue/`` and
the message carries a small pointer (with the fields `dead_letters` lists). The store must be the same
one on the web and worker side; objects under ``_queue/`` are removed by a bucket lifecycle rule (see
``infra/``), not by this class.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from processors.delivery import Delivery, path_segment
from processors.queue.base import DeliveryRecord, Enqueued, Lease, Queue, QueueUnavailable, RetryPolicy
from processors.store.base import Store, StoreError

OFFLOAD_PREFIX = "_queue/"
OFFLOAD_THRESHOLD = 200 * 1024
_MAX_BATCH = 10
_MAX_WAIT_SECONDS = 20
_MAX_VISIBILITY_SECONDS = 12 * 60 * 60
_PEEK_VISIBILITY_SECONDS = 30
_PEEK_CAP = 1000
_REASON_ATTR = "labelhook-reason"
_ATTEMPTS_ATTR = "labelhook-attempts"
_MAX_REASON_CHARS = 4096
_RESPONSE_LATENCY = 0.25
# Error codes meaning "this receipt handle no longer names an in-flight message": the lease is stale.
_STALE_CODES = frozenset(
    {"ReceiptHandleIsInvalid", "InvalidParameterValue", "AWS.SimpleQueueService.MessageNotInflight"}
)
_REGION_IN_HOST = re.compile(
    r"^sqs\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$|^([a-z0-9-]+)\.queue\.amazonaws\.com$"
)


def _whole_seconds(seconds: float, maximum: int) -> int:
    return max(0, min(maximum, math.ceil(seconds)))


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


@dataclass(frozen=True)
class _DeadLetterQueue:
    url: str
    max_receive_count: int


class _Unreadable(Exception):
    """A message body that is neither a delivery nor a pointer, or whose offloaded payload is gone."""


class SQSQueue(Queue):
    """Queue on one SQS standard queue (``queue_url`` or ``queue_name``) plus its redrive DLQ.

    ``client`` is a boto3 SQS client (tests inject one pointed at moto). ``store`` is where bodies over
    ``offload_threshold`` bytes go; without one, enqueueing such a delivery raises `QueueUnavailable`.
    """

    dedupes_on_enqueue = False

    def __init__(
        self,
        client: Any,
        *,
        queue_url: str | None = None,
        queue_name: str | None = None,
        policy: RetryPolicy | None = None,
        store: Store | None = None,
        offload_threshold: int = OFFLOAD_THRESHOLD,
    ) -> None:
        super().__init__(policy)
        if not (queue_url or queue_name):
            raise ValueError("SQSQueue needs queue_url or queue_name")
        self.client = client
        self.queue_name = queue_name
        self.store = store
        self.offload_threshold = offload_threshold
        self._url = queue_url
        self._dlq: _DeadLetterQueue | None = None
        self._deadlines: dict[str, float] = {}

    @classmethod
    def from_url(
        cls,
        url: str,
        policy: RetryPolicy | None = None,
        *,
        endpoint_url: str | None = None,
        store: Store | None = None,
    ) -> SQSQueue:
        """`sqs://NAME` (resolved with GetQueueUrl) or `sqs+https://…`/`sqs+http://…` (the queue URL)."""
        import boto3
        from botocore.config import Config

        parts = urlsplit(url)
        region = None
        if parts.scheme == "sqs":
            if not parts.netloc or parts.path.strip("/"):
                raise ValueError("SQS queue URL must be sqs://QUEUE-NAME")
            queue_url, queue_name = None, parts.netloc
        elif parts.scheme in ("sqs+https", "sqs+http"):
            queue_url = url.split("+", 1)[1]
            queue_name = None
            host = urlsplit(queue_url)
            if match := _REGION_IN_HOST.match(host.hostname or ""):
                region = match.group(1) or match.group(3)
            elif endpoint_url is None:
                # A local SQS (moto, ElasticMQ): talk to the host that serves the queue.
                endpoint_url = f"{host.scheme}://{host.netloc}"
        else:
            raise ValueError(f"not an SQS queue URL: {parts.scheme}://…")
        client = boto3.client(
            "sqs",
            endpoint_url=endpoint_url,
            region_name=region,
            config=Config(
                retries={"max_attempts": 3, "mode": "standard"},
                connect_timeout=5,
                # Must outlast the 20 s long poll.
                read_timeout=_MAX_WAIT_SECONDS + 10,
                max_pool_connections=32,
            ),
        )
        return cls(client, queue_url=queue_url, queue_name=queue_name, policy=policy, store=store)

    # -- the edge: every boto3 call goes through here -------------------------------------------------

    async def _call(
        self, action: str, method: Callable[..., Any], *, stale_ok: bool = False, **params: Any
    ) -> Any:
        """Run one blocking boto3 call on a thread; botocore errors become `QueueUnavailable`.

        With ``stale_ok``, an error saying the receipt handle is no longer valid returns None: the lease
        ran out or the message is gone, and by the interface that changes nothing.
        """
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return await asyncio.to_thread(method, **params)
        except ClientError as exc:
            code = _error_code(exc)
            if stale_ok and code in _STALE_CODES:
                return None
            raise QueueUnavailable(f"sqs {action}: {code or exc}") from exc
        except BotoCoreError as exc:
            raise QueueUnavailable(f"sqs {action}: {type(exc).__name__}") from exc

    async def _main_url(self) -> str:
        if self._url is None:
            response = await self._call("get queue url", self.client.get_queue_url, QueueName=self.queue_name)
            self._url = str(response["QueueUrl"])
        return self._url

    async def _dead_letter_queue(self) -> _DeadLetterQueue | None:
        if self._dlq is None:
            response = await self._call(
                "get redrive policy",
                self.client.get_queue_attributes,
                QueueUrl=await self._main_url(),
                AttributeNames=["RedrivePolicy"],
            )
            raw = response.get("Attributes", {}).get("RedrivePolicy")
            if not raw:
                return None
            redrive = json.loads(raw)
            # arn:aws:sqs:REGION:ACCOUNT:NAME
            *_, account, name = str(redrive["deadLetterTargetArn"]).split(":")
            found = await self._call(
                "get dead-letter queue url",
                self.client.get_queue_url,
                QueueName=name,
                QueueOwnerAWSAccountId=account,
            )
            self._dlq = _DeadLetterQueue(str(found["QueueUrl"]), int(redrive["maxReceiveCount"]))
        return self._dlq

    # -- bodies: deliveries inline, or a pointer to an offloaded payload ------------------------------

    async def _encode(self, delivery: Delivery) -> str:
        raw = delivery.to_json()
        if len(raw) <= self.offload_threshold:
            return raw.decode("utf-8")  # to_json escapes non-ASCII, so this is SQS-safe text
        if self.store is None:
            raise QueueUnavailable(f"delivery of {len(raw)} bytes exceeds the SQS limit and no store is set")
        key = f"{OFFLOAD_PREFIX}{path_segment(delivery.id)}.json"
        try:
            # Written again on every send (dead letter, replay): that also resets its lifecycle age.
            await asyncio.to_thread(self.store.put, key, raw, "application/json")
        except StoreError as exc:
            raise QueueUnavailable(f"offload {key}: {exc.reason}") from exc
        pointer = {
            "offload": key,
            "id": delivery.id,
            "source": delivery.source,
            "vendor": delivery.vendor,
            "job_id": delivery.job_id,
            "dedupe_key": delivery.dedupe_key,
            "received_at": delivery.received_at,
        }
        return json.dumps(pointer, separators=(",", ":"), sort_keys=True)

    async def _decode(self, body: str) -> Delivery:
        """The delivery in ``body``; raises `_Unreadable`, or `StoreError` if the store is unreachable."""
        raw: bytes | str = body
        key = _summary(body).get("offload")
        if key is not None:
            if self.store is None:
                raise _Unreadable("message points to an offloaded payload but no store is configured")
            try:
                raw = await asyncio.to_thread(self.store.get, str(key))
            except KeyError:
                raise _Unreadable(f"offloaded payload {key} is missing") from None
        try:
            return Delivery.from_json(raw)
        except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as exc:
            raise _Unreadable(f"unreadable message body: {type(exc).__name__}: {exc}") from None

    async def _send(self, queue_url: str, body: str, **attributes: str) -> None:
        params: dict[str, Any] = {"QueueUrl": queue_url, "MessageBody": body}
        if attributes:
            params["MessageAttributes"] = {
                name: {"DataType": "String", "StringValue": value} for name, value in attributes.items()
            }
        await self._call("send", self.client.send_message, **params)

    # -- the Queue interface ---------------------------------------------------------------------------

    async def enqueue(self, delivery: Delivery) -> Enqueued:
        """Send ``delivery``; durable once SQS answered. Never reports a duplicate (see module docstring)."""
        await self._send(await self._main_url(), await self._encode(delivery))
        return Enqueued(delivery.id, duplicate=False)

    async def claim(self, max_messages: int, lease_seconds: float, wait_seconds: float) -> list[Lease]:
        url = await self._main_url()
        visibility = _whole_seconds(lease_seconds, _MAX_VISIBILITY_SECONDS)
        called = time.monotonic()
        response = await self._call(
            "receive",
            self.client.receive_message,
            QueueUrl=url,
            MaxNumberOfMessages=max(1, min(_MAX_BATCH, max_messages)),
            WaitTimeSeconds=_whole_seconds(wait_seconds, _MAX_WAIT_SECONDS),
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        # SQS starts the lease when it picks the messages: after the long poll, a moment before the answer
        # arrives. Placing that moment _RESPONSE_LATENCY before now errs early unless the answer was slower.
        now = time.monotonic()
        started = max(called, now - _RESPONSE_LATENCY)
        self._deadlines = {r: d for r, d in self._deadlines.items() if d > now}
        leases = []
        for message in response.get("Messages", []):
            receipt = str(message["ReceiptHandle"])
            attempts = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            try:
                delivery = await self._decode(str(message["Body"]))
            except _Unreadable as exc:
                # No retry can fix it; park it where an operator sees it instead of looping on it.
                await self._move_to_dead(url, receipt, str(message["Body"]), str(exc), attempts)
                continue
            except StoreError:
                # Store unreachable: leave the message invisible; it comes back when the lease runs out.
                continue
            self._deadlines[receipt] = started + visibility
            leases.append(Lease(delivery, receipt, attempts))
        return leases

    def _take(self, lease: Lease, *, keep: bool = False) -> bool:
        """True if ``lease`` may still act on its message; forgets it unless ``keep``."""
        deadline = self._deadlines.get(lease.receipt) if keep else self._deadlines.pop(lease.receipt, None)
        # Unknown = already settled, expired and pruned, or never handed out here: stale in every case.
        return deadline is not None and time.monotonic() < deadline

    async def _set_visibility(self, lease: Lease, seconds: int) -> None:
        await self._call(
            "change visibility",
            self.client.change_message_visibility,
            stale_ok=True,
            QueueUrl=await self._main_url(),
            ReceiptHandle=lease.receipt,
            VisibilityTimeout=seconds,
        )

    async def ack(self, lease: Lease) -> None:
        if self._take(lease):
            await self._call(
                "delete",
                self.client.delete_message,
                stale_ok=True,
                QueueUrl=await self._main_url(),
                ReceiptHandle=lease.receipt,
            )

    async def extend(self, lease: Lease, lease_seconds: float) -> None:
        if not self._take(lease, keep=True):
            return
        seconds = _whole_seconds(lease_seconds, _MAX_VISIBILITY_SECONDS)
        started = time.monotonic()
        await self._set_visibility(lease, seconds)
        if lease.receipt in self._deadlines:
            self._deadlines[lease.receipt] = started + seconds

    async def release(self, lease: Lease) -> None:
        """Visible again at once. Unlike SQLite this still counts as a receive (SQS cannot undo it)."""
        if self._take(lease):
            await self._set_visibility(lease, 0)

    async def _retry(self, lease: Lease, delay: float, reason: str) -> None:
        # SQS has nowhere to keep ``reason`` on a message in flight; the final one reaches the DLQ.
        if self._take(lease):
            await self._set_visibility(lease, _whole_seconds(delay, _MAX_VISIBILITY_SECONDS))

    async def _dead(self, lease: Lease, reason: str) -> None:
        if self._take(lease):
            body = await self._encode(lease.delivery)
            await self._move_to_dead(await self._main_url(), lease.receipt, body, reason, lease.attempts)

    async def _move_to_dead(self, url: str, receipt: str, body: str, reason: str, attempts: int) -> None:
        dlq = await self._dead_letter_queue()
        if dlq is None:
            raise QueueUnavailable("sqs: the queue has no RedrivePolicy, so there is no dead-letter queue")
        # Send before delete: a crash in between leaves a duplicate dead letter, never a lost one.
        await self._send(
            dlq.url,
            body,
            **{_REASON_ATTR: reason[:_MAX_REASON_CHARS] or "unknown", _ATTEMPTS_ATTR: str(attempts)},
        )
        await self._call(
            "delete", self.client.delete_message, stale_ok=True, QueueUrl=url, ReceiptHandle=receipt
        )

    async def _peek(self, dlq: _DeadLetterQueue) -> list[dict[str, Any]]:
        """Up to `_PEEK_CAP` DLQ messages, hidden for a short while; the caller must `_unhide` them."""
        attributes = await self._call(
            "count dead letters",
            self.client.get_queue_attributes,
            QueueUrl=dlq.url,
            AttributeNames=["ApproximateNumberOfMessages"],
        )
        expected = int(attributes.get("Attributes", {}).get("ApproximateNumberOfMessages", 0))
        seen: dict[str, dict[str, Any]] = {}
        while expected and len(seen) < min(expected, _PEEK_CAP):
            # A short hide, so that paging does not return the same message twice; undone by _unhide.
            response = await self._call(
                "receive dead letters",
                self.client.receive_message,
                QueueUrl=dlq.url,
                MaxNumberOfMessages=_MAX_BATCH,
                WaitTimeSeconds=1,
                VisibilityTimeout=_PEEK_VISIBILITY_SECONDS,
                MessageSystemAttributeNames=["SentTimestamp"],
                MessageAttributeNames=["All"],
            )
            batch = response.get("Messages", [])
            if not batch:
                break
            seen.update((str(m["MessageId"]), m) for m in batch)
        return list(seen.values())

    async def _unhide(self, dlq: _DeadLetterQueue, messages: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(messages), _MAX_BATCH):
            entries = [
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                for i, m in enumerate(messages[start : start + _MAX_BATCH])
            ]
            await self._call(
                "unhide dead letters",
                self.client.change_message_visibility_batch,
                QueueUrl=dlq.url,
                Entries=entries,
            )

    async def dead_letters(self, limit: int = 100) -> list[DeliveryRecord]:
        """Dead letters, newest first, read without consuming them.

        At most 1000 are looked at. Each is hidden for a moment while listed (SQS has no peek), so a
        concurrent listing or replay sees fewer.
        """
        dlq = await self._dead_letter_queue()
        if dlq is None:
            return []
        messages = await self._peek(dlq)
        try:
            records = [_record(m, dlq.max_receive_count) for m in messages]
        finally:
            await self._unhide(dlq, messages)
        return sorted(records, key=lambda r: r.updated_at, reverse=True)[:limit]

    async def replay(self, ids: Sequence[str] | None) -> int:
        """Send matching dead letters (by delivery id) to the main queue as new messages, then delete them.

        A new message starts with a fresh receive count. Dead letters whose body cannot be read are left.
        """
        dlq = await self._dead_letter_queue()
        if dlq is None:
            return 0
        wanted = None if ids is None else set(ids)
        url = await self._main_url()
        messages = await self._peek(dlq)
        untouched = []
        replayed = 0
        try:
            for message in messages:
                if wanted is not None and _summary(str(message["Body"])).get("id") not in wanted:
                    untouched.append(message)
                    continue
                try:
                    delivery = await self._decode(str(message["Body"]))
                except (_Unreadable, StoreError):
                    untouched.append(message)
                    continue
                await self._send(url, await self._encode(delivery))
                await self._call(
                    "delete dead letter",
                    self.client.delete_message,
                    stale_ok=True,
                    QueueUrl=dlq.url,
                    ReceiptHandle=message["ReceiptHandle"],
                )
                replayed += 1
        finally:
            await self._unhide(dlq, untouched)
        return replayed

    async def recent(self, limit: int = 100) -> list[DeliveryRecord]:
        """Always empty: SQS keeps no record of processed messages (the store's manifests do)."""
        return []

    async def depth(self) -> dict[str, int]:
        """Approximate: ``queued`` (visible or delayed), ``in_flight`` (leased or backing off), ``dead``."""
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        main = await self._count(await self._main_url(), names)
        dlq = await self._dead_letter_queue()
        dead = await self._count(dlq.url, names) if dlq else {}
        return {
            "queued": main["ApproximateNumberOfMessages"] + main["ApproximateNumberOfMessagesDelayed"],
            "in_flight": main["ApproximateNumberOfMessagesNotVisible"],
            "dead": sum(dead.values()),
        }

    async def _count(self, url: str, names: list[str]) -> dict[str, int]:
        response = await self._call(
            "count", self.client.get_queue_attributes, QueueUrl=url, AttributeNames=names
        )
        attributes = response.get("Attributes", {})
        return {name: int(attributes.get(name, 0)) for name in names}

    async def ping(self) -> None:
        await self._call(
            "ping",
            self.client.get_queue_attributes,
            QueueUrl=await self._main_url(),
            AttributeNames=["QueueArn"],
        )


def _summary(body: str) -> dict[str, Any]:
    """The listing fields of a body (delivery or pointer), without fetching an offloaded payload."""
    try:
        data = json.loads(body)
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


def _record(message: dict[str, Any], max_receive_count: int) -> DeliveryRecord:
    attributes = message.get("MessageAttributes", {})
    reason = attributes.get(_REASON_ATTR, {}).get("StringValue")
    attempts = attributes.get(_ATTEMPTS_ATTR, {}).get("StringValue")
    info = _summary(str(message["Body"]))
    sent = int(message.get("Attributes", {}).get("SentTimestamp", 0)) / 1000
    return DeliveryRecord(
        id=str(info.get("id", message["MessageId"])),
        source=str(info.get("source", "")),
        vendor=str(info.get("vendor", "")),
        job_id=str(info.get("job_id", "")),
        status="dead",
        # Moved by the redrive policy: received maxReceiveCount times without an outcome.
        attempts=int(attempts) if attempts else max_receive_count,
        received_at=float(info.get("received_at", sent)),
        updated_at=sent,
        last_error=reason
        or f"exceeded maxReceiveCount ({max_receive_count}) without an outcome (worker crashed?)",
    )
