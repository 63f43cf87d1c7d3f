"""The supervisor console: contact log, export, dashboards, quality review, audit."""
