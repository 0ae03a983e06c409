//! Wire ↔ core: validates protobuf requests while turning them into core types, and turns core
//! results back into protobuf responses. Every rejection names the field at fault, in the
//! protobuf field path a client would fix (`candidates[3].score`).
//!
//! One file per service: [`rank`] (the Rank request, its candidates and embeddings in one
//! pass, and the answer), [`events`], [`profile`] and [`catalog`]; this file holds the rules
//! they share (user ids, data dimensions, string bounds). Knows the wire types and the core's;
//! decides nothing a ranking decides.

mod catalog;
mod events;
mod profile;
mod rank;

pub use catalog::*;
pub use events::*;
pub use profile::*;
pub use rank::*;

use super::error::ApiError;
use crate::config::Limits;
use crate::pb;
use crate::rank::{DataDimension, DimensionSet, LifecycleStage};

/// Bytes of a request's `surface` and `context.region`: names, not documents.
pub const MAX_NAME_BYTES: usize = 64;
/// The furthest a local time is from UTC (UTC+14 and UTC-12 are the extremes in use).
pub const MAX_UTC_OFFSET_MINUTES: i32 = 14 * 60;

/// The user id rules shared by every service.
pub fn user_id(id: &str, field: &str, limits: &Limits) -> Result<(), ApiError> {
    if id.is_empty() {
        return Err(ApiError::invalid(field, "is required"));
    }
    if id.len() > limits.max_user_id_bytes {
        return Err(ApiError::invalid(
            field,
            format!(
                "is {} bytes, the maximum is {}",
                id.len(),
                limits.max_user_id_bytes
            ),
        ));
    }
    Ok(())
}

#[inline]
fn dimension(n: i32, field: impl FnOnce() -> String) -> Result<DataDimension, ApiError> {
    match DataDimension::from_number(n) {
        Some(d) => Ok(d),
        None => Err(not_a_dimension(n, field())),
    }
}

#[cold]
#[inline(never)]
fn not_a_dimension(n: i32, field: String) -> ApiError {
    ApiError::invalid(
        field,
        if n == 0 {
            "DATA_DIMENSION_UNSPECIFIED is not a data dimension".to_owned()
        } else {
            format!("{n} is not a known data dimension")
        },
    )
}

/// Finite and not negative: two compares (NaN fails both).
fn finite_non_negative(v: f32) -> bool {
    (0.0..f32::INFINITY).contains(&v)
}

fn max_bytes(value: &str, max: usize, field: impl FnOnce() -> String) -> Result<(), ApiError> {
    if value.len() > max {
        return Err(ApiError::invalid(
            field(),
            format!("is {} bytes, the maximum is {max}", value.len()),
        ));
    }
    Ok(())
}

fn dimensions(set: DimensionSet) -> Vec<i32> {
    set.iter().map(DataDimension::number).collect()
}

/// The stage on the wire; UNSPECIFIED when there is none (personalisation off).
pub fn lifecycle(stage: Option<LifecycleStage>) -> pb::LifecycleStage {
    match stage {
        None => pb::LifecycleStage::Unspecified,
        Some(LifecycleStage::New) => pb::LifecycleStage::New,
        Some(LifecycleStage::Active) => pb::LifecycleStage::Active,
        Some(LifecycleStage::Silent) => pb::LifecycleStage::Silent,
        Some(LifecycleStage::Churned) => pb::LifecycleStage::Churned,
    }
}
