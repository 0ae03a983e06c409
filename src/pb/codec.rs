//! The protobuf codec every generated service and client uses (`build.rs`: `codec_path`):
//! tonic's prost codec with a larger buffer for incoming messages.
//!
//! tonic starts each call's receive buffer at 8 KiB and grows it as the message's frames
//! arrive, copying what it holds at each step: for a Rank request of 100 candidates × 64
//! dimensions (31 KB) those copies were 7% of the server's instructions per call. Starting at
//! 64 KiB, a typical request lands once; the buffer lives only while the call's message is
//! read.
//!
//! Messages are encoded as `tonic_prost` encodes them, less one walk: its encoder calls
//! `Message::encode`, which first measures the whole message to check that the buffer has
//! room, but tonic's buffer grows as it is written, so the check cannot fail; measuring a Rank
//! answer walks every item and its reason (prost measures each nested message again as it
//! writes it), 2,000 instructions per call. [`MessageEncoder`] writes the message straight
//! away (`encode_raw`, the same bytes).
//!
//! A received Rank request is decoded by [`RankRequest::decode_rows`], which writes the
//! candidates' embeddings straight into the ranking's matrix; every other message as
//! `tonic_prost` decodes it, with the same errors.

use std::any::Any;
use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

use super::bulk::RankRequest;

/// Where a received message is gathered, in bytes, before it is decoded.
pub const RECEIVE_BUFFER_BYTES: usize = 64 * 1024;
/// tonic's own default: how much is encoded before a streaming sender yields.
const YIELD_THRESHOLD_BYTES: usize = 32 * 1024;

#[derive(Debug, Clone, Copy)]
pub struct ProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for ProstCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for ProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = MessageEncoder<T>;
    type Decoder = MessageDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        MessageEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        MessageDecoder(PhantomData)
    }
}

/// Encodes a message of type `T` to send.
#[derive(Debug)]
pub struct MessageEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for MessageEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        item.encode_raw(buf);
        Ok(())
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::default()
    }
}

/// Decodes a received message of type `U`.
#[derive(Debug)]
pub struct MessageDecoder<U>(PhantomData<U>);

impl<U: Message + Default + 'static> Decoder for MessageDecoder<U> {
    type Item = U;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<U>, Status> {
        let mut item: Option<U> = None;
        match (&mut item as &mut dyn Any).downcast_mut::<Option<RankRequest>>() {
            Some(rank) => *rank = Some(RankRequest::decode_rows(buf).map_err(undecodable)?),
            None => item = Some(U::decode(buf).map_err(undecodable)?),
        }
        Ok(item)
    }

    fn buffer_settings(&self) -> BufferSettings {
        BufferSettings::new(RECEIVE_BUFFER_BYTES, YIELD_THRESHOLD_BYTES)
    }
}

/// A message that does not decode, as `tonic_prost` reports it (INTERNAL, with prost's
/// words): `grpc::wire` answers it as the client's fault.
fn undecodable(error: prost::DecodeError) -> Status {
    Status::internal(error.to_string())
}
