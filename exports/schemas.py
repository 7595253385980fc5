"""Query options of the blinded export (checked in ``bundle.parse_request``, which names each
bad one; the schema documents them and refuses unknown parameters)."""

import marshmallow as ma
from marshmallow import fields as f


class BlindedExportQuerySchema(ma.Schema):
    class Meta:
        unknown = ma.RAISE

    cutoff = f.String(metadata={"description": "ISO 8601 instant with time zone; default: now"})
    format = f.String(metadata={"description": "csv (default), xpt or parquet"})
    dummy_arms = f.String(
        metadata={"description": "Seed (0 to 2^63-1) for a clearly labelled dummy-arm column"}
    )
