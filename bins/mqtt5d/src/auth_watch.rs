//! Users, access rules and SCRAM credentials from the database, kept current while the broker
//! runs.
//!
//! ```text
//!   mqtt5d user/acl (another process)          watcher thread                 event loop
//!   writes users / acl ──► triggers bump  ◄── polls auth_version (1 s)
//!                          auth_version        changed: reads auth_state,
//!                                              builds AuthServices ─────────► Broker::set_*
//!   waits for meta     ◄── meta auth_applied ◄── records it ◄──────── applied(version)
//!   auth_applied >= its version
//! ```
//!
//! At start the broker reads the users and rules once ([`AuthSource`]), builds the core's
//! authenticator, authorizer and SCRAM-SHA-256 method from them ([`AuthServices`]), and records
//! its process id and the version it applied in the database's `meta` table. The watcher
//! ([`AuthWatch`]) then owns a reader of the database on its own thread: when the version
//! changed it loads the new state, builds new services, hands them to the event loop over a
//! bounded channel and wakes it; the loop applies them ([`AuthWatch::apply_pending`]) and
//! says which version it applied, which the watcher records as `auth_applied` for `mqtt5d
//! user` and `mqtt5d acl` to report. When the broker stops, the watcher removes its process
//! id.
//!
//! Authentication fails closed: without users, every client that presents a user name is
//! refused (unless its listener ignores credentials), whether the broker started without users
//! or its last user was removed while it ran. The users go to the password checkers
//! (`passwords.rs`), which verify passwords off the event loop.

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use mqtt5_broker::{
    AllowAll, Authorizer, Broker, Credentials, EnhancedAuthenticator, Passwords, ScramSha256,
};
use mqtt5_store::{AuthState, SqliteOptions, SqliteReader, SqliteStore};
use tracing::{debug, error, info, warn};

use crate::admin::{AUTH_APPLIED, AdminError, BROKER_PID};
use crate::passwords::PasswordCheckers;
use crate::settings::Settings;

/// The name of the secret that keys SCRAM's fake salts for unknown users.
pub(crate) const SCRAM_FAKE_SALT: &str = "scram_fake_salt";

/// How often the watcher looks at the database's version of the users and rules.
pub(crate) const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What the core needs from the users, rules and SCRAM credentials, built from an
/// [`AuthState`].
pub(crate) struct AuthServices {
    /// The version of the users and rules it was built from.
    pub(crate) version: u64,
    /// The users with their password hashes, for the password checkers; none: every client
    /// that presents a user name is refused.
    pub(crate) credentials: Credentials,
    /// The access rules (the ACL file's and, with `use_database_acl`, the database's).
    pub(crate) authorizer: Box<dyn Authorizer>,
    /// SCRAM-SHA-256 when `[auth] scram_sha_256` is set.
    pub(crate) enhanced: Vec<Box<dyn EnhancedAuthenticator>>,
    /// Users with a usable password hash.
    users: usize,
    /// Users with usable SCRAM credentials (0 when SCRAM is off).
    scram_users: usize,
}

impl AuthServices {
    /// Builds the services from `state`.
    ///
    /// # Errors
    ///
    /// [`AdminError::BadRecord`] for a stored access rule that is not valid, when the
    /// database's rules apply.
    pub(crate) fn build(
        settings: &Settings,
        state: &AuthState,
        fake_salt_secret: [u8; 32],
    ) -> Result<Self, AdminError> {
        let authorizer = crate::settings::authorizer(settings, &state.acl)?
            .unwrap_or_else(|| Box::new(AllowAll));
        let mut users = Credentials::new();
        for (name, hash) in &state.users {
            if let Err(e) = users.insert(name.clone(), hash.clone()) {
                warn!(user = %name, error = %e, "ignoring a user whose password hash is invalid");
            }
        }
        let user_count = users.len();
        let mut enhanced: Vec<Box<dyn EnhancedAuthenticator>> = Vec::new();
        let mut scram_users = 0;
        if settings.auth.scram_sha_256 {
            let scram = scram_method(settings, &state.scram, fake_salt_secret);
            scram_users = scram.len();
            enhanced.push(Box::new(scram));
        }
        Ok(Self {
            version: state.version,
            credentials: users,
            authorizer,
            enhanced,
            users: user_count,
            scram_users,
        })
    }

    /// How the core checks passwords with these users: off the loop, or (without users) by
    /// refusing every user name.
    pub(crate) fn passwords(&self) -> Passwords {
        if self.credentials.is_empty() {
            Passwords::NoUsers
        } else {
            Passwords::Deferred
        }
    }

    /// How many users have a usable password hash.
    pub(crate) const fn user_count(&self) -> usize {
        self.users
    }

    /// Logs, at start, what SCRAM-SHA-256 serves.
    pub(crate) fn log_at_start(&self, settings: &Settings) {
        if !settings.auth.scram_sha_256 {
            return;
        }
        let without = self.users.saturating_sub(self.scram_users);
        if without > 0 {
            warn!(
                users = without,
                "users without SCRAM credentials cannot use SCRAM-SHA-256 until their password \
                 is set again (mqtt5d user add, with [auth] scram_sha_256 = true)"
            );
        }
        info!(
            users = self.scram_users,
            iterations = settings.auth.scram_iterations,
            "enhanced authentication: SCRAM-SHA-256"
        );
    }

    /// Hands the services to the core and the users to the password checkers; returns the
    /// version they came from.
    fn apply_to(self, broker: &mut Broker, checkers: &PasswordCheckers) -> u64 {
        broker.set_passwords(self.passwords());
        checkers.set_credentials(self.credentials);
        broker.set_authorizer(self.authorizer);
        broker.set_enhanced(self.enhanced);
        self.version
    }
}

/// The SCRAM-SHA-256 method with the users' credentials.
fn scram_method(
    settings: &Settings,
    credentials: &BTreeMap<String, String>,
    fake_salt_secret: [u8; 32],
) -> ScramSha256 {
    let mut scram = ScramSha256::with_fake_salt_secret(fake_salt_secret)
        .with_fake_iterations(settings.auth.scram_iterations);
    for (name, stored) in credentials {
        match stored.parse() {
            Ok(c) => {
                scram.insert(name.clone(), c);
            }
            Err(e) => warn!(user = %name, error = %e, "ignoring invalid SCRAM credentials"),
        }
    }
    scram
}

/// Where the broker's users, rules and SCRAM credentials come from, as read at start.
pub(crate) struct AuthSource {
    /// The database, for the watcher; `None` without one (memory mode, no file).
    reader: Option<SqliteReader>,
    /// What it held at start.
    state: AuthState,
    /// The key of SCRAM's fake salts: kept in the database, or drawn at start without one.
    fake_salt_secret: [u8; 32],
}

impl AuthSource {
    /// From the broker's own database, before its store moves to the writer thread: the
    /// users and rules, and the fake-salt secret (stored the first time).
    ///
    /// # Errors
    ///
    /// When the database cannot be read or written.
    pub(crate) fn from_store(store: &mut SqliteStore) -> Result<Self, mqtt5_store::Error> {
        use mqtt5_store::Store as _;
        let fake_salt_secret = store.secret_or_insert(SCRAM_FAKE_SALT, random_secret())?;
        let state = store.auth_state()?;
        Ok(Self {
            reader: Some(store.reader()),
            state,
            fake_salt_secret,
        })
    }

    /// For `durability = "memory"`: the database file of the data directory if it exists
    /// (opened, and migrated if it is older, but sessions and messages never go to it), else
    /// nothing, with a fake-salt secret for this run only.
    ///
    /// # Errors
    ///
    /// When the file exists but cannot be opened or read.
    pub(crate) fn memory(settings: &Settings) -> Result<Self, mqtt5_store::Error> {
        let path = settings.storage.database_path();
        if !path.exists() {
            info!(
                path = %path.display(),
                "no database: no users or access rules from it; SCRAM salts of unknown users \
                 change with each start"
            );
            return Ok(Self {
                reader: None,
                state: AuthState::default(),
                fake_salt_secret: random_secret(),
            });
        }
        let mut store = SqliteStore::open(&path, SqliteOptions::default())?;
        let source = Self::from_store(&mut store)?;
        info!(
            path = %path.display(),
            "users, access rules and SCRAM credentials from the database (sessions and \
             messages stay in memory)"
        );
        Ok(source)
    }

    /// The services to start the core with.
    ///
    /// # Errors
    ///
    /// [`AdminError::BadRecord`] for a stored access rule that is not valid.
    pub(crate) fn services(&self, settings: &Settings) -> Result<AuthServices, AdminError> {
        AuthServices::build(settings, &self.state, self.fake_salt_secret)
    }

    /// Starts watching the database (none without one): records the broker's process id and
    /// the version it starts with, and spawns the watcher, which wakes the event loop with
    /// `wake` when it has new services.
    ///
    /// # Errors
    ///
    /// When the thread cannot be spawned.
    pub(crate) fn watch(
        self,
        settings: &Settings,
        interval: Duration,
        wake: Box<dyn Fn() + Send>,
    ) -> std::io::Result<Option<AuthWatch>> {
        let Some(reader) = self.reader else {
            return Ok(None);
        };
        let pid = std::process::id().to_string();
        let version = self.state.version;
        for (key, value) in [(BROKER_PID, &pid), (AUTH_APPLIED, &version.to_string())] {
            if let Err(e) = reader.set_meta(key, Some(value)) {
                warn!(error = %e, "cannot record {key} in the database");
            }
        }
        let (updates_tx, updates) = crossbeam_channel::bounded(1);
        let (applied, applied_rx) = crossbeam_channel::unbounded();
        let watcher = Watcher {
            reader,
            settings: settings.clone(),
            fake_salt_secret: self.fake_salt_secret,
            seen: version,
            failure: None,
            updates: updates_tx,
            applied: applied_rx,
            wake,
            pid,
        };
        let thread = std::thread::Builder::new()
            .name("mqtt5d-auth-watch".into())
            .spawn(move || watcher.run(interval))?;
        Ok(Some(AuthWatch {
            updates,
            applied: Some(applied),
            thread: Some(thread),
        }))
    }
}

/// 32 random bytes from the operating system, for a secret.
fn random_secret() -> [u8; 32] {
    let mut secret = [0; 32];
    if let Err(e) = getrandom::fill(&mut secret) {
        // Never expected on Linux. A zero key makes unknown users' fake salts predictable:
        // SCRAM then tells unknown users from known ones, nothing worse.
        error!(error = %e, "the OS random source failed");
    }
    secret
}

/// The event loop's end of the watcher: new services to apply, and the versions applied.
/// Dropping it stops the watcher, which removes the broker's process id from the database.
pub(crate) struct AuthWatch {
    updates: Receiver<AuthServices>,
    /// `None` once dropped, which stops the thread.
    applied: Option<Sender<u64>>,
    thread: Option<JoinHandle<()>>,
}

impl AuthWatch {
    /// Applies the services the watcher built since the last call, if any, to `broker` and
    /// the password checkers, and tells the watcher which version it applied.
    pub(crate) fn apply_pending(&self, broker: &mut Broker, checkers: &PasswordCheckers) {
        while let Ok(services) = self.updates.try_recv() {
            let (users, scram_users) = (services.users, services.scram_users);
            let version = services.apply_to(broker, checkers);
            info!(
                version,
                users, scram_users, "applied the users and access rules of the database"
            );
            if let Some(applied) = &self.applied {
                let _ = applied.send(version);
            }
        }
    }
}

impl Drop for AuthWatch {
    fn drop(&mut self) {
        self.applied = None;
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            error!("the thread that watches users and access rules panicked");
        }
    }
}

/// The watcher thread's state.
struct Watcher {
    reader: SqliteReader,
    settings: Settings,
    fake_salt_secret: [u8; 32],
    /// The last version handed to the loop (or found unusable).
    seen: u64,
    /// The last failure logged, so that a lasting one is logged once.
    failure: Option<String>,
    updates: Sender<AuthServices>,
    applied: Receiver<u64>,
    wake: Box<dyn Fn() + Send>,
    /// This process's id, as recorded in `meta`.
    pid: String,
}

impl Watcher {
    fn run(mut self, interval: Duration) {
        let mut next = Instant::now() + interval;
        loop {
            match self
                .applied
                .recv_timeout(next.saturating_duration_since(Instant::now()))
            {
                Ok(version) => {
                    if let Err(e) = self
                        .reader
                        .set_meta(AUTH_APPLIED, Some(&version.to_string()))
                    {
                        warn!(error = %e, "cannot record the version of the users and access rules applied");
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            next = Instant::now() + interval;
            if !self.poll() {
                break;
            }
        }
        // The broker stops: it no longer applies anything.
        match self.reader.meta(BROKER_PID) {
            Ok(Some(pid)) if pid == self.pid => {
                if let Err(e) = self.reader.set_meta(BROKER_PID, None) {
                    warn!(error = %e, "cannot remove the broker's process id from the database");
                }
            }
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot read the broker's process id in the database"),
        }
    }

    /// One look at the database; false when the event loop is gone.
    fn poll(&mut self) -> bool {
        let state = match self.reader.auth_version() {
            Ok(version) if version == self.seen => return true,
            Ok(_) => self.reader.auth_state(),
            Err(e) => Err(e),
        };
        let state = match state {
            Ok(state) => state,
            Err(e) => {
                self.failed(format!(
                    "cannot read the users and access rules of the database: {e}"
                ));
                return true;
            }
        };
        let services = match AuthServices::build(&self.settings, &state, self.fake_salt_secret) {
            Ok(services) => services,
            Err(e) => {
                // Not applied: `auth_applied` stays behind, and `mqtt5d` says so.
                self.failed(format!(
                    "cannot apply the users and access rules of the database (version {}): {e}; \
                     the broker keeps the ones it has",
                    state.version
                ));
                self.seen = state.version;
                return true;
            }
        };
        self.failure = None;
        if state.users.is_empty() {
            warn!(
                "the database has no users: clients that send a user name are refused until \
                 one is added"
            );
        }
        match self.updates.try_send(services) {
            Ok(()) => {
                debug!(version = state.version, "users or access rules changed");
                self.seen = state.version;
                (self.wake)();
                true
            }
            // The loop has not taken the previous ones yet: build again next time.
            Err(TrySendError::Full(_)) => {
                (self.wake)();
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    fn failed(&mut self, message: String) {
        if self.failure.as_ref() != Some(&message) {
            error!("{message}");
            self.failure = Some(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use mqtt5_broker::{AuthVerdict, ClientInfo, PasswordParams, hash_password_with};
    use mqtt5_store::AclRecord;

    use super::*;

    fn state_with_alice() -> AuthState {
        let params = PasswordParams::new(64, 1, 1).unwrap();
        let hash = hash_password_with(b"pw", b"0123456789abcdef", params).unwrap();
        let scram =
            mqtt5_broker::ScramCredentials::derive(b"pw", b"scram-salt-16-by", 16).to_string();
        AuthState {
            version: 7,
            users: [("alice".to_owned(), hash)].into(),
            scram: [("alice".to_owned(), scram)].into(),
            acl: vec![AclRecord {
                scope: "user alice".into(),
                access: "read".into(),
                topic: "a/#".into(),
            }],
        }
    }

    fn verdict(services: &AuthServices, user: &str, password: &[u8]) -> AuthVerdict {
        use mqtt5_broker::Authenticator as _;
        let client = ClientInfo {
            client_id: "c",
            username: Some(user),
        };
        services.credentials.authenticate(&client, Some(password))
    }

    #[test]
    fn an_empty_user_table_refuses_every_user_name() {
        let settings = Settings::default();
        let empty = AuthState::default();
        let closed = AuthServices::build(&settings, &empty, [0; 32]).unwrap();
        assert!(matches!(closed.passwords(), Passwords::NoUsers));
        assert_eq!(
            verdict(&closed, "anyone", b"x"),
            AuthVerdict::BadCredentials
        );

        let alice = AuthServices::build(&settings, &state_with_alice(), [0; 32]).unwrap();
        assert_eq!(alice.version, 7);
        assert!(matches!(alice.passwords(), Passwords::Deferred));
        assert_eq!(verdict(&alice, "alice", b"pw"), AuthVerdict::Allow);
        assert_eq!(
            verdict(&alice, "alice", b"wrong"),
            AuthVerdict::BadCredentials
        );
    }

    #[test]
    fn scram_and_database_rules_follow_the_settings() {
        let mut settings = Settings::default();
        let state = state_with_alice();
        let alice = ClientInfo {
            client_id: "c",
            username: Some("alice"),
        };
        let services = AuthServices::build(&settings, &state, [0; 32]).unwrap();
        assert!(services.enhanced.is_empty());
        // Without use_database_acl the database's rules do not apply.
        assert!(services.authorizer.can_publish(&alice, "b/x"));

        settings.auth.scram_sha_256 = true;
        settings.auth.use_database_acl = true;
        let services = AuthServices::build(&settings, &state, [0; 32]).unwrap();
        assert_eq!(services.enhanced.len(), 1);
        assert_eq!(services.scram_users, 1);
        assert!(services.authorizer.can_subscribe(&alice, "a/x"));
        assert!(!services.authorizer.can_publish(&alice, "b/x"));

        // A rule the database should not hold is an error, not a silent gap.
        let mut bad = state;
        bad.acl.push(AclRecord {
            scope: "group x".into(),
            access: "read".into(),
            topic: "t".into(),
        });
        assert!(AuthServices::build(&settings, &bad, [0; 32]).is_err());
    }
}
