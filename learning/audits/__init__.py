"""Conflict, hygiene and duplicate audits of learning candidates (pure rules plus the
scope look-ups); services.audit stores their report."""
