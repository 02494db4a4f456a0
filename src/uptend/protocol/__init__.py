"""uptend.protocol."""
