//! Therapy modality: humanistic
