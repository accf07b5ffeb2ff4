"""Who the people are (names, households, addresses, contacts, channels) and how they behave
(purchase rates, drop-out, taste, life events, promotions, propensities)."""

from __future__ import annotations

import numpy as np
from faker.providers.person.en_US import Provider as PersonProvider

from segone.datasets import vocab
from segone.datasets.sample.common import (
    DAY,
    _Block,
    _ids,
    _pick,
)


class _People(_Block):
    # -- people and identities ---------------------------------------------------------------
    def people(self) -> dict[str, np.ndarray]:
        rng, n = self.rng, self.n
        female = rng.random(n) < 0.5
        fn_f = list(PersonProvider.first_names_female)
        fn_m = list(PersonProvider.first_names_male)
        first = np.where(female, _pick(rng, fn_f, n), _pick(rng, fn_m, n))
        last = _pick(rng, list(PersonProvider.last_names), n)
        # two-person households: same surname and address; some share one family e-mail
        household = np.arange(n)
        pair = np.flatnonzero(
            (rng.random(n) < 0.08) & (np.arange(n) % 2 == 0) & (np.arange(n) + 1 < n)
        )
        household[pair + 1] = pair
        last[pair + 1] = last[pair]
        streets = np.char.add(
            np.char.add(_pick(rng, list(PersonProvider.last_names), n), " "),
            _pick(rng, vocab.STREET_SUFFIX_ABBR.keys(), n),
        )
        house_no = rng.integers(1, 9999, n).astype(str)
        address = np.char.add(np.char.add(house_no, " "), streets)
        towns = list(PersonProvider.last_names)[:40]
        cities = np.array(
            [f"{a}{b}" for a in towns for b in ("ville", "ton", "burg", "field")], dtype=object
        )
        city_idx = rng.integers(0, len(cities), n)
        city = cities[city_idx]
        postcode = _ids("", 10000 + (city_idx * 547) % 89_000 + rng.integers(0, 50, n), 5)
        address[pair + 1] = address[pair]
        city[pair + 1] = city[pair]
        postcode[pair + 1] = postcode[pair]
        age_days = rng.integers(18 * 365, 80 * 365, n)
        birth = (np.datetime64(self.cfg.end) - age_days.astype("timedelta64[D]")).astype(
            "datetime64[D]"
        )
        uniq = self.first_person + rng.permutation(n) + 1000  # unique across blocks
        domain = _pick(rng, vocab.EMAIL_DOMAINS, n, p=vocab.EMAIL_DOMAIN_WEIGHTS)
        style = rng.integers(0, 3, n)
        fl, ll = np.char.lower(first.astype(str)), np.char.lower(last.astype(str))
        local = np.where(
            style == 0,
            np.char.add(np.char.add(fl, "."), ll),
            np.where(
                style == 1,
                np.char.add(np.char.add(fl, "_"), ll),
                np.char.add(np.char.add(np.char.array(fl).astype("U1"), ""), ll),
            ),
        )
        email = np.char.add(np.char.add(np.char.add(local, uniq.astype(str)), "@"), domain).astype(
            object
        )
        family = pair[rng.random(len(pair)) < 0.5]
        fam_email = np.char.add(
            np.char.add(np.char.lower(last[family].astype(str)), "family"),
            np.char.add(uniq[family].astype(str), "@gmail.com"),
        ).astype(object)
        email[family] = fam_email
        email[family + 1] = fam_email
        area = _pick(rng, vocab.AREA_CODES, n)
        # 7919 is prime to 8,000,000, so distinct people get distinct numbers
        local_no = ((uniq * 7919 + 12345) % 8_000_000 + 2_000_000).astype(str)
        phone = np.char.add(np.char.add("+1", area.astype(str)), local_no).astype(object)
        user_id = _ids("u", uniq, 8)
        crm_id = _ids("CRM-", uniq, 7)
        loyalty_id = _ids("L", uniq * 7919 % 10**9, 10)
        handle = np.char.add(
            np.char.add("@", np.char.add(fl, ll)), (uniq % 997).astype(str)
        ).astype(object)
        # identities: k of the four channels, weighted
        k = rng.choice([1, 2, 3, 4], size=n, p=[0.45, 0.3, 0.17, 0.08])
        w = np.array([0.55, 0.25, 0.2, 0.15])
        keys = -np.log(rng.random((n, 4))) / w
        rank = keys.argsort(axis=1).argsort(axis=1)
        has = rank < k[:, None]
        return dict(
            first=first.astype(object),
            last=last.astype(object),
            female=female,
            household=household,
            address=address.astype(object),
            city=city,
            postcode=postcode.astype(object),
            birth=birth,
            email=email,
            phone=phone,
            area=area,
            user_id=user_id,
            crm_id=crm_id,
            loyalty_id=loyalty_id,
            handle=handle,
            has=has,
            uniq=uniq,
        )

    # -- purchases: heterogeneous buy-till-you-die ----------------------------------------------
    def behaviour(self, P: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rng, n = self.rng, self.n
        has = P["has"]
        can_buy = has[:, 0] | has[:, 2] | (has[:, 1] & (rng.random(n) < 0.5))
        window = has[:, 0] & (rng.random(n) < 0.08)
        buyer = can_buy & ~window
        vip = buyer & (rng.random(n) < 0.04)
        seeker = buyer & ~vip & (rng.random(n) < 0.15)
        lam = rng.gamma(0.9, 4.0, n) * np.where(vip, 3.0, 1.0)  # purchases per year
        p_drop = rng.beta(1.2, 5.0, n) * np.where(vip, 0.4, 1.0)
        spend = rng.gamma(4.0, 0.25, n) * np.where(vip, 2.5, 1.0)  # multiplier on basket size
        acquired = rng.integers(self.t0, self.t1 - 14 * DAY, n)
        open_p = rng.beta(1.5, 4.0, n)
        click_p = rng.beta(1.2, 6.0, n)
        tone = rng.choice([1, -1, 0], size=n, p=[0.12, 0.07, 0.81])
        # taste: each person likes a few leaf categories
        L = len(vocab.CATEGORIES)
        pref = rng.dirichlet(np.full(L, 0.15), n).astype(np.float32)
        life = buyer & (rng.random(n) < 0.08) & (acquired < self.t1 - 240 * DAY)
        life_kind = rng.integers(0, len(vocab.LIFE_EVENTS), n)
        life_ts = np.where(
            life,
            acquired
            + 60 * DAY
            + (rng.random(n) * np.maximum(self.t1 - 60 * DAY - (acquired + 60 * DAY), 1)).astype(
                np.int64
            ),
            0,
        )
        return dict(
            buyer=buyer,
            window=window,
            vip=vip,
            seeker=seeker,
            lam=lam,
            p_drop=p_drop,
            spend=spend,
            acquired=acquired,
            open_p=open_p,
            click_p=click_p,
            tone=tone,
            pref=pref,
            life=life,
            life_kind=life_kind,
            life_ts=life_ts,
        )
