//! Events off the wire into the store's events, each checked on its own (a rejection names
//! the event's field; the batch's other events still apply).

use super::MAX_NAME_BYTES;
use super::rank::MAX_TITLE_BYTES;
use crate::config::Limits;
use crate::pb;
use crate::rank::DataDimension;
use crate::state::{Event, EventError, EventKind};

fn event_kind(t: i32) -> Result<EventKind, EventError> {
    use pb::EventType as T;
    let kind = match T::try_from(t) {
        Ok(T::Impression) => EventKind::Impression,
        Ok(T::Click) => EventKind::Click,
        Ok(T::Cart) => EventKind::Cart,
        Ok(T::Favorite) => EventKind::Favorite,
        Ok(T::Purchase) => EventKind::Purchase,
        Ok(T::Search) => EventKind::Search,
        Ok(T::NotInterested) => EventKind::NotInterested,
        Ok(T::FewerLikeThis) => EventKind::FewerLikeThis,
        Ok(T::BlockBrand) => EventKind::BlockBrand,
        Ok(T::UnblockBrand) => EventKind::UnblockBrand,
        Ok(T::BlockShop) => EventKind::BlockShop,
        Ok(T::UnblockShop) => EventKind::UnblockShop,
        Ok(T::Unspecified) => return Err(EventError::new("type", "is required")),
        Err(_) => {
            return Err(EventError::new(
                "type",
                format!("{t} is not a known event type"),
            ));
        }
    };
    Ok(kind)
}

pub fn event_type(kind: EventKind) -> pb::EventType {
    use pb::EventType as T;
    match kind {
        EventKind::Impression => T::Impression,
        EventKind::Click => T::Click,
        EventKind::Cart => T::Cart,
        EventKind::Favorite => T::Favorite,
        EventKind::Purchase => T::Purchase,
        EventKind::Search => T::Search,
        EventKind::NotInterested => T::NotInterested,
        EventKind::FewerLikeThis => T::FewerLikeThis,
        EventKind::BlockBrand => T::BlockBrand,
        EventKind::UnblockBrand => T::UnblockBrand,
        EventKind::BlockShop => T::BlockShop,
        EventKind::UnblockShop => T::UnblockShop,
    }
}

/// A wire event as a core event. `now_ms` stands in for a missing timestamp.
pub fn event(e: &pb::Event, now_ms: i64, limits: &Limits) -> Result<Event, EventError> {
    if e.user_id.is_empty() {
        return Err(EventError::new("user_id", "is required"));
    }
    if e.user_id.len() > limits.max_user_id_bytes {
        return Err(EventError::new(
            "user_id",
            format!("is longer than {} bytes", limits.max_user_id_bytes),
        ));
    }
    for (field, value, max) in [
        ("surface", &e.surface, MAX_NAME_BYTES),
        ("title", &e.title, MAX_TITLE_BYTES),
    ] {
        if value.len() > max {
            return Err(EventError::new(
                field,
                format!("is {} bytes, the maximum is {max}", value.len()),
            ));
        }
    }
    let source = match e.source {
        0 => None,
        n => Some(DataDimension::from_number(n).ok_or_else(|| {
            EventError::new("source", format!("{n} is not a known data dimension"))
        })?),
    };
    Ok(Event {
        at_ms: if e.at_ms == 0 { now_ms } else { e.at_ms },
        kind: event_kind(e.r#type)?,
        item_id: e.item_id,
        category_id: e.category_id,
        brand_id: e.brand_id,
        shop_id: e.shop_id,
        price: e.price,
        source,
        expires_at_ms: e.expires_at_ms,
        title: e.title.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_checked_for_type_and_user() {
        let limits = Limits::default();
        let e = pb::Event {
            user_id: "u".into(),
            ..Default::default()
        };
        assert_eq!(event(&e, 1, &limits).unwrap_err().field, "type");
        let e = pb::Event {
            r#type: pb::EventType::Click as i32,
            ..Default::default()
        };
        assert_eq!(event(&e, 1, &limits).unwrap_err().field, "user_id");
        let e = pb::Event {
            user_id: "u".into(),
            r#type: pb::EventType::Click as i32,
            item_id: 3,
            ..Default::default()
        };
        assert_eq!(event(&e, 9, &limits).unwrap().at_ms, 9);
        let e = pb::Event {
            user_id: "u".into(),
            r#type: pb::EventType::Purchase as i32,
            item_id: 3,
            title: "Pixel 9".into(),
            ..Default::default()
        };
        assert_eq!(event(&e, 9, &limits).unwrap().title, "Pixel 9");
    }

    #[test]
    fn an_events_strings_are_bounded() {
        let limits = Limits::default();
        let click = pb::Event {
            user_id: "u".into(),
            r#type: pb::EventType::Click as i32,
            item_id: 3,
            ..Default::default()
        };
        let long_surface = pb::Event {
            surface: "s".repeat(MAX_NAME_BYTES + 1),
            ..click.clone()
        };
        assert_eq!(
            event(&long_surface, 1, &limits).unwrap_err().field,
            "surface"
        );
        let long_title = pb::Event {
            title: "t".repeat(MAX_TITLE_BYTES + 1),
            ..click.clone()
        };
        assert_eq!(event(&long_title, 1, &limits).unwrap_err().field, "title");
        let at_the_bounds = pb::Event {
            surface: "s".repeat(MAX_NAME_BYTES),
            title: "t".repeat(MAX_TITLE_BYTES),
            ..click
        };
        assert!(event(&at_the_bounds, 1, &limits).is_ok());
    }
}
