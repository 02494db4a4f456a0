"""uptend.server.services."""
