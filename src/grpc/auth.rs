//! Bearer-token auth, as a tower layer in front of every service: a call to a tactful method
//! must carry `authorization: Bearer TOKEN` with a configured token, except Rank while
//! `auth.rank_open` (the sidecar default); health and reflection stay open. A call without a
//! known token is answered UNAUTHENTICATED before any service sees it.
//!
//! The caller's token id travels on as a [`Caller`] in the request's extensions, so that the
//! audit log can say who changed what. With auth off (no token configured) every caller is
//! [`Caller::ANONYMOUS`].
//!
//! Tokens are compared without leaking where they differ: each configured token is kept only
//! as its HMAC-SHA256 under a key drawn at start, and a presented token's HMAC is compared
//! with every one of them in full (a comparison of MACs under a secret key tells an attacker
//! nothing even if its timing varied).
//!
//! Must not: log or keep a presented token.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use ring::hmac;
use tower::{Layer, Service};

use crate::config::{AuthSettings, ConfigError, Secret};

/// Who made a call: the id of the token it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub id: Arc<str>,
}

impl Caller {
    /// The id recorded when auth is off (or for an open method called without a token).
    pub const ANONYMOUS: &'static str = "anonymous";

    fn anonymous() -> Self {
        Self {
            id: Arc::from(Self::ANONYMOUS),
        }
    }
}

/// The configured tokens, as MACs.
pub struct Tokens {
    key: hmac::Key,
    known: Vec<(Arc<str>, hmac::Tag)>,
}

impl Tokens {
    /// The tokens `auth` configures; `None` when there are none (auth off).
    pub fn from_settings(auth: &AuthSettings) -> Result<Option<Self>, ConfigError> {
        let tokens = auth.tokens()?;
        if tokens.is_empty() {
            return Ok(None);
        }
        Ok(Some(Self::new(&tokens)))
    }

    pub fn new(tokens: &[(String, Secret)]) -> Self {
        let rng = ring::rand::SystemRandom::new();
        let key =
            hmac::Key::generate(hmac::HMAC_SHA256, &rng).expect("the system's random source works");
        let known = tokens
            .iter()
            .map(|(id, token)| (Arc::from(id.as_str()), hmac::sign(&key, token.0.as_bytes())))
            .collect();
        Self { key, known }
    }

    /// The id of `presented`, if it is a configured token. Compares with every token in full.
    pub fn id_of(&self, presented: &[u8]) -> Option<Arc<str>> {
        let tag = hmac::sign(&self.key, presented);
        let mut found = None;
        for (id, known) in &self.known {
            if same_bytes(tag.as_ref(), known.as_ref()) {
                found = Some(id.clone());
            }
        }
        found
    }
}

/// Equality of two equally long byte strings, in time that does not depend on where they
/// differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0 && a.len() == b.len()
}

/// Which paths need a token.
fn needs_token(path: &str, rank_open: bool) -> bool {
    if rank_open && path == "/tactful.v1.Ranker/Rank" {
        return false;
    }
    path.starts_with("/tactful.")
}

/// The token of an `authorization: Bearer TOKEN` header.
fn bearer<B>(request: &http::Request<B>) -> Option<&[u8]> {
    let value = request
        .headers()
        .get(http::header::AUTHORIZATION)?
        .as_bytes();
    let scheme = value.get(..7)?;
    scheme
        .eq_ignore_ascii_case(b"bearer ")
        .then(|| value[7..].trim_ascii())
}

#[derive(Clone)]
pub struct AuthLayer {
    tokens: Option<Arc<Tokens>>,
    rank_open: bool,
}

impl AuthLayer {
    /// `tokens: None` = auth off: every call passes as anonymous.
    pub fn new(tokens: Option<Tokens>, rank_open: bool) -> Self {
        Self {
            tokens: tokens.map(Arc::new),
            rank_open,
        }
    }
}

impl<S> Layer<S> for AuthLayer {
    type Service = Auth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Auth {
            inner,
            layer: self.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Auth<S> {
    inner: S,
    layer: AuthLayer,
}

impl<S, ReqBody, ResBody> Service<http::Request<ReqBody>> for Auth<S>
where
    S: Service<http::Request<ReqBody>, Response = http::Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<ReqBody>) -> Self::Future {
        let caller = match &self.layer.tokens {
            None => Some(Caller::anonymous()),
            Some(tokens) => match bearer(&request).and_then(|t| tokens.id_of(t)) {
                Some(id) => Some(Caller { id }),
                None if !needs_token(request.uri().path(), self.layer.rank_open) => {
                    Some(Caller::anonymous())
                }
                None => None,
            },
        };
        let Some(caller) = caller else {
            let why = if bearer(&request).is_some() {
                "the bearer token is not a known one"
            } else {
                "this method needs an `authorization: Bearer TOKEN` header"
            };
            tracing::debug!(path = request.uri().path(), why, "call refused");
            let refused = tonic::Status::unauthenticated(why).into_http::<ResBody>();
            return Box::pin(async move { Ok(refused) });
        };
        request.extensions_mut().insert(caller);
        // The service that was polled ready serves this call; the clone waits for the next.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokens() -> Tokens {
        Tokens::new(&[
            ("recommender".into(), Secret("0123456789abcdef0123".into())),
            ("app".into(), Secret("fedcba9876543210fedc".into())),
        ])
    }

    #[test]
    fn a_token_is_known_by_its_id_and_nothing_else_passes() {
        let t = tokens();
        assert_eq!(t.id_of(b"fedcba9876543210fedc").as_deref(), Some("app"));
        assert_eq!(
            t.id_of(b"0123456789abcdef0123").as_deref(),
            Some("recommender")
        );
        for wrong in [
            &b""[..],
            b"0123456789abcdef012",
            b"0123456789abcdef01234",
            b"0123456789abcdef0124",
        ] {
            assert_eq!(t.id_of(wrong), None, "{wrong:?}");
        }
    }

    #[test]
    fn only_tactful_methods_need_a_token_and_rank_only_when_closed() {
        assert!(needs_token("/tactful.v1.Events/Record", true));
        assert!(needs_token("/tactful.v1.Profile/Get", true));
        assert!(needs_token("/tactful.v1.Catalog/Upsert", true));
        assert!(!needs_token("/tactful.v1.Ranker/Rank", true));
        assert!(needs_token("/tactful.v1.Ranker/Rank", false));
        assert!(!needs_token("/grpc.health.v1.Health/Check", false));
        assert!(!needs_token(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            false
        ));
    }

    #[test]
    fn the_bearer_scheme_is_read_in_any_case() {
        let with = |v: &str| {
            http::Request::builder()
                .header("authorization", v)
                .body(())
                .unwrap()
        };
        assert_eq!(bearer(&with("Bearer abc")), Some(&b"abc"[..]));
        assert_eq!(bearer(&with("bearer  abc ")), Some(&b"abc"[..]));
        assert_eq!(bearer(&with("Basic abc")), None);
        assert_eq!(bearer(&http::Request::new(())), None);
    }
}
