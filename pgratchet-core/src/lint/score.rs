//! The risk score of a migration: 100, minus 40 per denied finding and 15 per warning, floor 0;
//! and the five bands it falls in.

use std::fmt;

/// What a denied finding costs.
const DENIED: u32 = 40;
/// What a warning costs.
const WARNED: u32 = 15;

/// One migration's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Score {
    /// The migration's version.
    pub version: i64,
    /// 0 (very high risk) to 100 (nothing found).
    pub score: u8,
    /// The band the score is in.
    pub risk: Risk,
}

impl Score {
    /// The score of a migration with `denied` denied findings and `warned` warnings.
    pub fn new(version: i64, denied: usize, warned: usize) -> Score {
        let cost = u32::try_from(denied)
            .unwrap_or(u32::MAX)
            .saturating_mul(DENIED)
            .saturating_add(
                u32::try_from(warned)
                    .unwrap_or(u32::MAX)
                    .saturating_mul(WARNED),
            );
        let score = u8::try_from(100u32.saturating_sub(cost)).unwrap_or(0);
        Score {
            version,
            score,
            risk: Risk::of(score),
        }
    }
}

/// The band of a score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Risk {
    /// 90-100.
    VerySafe,
    /// 70-89.
    Safe,
    /// 50-69.
    Moderate,
    /// 30-49.
    High,
    /// 0-29.
    VeryHigh,
}

impl Risk {
    /// The band `score` falls in.
    pub fn of(score: u8) -> Risk {
        match score {
            90.. => Risk::VerySafe,
            70..=89 => Risk::Safe,
            50..=69 => Risk::Moderate,
            30..=49 => Risk::High,
            _ => Risk::VeryHigh,
        }
    }

    /// `very safe`, `safe`, `moderate risk`, `high risk` or `very high risk`.
    pub fn as_str(self) -> &'static str {
        match self {
            Risk::VerySafe => "very safe",
            Risk::Safe => "safe",
            Risk::Moderate => "moderate risk",
            Risk::High => "high risk",
            Risk::VeryHigh => "very high risk",
        }
    }
}

impl fmt::Display for Risk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
