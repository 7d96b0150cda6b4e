//! Password checks off the event loop: a few threads verify the argon2 hashes the core asks
//! about (`Action::CheckPassword`), and hand the verdicts back through a channel and the
//! loop's waker.
//!
//! ```text
//!  event loop --CheckPassword--> [bounded job queue] --> worker threads (argon2)
//!      ^                                                        |
//!      +---- handle_password_verdict <-- [verdicts] + Waker <---+
//! ```
//!
//! An argon2 check takes milliseconds of CPU by design; on the loop's thread a burst of wrong
//! passwords would stall every other client. The job queue is bounded: when it is full the
//! login is answered at once with "server busy" (CONNACK 0x89, 3.1.1 return code 3) rather
//! than queued without limit. The users can be replaced while the broker runs
//! ([`PasswordCheckers::set_credentials`]); a check in progress finishes with the users it
//! started with.

use std::sync::{Arc, RwLock};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use mqtt5_broker::{AuthVerdict, Authenticator, ClientInfo, ConnId, Credentials, PasswordCheck};
use tracing::{error, warn};

/// How many checks may wait for a worker.
const QUEUE: usize = 1024;

/// The nice value of the password-checking threads. A burst of wrong passwords keeps them
/// busy by design (each check costs milliseconds of CPU); on a machine with few cores they
/// would then take the event loop's core for whole time slices, and every client's latency
/// would follow the storm. One step below the loop in the scheduler's weights (about a tenth of
/// its share when both want the same core), they use what the loop leaves.
const WORKER_NICE: i32 = 10;

/// Lowers the calling thread's priority to [`WORKER_NICE`]. On Linux a thread id given to
/// `setpriority` names that thread alone; elsewhere it would name the whole process, so the
/// threads keep the broker's priority there.
fn below_the_event_loop() {
    #[cfg(target_os = "linux")]
    if let Err(err) =
        rustix::process::setpriority_process(Some(rustix::thread::gettid()), WORKER_NICE)
    {
        tracing::debug!(%err, "password thread: priority unchanged");
    }
}

/// The password-checking threads.
pub(crate) struct PasswordCheckers {
    jobs: Sender<PasswordCheck>,
    verdicts: Receiver<(ConnId, AuthVerdict)>,
    users: Arc<RwLock<Arc<Credentials>>>,
}

impl PasswordCheckers {
    /// Starts `workers` threads checking against `users`; `wake` is called after each verdict.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(crate) fn spawn(
        workers: usize,
        users: Credentials,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = crossbeam_channel::bounded::<PasswordCheck>(QUEUE);
        // Never full: at most QUEUE checks wait and `workers` are under way.
        let (answers, verdicts) = crossbeam_channel::bounded(QUEUE + workers);
        let users = Arc::new(RwLock::new(Arc::new(users)));
        for i in 0..workers.max(1) {
            let queue = queue.clone();
            let answers = answers.clone();
            let users = Arc::clone(&users);
            let wake = Arc::clone(&wake);
            std::thread::Builder::new()
                .name(format!("mqtt5-passwords-{i}"))
                .spawn(move || {
                    below_the_event_loop();
                    for check in queue {
                        let current = users.read().map(|u| Arc::clone(&u)).ok();
                        let verdict = current.map_or(AuthVerdict::Busy, |users| {
                            users.authenticate(
                                &ClientInfo {
                                    client_id: &check.client_id,
                                    username: Some(&check.username),
                                },
                                check.password.as_deref(),
                            )
                        });
                        if answers.send((check.conn, verdict)).is_err() {
                            return;
                        }
                        wake();
                    }
                })?;
        }
        Ok(Self {
            jobs,
            verdicts,
            users,
        })
    }

    /// Hands a check to the workers; gives it back when the queue is full.
    pub(crate) fn submit(&self, check: PasswordCheck) -> Result<(), PasswordCheck> {
        match self.jobs.try_send(check) {
            Ok(()) => Ok(()),
            Err(TrySendError::Full(check)) => {
                warn!("password checks queue full: answering \"server busy\"");
                Err(check)
            }
            Err(TrySendError::Disconnected(check)) => {
                error!("the password checkers are gone");
                Err(check)
            }
        }
    }

    /// The next verdict, if one is ready.
    pub(crate) fn try_verdict(&self) -> Option<(ConnId, AuthVerdict)> {
        self.verdicts.try_recv().ok()
    }

    /// Replaces the users that later checks use.
    pub(crate) fn set_credentials(&self, users: Credentials) {
        match self.users.write() {
            Ok(mut slot) => *slot = Arc::new(users),
            Err(_) => error!("the password checkers' users could not be replaced"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt5_broker::{PasswordParams, hash_password_with};
    use std::sync::mpsc;
    use std::time::Duration;

    fn users(name: &str, password: &[u8]) -> Credentials {
        let params = PasswordParams::new(64, 1, 1).expect("cheap parameters");
        let mut users = Credentials::new();
        let phc = hash_password_with(password, b"0123456789abcdef", params).expect("a hash");
        users.insert(name, phc).expect("a user");
        users
    }

    fn check(conn: u64, username: &str, password: &[u8]) -> PasswordCheck {
        PasswordCheck {
            conn: ConnId(conn),
            client_id: format!("c{conn}"),
            username: username.to_owned(),
            password: Some(bytes::Bytes::copy_from_slice(password)),
        }
    }

    /// Waits (with a liveness bound) for the verdict of `conn`.
    fn verdict(checkers: &PasswordCheckers, woken: &mpsc::Receiver<()>) -> (ConnId, AuthVerdict) {
        loop {
            if let Some(v) = checkers.try_verdict() {
                return v;
            }
            woken
                .recv_timeout(Duration::from_secs(60))
                .expect("a verdict arrives");
        }
    }

    #[test]
    fn verdicts_come_back_and_wake_the_loop() {
        let (tx, woken) = mpsc::channel();
        let tx = std::sync::Mutex::new(tx);
        let wake = Arc::new(move || {
            let _ = tx.lock().map(|t| t.send(()));
        });
        let checkers = PasswordCheckers::spawn(2, users("alice", b"s3cret"), wake).unwrap();
        checkers.submit(check(1, "alice", b"s3cret")).unwrap();
        assert_eq!(verdict(&checkers, &woken), (ConnId(1), AuthVerdict::Allow));
        checkers.submit(check(2, "alice", b"guess")).unwrap();
        assert_eq!(
            verdict(&checkers, &woken),
            (ConnId(2), AuthVerdict::BadCredentials)
        );
        // New users apply to later checks.
        checkers.set_credentials(users("bob", b"pw"));
        checkers.submit(check(3, "alice", b"s3cret")).unwrap();
        assert_eq!(
            verdict(&checkers, &woken),
            (ConnId(3), AuthVerdict::BadCredentials)
        );
        checkers.submit(check(4, "bob", b"pw")).unwrap();
        assert_eq!(verdict(&checkers, &woken), (ConnId(4), AuthVerdict::Allow));
    }
}
