"""uptend.server."""
