"""Composition: what combines the domains (watermark, detectors, provenance) into workflows.

``check``: every signal about a picture and the verdict; ``pipeline``: the generation pipeline
(mark, label, sign, record); ``lookup``: a picture's ledger record from its watermark;
``http``: the HTTP service; ``batch``: batch jobs in one process or on Ray. The CLI is a thin
layer over these and the domains.
"""
