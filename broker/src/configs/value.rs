//! One config value, parsed and checked the way Kafka's `ConfigDef` does it,
//! with Kafka's error messages (`Invalid value X for configuration Y: why`).
//!
//! Java details are copied on purpose because clients show these messages and
//! DescribeConfigs shows the re-printed values: `String.trim` strips every
//! char up to U+0020, booleans ignore case, lists split on `\s*,\s*`, and a
//! double prints as Java's `Double.toString` does (`2` becomes `2.0`).

use std::fmt;

use super::{ConfigError, ConfigType};

/// A value after Kafka's `ConfigDef.parseType`.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Parsed {
    Bool(bool),
    /// INT and SHORT.
    Int(i32),
    Long(i64),
    Double(f64),
    /// STRING, CLASS and PASSWORD: trimmed.
    Str(String),
    List(Vec<String>),
}

impl Parsed {
    /// Kafka's `ConfigDef.convertToString`: the form DescribeConfigs reports.
    pub(super) fn canonical(&self) -> String {
        match self {
            Parsed::Bool(b) => b.to_string(),
            Parsed::Int(v) => v.to_string(),
            Parsed::Long(v) => v.to_string(),
            Parsed::Double(v) => java_double(*v),
            Parsed::Str(s) => s.clone(),
            Parsed::List(items) => items.join(","),
        }
    }

    fn as_f64(&self) -> Option<f64> {
        match self {
            Parsed::Int(v) => Some(f64::from(*v)),
            Parsed::Long(v) => Some(*v as f64),
            Parsed::Double(v) => Some(*v),
            _ => None,
        }
    }
}

/// Java's `toString` of a parsed value, which is how Kafka's messages print it
/// (a list as `[a, b]`).
impl fmt::Display for Parsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parsed::List(items) => write!(f, "[{}]", items.join(", ")),
            other => f.write_str(&other.canonical()),
        }
    }
}

/// Kafka's `ConfigException(name, value, message)`.
pub(super) fn invalid(name: &str, value: impl fmt::Display, reason: &str) -> ConfigError {
    ConfigError::Invalid(format!(
        "Invalid value {value} for configuration {name}: {reason}"
    ))
}

/// Kafka's `ConfigDef.parseType` for a string value. Errors print the raw
/// value, as Kafka does.
pub(super) fn parse(name: &str, raw: &str, config_type: ConfigType) -> Result<Parsed, ConfigError> {
    let trimmed = java_trim(raw);
    let not_a_number = || {
        invalid(
            name,
            raw,
            &format!("Not a number of type {}", config_type.kafka_name()),
        )
    };
    Ok(match config_type {
        ConfigType::Boolean if trimmed.eq_ignore_ascii_case("true") => Parsed::Bool(true),
        ConfigType::Boolean if trimmed.eq_ignore_ascii_case("false") => Parsed::Bool(false),
        ConfigType::Boolean => {
            return Err(invalid(
                name,
                raw,
                "Expected value to be either true or false",
            ));
        }
        ConfigType::Short => {
            Parsed::Int(trimmed.parse::<i16>().map_err(|_| not_a_number())?.into())
        }
        ConfigType::Int => Parsed::Int(trimmed.parse().map_err(|_| not_a_number())?),
        ConfigType::Long => Parsed::Long(trimmed.parse().map_err(|_| not_a_number())?),
        ConfigType::Double => Parsed::Double(parse_java_double(trimmed).ok_or_else(not_a_number)?),
        ConfigType::List if trimmed.is_empty() => Parsed::List(Vec::new()),
        ConfigType::List => Parsed::List(
            trimmed
                .split(',')
                .map(|item| item.trim_matches(is_regex_space).to_owned())
                .collect(),
        ),
        ConfigType::String | ConfigType::Class | ConfigType::Password => {
            Parsed::Str(trimmed.to_owned())
        }
    })
}

/// The check a config's value must pass after parsing (Kafka's `Validator`s
/// used by topic configs).
#[derive(Debug, Clone, Copy)]
pub(super) enum Validator {
    /// Any value of the right type.
    Any,
    /// `Range.atLeast` / `Range.between`: inclusive, compared as doubles.
    Range { min: i64, max: Option<i64> },
    /// `ValidString.in`: exactly one of these, case-sensitive.
    OneOf(&'static [&'static str]),
    /// `ValidList.in`: every item one of these (an empty list is fine).
    ListOf(&'static [&'static str]),
    /// `ThrottledReplicaListValidator`: `*`, or `partition:broker` pairs.
    ThrottledReplicas,
    /// `GzipCompression.LevelValidator`: 1 to 9, or -1 for zlib's default.
    GzipLevel,
    /// `remote.storage.enable`: Lightstream has no Kafka tiered storage, so
    /// `true` is refused, as Kafka refuses it with
    /// `remote.log.storage.system.enable=false` (its default).
    NoTieredStorage,
}

impl Validator {
    pub(super) fn check(self, name: &str, value: &Parsed) -> Result<(), ConfigError> {
        match (self, value) {
            (Validator::Any, _) => Ok(()),
            (Validator::Range { min, max }, value) => {
                let n = value
                    .as_f64()
                    .expect("Range validators are only on numeric configs");
                if n < min as f64 {
                    Err(invalid(
                        name,
                        value,
                        &format!("Value must be at least {min}"),
                    ))
                } else if let Some(max) = max.filter(|max| n > *max as f64) {
                    Err(invalid(
                        name,
                        value,
                        &format!("Value must be no more than {max}"),
                    ))
                } else {
                    Ok(())
                }
            }
            (Validator::OneOf(allowed), Parsed::Str(s)) => one_of(name, s, allowed),
            (Validator::ListOf(allowed), Parsed::List(items)) => items
                .iter()
                .try_for_each(|item| one_of(name, item, allowed)),
            (Validator::ThrottledReplicas, Parsed::List(items)) => {
                let pairs = items.iter().all(|item| is_replica_pair_or_empty(item));
                if pairs || items.concat() == "*" {
                    Ok(())
                } else {
                    Err(invalid(
                        name,
                        value,
                        &format!(
                            "{name} must be the literal '*' or a list of replicas in the following \
                             format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                        ),
                    ))
                }
            }
            (Validator::GzipLevel, Parsed::Int(level)) => {
                if *level > 9 || (*level < 1 && *level != -1) {
                    Err(invalid(
                        name,
                        value,
                        "Value must be between 1 and 9 or equal to -1",
                    ))
                } else {
                    Ok(())
                }
            }
            (Validator::NoTieredStorage, Parsed::Bool(true)) => Err(ConfigError::Invalid(
                "Tiered Storage functionality is disabled in the broker. Topic cannot be \
                 configured with remote log storage."
                    .to_owned(),
            )),
            (Validator::NoTieredStorage, Parsed::Bool(false)) => Ok(()),
            (validator, value) => {
                unreachable!("validator {validator:?} does not apply to {name}={value:?}")
            }
        }
    }
}

fn one_of(name: &str, s: &str, allowed: &[&str]) -> Result<(), ConfigError> {
    if allowed.contains(&s) {
        Ok(())
    } else {
        Err(invalid(
            name,
            s,
            &format!("String must be one of: {}", allowed.join(", ")),
        ))
    }
}

/// The regex `([0-9]+:[0-9]+)?` on a trimmed item.
fn is_replica_pair_or_empty(item: &str) -> bool {
    let item = java_trim(item);
    item.is_empty()
        || item.split_once(':').is_some_and(|(partition, broker)| {
            [partition, broker]
                .iter()
                .all(|part| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit()))
        })
}

/// Java's `String.trim`: strips every char up to and including U+0020.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Java regex `\s`: `[ \t\n\x0B\f\r]`.
fn is_regex_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

/// Java's `Double.parseDouble` for the spellings people write: decimal with an
/// optional exponent and `d`/`f` suffix, `NaN`, `Infinity`. Rust-only
/// spellings such as `inf` are refused, as Java refuses them.
fn parse_java_double(s: &str) -> Option<f64> {
    let unsigned = s.strip_prefix(['+', '-']).unwrap_or(s);
    if unsigned == "NaN" || unsigned == "Infinity" {
        return s.parse().ok();
    }
    let number = s.strip_suffix(['d', 'D', 'f', 'F']).unwrap_or(s);
    if number
        .bytes()
        .any(|b| b.is_ascii_alphabetic() && b != b'e' && b != b'E')
    {
        return None;
    }
    number.parse().ok()
}

/// Java's `Double.toString`: `0.5`, `2.0`, `1.0E-5`, `1.5E10`.
fn java_double(v: f64) -> String {
    if v.is_nan() {
        return "NaN".to_owned();
    }
    if v.is_infinite() {
        return if v > 0.0 { "Infinity" } else { "-Infinity" }.to_owned();
    }
    if v == 0.0 || (1e-3..1e7).contains(&v.abs()) {
        let s = format!("{v:?}");
        return if s.contains('.') { s } else { format!("{s}.0") };
    }
    let s = format!("{v:E}");
    let (mantissa, exponent) = s.split_once('E').expect("{:E} always prints an exponent");
    if mantissa.contains('.') {
        format!("{mantissa}E{exponent}")
    } else {
        format!("{mantissa}.0E{exponent}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_print_like_java() {
        let cases = [
            (0.5, "0.5"),
            (2.0, "2.0"),
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1e-5, "1.0E-5"),
            (1.5e10, "1.5E10"),
            (1234567.0, "1234567.0"),
        ];
        for (v, want) in cases {
            assert_eq!(java_double(v), want, "{v}");
        }
    }

    #[test]
    fn doubles_parse_like_java() {
        assert_eq!(parse_java_double("0.5"), Some(0.5));
        assert_eq!(parse_java_double("1e-1"), Some(0.1));
        assert_eq!(parse_java_double("1d"), Some(1.0));
        assert_eq!(parse_java_double("inf"), None);
        assert_eq!(parse_java_double("abc"), None);
        assert!(parse_java_double("NaN").is_some_and(f64::is_nan));
    }

    #[test]
    fn comma_split_matches_java() {
        assert_eq!(super::super::java_split_comma(""), vec![""]);
        assert_eq!(super::super::java_split_comma(","), Vec::<&str>::new());
        assert_eq!(super::super::java_split_comma("a,,b,"), vec!["a", "", "b"]);
    }
}
