//! Therapy modality: mi
