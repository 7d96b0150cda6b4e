//! MQTT over WebSocket (MQTT 5 §6): the HTTP upgrade and the framing, with tungstenite.
//!
//! tungstenite works on a `Read + Write` stream. Here that stream is a [`Pipe`] of two
//! in-memory buffers, so the event loop keeps owning the socket (and any TLS session under
//! it): bytes read from the socket go into the pipe's input, tungstenite turns them into
//! MQTT bytes, and what tungstenite writes (the handshake response, frames, pongs) comes out
//! of the pipe's output for the event loop to send.
//!
//! - The request must be for the listener's path (default `/mqtt`); another path gets 404.
//! - When the client offers the `mqtt` subprotocol, the response selects it
//!   (`[MQTT-6.0.0-3]`... MQTT 5 §6.0: the client includes `mqtt`).
//! - MQTT travels in binary frames; a text frame closes the connection (`[MQTT-6.0.0-1]`).
//!   A packet may span frames and a frame may hold several packets (`[MQTT-6.0.0-2]`): the
//!   frames' payloads are one byte stream to the MQTT decoder.

use std::io::{self, Read, Write};

use bytes::{Buf, BytesMut};
use tungstenite::Message;
use tungstenite::handshake::HandshakeError;
use tungstenite::handshake::server::{ErrorResponse, Request, Response, ServerHandshake};
use tungstenite::http::{HeaderValue, StatusCode};
use tungstenite::protocol::WebSocket;

/// Two in-memory buffers standing in for the socket.
#[derive(Debug, Default)]
pub(crate) struct Pipe {
    /// Bytes from the client, not yet consumed by tungstenite.
    input: BytesMut,
    /// Bytes tungstenite wrote, not yet sent.
    output: BytesMut,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.advance(n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.output.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Checks the upgrade request: the path, and the `mqtt` subprotocol.
pub(crate) struct Upgrade {
    path: String,
}

impl tungstenite::handshake::server::Callback for Upgrade {
    fn on_request(
        self,
        request: &Request,
        mut response: Response,
    ) -> Result<Response, ErrorResponse> {
        if request.uri().path() != self.path {
            let mut refusal = ErrorResponse::new(Some(format!(
                "no MQTT endpoint at {}",
                request.uri().path()
            )));
            *refusal.status_mut() = StatusCode::NOT_FOUND;
            return Err(refusal);
        }
        let offers_mqtt = request
            .headers()
            .get_all("Sec-WebSocket-Protocol")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|p| p.trim().eq_ignore_ascii_case("mqtt"));
        if offers_mqtt {
            response
                .headers_mut()
                .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        }
        Ok(response)
    }
}

/// The WebSocket layer of one connection.
pub(crate) enum WsState {
    /// The HTTP upgrade is in progress.
    Handshake(Option<Box<tungstenite::handshake::MidHandshake<ServerHandshake<Pipe, Upgrade>>>>),
    /// Frames flow.
    Open(Box<WebSocket<Pipe>>),
    /// Closed or failed: nothing more flows.
    Done,
}

/// What feeding bytes to the layer produced.
#[derive(Debug, Default)]
pub(crate) struct Fed {
    /// The peer closed the WebSocket (or the upgrade failed): end the connection.
    pub(crate) closed: bool,
    /// Why, for the log, when it failed.
    pub(crate) error: Option<String>,
}

impl WsState {
    /// A new connection on a WebSocket listener serving `path`.
    pub(crate) fn new(path: &str) -> Self {
        let upgrade = Upgrade {
            path: path.to_owned(),
        };
        match ServerHandshake::start(Pipe::default(), upgrade, None).handshake() {
            Err(HandshakeError::Interrupted(mid)) => Self::Handshake(Some(Box::new(mid))),
            Ok(ws) => Self::Open(Box::new(ws)),
            Err(HandshakeError::Failure(_)) => Self::Done,
        }
    }

    /// Takes bytes read from the socket; appends the MQTT bytes they carry to `mqtt`.
    pub(crate) fn feed(&mut self, raw: &[u8], mqtt: &mut BytesMut) -> Fed {
        let mut fed = Fed::default();
        match self {
            Self::Handshake(slot) => {
                let Some(mut mid) = slot.take() else {
                    fed.closed = true;
                    return fed;
                };
                mid.get_mut().get_mut().input.extend_from_slice(raw);
                match mid.handshake() {
                    Err(HandshakeError::Interrupted(mid)) => *slot = Some(Box::new(mid)),
                    Ok(ws) => {
                        *self = Self::Open(Box::new(ws));
                        // Bytes after the request (an early CONNECT frame) are already in the
                        // pipe's input: read them now.
                        return self.feed(&[], mqtt);
                    }
                    Err(HandshakeError::Failure(e)) => {
                        // The refusal response (404, 400) is written by tungstenite; nothing to
                        // keep. The connection ends.
                        fed.closed = true;
                        fed.error = Some(format!("WebSocket upgrade failed: {e}"));
                        *self = Self::Done;
                    }
                }
            }
            Self::Open(ws) => {
                ws.get_mut().input.extend_from_slice(raw);
                loop {
                    match ws.read() {
                        Ok(Message::Binary(data)) => mqtt.extend_from_slice(&data),
                        Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {}
                        Ok(Message::Text(_)) => {
                            // [MQTT-6.0.0-1]: MQTT travels in binary frames only.
                            fed.closed = true;
                            fed.error = Some("text WebSocket frame [MQTT-6.0.0-1]".to_owned());
                            *self = Self::Done;
                            break;
                        }
                        Ok(Message::Close(_)) => {
                            fed.closed = true;
                            break;
                        }
                        Err(tungstenite::Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {
                            break;
                        }
                        Err(
                            tungstenite::Error::ConnectionClosed
                            | tungstenite::Error::AlreadyClosed,
                        ) => {
                            fed.closed = true;
                            break;
                        }
                        Err(e) => {
                            fed.closed = true;
                            fed.error = Some(format!("WebSocket: {e}"));
                            *self = Self::Done;
                            break;
                        }
                    }
                }
            }
            Self::Done => fed.closed = true,
        }
        fed
    }

    /// Frames MQTT bytes as one binary message; false when the WebSocket is not open.
    pub(crate) fn send(&mut self, mqtt: BytesMut) -> bool {
        let Self::Open(ws) = self else {
            return false;
        };
        ws.send(Message::Binary(mqtt.freeze())).is_ok()
    }

    /// Starts a clean close (a Close frame), when the broker ends the connection.
    pub(crate) fn close(&mut self) {
        if let Self::Open(ws) = self {
            let _ = ws.close(None);
            let _ = ws.flush();
        }
    }

    /// Bytes to send on the socket: handshake responses, frames, pongs.
    pub(crate) fn take_output(&mut self) -> Option<BytesMut> {
        let pipe = match self {
            Self::Handshake(Some(mid)) => mid.get_mut().get_mut(),
            Self::Open(ws) => ws.get_mut(),
            Self::Handshake(None) | Self::Done => return None,
        };
        if pipe.output.is_empty() {
            return None;
        }
        Some(pipe.output.split())
    }

    /// Whether the upgrade is done and MQTT can flow.
    pub(crate) const fn is_open(&self) -> bool {
        matches!(self, Self::Open(_))
    }
}
