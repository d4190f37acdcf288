"""Deterministic test-vector generators and the vectors they produced."""
