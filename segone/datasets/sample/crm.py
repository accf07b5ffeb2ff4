"""The customer records of three sources (web shop accounts, the CRM, the loyalty scheme),
each with its own formatting and errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from segone.datasets.sample.common import (
    DAY,
    _abbreviate,
    _iso,
    _tok,
    _typo,
)
from segone.datasets.sample.identities import _Identities


class _Customers(_Identities):
    def _customers(
        self,
        P: dict[str, np.ndarray],
        B: dict[str, np.ndarray],
        data: Path,
        records: list[pa.Table],
        o_person: np.ndarray,
        churned: np.ndarray,
    ) -> dict[str, int]:
        rng, n = self.rng, self.n
        has = P["has"]
        counts: dict[str, int] = {}
        bought = np.bincount(o_person, minlength=n) > 0
        created = B["acquired"] - rng.integers(0, 30 * DAY, n)
        # web shop accounts
        s = np.flatnonzero(has[:, 0])
        shop = pa.table(
            {
                "customer_id": P["user_id"][s],
                "user_id": P["user_id"][s],
                "email": P["email"][s],
                "first_name": P["first"][s],
                "last_name": P["last"][s],
                "phone": np.where(rng.random(len(s)) < 0.5, P["phone"][s], None),
                "address": P["address"][s],
                "city": P["city"][s],
                "zip": P["postcode"][s],
                "instagram": np.where(has[s, 3] & (rng.random(len(s)) < 0.3), P["handle"][s], None),
                "accepts_marketing": np.where(rng.random(len(s)) < 0.7, "yes", "no"),
                "created_at": _iso(created[s]),
            }
        )
        self.sink.csv("customers_shop.csv", shop)
        name = self._names(P, s)
        ids: tuple[np.ndarray, ...] = (
            _tok("u", P["user_id"][s]),
            _tok("e", P["email"][s]),
            _tok("p", P["phone"][s], shop["phone"].is_valid().to_numpy(zero_copy_only=False)),
            _tok("h", P["handle"][s], shop["instagram"].is_valid().to_numpy(zero_copy_only=False)),
            _tok("np", name + P["postcode"][s]),
            _tok("na", name + P["address"][s]),
            _tok("nc", name + P["city"][s]),
        )
        records.append(self._rec("customers", P["user_id"][s], s, source="customers_shop", ids=ids))
        counts["customers_shop"] = len(s)
        # CRM contacts: typos, variants, stages
        c = np.flatnonzero(has[:, 1])
        stage = np.where(
            bought[c], "customer", np.where(rng.random(len(c)) < 0.35, "opportunity", "lead")
        )
        abbreviate = rng.random(len(c)) < 0.5  # "Street" -> "St." in some CRM records
        addr = np.array(
            [
                _abbreviate(a) if ab else a
                for a, ab in zip(P["address"][c], abbreviate, strict=True)
            ],
            dtype=object,
        )
        dob = np.where(rng.random(len(c)) < 0.6, np.datetime_as_string(P["birth"][c]), None).astype(
            object
        )
        crm_id = P["crm_id"][c].copy()
        bad = rng.random(len(c)) < self.cfg.bad_row_rate * 2
        kinds = rng.integers(0, 2, len(c))
        crm_id[bad & (kinds == 0)] = None
        # an unreadable birth date is an optional field's problem: the record loads without it
        # (and the quarantine records the field); a record without an id is rejected
        dob_bad = bad & (kinds == 1)
        dob[dob_bad] = "1975-13-45"
        rejected = bad & (kinds == 0)
        crm = pa.table(
            {
                "Contact ID": crm_id,
                "First Name": _typo(rng, P["first"][c], 0.06),
                "Last Name": _typo(rng, P["last"][c], 0.06),
                "Email": np.where(
                    rng.random(len(c)) < 0.85, self._email_variant(P["email"][c], 0.25), None
                ),
                "Mobile": np.where(
                    rng.random(len(c)) < 0.7, self._phone_variant(P["phone"][c]), None
                ),
                "Street": addr,
                "City": P["city"][c],
                "Zip": P["postcode"][c],
                "Date of Birth": dob,
                "Company": np.where(
                    rng.random(len(c)) < 0.25, np.char.add(P["last"][c].astype(str), " & Co"), None
                ),
                "Lifecycle Stage": stage,
                "Email Opt-in": np.where(rng.random(len(c)) < 0.65, "true", "false"),
                "SMS Opt-in": np.where(rng.random(len(c)) < 0.3, "true", "false"),
                "Twitter": np.where(has[c, 3] & (rng.random(len(c)) < 0.4), P["handle"][c], None),
                "Created": _iso(created[c] - 20 * DAY),
            }
        )
        self.sink.csv("customers_crm.csv", crm)
        name = self._names(P, c)
        valid = {k: crm[k].is_valid().to_numpy(zero_copy_only=False) for k in crm.column_names}
        ids = (
            _tok("c", P["crm_id"][c]),
            _tok("e", P["email"][c], valid["Email"]),
            _tok("p", P["phone"][c], valid["Mobile"]),
            _tok("h", P["handle"][c], valid["Twitter"]),
            _tok("np", name + P["postcode"][c]),
            _tok("na", name + P["address"][c]),
            _tok("nc", name + P["city"][c]),
            _tok(
                "nd",
                name + np.datetime_as_string(P["birth"][c]).astype(object),
                valid["Date of Birth"] & ~dob_bad,
            ),
        )
        records.append(
            self._rec("customers", P["crm_id"][c], c, rejected, source="customers_crm", ids=ids)
        )
        counts["customers_crm"] = int(len(c) - rejected.sum())
        counts["quarantine_customers"] = int(bad.sum())
        # loyalty cards signed up in store: full name in one field, phone, postcode, birth date
        lo = np.flatnonzero(has[:, 2])
        style = rng.random(len(lo)) < 0.5
        full = np.where(
            style,
            np.char.add(np.char.add(P["first"][lo].astype(str), " "), P["last"][lo].astype(str)),
            np.char.add(
                np.char.add(np.char.upper(P["last"][lo].astype(str)), ", "),
                P["first"][lo].astype(str),
            ),
        )
        loyalty = pa.table(
            {
                "card_number": P["loyalty_id"][lo],
                "name": _typo(rng, full.astype(object), 0.04),
                "phone": np.where(
                    rng.random(len(lo)) < 0.7, self._phone_variant(P["phone"][lo]), None
                ),
                "postcode": P["postcode"][lo],
                "dob": np.where(
                    rng.random(len(lo)) < 0.6, np.datetime_as_string(P["birth"][lo]), None
                ),
                "sms_optin": np.where(rng.random(len(lo)) < 0.4, "Y", "N"),
                "since": _iso(created[lo]),
            }
        )
        self.sink.csv("customers_loyalty.csv", loyalty)
        name = self._names(P, lo)
        valid = {k: loyalty[k].is_valid().to_numpy(zero_copy_only=False) for k in ("phone", "dob")}
        ids = (
            _tok("l", P["loyalty_id"][lo]),
            _tok("p", P["phone"][lo], valid["phone"]),
            _tok("np", name + P["postcode"][lo]),
            _tok("nd", name + np.datetime_as_string(P["birth"][lo]).astype(object), valid["dob"]),
        )
        records.append(
            self._rec("customers", P["loyalty_id"][lo], lo, source="customers_loyalty", ids=ids)
        )
        counts["customers_loyalty"] = len(lo)
        return counts
