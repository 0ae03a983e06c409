//! What a user did, as the state store sees it, and the rules an event must follow to be
//! applied. Rejections name the field at fault so a caller can fix its producer.

use serde::{Deserialize, Serialize};

use crate::rank::DataDimension;

/// How far ahead of the server's clock an event may be stamped: covers clock skew between the
/// producer and tactful, but refuses events stamped in milliseconds vs seconds confusion.
pub const MAX_FUTURE_SKEW_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventKind {
    Impression,
    Click,
    Cart,
    Favorite,
    Purchase,
    Search,
    NotInterested,
    FewerLikeThis,
    BlockBrand,
    UnblockBrand,
    BlockShop,
    UnblockShop,
}

impl EventKind {
    pub const ALL: [EventKind; 12] = [
        Self::Impression,
        Self::Click,
        Self::Cart,
        Self::Favorite,
        Self::Purchase,
        Self::Search,
        Self::NotInterested,
        Self::FewerLikeThis,
        Self::BlockBrand,
        Self::UnblockBrand,
        Self::BlockShop,
        Self::UnblockShop,
    ];

    /// The kebab-case name used by the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Impression => "impression",
            Self::Click => "click",
            Self::Cart => "cart",
            Self::Favorite => "favorite",
            Self::Purchase => "purchase",
            Self::Search => "search",
            Self::NotInterested => "not-interested",
            Self::FewerLikeThis => "fewer-like-this",
            Self::BlockBrand => "block-brand",
            Self::UnblockBrand => "unblock-brand",
            Self::BlockShop => "block-shop",
            Self::UnblockShop => "unblock-shop",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        let wanted = s.trim().to_ascii_lowercase().replace('_', "-");
        Self::ALL.into_iter().find(|k| k.name() == wanted)
    }
}

/// The longest purchase title kept, in bytes.
pub const MAX_TITLE_BYTES: usize = 200;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Unix milliseconds.
    pub at_ms: i64,
    pub kind: EventKind,
    pub item_id: u64,
    pub category_id: u64,
    pub brand_id: u64,
    pub shop_id: u64,
    pub price: f32,
    /// Where it was observed, when the producer said.
    pub source: Option<DataDimension>,
    /// For NOT_INTERESTED: when the item may return; 0 = the store's default period.
    pub expires_at_ms: i64,
    /// For PURCHASE: the item's title, kept for "goes with your new …"; may be empty.
    pub title: String,
}

impl Event {
    pub fn new(kind: EventKind, at_ms: i64) -> Self {
        Self {
            at_ms,
            kind,
            item_id: 0,
            category_id: 0,
            brand_id: 0,
            shop_id: 0,
            price: 0.0,
            source: None,
            expires_at_ms: 0,
            title: String::new(),
        }
    }
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct EventError {
    pub field: &'static str,
    pub message: String,
}

impl EventError {
    pub fn new(field: &'static str, message: impl Into<String>) -> Self {
        Self {
            field,
            message: message.into(),
        }
    }
}

impl Event {
    /// Checks the fields this kind of event needs.
    pub fn check(&self, now_ms: i64) -> Result<(), EventError> {
        use EventKind as K;
        if self.at_ms < 0 {
            return Err(EventError::new("at_ms", "must not be negative"));
        }
        if self.at_ms > now_ms + MAX_FUTURE_SKEW_MS {
            return Err(EventError::new(
                "at_ms",
                "is more than 5 minutes in the future (unix milliseconds expected)",
            ));
        }
        if !(self.price.is_finite() && self.price >= 0.0) {
            return Err(EventError::new("price", "must be a finite number >= 0"));
        }
        let required = match self.kind {
            K::Impression | K::Click | K::Cart | K::Favorite | K::Purchase | K::NotInterested => {
                (self.item_id == 0).then_some("item_id")
            }
            K::FewerLikeThis => {
                (self.category_id == 0 && self.brand_id == 0).then_some("category_id")
            }
            K::BlockBrand | K::UnblockBrand => (self.brand_id == 0).then_some("brand_id"),
            K::BlockShop | K::UnblockShop => (self.shop_id == 0).then_some("shop_id"),
            K::Search => None,
        };
        if let Some(field) = required {
            let what = if self.kind == K::FewerLikeThis {
                "category_id or brand_id is required for fewer-like-this".to_owned()
            } else {
                format!("is required for {}", self.kind.name())
            };
            return Err(EventError::new(field, what));
        }
        if self.title.len() > MAX_TITLE_BYTES {
            return Err(EventError::new(
                "title",
                format!(
                    "is {} bytes, the maximum is {MAX_TITLE_BYTES}",
                    self.title.len()
                ),
            ));
        }
        if self.kind == K::NotInterested
            && self.expires_at_ms != 0
            && self.expires_at_ms <= self.at_ms
        {
            return Err(EventError::new("expires_at_ms", "must be after at_ms"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_kind_requires_its_subject() {
        let now = 1_000_000;
        let mut e = Event::new(EventKind::BlockBrand, now);
        assert_eq!(e.check(now).unwrap_err().field, "brand_id");
        e.brand_id = 7;
        assert!(e.check(now).is_ok());
        let e = Event::new(EventKind::Impression, now);
        assert_eq!(e.check(now).unwrap_err().field, "item_id");
        let e = Event::new(EventKind::FewerLikeThis, now);
        assert_eq!(e.check(now).unwrap_err().field, "category_id");
        assert!(Event::new(EventKind::Search, now).check(now).is_ok());
    }

    #[test]
    fn timestamps_prices_and_expiry_are_checked() {
        let now = 1_000_000_000;
        let mut e = Event::new(EventKind::Search, now + MAX_FUTURE_SKEW_MS + 1);
        assert_eq!(e.check(now).unwrap_err().field, "at_ms");
        e.at_ms = now;
        e.price = f32::NAN;
        assert_eq!(e.check(now).unwrap_err().field, "price");
        let mut n = Event::new(EventKind::NotInterested, now);
        n.item_id = 1;
        n.expires_at_ms = now - 1;
        assert_eq!(n.check(now).unwrap_err().field, "expires_at_ms");
    }

    #[test]
    fn kind_names_round_trip() {
        for k in EventKind::ALL {
            assert_eq!(EventKind::from_name(k.name()), Some(k));
        }
        assert_eq!(
            EventKind::from_name("BLOCK_BRAND"),
            Some(EventKind::BlockBrand)
        );
    }
}
