"""The online store: the server's durable event log, live profiles, published batch results,
journeys, webhook outbox, decisions and bandit statistics, in SQLite (WAL) or PostgreSQL.

This package is the only code that talks to the online database. ``OnlineStore.open(url)``,
then ``with store.write() as tx`` (or ``read()``); a ``Tx`` hands out one part per concern:

- ``tx.events``: the event log (``seen``, ``insert``, ``after``, ``of_person``...)
- ``tx.journey``: what happened to a person
- ``tx.identity``: identifier → person links
- ``tx.docs``: JSON documents by kind and key (live profiles, published results...)
- ``tx.outbox``: webhooks to send, retries, dead letters
- ``tx.decisions``, ``tx.stats``: logged decisions with their feedback, bandit counts
- ``tx.meta``, ``tx.quarantine``: small named values, rejected messages
- ``tx.erasure``: deleting people, refused identifiers' hashes, the queue and the audit

Rows come back as the types of ``records``. Both engines run the same SQL (``sql.py``).
"""

from segone.exceptions import OnlineStoreError
from segone.online.store.database import WAL_LIMIT_BYTES, WRITER_LOCK_KEY, OnlineStore
from segone.online.store.records import (
    DeadLetter,
    Decision,
    ErasureLogEntry,
    FailingDelivery,
    Feedback,
    JourneyEntry,
    JourneyStep,
    LoggedDecision,
    OutboxEntry,
    PersonEvent,
    QuarantinedMessage,
    StoredEvent,
)
from segone.online.store.sql import (
    DOC_KINDS_OF_PERSON,
    POSTGRES,
    SCHEMA_VERSION,
    SQLITE,
    parse_ts,
    ts_text,
)
from segone.online.store.tx import Tx

__all__ = [
    "DOC_KINDS_OF_PERSON",
    "POSTGRES",
    "SCHEMA_VERSION",
    "SQLITE",
    "WAL_LIMIT_BYTES",
    "WRITER_LOCK_KEY",
    "DeadLetter",
    "Decision",
    "ErasureLogEntry",
    "FailingDelivery",
    "Feedback",
    "JourneyEntry",
    "JourneyStep",
    "LoggedDecision",
    "OnlineStore",
    "OnlineStoreError",
    "OutboxEntry",
    "PersonEvent",
    "QuarantinedMessage",
    "StoredEvent",
    "Tx",
    "parse_ts",
    "ts_text",
]
