"""Everything that leaves the system: blinded CSV bundles, the key file and PDF reports.

Not built yet (issues 5 and 6). Each artefact will pass one blinding gate and one audit call.
"""
