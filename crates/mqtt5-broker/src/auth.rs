//! Authentication: the [`Authenticator`] for username and password, and the
//! [`EnhancedAuthenticator`] for the AUTH exchange (MQTT 5 §4.12).

use crate::random::RandomSource;

/// Who is asking: the identity a CONNECT presents, as the authenticator and the authorizer see
/// it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInfo<'a> {
    /// The client identifier (assigned by the server when the client sent an empty one).
    pub client_id: &'a str,
    /// The User Name of the CONNECT, or the one an enhanced authentication established.
    pub username: Option<&'a str>,
}

/// The verdict of an [`Authenticator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthVerdict {
    /// The client may connect.
    Allow,
    /// Unknown user or wrong password: CONNACK 0x86 (MQTT 5) or return code 4 (3.1.1).
    BadCredentials,
    /// The client is known but may not connect (anonymous access disabled, a banned user):
    /// CONNACK 0x87 (MQTT 5) or return code 5 (3.1.1).
    NotAuthorized,
    /// The password could not be checked now (the checkers are overloaded): CONNACK 0x89
    /// (MQTT 5) or return code 3 (3.1.1). Not counted as a failed login.
    Busy,
}

/// How the core checks the User Name and Password of a CONNECT.
pub enum Passwords {
    /// No users are configured: a client that presents a User Name is refused with 0x86
    /// (3.1.1: return code 4), unless its listener ignores credentials. Authentication fails
    /// closed.
    NoUsers,
    /// The core asks this authenticator itself, on the caller's thread (fine for cheap
    /// checks and for tests; an argon2 check takes milliseconds).
    Inline(Box<dyn Authenticator>),
    /// The driver checks passwords off the core's thread: the core emits
    /// [`crate::Action::CheckPassword`] and waits for
    /// [`crate::Broker::handle_password_verdict`] before it answers the CONNECT.
    Deferred,
}

impl core::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::NoUsers => "NoUsers",
            Self::Inline(_) => "Inline",
            Self::Deferred => "Deferred",
        })
    }
}

/// Checks the User Name and Password of a CONNECT (MQTT 5 §3.1.3.5, §3.1.3.6).
///
/// The core calls it once per CONNECT that carries no Authentication Method. Anonymous access
/// (no User Name) is decided by the broker's configuration before the authenticator is asked.
pub trait Authenticator: Send {
    /// Checks one client's credentials. `password` is the raw Password field.
    fn authenticate(&self, client: &ClientInfo<'_>, password: Option<&[u8]>) -> AuthVerdict;
}

/// One step of an enhanced authentication exchange (MQTT 5 §4.12).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthStep {
    /// Send AUTH with reason 0x18 (Continue authentication) carrying this Authentication Data,
    /// and wait for the client's next AUTH.
    Continue(Vec<u8>),
    /// The client is authenticated. `data` goes into the CONNACK (or the AUTH 0x00 of a
    /// re-authentication) as Authentication Data; `username` is the identity it proved, used
    /// by the authorizer.
    Success {
        /// Final Authentication Data for the client, if the method has any.
        data: Option<Vec<u8>>,
        /// The user the exchange authenticated.
        username: String,
    },
    /// Authentication failed: CONNACK 0x86 (or DISCONNECT 0x86 during re-authentication).
    Failure,
}

/// An enhanced authentication method such as SCRAM-SHA-256 (MQTT 5 §4.12).
pub trait EnhancedAuthenticator: Send {
    /// The Authentication Method name this authenticator serves, e.g. `"SCRAM-SHA-256"`.
    fn method(&self) -> &str;

    /// Starts an exchange with the Authentication Data of a CONNECT (or of an AUTH 0x19 that
    /// starts a re-authentication). Returns the exchange state, kept by the core for this
    /// connection, and the first step.
    fn begin(
        &self,
        client_id: &str,
        data: &[u8],
        random: &mut dyn RandomSource,
    ) -> (Box<dyn AuthExchange>, AuthStep);
}

/// The server side of one enhanced authentication exchange in progress.
pub trait AuthExchange: Send {
    /// Takes the Authentication Data of the client's next AUTH 0x18 and returns the next step.
    /// After `Success` or `Failure` the core drops the exchange.
    fn step(&mut self, data: &[u8]) -> AuthStep;
}
