"""What each ingestable kind of file contains: canonical input fields, their types and rules,
the keys that make loading idempotent, and the common column names we recognise."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from segone.exceptions import UnknownKindError


@dataclass(frozen=True)
class Field:
    """One canonical input field.

    ``kind`` is one of string, int, float, timestamp, date, bool, json, enum.
    ``minimum``/``maximum`` bound numbers; ``choices`` bound enums (compared lower-cased).
    ``aliases`` are column names (compared without case, spaces or punctuation) that map here.
    ``optional``: a bad value of this field is dropped (and recorded in the quarantine) while
    its row loads, since the row means the same without it; a bad value of any other field
    rejects the row (see ``[ingest] strict``).
    """

    name: str
    kind: str = "string"
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    optional: bool = False


@dataclass(frozen=True)
class KindSpec:
    name: str
    fields: tuple[Field, ...]
    # at least one of these must be present on each row (e.g. some customer reference)
    any_of: tuple[str, ...] = ()
    line_fields: tuple[str, ...] = field(default=())

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.fields]


def norm(name: str) -> str:
    """Normalise a column name for matching: lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", name.lower())


EVENT_TYPES = ("identify", "track", "page", "screen", "group", "alias")
ORDER_STATUSES = ("completed", "returned", "partially_returned", "cancelled", "pending")

EVENTS = KindSpec(
    "events",
    (
        Field("message_id", aliases=("messageid", "msgid", "eventid", "id")),
        Field(
            "type", "enum", required=True, choices=EVENT_TYPES, aliases=("eventtype", "calltype")
        ),
        Field("event", aliases=("eventname", "action")),
        Field("name", aliases=("pagename", "screenname")),
        Field("user_id", aliases=("userid", "uid", "customerid")),
        Field("anonymous_id", aliases=("anonymousid", "anonid", "cookieid", "deviceid")),
        Field("group_id", aliases=("groupid", "accountid")),
        Field("previous_id", aliases=("previousid",)),
        Field("traits", "json"),
        Field("properties", "json", aliases=("props", "eventproperties")),
        Field("context", "json"),
        Field(
            "timestamp",
            "timestamp",
            required=True,
            aliases=("ts", "time", "eventtime", "occurredat", "datetime", "eventtimestamp"),
        ),
        Field("sent_at", "timestamp", aliases=("sentat",), optional=True),
        Field("received_at", "timestamp", aliases=("receivedat",), optional=True),
    ),
    any_of=("user_id", "anonymous_id"),
)

ORDERS = KindSpec(
    "orders",
    (
        Field(
            "order_id",
            required=True,
            aliases=(
                "orderid",
                "ordernumber",
                "orderno",
                "ordernr",
                "order",
                "invoiceno",
                "invoiceid",
                "invoice",
                "transactionid",
                "receiptid",
            ),
        ),
        Field(
            "customer_id",
            aliases=(
                "customerid",
                "custid",
                "customer",
                "clientid",
                "customerno",
                "customernumber",
                "buyerid",
                "accountid",
            ),
        ),
        Field("user_id", aliases=("userid",)),
        Field("email", aliases=("emailaddress", "customeremail", "mail", "buyeremail")),
        Field("phone", aliases=("phonenumber", "mobile", "telephone", "customerphone")),
        Field("loyalty_id", aliases=("loyaltyid", "loyaltycard", "cardnumber", "memberid")),
        Field("anonymous_id", aliases=("anonymousid", "deviceid", "cookieid")),
        Field(
            "ts",
            "timestamp",
            required=True,
            aliases=(
                "orderdate",
                "date",
                "timestamp",
                "time",
                "createdat",
                "orderedat",
                "purchasedate",
                "invoicedate",
                "datetime",
                "orderdatetime",
                "placedat",
            ),
        ),
        Field(
            "amount",
            "float",
            minimum=0,
            aliases=(
                "total",
                "ordertotal",
                "revenue",
                "grandtotal",
                "ordervalue",
                "totalamount",
                "value",
                "sales",
                "amountpaid",
            ),
        ),
        Field(
            "discount",
            "float",
            minimum=0,
            aliases=("discountamount", "orderdiscount", "totaldiscount"),
            optional=True,
        ),
        Field("currency", aliases=("currencycode", "curr")),
        Field("channel", aliases=("saleschannel", "storechannel"), optional=True),
        Field("status", "enum", choices=ORDER_STATUSES, aliases=("orderstatus", "state")),
        Field("coupon", aliases=("couponcode", "promocode", "promotion", "voucher"), optional=True),
        Field(
            "line_number", "int", minimum=1, aliases=("linenumber", "lineno", "line", "position")
        ),
        Field("product_id", aliases=("productid", "sku", "itemid", "stockcode", "item", "product")),
        Field(
            "category", aliases=("productcategory", "categorypath", "itemcategory"), optional=True
        ),
        Field("quantity", "int", minimum=1, aliases=("qty", "units", "numberofitems", "count")),
        Field(
            "unit_price",
            "float",
            minimum=0,
            aliases=("unitprice", "price", "listprice", "itemprice"),
        ),
        Field(
            "line_discount",
            "float",
            minimum=0,
            aliases=("linediscount", "itemdiscount"),
            optional=True,
        ),
        Field(
            "returned_quantity",
            "int",
            minimum=0,
            aliases=("returnedquantity", "returnedqty", "returned"),
        ),
    ),
    any_of=("customer_id", "user_id", "email", "phone", "loyalty_id", "anonymous_id"),
    line_fields=(
        "line_number",
        "product_id",
        "category",
        "quantity",
        "unit_price",
        "line_discount",
        "returned_quantity",
    ),
)

PRODUCTS = KindSpec(
    "products",
    (
        Field(
            "product_id", required=True, aliases=("productid", "sku", "itemid", "id", "stockcode")
        ),
        Field("name", aliases=("productname", "title", "description"), optional=True),
        Field("category", aliases=("categorypath", "productcategory"), optional=True),
        Field("price", "float", minimum=0, aliases=("listprice", "unitprice"), optional=True),
        Field("brand", aliases=("manufacturer", "vendor"), optional=True),
    ),
)

CUSTOMERS = KindSpec(
    "customers",
    (
        Field(
            "source_id",
            required=True,
            aliases=(
                "sourceid",
                "id",
                "customerid",
                "crmid",
                "contactid",
                "recordid",
                "recid",
                "custid",
                "clientid",
            ),
        ),
        Field("user_id", aliases=("userid",)),
        Field("first_name", aliases=("firstname", "givenname", "forename", "fname")),
        Field("last_name", aliases=("lastname", "surname", "familyname", "lname")),
        Field("full_name", aliases=("fullname", "name", "customername", "contactname")),
        Field("email", aliases=("emailaddress", "mail", "email1")),
        Field(
            "phone",
            aliases=("phonenumber", "mobile", "telephone", "tel", "cell", "mobilephone"),
            optional=True,
        ),
        Field(
            "address",
            aliases=("street", "streetaddress", "address1", "addressline1"),
            optional=True,
        ),
        Field("city", aliases=("town", "locality", "suburb"), optional=True),
        Field("postcode", aliases=("zip", "zipcode", "postalcode", "postcode"), optional=True),
        Field("country", aliases=("countrycode",), optional=True),
        Field(
            "birth_date",
            "date",
            aliases=("birthdate", "dob", "dateofbirth", "birthday"),
            optional=True,
        ),
        Field(
            "social_handle",
            aliases=("socialhandle", "handle", "twitter", "instagram"),
            optional=True,
        ),
        Field("loyalty_id", aliases=("loyaltyid", "loyaltycard", "cardnumber", "memberid")),
        Field(
            "company",
            aliases=("companyname", "organisation", "organization", "account"),
            optional=True,
        ),
        Field(
            "crm_stage",
            aliases=("crmstage", "stage", "lifecyclestage", "leadstatus"),
            optional=True,
        ),
        Field(
            "consent_email",
            "bool",
            aliases=(
                "consentemail",
                "emailoptin",
                "emailconsent",
                "acceptsmarketing",
                "newsletter",
            ),
            optional=True,
        ),
        Field(
            "consent_sms", "bool", aliases=("consentsms", "smsoptin", "smsconsent"), optional=True
        ),
        Field(
            "consent_push",
            "bool",
            aliases=("consentpush", "pushoptin", "pushconsent"),
            optional=True,
        ),
        Field(
            "created_at",
            "timestamp",
            aliases=("createdat", "created", "signupdate", "since"),
            optional=True,
        ),
        Field(
            "updated_at",
            "timestamp",
            aliases=("updatedat", "updated", "modified", "lastmodified"),
            optional=True,
        ),
    ),
)

INTERACTIONS = KindSpec(
    "interactions",
    (
        Field("interaction_id", aliases=("interactionid", "postid", "reviewid", "ticketid", "id")),
        Field("kind", required=True, aliases=("type", "interactiontype")),
        Field("channel", aliases=("platform", "network", "site"), optional=True),
        Field("author_handle", aliases=("authorhandle", "handle", "username", "screenname")),
        Field("author_email", aliases=("authoremail", "email")),
        Field("author_user_id", aliases=("authoruserid", "userid")),
        Field("author_customer_id", aliases=("authorcustomerid", "customerid")),
        Field("text", aliases=("body", "message", "content", "comment", "review")),
        Field("rating", "int", minimum=1, maximum=5, aliases=("stars", "score"), optional=True),
        Field("product_id", aliases=("productid", "sku"), optional=True),
        Field(
            "ts",
            "timestamp",
            required=True,
            aliases=("timestamp", "date", "createdat", "postedat", "time", "datetime"),
        ),
    ),
    any_of=("author_handle", "author_email", "author_user_id", "author_customer_id"),
)

ENRICHMENT = KindSpec(
    "enrichment",
    (
        Field("email", aliases=("emailaddress", "mail")),
        Field("phone", aliases=("phonenumber", "mobile", "telephone")),
        Field("postcode", aliases=("zip", "zipcode", "postalcode")),
        Field("domain", aliases=("companydomain", "website", "emaildomain")),
    ),
    any_of=("email", "phone", "postcode", "domain"),
)

KINDS: dict[str, KindSpec] = {
    k.name: k for k in (EVENTS, ORDERS, PRODUCTS, CUSTOMERS, INTERACTIONS, ENRICHMENT)
}
# the table each kind is loaded into, where it is not the kind's own name
TARGET_TABLE = {"enrichment": "enrichments"}


def get_kind(name: str) -> KindSpec:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownKindError(
            f"unknown kind {name!r}; choose one of: {', '.join(KINDS)}"
        ) from None
