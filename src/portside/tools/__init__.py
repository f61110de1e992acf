"""Generic helpers that know nothing of Portside's data model."""
