//! MQTT over WebSocket (MQTT 5 §6) with a tungstenite client on a plain `TcpStream`, MQTT
//! packets encoded and decoded with `mqtt5-codec`: the subprotocol, a full exchange, packets
//! that do not line up with frames ([MQTT-6.0.0-2]), and a text frame ([MQTT-6.0.0-1]).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqtt5_codec::{
    ConnAckReason, Connect, Decoder, Delivery, Disconnect, DisconnectReason, MqttString, Packet,
    PacketId, PingReq, ProtocolVersion, PubAck, PubAckReason, Publish, QoS, SubAckReason,
    Subscribe, SubscribeProperties, Subscription, SubscriptionOptions, TopicFilter, TopicName,
};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::Frame;
use tungstenite::protocol::frame::coding::{Data, OpCode};
use tungstenite::{Message, WebSocket};

use crate::harness::*;

/// The longest any one wait may take.
const STEP: Duration = Duration::from_secs(10);

fn ws_config(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("ws.toml");
    std::fs::write(
        &path,
        "[[listener]]\nbind = \"127.0.0.1:0\"\nprotocol = \"websocket\"\npath = \"/mqtt\"\nallow_anonymous = true\n",
    )
    .expect("write the config");
    path
}

/// Starts mqtt5d with only a WebSocket listener.
fn start_ws_broker(dir: &std::path::Path) -> Mqtt5d {
    let config = ws_config(dir);
    Mqtt5d::start_raw(dir, &["--config", &config.display().to_string()])
}

/// How a WebSocket connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
enum Ended {
    /// A Close frame came.
    CloseFrame,
    /// The TCP connection closed or reset without one.
    Eof,
}

/// An MQTT 5 client over a WebSocket.
struct WsClient {
    ws: WebSocket<TcpStream>,
    /// Bytes from binary frames not yet decoded: packets and frames need not line up.
    buf: BytesMut,
    decoder: Decoder,
    /// The `Sec-WebSocket-Protocol` the server selected.
    selected: Option<String>,
}

impl WsClient {
    /// Upgrades to a WebSocket on `/mqtt`, offering the `mqtt` subprotocol.
    fn open(port: u16) -> Self {
        let stream = TcpStream::connect(("127.0.0.1", port)).expect("TCP connect");
        stream.set_read_timeout(Some(STEP)).expect("read timeout");
        stream.set_write_timeout(Some(STEP)).expect("write timeout");
        let mut request = format!("ws://127.0.0.1:{port}/mqtt")
            .into_client_request()
            .expect("a request");
        request
            .headers_mut()
            .insert("Sec-WebSocket-Protocol", HeaderValue::from_static("mqtt"));
        let (ws, response) = tungstenite::client::client(request, stream)
            .unwrap_or_else(|e| panic!("WebSocket upgrade failed: {e}"));
        let selected = response
            .headers()
            .get("Sec-WebSocket-Protocol")
            .map(|v| v.to_str().expect("an ASCII header").to_owned());
        Self {
            ws,
            buf: BytesMut::new(),
            decoder: Decoder::new(ProtocolVersion::V5),
            selected,
        }
    }

    fn encode(packet: &Packet) -> Bytes {
        let mut out = BytesMut::new();
        packet.encode(ProtocolVersion::V5, &mut out);
        out.freeze()
    }

    /// Sends `bytes` as one binary message.
    fn send_binary(&mut self, bytes: Bytes) {
        self.ws.send(Message::Binary(bytes)).expect("send a frame");
    }

    /// Sends one packet in one binary frame.
    fn send(&mut self, packet: &Packet) {
        self.send_binary(Self::encode(packet));
    }

    /// The next MQTT packet, from however many binary frames it takes.
    fn recv(&mut self) -> Packet {
        let end = Instant::now() + STEP;
        loop {
            if let Some(packet) = self
                .decoder
                .decode(&mut self.buf)
                .expect("the broker sends well-formed packets")
            {
                return packet;
            }
            assert!(Instant::now() < end, "no packet within {STEP:?}");
            match self.ws.read() {
                Ok(Message::Binary(b)) => self.buf.extend_from_slice(&b),
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(other) => panic!("expected a binary frame, got {other:?}"),
                Err(e) => panic!("reading a packet: {e}"),
            }
        }
    }

    /// Reads until the broker ends the connection; fails if it sends MQTT data first.
    fn expect_end(&mut self) -> Ended {
        let end = Instant::now() + STEP;
        while Instant::now() < end {
            match self.ws.read() {
                Ok(Message::Close(_)) => return Ended::CloseFrame,
                Ok(Message::Ping(_) | Message::Pong(_)) => {}
                Ok(other) => panic!("expected the connection to end, got {other:?}"),
                Err(
                    tungstenite::Error::ConnectionClosed
                    | tungstenite::Error::AlreadyClosed
                    | tungstenite::Error::Protocol(
                        tungstenite::error::ProtocolError::ResetWithoutClosingHandshake,
                    ),
                ) => return Ended::Eof,
                Err(tungstenite::Error::Io(e))
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::ConnectionReset | std::io::ErrorKind::BrokenPipe
                    ) =>
                {
                    return Ended::Eof;
                }
                Err(e) => panic!("waiting for the end of the connection: {e}"),
            }
        }
        panic!("the connection did not end within {STEP:?}")
    }

    /// Sends an MQTT 5 CONNECT (Clean Start) and checks the CONNACK.
    fn connect(&mut self, client_id: &str) {
        self.send(&connect_packet(client_id));
        self.expect_connack();
    }

    fn expect_connack(&mut self) {
        match self.recv() {
            Packet::ConnAck(ack) => assert_eq!(ack.reason, ConnAckReason::Success),
            other => panic!("expected a CONNACK, got {other:?}"),
        }
    }
}

fn connect_packet(client_id: &str) -> Packet {
    Packet::from(Connect {
        client_id: MqttString::try_from(client_id).expect("a client id"),
        keep_alive: 30,
        ..Connect::default()
    })
}

fn id(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn subscribe_packet(packet_id: u16, filter: &str, qos: QoS) -> Packet {
    Packet::from(Subscribe {
        packet_id: id(packet_id),
        properties: SubscribeProperties::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::try_from(filter).expect("a filter"),
            options: SubscriptionOptions::new(qos),
        }],
    })
}

#[test]
fn websocket_client_selects_mqtt_subprotocol_and_gets_its_own_qos1_publish() {
    let dir = temp_dir();
    let mut broker = start_ws_broker(dir.path());
    let mut c = WsClient::open(broker.addr.port());
    assert_eq!(
        c.selected.as_deref(),
        Some("mqtt"),
        "the response selects the offered subprotocol"
    );
    c.connect("ws-tungstenite");

    c.send(&subscribe_packet(1, "ws/#", QoS::AtLeastOnce));
    match c.recv() {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, id(1));
            assert_eq!(ack.reasons, [SubAckReason::GrantedQoS1]);
        }
        other => panic!("expected a SUBACK, got {other:?}"),
    }

    let mut publish = Publish::new(
        TopicName::try_from("ws/self").expect("a topic"),
        "over tungstenite",
    );
    publish.delivery = Delivery::AtLeastOnce(id(2));
    c.send(&Packet::from(publish));
    // The PUBACK for ours and the PUBLISH to us may come in either order.
    let mut acked = false;
    let mut delivered = None;
    while !acked || delivered.is_none() {
        match c.recv() {
            Packet::PubAck(ack) => {
                assert!(!acked, "one PUBACK");
                assert_eq!(ack.packet_id, id(2));
                assert_eq!(ack.reason, PubAckReason::Success);
                acked = true;
            }
            Packet::Publish(p) => {
                assert!(delivered.is_none(), "one delivery");
                assert_eq!(p.topic(), "ws/self");
                assert_eq!(p.payload(), b"over tungstenite");
                assert_eq!(p.qos(), QoS::AtLeastOnce);
                delivered = p.delivery.packet_id();
            }
            other => panic!("expected PUBACK or PUBLISH, got {other:?}"),
        }
    }
    let delivered = delivered.expect("the delivery has a packet id");
    c.send(&Packet::from(PubAck::new(delivered)));

    c.send(&Packet::from(Disconnect::new(
        DisconnectReason::NormalDisconnection,
    )));
    c.expect_end();
    broker
        .wait_for_log("ws-tungstenite", STEP)
        .expect("the broker logged the client");
}

#[test]
fn websocket_connect_split_across_two_binary_frames_is_accepted() {
    let dir = temp_dir();
    let broker = start_ws_broker(dir.path());
    let mut c = WsClient::open(broker.addr.port());
    // [MQTT-6.0.0-2]: the receiver must not assume packets line up with frames.
    let mut connect = WsClient::encode(&connect_packet("ws-split"));
    let second = connect.split_off(connect.len() / 2);
    c.send_binary(connect);
    c.send_binary(second);
    c.expect_connack();
    // The connection works on: a PINGREQ gets its PINGRESP.
    c.send(&Packet::from(PingReq));
    assert!(matches!(c.recv(), Packet::PingResp(_)));
}

#[test]
fn websocket_connect_in_a_fragmented_binary_message_is_accepted() {
    let dir = temp_dir();
    let broker = start_ws_broker(dir.path());
    let mut c = WsClient::open(broker.addr.port());
    // One WebSocket message in two frames: binary (not final), then a continuation.
    let mut first = WsClient::encode(&connect_packet("ws-fragmented"));
    let rest = first.split_off(3);
    c.ws.send(Message::Frame(Frame::message(
        first,
        OpCode::Data(Data::Binary),
        false,
    )))
    .expect("send the first fragment");
    c.ws.send(Message::Frame(Frame::message(
        rest,
        OpCode::Data(Data::Continue),
        true,
    )))
    .expect("send the last fragment");
    c.expect_connack();
}

#[test]
fn websocket_frame_holding_several_packets_is_decoded_in_full() {
    let dir = temp_dir();
    let broker = start_ws_broker(dir.path());
    let mut c = WsClient::open(broker.addr.port());
    // CONNECT, SUBSCRIBE and PINGREQ in one binary frame.
    let mut frame = BytesMut::new();
    for packet in [
        connect_packet("ws-batched"),
        subscribe_packet(7, "batch/#", QoS::ExactlyOnce),
        Packet::from(PingReq),
    ] {
        packet.encode(ProtocolVersion::V5, &mut frame);
    }
    c.send_binary(frame.freeze());
    c.expect_connack();
    match c.recv() {
        Packet::SubAck(ack) => {
            assert_eq!(ack.packet_id, id(7));
            assert_eq!(ack.reasons, [SubAckReason::GrantedQoS2]);
        }
        other => panic!("expected a SUBACK, got {other:?}"),
    }
    assert!(matches!(c.recv(), Packet::PingResp(_)));
}

/// Connects as `client_id`, subscribes to `ws/#`, then sends a text frame holding a valid
/// QoS 0 PUBLISH to `ws/text`, and checks that the broker ends the connection.
fn send_text_frame_and_expect_close(port: u16, client_id: &str) {
    let mut c = WsClient::open(port);
    c.connect(client_id);
    c.send(&subscribe_packet(1, "ws/#", QoS::AtMostOnce));
    assert!(matches!(c.recv(), Packet::SubAck(_)));
    // [MQTT-6.0.0-1]: MQTT travels in binary frames. A text frame closes the connection, even
    // one holding a valid packet: this PUBLISH is all ASCII, and were it handled, its delivery
    // to ourselves would come back instead of the end of the connection.
    let publish = WsClient::encode(&Packet::from(Publish::new(
        TopicName::try_from("ws/text").expect("a topic"),
        "hi",
    )));
    let text = String::from_utf8(publish.to_vec()).expect("this PUBLISH is valid UTF-8");
    c.ws.send(Message::text(text)).expect("send a text frame");
    c.expect_end();
}

#[test]
fn websocket_text_frame_makes_the_broker_close_the_connection() {
    let dir = temp_dir();
    let broker = start_ws_broker(dir.path());
    send_text_frame_and_expect_close(broker.addr.port(), "ws-text");
}

#[test]
fn websocket_text_frame_disconnect_is_logged_with_its_reason() {
    let dir = temp_dir();
    let mut broker = start_ws_broker(dir.path());
    send_text_frame_and_expect_close(broker.addr.port(), "ws-text-log");
    let line = broker
        .wait_for_log("client disconnected", STEP)
        .unwrap_or_else(|| panic!("no disconnect line:\n{}", broker.lines.join("\n")));
    let reason = json_field(&line, "reason").expect("the line has a reason");
    assert!(
        reason.contains("MQTT-6.0.0-1"),
        "the broker closed the connection for the text frame, but logs: {reason:?}"
    );
}
