"""Ray jobs: sources (download + prepare), stages (decode, VAD, segments, filters) and the ingestion job."""
