"""Provenance: C2PA Content Credentials, AI labels, the ledger and similarity search.

Nothing is exported yet; the watermark payload this package will index comes from
``aigcguard.watermark``.
"""
