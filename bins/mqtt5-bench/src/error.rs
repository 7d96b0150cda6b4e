//! The tool's errors.

use std::io;

/// Why a run failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum Error {
    /// A socket, file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        source: io::Error,
    },
    /// The broker sent bytes the codec refuses.
    #[error("malformed packet from the broker: {0}")]
    Codec(#[from] mqtt5_codec::Error),
    /// The broker answered, but not as the scenario needs (a refused CONNECT, a missing
    /// session, an unexpected packet).
    #[error("{0}")]
    Protocol(String),
    /// A broker process could not be started or did not come up.
    #[error("{0}")]
    Broker(String),
}

/// A result of this tool.
pub(crate) type Result<T> = std::result::Result<T, Error>;

/// Adds what was being done to an I/O error.
pub(crate) trait Context<T> {
    /// Wraps the error with `what`.
    fn context(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|source| Error::Io {
            context: what(),
            source,
        })
    }
}
