//! The crate's one error type: either the connection failed, or a line broke the protocol.
//!
//! The difference decides what happens next, everywhere in the crate: after a
//! [`Error::Protocol`] the connection is still fine (answer `ERR`, read the next line); after an
//! [`Error::Io`] it is not (clean up, and never let it affect the other clients).

use std::fmt;
use std::io;

use crate::protocol::ProtocolError;

#[derive(Debug)]
pub enum Error {
    /// The socket failed or was closed: this connection is over.
    Io(io::Error),
    /// One line was not valid `upcall/1`: reject it, keep the connection.
    Protocol(ProtocolError),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io(error) => write!(f, "{error}"),
            Error::Protocol(error) => write!(f, "{error}"),
        }
    }
}

impl Error {
    /// A write (or read) that gave up after its timeout: the peer stopped reading (or talking).
    /// Linux reports it as `WouldBlock` ("Resource temporarily unavailable"), other systems as
    /// `TimedOut`.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Io(error) if matches!(
            error.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        ))
    }
}

impl std::error::Error for Error {}

impl From<io::Error> for Error {
    fn from(error: io::Error) -> Error {
        Error::Io(error)
    }
}

impl From<ProtocolError> for Error {
    fn from(error: ProtocolError) -> Error {
        Error::Protocol(error)
    }
}
