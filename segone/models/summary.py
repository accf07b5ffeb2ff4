"""Per-customer frequency / recency / age / spend summaries for buy-till-you-die models, in Ibis."""

from __future__ import annotations

import datetime as dt

import ibis
import ibis.expr.types as ir
import pandas as pd

from segone.exceptions import ModelInputError

DAY_SECONDS = 86_400.0
_EPOCH = pd.Timestamp("1970-01-01")


def _timestamp(value: str | dt.date | dt.datetime | pd.Timestamp, name: str) -> pd.Timestamp:
    try:
        stamp = pd.Timestamp(value)
    except (TypeError, ValueError) as e:
        raise ModelInputError(f"{name}: cannot read {value!r} as a date or timestamp") from e
    if stamp is pd.NaT:
        raise ModelInputError(f"{name}: cannot read {value!r} as a date or timestamp")
    if stamp.tzinfo is not None:
        raise ModelInputError(
            f"{name}: give a naive timestamp (the warehouse stores naive UTC times)"
        )
    return stamp


def _days_of(stamp: pd.Timestamp, merge_same_day: bool) -> float:
    """Days since the epoch: the day number (floored) when purchases are counted per day."""
    if merge_same_day:
        return float((stamp.normalize() - _EPOCH).days)
    return (stamp - _EPOCH).total_seconds() / DAY_SECONDS


def rfm_summary(
    transactions: ibis.Table,
    *,
    calibration_end: str | dt.date | dt.datetime | pd.Timestamp,
    observation_end: str | dt.date | dt.datetime | pd.Timestamp | None = None,
    unit_days: float = 7.0,
    merge_same_day: bool = True,
    customer: str = "customer_id",
    ts: str = "ts",
    amount: str | None = "amount",
) -> ibis.Table:
    """One row per customer who bought on or before ``calibration_end``.

    Columns: the customer key, ``frequency`` (repeat purchases), ``recency`` (first to last
    purchase), ``T`` (first purchase to ``calibration_end``), ``monetary_value`` (mean value of
    the repeat purchases, 0 when there are none; the first purchase is left out, as Gamma-Gamma
    expects) and, when ``observation_end`` is given, ``frequency_holdout``, ``monetary_holdout``
    and ``duration_holdout`` for purchases after ``calibration_end`` up to ``observation_end``.
    Times are in units of ``unit_days`` days (7: weeks).

    The conventions are those of ``lifetimes.utils.calibration_and_holdout_data`` with
    ``freq="D", freq_multiplier=unit_days``, so the two agree row for row:

    - purchases are cut at ``ts <= calibration_end`` on the raw timestamp, but ``T`` is measured
      to the *day* of ``calibration_end``. A bare date means midnight, so purchases later that
      day fall in the holdout; pass ``"1997-09-30 23:59:59"`` to keep the whole day.
    - with ``merge_same_day`` a purchase is a customer-day: days are counted, times are whole
      days, and the calibration ``monetary_value`` is the mean of the daily totals. The holdout
      ``monetary_holdout`` is, as in lifetimes, the mean of the raw transactions.
    - without it every transaction counts, and times are exact to the second (ties at the same
      instant: the cheapest one is taken as the first purchase, as lifetimes sorts them).

    ``amount=None`` leaves out the two spend columns.
    """
    if not unit_days > 0:
        raise ModelInputError(f"unit_days must be positive, got {unit_days}")
    cal_end = _timestamp(calibration_end, "calibration_end")
    obs_end = None if observation_end is None else _timestamp(observation_end, "observation_end")
    if obs_end is not None and obs_end <= cal_end:
        raise ModelInputError(
            f"observation_end ({obs_end}) must be after calibration_end ({cal_end})"
        )

    when = transactions[ts].cast("timestamp")
    base = transactions.select(
        _rfm_c=transactions[customer],
        _rfm_ts=when,
        _rfm_amt=(transactions[amount].cast("float64") if amount else ibis.literal(0.0)),
    )
    cal = base.filter(base._rfm_ts <= ibis.literal(cal_end.to_pydatetime()))
    events = _events(cal, merge_same_day)
    # the cheapest of same-instant purchases is "first" (lifetimes sorts by time, then amount)
    ranked = events.mutate(
        _rfm_k=ibis.row_number().over(group_by="_rfm_c", order_by=["_rfm_t", "_rfm_amt"])
    )
    per = ranked.group_by("_rfm_c").aggregate(
        _rfm_n=ranked.count(),
        _rfm_first=ranked._rfm_t.min(),
        _rfm_last=ranked._rfm_t.max(),
        _rfm_m=ranked._rfm_amt.mean(where=ranked._rfm_k > 0),
    )
    cal_t = _days_of(cal_end, merge_same_day)
    cols: dict[str, ir.Value] = {
        customer: per._rfm_c,
        "frequency": (per._rfm_n - 1).cast("int64"),
        "recency": ((per._rfm_last - per._rfm_first) / unit_days).cast("float64"),
        "T": ((ibis.literal(cal_t) - per._rfm_first) / unit_days).cast("float64"),
    }
    if amount:
        cols["monetary_value"] = per._rfm_m.fill_null(0.0).cast("float64")
    out = per.select(**cols)
    if obs_end is None:
        return out

    hold = base.filter(
        (base._rfm_ts > ibis.literal(cal_end.to_pydatetime()))
        & (base._rfm_ts <= ibis.literal(obs_end.to_pydatetime()))
    )
    count = hold._rfm_ts.truncate("D").nunique() if merge_same_day else hold.count()
    h = hold.group_by("_rfm_c").aggregate(_rfm_hn=count, _rfm_hm=hold._rfm_amt.mean())
    joined = out.left_join(h, out[customer] == h._rfm_c)
    duration = (_days_of(obs_end, merge_same_day) - cal_t) / unit_days
    extra: dict[str, ir.Value] = {
        "frequency_holdout": joined._rfm_hn.fill_null(0).cast("int64"),
    }
    if amount:
        extra["monetary_holdout"] = joined._rfm_hm.fill_null(0.0).cast("float64")
    extra["duration_holdout"] = ibis.literal(duration, type="float64")
    return joined.select(*out.columns, **extra)


def _events(cal: ibis.Table, merge_same_day: bool) -> ibis.Table:
    """Purchase events (customer, time in days since the epoch, value) from raw transactions."""
    if merge_same_day:
        day = cal.mutate(_rfm_day=cal._rfm_ts.truncate("D"))
        per_day = day.group_by(["_rfm_c", "_rfm_day"]).aggregate(_rfm_amt=day._rfm_amt.sum())
        return per_day.select(
            "_rfm_c",
            _rfm_t=per_day._rfm_day.epoch_seconds() / DAY_SECONDS,
            _rfm_amt=per_day._rfm_amt,
        )
    # epoch_seconds is whole seconds on some engines; exact enough for weekly units
    return cal.select(
        "_rfm_c", _rfm_t=cal._rfm_ts.epoch_seconds() / DAY_SECONDS, _rfm_amt="_rfm_amt"
    )
