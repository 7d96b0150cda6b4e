//! Username and password authentication (MQTT 5 §3.1.3.5, §3.1.3.6) against a table of
//! argon2id password hashes.
//!
//! Passwords are never stored: [`hash_password`] turns one into a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), and [`Credentials`] maps user names to
//! such strings. The hashing is done by the `argon2` crate; this module only chooses
//! parameters and checks what it is given.

use std::collections::BTreeMap;
use std::fmt;

use argon2::password_hash::phc::{Output, Salt};
use argon2::{
    ARGON2ID_IDENT, Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier,
    Version,
};

use crate::auth::{AuthVerdict, Authenticator, ClientInfo};

/// The argon2 version this module writes and accepts: 0x13 (19), the current one.
const ARGON2_VERSION: u32 = 0x13;

/// The shortest salt [`hash_password`] accepts, in bytes.
const MIN_SALT_LEN: usize = 16;

/// The longest salt a PHC string can hold, in bytes.
const MAX_SALT_LEN: usize = Salt::MAX_LENGTH;

/// The salt of the stand-in hash an unknown user's password is checked against.
const DUMMY_SALT: [u8; MIN_SALT_LEN] = [0x5a; MIN_SALT_LEN];

/// The output length of the hashes this module writes, in bytes (the `argon2` default).
const OUTPUT_LEN: usize = Params::DEFAULT_OUTPUT_LEN;

/// A password hash or its parameters that this module will not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialError {
    /// The text is not a PHC string, or lacks a salt or a hash, or its parameters are invalid.
    #[error("malformed password hash: {reason}")]
    MalformedHash {
        /// What is wrong.
        reason: String,
    },
    /// The PHC string is for another algorithm than argon2id.
    #[error("unsupported password hash algorithm `{algorithm}` (only argon2id is accepted)")]
    UnsupportedAlgorithm {
        /// The algorithm the PHC string names.
        algorithm: String,
    },
    /// The PHC string is for another argon2 version than 19 (0x13).
    #[error("unsupported argon2 version {version} (only 19 is accepted)")]
    UnsupportedVersion {
        /// The version the PHC string names.
        version: u32,
    },
    /// The cost parameters are invalid for argon2, or above this module's limits.
    #[error("invalid argon2 parameters: {reason}")]
    InvalidParams {
        /// What is wrong.
        reason: String,
    },
    /// The salt given to [`hash_password`] is shorter than 16 or longer than 48 bytes.
    #[error("salt of {len} bytes (16 to 48 bytes are accepted)")]
    InvalidSalt {
        /// The length given.
        len: usize,
    },
    /// Hashing failed (the password is longer than argon2 accepts).
    #[error("hashing failed: {reason}")]
    Hashing {
        /// What went wrong.
        reason: String,
    },
}

/// The cost parameters of an argon2id hash.
///
/// [`PasswordParams::DEFAULT`] is argon2id with 19 MiB of memory, 2 passes and 1 lane, the
/// OWASP Password Storage Cheat Sheet's minimum for argon2id, and the `argon2` crate's default.
/// It costs tens of milliseconds per CONNECT in a release build. Stored hashes carry their own
/// parameters, so hashes made with other (for example cheaper, for tests) parameters still
/// verify, within limits: a PHC string asking for more than [`PasswordParams::MAX_MEMORY_KIB`]
/// of memory, [`PasswordParams::MAX_ITERATIONS`] passes or [`PasswordParams::MAX_PARALLELISM`]
/// lanes is refused, so that a bad entry cannot make each login allocate gigabytes.
///
/// Salts come from the caller (the core takes no randomness of its own): 16 to 48
/// random bytes per password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PasswordParams {
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl PasswordParams {
    /// 19 MiB, 2 passes, 1 lane: the OWASP minimum for argon2id, used by [`hash_password`].
    pub const DEFAULT: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };

    /// The most memory a hash may ask for: 1 GiB, in KiB.
    pub const MAX_MEMORY_KIB: u32 = 1024 * 1024;

    /// The most passes a hash may ask for.
    pub const MAX_ITERATIONS: u32 = 64;

    /// The most lanes a hash may ask for.
    pub const MAX_PARALLELISM: u32 = 16;

    /// Checks a set of parameters: memory in KiB (at least 8 per lane), passes (at least 1)
    /// and lanes (at least 1), each at most the `MAX_*` constants.
    ///
    /// # Errors
    ///
    /// [`CredentialError::InvalidParams`] if argon2 rejects them or they exceed the limits.
    pub fn new(
        memory_kib: u32,
        iterations: u32,
        parallelism: u32,
    ) -> Result<Self, CredentialError> {
        let params = Self {
            memory_kib,
            iterations,
            parallelism,
        };
        params.to_argon2()?;
        params.check_limits()?;
        Ok(params)
    }

    /// Memory cost, in KiB.
    #[must_use]
    pub const fn memory_kib(&self) -> u32 {
        self.memory_kib
    }

    /// Number of passes over the memory.
    #[must_use]
    pub const fn iterations(&self) -> u32 {
        self.iterations
    }

    /// Degree of parallelism (lanes).
    #[must_use]
    pub const fn parallelism(&self) -> u32 {
        self.parallelism
    }

    fn to_argon2(self) -> Result<Params, CredentialError> {
        Params::new(
            self.memory_kib,
            self.iterations,
            self.parallelism,
            Some(OUTPUT_LEN),
        )
        .map_err(|e| CredentialError::InvalidParams {
            reason: e.to_string(),
        })
    }

    fn check_limits(self) -> Result<(), CredentialError> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(CredentialError::InvalidParams {
                reason: format!(
                    "m={}, t={}, p={} exceeds the limits m<={}, t<={}, p<={}",
                    self.memory_kib,
                    self.iterations,
                    self.parallelism,
                    Self::MAX_MEMORY_KIB,
                    Self::MAX_ITERATIONS,
                    Self::MAX_PARALLELISM
                ),
            });
        }
        Ok(())
    }
}

impl Default for PasswordParams {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Hashes a password as an argon2id PHC string with [`PasswordParams::DEFAULT`] and the given
/// salt (16 to 48 random bytes from the caller: the core takes randomness from outside).
///
/// # Errors
///
/// [`CredentialError::InvalidSalt`] for a salt outside 16..=48 bytes;
/// [`CredentialError::Hashing`] if argon2 fails (a password longer than 2³² − 1 bytes).
pub fn hash_password(password: &[u8], salt: &[u8]) -> Result<String, CredentialError> {
    hash_password_with(password, salt, PasswordParams::DEFAULT)
}

/// Hashes a password as an argon2id PHC string with the given parameters and salt (16 to 48
/// random bytes). Lower-cost parameters are for tests; see [`PasswordParams::DEFAULT`].
///
/// # Errors
///
/// [`CredentialError::InvalidSalt`] for a salt outside 16..=48 bytes;
/// [`CredentialError::Hashing`] if argon2 fails.
pub fn hash_password_with(
    password: &[u8],
    salt: &[u8],
    params: PasswordParams,
) -> Result<String, CredentialError> {
    if !(MIN_SALT_LEN..=MAX_SALT_LEN).contains(&salt.len()) {
        return Err(CredentialError::InvalidSalt { len: salt.len() });
    }
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params.to_argon2()?);
    let hash = argon2
        .hash_password_with_salt(password, salt)
        .map_err(|e| CredentialError::Hashing {
            reason: e.to_string(),
        })?;
    Ok(hash.to_string())
}

/// Verifies a password against a PHC string. False for a wrong password and for any PHC
/// string [`Credentials::insert`] would refuse (malformed, not argon2id version 19, or costs
/// above the limits of [`PasswordParams`]).
#[must_use]
pub fn verify_password(password: &[u8], phc: &str) -> bool {
    parse_phc(phc).is_ok_and(|hash| verify(password, &hash))
}

/// Parses and checks a PHC string: argon2id, version 19, a salt and a hash, parameters valid
/// and within the limits.
fn parse_phc(phc: &str) -> Result<PasswordHash, CredentialError> {
    let hash = PasswordHash::new(phc).map_err(|e| CredentialError::MalformedHash {
        reason: e.to_string(),
    })?;
    if hash.algorithm != ARGON2ID_IDENT {
        return Err(CredentialError::UnsupportedAlgorithm {
            algorithm: hash.algorithm.as_str().to_owned(),
        });
    }
    if let Some(version) = hash.version
        && version != ARGON2_VERSION
    {
        return Err(CredentialError::UnsupportedVersion { version });
    }
    if hash.salt.is_none() || hash.hash.is_none() {
        return Err(CredentialError::MalformedHash {
            reason: "no salt or no hash".to_owned(),
        });
    }
    let params = Params::try_from(&hash).map_err(|e| CredentialError::InvalidParams {
        reason: e.to_string(),
    })?;
    PasswordParams {
        memory_kib: params.m_cost(),
        iterations: params.t_cost(),
        parallelism: params.p_cost(),
    }
    .check_limits()?;
    Ok(hash)
}

/// Verifies a password against a checked hash, with the hash's own parameters. The output
/// comparison is constant-time (`phc::Output`).
fn verify(password: &[u8], hash: &PasswordHash) -> bool {
    Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::DEFAULT)
        .verify_password(password, hash)
        .is_ok()
}

/// A stand-in with the parameters of `like` (or the defaults), a fixed salt and an all-zero
/// hash: no password verifies against it, and checking one costs what a real check costs.
fn dummy_like(like: Option<&PasswordHash>) -> Option<PasswordHash> {
    let mut dummy = match like {
        Some(hash) => hash.clone(),
        None => PasswordHash {
            algorithm: ARGON2ID_IDENT,
            version: Some(ARGON2_VERSION),
            params: (&Params::DEFAULT).try_into().ok()?,
            salt: None,
            hash: None,
        },
    };
    let output_len = dummy.hash.as_ref().map_or(OUTPUT_LEN, Output::len);
    dummy.salt = Some(Salt::new(&DUMMY_SALT).ok()?);
    dummy.hash = Some(Output::new(&[0; Output::MAX_LENGTH][..output_len]).ok()?);
    Some(dummy)
}

/// One user's stored hash: the PHC string as given, and parsed.
#[derive(Clone)]
struct StoredHash {
    phc: String,
    parsed: PasswordHash,
}

/// An in-memory user table, user name → argon2id PHC string; an [`Authenticator`].
///
/// [`Authenticator::authenticate`] answers:
///
/// - no User Name: [`AuthVerdict::NotAuthorized`] (anonymous access is decided by the core
///   before it asks, so this only makes the table safe on its own);
/// - no Password, an unknown user or a wrong password: [`AuthVerdict::BadCredentials`]. An
///   unknown user's password is still checked, against a stand-in hash with the parameters of
///   the last hash inserted, so the time taken does not tell which user names exist;
/// - the right password: [`AuthVerdict::Allow`].
///
/// Passwords are compared as raw bytes: they need not be UTF-8 (MQTT 5 §3.1.3.6).
///
/// # Example
///
/// ```
/// use mqtt5_broker::{
///     AuthVerdict, Authenticator, ClientInfo, Credentials, PasswordParams, hash_password_with,
/// };
///
/// // Cheap parameters keep the example fast; use `hash_password` (the defaults) for real.
/// let params = PasswordParams::new(64, 1, 1)?;
/// let phc = hash_password_with(b"s3cret", b"16 random bytes!", params)?;
///
/// let mut users = Credentials::new();
/// users.insert("alice", phc)?;
///
/// let alice = ClientInfo { client_id: "c1", username: Some("alice") };
/// assert_eq!(users.authenticate(&alice, Some(b"s3cret")), AuthVerdict::Allow);
/// assert_eq!(users.authenticate(&alice, Some(b"guess")), AuthVerdict::BadCredentials);
/// # Ok::<(), mqtt5_broker::CredentialError>(())
/// ```
#[derive(Clone)]
pub struct Credentials {
    users: BTreeMap<String, StoredHash>,
    dummy: Option<PasswordHash>,
}

impl Credentials {
    /// An empty table: every user is unknown.
    #[must_use]
    pub fn new() -> Self {
        Self {
            users: BTreeMap::new(),
            dummy: dummy_like(None),
        }
    }

    /// Sets a user's password hash, replacing any previous one.
    ///
    /// # Errors
    ///
    /// [`CredentialError::MalformedHash`], [`CredentialError::UnsupportedAlgorithm`],
    /// [`CredentialError::UnsupportedVersion`] or [`CredentialError::InvalidParams`] if `phc`
    /// is not an argon2id (version 19) PHC string with a salt, a hash and parameters within
    /// the limits of [`PasswordParams`]. The table is then unchanged.
    pub fn insert(
        &mut self,
        username: impl Into<String>,
        phc: impl Into<String>,
    ) -> Result<(), CredentialError> {
        let phc = phc.into();
        let parsed = parse_phc(&phc)?;
        if let Some(dummy) = dummy_like(Some(&parsed)) {
            self.dummy = Some(dummy);
        }
        self.users
            .insert(username.into(), StoredHash { phc, parsed });
        Ok(())
    }

    /// Removes a user; returns whether it was there.
    pub fn remove(&mut self, username: &str) -> bool {
        self.users.remove(username).is_some()
    }

    /// Whether the user is in the table.
    #[must_use]
    pub fn contains(&self, username: &str) -> bool {
        self.users.contains_key(username)
    }

    /// The user's PHC string, as inserted.
    #[must_use]
    pub fn get(&self, username: &str) -> Option<&str> {
        self.users.get(username).map(|stored| stored.phc.as_str())
    }

    /// The number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether the table is empty.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// The user names, in byte order.
    pub fn usernames(&self) -> impl Iterator<Item = &str> + '_ {
        self.users.keys().map(String::as_str)
    }
}

impl Default for Credentials {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Credentials {
    /// Lists the user names only: hashes stay out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl Authenticator for Credentials {
    fn authenticate(&self, client: &ClientInfo<'_>, password: Option<&[u8]>) -> AuthVerdict {
        let Some(username) = client.username else {
            return AuthVerdict::NotAuthorized;
        };
        // Refused before any lookup, so this answer says nothing about the user name either.
        let Some(password) = password else {
            return AuthVerdict::BadCredentials;
        };
        match self.users.get(username) {
            Some(stored) if verify(password, &stored.parsed) => AuthVerdict::Allow,
            Some(_) => AuthVerdict::BadCredentials,
            None => {
                if let Some(dummy) = &self.dummy {
                    // Same work as for a known user; the result is meaningless.
                    let _ = verify(password, dummy);
                }
                AuthVerdict::BadCredentials
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SALT: &[u8] = b"0123456789abcdef";

    fn cheap() -> PasswordParams {
        PasswordParams::new(64, 1, 1).unwrap()
    }

    fn cheap_hash(password: &[u8]) -> String {
        hash_password_with(password, SALT, cheap()).unwrap()
    }

    fn client(username: Option<&str>) -> ClientInfo<'_> {
        ClientInfo {
            client_id: "c1",
            username,
        }
    }

    #[test]
    fn hash_then_verify_roundtrips() {
        let phc = cheap_hash(b"correct horse");
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(verify_password(b"correct horse", &phc));
        assert!(!verify_password(b"correct horsf", &phc));
        assert!(!verify_password(b"", &phc));
    }

    #[test]
    fn same_salt_same_hash_other_salt_other_hash() {
        assert_eq!(cheap_hash(b"pw"), cheap_hash(b"pw"));
        let other = hash_password_with(b"pw", b"fedcba9876543210", cheap()).unwrap();
        assert_ne!(cheap_hash(b"pw"), other);
        assert!(verify_password(b"pw", &other));
    }

    #[test]
    fn default_params_are_owasp_argon2id() {
        let phc = hash_password(b"pw", SALT).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert_eq!(PasswordParams::default(), PasswordParams::DEFAULT);
    }

    #[test]
    fn salt_length_is_checked() {
        for len in [0, 8, 15, 49] {
            assert_eq!(
                hash_password_with(b"pw", &vec![1; len], cheap()),
                Err(CredentialError::InvalidSalt { len })
            );
        }
        assert!(hash_password_with(b"pw", &[1; 48], cheap()).is_ok());
    }

    #[test]
    fn params_are_validated() {
        for (m, t, p) in [(7, 1, 1), (64, 0, 1), (64, 1, 0), (8, 1, 2)] {
            assert!(
                matches!(
                    PasswordParams::new(m, t, p),
                    Err(CredentialError::InvalidParams { .. })
                ),
                "m={m} t={t} p={p}"
            );
        }
        assert!(PasswordParams::new(PasswordParams::MAX_MEMORY_KIB + 1, 1, 1).is_err());
        assert!(PasswordParams::new(64, PasswordParams::MAX_ITERATIONS + 1, 1).is_err());
        assert!(PasswordParams::new(256, 1, PasswordParams::MAX_PARALLELISM + 1).is_err());
        let p = PasswordParams::new(128, 3, 2).unwrap();
        assert_eq!(
            (p.memory_kib(), p.iterations(), p.parallelism()),
            (128, 3, 2)
        );
    }

    #[test]
    fn binary_password_roundtrips() {
        // Not UTF-8: 0xff never occurs in UTF-8, 0xc3 0x28 is a broken sequence.
        let password = [0xff, 0x00, 0xfe, 0x80, 0xc3, 0x28];
        let phc = cheap_hash(&password);
        assert!(verify_password(&password, &phc));
        let mut users = Credentials::new();
        users.insert("bin", phc).unwrap();
        assert_eq!(
            users.authenticate(&client(Some("bin")), Some(&password)),
            AuthVerdict::Allow
        );
        assert_eq!(
            users.authenticate(&client(Some("bin")), Some(&password[..5])),
            AuthVerdict::BadCredentials
        );
    }

    #[test]
    fn authenticate_verdicts() {
        let mut users = Credentials::new();
        users.insert("alice", cheap_hash(b"wonderland")).unwrap();
        let alice = client(Some("alice"));
        let table: [(ClientInfo<'_>, Option<&[u8]>, AuthVerdict); 6] = [
            (alice, Some(b"wonderland"), AuthVerdict::Allow),
            (alice, Some(b"Wonderland"), AuthVerdict::BadCredentials),
            (alice, None, AuthVerdict::BadCredentials),
            (
                client(Some("bob")),
                Some(b"wonderland"),
                AuthVerdict::BadCredentials,
            ),
            (client(Some("bob")), None, AuthVerdict::BadCredentials),
            (
                client(None),
                Some(b"wonderland"),
                AuthVerdict::NotAuthorized,
            ),
        ];
        for (who, password, expected) in table {
            assert_eq!(users.authenticate(&who, password), expected, "{who:?}");
        }
    }

    #[test]
    fn unknown_user_is_checked_against_a_dummy_with_the_table_params() {
        let mut users = Credentials::new();
        let default_dummy = users.dummy.clone().unwrap();
        assert_eq!(
            Params::try_from(&default_dummy).unwrap().m_cost(),
            PasswordParams::DEFAULT.memory_kib()
        );
        users.insert("alice", cheap_hash(b"pw")).unwrap();
        let dummy = users.dummy.clone().unwrap();
        assert_eq!(Params::try_from(&dummy).unwrap().m_cost(), 64);
        assert_eq!(dummy.salt, Some(Salt::new(&DUMMY_SALT).unwrap()));
        // The dummy re-serializes as a PHC string this module accepts.
        assert!(parse_phc(&dummy.to_string()).is_ok());
        assert!(!verify(b"pw", &dummy));
        assert_eq!(
            users.authenticate(&client(Some("nobody")), Some(b"pw")),
            AuthVerdict::BadCredentials
        );
    }

    #[test]
    fn insert_rejects_malformed_phc() {
        let good = cheap_hash(b"pw");
        let no_hash = good.rsplit_once('$').unwrap().0.to_owned();
        let cases = [
            String::new(),
            "password".to_owned(),
            "$argon2id$".to_owned(),
            "$argon2id$v=19$m=64,t=1,p=1".to_owned(),
            no_hash,
            good.replace("m=64", "m=x"),
            good.replace("m=64", "m=4"),
            format!("{good}$extra"),
        ];
        let mut users = Credentials::new();
        for phc in cases {
            let err = users.insert("u", phc.clone()).unwrap_err();
            assert!(
                matches!(
                    err,
                    CredentialError::MalformedHash { .. } | CredentialError::InvalidParams { .. }
                ),
                "{phc:?}: {err:?}"
            );
            assert!(!verify_password(b"pw", &phc));
        }
        assert!(users.is_empty());
    }

    #[test]
    fn insert_rejects_other_algorithms_versions_and_costs() {
        let good = cheap_hash(b"pw");
        let mut users = Credentials::new();
        for (algorithm, phc) in [
            ("argon2i", good.replace("$argon2id$", "$argon2i$")),
            ("argon2d", good.replace("$argon2id$", "$argon2d$")),
            ("pbkdf2-sha256", "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".to_owned()),
            (
                "scrypt",
                "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E"
                    .to_owned(),
            ),
        ] {
            assert_eq!(
                users.insert("u", phc.clone()),
                Err(CredentialError::UnsupportedAlgorithm {
                    algorithm: algorithm.to_owned()
                })
            );
            assert!(!verify_password(b"pw", &phc));
        }
        let v16 = good.replace("$v=19$", "$v=16$");
        assert_eq!(
            users.insert("u", v16.clone()),
            Err(CredentialError::UnsupportedVersion { version: 16 })
        );
        assert!(!verify_password(b"pw", &v16));
        let costly = good.replace("m=64,t=1", "m=2000000,t=1");
        assert!(matches!(
            users.insert("u", costly.clone()),
            Err(CredentialError::InvalidParams { .. })
        ));
        assert!(!verify_password(b"pw", &costly));
        assert!(users.is_empty());
    }

    #[test]
    fn table_operations() {
        let mut users = Credentials::new();
        assert!(users.is_empty());
        let a = cheap_hash(b"a");
        users.insert("b", cheap_hash(b"b")).unwrap();
        users.insert("a", a.clone()).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.contains("a"));
        assert_eq!(users.get("a"), Some(a.as_str()));
        assert_eq!(users.usernames().collect::<Vec<_>>(), ["a", "b"]);
        // Replacing a password.
        users.insert("a", cheap_hash(b"new")).unwrap();
        assert_eq!(users.len(), 2);
        assert_eq!(
            users.authenticate(&client(Some("a")), Some(b"a")),
            AuthVerdict::BadCredentials
        );
        assert_eq!(
            users.authenticate(&client(Some("a")), Some(b"new")),
            AuthVerdict::Allow
        );
        assert!(users.remove("a"));
        assert!(!users.remove("a"));
        assert!(!users.contains("a"));
        assert_eq!(
            users.authenticate(&client(Some("a")), Some(b"new")),
            AuthVerdict::BadCredentials
        );
        let debug = format!("{users:?}");
        assert!(
            debug.contains("\"b\"") && !debug.contains("argon2"),
            "{debug}"
        );
    }
}
