"""seqio task registrations for pad-jax (importing this registers every task)."""
