//! Learning-rate schedules of transformers' `get_scheduler` (linear, cosine, constant) with a
//! linear warmup, evaluated per optimizer step exactly as `LambdaLR` does (step 0 first).

pub use psy_core::train_spec::ScheduleKind;

/// Peak learning rate, warmup and decay over `total_steps` optimizer steps.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LrSchedule {
    pub kind: ScheduleKind,
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LrSchedule {
    /// `warmup_ratio` of the steps, rounded up as transformers' `get_warmup_steps` does.
    pub fn with_ratio(kind: ScheduleKind, peak: f64, warmup_ratio: f64, total: usize) -> Self {
        LrSchedule {
            kind,
            peak,
            warmup_steps: (total as f64 * warmup_ratio).ceil() as usize,
            total_steps: total,
        }
    }

    /// Learning rate of optimizer step `step` (0-based).
    pub fn lr(&self, step: usize) -> f64 {
        let (w, t) = (self.warmup_steps, self.total_steps);
        if step < w {
            return self.peak * step as f64 / w.max(1) as f64;
        }
        let factor = match self.kind {
            ScheduleKind::Constant => 1.0,
            ScheduleKind::Linear => {
                ((t.saturating_sub(step)) as f64 / (t.saturating_sub(w)).max(1) as f64).max(0.0)
            }
            ScheduleKind::Cosine => {
                let progress = (step - w) as f64 / (t.saturating_sub(w)).max(1) as f64;
                (0.5 * (1.0 + (std::f64::consts::PI * progress).cos())).max(0.0)
            }
        };
        self.peak * factor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine_decay_like_transformers() {
        let s = LrSchedule::with_ratio(ScheduleKind::Cosine, 1e-3, 0.1, 100);
        assert_eq!(s.warmup_steps, 10);
        assert_eq!(s.lr(0), 0.0);
        assert!((s.lr(5) - 5e-4).abs() < 1e-12);
        assert!((s.lr(10) - 1e-3).abs() < 1e-12);
        assert!((s.lr(55) - 5e-4).abs() < 1e-12);
        assert!(s.lr(100).abs() < 1e-12);
        let l = LrSchedule::with_ratio(ScheduleKind::Linear, 1.0, 0.0, 4);
        assert_eq!((l.lr(0), l.lr(1), l.lr(3)), (1.0, 0.75, 0.25));
    }
}
