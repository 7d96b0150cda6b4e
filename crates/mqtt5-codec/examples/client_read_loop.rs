//! A minimal MQTT 5 client over a blocking TCP socket: connect, subscribe, then print every
//! message that arrives and acknowledge the QoS 1 ones. The socket is the standard library's;
//! everything on the wire is `mqtt5-codec`.
//!
//! ```text
//! cargo run -p mqtt5-codec --example client_read_loop -- 127.0.0.1:1883 'sensors/#'
//! ```
//!
//! The read loop is the codec's contract in a few lines: append what the socket gives to a
//! `BytesMut`, take whole packets off its front while `decode` returns `Ok(Some(..))`, and read
//! again on `Ok(None)`. An `Err` means the stream is corrupt: a client closes the connection.

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::BytesMut;
use mqtt5_codec::{
    Connect, Decoder, Delivery, MqttString, Packet, PacketId, ProtocolVersion, PubAck, QoS,
    Subscribe, Subscription, SubscriptionOptions, TopicFilter,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:1883".to_owned());
    let filter = args.next().unwrap_or_else(|| "#".to_owned());
    let version = ProtocolVersion::V5;
    let mut socket = TcpStream::connect(&addr)?;

    // CONNECT (Keep Alive 0: no PINGREQ needed) and SUBSCRIBE, encoded into one buffer.
    let mut out = BytesMut::new();
    let connect = Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 0,
        client_id: MqttString::try_from("mqtt5-codec-example")?,
        ..Connect::default()
    };
    Packet::from(connect).encode(version, &mut out);
    let subscribe = Subscribe {
        packet_id: PacketId::new(1).expect("a non-zero packet id"),
        properties: Default::default(),
        subscriptions: vec![Subscription {
            filter: TopicFilter::try_from(filter.as_str())?,
            options: SubscriptionOptions::new(QoS::AtLeastOnce),
        }],
    };
    Packet::from(subscribe).encode(version, &mut out);
    socket.write_all(&out)?;

    // Refuse packets above 1 MiB before their bodies arrive.
    let decoder = Decoder::new(version).with_max_packet_size(1 << 20);
    let mut input = BytesMut::with_capacity(16 * 1024);
    let mut chunk = [0u8; 16 * 1024];
    loop {
        while let Some(packet) = decoder.decode(&mut input)? {
            match packet {
                Packet::ConnAck(ack) => println!("CONNACK {:?}", ack.reason),
                Packet::SubAck(ack) => println!("SUBACK {:?}", ack.reasons),
                Packet::Publish(publish) => {
                    let payload = String::from_utf8_lossy(publish.payload());
                    println!("{} {payload}", publish.topic());
                    if let Delivery::AtLeastOnce(id) = publish.delivery {
                        out.clear();
                        Packet::from(PubAck::new(id)).encode(version, &mut out);
                        socket.write_all(&out)?;
                    }
                }
                Packet::Disconnect(disconnect) => {
                    println!("DISCONNECT {:?}", disconnect.reason);
                    return Ok(());
                }
                other => println!("{:?}", other.packet_type()),
            }
        }
        let n = socket.read(&mut chunk)?;
        if n == 0 {
            println!("the server closed the connection");
            return Ok(());
        }
        input.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
}
