//! Checks an upload's keys against the GAEN rules before anything is stored.

use std::collections::{BTreeMap, HashSet};

use base64::Engine;

use crate::error::{Error, Result};

/// Ten-minute intervals in a day, the maximum rolling period of a key.
pub const INTERVALS_PER_DAY: i64 = 144;

/// Report types defined by GAEN: UNKNOWN (0), CONFIRMED_TEST (1),
/// CONFIRMED_CLINICAL_DIAGNOSIS (2), SELF_REPORT (3), RECURSIVE (4) and REVOKED (5).
pub const REPORT_TYPES: std::ops::RangeInclusive<i32> = 0..=5;

/// A key as the client sent it.
#[derive(Debug, Clone)]
pub struct KeyInput {
    pub key_data: String,
    pub rolling_start_interval_number: i64,
    pub rolling_period: i32,
    pub transmission_risk_level: i32,
    pub report_type: Option<i32>,
    pub days_since_onset_of_symptoms: Option<i32>,
}

/// A key that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidKey {
    pub key_data: [u8; 16],
    pub rolling_start_interval_number: i64,
    pub rolling_period: i32,
    pub transmission_risk_level: i32,
    pub report_type: Option<i32>,
    pub days_since_onset_of_symptoms: Option<i32>,
}

impl ValidKey {
    /// Returns the interval number just after the key's period.
    pub fn end_interval(&self) -> i64 {
        self.rolling_start_interval_number + i64::from(self.rolling_period)
    }
}

/// Limits an upload must respect; the defaults are GAEN's.
#[derive(Debug, Clone)]
pub struct KeyRules {
    pub max_keys_per_upload: usize,
    pub max_keys_per_start_interval: usize,
    pub retention_days: u32,
}

/// Returns the 10-minute interval number of a Unix time in seconds (UTC).
pub fn interval_number(unix_seconds: i64) -> i64 {
    unix_seconds.div_euclid(600)
}

/// Validates all keys of an upload at interval `now`, rejecting the whole upload on the first
/// violation with an error naming the key index and field.
pub fn validate_keys(keys: &[KeyInput], rules: &KeyRules, now: i64) -> Result<Vec<ValidKey>> {
    if keys.is_empty() {
        return Err(Error::invalid("keys", "an upload needs at least one key"));
    }
    if keys.len() > rules.max_keys_per_upload {
        return Err(Error::invalid(
            "keys",
            format!(
                "an upload may hold at most {} keys; this one has {}",
                rules.max_keys_per_upload,
                keys.len()
            ),
        ));
    }
    let oldest_end = now - i64::from(rules.retention_days) * INTERVALS_PER_DAY;
    let mut valid = Vec::with_capacity(keys.len());
    let mut seen = HashSet::with_capacity(keys.len());
    for (index, key) in keys.iter().enumerate() {
        let parsed = validate_key(index, key)?;
        if !seen.insert(parsed.key_data) {
            return Err(key_error(
                index,
                "keyData",
                "repeats the keyData of an earlier key in this upload",
            ));
        }
        if parsed.rolling_start_interval_number > now {
            return Err(key_error(
                index,
                "rollingStartIntervalNumber",
                "starts in the future",
            ));
        }
        if parsed.end_interval() < oldest_end {
            return Err(key_error(
                index,
                "rollingStartIntervalNumber",
                &format!("ended more than {} days ago", rules.retention_days),
            ));
        }
        valid.push(parsed);
    }
    check_start_intervals(&valid, rules)?;
    Ok(valid)
}

fn validate_key(index: usize, key: &KeyInput) -> Result<ValidKey> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(key.key_data.as_bytes())
        .map_err(|_| key_error(index, "keyData", "is not standard base64"))?;
    let key_data: [u8; 16] = bytes.as_slice().try_into().map_err(|_| {
        key_error(
            index,
            "keyData",
            &format!("decodes to {} bytes; a key has exactly 16", bytes.len()),
        )
    })?;
    if key.rolling_start_interval_number < 0 {
        return Err(key_error(
            index,
            "rollingStartIntervalNumber",
            "is negative",
        ));
    }
    if !(1..=INTERVALS_PER_DAY as i32).contains(&key.rolling_period) {
        return Err(key_error(
            index,
            "rollingPeriod",
            &format!("is {}; expected 1 to 144", key.rolling_period),
        ));
    }
    if !(0..=8).contains(&key.transmission_risk_level) {
        return Err(key_error(
            index,
            "transmissionRiskLevel",
            &format!("is {}; expected 0 to 8", key.transmission_risk_level),
        ));
    }
    if let Some(report_type) = key
        .report_type
        .filter(|value| !REPORT_TYPES.contains(value))
    {
        return Err(key_error(
            index,
            "reportType",
            &format!("is {report_type}; expected a GAEN report type from 0 to 5"),
        ));
    }
    if let Some(days) = key
        .days_since_onset_of_symptoms
        .filter(|value| !(-14..=14).contains(value))
    {
        return Err(key_error(
            index,
            "daysSinceOnsetOfSymptoms",
            &format!("is {days}; expected -14 to 14"),
        ));
    }
    Ok(ValidKey {
        key_data,
        rolling_start_interval_number: key.rolling_start_interval_number,
        rolling_period: key.rolling_period,
        transmission_risk_level: key.transmission_risk_level,
        report_type: key.report_type,
        days_since_onset_of_symptoms: key.days_since_onset_of_symptoms,
    })
}

/// Checks that at most the configured number of keys share a start interval, and that keys with
/// different starts do not overlap.
fn check_start_intervals(keys: &[ValidKey], rules: &KeyRules) -> Result<()> {
    // Start interval -> (index of the last key with that start, number of keys, latest end).
    let mut by_start: BTreeMap<i64, (usize, usize, i64)> = BTreeMap::new();
    for (index, key) in keys.iter().enumerate() {
        let entry = by_start
            .entry(key.rolling_start_interval_number)
            .or_insert((index, 0, 0));
        entry.0 = index;
        entry.1 += 1;
        entry.2 = entry.2.max(key.end_interval());
        if entry.1 > rules.max_keys_per_start_interval {
            return Err(key_error(
                index,
                "rollingStartIntervalNumber",
                &format!(
                    "is shared by more than {} keys",
                    rules.max_keys_per_start_interval
                ),
            ));
        }
    }
    let mut previous_end: Option<i64> = None;
    for (start, (index, _, end)) in by_start {
        if previous_end.is_some_and(|previous_end| start < previous_end) {
            return Err(key_error(
                index,
                "rollingStartIntervalNumber",
                "overlaps the period of another key",
            ));
        }
        previous_end = Some(end);
    }
    Ok(())
}

fn key_error(index: usize, field: &str, problem: &str) -> Error {
    Error::invalid(
        format!("keys[{index}].{field}"),
        format!("invalid key {index}: {field} {problem}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 2_950_000; // An interval in 2026.

    fn rules() -> KeyRules {
        KeyRules {
            max_keys_per_upload: 30,
            max_keys_per_start_interval: 3,
            retention_days: 14,
        }
    }

    fn key(byte: u8, days_ago: i64) -> KeyInput {
        let today = NOW - NOW % INTERVALS_PER_DAY;
        KeyInput {
            key_data: base64::engine::general_purpose::STANDARD.encode([byte; 16]),
            rolling_start_interval_number: today - days_ago * INTERVALS_PER_DAY,
            rolling_period: 144,
            transmission_risk_level: 4,
            report_type: Some(1),
            days_since_onset_of_symptoms: Some(0),
        }
    }

    fn field_of(error: Error) -> String {
        match error {
            Error::BadUserInput { field, .. } => field.unwrap_or_default(),
            other => panic!("expected BAD_USER_INPUT, got {other:?}"),
        }
    }

    #[test]
    fn fourteen_daily_keys_are_valid() {
        let keys: Vec<KeyInput> = (0..14).map(|day| key(day as u8, day)).collect();
        assert_eq!(validate_keys(&keys, &rules(), NOW).unwrap().len(), 14);
    }

    #[test]
    fn each_rule_names_index_and_field() {
        let mut cases: Vec<(Vec<KeyInput>, &str)> = Vec::new();
        let with = |change: fn(&mut KeyInput)| {
            let mut bad = key(9, 1);
            change(&mut bad);
            vec![key(1, 2), bad]
        };
        cases.push((
            with(|k| k.key_data = "not base64!".into()),
            "keys[1].keyData",
        ));
        cases.push((with(|k| k.key_data = "AAAA".into()), "keys[1].keyData"));
        cases.push((with(|k| k.rolling_period = 0), "keys[1].rollingPeriod"));
        cases.push((with(|k| k.rolling_period = 145), "keys[1].rollingPeriod"));
        cases.push((
            with(|k| k.transmission_risk_level = 9),
            "keys[1].transmissionRiskLevel",
        ));
        cases.push((with(|k| k.report_type = Some(6)), "keys[1].reportType"));
        cases.push((
            with(|k| k.days_since_onset_of_symptoms = Some(15)),
            "keys[1].daysSinceOnsetOfSymptoms",
        ));
        cases.push((
            with(|k| k.days_since_onset_of_symptoms = Some(-15)),
            "keys[1].daysSinceOnsetOfSymptoms",
        ));
        cases.push((
            with(|k| k.rolling_start_interval_number = NOW + 1),
            "keys[1].rollingStartIntervalNumber",
        ));
        cases.push((
            with(|k| k.rolling_start_interval_number -= 15 * 144),
            "keys[1].rollingStartIntervalNumber",
        ));
        cases.push((vec![key(1, 1), key(1, 2)], "keys[1].keyData"));
        cases.push((
            vec![key(1, 1), key(2, 1), key(3, 1), key(4, 1)],
            "keys[3].rollingStartIntervalNumber",
        ));
        let mut overlapping = key(2, 1);
        overlapping.rolling_start_interval_number += 10;
        cases.push((
            vec![key(1, 1), overlapping],
            "keys[1].rollingStartIntervalNumber",
        ));
        cases.push((Vec::new(), "keys"));
        cases.push(((0..31).map(|day| key(day as u8, 0)).collect(), "keys"));
        for (keys, expected_field) in cases {
            let error = validate_keys(&keys, &rules(), NOW).unwrap_err();
            assert_eq!(field_of(error), expected_field);
        }
    }

    #[test]
    fn keys_sharing_a_start_may_overlap() {
        let mut short = key(2, 1);
        short.rolling_period = 72;
        assert!(validate_keys(&[key(1, 1), short], &rules(), NOW).is_ok());
    }

    #[test]
    fn adjacent_keys_do_not_overlap() {
        let mut morning = key(1, 1);
        morning.rolling_period = 72;
        let mut evening = key(2, 1);
        evening.rolling_start_interval_number += 72;
        evening.rolling_period = 72;
        assert!(validate_keys(&[evening, morning], &rules(), NOW).is_ok());
    }

    #[test]
    fn key_ending_exactly_at_retention_is_accepted() {
        let mut oldest = key(1, 0);
        oldest.rolling_start_interval_number = NOW - 14 * 144 - 144;
        assert!(validate_keys(&[oldest], &rules(), NOW).is_ok());
    }

    #[test]
    fn interval_number_counts_ten_minutes() {
        assert_eq!(interval_number(0), 0);
        assert_eq!(interval_number(599), 0);
        assert_eq!(interval_number(600), 1);
        assert_eq!(interval_number(1_600_000_000), 2_666_666);
    }
}
