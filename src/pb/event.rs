//! `tactful.v1.Event`, written out by hand so that a stream of events decodes from plain
//! slices: prost's generated decoder reads each field through the buffer trait and wraps its
//! result for the error path, which for an event of a dozen small fields was 1,600
//! instructions, a tenth of what the server spends on an event of `Events.Stream`.
//!
//! The fields, tags and encoding are what prost would generate (proto3: zero values are not
//! written), and so are the enum accessors (`r#type()`, `source()` and their setters), so
//! clients, the reflection descriptors and the JSON mapping are unchanged. `build.rs` maps
//! `tactful.v1.Event` here (`extern_path`); the test at the end checks that every field of the
//! proto's descriptor round-trips through this type. Validation is the edge's
//! (`grpc::convert::events`).

use prost::bytes::{Buf, BufMut};
use prost::encoding::{self, DecodeContext, WireType};
use prost::{DecodeError, Message};

use super::bulk::{field, read_f32, read_len, read_varint};
use super::{DataDimension, EventType};

/// An event (see `events.proto`). With the item catalog, an impression, click, cart,
/// favorite or purchase of an item the catalog holds takes the category, brand, shop and price
/// it leaves at 0 (and a purchase its title) from there. Explicit feedback is recorded exactly
/// as sent.
#[derive(Clone, PartialEq, Debug, Default)]
pub struct Event {
    /// Required.
    pub user_id: String,
    /// When it happened, unix milliseconds; 0 uses the server's clock.
    pub at_ms: i64,
    /// An `EventType` number.
    pub r#type: i32,
    pub item_id: u64,
    pub category_id: u64,
    pub brand_id: u64,
    pub shop_id: u64,
    pub price: f32,
    pub surface: String,
    /// A `DataDimension` number: where the event was observed, e.g. cross-platform.
    pub source: i32,
    /// For NOT_INTERESTED: when the item may be shown again; 0 uses the default period.
    pub expires_at_ms: i64,
    /// For PURCHASE: the item's title, used in reasons like "goes with your new X".
    pub title: String,
}

impl Event {
    /// The event's type; a number no `EventType` has reads as the default, as prost's
    /// accessors do.
    pub fn r#type(&self) -> EventType {
        EventType::try_from(self.r#type).unwrap_or_default()
    }

    pub fn set_type(&mut self, value: EventType) {
        self.r#type = value as i32;
    }

    /// Where the event was observed; a number no `DataDimension` has reads as the default.
    pub fn source(&self) -> DataDimension {
        DataDimension::try_from(self.source).unwrap_or_default()
    }

    pub fn set_source(&mut self, value: DataDimension) {
        self.source = value as i32;
    }
}

/// Reads a string field at the start of `s` into `value` (the last value wins) and returns
/// what follows; `None`, leaving `value` as it was, when the field is malformed or not UTF-8,
/// for prost's decoder to refuse.
fn read_string<'a>(s: &'a [u8], value: &mut String) -> Option<&'a [u8]> {
    let (bytes, rest) = read_len(s)?;
    let text = std::str::from_utf8(bytes).ok()?;
    value.clear();
    value.push_str(text);
    Some(rest)
}

/// Decodes `s`, which holds exactly an event's bytes. The fields (each with a one-byte key)
/// are read straight from the slice; anything else (an unknown field, another wire type, a
/// malformed value, a string that is not UTF-8) goes to [`Event::merge_field`], which decodes
/// it, or refuses it with the error prost's generated code gives. The last value of a field
/// wins, as protobuf's merging says.
fn decode_event(e: &mut Event, mut s: &[u8], ctx: DecodeContext) -> Result<(), DecodeError> {
    while let Some((&key, rest)) = s.split_first() {
        let fast = match key {
            0x0a => read_string(rest, &mut e.user_id),
            0x10 => read_varint(rest).map(|(v, r)| {
                e.at_ms = v as i64;
                r
            }),
            // int32 on the wire: the low 32 bits, as prost reads it.
            0x18 => read_varint(rest).map(|(v, r)| {
                e.r#type = v as i32;
                r
            }),
            0x20 => read_varint(rest).map(|(v, r)| {
                e.item_id = v;
                r
            }),
            0x28 => read_varint(rest).map(|(v, r)| {
                e.category_id = v;
                r
            }),
            0x30 => read_varint(rest).map(|(v, r)| {
                e.brand_id = v;
                r
            }),
            0x38 => read_varint(rest).map(|(v, r)| {
                e.shop_id = v;
                r
            }),
            0x45 => read_f32(rest).map(|(v, r)| {
                e.price = v;
                r
            }),
            0x4a => read_string(rest, &mut e.surface),
            0x50 => read_varint(rest).map(|(v, r)| {
                e.source = v as i32;
                r
            }),
            0x58 => read_varint(rest).map(|(v, r)| {
                e.expires_at_ms = v as i64;
                r
            }),
            0x62 => read_string(rest, &mut e.title),
            _ => None,
        };
        match fast {
            Some(r) => s = r,
            None => {
                let (tag, wire_type) = encoding::decode_key(&mut s)?;
                e.merge_field(tag, wire_type, &mut s, ctx.clone())?;
            }
        }
    }
    Ok(())
}

impl Message for Event {
    /// Over a plain slice when the buffer is one chunk (as a received message is), else
    /// prost's own loop.
    fn merge(&mut self, mut buf: impl Buf) -> Result<(), DecodeError> {
        let ctx = DecodeContext::default();
        let whole = buf.remaining();
        if buf.chunk().len() == whole {
            decode_event(self, &buf.chunk()[..whole], ctx)?;
            buf.advance(whole);
            return Ok(());
        }
        while buf.has_remaining() {
            let (tag, wire_type) = encoding::decode_key(&mut buf)?;
            self.merge_field(tag, wire_type, &mut buf, ctx.clone())?;
        }
        Ok(())
    }

    fn encode_raw(&self, buf: &mut impl BufMut) {
        use encoding::*;
        if !self.user_id.is_empty() {
            string::encode(1, &self.user_id, buf);
        }
        if self.at_ms != 0 {
            int64::encode(2, &self.at_ms, buf);
        }
        if self.r#type != 0 {
            int32::encode(3, &self.r#type, buf);
        }
        if self.item_id != 0 {
            uint64::encode(4, &self.item_id, buf);
        }
        if self.category_id != 0 {
            uint64::encode(5, &self.category_id, buf);
        }
        if self.brand_id != 0 {
            uint64::encode(6, &self.brand_id, buf);
        }
        if self.shop_id != 0 {
            uint64::encode(7, &self.shop_id, buf);
        }
        if self.price != 0.0 {
            float::encode(8, &self.price, buf);
        }
        if !self.surface.is_empty() {
            string::encode(9, &self.surface, buf);
        }
        if self.source != 0 {
            int32::encode(10, &self.source, buf);
        }
        if self.expires_at_ms != 0 {
            int64::encode(11, &self.expires_at_ms, buf);
        }
        if !self.title.is_empty() {
            string::encode(12, &self.title, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        use encoding::*;
        const M: &str = "Event";
        match tag {
            1 => field(
                M,
                "user_id",
                string::merge(wire_type, &mut self.user_id, buf, ctx),
            ),
            2 => field(
                M,
                "at_ms",
                int64::merge(wire_type, &mut self.at_ms, buf, ctx),
            ),
            3 => field(
                M,
                "r#type",
                int32::merge(wire_type, &mut self.r#type, buf, ctx),
            ),
            4 => field(
                M,
                "item_id",
                uint64::merge(wire_type, &mut self.item_id, buf, ctx),
            ),
            5 => field(
                M,
                "category_id",
                uint64::merge(wire_type, &mut self.category_id, buf, ctx),
            ),
            6 => field(
                M,
                "brand_id",
                uint64::merge(wire_type, &mut self.brand_id, buf, ctx),
            ),
            7 => field(
                M,
                "shop_id",
                uint64::merge(wire_type, &mut self.shop_id, buf, ctx),
            ),
            8 => field(
                M,
                "price",
                float::merge(wire_type, &mut self.price, buf, ctx),
            ),
            9 => field(
                M,
                "surface",
                string::merge(wire_type, &mut self.surface, buf, ctx),
            ),
            10 => field(
                M,
                "source",
                int32::merge(wire_type, &mut self.source, buf, ctx),
            ),
            11 => field(
                M,
                "expires_at_ms",
                int64::merge(wire_type, &mut self.expires_at_ms, buf, ctx),
            ),
            12 => field(
                M,
                "title",
                string::merge(wire_type, &mut self.title, buf, ctx),
            ),
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        use encoding::*;
        let mut len = 0;
        if !self.user_id.is_empty() {
            len += string::encoded_len(1, &self.user_id);
        }
        if self.at_ms != 0 {
            len += int64::encoded_len(2, &self.at_ms);
        }
        if self.r#type != 0 {
            len += int32::encoded_len(3, &self.r#type);
        }
        if self.item_id != 0 {
            len += uint64::encoded_len(4, &self.item_id);
        }
        if self.category_id != 0 {
            len += uint64::encoded_len(5, &self.category_id);
        }
        if self.brand_id != 0 {
            len += uint64::encoded_len(6, &self.brand_id);
        }
        if self.shop_id != 0 {
            len += uint64::encoded_len(7, &self.shop_id);
        }
        if self.price != 0.0 {
            len += float::encoded_len(8, &self.price);
        }
        if !self.surface.is_empty() {
            len += string::encoded_len(9, &self.surface);
        }
        if self.source != 0 {
            len += int32::encoded_len(10, &self.source);
        }
        if self.expires_at_ms != 0 {
            len += int64::encoded_len(11, &self.expires_at_ms);
        }
        if !self.title.is_empty() {
            len += string::encoded_len(12, &self.title);
        }
        len
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use prost::bytes::Buf as _;

    use super::*;

    fn full() -> Event {
        Event {
            user_id: "alice".into(),
            at_ms: 1_700_000_000_123,
            r#type: EventType::NotInterested as i32,
            item_id: u64::MAX,
            category_id: 300,
            brand_id: 1 << 40,
            shop_id: 5,
            price: 19.5,
            surface: "home".into(),
            source: DataDimension::CrossPlatform as i32,
            expires_at_ms: -1,
            title: "Wireless earbuds, noise-cancelling".into(),
        }
    }

    #[test]
    fn decodes_from_one_chunk_or_many_and_the_last_value_wins() {
        let event = full();
        let wire = event.encode_to_vec();
        assert_eq!(Event::decode(wire.as_slice()).unwrap(), event);
        for cut in 1..wire.len() {
            let (a, b) = wire.split_at(cut);
            assert_eq!(Event::decode(a.chain(b)).unwrap(), event, "cut at {cut}");
        }
        // A later value of a field replaces the earlier, strings included.
        let later = Event {
            user_id: "bob".into(),
            item_id: 9,
            ..Default::default()
        };
        let mut both = wire.clone();
        both.extend(later.encode_to_vec());
        let got = Event::decode(both.as_slice()).unwrap();
        assert_eq!((got.user_id.as_str(), got.item_id), ("bob", 9));
        assert_eq!(got.title, event.title);
    }

    #[test]
    fn refuses_what_prost_refuses_and_skips_unknown_fields() {
        // A user id that is not UTF-8.
        let bad = [0x0a, 2, 0xff, 0xfe];
        let err = Event::decode(&bad[..]).unwrap_err().to_string();
        assert!(err.contains("Event.user_id"), "{err}");
        // A length past the end.
        assert!(Event::decode(&[0x0a, 9, b'a'][..]).is_err());
        // A varint that never ends.
        assert!(Event::decode(&[0x20, 0xff, 0xff][..]).is_err());
        // An unknown field (tag 99, varint) is skipped; what follows is read.
        let mut wire = vec![0x98, 0x06, 7];
        wire.extend(full().encode_to_vec());
        assert_eq!(Event::decode(wire.as_slice()).unwrap(), full());
        // The accessors read unknown enum numbers as the default, as prost's do.
        let odd = Event {
            r#type: 999,
            source: -4,
            ..Default::default()
        };
        assert_eq!(odd.r#type(), EventType::default());
        assert_eq!(odd.source(), DataDimension::default());
    }
}
