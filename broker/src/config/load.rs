//! Loading settings, as a start and `--check-config` both do: figment
//! merges built-in defaults → `lightstream.toml` (or `--config FILE`) →
//! `LIGHTSTREAM_*` environment variables → command-line flags, then
//! `Settings::validate` checks the result.
//!
//! Errors name the setting as the user wrote it (`num_partitions`, or
//! `LIGHTSTREAM_NUM_PARTITIONS`), never figment's `default.num_partitions`,
//! and an unknown name comes with the closest real one.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches};
use figment::providers::{Env, Format, Serialized, Toml};
use figment::{Figment, Provider};
use serde::Serialize;

use super::Settings;

/// Command-line flags; each overrides the setting of the same name.
#[derive(Debug, Default, clap::Parser, Serialize)]
#[command(
    name = "lightstream",
    version,
    about = "A Kafka-compatible broker whose log lives in object storage",
    after_help = "Every setting (docs/configuration.md) can also be set in the TOML file or as \
                  LIGHTSTREAM_<NAME>; flags win over variables, variables over the file."
)]
pub struct Flags {
    /// A TOML settings file [default: ./lightstream.toml when present].
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    pub config: Option<PathBuf>,
    /// Load the settings as a start would, print the effective ones (secrets
    /// masked) and exit: 0 when they are valid, 1 with the error otherwise.
    #[arg(long)]
    #[serde(skip)]
    pub check_config: bool,
    /// This broker's id (Kafka `node.id`); unique in the cluster.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node_id: Option<i32>,
    /// Address the Kafka listener binds, host:port.
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<String>,
    /// Address of the admin HTTP listener (/metrics, /healthz, /readyz).
    #[arg(long, value_name = "HOST:PORT")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub admin_listen: Option<String>,
    /// Host clients are told to connect to [default: the listen host, or
    /// localhost when listening on all interfaces].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_host: Option<String>,
    /// Port clients are told to connect to [default: the bound port].
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub advertised_port: Option<u16>,
    /// Directory for objects and the embedded metadata file.
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Where the log's objects live: empty for DATA_DIR/objects, or s3://bucket/prefix.
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_url: Option<String>,
    /// Where metadata lives: empty for the embedded file, or scylla://hosts/keyspace.
    #[arg(long, value_name = "URL")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metadata_url: Option<String>,
    /// Create unknown topics when a client asks for them (Kafka `auto.create.topics.enable`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_create_topics: Option<bool>,
    /// Partitions of auto-created topics (Kafka `num.partitions`).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub num_partitions: Option<i32>,
    /// Longest a produced batch waits before its flush starts.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flush_interval_ms: Option<u64>,
    /// Log filter (info, debug, broker=debug,info).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log: Option<String>,
    /// Log format: plain or json.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<String>,
}

impl Flags {
    /// Parses the command line; `--help` shows each flag's default, read
    /// off `Settings::default()` so the two cannot disagree. Exits on
    /// `--help`, `--version` and bad flags, as clap does.
    pub fn parse_args() -> Flags {
        Self::parse_from_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
    }

    pub fn parse_from_args<I, T>(args: I) -> Result<Flags, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        Flags::from_arg_matches(&Self::command_with_defaults().try_get_matches_from(args)?)
    }

    /// The clap command, each setting's flag with `[default: …]` in its help.
    pub fn command_with_defaults() -> clap::Command {
        let defaults = default_values();
        let mut command = Flags::command();
        let ids: Vec<String> = command
            .get_arguments()
            .map(|a| a.get_id().to_string())
            .collect();
        for id in ids {
            if let Some(default) = defaults.get(&id).filter(|d| !d.is_empty()) {
                command = command.mut_arg(&id, |arg| {
                    let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
                    arg.help(format!("{help} [default: {default}]"))
                });
            }
        }
        command
    }
}

/// Settings as loaded, with what the user should know about how.
#[derive(Debug)]
pub struct Loaded {
    pub settings: Settings,
    /// The settings file read, if any.
    pub file: Option<PathBuf>,
    /// Things worth a warning: environment variables that name no setting.
    pub warnings: Vec<String>,
}

/// Why settings could not be loaded. Each is one line naming the setting.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("settings: {0}")]
    Load(String),
    #[error("invalid setting {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Variables our own tools read (test harnesses, benchmarks); not settings,
/// and not worth a warning.
const TOOL_VARIABLES: &[&str] = &[
    "LIGHTSTREAM_BIN",
    "LIGHTSTREAM_REQUIRE_TEST_TOOLS",
    "LIGHTSTREAM_PIN_STATEMENTS",
];

impl Settings {
    /// Loads settings from every source, in order of precedence, and
    /// validates them.
    pub fn load(flags: &Flags) -> Result<Loaded, SettingsError> {
        let file = flags
            .config
            .clone()
            .unwrap_or_else(|| PathBuf::from("lightstream.toml"));
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        let file = (flags.config.is_some() || file.exists()).then_some(file);
        if let Some(file) = &file {
            figment = figment.merge(Toml::file_exact(file));
        }
        let known = setting_names();
        let warnings = unknown_variables(std::env::vars().map(|(k, _)| k), &known);
        // Only variables naming a setting: the rest were warned about above.
        let env = Env::prefixed("LIGHTSTREAM_")
            .filter(move |key| known.iter().any(|k| key.as_str().eq_ignore_ascii_case(k)))
            .split("__");
        let settings: Settings = figment
            .merge(env)
            .merge(Serialized::defaults(flags))
            .extract()
            .map_err(|e| SettingsError::Load(describe(e)))?;
        settings.validate()?;
        let file = file.map(|f| std::path::absolute(&f).unwrap_or(f));
        Ok(Loaded {
            settings,
            file,
            warnings,
        })
    }

    /// The settings as TOML, secrets masked: what `--check-config` prints.
    pub fn masked_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [
            &mut shown.s3_secret_access_key,
            &mut shown.metadata_password,
        ] {
            if !secret.is_empty() {
                *secret = MASK.to_string();
            }
        }
        shown.metadata_url = mask_url_password(&shown.metadata_url);
        toml::to_string(&shown).unwrap_or_else(|e| format!("# cannot print settings: {e}\n"))
    }
}

const MASK: &str = "****";

/// `scylla://user:secret@hosts/ks` → `scylla://user:****@hosts/ks`.
fn mask_url_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rsplit_once('@') {
        Some((credentials, _)) if credentials.contains(':') => {
            let user = credentials.split_once(':').map_or("", |(u, _)| u);
            format!(
                "{scheme}://{user}:{MASK}@{}",
                &rest[credentials.len() + 1..]
            )
        }
        _ => url.to_string(),
    }
}

/// The names of every setting, read off the defaults.
pub fn setting_names() -> Vec<String> {
    default_values().into_keys().collect()
}

/// Every setting's default as `--help` shows it (settings whose default is
/// derived at start, such as `advertised_host`, have none).
fn default_values() -> BTreeMap<String, String> {
    Figment::from(Serialized::defaults(Settings::default()))
        .data()
        .ok()
        .and_then(|profiles| profiles.into_values().next())
        .map(|dict| {
            dict.into_iter()
                .map(|(name, value)| {
                    let shown = match value.as_str() {
                        Some("") => "\"\"".to_string(),
                        Some(s) => s.to_string(),
                        // `None` (derived at start) has no TOML form.
                        None => toml::Value::try_from(&value)
                            .map(|v| v.to_string())
                            .unwrap_or_default(),
                    };
                    (name, shown)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A warning for each `LIGHTSTREAM_*` variable that names no setting, with
/// the closest one: a misspelt variable is otherwise silently ignored,
/// while a misspelt file key is fatal.
fn unknown_variables(variables: impl Iterator<Item = String>, known: &[String]) -> Vec<String> {
    let mut warnings = Vec::new();
    for variable in variables {
        let Some(name) = variable.strip_prefix("LIGHTSTREAM_") else {
            continue;
        };
        let name = name.to_ascii_lowercase();
        if known.contains(&name)
            || TOOL_VARIABLES.contains(&variable.as_str())
            || variable.starts_with("LIGHTSTREAM_TEST_")
        {
            continue;
        }
        let hint = match closest(&name, known) {
            Some(near) => format!(
                "; did you mean LIGHTSTREAM_{} (setting {near})?",
                near.to_ascii_uppercase()
            ),
            None => " (docs/configuration.md lists the settings)".to_string(),
        };
        warnings.push(format!(
            "environment variable {variable} names no setting and is ignored{hint}"
        ));
    }
    warnings
}

/// The setting nearest `name` by edit distance, if near enough to be a typo.
fn closest<'a>(name: &str, known: &'a [String]) -> Option<&'a str> {
    known
        .iter()
        .map(|k| (strsim::levenshtein(name, k), k))
        .filter(|(distance, k)| *distance <= 3.max(k.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, k)| k.as_str())
}

/// figment's error as one line per problem, each naming the setting as
/// its source spells it.
fn describe(error: figment::Error) -> String {
    let known = setting_names();
    let problems: Vec<String> = error
        .into_iter()
        .map(|e| {
            let origin = match &e.metadata {
                Some(m) => match &m.source {
                    Some(source) => format!(" (in {} {source})", m.name),
                    None => format!(" (from {})", m.name),
                },
                None => String::new(),
            };
            let from_env = e
                .metadata
                .as_ref()
                .is_some_and(|m| m.name.contains("environment"));
            let name = if from_env {
                format!("LIGHTSTREAM_{}", e.path.join("__").to_ascii_uppercase())
            } else {
                e.path.join(".")
            };
            match &e.kind {
                figment::error::Kind::UnknownField(field, _) => {
                    let hint = closest(field, &known)
                        .map(|k| format!("; did you mean {k}?"))
                        .unwrap_or_default();
                    format!("{field} is not a setting{origin}{hint}")
                }
                kind => format!("{name}{origin}: {kind}"),
            }
        })
        .collect();
    problems.join("\n")
}
