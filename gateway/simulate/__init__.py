"""Realistic demo traffic through the gateway's real adapters and APIs (``contact-gateway simulate``)."""
