"""uptend.server.api."""
