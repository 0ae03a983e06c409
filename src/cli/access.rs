//! How the client commands reach a server that uses TLS (an `https://` address, with the CA
//! that signed the server's certificate, and a client certificate for mutual TLS) or bearer
//! tokens.

use std::path::Path;
use std::time::Duration;

use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};

use super::client::Failure;
use super::{Access, EXIT_USAGE};

fn read(flag: &str, path: &Path) -> Result<Vec<u8>, Failure> {
    std::fs::read(path).map_err(|e| {
        Failure(
            format!("{flag}: cannot read {}: {e}", path.display()),
            EXIT_USAGE,
        )
    })
}

impl Access {
    /// The endpoint for `addr`, with TLS when the address is `https://`.
    pub fn endpoint(&self, addr: &str) -> Result<Endpoint, Failure> {
        let usage = |m: String| Failure(m, EXIT_USAGE);
        // host:port without a scheme, as grpcurl takes it: plain HTTP/2.
        let with_scheme;
        let addr = if addr.contains("://") {
            addr
        } else {
            with_scheme = format!("http://{addr}");
            &with_scheme
        };
        let mut endpoint = Endpoint::from_shared(addr.to_owned())
            .map_err(|e| usage(format!("bad --addr {addr:?}: {e}")))?
            .connect_timeout(Duration::from_secs(5));
        let https = addr.starts_with("https://");
        let tls_asked = self.ca_cert.is_some() || self.client_cert.is_some();
        if !https {
            if tls_asked {
                return Err(usage(format!(
                    "--ca-cert and --client-cert are for TLS: use an https:// address, not {addr}"
                )));
            }
            return Ok(endpoint);
        }
        let ca = self.ca_cert.as_deref().ok_or_else(|| {
            usage(
                "an https:// address needs --ca-cert (the CA that signed the server's certificate)"
                    .into(),
            )
        })?;
        let mut tls =
            ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read("--ca-cert", ca)?));
        if let Some(domain) = &self.tls_domain {
            tls = tls.domain_name(domain.clone());
        }
        if let (Some(cert), Some(key)) = (&self.client_cert, &self.client_key) {
            tls = tls.identity(Identity::from_pem(
                read("--client-cert", cert)?,
                read("--client-key", key)?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| usage(format!("TLS settings: {e}")))?;
        Ok(endpoint)
    }

    /// The `authorization` header's value, if a token was given.
    pub fn authorization(&self) -> Result<Option<MetadataValue<Ascii>>, Failure> {
        self.token
            .as_ref()
            .map(|t| {
                format!("Bearer {}", t.trim()).parse().map_err(|_| {
                    Failure("--token: not a printable ASCII string".into(), EXIT_USAGE)
                })
            })
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_without_a_scheme_is_plain_http2() {
        let access = Access::default();
        let Ok(endpoint) = access.endpoint("127.0.0.1:50051") else {
            panic!("host:port refused")
        };
        assert_eq!(endpoint.uri().to_string(), "http://127.0.0.1:50051/");
        let Ok(endpoint) = access.endpoint("http://localhost:7") else {
            panic!("a URL refused")
        };
        assert_eq!(endpoint.uri().to_string(), "http://localhost:7/");
    }
}
