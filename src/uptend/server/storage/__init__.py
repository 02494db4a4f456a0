"""uptend.server.storage."""
