//! Durations on the command line: `500ms`, `2s`, `1m30s`, `1h`, `2d`, or a bare number of
//! seconds (as timeout(1) takes them), fractions allowed (`1.5s`, `0.5`, `1e3`). A duration too
//! long to count saturates to "for ever", as GNU's does.

use std::time::Duration;

/// Parses a duration; the error says what was wrong and how to write one.
pub fn parse(text: &str) -> Result<Duration, String> {
    let help = "write it like 500ms, 2s, 1m30s, 1h or 2d (a bare number means seconds)";
    let text = text.trim();
    if text.is_empty() {
        return Err(format!("empty duration: {help}"));
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return seconds_to_duration(seconds).ok_or_else(|| format!("`{text}`: {help}"));
    }
    let mut total = Duration::ZERO;
    let mut rest = text;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| format!("`{text}` has a number without a unit: {help}"))?;
        let (number, tail) = rest.split_at(number_len);
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let value: f64 = number
            .parse()
            .map_err(|_| format!("`{text}`: `{number}` is not a number: {help}"))?;
        let seconds = match unit {
            "ms" => value / 1000.0,
            "s" => value,
            "m" => value * 60.0,
            "h" => value * 3600.0,
            "d" => value * 86400.0,
            _ => return Err(format!("`{text}`: unknown unit `{unit}`: {help}")),
        };
        total = total.saturating_add(
            seconds_to_duration(seconds).ok_or_else(|| format!("`{text}`: {help}"))?,
        );
        rest = tail;
    }
    Ok(total)
}

/// `None` for a negative or not-a-number count; a count too big for a `Duration` (or an
/// infinite one) is `Duration::MAX`.
fn seconds_to_duration(seconds: f64) -> Option<Duration> {
    if seconds.is_nan() || seconds < 0.0 {
        return None;
    }
    Some(Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_usual_forms() {
        assert_eq!(parse("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse("2s"), Ok(Duration::from_secs(2)));
        assert_eq!(parse("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse("3"), Ok(Duration::from_secs(3)));
        assert_eq!(parse("0"), Ok(Duration::ZERO));
        assert_eq!(parse("2d"), Ok(Duration::from_secs(2 * 86400)));
        assert_eq!(parse("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse(".5"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn huge_durations_saturate_instead_of_failing() {
        for huge in [
            "1e20",
            "99999999999999999999s",
            "99999999999999999999d",
            "inf",
        ] {
            assert_eq!(parse(huge), Ok(Duration::MAX), "{huge}");
        }
    }

    #[test]
    fn refuses_what_is_not_a_duration() {
        for bad in ["", "s", "5x", "-1", "1m30", "abc", "1..5s"] {
            let err = parse(bad).expect_err(bad);
            assert!(err.contains("500ms"), "{bad}: {err}");
        }
    }
}
