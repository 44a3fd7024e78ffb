//! A fault-injecting transport for `S3Store`: the store, the SDK (retries,
//! timeouts, checksums) and the S3 server all stay real; between the SDK and
//! the server, chosen requests are refused with a 5xx, answered with a 5xx
//! after the server applied them, dropped like a broken connection, or
//! delayed. Used by the fault tests (`storage/tests/s3_faults.rs`); the
//! broker never installs it.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::config::http::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;

/// The S3 operation a request is, read off its method and query string.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestKind {
    PutObject,
    CreateMultipartUpload,
    UploadPart,
    CompleteMultipartUpload,
    AbortMultipartUpload,
    GetObject,
    Other,
}

impl RequestKind {
    fn of(request: &HttpRequest) -> RequestKind {
        let query = request.uri().split_once('?').map_or("", |(_, q)| q);
        let has = |name: &str| {
            query
                .split('&')
                .any(|p| p == name || p.starts_with(&format!("{name}=")))
        };
        match request.method() {
            "PUT" if has("partNumber") => RequestKind::UploadPart,
            "PUT" => RequestKind::PutObject,
            "POST" if has("uploads") => RequestKind::CreateMultipartUpload,
            "POST" if has("uploadId") => RequestKind::CompleteMultipartUpload,
            "DELETE" if has("uploadId") => RequestKind::AbortMultipartUpload,
            "GET" if !has("list-type") && !has("uploads") && !has("uploadId") => {
                RequestKind::GetObject
            }
            _ => RequestKind::Other,
        }
    }
}

/// What happens to a faulted request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answered with this status without reaching the server.
    Refuse(u16),
    /// Sent to the server, which applies it; the answer is replaced by this
    /// status (the client cannot know the request took effect).
    FailAfterApply(u16),
    /// Fails like a reset connection, without reaching the server.
    ConnectionError,
    /// Reaches the server this much later (past the attempt timeout, the SDK
    /// gives up on the attempt and retries).
    Delay(Duration),
}

/// Faults `count` requests of `kind` (`None`: any kind), in order.
#[derive(Clone, Debug)]
struct FaultRule {
    kind: Option<RequestKind>,
    fault: Fault,
    count: u32,
}

/// The faults to inject, shared with the test that arms them.
#[derive(Default)]
pub struct S3Faults {
    rules: Mutex<Vec<FaultRule>>,
    /// With this probability (0..=1) a request not matched by a rule gets
    /// one of `random_faults`, drawn from a seeded generator.
    random: Mutex<Option<(f64, Vec<Fault>, fastrand::Rng)>>,
    injected: AtomicU64,
}

impl fmt::Debug for S3Faults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "S3Faults(injected={})", self.injected())
    }
}

impl S3Faults {
    pub fn new() -> S3Faults {
        S3Faults::default()
    }

    /// Adds a rule; rules are tried in the order they were added.
    pub fn add(&self, kind: Option<RequestKind>, fault: Fault, count: u32) {
        self.rules
            .lock()
            .expect("faults lock")
            .push(FaultRule { kind, fault, count });
    }

    /// Faults a random share of requests from now on (`probability` 0 stops).
    pub fn random(&self, probability: f64, faults: Vec<Fault>, seed: u64) {
        *self.random.lock().expect("faults lock") = (probability > 0.0 && !faults.is_empty())
            .then(|| (probability, faults, fastrand::Rng::with_seed(seed)));
    }

    /// Removes every rule and stops random faults.
    pub fn clear(&self) {
        self.rules.lock().expect("faults lock").clear();
        self.random(0.0, Vec::new(), 0);
    }

    /// Requests faulted so far.
    pub fn injected(&self) -> u64 {
        self.injected.load(Ordering::Relaxed)
    }

    fn pick(&self, kind: RequestKind) -> Option<Fault> {
        let picked = {
            let mut rules = self.rules.lock().expect("faults lock");
            let matched = rules
                .iter_mut()
                .find(|r| r.count > 0 && r.kind.is_none_or(|k| k == kind));
            matched.map(|rule| {
                rule.count -= 1;
                rule.fault
            })
        }
        .or_else(|| {
            let mut random = self.random.lock().expect("faults lock");
            let (probability, faults, rng) = random.as_mut()?;
            (rng.f64() < *probability).then(|| faults[rng.usize(..faults.len())])
        });
        if picked.is_some() {
            self.injected.fetch_add(1, Ordering::Relaxed);
        }
        picked
    }

    /// The SDK's default HTTP client (hyper 1 with rustls on aws-lc, what
    /// `default-https-client` selects), wrapped.
    pub(super) fn wrap_default_client(self: &std::sync::Arc<Self>) -> SharedHttpClient {
        use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
        let inner = aws_smithy_http_client::Builder::new()
            .tls_provider(Provider::Rustls(CryptoMode::AwsLc))
            .build_https();
        SharedHttpClient::new(FaultyClient {
            inner,
            faults: self.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyClient {
    inner: SharedHttpClient,
    faults: std::sync::Arc<S3Faults>,
}

impl HttpClient for FaultyClient {
    fn http_connector(
        &self,
        settings: &HttpConnectorSettings,
        components: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(FaultyConnector {
            inner: self.inner.http_connector(settings, components),
            faults: self.faults.clone(),
        })
    }
}

#[derive(Debug)]
struct FaultyConnector {
    inner: SharedHttpConnector,
    faults: std::sync::Arc<S3Faults>,
}

/// An S3 error answer with `status`.
fn error_response(status: u16) -> HttpResponse {
    let code = if status == 503 {
        "SlowDown"
    } else {
        "InternalError"
    };
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code>\
         <Message>injected fault</Message></Error>"
    );
    HttpResponse::new(
        StatusCode::try_from(status).expect("a valid status"),
        SdkBody::from(body),
    )
}

impl HttpConnector for FaultyConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let kind = RequestKind::of(&request);
        let Some(fault) = self.faults.pick(kind) else {
            return self.inner.call(request);
        };
        tracing::debug!(?kind, ?fault, uri = request.uri(), "injecting an S3 fault");
        let inner = self.inner.clone();
        HttpConnectorFuture::new(async move {
            match fault {
                Fault::Refuse(status) => Ok(error_response(status)),
                Fault::ConnectionError => Err(ConnectorError::io(
                    "injected fault: connection reset".into(),
                )),
                Fault::FailAfterApply(status) => {
                    inner.call(request).await?;
                    Ok(error_response(status))
                }
                Fault::Delay(delay) => {
                    tokio::time::sleep(delay).await;
                    inner.call(request).await
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: &str, uri: &str) -> HttpRequest {
        let mut r = HttpRequest::new(SdkBody::empty());
        r.set_method(method).unwrap();
        r.set_uri(uri).unwrap();
        r
    }

    #[test]
    fn requests_are_told_apart_by_method_and_query() {
        let cases = [
            ("PUT", "http://h/b/k", RequestKind::PutObject),
            (
                "PUT",
                "http://h/b/k?partNumber=2&uploadId=x",
                RequestKind::UploadPart,
            ),
            (
                "POST",
                "http://h/b/k?uploads",
                RequestKind::CreateMultipartUpload,
            ),
            (
                "POST",
                "http://h/b/k?uploadId=x",
                RequestKind::CompleteMultipartUpload,
            ),
            (
                "DELETE",
                "http://h/b/k?uploadId=x",
                RequestKind::AbortMultipartUpload,
            ),
            ("GET", "http://h/b/k", RequestKind::GetObject),
            ("GET", "http://h/b?list-type=2&prefix=a", RequestKind::Other),
            ("GET", "http://h/b/k?uploadId=x", RequestKind::Other),
            ("DELETE", "http://h/b/k", RequestKind::Other),
        ];
        for (method, uri, kind) in cases {
            assert_eq!(
                RequestKind::of(&request(method, uri)),
                kind,
                "{method} {uri}"
            );
        }
    }

    #[test]
    fn rules_fault_their_count_then_stop() {
        let faults = S3Faults::new();
        faults.add(Some(RequestKind::UploadPart), Fault::Refuse(503), 2);
        assert_eq!(faults.pick(RequestKind::PutObject), None);
        assert_eq!(
            faults.pick(RequestKind::UploadPart),
            Some(Fault::Refuse(503))
        );
        assert_eq!(
            faults.pick(RequestKind::UploadPart),
            Some(Fault::Refuse(503))
        );
        assert_eq!(faults.pick(RequestKind::UploadPart), None);
        assert_eq!(faults.injected(), 2);
    }
}
