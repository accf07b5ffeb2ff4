"""The canonical data model: every raw warehouse table, its columns, types and meaning.

This module is the single source of truth: tables are created from it, ingestion validates
against it, and a test checks that docs/data-model.md documents every column listed here.
"""

from __future__ import annotations

from dataclasses import dataclass

import ibis
import ibis.expr.datatypes as dt

TS = dt.Timestamp(timezone="UTC")


@dataclass(frozen=True)
class Column:
    name: str
    dtype: dt.DataType
    doc: str


def _c(name: str, dtype: dt.DataType | str, doc: str) -> Column:
    return Column(name, dt.dtype(dtype) if isinstance(dtype, str) else dtype, doc)


_LOAD = [
    _c(
        "source",
        "string",
        "Name of the system the row came from (`--source`, default: the file's stem).",
    ),
    _c("load_id", "string", "Id of the load batch that inserted the row (see `loads`)."),
    _c("loaded_at", TS, "When the row was committed to the warehouse (UTC)."),
]

TABLES: dict[str, list[Column]] = {
    "events": [
        _c(
            "message_id",
            "string",
            "Segment messageId; unique. Derived from a hash of the message when absent.",
        ),
        _c("type", "string", "identify, track, page, screen, group or alias."),
        _c(
            "event",
            "string",
            "Event name of a track call (e.g. 'Order Completed'); null otherwise.",
        ),
        _c("name", "string", "Page or screen name of a page/screen call."),
        _c("user_id", "string", "Your stable id for a known user (Segment userId)."),
        _c("anonymous_id", "string", "Device or cookie id (Segment anonymousId)."),
        _c("group_id", "string", "Account/company id of a group call."),
        _c("previous_id", "string", "Previous id of an alias call."),
        _c("traits", "json", "Traits of identify/group calls (top level or context.traits), JSON."),
        _c("properties", "json", "Properties of track/page/screen calls, JSON."),
        _c("context", "json", "Segment context object (ip, user agent, campaign, …), JSON."),
        _c("timestamp", TS, "When the event happened, UTC."),
        _c("sent_at", TS, "When the client sent it (Segment sentAt), UTC."),
        _c("received_at", TS, "When segone (or the exporting system) received it, UTC."),
        _c("extra", "json", "Fields that matched no canonical column, kept verbatim."),
        *_LOAD,
    ],
    "orders": [
        _c("order_id", "string", "Order id; unique across the warehouse."),
        _c("customer_id", "string", "The source system's customer id for the buyer, if any."),
        _c("user_id", "string", "The buyer's user id (as in events), if known."),
        _c("email", "string", "The buyer's e-mail, if known (PII)."),
        _c("phone", "string", "The buyer's phone, if known (PII)."),
        _c("loyalty_id", "string", "The buyer's loyalty card id, if known."),
        _c("anonymous_id", "string", "Device or cookie id the order was placed from, if known."),
        _c("ts", TS, "When the order was placed, UTC."),
        _c("amount", "float64", "Amount paid after discounts (sum of lines when not given)."),
        _c(
            "discount",
            "float64",
            "Total discount on the order (>= 0; sum of line discounts when not given).",
        ),
        _c("currency", "string", "ISO 4217 code; the project's default currency when absent."),
        _c("channel", "string", "Sales channel: web, app, store, phone, marketplace, …"),
        _c(
            "status",
            "string",
            "completed, returned, cancelled or partially_returned (default completed).",
        ),
        _c("coupon", "string", "Promotion or coupon code used, if any."),
        _c(
            "row_hash",
            "string",
            "Hash of the order-level fields; a re-sent order with other content is quarantined.",
        ),
        _c("extra", "json", "Order-level fields that matched no canonical column."),
        *_LOAD,
    ],
    "order_lines": [
        _c("order_id", "string", "Order the line belongs to."),
        _c("line_number", "int64", "1-based position of the line within its order."),
        _c("product_id", "string", "Product bought."),
        _c("category", "string", "Category path of the product at the time of sale ('A > B > C')."),
        _c("quantity", "int64", "Units bought (> 0)."),
        _c("unit_price", "float64", "Full (list) price per unit (>= 0)."),
        _c("line_discount", "float64", "Discount on the whole line (>= 0)."),
        _c("returned_quantity", "int64", "Units later returned (0..quantity)."),
        _c("extra", "json", "Line-level fields that matched no canonical column."),
        *_LOAD,
    ],
    "products": [
        _c("product_id", "string", "Product id."),
        _c("name", "string", "Product name."),
        _c("category", "string", "Category path, levels separated by ' > '."),
        _c("price", "float64", "List price (>= 0)."),
        _c("brand", "string", "Brand."),
        _c(
            "row_hash",
            "string",
            "Hash of the record; a changed product is appended as a new version.",
        ),
        _c("extra", "json", "Other product attributes."),
        *_LOAD,
    ],
    "customers": [
        _c(
            "source_id",
            "string",
            "The record's id in its source system (CRM id, shop customer id, …).",
        ),
        _c("user_id", "string", "User id, when the source knows it."),
        _c("first_name", "string", "Given name (PII)."),
        _c("last_name", "string", "Family name (PII)."),
        _c("full_name", "string", "Name as one string when the source does not split it (PII)."),
        _c("email", "string", "E-mail address as given (PII)."),
        _c("phone", "string", "Phone number as given (PII)."),
        _c("address", "string", "Street address (PII)."),
        _c("city", "string", "City."),
        _c("postcode", "string", "Postal code."),
        _c("country", "string", "Country (name or ISO code)."),
        _c("birth_date", "date", "Date of birth (PII)."),
        _c("social_handle", "string", "Social network handle, e.g. '@jane' (PII)."),
        _c("loyalty_id", "string", "Loyalty programme card id."),
        _c("company", "string", "Employer or account name (B2B)."),
        _c("crm_stage", "string", "CRM lifecycle stage: lead, opportunity, customer, …"),
        _c("consent_email", "boolean", "Consent to marketing e-mail (null = unknown)."),
        _c("consent_sms", "boolean", "Consent to marketing SMS (null = unknown)."),
        _c("consent_push", "boolean", "Consent to push notifications (null = unknown)."),
        _c("created_at", TS, "When the source created the record, UTC."),
        _c("updated_at", TS, "When the source last changed the record, UTC."),
        _c(
            "row_hash",
            "string",
            "Hash of the record; a changed record is appended as a new version.",
        ),
        _c("extra", "json", "Other attributes of the record."),
        *_LOAD,
    ],
    "interactions": [
        _c(
            "interaction_id",
            "string",
            "Id of the post/review/ticket; derived from a hash when absent.",
        ),
        _c("kind", "string", "post, comment, review, ticket, follow, …"),
        _c("channel", "string", "Where it happened: instagram, x, facebook, site, support, …"),
        _c("author_handle", "string", "Author's social handle (PII)."),
        _c("author_email", "string", "Author's e-mail (PII)."),
        _c("author_user_id", "string", "Author's user id."),
        _c("author_customer_id", "string", "Author's id in the source system."),
        _c("text", "string", "The free text (PII possible)."),
        _c("rating", "int64", "Star rating 1..5 for reviews."),
        _c("product_id", "string", "Product the text is about, if any."),
        _c("ts", TS, "When it was written, UTC."),
        _c("extra", "json", "Other fields."),
        *_LOAD,
    ],
    "enrichments": [
        _c("email", "string", "Key: an e-mail address the attributes belong to (PII)."),
        _c("phone", "string", "Key: a phone number (PII)."),
        _c("postcode", "string", "Key: a postal code (attributes of an area)."),
        _c("domain", "string", "Key: a company web/e-mail domain (firmographics)."),
        _c("row_hash", "string", "Hash of the row; the same row loaded twice is kept once."),
        _c("extra", "json", "The third-party attributes themselves (every other column)."),
        *_LOAD,
    ],
    "quarantine": [
        _c("load_id", "string", "Load batch that rejected the row."),
        _c("kind", "string", "Kind being ingested (events, orders, …)."),
        _c("source_file", "string", "Path of the file the row came from."),
        _c("line", "int64", "Record number in the file (1-based; a CSV header is line 1)."),
        _c("problems", "string", "Machine-readable problem codes, e.g. 'invalid_timestamp(ts)'."),
        _c("reason", "string", "Human-readable reason naming the field and the bad value."),
        _c(
            "record",
            "string",
            "The rejected record as read (JSON), so it can be fixed and re-sent.",
        ),
        _c("quarantined_at", TS, "When the row was quarantined, UTC."),
    ],
    "loads": [
        _c("load_id", "string", "Id of the load batch."),
        _c("kind", "string", "Kind ingested."),
        _c("path", "string", "File ingested."),
        _c("file_sha256", "string", "SHA-256 of the file's bytes."),
        _c("format", "string", "csv, parquet, jsonl or json."),
        _c("source", "string", "Source name given to the rows."),
        _c("rows_read", "int64", "Records read from the file."),
        _c("rows_loaded", "int64", "New rows committed (order lines count in `lines_loaded`)."),
        _c("lines_loaded", "int64", "Order lines committed (orders only)."),
        _c(
            "rows_duplicate",
            "int64",
            "Rows skipped because they were already loaded (idempotency).",
        ),
        _c("rows_rejected", "int64", "Rows sent to quarantine."),
        _c("started_at", TS, "Load start, UTC."),
        _c("finished_at", TS, "Load commit, UTC."),
    ],
}

# Derived by `segone build`; rebuilt from the raw tables (identity_history is appended to).
TABLES.update(
    {
        "customer_map": [
            _c(
                "node",
                "string",
                "An identifier as 'type:normalised value', e.g. 'email:jane@x.com' (PII).",
            ),
            _c(
                "id_type",
                "string",
                "user_id, source_id, loyalty_id, email, phone, handle or anonymous_id.",
            ),
            _c(
                "customer_id",
                "string",
                "The person it belongs to; stable across builds while the person only grows.",
            ),
            _c("first_seen", TS, "Earliest record carrying the identifier, UTC."),
            _c("last_seen", TS, "Latest record carrying the identifier, UTC."),
        ],
        "record_customers": [
            _c("record_table", "string", "events, orders, customers or interactions."),
            _c(
                "record_key",
                "string",
                "message_id, order_id, 'source:source_id' or interaction_id.",
            ),
            _c("customer_id", "string", "The person the record belongs to."),
        ],
        "identity_refusals": [
            _c("node", "string", "The identifier that was not allowed to link records (PII)."),
            _c("id_type", "string", "Its type."),
            _c("rule", "string", "blocked_value, ambiguous_source_id or shared_identifier."),
            _c("detail", "string", "What the rule saw, e.g. 'seen with 14 different user_id'."),
            _c("built_at", TS, "Build that refused it, UTC."),
        ],
        "identity_matches": [
            _c("unique_id_l", "string", "One customer record ('source:source_id')."),
            _c("unique_id_r", "string", "The record it was matched to."),
            _c("match_probability", "float64", "Probability that both are the same person."),
            _c("match_weight", "float64", "Log2 Bayes factor of the match (prior included)."),
            _c(
                "evidence",
                "string",
                "JSON: each compared field's match weight, the explanation of the merge.",
            ),
        ],
        "interaction_sentiment": [
            _c("interaction_id", "string", "The interaction scored."),
            _c(
                "sentiment",
                "float64",
                "VADER compound score of its text, -1 (negative) to 1 (positive).",
            ),
        ],
        "identity_history": [
            _c("at", TS, "Build time, UTC."),
            _c("event", "string", "new, merge or split."),
            _c("customer_id", "string", "The customer id after the build."),
            _c("other_id", "string", "merge: the id absorbed; split: the id split from."),
            _c("reason", "string", "Why, in words."),
        ],
    }
)

# Segments that follow people (appended to by `segone segments snapshot|backfill`).
TABLES.update(
    {
        "segment_memberships": [
            _c("customer_id", "string", "The person."),
            _c("segment", "string", "Segment name, or 'lifecycle:<stage>' for lifecycle stages."),
            _c("entered_at", TS, "Snapshot at which the person was first seen in it, UTC."),
            _c(
                "exited_at", TS, "Snapshot at which they were no longer in it; null while they are."
            ),
        ],
        "transitions": [
            _c("customer_id", "string", "The person."),
            _c("from_segment", "string", "Segment or stage left (null: entered from nowhere)."),
            _c("to_segment", "string", "Segment or stage entered (null: left a segment)."),
            _c("at", TS, "Snapshot at which the move was seen, UTC."),
            _c(
                "kind",
                "string",
                "lifecycle (a stage change), segment (an entry or exit) or taste_shift (old top "
                "category -> new top category).",
            ),
        ],
        "segment_snapshots": [
            _c("at", TS, "As-of time of the snapshot, UTC."),
            _c("members", "int64", "Memberships at that time (lifecycle stages included)."),
            _c("entered", "int64", "Memberships that began."),
            _c("exited", "int64", "Memberships that ended."),
        ],
    }
)

# Predictions per person, written by `segone build` (rebuilt each build; `models` is appended to).
TABLES.update(
    {
        "scores": [
            _c("customer_id", "string", "The person."),
            _c("as_of", TS, "Time the scores are as of (the build's as-of), UTC."),
            _c(
                "p_alive",
                "float64",
                "Probability the buyer is still active (`[models] transaction_model`); "
                "null for non-buyers.",
            ),
            _c(
                "expected_purchases",
                "float64",
                "Expected purchases in the next `[models] horizon_days` days (same model).",
            ),
            _c(
                "expected_order_value",
                "float64",
                "Expected spend per future order (Gamma-Gamma; population mean if no repeat).",
            ),
            _c(
                "clv",
                "float64",
                "Discounted expected spend over the next `[models] clv_months` months.",
            ),
            _c(
                "churn_probability",
                "float64",
                "Probability of no order in the next `horizon_days` (gradient boosting on profile "
                "features and P(alive); exp(-expected purchases) when too little to train on).",
            ),
            _c(
                "p_email_click",
                "float64",
                "Probability of clicking a marketing e-mail, the person's own rate shrunk to "
                "everyone's (null when they never received one).",
            ),
        ],
        "recommendations": [
            _c("customer_id", "string", "The person."),
            _c("rank", "int64", "1 = best."),
            _c("product_id", "string", "Product recommended (never one they already own)."),
            _c("score", "float64", "Blended score (higher is better; comparable within a person)."),
            _c("reason", "string", "Why: the owned items that led to it, or the segment fallback."),
            _c("source", "string", "cooccurrence, als, segment_popular or popular."),
            _c("as_of", TS, "Time the recommendation is as of, UTC."),
        ],
        "category_affinity": [
            _c("customer_id", "string", "The person."),
            _c("category", "string", "The catalogue's category of the products."),
            _c(
                "affinity",
                "float64",
                "P(the person's next purchase is in the category): the preference model's.",
            ),
            _c("share", "float64", "The same number as affinity (kept for older readers)."),
            _c("weight", "float64", "The person's own recency-weighted purchases in it."),
        ],
        "models": [
            _c("name", "string", "bg_nbd, gamma_gamma, churn, next_products, ..."),
            _c("version", "int64", "Increases by one with every fit of that model."),
            _c("fitted_at", TS, "When it was fitted, UTC."),
            _c("window_start", TS, "Earliest data the fit saw, UTC."),
            _c("window_end", TS, "The as-of time of the data it was fitted on, UTC."),
            _c("rows", "int64", "Rows (customers, pairs, ...) it was fitted on."),
            _c(
                "params",
                "string",
                "Its learned parameters (JSON), enough to score without refitting.",
            ),
            _c("metrics", "string", "Fit diagnostics (JSON): log-likelihood, holdout scores, ..."),
        ],
    }
)

# Privacy: erasures leave an audit without personal data and hashed identifiers to refuse.
TABLES.update(
    {
        "erasures": [
            _c("erasure_id", "string", "Id of the erasure."),
            _c("at", TS, "When it was carried out, UTC."),
            _c("customers", "int64", "How many customer ids were erased."),
            _c("rows_removed", "string", "Rows removed per table (JSON); no personal data."),
            _c(
                "route",
                "string",
                "Who asked, through which door: cli, api, web (the dashboard) or library.",
            ),
        ],
        "erased_identifiers": [
            _c(
                "node_hash",
                "string",
                "Salted SHA-256 of an erased identifier; records carrying it are refused.",
            ),
            _c("erasure_id", "string", "The erasure that added it."),
        ],
        "identifier_hashes": [
            _c("customer_id", "string", "The person whose identifier it is."),
            _c("salt_id", "string", "Which erasure salt (a hash of it, not the salt)."),
            _c(
                "node_key",
                "string",
                "First 12 hex digits of the salted SHA-256 of one of the person's identifiers "
                "(as in erased_identifiers); rewritten with customer_map by every build.",
            ),
        ],
        "identity_decisions": [
            _c("kind", "string", "split (a node split off), link or unlink (a pair of nodes)."),
            _c("a", "string", "The identifier decided about (PII; erased with its person)."),
            _c("b", "string", "The other identifier of a link or unlink; null for a split."),
            _c("decided_by", "string", "The dashboard user or command that decided."),
            _c("decided_at", TS, "When, UTC; the latest decision per identifier or pair wins."),
        ],
        "project_secrets": [
            _c("name", "string", "Secret name (identity_salt, erasure_salt)."),
            _c(
                "value",
                "string",
                "Random value generated in this warehouse; an erasure_salt also goes to the "
                "project's online store, which hashes erased identifiers with it.",
            ),
        ],
    }
)

RAW_KINDS = ("events", "orders", "products", "customers", "interactions", "enrichment")


def table_schema(name: str) -> ibis.Schema:
    """The Ibis schema of canonical table ``name``."""
    return ibis.schema({c.name: c.dtype for c in TABLES[name]})
