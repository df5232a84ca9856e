"""The space link: CCSDS telemetry and authenticated telecommands, CFDP uploads, transports.

See docs/link.md (operating it) and docs/icd.md (the interface control document, generated from
the declarations in :mod:`flight.link.catalog`).
"""
