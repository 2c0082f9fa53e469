//! DSM-5-TR and ICD-11 diagnostic screening modules (criteria as TOML data)
