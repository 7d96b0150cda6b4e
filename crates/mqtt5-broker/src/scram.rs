//! SCRAM-SHA-256 (RFC 5802, RFC 7677) as an MQTT 5 enhanced authentication method (§4.12):
//! [`ScramSha256`] and the [`ScramCredentials`] it stores. The exchange, its diagram and what it
//! supports are documented on [`ScramSha256`] (this module is private; its items are re-exported
//! at the crate root).

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ctutils::CtEq as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use sha2::{Digest as _, Sha256};

use crate::auth::{AuthExchange, AuthStep, EnhancedAuthenticator};
use crate::random::RandomSource;

/// The Authentication Method name of SCRAM-SHA-256 (RFC 7677 §2).
pub const SCRAM_SHA_256: &str = "SCRAM-SHA-256";

/// The iteration count to derive credentials with, and the one an unknown user is shown unless
/// [`ScramSha256::with_fake_iterations`] says otherwise.
///
/// RFC 7677 §4 asks for at least 4,096; that makes a guess against a stolen credential table
/// cost about a millisecond, far less than an argon2id password hash. 100,000 iterations of
/// PBKDF2-HMAC-SHA-256 cost a client (and `mqtt5d user add`) tens of milliseconds once per
/// connection, and an attacker as much per guess.
pub const SCRAM_DEFAULT_ITERATIONS: u32 = 100_000;

/// The lowest iteration count [`ScramCredentials`] accept. Anything below
/// [`SCRAM_DEFAULT_ITERATIONS`] is only for tests: PBKDF2 with few iterations makes a leaked
/// credential table cheap to brute-force.
pub const SCRAM_MIN_ITERATIONS: u32 = 1;

/// The longest client message (client-first or client-final), in bytes, that the server reads.
/// A longer one fails the exchange.
pub const SCRAM_MAX_MESSAGE_LEN: usize = 4096;

/// The longest username, in bytes after `=2C` / `=3D` decoding. A longer one fails the exchange.
pub const SCRAM_MAX_USERNAME_LEN: usize = 256;

/// Random bytes in the server's nonce part: 24 bytes are 32 base64 characters, no padding
/// (RFC 5802 asks for a printable nonce; 18 bytes would be enough).
const SERVER_NONCE_BYTES: usize = 24;

/// The length of a fake salt for an unknown user; also the salt length to provision real users
/// with, so that the two look alike.
const FAKE_SALT_LEN: usize = 16;

/// Domain separation for the fake salt.
const FAKE_SALT_LABEL: &[u8] = b"mqtt5-scram-fake";

/// The PostgreSQL-style prefix of a stored credential string.
const STORED_PREFIX: &str = "SCRAM-SHA-256$";

/// The output length of SHA-256 and of HMAC-SHA-256.
const KEY_LEN: usize = 32;

type Key = [u8; KEY_LEN];
type HmacSha256 = Hmac<Sha256>;

/// HMAC-SHA-256 over the concatenation of `parts`.
///
/// The key is always 32 bytes here, shorter than SHA-256's 64-byte block, so HMAC pads it with
/// zeros (RFC 2104 §2). Doing that padding ourselves lets us use the infallible
/// [`KeyInit::new`](hmac::KeyInit::new) and gives the same MAC as an unpadded key.
fn hmac_sha256(key: &Key, parts: &[&[u8]]) -> Key {
    let mut block = hmac::digest::Key::<HmacSha256>::default();
    for (dst, src) in block.iter_mut().zip(key) {
        *dst = *src;
    }
    let mut mac = HmacSha256::new(&block);
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

fn sha256(data: &[u8]) -> Key {
    Sha256::digest(data).into()
}

/// Stored SCRAM-SHA-256 credentials of one user (RFC 5802 §3): salt, iteration count,
/// `StoredKey` and `ServerKey`. Never the password.
///
/// `StoredKey` lets a thief of the table mount an offline dictionary attack and `ServerKey`
/// lets them impersonate the server, so keep the table as secret as a password file. `Debug`
/// prints neither key; [`Display`](fmt::Display) is the storage format and prints both.
#[derive(Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    salt: Vec<u8>,
    iterations: u32,
    stored_key: Key,
    server_key: Key,
}

impl ScramCredentials {
    /// Derives the credentials from a password (RFC 5802 §3):
    ///
    /// ```text
    /// SaltedPassword = PBKDF2-HMAC-SHA-256(password, salt, iterations)
    /// StoredKey      = SHA-256(HMAC(SaltedPassword, "Client Key"))
    /// ServerKey      = HMAC(SaltedPassword, "Server Key")
    /// ```
    ///
    /// Use 16 random bytes of salt (the length of an unknown user's fake salt) and
    /// [`SCRAM_DEFAULT_ITERATIONS`] or more. An `iterations` below [`SCRAM_MIN_ITERATIONS`] (that
    /// is, 0) is raised to it. The password is taken as is: SASLprep is not applied.
    #[must_use]
    pub fn derive(password: &[u8], salt: &[u8], iterations: u32) -> Self {
        let iterations = iterations.max(SCRAM_MIN_ITERATIONS);
        let mut salted_password: Key = [0; KEY_LEN];
        pbkdf2::pbkdf2_hmac::<Sha256>(password, salt, iterations, &mut salted_password);
        let client_key = hmac_sha256(&salted_password, &[b"Client Key"]);
        Self {
            salt: salt.to_vec(),
            iterations,
            stored_key: sha256(&client_key),
            server_key: hmac_sha256(&salted_password, &[b"Server Key"]),
        }
    }

    /// The salt.
    #[must_use]
    pub fn salt(&self) -> &[u8] {
        &self.salt
    }

    /// The PBKDF2 iteration count.
    #[must_use]
    pub fn iterations(&self) -> u32 {
        self.iterations
    }
}

impl fmt::Debug for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramCredentials")
            .field("salt_len", &self.salt.len())
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The storage format, PostgreSQL's:
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, each binary field in standard
/// padded base64.
impl fmt::Display for ScramCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{STORED_PREFIX}{}:{}${}:{}",
            self.iterations,
            BASE64.encode(&self.salt),
            BASE64.encode(self.stored_key),
            BASE64.encode(self.server_key),
        )
    }
}

/// Parses the storage format written by [`Display`](fmt::Display).
///
/// # Errors
///
/// [`ScramCredentialsError`] when the string is not
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` with a decimal iteration count of
/// at least [`SCRAM_MIN_ITERATIONS`], standard padded base64 fields and 32-byte keys.
impl FromStr for ScramCredentials {
    type Err = ScramCredentialsError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let rest = s
            .strip_prefix(STORED_PREFIX)
            .ok_or(ScramCredentialsError::UnknownScheme)?;
        let (params, keys) = rest
            .split_once('$')
            .ok_or(ScramCredentialsError::Malformed)?;
        let (iterations, salt) = params
            .split_once(':')
            .ok_or(ScramCredentialsError::Malformed)?;
        let (stored_key, server_key) = keys
            .split_once(':')
            .ok_or(ScramCredentialsError::Malformed)?;
        if !iterations.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ScramCredentialsError::BadIterations);
        }
        let iterations: u32 = iterations
            .parse()
            .map_err(|_| ScramCredentialsError::BadIterations)?;
        if iterations < SCRAM_MIN_ITERATIONS {
            return Err(ScramCredentialsError::BadIterations);
        }
        let salt = BASE64
            .decode(salt)
            .map_err(|_| ScramCredentialsError::BadBase64("salt"))?;
        Ok(Self {
            salt,
            iterations,
            stored_key: decode_key(stored_key, "StoredKey")?,
            server_key: decode_key(server_key, "ServerKey")?,
        })
    }
}

fn decode_key(b64: &str, field: &'static str) -> Result<Key, ScramCredentialsError> {
    let bytes = BASE64
        .decode(b64)
        .map_err(|_| ScramCredentialsError::BadBase64(field))?;
    Key::try_from(bytes.as_slice()).map_err(|_| ScramCredentialsError::BadKeyLength(field))
}

/// Why a stored credential string did not parse as [`ScramCredentials`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScramCredentialsError {
    /// The string does not start with `SCRAM-SHA-256$`.
    #[error("SCRAM credentials do not start with \"SCRAM-SHA-256$\"")]
    UnknownScheme,
    /// The string is not `<iterations>:<salt>$<StoredKey>:<ServerKey>` after the scheme.
    #[error(
        "SCRAM credentials are not \"SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>\""
    )]
    Malformed,
    /// The iteration count is not a decimal number from 1 to 2^32 - 1.
    #[error("SCRAM iteration count is not a decimal number from 1 to 4294967295")]
    BadIterations,
    /// A field is not standard padded base64.
    #[error("SCRAM {0} is not standard base64")]
    BadBase64(&'static str),
    /// A key is not 32 bytes long.
    #[error("SCRAM {0} is not 32 bytes long")]
    BadKeyLength(&'static str),
}

/// The SCRAM-SHA-256 enhanced authenticator (RFC 5802, RFC 7677; MQTT 5 §4.12): a table of
/// [`ScramCredentials`] by username.
///
/// Each user's entry holds a salt, an iteration count, `StoredKey` and `ServerKey`, never the
/// password. The authenticator runs the server side of the exchange, carried in the
/// Authentication Data of CONNECT, AUTH and CONNACK:
///
/// ```text
/// Client                                                   Server
///   |  CONNECT  Authentication Method = "SCRAM-SHA-256"       |
///   |           Authentication Data   = client-first-message  |
///   |           "n,,n=<user>,r=<cnonce>"                      |
///   |-------------------------------------------------------->|  begin()
///   |                                                         |    -> Continue
///   |  AUTH 0x18  Authentication Data = server-first-message  |
///   |  "r=<cnonce><snonce>,s=<salt>,i=<iterations>"           |
///   |<--------------------------------------------------------|
///   |  AUTH 0x18  Authentication Data = client-final-message  |
///   |  "c=<base64(gs2 header)>,r=<cnonce><snonce>,p=<proof>"  |
///   |-------------------------------------------------------->|  step()
///   |                                                         |    -> Success
///   |  CONNACK 0x00  Authentication Data = server-final       |
///   |  "v=<server signature>"                                 |
///   |<--------------------------------------------------------|
///   |                 (or CONNACK 0x86 on Failure)            |
/// ```
///
/// A re-authentication (MQTT 5 §4.12.1) runs the same exchange, started by an AUTH 0x19 and
/// ended by an AUTH 0x00 instead of the CONNACK.
///
/// # What is supported
///
/// - GS2 header `n,,` and `y,,` (no channel binding is offered, so a client that says `y` has
///   nothing to downgrade from). `p=<cb-name>` (channel binding required) fails.
/// - An authorization identity `a=<authzid>` only when it names the authenticating user itself;
///   any other authzid fails, because the broker has no notion of acting on behalf of another
///   user.
/// - Usernames and authzids are decoded from their `=2C` (`,`) and `=3D` (`=`) escapes
///   (RFC 5802 §5.1); any other `=` sequence fails. Full SASLprep (RFC 4013) normalization is
///   out of scope: names are compared byte-wise as UTF-8, so a non-ASCII name must be stored in
///   the form clients send.
/// - The mandatory extension `m=` fails (RFC 5802 §5.1); other extensions are ignored.
///
/// # Hostile input
///
/// Every client message is bounded ([`SCRAM_MAX_MESSAGE_LEN`] bytes, usernames
/// [`SCRAM_MAX_USERNAME_LEN`] bytes) and anything malformed ends the exchange with
/// [`AuthStep::Failure`]. An unknown user gets a normal-looking server-first-message with a fake
/// salt (see [`ScramSha256::with_fake_salt_secret`]) and [`SCRAM_DEFAULT_ITERATIONS`] (or what
/// [`ScramSha256::with_fake_iterations`] set), and fails only at the final step, so the first
/// answer does not tell whether the user exists.
///
/// # Example
///
/// ```
/// use mqtt5_broker::{
///     AuthStep, EnhancedAuthenticator, RandomSource, SCRAM_DEFAULT_ITERATIONS, ScramCredentials,
///     ScramSha256,
/// };
///
/// // Provisioning: derive once, store the string (PostgreSQL's format), forget the password.
/// let creds = ScramCredentials::derive(b"pencil", b"0123456789abcdef", SCRAM_DEFAULT_ITERATIONS);
/// let stored = creds.to_string();
/// assert!(stored.starts_with("SCRAM-SHA-256$100000:"));
///
/// // Start-up: load the table.
/// let mut scram = ScramSha256::new();
/// scram.insert("user", stored.parse()?);
/// assert_eq!(scram.method(), "SCRAM-SHA-256");
///
/// // A CONNECT with Authentication Method "SCRAM-SHA-256" and a client-first-message.
/// struct Os; // the binary backs this with the OS generator
/// impl RandomSource for Os {
///     fn fill_bytes(&mut self, dest: &mut [u8]) {
///         dest.fill(0x5a)
///     }
/// }
/// let (mut exchange, step) = scram.begin("client-1", b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", &mut Os);
/// let AuthStep::Continue(server_first) = step else { panic!("{step:?}") };
/// assert!(server_first.starts_with(b"r=rOprNGfwEbeRWgbNEkqO"));
/// // The client's AUTH 0x18 carries the client-final-message to `exchange.step`: here one with
/// // a well-formed but wrong proof.
/// let server_first = String::from_utf8_lossy(&server_first);
/// let nonce = server_first.split(',').next().unwrap_or_default();
/// let client_final = format!("c=biws,{nonce},p={}=", "A".repeat(43));
/// assert_eq!(exchange.step(client_final.as_bytes()), AuthStep::Failure);
/// # Ok::<(), mqtt5_broker::ScramCredentialsError>(())
/// ```
#[derive(Clone)]
pub struct ScramSha256 {
    users: HashMap<String, ScramCredentials>,
    fake_salt_secret: Key,
    /// The iteration count an unknown user is shown.
    fake_iterations: u32,
}

impl Default for ScramSha256 {
    fn default() -> Self {
        Self {
            users: HashMap::new(),
            fake_salt_secret: [0; KEY_LEN],
            fake_iterations: SCRAM_DEFAULT_ITERATIONS,
        }
    }
}

impl ScramSha256 {
    /// An authenticator with no users, whose fake salts for unknown users are keyed with an
    /// all-zero secret: anyone who reads this source can compute them and so tell an unknown
    /// user from a known one. Use [`with_fake_salt_secret`](Self::with_fake_salt_secret) where
    /// that matters.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// An authenticator with no users whose fake salts are keyed with `secret`.
    ///
    /// An unknown user is answered with the salt `HMAC-SHA-256(secret, "mqtt5-scram-fake" ||
    /// username)` truncated to 16 bytes and [`SCRAM_DEFAULT_ITERATIONS`]: the same on every
    /// attempt, as a real user's would be. Pass 32 random bytes kept across restarts: a real
    /// user's salt never changes, so a fake salt that changes with each start of the process
    /// would tell an unknown user from a known one.
    #[must_use]
    pub fn with_fake_salt_secret(secret: [u8; 32]) -> Self {
        Self {
            fake_salt_secret: secret,
            ..Self::default()
        }
    }

    /// Shows unknown users `iterations` (at least [`SCRAM_MIN_ITERATIONS`]) instead of
    /// [`SCRAM_DEFAULT_ITERATIONS`]: pass the count new users' credentials are derived with,
    /// so that an unknown user looks like a known one.
    #[must_use]
    pub fn with_fake_iterations(mut self, iterations: u32) -> Self {
        self.fake_iterations = iterations.max(SCRAM_MIN_ITERATIONS);
        self
    }

    /// Adds or replaces a user, returning the credentials it had. `username` is compared
    /// byte-wise with the decoded name a client sends (no SASLprep).
    pub fn insert(
        &mut self,
        username: impl Into<String>,
        credentials: ScramCredentials,
    ) -> Option<ScramCredentials> {
        self.users.insert(username.into(), credentials)
    }

    /// Removes a user, returning its credentials. Exchanges already past `begin` keep the
    /// credentials they started with.
    pub fn remove(&mut self, username: &str) -> Option<ScramCredentials> {
        self.users.remove(username)
    }

    /// The number of users.
    #[must_use]
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// Whether there are no users.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// `begin` with a given server nonce part (the RFC 7677 test vector needs its own).
    fn begin_with_server_nonce(&self, data: &[u8], server_nonce: &str) -> ScramExchange {
        let Some(first) = ClientFirst::parse(data) else {
            return ScramExchange::failed();
        };
        let (salt, iterations, stored_key, server_key, known) =
            match self.users.get(&first.username) {
                Some(c) => (
                    c.salt.clone(),
                    c.iterations,
                    c.stored_key,
                    c.server_key,
                    true,
                ),
                None => (
                    self.fake_salt(&first.username),
                    self.fake_iterations,
                    [0; KEY_LEN],
                    [0; KEY_LEN],
                    false,
                ),
            };
        let nonce = format!("{}{server_nonce}", first.client_nonce);
        let server_first = format!("r={nonce},s={},i={iterations}", BASE64.encode(&salt));
        ScramExchange {
            state: State::AwaitingFinal(Box::new(AwaitingFinal {
                username: first.username,
                known,
                stored_key,
                server_key,
                gs2_header: first.gs2_header,
                client_first_bare: first.bare,
                server_first,
                nonce,
            })),
        }
    }

    fn fake_salt(&self, username: &str) -> Vec<u8> {
        hmac_sha256(
            &self.fake_salt_secret,
            &[FAKE_SALT_LABEL, username.as_bytes()],
        )
        .into_iter()
        .take(FAKE_SALT_LEN)
        .collect()
    }
}

impl fmt::Debug for ScramSha256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScramSha256")
            .field("users", &self.users.len())
            .finish_non_exhaustive()
    }
}

impl EnhancedAuthenticator for ScramSha256 {
    fn method(&self) -> &str {
        SCRAM_SHA_256
    }

    fn begin(
        &self,
        _client_id: &str,
        data: &[u8],
        random: &mut dyn RandomSource,
    ) -> (Box<dyn AuthExchange>, AuthStep) {
        let mut bytes = [0; SERVER_NONCE_BYTES];
        random.fill_bytes(&mut bytes);
        let exchange = self.begin_with_server_nonce(data, &BASE64.encode(bytes));
        let step = exchange.first_step();
        (Box::new(exchange), step)
    }
}

/// A parsed client-first-message (RFC 5802 §7).
#[derive(Debug)]
struct ClientFirst {
    /// The GS2 header exactly as sent, e.g. `n,,`.
    gs2_header: String,
    /// client-first-message-bare exactly as sent.
    bare: String,
    /// Decoded.
    username: String,
    client_nonce: String,
}

impl ClientFirst {
    fn parse(data: &[u8]) -> Option<Self> {
        if data.len() > SCRAM_MAX_MESSAGE_LEN {
            return None;
        }
        let msg = std::str::from_utf8(data).ok()?;
        // gs2-header = gs2-cbind-flag "," [ authzid ] ","
        let (cbind_flag, rest) = msg.split_once(',')?;
        if cbind_flag != "n" && cbind_flag != "y" {
            // "p=<cb-name>": channel binding is not offered. Anything else is malformed.
            return None;
        }
        let (authzid, bare) = rest.split_once(',')?;
        let gs2_header = msg.strip_suffix(bare)?;
        let authzid = if authzid.is_empty() {
            None
        } else {
            Some(decode_saslname(authzid.strip_prefix("a=")?)?)
        };

        // client-first-message-bare = [reserved-mext ","] username "," nonce ["," extensions]
        let mut attrs = bare.split(',');
        // A reserved-mext "m=..." fails here too: it is not "n=".
        let username = decode_saslname(attrs.next()?.strip_prefix("n=")?)?;
        if username.len() > SCRAM_MAX_USERNAME_LEN {
            return None;
        }
        let client_nonce = attrs.next()?.strip_prefix("r=")?;
        if !is_printable(client_nonce) {
            return None;
        }
        if !attrs.all(is_extension) {
            return None;
        }
        if authzid.is_some_and(|a| a != username) {
            return None;
        }
        Some(Self {
            gs2_header: gs2_header.to_owned(),
            bare: bare.to_owned(),
            username,
            client_nonce: client_nonce.to_owned(),
        })
    }
}

/// Decodes a `saslname` (RFC 5802 §7): one or more characters, `,` and `=` escaped as `=2C` and
/// `=3D`, no NUL. Any other `=` fails.
fn decode_saslname(s: &str) -> Option<String> {
    if s.is_empty() || s.contains('\0') {
        return None;
    }
    let mut chunks = s.split('=');
    let mut out = String::with_capacity(s.len());
    out.push_str(chunks.next()?);
    for chunk in chunks {
        if let Some(rest) = chunk.strip_prefix("2C") {
            out.push(',');
            out.push_str(rest);
        } else if let Some(rest) = chunk.strip_prefix("3D") {
            out.push('=');
            out.push_str(rest);
        } else {
            return None;
        }
    }
    Some(out)
}

/// `printable = %x21-2B / %x2D-7E` (RFC 5802 §7), at least one.
fn is_printable(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| matches!(b, 0x21..=0x2B | 0x2D..=0x7E))
}

/// `attr-val = ALPHA "=" value` with a non-empty value without NUL (RFC 5802 §7). Unknown
/// extensions are ignored once they pass this check.
fn is_extension(attr: &str) -> bool {
    let Some((name, value)) = attr.split_once('=') else {
        return false;
    };
    name.len() == 1
        && name.bytes().all(|b| b.is_ascii_alphabetic())
        && !value.is_empty()
        && !value.contains('\0')
}

/// The server side of one SCRAM-SHA-256 exchange.
struct ScramExchange {
    state: State,
}

enum State {
    /// The server-first-message is out; waiting for the client-final-message.
    AwaitingFinal(Box<AwaitingFinal>),
    /// Succeeded or failed: any further step fails.
    Done,
}

struct AwaitingFinal {
    username: String,
    /// Whether the user exists. An unknown user runs the same steps against zero keys and then
    /// fails.
    known: bool,
    stored_key: Key,
    server_key: Key,
    gs2_header: String,
    client_first_bare: String,
    server_first: String,
    /// The combined nonce, client part then server part.
    nonce: String,
}

impl ScramExchange {
    fn failed() -> Self {
        Self { state: State::Done }
    }

    fn first_step(&self) -> AuthStep {
        match &self.state {
            State::AwaitingFinal(s) => AuthStep::Continue(s.server_first.clone().into_bytes()),
            State::Done => AuthStep::Failure,
        }
    }
}

impl AuthExchange for ScramExchange {
    fn step(&mut self, data: &[u8]) -> AuthStep {
        let State::AwaitingFinal(s) = std::mem::replace(&mut self.state, State::Done) else {
            return AuthStep::Failure;
        };
        match s.verify_final(data) {
            Some(server_final) => AuthStep::Success {
                data: Some(server_final.into_bytes()),
                username: s.username,
            },
            None => AuthStep::Failure,
        }
    }
}

impl AwaitingFinal {
    /// Checks a client-final-message and returns the server-final-message.
    fn verify_final(&self, data: &[u8]) -> Option<String> {
        if data.len() > SCRAM_MAX_MESSAGE_LEN {
            return None;
        }
        let msg = std::str::from_utf8(data).ok()?;
        // client-final-message = client-final-message-without-proof "," proof
        let (without_proof, proof) = msg.rsplit_once(',')?;
        let proof = BASE64.decode(proof.strip_prefix("p=")?).ok()?;
        let proof = Key::try_from(proof.as_slice()).ok()?;

        // client-final-message-without-proof = channel-binding "," nonce ["," extensions]
        let mut attrs = without_proof.split(',');
        let channel_binding = BASE64.decode(attrs.next()?.strip_prefix("c=")?).ok()?;
        if channel_binding != self.gs2_header.as_bytes() {
            return None;
        }
        if attrs.next()?.strip_prefix("r=")? != self.nonce {
            return None;
        }
        if !attrs.all(|a| is_extension(a) && !a.starts_with("p=")) {
            return None;
        }

        // AuthMessage = client-first-message-bare "," server-first-message ","
        //               client-final-message-without-proof
        let auth_message: [&[u8]; 5] = [
            self.client_first_bare.as_bytes(),
            b",",
            self.server_first.as_bytes(),
            b",",
            without_proof.as_bytes(),
        ];
        // ClientKey = ClientProof XOR HMAC(StoredKey, AuthMessage); check H(ClientKey).
        let mut client_key = proof;
        let client_signature = hmac_sha256(&self.stored_key, &auth_message);
        for (k, s) in client_key.iter_mut().zip(client_signature) {
            *k ^= s;
        }
        let proof_ok = sha256(&client_key).ct_eq(&self.stored_key).to_bool();
        if !(proof_ok && self.known) {
            return None;
        }
        let server_signature = hmac_sha256(&self.server_key, &auth_message);
        Some(format!("v={}", BASE64.encode(server_signature)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Fills with 0, 1, 2, ... from a starting byte.
    struct CountingRandom(u8);

    impl RandomSource for CountingRandom {
        fn fill_bytes(&mut self, dest: &mut [u8]) {
            for b in dest {
                *b = self.0;
                self.0 = self.0.wrapping_add(1);
            }
        }
    }

    const RFC_CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const RFC_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const RFC_SERVER_FIRST: &str = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const RFC_CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,\
                                    p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    /// RFC 7677 §3. (`6rriTRBi23WpRR/wKOjS…`, sometimes quoted, is not the RFC's value.)
    const RFC_SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    /// Few iterations: PBKDF2 is slow in debug builds.
    const TEST_ITERATIONS: u32 = 16;

    fn rfc_credentials() -> ScramCredentials {
        let salt = BASE64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        ScramCredentials::derive(b"pencil", &salt, 4096)
    }

    fn authenticator() -> ScramSha256 {
        let mut scram = ScramSha256::new();
        scram.insert(
            "user",
            ScramCredentials::derive(b"pencil", b"saltsaltsaltsalt", TEST_ITERATIONS),
        );
        scram
    }

    /// A minimal, independent SCRAM-SHA-256 client computation: returns the
    /// client-final-message and the server-final-message it expects.
    fn client_final(
        password: &[u8],
        gs2_header: &str,
        client_first_bare: &str,
        server_first: &str,
    ) -> (String, String) {
        client_final_with_extensions(password, gs2_header, client_first_bare, server_first, "")
    }

    /// [`client_final`] with `extensions` (",x=1,...") after the nonce, covered by the proof.
    fn client_final_with_extensions(
        password: &[u8],
        gs2_header: &str,
        client_first_bare: &str,
        server_first: &str,
        extensions: &str,
    ) -> (String, String) {
        let mut attrs = server_first.split(',');
        let nonce = attrs.next().unwrap().strip_prefix("r=").unwrap();
        let salt = BASE64
            .decode(attrs.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        let iterations: u32 = attrs
            .next()
            .unwrap()
            .strip_prefix("i=")
            .unwrap()
            .parse()
            .unwrap();
        let salted = pbkdf2::pbkdf2_hmac_array::<Sha256, 32>(password, &salt, iterations);
        let mac = |key: &[u8], msg: &[u8]| -> Vec<u8> {
            let mut m = <HmacSha256 as hmac::KeyInit>::new_from_slice(key).unwrap();
            m.update(msg);
            m.finalize().into_bytes().to_vec()
        };
        let client_key = mac(&salted, b"Client Key");
        let stored_key = Sha256::digest(&client_key);
        let server_key = mac(&salted, b"Server Key");
        let without_proof = format!("c={},r={nonce}{extensions}", BASE64.encode(gs2_header));
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = mac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .iter()
            .zip(&signature)
            .map(|(a, b)| a ^ b)
            .collect();
        (
            format!("{without_proof},p={}", BASE64.encode(proof)),
            format!(
                "v={}",
                BASE64.encode(mac(&server_key, auth_message.as_bytes()))
            ),
        )
    }

    fn begin(scram: &ScramSha256, client_first: &[u8]) -> (Box<dyn AuthExchange>, AuthStep) {
        scram.begin("client", client_first, &mut CountingRandom(0))
    }

    fn continue_data(step: AuthStep) -> String {
        match step {
            AuthStep::Continue(data) => String::from_utf8(data).unwrap(),
            other => panic!("expected Continue, got {other:?}"),
        }
    }

    /// Runs a whole exchange with `password` from a client-first-message.
    fn run(scram: &ScramSha256, password: &[u8], client_first: &str) -> AuthStep {
        let (mut exchange, step) = begin(scram, client_first.as_bytes());
        let server_first = continue_data(step);
        let (gs2, bare) = client_first.split_at(client_first.find("n=").unwrap());
        let (final_msg, _) = client_final(password, gs2, bare, &server_first);
        exchange.step(final_msg.as_bytes())
    }

    fn success(username: &str, server_final: &str) -> AuthStep {
        AuthStep::Success {
            data: Some(server_final.as_bytes().to_vec()),
            username: username.to_owned(),
        }
    }

    #[test]
    fn rfc7677_vector_authenticates_through_the_server() {
        let mut scram = ScramSha256::new();
        scram.insert("user", rfc_credentials());
        let mut exchange =
            scram.begin_with_server_nonce(RFC_CLIENT_FIRST.as_bytes(), RFC_SERVER_NONCE);
        assert_eq!(
            exchange.first_step(),
            AuthStep::Continue(RFC_SERVER_FIRST.as_bytes().to_vec())
        );
        assert_eq!(
            exchange.step(RFC_CLIENT_FINAL.as_bytes()),
            success("user", RFC_SERVER_FINAL)
        );
    }

    #[test]
    fn rfc7677_vector_client_proof_and_server_signature() {
        let (final_msg, server_final) = client_final(
            b"pencil",
            "n,,",
            "n=user,r=rOprNGfwEbeRWgbNEkqO",
            RFC_SERVER_FIRST,
        );
        assert_eq!(final_msg, RFC_CLIENT_FINAL);
        assert_eq!(server_final, RFC_SERVER_FINAL);
    }

    #[test]
    fn full_exchange_succeeds_with_server_signature() {
        let scram = authenticator();
        let client_first = "n,,n=user,r=abcdefghijkl";
        let (mut exchange, step) = begin(&scram, client_first.as_bytes());
        let server_first = continue_data(step);
        let (final_msg, server_final) =
            client_final(b"pencil", "n,,", "n=user,r=abcdefghijkl", &server_first);
        assert_eq!(
            exchange.step(final_msg.as_bytes()),
            success("user", &server_final)
        );
    }

    #[test]
    fn server_first_carries_nonce_salt_and_iterations() {
        let scram = authenticator();
        let server_first = continue_data(begin(&scram, b"n,,n=user,r=cnonce").1);
        let mut attrs = server_first.split(',');
        let nonce = attrs.next().unwrap().strip_prefix("r=cnonce").unwrap();
        assert_eq!(nonce, BASE64.encode((0..24).collect::<Vec<u8>>()));
        assert_eq!(attrs.next(), Some("s=c2FsdHNhbHRzYWx0c2FsdA=="));
        assert_eq!(attrs.next(), Some("i=16"));
        assert_eq!(attrs.next(), None);
    }

    #[test]
    fn server_nonce_is_printable_and_at_least_18_bytes() {
        let scram = authenticator();
        for start in [0, 0x80, 0xF0] {
            let (_, step) = scram.begin("c", b"n,,n=user,r=x", &mut CountingRandom(start));
            let server_first = continue_data(step);
            let nonce = server_first.split(',').next().unwrap();
            let server_part = nonce.strip_prefix("r=x").unwrap();
            assert!(is_printable(server_part), "{server_part}");
            assert!(BASE64.decode(server_part).unwrap().len() >= 18);
        }
    }

    #[test]
    fn wrong_password_fails() {
        assert_eq!(
            run(&authenticator(), b"pencil2", "n,,n=user,r=abc"),
            AuthStep::Failure
        );
    }

    #[test]
    fn unknown_user_gets_plausible_challenge_then_fails() {
        let scram = authenticator();
        let first = continue_data(begin(&scram, b"n,,n=mallory,r=abc").1);
        let again = continue_data(begin(&scram, b"n,,n=mallory,r=abc").1);
        let other = continue_data(begin(&scram, b"n,,n=eve,r=abc").1);
        assert_eq!(first, again, "the fake salt is stable");
        assert_ne!(first, other, "the fake salt depends on the user");
        let mut attrs = first.split(',');
        assert!(attrs.next().unwrap().starts_with("r=abc"));
        let salt = BASE64
            .decode(attrs.next().unwrap().strip_prefix("s=").unwrap())
            .unwrap();
        assert_eq!(salt.len(), FAKE_SALT_LEN);
        assert_eq!(
            attrs.next(),
            Some(format!("i={SCRAM_DEFAULT_ITERATIONS}").as_str())
        );
        // The right password of someone else, or any password, fails at the final step.
        assert_eq!(
            run(&scram, b"pencil", "n,,n=mallory,r=abc"),
            AuthStep::Failure
        );
    }

    #[test]
    fn unknown_users_are_shown_the_configured_iterations() {
        let scram = ScramSha256::with_fake_salt_secret([7; 32]).with_fake_iterations(123_456);
        let first = continue_data(begin(&scram, b"n,,n=mallory,r=abc").1);
        assert!(first.ends_with(",i=123456"), "{first}");
        // Zero is raised to the minimum, as `derive` does.
        let scram = ScramSha256::new().with_fake_iterations(0);
        let first = continue_data(begin(&scram, b"n,,n=mallory,r=abc").1);
        assert!(
            first.ends_with(&format!(",i={SCRAM_MIN_ITERATIONS}")),
            "{first}"
        );
    }

    #[test]
    fn fake_salt_depends_on_the_secret() {
        let public = ScramSha256::new();
        let secret = ScramSha256::with_fake_salt_secret([7; 32]);
        assert_ne!(public.fake_salt("mallory"), secret.fake_salt("mallory"));
    }

    #[test]
    fn removed_user_fails_like_an_unknown_one() {
        let mut scram = authenticator();
        assert!(scram.remove("user").is_some());
        assert!(scram.is_empty());
        assert_eq!(run(&scram, b"pencil", "n,,n=user,r=abc"), AuthStep::Failure);
    }

    #[test]
    fn tampered_nonce_fails() {
        let scram = authenticator();
        let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let tampered = server_first.replacen("r=abc", "r=abd", 1);
        // The proof is computed over the tampered server-first, so only the nonce differs.
        let (final_msg, _) = client_final(b"pencil", "n,,", "n=user,r=abc", &tampered);
        assert_eq!(exchange.step(final_msg.as_bytes()), AuthStep::Failure);
    }

    #[test]
    fn truncated_nonce_fails() {
        let scram = authenticator();
        let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let (final_msg, _) = client_final(b"pencil", "n,,", "n=user,r=abc", &server_first);
        let nonce = server_first.split(',').next().unwrap();
        let truncated = final_msg.replacen(nonce, "r=abc", 1);
        assert_eq!(exchange.step(truncated.as_bytes()), AuthStep::Failure);
    }

    #[test]
    fn channel_binding_must_match_the_gs2_header() {
        let scram = authenticator();
        // The client said "n,," but claims "y,," (eSws) in c=, with a proof that matches it.
        let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let (final_msg, _) = client_final(b"pencil", "y,,", "n=user,r=abc", &server_first);
        assert!(final_msg.starts_with("c=eSws,"));
        assert_eq!(exchange.step(final_msg.as_bytes()), AuthStep::Failure);

        for c in ["c=", "c=biws=", "c=!!!!", "c=bix3", "d=biws"] {
            let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
            let server_first = continue_data(step);
            let (final_msg, _) = client_final(b"pencil", "n,,", "n=user,r=abc", &server_first);
            let bad = final_msg.replacen("c=biws", c, 1);
            assert_eq!(exchange.step(bad.as_bytes()), AuthStep::Failure, "{c}");
        }
    }

    #[test]
    fn y_flag_without_channel_binding_is_accepted() {
        let step = run(&authenticator(), b"pencil", "y,,n=user,r=abc");
        assert!(matches!(step, AuthStep::Success { .. }), "{step:?}");
    }

    #[test]
    fn channel_binding_request_fails() {
        let (_, step) = begin(&authenticator(), b"p=tls-unique,,n=user,r=abc");
        assert_eq!(step, AuthStep::Failure);
    }

    #[test]
    fn authzid_is_accepted_only_for_the_user_itself() {
        let scram = authenticator();
        let step = run(&scram, b"pencil", "n,a=user,n=user,r=abc");
        assert_success(&step, "user");
        assert_eq!(
            begin(&scram, b"n,a=admin,n=user,r=abc").1,
            AuthStep::Failure
        );
        assert_eq!(begin(&scram, b"n,a=,n=user,r=abc").1, AuthStep::Failure);
        assert_eq!(begin(&scram, b"n,b=user,n=user,r=abc").1, AuthStep::Failure);
    }

    #[track_caller]
    fn assert_success(step: &AuthStep, username: &str) {
        assert!(
            matches!(step, AuthStep::Success { data: Some(d), username: u }
                if u == username && d.starts_with(b"v=")),
            "{step:?}"
        );
    }

    #[test]
    fn escaped_username_is_decoded() {
        let mut scram = ScramSha256::new();
        scram.insert(
            "a,b=c",
            ScramCredentials::derive(b"pw", b"salt", TEST_ITERATIONS),
        );
        let step = run(&scram, b"pw", "n,,n=a=2Cb=3Dc,r=abc");
        assert_success(&step, "a,b=c");
    }

    #[test]
    fn saslname_decoding() {
        assert_eq!(decode_saslname("user").as_deref(), Some("user"));
        assert_eq!(decode_saslname("=2C=3D").as_deref(), Some(",="));
        assert_eq!(decode_saslname("é=3Dx").as_deref(), Some("é=x"));
        for bad in ["", "=", "a=", "=2c", "=3d", "=41", "a=2", "x\0y", "=2=3D"] {
            assert_eq!(decode_saslname(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn malformed_client_first_fails() {
        let scram = authenticator();
        let cases: &[&[u8]] = &[
            b"",
            b"n",
            b"n,",
            b"n,,",
            b"n,,n=user",
            b"n,,n=user,",
            b"n,,n=user,r=",
            b"n,,n=user,r=a b",
            b"n,,n=user,r=abc,",
            b"n,,n=user,r=abc,x",
            b"n,,n=user,r=abc,xy=1",
            b"n,,n=user,r=abc,x=",
            b"n,,r=abc,n=user",
            b"n,,m=ext,n=user,r=abc",
            b"n,,n=,r=abc",
            b"n,,n=us=41er,r=abc",
            b"n,,user,r=abc",
            b"x,,n=user,r=abc",
            b"N,,n=user,r=abc",
            b",,n=user,r=abc",
            b"n,,n=user,r=abc\0",
            b"n,,n=\xff,r=abc",
            b"n,,n=user,r=\xc3\xa9",
            b"n,n=user,r=abc",
        ];
        for case in cases {
            let (mut exchange, step) = begin(&scram, case);
            assert_eq!(
                step,
                AuthStep::Failure,
                "{:?}",
                String::from_utf8_lossy(case)
            );
            assert_eq!(exchange.step(b"c=biws,r=x,p=AAAA"), AuthStep::Failure);
        }
    }

    #[test]
    fn extensions_are_ignored() {
        let step = run(&authenticator(), b"pencil", "n,,n=user,r=abc,x=1,Y=z=2");
        assert_success(&step, "user");
    }

    #[test]
    fn malformed_client_final_fails() {
        let scram = authenticator();
        let (_, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let (good, _) = client_final(b"pencil", "n,,", "n=user,r=abc", &server_first);
        let (without_proof, proof) = good.rsplit_once(",p=").unwrap();
        let cases = [
            String::new(),
            without_proof.to_owned(),
            format!("{without_proof},p="),
            format!("{without_proof},p=!!"),
            format!("{without_proof},p={}", BASE64.encode([0; 31])),
            format!("{without_proof},p={}", BASE64.encode([0; 33])),
            format!("{without_proof},p={proof},x=1"),
            format!("{without_proof},p={proof},"),
            format!("{without_proof},x=,p={proof}"),
            format!("{without_proof},p={proof},p={proof}"),
            format!("p={proof}"),
            format!("c=biws,p={proof}"),
            format!("r=abc,{without_proof},p={proof}"),
            format!("{without_proof},p={}", proof.trim_end_matches('=')),
            format!("{without_proof},p={proof}\0"),
        ];
        for case in cases {
            let (mut exchange, _) = begin(&scram, b"n,,n=user,r=abc");
            assert_eq!(exchange.step(case.as_bytes()), AuthStep::Failure, "{case}");
        }
        // Extensions before the proof are allowed (and covered by the proof).
        let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let (final_msg, server_final) = client_final_with_extensions(
            b"pencil",
            "n,,",
            "n=user,r=abc",
            &server_first,
            ",x=1,y=2",
        );
        assert_eq!(
            exchange.step(final_msg.as_bytes()),
            success("user", &server_final)
        );
    }

    #[test]
    fn oversized_messages_fail() {
        let scram = authenticator();
        let long_nonce = "x".repeat(SCRAM_MAX_MESSAGE_LEN);
        let (_, step) = begin(&scram, format!("n,,n=user,r={long_nonce}").as_bytes());
        assert_eq!(step, AuthStep::Failure);

        // Exactly at the limit is read.
        let nonce = "x".repeat(SCRAM_MAX_MESSAGE_LEN - "n,,n=user,r=".len());
        let (_, step) = begin(&scram, format!("n,,n=user,r={nonce}").as_bytes());
        assert!(matches!(step, AuthStep::Continue(_)));

        // A client-final-message over the limit fails even with a valid proof.
        let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let (long_final, _) = client_final_with_extensions(
            b"pencil",
            "n,,",
            "n=user,r=abc",
            &server_first,
            &format!(",x={long_nonce}"),
        );
        assert_eq!(exchange.step(long_final.as_bytes()), AuthStep::Failure);
        // The same with a shorter extension passes.
        let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let (final_msg, _) = client_final_with_extensions(
            b"pencil",
            "n,,",
            "n=user,r=abc",
            &server_first,
            &format!(",x={}", "x".repeat(1000)),
        );
        assert_success(&exchange.step(final_msg.as_bytes()), "user");
    }

    #[test]
    fn username_length_is_bounded() {
        let mut scram = authenticator();
        let at_limit = "u".repeat(SCRAM_MAX_USERNAME_LEN);
        scram.insert(
            at_limit.clone(),
            ScramCredentials::derive(b"pw", b"salt", TEST_ITERATIONS),
        );
        let step = run(&scram, b"pw", &format!("n,,n={at_limit},r=abc"));
        assert_success(&step, &at_limit);

        let over = "u".repeat(SCRAM_MAX_USERNAME_LEN + 1);
        assert_eq!(
            begin(&scram, format!("n,,n={over},r=abc").as_bytes()).1,
            AuthStep::Failure
        );
        // The limit applies to the decoded name: 256 escaped commas are 768 bytes on the wire.
        let escaped = "=2C".repeat(SCRAM_MAX_USERNAME_LEN);
        assert!(matches!(
            begin(&scram, format!("n,,n={escaped},r=abc").as_bytes()).1,
            AuthStep::Continue(_)
        ));
    }

    #[test]
    fn step_after_completion_fails() {
        let scram = authenticator();
        let (mut exchange, step) = begin(&scram, b"n,,n=user,r=abc");
        let server_first = continue_data(step);
        let (final_msg, _) = client_final(b"pencil", "n,,", "n=user,r=abc", &server_first);
        assert!(matches!(
            exchange.step(final_msg.as_bytes()),
            AuthStep::Success { .. }
        ));
        assert_eq!(exchange.step(final_msg.as_bytes()), AuthStep::Failure);

        let (mut exchange, _) = begin(&scram, b"n,,n=user,r=abc");
        assert_eq!(exchange.step(b"garbage"), AuthStep::Failure);
        assert_eq!(exchange.step(final_msg.as_bytes()), AuthStep::Failure);
    }

    #[test]
    fn method_is_scram_sha_256() {
        assert_eq!(ScramSha256::new().method(), "SCRAM-SHA-256");
    }

    #[test]
    fn credentials_string_roundtrips() {
        let creds = rfc_credentials();
        let s = creds.to_string();
        assert!(
            s.starts_with("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$"),
            "{s}"
        );
        assert_eq!(s.parse::<ScramCredentials>().unwrap(), creds);
        assert_eq!(creds.iterations(), 4096);
        assert_eq!(creds.salt().len(), 16);
    }

    #[test]
    fn derive_raises_zero_iterations_to_the_minimum() {
        let creds = ScramCredentials::derive(b"pw", b"salt", 0);
        assert_eq!(creds.iterations(), SCRAM_MIN_ITERATIONS);
        assert_eq!(creds, ScramCredentials::derive(b"pw", b"salt", 1));
    }

    #[test]
    fn credentials_parse_errors() {
        use ScramCredentialsError::*;
        let key = BASE64.encode([1; 32]);
        let cases = [
            (String::new(), UnknownScheme),
            (
                format!("SCRAM-SHA-1$4096:c2FsdA==${key}:{key}"),
                UnknownScheme,
            ),
            (
                format!("scram-sha-256$4096:c2FsdA==${key}:{key}"),
                UnknownScheme,
            ),
            ("SCRAM-SHA-256$".to_owned(), Malformed),
            (format!("SCRAM-SHA-256$4096:c2FsdA==${key}"), Malformed),
            (format!("SCRAM-SHA-256$4096${key}:{key}"), Malformed),
            (
                format!("SCRAM-SHA-256$0:c2FsdA==${key}:{key}"),
                BadIterations,
            ),
            (
                format!("SCRAM-SHA-256$+1:c2FsdA==${key}:{key}"),
                BadIterations,
            ),
            (
                format!("SCRAM-SHA-256$:c2FsdA==${key}:{key}"),
                BadIterations,
            ),
            (
                format!("SCRAM-SHA-256$4294967296:c2FsdA==${key}:{key}"),
                BadIterations,
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA${key}:{key}"),
                BadBase64("salt"),
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==$!:{key}"),
                BadBase64("StoredKey"),
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==${key}:{key}$"),
                BadBase64("ServerKey"),
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==$AAAA:{key}"),
                BadKeyLength("StoredKey"),
            ),
            (
                format!("SCRAM-SHA-256$4096:c2FsdA==${key}:AAAA"),
                BadKeyLength("ServerKey"),
            ),
        ];
        for (s, err) in cases {
            assert_eq!(s.parse::<ScramCredentials>(), Err(err), "{s}");
        }
        let ok = format!("SCRAM-SHA-256$4294967295:c2FsdA==${key}:{key}");
        assert_eq!(ok.parse::<ScramCredentials>().unwrap().to_string(), ok);
    }

    #[test]
    fn debug_prints_no_keys() {
        let creds = rfc_credentials();
        let debug = format!("{creds:?}");
        assert!(!debug.contains(&BASE64.encode(creds.stored_key)));
        assert!(!debug.contains(&format!("{:?}", creds.stored_key)));
        assert_eq!(
            format!("{:?}", authenticator()),
            "ScramSha256 { users: 1, .. }"
        );
    }

    proptest! {
        #[test]
        fn begin_never_panics(data in proptest::collection::vec(any::<u8>(), 0..600)) {
            let scram = authenticator();
            let (mut exchange, _) = begin(&scram, &data);
            let _ = exchange.step(&data);
        }

        #[test]
        fn near_valid_client_first_never_panics(
            s in "[nyp]?(=[a-z-]{0,4})?,(a=[a-z=23CD]{0,6})?,([nm]=[a-z=23CD,]{0,8})?,?(r=[!-~]{0,8})?(,[a-zA-Z]=[a-z=,]{0,4}){0,2}",
        ) {
            let scram = authenticator();
            let (mut exchange, step) = begin(&scram, s.as_bytes());
            if let AuthStep::Continue(data) = step {
                prop_assert!(data.starts_with(b"r="));
            }
            let _ = exchange.step(s.as_bytes());
        }

        #[test]
        fn step_never_panics(
            known in any::<bool>(),
            tail in "(c=[a-zA-Z0-9+/=]{0,8})?,?(r=[!-~]{0,40})?(,[a-z]=[!-~]{0,8}){0,2},?(p=[a-zA-Z0-9+/=]{0,48})?",
            bytes in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let scram = authenticator();
            let first: &[u8] = if known { b"n,,n=user,r=abc" } else { b"n,,n=nobody,r=abc" };
            for data in [tail.as_bytes(), &bytes] {
                let (mut exchange, step) = begin(&scram, first);
                prop_assert!(matches!(step, AuthStep::Continue(_)));
                prop_assert_eq!(exchange.step(data), AuthStep::Failure);
                prop_assert_eq!(exchange.step(data), AuthStep::Failure);
            }
        }
    }
}
