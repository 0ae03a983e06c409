//! Rank requests decoded where they arrived. tonic gathers every request message into a
//! buffer of its own before its codec decodes it: for a Rank request of 100 candidates × 64
//! dimensions that is a 31 KB copy per call, 7% of the server's instructions (callgrind). A
//! DATA frame that holds one whole Rank message is already contiguous in the connection's
//! buffer, so [`super::wire`] has it decoded right there ([`RankRequest::decode_rows`], as the
//! codec would) and hands tonic an empty message in its place (a 5-byte frame); the Ranker's
//! handler takes the decoded request from the call's [`InPlace`] slot.
//!
//! Anything else passes untouched and tonic decodes it as before, with the same answers: a
//! message split over frames, compressed, larger than the message size limit (tonic refuses
//! it), or one that does not decode (tonic's codec reports it, with its words).

use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use crate::pb::RankRequest;

/// The frame tonic gets in place of a message decoded here: an uncompressed, empty message.
const STAND_IN: &[u8] = &[0, 0, 0, 0, 0];

/// A Rank call's slot for its request decoded in place, shared by the call's body (which
/// fills it) and its extensions (where the handler takes it).
#[derive(Clone, Default)]
pub struct InPlace(Arc<Mutex<Option<RankRequest>>>);

impl InPlace {
    /// If `data` is exactly one whole message (a 5-byte gRPC header and the bytes it
    /// announces), uncompressed, of at most `max` bytes, that decodes as a Rank request: the
    /// request goes into the slot and the stand-in frame comes back. Otherwise `None`, and
    /// nothing is kept.
    pub fn decode(&self, data: &[u8], max: usize) -> Option<Bytes> {
        let (header, message) = data.split_first_chunk::<5>()?;
        let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
        if header[0] != 0 || len != message.len() || len > max {
            return None;
        }
        let request = RankRequest::decode_rows(message).ok()?;
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = Some(request);
        Some(Bytes::from_static(STAND_IN))
    }

    /// The request decoded in place, if it was (then the message tonic decoded is the empty
    /// stand-in).
    pub fn take(&self) -> Option<RankRequest> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).take()
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb;

    fn request() -> RankRequest {
        RankRequest {
            user_id: "u1".into(),
            k: 2,
            candidates: (1..=3)
                .map(|i| pb::Candidate {
                    item_id: i,
                    score: 1.0 / i as f32,
                    embedding: vec![i as f32, 0.5, -0.25],
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }
    }

    fn framed(flag: u8, message: &[u8]) -> Vec<u8> {
        let mut out = vec![flag];
        out.extend_from_slice(&(message.len() as u32).to_be_bytes());
        out.extend_from_slice(message);
        out
    }

    #[test]
    fn a_whole_message_is_decoded_as_the_codec_decodes_it() {
        let bytes = request().encode_to_vec();
        let slot = InPlace::default();
        let stand_in = slot.decode(&framed(0, &bytes), bytes.len()).unwrap();
        assert_eq!(&stand_in[..], STAND_IN);
        let mut decoded = slot.take().unwrap();
        assert!(slot.take().is_none(), "taken once");
        assert_eq!(decoded, RankRequest::decode_rows(&bytes[..]).unwrap());
        assert_eq!(decoded, request());
        // The embeddings went straight into one matrix, as the codec's decoding puts them.
        assert!(decoded.take_rows().is_some());
        // The stand-in is the empty message.
        assert_eq!(
            RankRequest::decode(&stand_in[5..]).unwrap(),
            RankRequest::default()
        );
    }

    #[test]
    fn anything_but_one_whole_plain_message_within_the_limit_passes_untouched() {
        let bytes = request().encode_to_vec();
        let whole = framed(0, &bytes);
        let slot = InPlace::default();
        // Split over frames: each part alone is not a whole message.
        for split in [0, 3, 5, 6, whole.len() - 1] {
            assert!(
                slot.decode(&whole[..split], usize::MAX).is_none(),
                "{split}"
            );
        }
        // More than one message in the frame.
        let mut two = whole.clone();
        two.extend(framed(0, &bytes));
        assert!(slot.decode(&two, usize::MAX).is_none());
        // Compressed.
        assert!(slot.decode(&framed(1, &bytes), usize::MAX).is_none());
        // Over the limit: tonic refuses it with its own status.
        assert!(slot.decode(&whole, bytes.len() - 1).is_none());
        // Not a Rank request's bytes: tonic's codec names the fault.
        assert!(slot.decode(&framed(0, &[0xff, 0xff]), usize::MAX).is_none());
        assert!(slot.take().is_none(), "nothing kept");
    }
}
