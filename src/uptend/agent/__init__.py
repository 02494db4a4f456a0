"""uptend.agent."""
