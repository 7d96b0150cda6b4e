//! Encodes one PUBLISH, QoS 1 with a few MQTT 5 properties, for MQTT 5.0 and for 3.1.1, and
//! prints both encodings in hex: the 3.1.1 one leaves out what that version lacks.
//!
//! ```text
//! cargo run -p mqtt5-codec --example encode_publish
//! ```

use bytes::BytesMut;
use mqtt5_codec::{
    Delivery, Packet, PacketId, PayloadFormat, ProtocolVersion, Publish, TopicName, UserProperty,
};

fn main() -> Result<(), mqtt5_codec::Error> {
    let mut publish = Publish::new(TopicName::try_from("sensors/t1")?, r#"{"celsius":21.5}"#);
    publish.delivery = Delivery::AtLeastOnce(PacketId::new(7).expect("a non-zero packet id"));
    publish.retain = true;
    // Properties are allocated only when one is set; they read and write as if inline.
    publish.properties.payload_format_indicator = Some(PayloadFormat::Utf8);
    publish.properties.message_expiry_interval = Some(3600);
    publish.properties.content_type = Some("application/json".try_into()?);
    publish
        .properties
        .user_properties
        .push(UserProperty::new("unit", "celsius")?);

    let packet = Packet::from(publish);
    for version in [ProtocolVersion::V5, ProtocolVersion::V3_1_1] {
        let mut buf = BytesMut::new();
        packet.encode(version, &mut buf);
        // `encoded_len` is exact: a writer can size its buffer before encoding.
        assert_eq!(buf.len(), packet.encoded_len(version));
        let hex: Vec<String> = buf.iter().map(|b| format!("{b:02x}")).collect();
        println!("{version:?}, {} bytes: {}", buf.len(), hex.join(" "));
    }
    Ok(())
}
