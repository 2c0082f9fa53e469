//! Therapy modality: psychodynamic
