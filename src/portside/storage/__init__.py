"""Cloud stores (fsspec filesystems from `cloud_store` rows), safe store paths and sites (L2 service)."""
