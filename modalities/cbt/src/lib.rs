//! Therapy modality: cbt
