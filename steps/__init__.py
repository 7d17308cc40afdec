"""imagegate step code: what runs inside the pipeline's pods (stdlib + pydantic only)."""
