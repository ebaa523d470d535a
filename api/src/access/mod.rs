//! Who may ask how much: per-client rate limits (`API_RATE_LIMIT_RPS`, `API_RATE_LIMIT_BURST`) and
//! optional API keys (`API_KEYS_FILE`), as one middleware, [`guard`], inside the router's inner
//! layers, so that the JSON answers and the stream are guarded alike.
//!
//! - `cost`: what a request costs, by what it asks of the database; probes and files are free.
//! - `limit`: the token buckets (governor's keyed limiter) and the `RateLimit` header fields.
//! - `keys`: the keys file (hashes, re-read while running) and where a request carries its key.
//! - `openapi`: the same rules in the OpenAPI document.
//!
//! A request with a valid key is limited by that key, any other by its peer address (the socket's;
//! `X-Forwarded-For` is not trusted: behind a proxy, every client would share the proxy's bucket,
//! so there give clients keys, or limit at the proxy). When a keys file is configured, every request
//! that is not free needs a valid key: without one it is a 401.

mod cost;
pub(crate) mod keys;
mod limit;
pub(crate) mod openapi;

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Weak};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderName, HeaderValue, Uri};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::metrics::AccessMetrics;
use crate::problem::ApiError;

use self::keys::KeyStore;
use self::limit::{Client, Decision, Limiter};

pub(crate) use self::keys::{redact_query, KeysError};

/// Default of `API_RATE_LIMIT_RPS`: units a second, per client, sustained.
pub(crate) const DEFAULT_RPS: u32 = 100;
/// Default of `API_RATE_LIMIT_BURST`: units a client may spend at once.
pub(crate) const DEFAULT_BURST: u32 = 400;
/// The `RateLimit` field.
pub(crate) const RATELIMIT: HeaderName = HeaderName::from_static("ratelimit");
/// The `RateLimit-Policy` field.
pub(crate) const RATELIMIT_POLICY: HeaderName = HeaderName::from_static("ratelimit-policy");
/// How often the keys file is looked at.
const KEYS_CHECK: Duration = Duration::from_secs(1);
/// How often the limiter forgets full buckets (in rounds of `KEYS_CHECK`).
const CLEAN_EVERY: u32 = 60;

/// The configured limits and keys.
#[derive(Debug, Clone, Default)]
pub(crate) struct AccessOptions {
    /// `(rps, burst)`; `None`: no rate limit (`API_RATE_LIMIT_RPS=0`).
    pub(crate) rate: Option<(NonZeroU32, NonZeroU32)>,
    /// The keys file, read already; `None`: no keys needed.
    pub(crate) keys: Option<Arc<KeyStore>>,
}

impl AccessOptions {
    /// The options for `rps` (0: off) and `burst`, with the keys file at `keys_file` read now.
    pub(crate) fn new(
        rps: u32,
        burst: u32,
        keys_file: Option<&std::path::Path>,
    ) -> Result<Self, KeysError> {
        let rate = NonZeroU32::new(rps).map(|rps| (rps, NonZeroU32::new(burst).unwrap_or(rps)));
        let keys = match keys_file {
            Some(path) => Some(Arc::new(KeyStore::open(path)?)),
            None => None,
        };
        Ok(Self { rate, keys })
    }
}

/// The guard's state: cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct Access {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    limiter: Option<Limiter>,
    /// `RateLimit-Policy`, the same on every answer.
    policy: Option<HeaderValue>,
    keys: Option<Arc<KeyStore>>,
    metrics: AccessMetrics,
}

impl Access {
    /// The guard for `options`; starts the housekeeping task (keys file, limiter memory) when
    /// there is something to keep, which ends once the router is dropped.
    pub(crate) fn new(options: AccessOptions, metrics: AccessMetrics) -> Self {
        if let Some((rps, burst)) = options.rate {
            tracing::info!(rps, burst, keys = options.keys.is_some(), "rate limits on");
            if burst.get() < cost::max_cost() {
                tracing::warn!(
                    burst,
                    largest = cost::max_cost(),
                    "API_RATE_LIMIT_BURST is below the cost of the largest page: such a page takes the whole bucket"
                );
            }
        }
        let limiter = options.rate.map(|(rps, burst)| Limiter::new(rps, burst));
        let policy = limiter
            .as_ref()
            .and_then(|limiter| HeaderValue::from_str(&limiter.policy_header()).ok());
        let access = Self {
            inner: Arc::new(Inner {
                limiter,
                policy,
                keys: options.keys,
                metrics,
            }),
        };
        let busy = access.inner.limiter.is_some() || access.inner.keys.is_some();
        if let (true, Ok(runtime)) = (busy, tokio::runtime::Handle::try_current()) {
            runtime.spawn(housekeeping(Arc::downgrade(&access.inner)));
        }
        access
    }

    /// Whether a keys file is configured (the OpenAPI document then requires a key).
    pub(crate) fn needs_keys(&self) -> bool {
        self.inner.keys.is_some()
    }

    /// Whether requests are limited.
    pub(crate) fn limits(&self) -> bool {
        self.inner.limiter.is_some()
    }

    /// The bucket of a request presenting `key` from `address`, or why it is refused.
    fn client(&self, key: Option<String>, address: Option<SocketAddr>) -> Result<Client, ApiError> {
        let Some(store) = &self.inner.keys else {
            return Ok(Client::address(address.map(|address| address.ip())));
        };
        let Some(key) = key else {
            self.inner.metrics.unauthorized.inc();
            return Err(ApiError::Unauthorized("this API needs a key: send it as `Authorization: Bearer <key>`, `X-API-Key: <key>` or, for an EventSource, `?api_key=<key>`"));
        };
        let hash = keys::hash(&key);
        match store.name(&hash) {
            Some(name) => {
                tracing::debug!(key = %name, "request with a key");
                Ok(Client::Key(Arc::from(hash)))
            }
            None => {
                self.inner.metrics.unauthorized.inc();
                Err(ApiError::Unauthorized(
                    "the API key is not valid (unknown, or revoked)",
                ))
            }
        }
    }
}

/// Every round of [`KEYS_CHECK`]: re-reads a changed keys file; every [`CLEAN_EVERY`] rounds:
/// forgets the full buckets and reports how many clients are left.
async fn housekeeping(access: Weak<Inner>) {
    let mut ticks = tokio::time::interval(KEYS_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    for round in 1u32.. {
        ticks.tick().await;
        let Some(inner) = access.upgrade() else {
            return;
        };
        if let Some(store) = inner.keys.clone() {
            // A stat a second, and a read when it changed: off the async threads.
            let _ = tokio::task::spawn_blocking(move || store.refresh()).await;
        }
        if let Some(limiter) = inner.limiter.as_ref().filter(|_| round % CLEAN_EVERY == 0) {
            let clients = limiter.clean();
            inner
                .metrics
                .clients
                .set(i64::try_from(clients).unwrap_or(i64::MAX));
        }
    }
}

/// The middleware: removes `api_key` from the URI (the parameter checks do not know it), and for a
/// request that is not free checks its key (when keys are configured) and takes its cost from its
/// bucket (when limits are on): a 401 or a 429, or the answer with the `RateLimit` fields.
pub(crate) async fn guard(
    State(access): State<Access>,
    mut request: Request,
    next: Next,
) -> Response {
    let query = request.uri().query().map(str::to_owned);
    let key = keys::presented(request.headers(), query.as_deref());
    if let Some(query) = &query {
        let stripped = keys::strip_query(query);
        if stripped.len() != query.len() {
            let uri = with_query(request.uri(), &stripped);
            *request.uri_mut() = uri;
        }
    }
    let Some(cost) = cost::cost(request.uri().path(), request.uri().query()) else {
        return next.run(request).await;
    };
    let address = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(address)| *address);
    let client = match access.client(key, address) {
        Ok(client) => client,
        Err(refused) => return refused.into_response(),
    };
    let Some(limiter) = &access.inner.limiter else {
        return next.run(request).await;
    };
    let decision = limiter.take(&client, cost);
    let (mut response, remaining, reset) = match decision {
        Decision::Allowed { remaining, reset } => (next.run(request).await, remaining, reset),
        Decision::Refused { retry_after } => {
            access.inner.metrics.rate_limited.inc();
            let refused = ApiError::RateLimited { retry_after, cost };
            (refused.into_response(), 0, retry_after)
        }
    };
    let headers = response.headers_mut();
    if let Some(policy) = &access.inner.policy {
        headers.insert(RATELIMIT_POLICY, policy.clone());
    }
    if let Ok(value) = HeaderValue::from_str(&limit::ratelimit_header(remaining, reset)) {
        headers.insert(RATELIMIT, value);
    }
    response
}

/// `uri` with `query` instead of its query (none if empty).
fn with_query(uri: &Uri, query: &str) -> Uri {
    let path = uri.path();
    let path_and_query = if query.is_empty() {
        path.to_owned()
    } else {
        format!("{path}?{query}")
    };
    let mut parts = uri.clone().into_parts();
    match path_and_query.parse() {
        Ok(path_and_query) => {
            parts.path_and_query = Some(path_and_query);
            Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
        }
        Err(_) => uri.clone(),
    }
}
