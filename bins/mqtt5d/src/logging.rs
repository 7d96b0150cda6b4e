//! Logging: `tracing` events written to stderr as text or JSON lines.
//!
//! The filter is `[log] level` (or `--log-level`) unless the `RUST_LOG` environment variable is
//! set and not empty, in which case `RUST_LOG` wins, as usual for Rust programs. Passwords and
//! password hashes are never logged: nothing in this binary puts them in an event.

use std::io::IsTerminal;
use std::str::FromStr;

use serde::Deserialize;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LogSettings {
    /// A `tracing` filter: a level (`info`) or directives (`info,mqtt5d=debug`). `RUST_LOG`,
    /// when set, wins. Default `info`.
    pub(crate) level: String,
    /// Text or JSON lines, on stderr.
    pub(crate) format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum LogFormat {
    /// Human-readable lines (the default)
    #[default]
    Text,
    /// One JSON object per line
    Json,
}

/// The environment variable that overrides the configured level.
const ENV_VAR: &str = "RUST_LOG";

/// The WebSocket library logs every frame at `trace`, payloads (and so passwords) included.
/// Its events below `debug` are left out unless the filter names its target.
const WEBSOCKET_TARGET: &str = "tungstenite";

/// Whether the WebSocket library's `trace` events are left out: unless the filter in force
/// names its target.
fn quiet_websocket(settings: &LogSettings, rust_log: Option<&str>) -> bool {
    let directives = rust_log
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .unwrap_or(&settings.level);
    !directives.contains(WEBSOCKET_TARGET)
}

/// Logging could not be set up.
#[derive(Debug, thiserror::Error)]
pub(crate) enum LoggingError {
    /// `RUST_LOG` is not a valid filter.
    #[error("invalid {ENV_VAR} {value:?}: {reason}")]
    InvalidEnv {
        /// The variable's value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The configured level is not a valid filter (the loader checks it first, so this
    /// should not happen).
    #[error("invalid log level {level:?}: {reason}")]
    InvalidLevel {
        /// The configured level.
        level: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A global subscriber was already installed.
    #[error("cannot install the logger: {0}")]
    Install(String),
}

/// Checks a configured level: a comma-separated list of `tracing` directives, where a
/// directive without `=` must be a level name (so that a misspelt level such as `infp` is an
/// error rather than a filter for a target called `infp`).
///
/// # Errors
///
/// What is wrong, in words.
pub(crate) fn check_level(level: &str) -> Result<(), String> {
    if level.trim().is_empty() {
        return Err("empty; expected a level such as \"info\"".to_owned());
    }
    for directive in level.split(',').map(str::trim) {
        if !directive.contains(['=', '[']) && LevelFilter::from_str(directive).is_err() {
            return Err(format!(
                "`{directive}` is not a level (trace, debug, info, warn, error or off) nor a \
                 `target=level` directive"
            ));
        }
    }
    EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| e.to_string())
}

/// The filter for these settings, given the value of `RUST_LOG` (`None` when unset).
///
/// # Errors
///
/// [`LoggingError::InvalidEnv`] or [`LoggingError::InvalidLevel`].
pub(crate) fn filter(
    settings: &LogSettings,
    rust_log: Option<&str>,
) -> Result<EnvFilter, LoggingError> {
    match rust_log.map(str::trim).filter(|v| !v.is_empty()) {
        Some(value) => EnvFilter::try_new(value).map_err(|e| LoggingError::InvalidEnv {
            value: value.to_owned(),
            reason: e.to_string(),
        }),
        None => {
            check_level(&settings.level).map_err(|reason| LoggingError::InvalidLevel {
                level: settings.level.clone(),
                reason,
            })?;
            EnvFilter::try_new(&settings.level).map_err(|e| LoggingError::InvalidLevel {
                level: settings.level.clone(),
                reason: e.to_string(),
            })
        }
    }
}

/// Installs the global subscriber: events at or above the filter, to stderr, as text (with
/// colours when stderr is a terminal) or as one JSON object a line.
///
/// # Errors
///
/// An invalid filter, or a subscriber already installed.
pub(crate) fn init(settings: &LogSettings) -> Result<(), LoggingError> {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let rust_log = std::env::var(ENV_VAR).ok();
    let filter = filter(settings, rust_log.as_deref())?;
    let quiet = quiet_websocket(settings, rust_log.as_deref());
    let frames = tracing_subscriber::filter::filter_fn(move |meta| {
        !(quiet
            && *meta.level() == tracing::Level::TRACE
            && meta.target().starts_with(WEBSOCKET_TARGET))
    });
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let registry = tracing_subscriber::registry();
    let result = match settings.format {
        LogFormat::Text => registry
            .with(
                layer
                    .with_ansi(std::io::stderr().is_terminal())
                    .with_filter(filter)
                    .with_filter(frames),
            )
            .try_init(),
        LogFormat::Json => registry
            .with(
                layer
                    .json()
                    .with_ansi(false)
                    .with_filter(filter)
                    .with_filter(frames),
            )
            .try_init(),
    };
    result.map_err(|e| LoggingError::Install(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(level: &str) -> LogSettings {
        LogSettings {
            level: level.to_owned(),
            format: LogFormat::Text,
        }
    }

    #[test]
    fn levels_and_directives_are_accepted() {
        for level in [
            "info",
            "TRACE",
            "off",
            "warn,mqtt5d=debug",
            "mqtt5_broker=trace",
        ] {
            assert_eq!(check_level(level), Ok(()), "{level}");
        }
    }

    #[test]
    fn misspelt_levels_are_rejected() {
        for level in ["", "  ", "infp", "info,verbose", "mqtt5d=loud"] {
            assert!(check_level(level).is_err(), "{level}");
        }
    }

    #[test]
    fn rust_log_wins_over_the_configured_level() {
        let filter = filter(&settings("info"), Some("debug")).unwrap();
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::DEBUG));
        let filter = filter_for("warn", None);
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::WARN));
        // An empty RUST_LOG counts as unset.
        let filter = filter_for("error", Some(""));
        assert_eq!(filter.max_level_hint(), Some(LevelFilter::ERROR));
    }

    fn filter_for(level: &str, rust_log: Option<&str>) -> EnvFilter {
        filter(&settings(level), rust_log).unwrap()
    }

    #[test]
    fn websocket_frames_stay_out_of_trace_logs_unless_asked_for() {
        assert!(quiet_websocket(&settings("trace"), None));
        assert!(quiet_websocket(&settings("info"), Some("trace")));
        assert!(!quiet_websocket(&settings("trace,tungstenite=trace"), None));
        assert!(!quiet_websocket(
            &settings("info"),
            Some("tungstenite=trace")
        ));
    }

    #[test]
    fn invalid_rust_log_is_an_error() {
        let err = filter(&settings("info"), Some("mqtt5d=loud")).unwrap_err();
        assert!(matches!(err, LoggingError::InvalidEnv { .. }), "{err}");
        assert!(err.to_string().contains("RUST_LOG"));
    }
}
