"""hopline's HTTP ingestion service."""
