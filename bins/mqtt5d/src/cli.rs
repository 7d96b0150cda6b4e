//! The command line (clap, derive).
//!
//! ```text
//! mqtt5d [OPTIONS]                          run the broker
//! mqtt5d check-config FILE                  check a configuration file
//! mqtt5d user add NAME [--password-stdin]   add a user, or change its password
//! mqtt5d user remove NAME
//! mqtt5d user list
//! mqtt5d acl add SCOPE ACCESS TOPIC         SCOPE: anonymous | user:NAME | pattern
//! mqtt5d acl remove SCOPE ACCESS TOPIC      ACCESS: read | write | readwrite | deny
//! mqtt5d acl list
//! ```
//!
//! `--config` and `--data-dir` apply to every command; the other options only to running the
//! broker, where they override the file.

use std::net::SocketAddr;
use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::error::ErrorKind;
use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::logging::LogFormat;
use crate::settings::{DurabilityKind, Overrides};

/// The mqtt5 MQTT broker (MQTT 5.0, 3.1.1 and 3.1).
#[derive(Debug, Parser)]
#[command(
    name = "mqtt5d",
    version,
    after_help = "With no configuration file, mqtt5d listens on 127.0.0.1:1883 (plain MQTT), \
                  lets anonymous clients in on that loopback listener, and keeps its database \
                  in ./mqtt5-data. See mqtt5d.example.toml for every setting."
)]
pub(crate) struct Cli {
    /// Options for every command.
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    /// Options for running the broker.
    #[command(flatten)]
    pub(crate) run: RunArgs,
    /// What to do; without one, run the broker.
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
}

/// Options that every command takes.
#[derive(Debug, Args)]
pub(crate) struct CommonArgs {
    /// The configuration file (TOML); without one, the built-in defaults
    #[arg(long, short = 'c', value_name = "FILE", global = true)]
    pub(crate) config: Option<PathBuf>,
    /// The data directory, overriding `[storage] data_dir`.
    #[arg(
        long,
        value_name = "DIR",
        global = true,
        help = "The data directory, overriding [storage] data_dir"
    )]
    pub(crate) data_dir: Option<PathBuf>,
}

/// Options of the run command; each overrides the file.
#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    /// Listen for plain MQTT on this address (repeatable); replaces the file's listeners
    #[arg(long, value_name = "ADDR:PORT")]
    pub(crate) listen: Vec<SocketAddr>,
    /// When persisted state counts as durable
    #[arg(long, value_enum, value_name = "MODE")]
    pub(crate) durability: Option<DurabilityKind>,
    /// The log filter: a level (trace, debug, info, warn, error, off) or directives;
    /// RUST_LOG wins over it
    #[arg(long, value_name = "LEVEL")]
    pub(crate) log_level: Option<String>,
    /// How log lines are written to stderr
    #[arg(long, value_enum, value_name = "FORMAT")]
    pub(crate) log_format: Option<LogFormat>,
    /// The most client connections at once, over all listeners
    #[arg(long, value_name = "N")]
    pub(crate) max_connections: Option<NonZeroUsize>,
    /// Whether clients without a user name may connect, on every listener
    #[arg(long, value_name = "true|false")]
    pub(crate) allow_anonymous: Option<bool>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check a configuration file: print "FILE: ok", or each error with its line and column
    CheckConfig {
        /// The file to check
        file: PathBuf,
    },
    /// Manage the users of the database (password authentication)
    #[command(subcommand)]
    User(UserCommand),
    /// Manage the access rules of the database.
    #[command(
        subcommand,
        about = "Manage the access rules of the database (used with [auth] use_database_acl = true)"
    )]
    Acl(AclCommand),
}

/// `mqtt5d user …`.
#[derive(Debug, Subcommand)]
pub(crate) enum UserCommand {
    /// Add a user, or set a new password for an existing one
    Add {
        /// The user name
        name: String,
        /// Read the password from the first line of standard input instead of prompting on
        /// the terminal
        #[arg(long)]
        password_stdin: bool,
    },
    /// Remove a user
    Remove {
        /// The user name
        name: String,
    },
    /// List the user names
    List,
}

/// `mqtt5d acl …`.
#[derive(Debug, Subcommand)]
pub(crate) enum AclCommand {
    /// Add an access rule
    Add(RuleArgs),
    /// Remove an access rule
    Remove(RuleArgs),
    /// List the rules, in Mosquitto's acl_file syntax
    List,
}

/// An access rule on the command line.
#[derive(Debug, Args)]
pub(crate) struct RuleArgs {
    /// Whom the rule applies to: anonymous, user:NAME or pattern (every client; %c and %u
    /// levels stand for its client id and user name)
    pub(crate) scope: String,
    /// read, write, readwrite or deny
    pub(crate) access: String,
    /// The topic filter (+ and # wildcards)
    pub(crate) topic: String,
}

impl Cli {
    /// Parses the command line, exiting with clap's message and status 2 if it is invalid.
    pub(crate) fn parse_checked() -> Self {
        let cli = Self::parse();
        if let Err(e) = cli.check() {
            e.exit();
        }
        cli
    }

    /// Parses arguments (the first is the program name) and checks them.
    ///
    /// # Errors
    ///
    /// clap's error: status 2, or 0 for `--help` and `--version`.
    #[cfg(test)]
    pub(crate) fn try_parse_checked<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let cli = Self::try_parse_from(args)?;
        cli.check()?;
        Ok(cli)
    }

    /// Refuses run options given with a subcommand, which would ignore them.
    fn check(&self) -> Result<(), clap::Error> {
        let RunArgs {
            listen,
            durability,
            log_level,
            log_format,
            max_connections,
            allow_anonymous,
        } = &self.run;
        let given = [
            ("--listen", !listen.is_empty()),
            ("--durability", durability.is_some()),
            ("--log-level", log_level.is_some()),
            ("--log-format", log_format.is_some()),
            ("--max-connections", max_connections.is_some()),
            ("--allow-anonymous", allow_anonymous.is_some()),
        ];
        match (&self.command, given.iter().find(|(_, given)| *given)) {
            (Some(_), Some((option, _))) => Err(Self::command().error(
                ErrorKind::ArgumentConflict,
                format!(
                    "{option} is an option for running the broker; a subcommand takes only \
                     --config and --data-dir"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The overrides of the configuration file for running the broker: every run option
    /// and `--data-dir`.
    pub(crate) fn run_overrides(&self) -> Overrides {
        Overrides {
            listen: self.run.listen.clone(),
            data_dir: self.common.data_dir.clone(),
            durability: self.run.durability,
            log_level: self.run.log_level.clone(),
            log_format: self.run.log_format,
            max_connections: self.run.max_connections.map(NonZeroUsize::get),
            allow_anonymous: self.run.allow_anonymous,
        }
    }

    /// The overrides for the `user` and `acl` commands: `--data-dir` only.
    pub(crate) fn admin_overrides(&self) -> Overrides {
        Overrides {
            data_dir: self.common.data_dir.clone(),
            ..Overrides::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;
    use std::path::Path;

    use clap::error::ErrorKind;

    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_checked(std::iter::once("mqtt5d").chain(args.iter().copied()))
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn no_arguments_runs_with_defaults() {
        let cli = parse(&[]).unwrap();
        assert!(cli.command.is_none());
        assert!(cli.common.config.is_none());
        let overrides = cli.run_overrides();
        assert!(overrides.listen.is_empty());
        assert_eq!(overrides.data_dir, None);
        assert_eq!(overrides.durability, None);
        assert_eq!(overrides.allow_anonymous, None);
    }

    #[test]
    fn run_options_become_overrides() {
        let cli = parse(&[
            "--config",
            "/etc/mqtt5d.toml",
            "--listen",
            "0.0.0.0:1883",
            "--listen",
            "[::]:1884",
            "--data-dir",
            "/var/lib/mqtt5",
            "--durability",
            "periodic",
            "--log-level",
            "debug",
            "--log-format",
            "json",
            "--max-connections",
            "50",
            "--allow-anonymous",
            "false",
        ])
        .unwrap();
        assert_eq!(cli.common.config, Some(PathBuf::from("/etc/mqtt5d.toml")));
        let o = cli.run_overrides();
        assert_eq!(
            o.listen,
            [
                "0.0.0.0:1883".parse::<SocketAddr>().unwrap(),
                "[::]:1884".parse().unwrap()
            ]
        );
        assert_eq!(o.data_dir, Some(PathBuf::from("/var/lib/mqtt5")));
        assert_eq!(o.durability, Some(DurabilityKind::Periodic));
        assert_eq!(o.log_level.as_deref(), Some("debug"));
        assert_eq!(o.log_format, Some(LogFormat::Json));
        assert_eq!(o.max_connections, Some(50));
        assert_eq!(o.allow_anonymous, Some(false));
    }

    #[test]
    fn bad_values_are_usage_errors() {
        for args in [
            &["--durability", "eventually"][..],
            &["--listen", "localhost"],
            &["--max-connections", "0"],
            &["--allow-anonymous", "yes"],
            &["--log-format", "xml"],
            &["--frobnicate"],
        ] {
            let err = parse(args).unwrap_err();
            assert_eq!(err.exit_code(), 2, "{args:?}");
        }
    }

    #[test]
    fn config_and_data_dir_apply_to_subcommands() {
        let cli = parse(&["user", "list", "--config", "f.toml", "--data-dir", "d"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::User(UserCommand::List))
        ));
        assert_eq!(cli.common.config, Some(PathBuf::from("f.toml")));
        assert_eq!(cli.admin_overrides().data_dir, Some(PathBuf::from("d")));

        let cli = parse(&["-c", "f.toml", "acl", "list"]).unwrap();
        assert_eq!(cli.common.config, Some(PathBuf::from("f.toml")));
    }

    #[test]
    fn run_options_do_not_go_with_subcommands() {
        let err = parse(&["--listen", "127.0.0.1:1", "user", "list"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("--listen"), "{err}");
        let err = parse(&["--durability", "memory", "check-config", "f.toml"]).unwrap_err();
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn subcommands_parse() {
        let cli = parse(&["check-config", "x.toml"]).unwrap();
        assert!(
            matches!(cli.command, Some(Command::CheckConfig { file }) if file == Path::new("x.toml"))
        );
        let cli = parse(&["user", "add", "alice", "--password-stdin"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::User(UserCommand::Add { name, password_stdin: true })) if name == "alice"
        ));
        let cli = parse(&["user", "remove", "alice"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::User(UserCommand::Remove { .. }))
        ));
        let cli = parse(&["acl", "add", "user:alice", "readwrite", "alice/#"]).unwrap();
        let Some(Command::Acl(AclCommand::Add(rule))) = cli.command else {
            panic!("expected acl add");
        };
        assert_eq!(
            (
                rule.scope.as_str(),
                rule.access.as_str(),
                rule.topic.as_str()
            ),
            ("user:alice", "readwrite", "alice/#")
        );
        let cli = parse(&["acl", "remove", "pattern", "read", "a/%c"]).unwrap();
        assert!(matches!(
            cli.command,
            Some(Command::Acl(AclCommand::Remove(_)))
        ));
        assert!(parse(&["acl", "add", "pattern", "read"]).is_err());
        assert!(parse(&["check-config"]).is_err());
    }

    #[test]
    fn version_is_printed_by_clap() {
        let err = parse(&["--version"]).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DisplayVersion);
        assert_eq!(err.exit_code(), 0);
        assert_eq!(
            err.to_string().trim(),
            concat!("mqtt5d ", env!("CARGO_PKG_VERSION"))
        );
    }
}
