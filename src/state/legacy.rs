//! Reading what data format 2 wrote (snapshot rows and log ops in clear), for the migration
//! to the current format ([`super::migrate`]). Today's encodings of a state and an op are
//! still format 2's, so these are the current decoders under the names the migration uses.

use super::op::Op;
use super::user::UserState;

/// A snapshot row's payload as format 2 wrote it.
pub(super) fn decode_row_v2(bytes: &[u8]) -> Result<UserState, postcard::Error> {
    UserState::from_row(bytes)
}

/// A log record's op as format 2 wrote it.
pub(super) fn decode_op_v2(bytes: &[u8]) -> Result<Op, postcard::Error> {
    postcard::from_bytes(bytes)
}
