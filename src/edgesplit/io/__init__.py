"""Files: sweep (TOML) and scenario (JSON) files, the analysis of a store, its figures."""
