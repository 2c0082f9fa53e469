//! Statistics for evaluation reports: rater agreement, mean and spread of repeated scores,
//! and seeded percentile bootstrap intervals. Proportions use psy-core's Wilson interval
//! (`psy_core::risk_eval::wilson`).

mod agreement;
mod bootstrap;
mod splitmix;
mod summary;

pub use agreement::{cohen_kappa_quadratic, krippendorff_alpha, AgreementError, Level};
pub use bootstrap::{
    percentile, Bootstrap, BootstrapError, Interval, DEFAULT_RESAMPLES, DEFAULT_SEED,
};
pub use psy_core::risk_eval::{wilson, Proportion};
pub use splitmix::SplitMix64;
pub use summary::{summarize, Summary};
