//! Therapy modality: act
