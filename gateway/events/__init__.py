"""The canonical contact event and everything that ingests, stores and publishes it."""
