//! A blocking MQTT 5 client on one socket, for the few control connections of a scenario
//! (a subscriber that sets up a session, then drains it). The load itself goes through
//! [`crate::driver`].

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use bytes::BytesMut;
use mqtt5_codec::{
    ConnAck, ConnAckReason, Connect, Decoder, Disconnect, DisconnectReason, MqttString, Packet,
    ProtocolVersion,
};

use crate::error::{Context, Error, Result};

/// Bytes asked of the socket per read.
const READ_CHUNK: usize = 256 * 1024;

/// How long [`Client::connect`] waits for the TCP connection and the CONNACK.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What a CONNECT asks for.
#[derive(Debug, Clone)]
pub(crate) struct ConnectOptions {
    /// The client identifier.
    pub(crate) client_id: String,
    /// Clean Start.
    pub(crate) clean_start: bool,
    /// The Session Expiry Interval in seconds (0: the session ends with the connection).
    pub(crate) session_expiry: u32,
}

impl ConnectOptions {
    /// The CONNECT packet: MQTT 5, keep-alive 60 s (rumqttd refuses keep-alive 0; no run
    /// leaves a connection silent for the 90 s that would end it).
    pub(crate) fn packet(&self) -> Result<Packet> {
        let mut connect = Connect {
            clean_start: self.clean_start,
            keep_alive: 60,
            client_id: MqttString::try_from(self.client_id.as_str())?,
            ..Connect::default()
        };
        if self.session_expiry != 0 {
            connect.properties.session_expiry_interval = Some(self.session_expiry);
        }
        Ok(Packet::from(connect))
    }
}

/// A connected MQTT 5 client.
#[derive(Debug)]
pub(crate) struct Client {
    stream: TcpStream,
    peer: SocketAddr,
    decoder: Decoder,
    /// Received bytes not yet decoded.
    read: BytesMut,
    /// Where each read lands before it is appended to `read`.
    scratch: Vec<u8>,
    /// Encoded packets not yet written.
    write: BytesMut,
    /// The socket's read timeout, as last set.
    timeout: Option<Duration>,
}

impl Client {
    /// Connects, sends CONNECT and waits for a successful CONNACK.
    ///
    /// # Errors
    /// When the connection fails, or the broker refuses or does not answer.
    pub(crate) fn connect(addr: SocketAddr, options: &ConnectOptions) -> Result<(Self, ConnAck)> {
        let stream = TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT)
            .context(|| format!("connecting to {addr}"))?;
        stream
            .set_nodelay(true)
            .context(|| "setting TCP_NODELAY".into())?;
        let mut client = Self {
            stream,
            peer: addr,
            decoder: Decoder::new(ProtocolVersion::V5),
            read: BytesMut::with_capacity(READ_CHUNK),
            scratch: vec![0; READ_CHUNK],
            write: BytesMut::new(),
            timeout: None,
        };
        client.send(&options.packet()?)?;
        match client.recv(CONNECT_TIMEOUT)? {
            Some(Packet::ConnAck(ack)) if ack.reason == ConnAckReason::Success => {
                Ok((client, *ack))
            }
            Some(Packet::ConnAck(ack)) => Err(Error::Protocol(format!(
                "{addr} refused the connection of {:?}: {:?}",
                options.client_id, ack.reason
            ))),
            Some(other) => Err(Error::Protocol(format!(
                "{addr} answered CONNECT with {:?}",
                other.packet_type()
            ))),
            None => Err(Error::Protocol(format!("{addr} sent no CONNACK"))),
        }
    }

    /// Queues a packet without sending it; [`Client::flush`] sends everything queued.
    pub(crate) fn queue(&mut self, packet: &Packet) {
        packet.encode(ProtocolVersion::V5, &mut self.write);
    }

    /// Writes every queued packet.
    ///
    /// # Errors
    /// When the socket fails.
    pub(crate) fn flush(&mut self) -> Result<()> {
        if self.write.is_empty() {
            return Ok(());
        }
        self.stream
            .write_all(&self.write)
            .context(|| format!("writing to {}", self.peer))?;
        self.write.clear();
        Ok(())
    }

    /// Sends one packet now.
    ///
    /// # Errors
    /// When the socket fails.
    pub(crate) fn send(&mut self, packet: &Packet) -> Result<()> {
        self.queue(packet);
        self.flush()
    }

    /// The next packet, waiting up to `timeout` for it; `None` when none came in time.
    ///
    /// # Errors
    /// When the socket fails or closes, or the broker sends a malformed packet.
    pub(crate) fn recv(&mut self, timeout: Duration) -> Result<Option<Packet>> {
        loop {
            if let Some(packet) = self.decoder.decode(&mut self.read)? {
                return Ok(Some(packet));
            }
            if !self.fill(timeout)? {
                return Ok(None);
            }
        }
    }

    /// Every packet already received or arriving within `timeout` of the call, decoded in one
    /// batch: the way to read a flood of small packets without a system call for each.
    ///
    /// # Errors
    /// As [`Client::recv`].
    pub(crate) fn recv_batch(&mut self, timeout: Duration, out: &mut Vec<Packet>) -> Result<()> {
        if self.read.is_empty() || !self.decode_all(out)? {
            self.fill(timeout)?;
            self.decode_all(out)?;
        }
        Ok(())
    }

    /// Decodes what the buffer holds into `out`; true when it decoded anything.
    fn decode_all(&mut self, out: &mut Vec<Packet>) -> Result<bool> {
        let before = out.len();
        while let Some(packet) = self.decoder.decode(&mut self.read)? {
            out.push(packet);
        }
        Ok(out.len() > before)
    }

    /// One read of up to [`READ_CHUNK`] bytes; false on timeout.
    fn fill(&mut self, timeout: Duration) -> Result<bool> {
        let timeout = Some(timeout.max(Duration::from_millis(1)));
        if self.timeout != timeout {
            self.stream
                .set_read_timeout(timeout)
                .context(|| "setting the read timeout".into())?;
            self.timeout = timeout;
        }
        match self.stream.read(&mut self.scratch) {
            Ok(0) => Err(Error::Protocol(format!(
                "{} closed the connection",
                self.peer
            ))),
            Ok(n) => {
                self.read
                    .extend_from_slice(self.scratch.get(..n).unwrap_or_default());
                Ok(true)
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => Ok(false),
            Err(e) => Err(Error::Io {
                context: format!("reading from {}", self.peer),
                source: e,
            }),
        }
    }

    /// Sends DISCONNECT (normal) and waits up to `timeout` for the broker to close the
    /// connection, so that it has processed the DISCONNECT when this returns.
    ///
    /// # Errors
    /// When the socket fails, or the broker keeps the connection open past `timeout`.
    pub(crate) fn disconnect(mut self, timeout: Duration) -> Result<()> {
        self.send(&Packet::from(Disconnect::new(
            DisconnectReason::NormalDisconnection,
        )))?;
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(Error::Protocol(format!(
                    "{} did not close the connection after DISCONNECT",
                    self.peer
                )));
            }
            match self.fill(left) {
                Ok(_) => self.read.clear(),
                // The broker closed the connection (or reset it): the DISCONNECT is processed.
                Err(Error::Protocol(_) | Error::Io { .. }) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}
