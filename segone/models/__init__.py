"""Predictions per person: buy-till-you-die, churn, next products, tastes, click probability."""
