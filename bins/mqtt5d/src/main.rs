//! `mqtt5d`, the mqtt5 broker binary: the driver around the sans-IO core `mqtt5-broker` and
//! the store `mqtt5-store`.
//!
//! - [`cli`]: the command line;
//! - [`settings`]: the configuration file and the settings it gives;
//! - [`logging`]: `tracing` to stderr, as text or JSON;
//! - [`admin`]: the `user` and `acl` commands on the database;
//! - [`server`]: the event loop;
//! - [`auth_watch`]: users and access rules from the database, reloaded while the broker runs;
//! - [`perms`]: a private data directory, and warnings about files others can read.
//! - [`tls`]: TLS listeners (rustls) and their certificate files;
//! - [`websocket`]: WebSocket listeners, over in-memory pipes the event loop owns;
//! - [`metrics`]: the Prometheus text endpoint.
//!
//! Exit status: 0 on success, 1 for an invalid configuration, a failed command or a server
//! error (with a message on stderr), 2 for a command line clap rejects.

mod admin;
mod auth_watch;
mod backlog;
mod cli;
mod logging;
mod logs;
mod metrics;
mod passwords;
mod perms;
mod server;
mod settings;
mod tls;
mod websocket;

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use mqtt5_broker::PasswordParams;

use crate::admin::AdminError;
use crate::cli::{AclCommand, Cli, Command, UserCommand};
use crate::settings::{ConfigError, Durability, Overrides, Settings};

/// How long `user` and `acl` wait for the running broker to apply a change.
const BROKER_WAIT: Duration = Duration::from_secs(5);

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
enum Failure {
    /// The configuration.
    #[error("{0}")]
    Config(#[from] ConfigError),
    /// Logging could not be set up.
    #[error(transparent)]
    Logging(#[from] logging::LoggingError),
    /// A `user` or `acl` command.
    #[error(transparent)]
    Admin(#[from] AdminError),
    /// The server.
    #[error(transparent)]
    Server(#[from] server::ServerError),
}

fn main() -> ExitCode {
    let cli = Cli::parse_checked();
    match dispatch(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Config(ConfigError::Invalid(problems))) => {
            eprintln!("mqtt5d: invalid configuration:");
            for problem in problems {
                eprintln!("  {problem}");
            }
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("mqtt5d: {e}");
            ExitCode::FAILURE
        }
    }
}

fn dispatch(cli: &Cli) -> Result<(), Failure> {
    let config = cli.common.config.as_deref();
    match &cli.command {
        None => run(config, &cli.run_overrides()),
        Some(Command::CheckConfig { file }) => {
            check_config(file);
            Ok(())
        }
        Some(Command::User(command)) => {
            let settings = Settings::load(config, &cli.admin_overrides())?;
            user(&settings, command)
        }
        Some(Command::Acl(command)) => {
            let settings = Settings::load(config, &cli.admin_overrides())?;
            acl(&settings, command)
        }
    }
}

/// Runs the broker.
fn run(config: Option<&Path>, overrides: &Overrides) -> Result<(), Failure> {
    let settings = Settings::load(config, overrides)?;
    logging::init(&settings.log)?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        config = %config.map_or_else(|| "(none: defaults)".to_owned(), |p| p.display().to_string()),
        "mqtt5d starting"
    );
    for listener in &settings.listeners {
        tracing::debug!(
            bind = %listener.bind,
            protocol = %listener.protocol,
            tls = listener.tls.is_some(),
            anonymous = settings.allows_anonymous(listener),
            "listener configured"
        );
    }
    let durability = match settings.storage.durability {
        Durability::Sync => "sync".to_owned(),
        Durability::Periodic(period) => format!("periodic ({} ms)", period.as_millis()),
        Durability::Memory => "memory".to_owned(),
    };
    tracing::info!(
        data_dir = %settings.storage.data_dir.display(),
        %durability,
        max_connections = settings.max_connections,
        metrics = %settings
            .metrics
            .map_or_else(|| "off".to_owned(), |addr| addr.to_string()),
        "storage and limits"
    );
    server::run(settings)?;
    Ok(())
}

/// `mqtt5d check-config FILE`: "FILE: ok" on stdout and status 0, or each problem on stderr
/// and status 1 (the process exits here).
fn check_config(file: &Path) {
    match Settings::load(Some(file), &Overrides::default()) {
        Ok(_) => println!("{}: ok", file.display()),
        Err(ConfigError::Invalid(problems)) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            let count = problems.len();
            eprintln!(
                "{}: {count} error{}",
                file.display(),
                if count == 1 { "" } else { "s" }
            );
            std::process::exit(1);
        }
        Err(e) => {
            eprintln!("mqtt5d: {e}");
            std::process::exit(1);
        }
    }
}

/// `mqtt5d user …`.
fn user(settings: &Settings, command: &UserCommand) -> Result<(), Failure> {
    match command {
        UserCommand::Add {
            name,
            password_stdin,
        } => {
            admin::check_username(name)?;
            let password = if *password_stdin {
                admin::read_password_line(std::io::stdin().lock())?
            } else {
                admin::prompt_password(name)?
            };
            let salt = admin::random_salt()?;
            // SCRAM-SHA-256 credentials only where the broker offers SCRAM, from a salt of
            // their own.
            let scram = if settings.auth.scram_sha_256 {
                Some(admin::ScramParams {
                    salt: admin::random_salt()?,
                    iterations: settings.auth.scram_iterations,
                })
            } else {
                None
            };
            let mut store = admin::open_database(settings, true)?;
            let added = admin::user_add(
                &mut store,
                name,
                password.as_bytes(),
                &salt,
                PasswordParams::DEFAULT,
                scram,
            )?;
            match added {
                admin::UserAdded::Created => println!("user {name} added"),
                admin::UserAdded::Replaced => println!("user {name}: password changed"),
            }
            report_broker(&store)?;
        }
        UserCommand::Remove { name } => {
            let Some(mut store) = open_existing(settings)? else {
                return Err(AdminError::NoSuchUser(name.clone()).into());
            };
            admin::user_remove(&mut store, name)?;
            println!("user {name} removed");
            report_broker(&store)?;
        }
        UserCommand::List => {
            if let Some(mut store) = open_existing(settings)? {
                for name in admin::user_list(&mut store)? {
                    println!("{name}");
                }
            }
        }
    }
    Ok(())
}

/// `mqtt5d acl …`.
fn acl(settings: &Settings, command: &AclCommand) -> Result<(), Failure> {
    match command {
        AclCommand::Add(args) => {
            let rule = admin::parse_rule(&args.scope, &args.access, &args.topic)?;
            let mut store = admin::open_database(settings, true)?;
            if admin::acl_add(&mut store, &rule)? {
                println!("rule added");
                report_broker(&store)?;
            } else {
                println!("rule already present");
            }
            if !settings.auth.use_database_acl {
                eprintln!(
                    "note: [auth] use_database_acl is false: the broker does not apply the \
                     database's rules until it is set to true"
                );
            }
        }
        AclCommand::Remove(args) => {
            let rule = admin::parse_rule(&args.scope, &args.access, &args.topic)?;
            let Some(mut store) = open_existing(settings)? else {
                return Err(AdminError::NoSuchRule(admin::RuleDisplay(rule)).into());
            };
            admin::acl_remove(&mut store, &rule)?;
            println!("rule removed");
            report_broker(&store)?;
        }
        AclCommand::List => {
            if let Some(mut store) = open_existing(settings)? {
                print!("{}", admin::format_acl(&admin::acl_rules(&mut store)?));
            }
        }
    }
    Ok(())
}

/// Opens the database if it exists: listing or removing creates nothing.
fn open_existing(settings: &Settings) -> Result<Option<mqtt5_store::SqliteStore>, AdminError> {
    if !settings.storage.database_path().exists() {
        return Ok(None);
    }
    admin::open_database(settings, false).map(Some)
}

/// Says whether the broker running on the database applied the change just made: waits up
/// to [`BROKER_WAIT`] for it.
fn report_broker(store: &mqtt5_store::SqliteStore) -> Result<(), AdminError> {
    let version = store.auth_version()?;
    println!("{}", admin::running_broker(store, version, BROKER_WAIT)?);
    Ok(())
}
