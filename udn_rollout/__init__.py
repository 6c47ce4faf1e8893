"""udn_rollout."""
