"""Switchyard: one OpenAI-shaped client for every model (placeholder while the client lands)."""
