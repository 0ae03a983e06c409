//! A tower layer that reads every call's gRPC framing before tonic decodes it, so that what a
//! client sent wrong is answered as the client's fault, and so that a stream the client cut
//! off is never taken for a finished one.
//!
//! - A `content-type` other than `application/grpc[+proto]` is refused with
//!   INVALID_ARGUMENT before the body is read.
//! - The body is followed frame by frame (`[compressed u8][length u32][message]`): a body that
//!   ends inside a message (a length prefix that lies), a compressed flag without
//!   `grpc-encoding` or a flag that is neither 0 nor 1, and a unary call carrying no message or
//!   more than one are refused with INVALID_ARGUMENT naming what is wrong. The error is a
//!   `Status` handed to tonic as the body's error, so tonic answers it as it is and the handler
//!   never runs (a unary call is read whole before its handler starts).
//! - A message whose bytes are not the method's protobuf message: tonic's codec reports it as
//!   INTERNAL ("failed to decode Protobuf message"); it is the client's bytes, so the answer's
//!   status becomes INVALID_ARGUMENT (and `tactful_grpc_requests_total` counts it so).
//! - A stream the client resets (RST_STREAM CANCEL, e.g. on its deadline or a cancel): tonic
//!   takes a cancelled request body for a normal end of stream, so a client-streaming handler
//!   would commit what arrived so far. Here the reset becomes an ABORTED error of the body, which
//!   the handler sees as the stream failing. (A reset with NO_ERROR is reported by hyper as the
//!   end of the body itself; handlers that commit at the end yield once before committing, so
//!   that hyper, which checks for a reset whenever a call is pending, drops them first: see
//!   [`crate::grpc::catalog`].)
//! - Each call is stamped with its arrival ([`super::timeout::Arrived`]), from which the
//!   caller's deadline counts. tonic runs a timer of its own on `grpc-timeout` from the
//!   arrival, outside every layer here, and answers CANCELLED when it fires: so a call that
//!   has not answered by the engine's fail-open deadline (e.g. its body was still arriving)
//!   is answered DEADLINE_EXCEEDED here just before (for Rank, counted as a fail-open for
//!   `deadline`). A Rank that has its candidates answers degraded at that same moment, and is
//!   polled first.
//! - Each call is counted on its connection's [`Activity`](super::connections::Activity) until
//!   its response body is done, which is what the idle limit of
//!   [`super::connections`] measures.
//!
//! - A Rank request whose message arrives whole in one DATA frame is decoded right there, and
//!   tonic gets an empty message in its place ([`super::in_place`]): tonic would copy it into a
//!   buffer of its own first.
//!
//! Must not: buffer or copy message bytes (it reads the 5-byte headers, and decodes a whole
//! Rank message where it lies).

use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use http_body::{Body, Frame, SizeHint};
use tonic::Status;
use tonic::body::Body as TonicBody;
use tonic::transport::server::TlsConnectInfo;
use tower::{Layer, Service};

use super::connections::{CallGuard, ConnInfo};
use super::in_place::InPlace;
use crate::engine::fail_open_reserve;
use crate::metrics::Metrics;

/// Methods whose request is a stream (every other served method takes one message), as
/// request paths.
fn client_streaming_methods() -> &'static HashSet<String> {
    static METHODS: OnceLock<HashSet<String>> = OnceLock::new();
    METHODS.get_or_init(|| {
        super::observe::methods_where(|m| m.client_streaming())
            .into_iter()
            .map(|m| format!("/{m}"))
            .collect()
    })
}

fn is_grpc_content_type(value: Option<&http::HeaderValue>) -> bool {
    let Some(value) = value.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let value = value.split(';').next().unwrap_or("").trim();
    value == "application/grpc" || value == "application/grpc+proto"
}

#[derive(Clone)]
pub struct WireLayer {
    metrics: Arc<Metrics>,
    max_message_bytes: usize,
}

impl WireLayer {
    /// `max_message_bytes`: the Ranker's limit on a received message; a larger one is left
    /// for tonic to refuse.
    pub fn new(metrics: Arc<Metrics>, max_message_bytes: usize) -> Self {
        client_streaming_methods();
        Self {
            metrics,
            max_message_bytes,
        }
    }
}

impl<S> Layer<S> for WireLayer {
    type Service = Wire<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Wire {
            inner,
            metrics: self.metrics.clone(),
            max_message_bytes: self.max_message_bytes,
        }
    }
}

#[derive(Clone)]
pub struct Wire<S> {
    inner: S,
    metrics: Arc<Metrics>,
    max_message_bytes: usize,
}

/// When a call with the caller's `timeout`, arrived at `arrived`, is answered
/// DEADLINE_EXCEEDED here if it has not answered itself: halfway through the engine's
/// fail-open reserve. The engine's deadline (`timeout` minus the reserve, counted from no
/// earlier than the arrival) comes first, so a Rank that has its candidates answers degraded
/// with half the reserve to spare; and this comes before tonic's own timer at the full
/// timeout, which would answer CANCELLED.
fn wire_deadline(arrived: Instant, timeout: Duration) -> Instant {
    arrived + (timeout - fail_open_reserve(timeout) / 2)
}

impl<S> Service<http::Request<TonicBody>> for Wire<S>
where
    S: Service<http::Request<TonicBody>, Response = http::Response<TonicBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<TonicBody>;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<TonicBody>) -> Self::Future {
        let arrived = Instant::now();
        request
            .extensions_mut()
            .insert(super::timeout::Arrived(arrived));
        let deadline = request
            .headers()
            .get("grpc-timeout")
            .and_then(|v| super::timeout::parse(v.to_str().ok()?))
            .map(|t| wire_deadline(arrived, t));
        let guard = {
            let ext = request.extensions();
            ext.get::<ConnInfo>()
                .or_else(|| ext.get::<TlsConnectInfo<ConnInfo>>().map(|t| t.get_ref()))
                .map(|info| info.activity.call())
        };
        if !is_grpc_content_type(request.headers().get(http::header::CONTENT_TYPE)) {
            let status = Status::invalid_argument(
                "content-type: a gRPC call is sent as application/grpc (or application/grpc+proto)",
            );
            return Box::pin(async move {
                let response = status.into_http();
                Ok(guarded(response, guard))
            });
        }
        let rank = request.uri().path() == "/tactful.v1.Ranker/Rank";
        let metrics = self.metrics.clone();
        let unary = !client_streaming_methods().contains(request.uri().path());
        let encoded = request.headers().contains_key("grpc-encoding");
        let in_place = (rank && !encoded).then(|| {
            let slot = InPlace::default();
            request.extensions_mut().insert(slot.clone());
            (slot, self.max_message_bytes)
        });
        let request = request.map(|body| {
            TonicBody::new(Framed {
                inner: body,
                unary,
                encoded,
                in_place,
                header: [0; 5],
                have: 0,
                remaining: 0,
                messages: 0,
            })
        });
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(async move {
            let call = inner.call(request);
            let mut response = match deadline {
                None => call.await?,
                Some(at) => match tokio::time::timeout_at(at.into(), call).await {
                    Ok(response) => response?,
                    Err(_) => {
                        if rank {
                            metrics.degraded("deadline");
                        }
                        Status::deadline_exceeded(
                            "the caller's deadline (grpc-timeout, counted from the call's \
                             arrival) passed before the call could be answered",
                        )
                        .into_http()
                    }
                },
            };
            blame_undecodable(&mut response);
            Ok(guarded(response, guard))
        })
    }
}

/// The response, its body holding the call's place on its connection until it is done.
fn guarded(
    response: http::Response<TonicBody>,
    guard: Option<CallGuard>,
) -> http::Response<TonicBody> {
    match guard {
        None => response,
        Some(guard) => response.map(|body| {
            TonicBody::new(Guarded {
                inner: body,
                _guard: guard,
            })
        }),
    }
}

/// The prefix of the message tonic's protobuf codec gives a message that does not decode.
const UNDECODABLE: &str = "failed to decode Protobuf message";

/// An INTERNAL answer for a message that does not decode becomes INVALID_ARGUMENT: the bytes
/// were the client's. (Errors are answered trailers-only: the status is in the headers.)
fn blame_undecodable(response: &mut http::Response<TonicBody>) {
    let headers = response.headers_mut();
    if headers.get("grpc-status").map(|v| v.as_bytes()) != Some(b"13") {
        return;
    }
    let undecodable = headers
        .get("grpc-message")
        .map(|m| String::from_utf8_lossy(m.as_bytes()).replace("%20", " "))
        .is_some_and(|m| m.starts_with(UNDECODABLE));
    if undecodable {
        headers.insert("grpc-status", http::HeaderValue::from_static("3"));
    }
}

/// A response body that holds its call's place on the connection until it is dropped.
struct Guarded {
    inner: TonicBody,
    _guard: CallGuard,
}

impl Body for Guarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A request body whose gRPC framing is checked as it passes.
struct Framed {
    inner: TonicBody,
    unary: bool,
    /// The request says how its messages are compressed.
    encoded: bool,
    /// The current frame's header, `have` bytes of it so far.
    header: [u8; 5],
    have: usize,
    /// Bytes of the current message still to come.
    remaining: u64,
    /// Messages begun.
    messages: u64,
    /// A Rank call's slot for its message decoded in place, and the size limit.
    in_place: Option<(InPlace, usize)>,
}

impl Framed {
    /// Follows `data` through the frames; the first framing error found.
    fn follow(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.remaining > 0 {
                let n = (self.remaining.min(data.len() as u64)) as usize;
                self.remaining -= n as u64;
                data.advance(n);
                continue;
            }
            if self.have == 0 && self.unary && self.messages >= 1 {
                return Err(Status::invalid_argument(
                    "a unary call carries exactly one message; this one carries more",
                ));
            }
            let n = (5 - self.have).min(data.len());
            self.header[self.have..self.have + n].copy_from_slice(&data[..n]);
            self.have += n;
            data.advance(n);
            if self.have == 5 {
                self.have = 0;
                self.messages += 1;
                match self.header[0] {
                    0 => {}
                    1 if self.encoded => {}
                    1 => {
                        return Err(Status::invalid_argument(
                            "a message is marked compressed but the call names no grpc-encoding",
                        ));
                    }
                    flag => {
                        return Err(Status::invalid_argument(format!(
                            "a message's compressed flag is {flag}; it must be 0 or 1"
                        )));
                    }
                }
                self.remaining = u64::from(u32::from_be_bytes([
                    self.header[1],
                    self.header[2],
                    self.header[3],
                    self.header[4],
                ]));
            }
        }
        Ok(())
    }

    /// The body ended: whether its framing was whole.
    fn finish(&self) -> Result<(), Status> {
        if self.have > 0 {
            return Err(Status::invalid_argument(format!(
                "the body ends inside a message header ({} of 5 bytes)",
                self.have
            )));
        }
        if self.remaining > 0 {
            return Err(Status::invalid_argument(format!(
                "the body ends inside a message: its length prefix announced {} more bytes than \
                 arrived",
                self.remaining
            )));
        }
        if self.unary && self.messages == 0 {
            return Err(Status::invalid_argument(
                "a unary call carries exactly one message; this one carries none",
            ));
        }
        Ok(())
    }
}

fn body_error(status: Status) -> Option<Result<Frame<Bytes>, Status>> {
    Some(Err(status))
}

impl Body for Framed {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        let this = self.get_mut();
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => Poll::Ready(this.finish().err().and_then(body_error)),
            Poll::Ready(Some(Ok(mut frame))) => {
                if let (Some((slot, max)), Some(data)) = (&this.in_place, frame.data_ref())
                    && this.messages == 0
                    && this.have == 0
                    && let Some(stand_in) = slot.decode(data, *max)
                {
                    frame = Frame::data(stand_in);
                }
                if let Some(data) = frame.data_ref()
                    && let Err(status) = this.follow(data)
                {
                    return Poll::Ready(body_error(status));
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let status = e;
                // tonic ends a request stream quietly on CANCELLED: the client cut it off,
                // and nothing of it may be taken as finished.
                let status = if status.code() == tonic::Code::Cancelled {
                    Status::aborted(format!(
                        "the client cut the request stream off ({}); nothing of an unfinished \
                         stream is applied",
                        status.message()
                    ))
                } else {
                    status
                };
                Poll::Ready(body_error(status))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(unary: bool) -> Framed {
        Framed {
            inner: TonicBody::empty(),
            unary,
            encoded: false,
            header: [0; 5],
            have: 0,
            remaining: 0,
            messages: 0,
            in_place: None,
        }
    }

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0];
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    #[test]
    fn whole_frames_pass_split_anywhere() {
        let mut bytes = frame(b"hello");
        bytes.extend(frame(b""));
        bytes.extend(frame(b"world!"));
        for split in 0..bytes.len() {
            let mut f = framed(false);
            f.follow(&bytes[..split]).unwrap();
            f.follow(&bytes[split..]).unwrap();
            f.finish().unwrap();
            assert_eq!(f.messages, 3);
        }
    }

    #[test]
    fn framing_faults_are_the_clients() {
        let mut f = framed(true);
        let mut two = frame(b"a");
        two.extend(frame(b"b"));
        let e = f.follow(&two).unwrap_err();
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(e.message().contains("exactly one message"), "{e}");

        let mut f = framed(true);
        let mut lying = vec![0, 0, 0, 1, 0];
        lying.extend_from_slice(b"short");
        f.follow(&lying).unwrap();
        let e = f.finish().unwrap_err();
        assert!(e.message().contains("length prefix"), "{e}");

        let e = framed(true).finish().unwrap_err();
        assert!(e.message().contains("carries none"), "{e}");

        let mut f = framed(false);
        let e = f.follow(&[7, 0, 0, 0, 0]).unwrap_err();
        assert!(e.message().contains("compressed flag is 7"), "{e}");
        let mut f = framed(false);
        let e = f.follow(&[1, 0, 0, 0, 0]).unwrap_err();
        assert!(e.message().contains("grpc-encoding"), "{e}");

        let mut f = framed(false);
        f.follow(&[0, 0]).unwrap();
        assert!(f.finish().unwrap_err().message().contains("header"));
    }

    #[test]
    fn only_grpc_content_types_pass() {
        let ok = |v: &str| is_grpc_content_type(Some(&http::HeaderValue::from_str(v).unwrap()));
        assert!(ok("application/grpc"));
        assert!(ok("application/grpc+proto"));
        assert!(!ok("application/json"));
        assert!(!ok("text/plain"));
        assert!(!is_grpc_content_type(None));
        assert!(client_streaming_methods().contains("/tactful.v1.Catalog/Upsert"));
        assert!(!client_streaming_methods().contains("/tactful.v1.Ranker/Rank"));
    }
}
