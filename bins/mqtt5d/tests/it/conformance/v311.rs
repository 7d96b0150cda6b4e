//! SECTION

use super::*;

pub(super) const CASES: &[Case] = &[];

pub(super) const NOT_APPLICABLE: &[NotApplicable] = &[];
