"""uptend.policy."""
