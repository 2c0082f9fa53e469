//! Therapy modality: family-systems
