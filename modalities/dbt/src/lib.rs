//! Therapy modality: dbt
