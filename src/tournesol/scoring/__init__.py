"""Customer features (aggregates of each customer's history), RFM, and predictive scores."""
